//! The friction a new user hit in the first ten minutes (issue 10), one test per point: each
//! of these failed to compile, returned a wrong answer or aborted before its fix.

use std::panic::{catch_unwind, AssertUnwindSafe};

use gradtape::layers::{Activation, Dense, Layer, Sequential};
use gradtape::losses::{mean_squared_error, Reduction};
use gradtape::optimizers::{Adam, Optimizer, SGD};
use gradtape::random::Generator;
use gradtape::{
    checkpoint, metrics, ops, s, Axes, DType, GradientTape, Tensor, Variable, VariableOptions,
};

fn v32(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn mlp(seed: u64) -> Sequential {
    let mut rng = Generator::from_seed(seed);
    Sequential::new(vec![
        Box::new(Dense::new("hidden", 3, 8, Activation::Tanh, DType::F32, &mut rng).unwrap()),
        Box::new(Dense::new("out", 8, 1, Activation::Linear, DType::F32, &mut rng).unwrap()),
    ])
}

fn regression_data() -> (Tensor, Tensor) {
    let mut rng = Generator::from_seed(7);
    let x = rng.uniform(&[16, 3], -1.0, 1.0, DType::F32).unwrap();
    let y = ops::reduce_sum(&ops::sin(&x).unwrap(), 1, true).unwrap();
    (x, y)
}

fn mse(model: &Sequential, x: &Tensor, y: &Tensor) -> gradtape::Result<Tensor> {
    mean_squared_error(y, &model.call(x, true)?, Reduction::SumOverBatchSize)
}

// 1. Gradients for a whole model in one line; apply_gradients from zip; minimize.

#[test]
fn gradient_takes_a_models_variables_and_apply_gradients_takes_a_zip() {
    let (x, y) = regression_data();
    let (a, b) = (mlp(1), mlp(1));
    let (va, vb) = (a.trainable_variables(), b.trainable_variables());
    let mut oa = SGD::new(0.1);
    let mut ob = SGD::new(0.1);

    let tape = GradientTape::new();
    let loss = mse(&a, &x, &y).unwrap();
    let grads = tape.gradient(&loss, &va).unwrap(); // &Vec<Variable>
    assert_eq!(grads.len(), 4);
    assert!(grads.iter().all(Option::is_some));
    oa.apply_gradients(grads.into_iter().zip(&va)).unwrap();

    let loss_b = ob.minimize(|| mse(&b, &x, &y), &vb).unwrap();
    assert_eq!(loss.item().unwrap(), loss_b.item().unwrap());
    for (p, q) in va.iter().zip(&vb) {
        assert_eq!(v32(&p.value()), v32(&q.value()), "{:?}", p.name());
    }
    // A slice works as well as a Vec, and a boxed optimizer takes the same forms.
    let mut boxed: Box<dyn Optimizer> = Box::new(SGD::new(0.1));
    let tape = GradientTape::new();
    let loss = mse(&a, &x, &y).unwrap();
    let grads = tape.gradient(&loss, &va[..2]).unwrap();
    assert_eq!(grads.len(), 2);
    boxed.apply_gradients(grads.iter().zip(&va[..2])).unwrap();
    assert_eq!(boxed.iterations(), 1);
}

// 2. Arithmetic that reads like the math.

#[test]
fn operators_chain_and_take_bare_numbers_on_either_side() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
    let w = Variable::new(Tensor::from_vec(vec![3.0f32, 4.0], &[2]).unwrap());
    let y = &x * &w + 1.0;
    assert_eq!(v32(&y), vec![4.0, 9.0]);
    assert_eq!(v32(&(2.0 * &x)), vec![2.0, 4.0]);
    assert_eq!(v32(&(2 * &x - 1)), vec![1.0, 3.0]);
    assert_eq!(v32(&(1.0 / &x)), vec![1.0, 0.5]);
    assert_eq!(v32(&(-&w * 0.5)), vec![-1.5, -2.0]);
    // f64 tensors too: the number takes the tensor's dtype.
    let z = Tensor::from_vec(vec![1.0f64], &[1]).unwrap();
    assert_eq!((0.5 * &z + 2).to_vec::<f64>().unwrap(), vec![2.5]);
    // and the tape sees every step
    let tape = GradientTape::new();
    let loss = (&x * &w + 1.0)
        .square()
        .unwrap()
        .reduce_sum(Axes::All, false)
        .unwrap();
    let [g] = tape.gradient(&loss, [&w]).unwrap();
    assert_eq!(v32(&g.unwrap()), vec![8.0, 36.0]); // 2·(xw+1)·x
}

