//! Keras's layers, number for number (`tools/keras_layers_reference.py`, TensorFlow 2.21 /
//! Keras 3): outputs, gradients with respect to the input and every weight, in float32 and
//! float64, for the convolution, pooling, normalization, embedding and attention layers; and
//! `BatchNormalization`'s moving statistics after training steps.

use gradtape::layers::{
    Activation, AveragePooling1D, AveragePooling2D, BatchNormalization, Conv1D, Conv2D,
    Conv2DTranspose, ConvConfig, DepthwiseConv2D, Embedding, GlobalAveragePooling2D,
    GlobalMaxPooling2D, Layer, LayerNormalization, MaxPooling1D, MaxPooling2D, MultiHeadAttention,
};
use gradtape::ops::{self, Padding};
use gradtape::optimizers::{Optimizer, SGD};
use gradtape::random::Generator;
use gradtape::{Axes, DType, GradientTape, Result, Source, Tensor, Variable};
use serde_json::Value;

use crate::common;
use common::{assert_close, fixture, fixture_tensor, parity_tol};

/// Self-attention with a causal mask, as a layer.
struct Causal(MultiHeadAttention);

impl Layer for Causal {
    fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        self.0.attend(x, x, None, true)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        self.0.trainable_variables()
    }
}

fn layer(case: &str, dt: DType) -> Box<dyn Layer> {
    let rng = &mut Generator::from_seed(0);
    let c = ConvConfig::default();
    let same = ConvConfig {
        padding: Padding::Same,
        ..c
    };
    match case {
        "conv2d" => Box::new(
            Conv2D::new(
                "l",
                2,
                3,
                [3, 2],
                ConvConfig {
                    strides: [2, 1],
                    activation: Activation::Relu,
                    ..same
                },
                dt,
                rng,
            )
            .unwrap(),
        ),
        "conv2d_groups" => Box::new(
            Conv2D::new(
                "l",
                4,
                4,
                [2, 2],
                ConvConfig {
                    dilation: [2, 2],
                    groups: 2,
                    ..c
                },
                dt,
                rng,
            )
            .unwrap(),
        ),
        "conv1d" => Box::new(
            Conv1D::new(
                "l",
                2,
                3,
                3,
                ConvConfig {
                    strides: [2, 1],
                    ..same
                },
                dt,
                rng,
            )
            .unwrap(),
        ),
        "depthwise" => Box::new(DepthwiseConv2D::new("l", 3, [2, 2], 2, same, dt, rng).unwrap()),
        "conv2d_transpose_same" => Box::new(
            Conv2DTranspose::new(
                "l",
                2,
                2,
                [3, 3],
                ConvConfig {
                    strides: [2, 2],
                    ..same
                },
                dt,
                rng,
            )
            .unwrap(),
        ),
        "conv2d_transpose_valid" => Box::new(
            Conv2DTranspose::new(
                "l",
                2,
                3,
                [2, 3],
                ConvConfig {
                    strides: [1, 2],
                    ..c
                },
                dt,
                rng,
            )
            .unwrap(),
        ),
        "max_pool2d" => Box::new(MaxPooling2D::with([2, 2], [2, 2], Padding::Same)),
        "avg_pool2d" => Box::new(AveragePooling2D::with([3, 3], [2, 2], Padding::Same)),
        "max_pool1d" => Box::new(MaxPooling1D::new(2)),
        "avg_pool1d" => Box::new(AveragePooling1D::with(3, 1, Padding::Same)),
        "global_avg" => Box::new(GlobalAveragePooling2D),
        "global_max" => Box::new(GlobalMaxPooling2D),
        "batch_norm" => Box::new(BatchNormalization::new("l", 2, dt).unwrap()),
        "layer_norm" => Box::new(LayerNormalization::new("l", 4, dt).unwrap()),
        "embedding" => Box::new(Embedding::new("l", 6, 3, dt, rng).unwrap()),
        "attention" => Box::new(MultiHeadAttention::new("l", 2, 3, 5, dt, rng).unwrap()),
        "attention_causal" => Box::new(Causal(
            MultiHeadAttention::new("l", 2, 3, 5, dt, rng).unwrap(),
        )),
        other => panic!("no layer for case {other}"),
    }
}

/// The fixture's key of a variable named `l/...`.
fn key(v: &Variable) -> String {
    v.name().unwrap().strip_prefix("l/").unwrap().to_string()
}

