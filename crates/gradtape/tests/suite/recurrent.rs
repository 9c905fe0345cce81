//! Keras's recurrent layers against Keras's own numbers (`tools/keras_rnn_reference.py`):
//! outputs, final states and gradients with respect to the input, every weight and the
//! initial states; a gradient check by finite differences through 20 steps; `vmap` of a cell;
//! a 1,000-step sequence; bad inputs.

use gradtape::layers::{Bidirectional, Layer, Masking, MergeMode, SimpleRNN, GRU, LSTM};
use gradtape::random::Generator;
use gradtape::{ops, Axes, DType, GradientOptions, GradientTape, Result, Source, Tensor};
use serde_json::Value;

use crate::common::{assert_close, fixture, fixture_tensor, parity_tol};

/// A recurrent layer of either kind, behind the calls the tests need.
enum Rnn {
    Simple(SimpleRNN),
    Lstm(LSTM),
    Gru(GRU),
    Bi(Bidirectional),
}

impl Rnn {
    fn build(kind: &str, options: &Value, input: usize, units: usize, dtype: DType) -> Rnn {
        let mut rng = Generator::from_seed(1);
        let flag = |k: &str| options[k].as_bool().unwrap_or(false);
        let (seq, back) = (flag("return_sequences"), flag("go_backwards"));
        let one = match kind {
            "SimpleRNN" => Rnn::Simple(
                SimpleRNN::new("rnn", input, units, dtype, &mut rng)
                    .unwrap()
                    .return_sequences(seq)
                    .go_backwards(back),
            ),
            "LSTM" => Rnn::Lstm(
                LSTM::new("lstm", input, units, dtype, &mut rng)
                    .unwrap()
                    .return_sequences(seq)
                    .go_backwards(back),
            ),
            _ => Rnn::Gru(
                GRU::new("gru", input, units, dtype, &mut rng)
                    .unwrap()
                    .reset_after(options["reset_after"].as_bool().unwrap_or(true))
                    .unwrap()
                    .return_sequences(seq)
                    .go_backwards(back),
            ),
        };
        let merge = match options["merge"].as_str() {
            None => return one,
            Some("concat") => MergeMode::Concat,
            Some("sum") => MergeMode::Sum,
            Some("mul") => MergeMode::Mul,
            _ => MergeMode::Ave,
        };
        Rnn::Bi(match one {
            Rnn::Simple(l) => Bidirectional::new(l, merge, &mut rng).unwrap(),
            Rnn::Lstm(l) => Bidirectional::new(l, merge, &mut rng).unwrap(),
            Rnn::Gru(l) => Bidirectional::new(l, merge, &mut rng).unwrap(),
            Rnn::Bi(b) => b,
        })
    }
    fn layer(&self) -> &dyn Layer {
        match self {
            Rnn::Simple(l) => l,
            Rnn::Lstm(l) => l,
            Rnn::Gru(l) => l,
            Rnn::Bi(l) => l,
        }
    }
    fn run(&self, x: &Tensor, init: Option<&[Tensor]>) -> Result<(Tensor, Vec<Tensor>)> {
        self.run_masked(x, None, init)
    }
    fn run_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        init: Option<&[Tensor]>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        match self {
            Rnn::Simple(l) => l.call_with_mask(x, mask, init),
            Rnn::Lstm(l) => l.call_with_mask(x, mask, init),
            Rnn::Gru(l) => l.call_with_mask(x, mask, init),
            Rnn::Bi(l) => l.call_with_mask(x, mask, init),
        }
    }
}