#[test]
fn an_operator_shape_error_panics_with_the_ops_message_and_ops_returns_it() {
    let a = Tensor::zeros(&[4, 2], DType::F32).unwrap();
    let b = Tensor::zeros(&[3], DType::F32).unwrap();
    let panic = catch_unwind(AssertUnwindSafe(|| &a + &b)).unwrap_err();
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("add") && msg.contains("[4, 2]") && msg.contains("[3]"),
        "{msg}"
    );
    assert!(msg.contains("gradtape::ops::add"), "{msg}");
    let e = ops::add(&a, &b).unwrap_err().to_string();
    assert!(e.contains("[4, 2]") && e.contains("[3]"), "{e}");
    let i = Tensor::from_vec(vec![1i64], &[1]).unwrap();
    let panic = catch_unwind(AssertUnwindSafe(|| &a * &i)).unwrap_err();
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("float32") && msg.contains("int64"), "{msg}");
}

// 3. Conveniences: item, s!, .npy, ndarray.

#[test]
fn item_reads_the_one_element_of_any_rank_and_dtype() {
    assert_eq!(Tensor::scalar(2.5f32).item().unwrap(), 2.5);
    assert_eq!(
        Tensor::from_vec(vec![7i64], &[1, 1])
            .unwrap()
            .item()
            .unwrap(),
        7.0
    );
    assert_eq!(Tensor::scalar(true).item().unwrap(), 1.0);
    let e = Tensor::zeros(&[3], DType::F32)
        .unwrap()
        .item()
        .unwrap_err()
        .to_string();
    assert!(e.contains("item") && e.contains("[3]"), "{e}");
}

#[test]
fn s_slices_like_numpy_as_differentiable_views() {
    let x = Tensor::from_vec((0..24).map(|v| v as f32).collect(), &[2, 3, 4]).unwrap();
    let cases: Vec<(Tensor, Vec<usize>, Vec<f32>)> = vec![
        (
            x.slice(s![1]).unwrap(),
            vec![3, 4],
            (12..24).map(|v| v as f32).collect(),
        ),
        (
            x.slice(s![.., 1..3, -1]).unwrap(),
            vec![2, 2],
            vec![7.0, 11.0, 19.0, 23.0],
        ),
        (x.slice(s![0, -1, ..;2]).unwrap(), vec![2], vec![8.0, 10.0]),
        (
            x.slice(s![0, 0, ..;-1]).unwrap(),
            vec![4],
            vec![3.0, 2.0, 1.0, 0.0],
        ),
        (x.slice(s![0, 1..=2, 3]).unwrap(), vec![2], vec![7.0, 11.0]),
        (
            x.slice(s![..1, ..-2, 2..]).unwrap(),
            vec![1, 1, 2],
            vec![2.0, 3.0],
        ),
    ];
    for (t, shape, values) in cases {
        assert_eq!(t.shape(), &shape[..]);
        assert_eq!(v32(&t), values);
        assert!(t.shares_storage_with(&x), "a slice is a view");
    }
    let e = x.slice(s![2]).unwrap_err().to_string();
    assert!(e.contains("index 2") && e.contains("size 2"), "{e}");
    assert!(x.slice(s![.., .., .., ..]).is_err());
    // Differentiable: the gradient lands in the sliced positions.
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = x.slice(s![1, .., 1..3]).unwrap().square().unwrap();
    let [g] = tape.gradient(&y, [&x]).unwrap();
    let g = v32(&g.unwrap());
    for (i, gv) in g.iter().enumerate() {
        let (a, c) = (i / 12, i % 4);
        let want = if a == 1 && (1..3).contains(&c) {
            2.0 * i as f32
        } else {
            0.0
        };
        assert_eq!(*gv, want, "element {i}");
    }
}

// 4. Accuracy metrics that know what a prediction is.

#[test]
fn accuracies_follow_keras_and_refuse_what_cannot_be_compared() {
    let labels = Tensor::from_vec(vec![1.0f32, 0.0, 1.0, 1.0], &[4]).unwrap();
    let probs = Tensor::from_vec(vec![0.8f32, 0.3, 0.4, 0.9], &[4]).unwrap();
    // What a new user wrote: it used to return 0 without a word.
    let e = metrics::accuracy(&labels, &probs).unwrap_err().to_string();
    assert!(e.contains("binary_accuracy"), "{e}");
    assert_eq!(
        metrics::binary_accuracy(&labels, &probs, 0.5).unwrap(),
        0.75
    );
    let onehot = Tensor::from_vec(vec![0.0f32, 1.0, 0.0, 1.0, 0.0, 0.0], &[2, 3]).unwrap();
    let scores = Tensor::from_vec(vec![0.1f32, 0.7, 0.2, 0.3, 0.3, 0.4], &[2, 3]).unwrap();
    assert_eq!(
        metrics::categorical_accuracy(&onehot, &scores).unwrap(),
        0.5
    );
    let sparse = Tensor::from_vec(vec![1i64, 2], &[2]).unwrap();
    assert_eq!(
        metrics::sparse_categorical_accuracy(&sparse, &scores).unwrap(),
        1.0
    );
    // float labels and a trailing axis of 1, as Keras accepts
    let sparse_f = Tensor::from_vec(vec![1.0f32, 0.0], &[2, 1]).unwrap();
    assert_eq!(
        metrics::sparse_categorical_accuracy(&sparse_f, &scores).unwrap(),
        0.5
    );
    // shapes that cannot be compared are errors, not zeros
    assert!(metrics::sparse_categorical_accuracy(&labels, &scores).is_err());
    assert!(metrics::categorical_accuracy(&sparse, &scores).is_err());
    assert!(metrics::binary_accuracy(&labels, &scores, 0.5).is_err());
    let ints = Tensor::from_vec(vec![1i64, 0, 1, 1], &[4]).unwrap();
    assert!(metrics::accuracy(&ints, &probs).is_err());
}