fn close(got: &Tensor, want: &Value, dt: DType, what: &str) {
    // Keras's float64 attention agrees to 3e-10, not 1e-10: its fused dot-product-attention
    // path does not keep every step in float64 (float32 agrees to the usual 2e-5)
    let tol = if dt == DType::F64 && what.contains("attention") {
        1e-8
    } else {
        parity_tol(dt)
    };
    let want_t = fixture_tensor(want, DType::F64);
    assert_eq!(got.shape(), want_t.shape(), "{what}: shape");
    let (g, w) = (got.to_f64_vec().unwrap(), want_t.to_f64_vec().unwrap());
    let largest = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if largest(&w) < 1e-6 {
        // zero but for rounding in Keras (attention's key bias: the softmax ignores a shift
        // of each row of scores), so zero but for rounding here too
        assert!(largest(&g) < 1e-6, "{what}: {g:?} should be zero, as {w:?}");
        return;
    }
    assert_close(&g, &w, tol, what);
}

#[test]
fn layers_match_keras() {
    let fx = fixture("keras_layers.json");
    for (key_dt, dt) in [("float32", DType::F32), ("float64", DType::F64)] {
        let cases = fx[key_dt].as_object().unwrap();
        assert!(cases.len() >= 17, "{key_dt}: {} cases", cases.len());
        for (name, c) in cases {
            let what = |s: &str| format!("{key_dt} {name} {s}");
            let l = layer(name, dt);
            for v in l.variables() {
                v.assign(&fixture_tensor(&c["weights"][key(&v)], dt))
                    .unwrap();
            }
            let x = if name == "embedding" {
                fixture_tensor(&c["x"], DType::I64)
            } else {
                fixture_tensor(&c["x"], dt)
            };
            let training = name == "batch_norm";
            let r = fixture_tensor(&c["r"], dt);
            let vars = l.trainable_variables();
            let tape = GradientTape::new();
            if x.dtype().is_float() {
                tape.watch(&x);
            }
            let y = l.call(&x, training).unwrap();
            close(&y, &c["y"], dt, &what("output"));
            let loss = ops::reduce_sum(&ops::multiply(&y, &r).unwrap(), Axes::All, false).unwrap();
            let mut sources: Vec<&dyn Source> = vec![];
            if x.dtype().is_float() {
                sources.push(&x);
            }
            sources.extend(vars.iter().map(|v| v as &dyn Source));
            let grads = tape.gradient(&loss, &sources[..]).unwrap();
            let mut grads = grads.into_iter();
            if x.dtype().is_float() {
                close(&grads.next().unwrap().unwrap(), &c["dx"], dt, &what("dx"));
            }
            assert_eq!(
                vars.len(),
                c["dw"].as_object().unwrap().len(),
                "{}",
                what("weights")
            );
            for (v, g) in vars.iter().zip(grads) {
                let k = key(v);
                close(&g.unwrap(), &c["dw"][&k], dt, &what(&format!("d{k}")));
            }
            if let Some(after) = c.get("after") {
                // Keras keeps the learning rate as a float32 variable: 0.1 is 0.100000001490...
                let mut opt = SGD::new(0.1f32 as f64);
                for _ in 0..3 {
                    let tape = GradientTape::new();
                    let y = l.call(&x, true).unwrap();
                    let loss =
                        ops::reduce_sum(&ops::multiply(&y, &r).unwrap(), Axes::All, false).unwrap();
                    let g = tape.gradient(&loss, &vars).unwrap();
                    opt.apply_gradients(g.into_iter().zip(&vars)).unwrap();
                }
                for v in l.variables() {
                    close(
                        &v.value(),
                        &after[key(&v)],
                        dt,
                        &what(&format!("{} after 3 steps", key(&v))),
                    );
                }
                close(
                    &l.call(&x, false).unwrap(),
                    &c["inference"],
                    dt,
                    &what("inference"),
                );
            }
        }
    }
}