#[test]
fn recurrent_layers_match_keras() {
    let fixture = fixture("keras_rnn.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 34);
    for case in cases {
        let dtype = match case["dtype"].as_str().unwrap() {
            "float32" => DType::F32,
            _ => DType::F64,
        };
        let what = format!("{} {dtype}", case["name"].as_str().unwrap());
        let t = |v: &Value| fixture_tensor(v, dtype);
        let x = t(&case["x"]);
        let weights: Vec<Tensor> = case["weights"].as_array().unwrap().iter().map(t).collect();
        let init: Vec<Tensor> = case["initial_state"]
            .as_array()
            .unwrap()
            .iter()
            .map(t)
            .collect();
        let units = weights[1].shape()[0];
        let rnn = Rnn::build(
            case["layer"].as_str().unwrap(),
            &case["options"],
            x.shape()[2],
            units,
            dtype,
        );
        rnn.layer().set_weights(&weights).unwrap();
        let tape = GradientTape::new();
        tape.watch(&x);
        for s in &init {
            tape.watch(s);
        }
        let mask = case["mask"].as_array().map(|rows| {
            let v: Vec<bool> = rows
                .iter()
                .flat_map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|b| b.as_f64() == Some(1.0))
                })
                .collect();
            Tensor::from_vec(v, &x.shape()[..2]).unwrap()
        });
        let (y, states) = rnn
            .run_masked(&x, mask.as_ref(), (!init.is_empty()).then_some(&init[..]))
            .unwrap();
        let outputs: Vec<Tensor> = std::iter::once(y).chain(states).collect();
        let want = case["outputs"].as_array().unwrap();
        assert_eq!(outputs.len(), want.len(), "{what}");
        for (k, (o, w)) in outputs.iter().zip(want).enumerate() {
            let w = t(w);
            assert_eq!(o.shape(), w.shape(), "{what} output {k}");
            assert_close(
                &o.to_f64_vec().unwrap(),
                &w.to_f64_vec().unwrap(),
                parity_tol(dtype),
                &format!("{what} output {k}"),
            );
        }
        let vars = rnn.layer().trainable_variables();
        let mut sources: Vec<&dyn Source> = vec![&x];
        sources.extend(vars.iter().map(|v| v as &dyn Source));
        sources.extend(init.iter().map(|s| s as &dyn Source));
        let targets: Vec<&Tensor> = outputs.iter().collect();
        let options = GradientOptions {
            output_gradients: Some(
                case["cotangents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(t)
                    .collect(),
            ),
            ..Default::default()
        };
        let grads = tape
            .gradient_with(&targets[..], &sources[..], &options)
            .unwrap();
        let want = case["grads"].as_array().unwrap();
        assert_eq!(grads.len(), want.len(), "{what}");
        for (k, (g, w)) in grads.iter().zip(want).enumerate() {
            let g = g
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: no gradient {k}"));
            assert_close(
                &g.to_f64_vec().unwrap(),
                &t(w).to_f64_vec().unwrap(),
                parity_tol(dtype),
                &format!("{what} gradient {k}"),
            );
        }
    }
}