// 5. An integer makes an int64 variable.

#[test]
fn an_integer_makes_an_int64_variable() {
    let step = Variable::new(0i64);
    assert_eq!(step.dtype(), DType::I64);
    assert_eq!(Variable::new(0).dtype(), DType::I64);
    step.assign_add(&1).unwrap();
    assert_eq!(step.value().to_scalar::<i64>().unwrap(), 1);
    assert_eq!(Variable::new(0.0).dtype(), DType::F32);
    // a bare integer still takes a float tensor's dtype in an op
    let x = Tensor::from_vec(vec![1.5f32], &[1]).unwrap();
    assert_eq!(v32(&ops::add(&x, &1).unwrap()), vec![2.5]);
}

// 6. Models move to and are shared with threads.

#[test]
fn models_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let model = mlp(3);
    assert_send_sync(&model);
    let (x, _) = regression_data();
    let here = model.call(&x, false).unwrap();
    let model = std::sync::Arc::new(model);
    let there = {
        let (m, x) = (model.clone(), x.clone());
        std::thread::spawn(move || m.call(&x, false).unwrap())
            .join()
            .unwrap()
    };
    assert_eq!(v32(&here), v32(&there));
}

// 7. Creation that cannot be allocated is an error.

#[test]
fn creating_a_tensor_too_large_to_allocate_is_an_error() {
    let e = Tensor::zeros(&[1 << 40, 1 << 40], DType::F32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[1099511627776, 1099511627776]"), "{e}");
    let e = Tensor::zeros(&[1 << 20; 3], DType::F32).unwrap_err();
    assert!(
        matches!(e, gradtape::Error::ResourceExhausted { .. }),
        "{e}"
    );
    assert!(Tensor::ones(&[1 << 62], DType::F64).is_err());
    assert!(Tensor::full(&[usize::MAX, 2], 1.0, DType::Bool).is_err());
    assert!(Tensor::eye(1 << 40, DType::F32).is_err());
}

// 8. Layer errors name the layer.

#[test]
fn a_dense_layer_fed_the_wrong_width_names_itself() {
    let model = mlp(0);
    let x = Tensor::zeros(&[4, 2], DType::F32).unwrap();
    let e = model.call(&x, false).unwrap_err().to_string();
    assert!(
        e.contains("\"hidden\"") && e.contains("3 inputs") && e.contains("[4, 2]"),
        "{e}"
    );
    let x64 = Tensor::zeros(&[4, 3], DType::F64).unwrap();
    let e = model.call(&x64, false).unwrap_err().to_string();
    assert!(e.contains("\"hidden\"") && e.contains("float64"), "{e}");
}

// 9. Optimizer state travels with the checkpoint.

#[test]
fn a_run_resumed_from_a_checkpoint_matches_an_uninterrupted_one() {
    let (x, y) = regression_data();
    let train = |model: &Sequential, opt: &mut Adam, steps: usize| {
        let vars = model.trainable_variables();
        for _ in 0..steps {
            opt.minimize(|| mse(model, &x, &y), &vars).unwrap();
        }
    };
    let straight = mlp(5);
    let mut opt = Adam::new(0.05);
    train(&straight, &mut opt, 20);

    let first = mlp(5);
    let mut opt = Adam::new(0.05);
    train(&first, &mut opt, 10);
    let dir = std::env::temp_dir().join(format!("gradtape-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.safetensors");
    let vars = first.trainable_variables();
    checkpoint::save_with_optimizer(&path, &vars, &opt, &Default::default()).unwrap();

    let resumed = mlp(99); // other weights: all of them come from the file
    let mut fresh = Adam::new(0.05);
    checkpoint::restore_with_optimizer(&path, &resumed.trainable_variables(), &mut fresh).unwrap();
    assert_eq!(fresh.iterations(), 10);
    train(&resumed, &mut fresh, 10);
    for (p, q) in straight
        .trainable_variables()
        .iter()
        .zip(&resumed.trainable_variables())
    {
        assert_eq!(v32(&p.value()), v32(&q.value()), "{:?}", p.name());
    }
    // Without the optimizer's state the resumed run differs (what used to happen).
    let plain = mlp(99);
    checkpoint::restore(&path, &plain.trainable_variables()).unwrap();
    train(&plain, &mut Adam::new(0.05), 10);
    assert_ne!(
        v32(&straight.trainable_variables()[0].value()),
        v32(&plain.trainable_variables()[0].value())
    );
    // A checkpoint without optimizer state says so.
    let bare = dir.join("bare.safetensors");
    checkpoint::save(&bare, &vars, &Default::default()).unwrap();
    let e = checkpoint::restore_with_optimizer(&bare, &vars, &mut Adam::new(0.05))
        .unwrap_err()
        .to_string();
    assert!(e.contains("optimizer"), "{e}");
    let named = Variable::with_options(
        0.0,
        VariableOptions {
            name: Some("unused".into()),
            trainable: true,
        },
    );
    assert!(fresh.state(&[named]).unwrap().len() == 1); // just the step count
    std::fs::remove_dir_all(&dir).ok();
}

// 3b. NumPy's .npy files, as NumPy writes them (tools/npy_fixtures.py) and back.

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/npy")
        .join(format!("{name}.npy"))
}

#[test]
fn npy_files_from_numpy_load_with_shape_dtype_and_order() {
    let arange = |t: &Tensor| t.to_f64_vec().unwrap();
    let cases: [(&str, &[usize], DType); 7] = [
        ("f32_c_2x3", &[2, 3], DType::F32),
        ("f64_fortran_2x3x2", &[2, 3, 2], DType::F64),
        ("i32_big_endian_4", &[4], DType::I64),
        ("u8_2x2", &[2, 2], DType::I64),
        ("i16_3", &[3], DType::I64),
        ("i64_scalar", &[], DType::I64),
        ("bool_3", &[3], DType::Bool),
    ];
    for (name, shape, dtype) in cases {
        let t = gradtape::npy::load(&fixture(name)).unwrap();
        assert_eq!((t.shape(), t.dtype()), (shape, dtype), "{name}");
        let want: Vec<f64> = match name {
            "i64_scalar" => vec![5.0],
            "bool_3" => vec![1.0, 0.0, 1.0],
            _ => (0..t.numel()).map(|v| v as f64).collect(),
        };
        assert_eq!(arange(&t), want, "{name}");
    }
    let e = gradtape::npy::load(&fixture("f16_2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("f16_2.npy") && e.contains("f2"), "{e}");
    // a file that is not .npy at all
    let junk = std::env::temp_dir().join(format!("gradtape-junk-{}.npy", std::process::id()));
    std::fs::write(&junk, b"not numpy").unwrap();
    let e = gradtape::npy::load(&junk).unwrap_err().to_string();
    assert!(e.contains("not a valid .npy file"), "{e}");
    std::fs::remove_file(&junk).ok();
}

#[test]
fn npy_save_round_trips_every_dtype_and_views() {
    let dir = std::env::temp_dir().join(format!("gradtape-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = Tensor::from_vec((0..6).map(|v| v as f64 * 0.5).collect(), &[2, 3]).unwrap();
    let tensors = [
        x.clone(),
        ops::transpose(&x, None).unwrap(), // a view: saved in logical order
        ops::cast(&x, DType::F32).unwrap(),
        ops::cast(&x, DType::I64).unwrap(),
        ops::greater(&x, &1.0).unwrap(),
        Tensor::scalar(3i64),
    ];
    for (i, t) in tensors.iter().enumerate() {
        let p = dir.join(format!("{i}.npy"));
        gradtape::npy::save(&p, t).unwrap();
        let back = gradtape::npy::load(&p).unwrap();
        assert_eq!((back.shape(), back.dtype()), (t.shape(), t.dtype()));
        assert_eq!(back.to_f64_vec().unwrap(), t.to_f64_vec().unwrap());
    }
    // the data bytes are what NumPy itself writes for this array (the header's spacing
    // differs: `(2, 3, )` here, `(2, 3)` from NumPy; NumPy reads both)
    let p = dir.join("numpy.npy");
    gradtape::npy::save(&p, &gradtape::npy::load(&fixture("f32_c_2x3")).unwrap()).unwrap();
    let data = |b: Vec<u8>| b[b.iter().position(|&c| c == b'\n').unwrap()..].to_vec();
    assert_eq!(
        data(std::fs::read(&p).unwrap()),
        data(std::fs::read(fixture("f32_c_2x3")).unwrap())
    );
    let e = gradtape::npy::save(&dir.join("no/such/dir.npy"), &x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot write"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