/// A model of every kind of layer with variables (BatchNormalization's moving statistics
/// included) saved after training steps and restored into a fresh model built with another
/// seed: the same inference outputs, bit for bit.
#[test]
fn every_layer_round_trips_through_a_checkpoint() {
    use gradtape::checkpoint;
    use gradtape::layers::{Dense, Flatten, FunctionalBuilder, Reshape};
    let build = |seed: u64| {
        let rng = &mut Generator::from_seed(seed);
        let dt = DType::F32;
        let same = ConvConfig {
            padding: Padding::Same,
            ..ConvConfig::default()
        };
        let mut b = FunctionalBuilder::new("all");
        let x = b.input();
        let img = b.layer(Reshape::new(&[6, 6, 2]), x);
        let c = b.layer(
            Conv2D::new("conv", 2, 4, [3, 3], same, dt, rng).unwrap(),
            img,
        );
        let c = b.layer(BatchNormalization::new("bn", 4, dt).unwrap(), c);
        let d = b.layer(
            DepthwiseConv2D::new("dw", 4, [3, 3], 1, same, dt, rng).unwrap(),
            c,
        );
        let r = b.add(&[c, d]); // a residual connection
        let up = b.layer(
            Conv2DTranspose::new("up", 4, 2, [2, 2], same, dt, rng).unwrap(),
            r,
        );
        let p = b.layer(MaxPooling2D::new([2, 2]), up);
        let seq = b.layer(Reshape::new(&[9, 2]), p);
        let seq = b.layer(Conv1D::new("c1", 2, 5, 3, same, dt, rng).unwrap(), seq);
        let seq = b.layer(LayerNormalization::new("ln", 5, dt).unwrap(), seq);
        let seq = b.layer(
            MultiHeadAttention::new("mha", 2, 3, 5, dt, rng).unwrap(),
            seq,
        );
        let f = b.layer(Flatten, seq);
        let y = b.layer(
            Dense::new("out", 45, 3, Activation::Linear, dt, rng).unwrap(),
            f,
        );
        b.build(y).unwrap()
    };
    let model = build(1);
    let mut rng = Generator::from_seed(2);
    let x = rng.uniform(&[4, 72], -1.0, 1.0, DType::F32).unwrap();
    let vars = model.trainable_variables();
    let mut opt = SGD::new(0.01);
    for _ in 0..2 {
        let tape = GradientTape::new();
        let loss = ops::reduce_sum(
            &ops::square(&model.call(&x, true).unwrap()).unwrap(),
            Axes::All,
            false,
        )
        .unwrap();
        let g = tape.gradient(&loss, &vars).unwrap();
        opt.apply_gradients(g.into_iter().zip(&vars)).unwrap();
    }
    let summary = model.summary(&[72], DType::F32).unwrap();
    assert!(summary.contains("bn (BatchNormalization)"), "{summary}");
    assert!(summary.contains("Non-trainable params: 8"), "{summary}"); // moving mean + variance
    let dir = std::env::temp_dir().join(format!("gradtape-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("all.safetensors");
    checkpoint::save(&path, &model.variables(), &Default::default()).unwrap();
    let fresh = build(99);
    let before = fresh.call(&x, false).unwrap().to_vec::<f32>().unwrap();
    checkpoint::restore(&path, &fresh.variables()).unwrap();
    let want = model.call(&x, false).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(before, want);
    assert_eq!(
        fresh.call(&x, false).unwrap().to_vec::<f32>().unwrap(),
        want
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Max pooling's gradient at ties goes to the first maximum of each window in row-major order,
/// as TensorFlow 2.21 gives it (one 2×2 window of ones: `[1, 0, 0, 0]`; gradtape split it
/// equally before), PyTorch and JAX too; "same" windows at the border included, each channel
/// on its own.
#[test]
fn max_pool_gradients_at_ties_go_to_the_first_maximum() {
    let ones = Tensor::ones(&[1, 2, 2, 1], DType::F32).unwrap();
    let tape = GradientTape::new();
    tape.watch(&ones);
    let y = ops::max_pool2d(&ones, [2, 2], [2, 2], Padding::Valid).unwrap();
    let [g] = tape.gradient(&y, [&ones]).unwrap();
    assert_eq!(
        g.unwrap().to_vec::<f32>().unwrap(),
        vec![1.0, 0.0, 0.0, 0.0]
    );
    // a 3×3 image, two channels, 2×2 windows with stride 2 and "same" padding: windows
    // {(0,0),(0,1),(1,0),(1,1)}, {(0,2),(1,2)}, {(2,0),(2,1)}, {(2,2)}
    let c0 = [5.0f64, 5.0, 1.0, 5.0, 2.0, 1.0, 3.0, 3.0, 7.0];
    let c1 = [0.0f64, 1.0, 4.0, 1.0, 1.0, 4.0, 2.0, 2.0, -1.0];
    let x: Vec<f64> = (0..9).flat_map(|i| [c0[i], c1[i]]).collect();
    let x = Tensor::from_vec(x, &[1, 3, 3, 2]).unwrap();
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = ops::max_pool2d(&x, [2, 2], [2, 2], Padding::Same).unwrap();
    assert_eq!(
        y.to_vec::<f64>().unwrap(),
        vec![5.0, 1.0, 1.0, 4.0, 3.0, 2.0, 7.0, -1.0]
    );
    let [g] = tape.gradient(&y, [&x]).unwrap();
    let g = g.unwrap().to_vec::<f64>().unwrap();
    let (g0, g1): (Vec<f64>, Vec<f64>) = (0..9).map(|i| (g[2 * i], g[2 * i + 1])).unzip();
    assert_eq!(g0, vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
    assert_eq!(g1, vec![0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
}

/// The first-maximum rule over axes that are not next to each other (the mask kernel's
/// permuted path), against a plain loop; and a NaN in a window gives NaN, not a silent 0.
#[test]
fn reduce_max_first_gives_each_group_to_its_first_maximum() {
    // [3, 2, 4, 2] with many ties (values 0..3), reduced over axes 0 and 2
    let v: Vec<f64> = (0..48).map(|i| ((i * 7 + i / 5) % 3) as f64).collect();
    let x = Tensor::from_vec(v.clone(), &[3, 2, 4, 2]).unwrap();
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = ops::reduce_max_first(&x, [0, 2], false).unwrap();
    let w = Tensor::from_vec(vec![1.0f64, 10.0, 100.0, 1000.0], &[2, 2]).unwrap();
    let loss =
        ops::reduce_sum(&ops::multiply(&y, &w).unwrap(), gradtape::Axes::All, false).unwrap();
    let [g] = tape.gradient(&loss, [&x]).unwrap();
    let g = g.unwrap().to_vec::<f64>().unwrap();
    let mut want = vec![0.0; 48];
    for (j, l) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let group: Vec<usize> = (0..3)
            .flat_map(|i| (0..4).map(move |k| i * 16 + j * 8 + k * 2 + l))
            .collect();
        let max = group.iter().map(|&e| v[e]).fold(f64::MIN, f64::max);
        let first = group.iter().find(|&&e| v[e] == max).unwrap();
        want[*first] = [1.0, 10.0, 100.0, 1000.0][j * 2 + l];
    }
    assert_eq!(g, want);
    // a NaN in a window: NaN gradients for that window, the others as before
    let x = Tensor::from_vec(vec![1.0f32, f32::NAN, 2.0, 2.0], &[1, 2, 2, 1]).unwrap();
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = ops::max_pool2d(&x, [1, 2], [1, 2], Padding::Valid).unwrap();
    let [g] = tape.gradient(&y, [&x]).unwrap();
    let g = g.unwrap().to_vec::<f32>().unwrap();
    assert!(g[0].is_nan() && g[1].is_nan(), "{g:?}");
    assert_eq!(&g[2..], &[1.0, 0.0]);
}

/// Max pooling at ties against TensorFlow 2.21's own gradients
/// (`tools/tf_pool_ties_reference.py`): small-integer images where most windows tie, "same"
/// and "valid" padding, overlapping windows, the 1-D op, float32 and float64. Exact: a mask and
/// a product.
#[test]
fn max_pool_ties_match_tensorflow() {
    let fixture = fixture("tf_pool_ties.json");
    let read = fixture_tensor;
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dtype = match case["dtype"].as_str().unwrap() {
            "float32" => DType::F32,
            _ => DType::F64,
        };
        let (k, s) = (
            case["ksize"].as_u64().unwrap() as usize,
            case["strides"].as_u64().unwrap() as usize,
        );
        let padding = match case["padding"].as_str().unwrap() {
            "SAME" => Padding::Same,
            _ => Padding::Valid,
        };
        let x = read(&case["input"], dtype);
        let tape = GradientTape::new();
        tape.watch(&x);
        let y = match x.rank() {
            3 => ops::max_pool1d(&x, k, s, padding),
            _ => ops::max_pool2d(&x, k, s, padding),
        }
        .unwrap();
        assert_eq!(
            y.to_f64_vec().unwrap(),
            read(&case["value"], dtype).to_f64_vec().unwrap(),
            "{name} {dtype}: values"
        );
        let options = gradtape::GradientOptions {
            output_gradients: Some(vec![read(&case["cotangent"], dtype)]),
            ..Default::default()
        };
        let g = tape
            .gradient_with(&[&y], &[&x as &dyn Source], &options)
            .unwrap();
        assert_eq!(
            g[0].as_ref().unwrap().to_f64_vec().unwrap(),
            read(&case["grad"], dtype).to_f64_vec().unwrap(),
            "{name} {dtype}: gradient"
        );
    }
}