/// Finite differences through 20 steps, for each kind: the loss's gradient with respect to
/// the input and every weight (float64, central differences on a sample of elements).
#[test]
fn gradients_through_twenty_steps_match_finite_differences() {
    let mut rng = Generator::from_seed(31);
    let x = rng.uniform(&[2, 20, 3], -1.0, 1.0, DType::F64).unwrap();
    let w = rng.uniform(&[2, 20, 4], -1.0, 1.0, DType::F64).unwrap();
    for kind in ["SimpleRNN", "LSTM", "GRU", "GRU-before"] {
        let options: Value = match kind {
            "GRU-before" => serde_json::json!({"return_sequences": true, "reset_after": false}),
            _ => serde_json::json!({"return_sequences": true}),
        };
        let rnn = Rnn::build(kind.trim_end_matches("-before"), &options, 3, 4, DType::F64);
        let loss = |x: &Tensor| -> f64 {
            let (y, _) = rnn.run(x, None).unwrap();
            ops::reduce_sum(&ops::multiply(&y, &w).unwrap(), Axes::All, false)
                .unwrap()
                .item()
                .unwrap()
        };
        let tape = GradientTape::new();
        tape.watch(&x);
        let (y, _) = rnn.run(&x, None).unwrap();
        let l = ops::reduce_sum(&ops::multiply(&y, &w).unwrap(), Axes::All, false).unwrap();
        let vars = rnn.layer().trainable_variables();
        let mut sources: Vec<&dyn Source> = vec![&x];
        sources.extend(vars.iter().map(|v| v as &dyn Source));
        let grads = tape
            .gradient_with(&[&l], &sources[..], &GradientOptions::default())
            .unwrap();
        let eps = 1e-6;
        // the input
        let gx = grads[0].as_ref().unwrap().to_f64_vec().unwrap();
        let xv = x.to_f64_vec().unwrap();
        for i in (0..xv.len()).step_by(7) {
            let at = |d: f64| {
                let mut v = xv.clone();
                v[i] += d;
                loss(&Tensor::from_vec(v, x.shape()).unwrap())
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (fd - gx[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{kind} x[{i}]: tape {} fd {fd}",
                gx[i]
            );
        }
        // every weight, a sample of its elements
        for (k, var) in vars.iter().enumerate() {
            let g = grads[k + 1].as_ref().unwrap().to_f64_vec().unwrap();
            let base = var.value().to_f64_vec().unwrap();
            for i in (0..base.len()).step_by(5) {
                let at = |d: f64| {
                    let mut v = base.clone();
                    v[i] += d;
                    var.assign(&Tensor::from_vec(v, var.shape()).unwrap())
                        .unwrap();
                    loss(&x)
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                var.assign(&Tensor::from_vec(base.clone(), var.shape()).unwrap())
                    .unwrap();
                assert!(
                    (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{kind} weight {k}[{i}]: tape {} fd {fd}",
                    g[i]
                );
            }
        }
    }
}

/// A cell step under `vmap` equals the cell on each example, and a 1,000-step sequence runs
/// (no recursion in the loop or in the tape's backward pass) with a finite gradient.
#[test]
fn a_cell_batches_under_vmap_and_long_sequences_run() {
    let mut rng = Generator::from_seed(32);
    let lstm = LSTM::new("lstm", 3, 4, DType::F64, &mut rng).unwrap();
    let x = rng.uniform(&[5, 3], -1.0, 1.0, DType::F64).unwrap();
    let h = rng.uniform(&[5, 4], -1.0, 1.0, DType::F64).unwrap();
    let c = rng.uniform(&[5, 4], -1.0, 1.0, DType::F64).unwrap();
    let batched = lstm.cell(&x, &[h.clone(), c.clone()]).unwrap();
    let per_example = gradtape::vmap(|a: &[Tensor]| {
        let one = |t: &Tensor| ops::expand_dims(t, 0);
        let s = lstm.cell(&one(&a[0])?, &[one(&a[1])?, one(&a[2])?])?;
        ops::squeeze(&s[1], &[0])
    })
    .call(&[x.clone(), h.clone(), c.clone()])
    .unwrap();
    assert_close(
        &per_example.to_f64_vec().unwrap(),
        &batched[1].to_f64_vec().unwrap(),
        1e-14,
        "vmap of a cell",
    );

    let gru = GRU::new("gru", 2, 8, DType::F32, &mut rng).unwrap();
    let long = rng.uniform(&[1, 1000, 2], -1.0, 1.0, DType::F32).unwrap();
    let tape = GradientTape::new();
    tape.watch(&long);
    let y = gru.call(&long, true).unwrap();
    let l = ops::reduce_sum(&y, Axes::All, false).unwrap();
    let [g] = tape.gradient(&l, [&long]).unwrap();
    let g = g.unwrap();
    assert_eq!(g.shape(), &[1, 1000, 2]);
    assert!(g.to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()));
}

/// Wrong rank, width, dtype, zero-length sequences and initial states of the wrong shape:
/// errors naming the layer.
#[test]
fn recurrent_layers_reject_bad_inputs() {
    let mut rng = Generator::from_seed(33);
    let lstm = LSTM::new("enc", 3, 4, DType::F32, &mut rng).unwrap();
    let err = |r: Result<Tensor>| r.unwrap_err().to_string();
    let e = err(lstm.call(&Tensor::ones(&[2, 3], DType::F32).unwrap(), false));
    assert!(
        e.starts_with("LSTM:") && e.contains("\"enc\"") && e.contains("[2, 3]"),
        "{e}"
    );
    let e = err(lstm.call(&Tensor::ones(&[2, 5, 4], DType::F32).unwrap(), false));
    assert!(e.contains("[2, 5, 4]"), "{e}");
    let e = err(lstm.call(&Tensor::ones(&[2, 0, 3], DType::F32).unwrap(), false));
    assert!(e.contains("time ≥ 1"), "{e}");
    let e = err(lstm.call(&Tensor::ones(&[2, 5, 3], DType::F64).unwrap(), false));
    assert!(e.contains("float32") && e.contains("float64"), "{e}");
    let x = Tensor::ones(&[2, 5, 3], DType::F32).unwrap();
    let h = Tensor::zeros(&[2, 4], DType::F32).unwrap();
    let e = lstm
        .call_with_state(&x, Some(std::slice::from_ref(&h)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 initial state"), "{e}");
    let bad = Tensor::zeros(&[3, 4], DType::F32).unwrap();
    let e = lstm
        .call_with_state(&x, Some(&[h, bad]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[3, 4]"), "{e}");
    assert!(SimpleRNN::new("r", 0, 4, DType::F32, &mut rng).is_err());
    assert!(GRU::new("g", 3, 4, DType::I64, &mut rng).is_err());
}

/// Keras's initializers: the recurrent kernel has orthonormal rows (`[units, gates · units]`,
/// Keras's `Orthogonal` of that shape), the LSTM's forget bias starts at 1.
#[test]
fn recurrent_weights_start_as_keras_starts_them() {
    let mut rng = Generator::from_seed(34);
    let lstm = LSTM::new("l", 3, 5, DType::F64, &mut rng).unwrap();
    let u = lstm.recurrent_kernel().value();
    let uut = ops::matmul_transposed(&u, &u, false, true).unwrap();
    assert_close(
        &uut.to_f64_vec().unwrap(),
        &Tensor::eye(5, DType::F64).unwrap().to_f64_vec().unwrap(),
        1e-12,
        "U Uᵀ = I",
    );
    let b = lstm.bias().value().to_vec::<f64>().unwrap();
    assert_eq!(b, [vec![0.0; 5], vec![1.0; 5], vec![0.0; 10]].concat());
    let rnn = SimpleRNN::new("s", 3, 6, DType::F64, &mut rng).unwrap();
    let u = rnn.recurrent_kernel().value();
    let utu = ops::matmul_transposed(&u, &u, true, false).unwrap();
    assert_close(
        &utu.to_f64_vec().unwrap(),
        &Tensor::eye(6, DType::F64).unwrap().to_f64_vec().unwrap(),
        1e-12,
        "square: orthogonal",
    );
}

/// `Masking` marks all-equal steps, `Embedding::compute_mask` id 0, and a recurrent layer
/// given either mask treats a padded sequence as the shorter one it pads.
#[test]
fn masks_make_padding_invisible() {
    let mut rng = Generator::from_seed(35);
    let gru = GRU::new("gru", 2, 3, DType::F64, &mut rng).unwrap();
    let short = rng.uniform(&[1, 3, 2], -1.0, 1.0, DType::F64).unwrap();
    let pad = Tensor::zeros(&[1, 2, 2], DType::F64).unwrap();
    let padded = ops::concat(&[short.clone(), pad], 1).unwrap();
    let mask = Masking::new(0.0).compute_mask(&padded).unwrap();
    assert_eq!(
        mask.to_vec::<bool>().unwrap(),
        vec![true, true, true, false, false]
    );
    let (a, sa) = gru.call_with_state(&short, None).unwrap();
    let (b, sb) = gru.call_with_mask(&padded, Some(&mask), None).unwrap();
    assert_eq!(a.to_vec::<f64>().unwrap(), b.to_vec::<f64>().unwrap());
    assert_eq!(
        sa[0].to_vec::<f64>().unwrap(),
        sb[0].to_vec::<f64>().unwrap()
    );
    // Masking's own output zeroes the padded steps
    let x = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 0.0], &[1, 2, 2]).unwrap();
    let y = Masking::new(0.0).call(&x, false).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), vec![1.0, 0.0, 0.0, 0.0]);
    // an embedding's id 0 is padding
    let emb = gradtape::layers::Embedding::new("e", 5, 2, DType::F64, &mut rng).unwrap();
    let ids = Tensor::from_vec(vec![3i64, 1, 0, 0], &[1, 4]).unwrap();
    let m = emb.compute_mask(&ids).unwrap();
    assert_eq!(m.to_vec::<bool>().unwrap(), vec![true, true, false, false]);
    let e = gru
        .call_with_mask(&padded, Some(&m), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[1, 5]") && e.contains("[1, 4]"), "{e}");
}

/// Dropout only while training, one mask per sequence; `stateful` layers start where the last
/// call ended until `reset_states`, and refuse another batch size.
#[test]
fn dropout_and_stateful_layers_behave_as_keras() {
    let mut rng = Generator::from_seed(36);
    let x = rng.uniform(&[4, 6, 3], -1.0, 1.0, DType::F64).unwrap();
    let plain = LSTM::new("l", 3, 5, DType::F64, &mut Generator::from_seed(9)).unwrap();
    let dropped = LSTM::new("l", 3, 5, DType::F64, &mut Generator::from_seed(9))
        .unwrap()
        .dropout(0.5, 0.3)
        .unwrap();
    let v = |t: Tensor| t.to_vec::<f64>().unwrap();
    // inference: dropout does nothing
    assert_eq!(
        v(plain.call(&x, false).unwrap()),
        v(dropped.call(&x, false).unwrap())
    );
    // training: masks change the answer, a new mask at each call
    let a = v(dropped.call(&x, true).unwrap());
    let b = v(dropped.call(&x, true).unwrap());
    assert_ne!(a, v(plain.call(&x, true).unwrap()));
    assert_ne!(a, b);
    // an input feature dropped for one example is dropped at every step: with recurrent
    // dropout off and all of an example's features dropped, the LSTM sees zeros throughout
    let all_dropped = LSTM::new("l", 1, 2, DType::F64, &mut Generator::from_seed(3))
        .unwrap()
        .dropout(0.5, 0.0)
        .unwrap();
    let ones = Tensor::ones(&[64, 4, 1], DType::F64).unwrap();
    let zeros_out = v(all_dropped
        .call(&Tensor::zeros(&[1, 4, 1], DType::F64).unwrap(), false)
        .unwrap());
    let out = v(all_dropped.call(&ones, true).unwrap());
    let silent = out.chunks(2).filter(|r| r == &&zeros_out[..]).count();
    assert!(
        (16..=48).contains(&silent),
        "{silent} of 64 examples lost their one feature"
    );
    assert!(LSTM::new("l", 3, 5, DType::F64, &mut rng)
        .unwrap()
        .dropout(1.0, 0.0)
        .is_err());
    // a bad input is the layer's error, dropout or not
    let e = dropped
        .call(&Tensor::ones(&[4, 6, 2], DType::F64).unwrap(), true)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("LSTM:") && e.contains("[4, 6, 2]"), "{e}");

    // stateful: the second call continues from the first's final states
    let gru = GRU::new("g", 3, 5, DType::F64, &mut Generator::from_seed(4))
        .unwrap()
        .stateful(true);
    let twin = GRU::new("g", 3, 5, DType::F64, &mut Generator::from_seed(4)).unwrap();
    let x2 = rng.uniform(&[4, 6, 3], -1.0, 1.0, DType::F64).unwrap();
    let (_, s1) = twin.call_with_state(&x, None).unwrap();
    let first = v(gru.call(&x, false).unwrap());
    assert_eq!(first, v(twin.call(&x, false).unwrap()));
    let second = v(gru.call(&x2, false).unwrap());
    assert_eq!(second, v(twin.call_with_state(&x2, Some(&s1)).unwrap().0));
    gru.reset_states();
    assert_eq!(
        v(gru.call(&x2, false).unwrap()),
        v(twin.call(&x2, false).unwrap())
    );
    let e = gru
        .call(&Tensor::ones(&[2, 6, 3], DType::F64).unwrap(), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stateful") && e.contains("reset_states"), "{e}");
}

/// The whole unrolled sequence compiles (`gradtape::function`): a training step through a
/// stacked LSTM, a GRU and a bidirectional SimpleRNN, with its gradients, equals the eager
/// step bit for bit, and the graph is traced once (`gradtape train --model lstm|gru` runs
/// its steps this way).
#[test]
fn a_compiled_step_through_the_recurrent_layers_equals_eager() {
    let mut rng = Generator::from_seed(12);
    let lstm = LSTM::new("lstm", 3, 5, DType::F32, &mut rng)
        .unwrap()
        .return_sequences(true);
    let gru = GRU::new("gru", 5, 4, DType::F32, &mut rng)
        .unwrap()
        .return_sequences(true);
    let bi = Bidirectional::new(
        SimpleRNN::new("rnn", 4, 3, DType::F32, &mut rng).unwrap(),
        MergeMode::Concat,
        &mut rng,
    )
    .unwrap();
    let mut vars = lstm.trainable_variables();
    vars.extend(gru.trainable_variables());
    vars.extend(bi.trainable_variables());
    let step = |a: &[Tensor]| -> Result<Vec<Tensor>> {
        let tape = GradientTape::new();
        let h = bi.call(&gru.call(&lstm.call(&a[0], true)?, true)?, true)?;
        let y = ops::reduce_mean(&ops::square(&h)?, Axes::All, false)?;
        let mut out = vec![y];
        for g in tape.gradient(&out[0], &vars)? {
            out.push(g.expect("every weight is used"));
        }
        Ok(out)
    };
    let x = rng.uniform(&[2, 7, 3], -1.0, 1.0, DType::F32).unwrap();
    let eager = step(std::slice::from_ref(&x)).unwrap();
    let compiled = gradtape::function(step);
    for _ in 0..2 {
        let got: Vec<Tensor> = compiled.call(&[&x]).unwrap();
        assert_eq!(got.len(), eager.len());
        for (g, e) in got.iter().zip(&eager) {
            assert_eq!(g.to_vec::<f32>().unwrap(), e.to_vec::<f32>().unwrap());
        }
    }
    assert_eq!(compiled.tracing_count(), 1);
}
