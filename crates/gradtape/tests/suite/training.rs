//! The training toolkit: data handling, checkpoints, losses, a custom model with an optimizer.
//! (The trainer's end-to-end digits test is the CLI's: `gradtape-cli/tests/trainer.rs`.)

use std::path::Path;

use gradtape::data::{read_csv, split_indices, take_rows, Batches, Standardizer, Task};
use gradtape::layers::Layer;
use gradtape::{checkpoint, losses, DType, GradientTape, Tensor, Variable, VariableOptions};

#[test]
fn standardisation_uses_training_statistics_only() {
    let x = Tensor::from_vec(vec![0.0f64, 10.0, 2.0, 10.0, 100.0, 0.0], &[3, 2]).unwrap();
    let st = Standardizer::fit(&take_rows(&x, &[0, 1]).unwrap()).unwrap();
    assert_eq!(st.mean, vec![1.0, 10.0]);
    assert_eq!(st.std, vec![1.0, 0.0]); // the second column is constant in training
    let t = st.transform(&x).unwrap().to_vec::<f64>().unwrap();
    // a feature constant in training is always 0 (issue 20: -10 here, a value the model never
    // saw, multiplied by weights never trained)
    assert_eq!(t, vec![-1.0, 0.0, 1.0, 0.0, 99.0, 0.0]);
}

#[test]
fn splits_and_batches_are_seeded_and_cover_every_row() {
    let (a, b, c) = split_indices(50, 0.2, 0.2, 3).unwrap();
    let (a2, _, _) = split_indices(50, 0.2, 0.2, 3).unwrap();
    assert_eq!(a, a2);
    let mut all: Vec<i64> = a.iter().chain(&b).chain(&c).copied().collect();
    all.sort();
    assert_eq!(all, (0..50).collect::<Vec<_>>());
    assert_ne!(a, split_indices(50, 0.2, 0.2, 4).unwrap().0);
    let x = Tensor::from_vec((0..10).map(|v| v as f32).collect(), &[10, 1]).unwrap();
    let y = Tensor::from_vec((0..10).collect::<Vec<i64>>(), &[10]).unwrap();
    let mut seen = vec![];
    for b in Batches::new(&x, &y, 3, Some(9), false).unwrap() {
        let (xb, yb) = b.unwrap();
        // rows stay paired
        assert_eq!(
            xb.to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| *v as i64)
                .collect::<Vec<_>>(),
            yb.to_vec::<i64>().unwrap()
        );
        seen.extend(yb.to_vec::<i64>().unwrap());
    }
    assert_ne!(seen, (0..10).collect::<Vec<_>>(), "shuffled");
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    assert!(split_indices(10, 0.6, 0.5, 0).is_err());
}

#[test]
fn bad_tables_name_the_line_and_column() {
    let p = std::env::temp_dir().join(format!("gradtape-bad-table-{}.csv", std::process::id()));
    std::fs::write(&p, "a,b,label\n1,2,x\n3,oops,y\n").unwrap();
    let e = read_csv(&p)
        .unwrap()
        .dataset("label", Task::Classification, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":3:") && e.contains("\"b\"") && e.contains("oops"),
        "{e}"
    );
    let e = read_csv(&p)
        .unwrap()
        .dataset("nope", Task::Classification, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope") && e.contains("a, b, label"), "{e}");
    std::fs::write(&p, "a,b\n1,2\n3\n").unwrap();
    assert!(read_csv(&p).unwrap_err().to_string().contains(":3:"));
    std::fs::remove_file(&p).unwrap();
}

fn named(name: &str, t: Tensor) -> Variable {
    Variable::with_options(
        t,
        VariableOptions {
            name: Some(name.into()),
            trainable: true,
        },
    )
}

#[test]
fn checkpoints_round_trip_and_reject_bad_files() {
    let dir = std::env::temp_dir().join(format!("gradtape-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    let k = named(
        "dense/kernel",
        Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap(),
    );
    let b = named(
        "dense/bias",
        Tensor::from_vec(vec![0.5f64, 1.5, 2.5], &[3]).unwrap(),
    );
    let meta = [("classes".to_string(), "a,b".to_string())]
        .into_iter()
        .collect();
    checkpoint::save(&path, &[k.clone(), b.clone()], &meta).unwrap();
    let ck = checkpoint::load(&path).unwrap();
    assert_eq!(ck.metadata["classes"], "a,b");
    assert_eq!(
        ck.tensors["dense/kernel"].to_vec::<f32>().unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    k.assign(&Tensor::zeros(&[2, 3], DType::F32).unwrap())
        .unwrap();
    checkpoint::restore(&path, &[k.clone(), b.clone()]).unwrap();
    assert_eq!(k.value().to_vec::<f32>().unwrap()[5], 6.0);
    // no temporary file left behind
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 5]).unwrap();
    let e = checkpoint::load(&truncated).unwrap_err().to_string();
    assert!(
        e.contains("truncated.safetensors") && e.contains("not a valid safetensors file"),
        "{e}"
    );
    let corrupt = dir.join("corrupt.safetensors");
    let mut c = bytes.clone();
    c[12] = b'#';
    std::fs::write(&corrupt, &c).unwrap();
    assert!(checkpoint::load(&corrupt).is_err());
    std::fs::write(&corrupt, b"abc").unwrap();
    assert!(checkpoint::load(&corrupt).is_err());

    // wrong shape and wrong dtype: one message listing both, and nothing assigned
    let k2 = named("dense/kernel", Tensor::zeros(&[3, 2], DType::F32).unwrap());
    let b2 = named("dense/bias", Tensor::zeros(&[3], DType::F32).unwrap());
    let missing = named("other", Tensor::zeros(&[1], DType::F32).unwrap());
    let e = checkpoint::restore(&path, &[k2.clone(), b2.clone(), missing])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"dense/kernel\" is float32 [2, 3] in the file but float32 [3, 2]"),
        "{e}"
    );
    assert!(
        e.contains("\"dense/bias\" is float64 [3] in the file but float32 [3]"),
        "{e}"
    );
    assert!(e.contains("\"other\" is missing"), "{e}");
    assert_eq!(k2.value().to_vec::<f32>().unwrap(), vec![0.0; 6]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_checkpoint_written_by_python_safetensors_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras_weights.safetensors");
    let ck = checkpoint::load(&p).unwrap();
    assert_eq!(ck.metadata["made_by"], "tools/tf_reference.py");
    let k = &ck.tensors["dense/kernel"];
    assert_eq!((k.shape(), k.dtype()), (&[2usize, 3][..], DType::F32));
    assert_eq!(
        k.to_vec::<f32>().unwrap(),
        vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    );
    assert_eq!(ck.tensors["step"].to_scalar::<i64>().unwrap(), 7);
    assert_eq!(
        ck.tensors["weights64"].to_vec::<f64>().unwrap(),
        vec![1.5, -2.25]
    );
}

#[test]
fn loss_gradients_match_finite_differences_and_stay_finite_at_extreme_logits() {
    let t = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 0.0, 1.0, 0.0], &[2, 3]).unwrap();
    let labels = Tensor::from_vec(vec![0i64, 1], &[2]).unwrap();
    let x0 = vec![0.3f64, -1.2, 2.0, 0.7, 0.1, -0.4];
    type LossFn = Box<dyn Fn(&Tensor) -> Tensor>;
    let r = losses::Reduction::SumOverBatchSize;
    let probs = |x: &Tensor| gradtape::ops::sigmoid(x).unwrap();
    let fns: Vec<(&str, LossFn)> = vec![
        (
            "mse",
            Box::new(move |x| losses::mean_squared_error(&t.clone(), x, r).unwrap()),
        ),
        (
            "huber",
            Box::new(move |x| {
                losses::huber(&Tensor::zeros(&[2, 3], DType::F64).unwrap(), x, 0.5, r).unwrap()
            }),
        ),
        (
            "bce_logits",
            Box::new(move |x| {
                losses::binary_crossentropy(&Tensor::ones(&[2, 3], DType::F64).unwrap(), x, true, r)
                    .unwrap()
            }),
        ),
        (
            "bce_probs",
            Box::new(move |x| {
                losses::binary_crossentropy(
                    &Tensor::ones(&[2, 3], DType::F64).unwrap(),
                    &probs(x),
                    false,
                    r,
                )
                .unwrap()
            }),
        ),
        (
            "cce_logits",
            Box::new(move |x| {
                losses::categorical_crossentropy(
                    &Tensor::from_vec(vec![0.0f64, 1.0, 0.0, 1.0, 0.0, 0.0], &[2, 3]).unwrap(),
                    x,
                    true,
                    r,
                )
                .unwrap()
            }),
        ),
        (
            "scce_logits",
            Box::new(move |x| {
                losses::sparse_categorical_crossentropy(&labels, x, true, r).unwrap()
            }),
        ),
    ];
    for (name, f) in &fns {
        let x = Tensor::from_vec(x0.clone(), &[2, 3]).unwrap();
        let tape = GradientTape::new();
        tape.watch(&x);
        let [g] = tape.gradient(&f(&x), [&x]).unwrap();
        let g = g.unwrap().to_vec::<f64>().unwrap();
        for j in 0..6 {
            let at = |d: f64| {
                let mut v = x0.clone();
                v[j] += d;
                f(&Tensor::from_vec(v, &[2, 3]).unwrap())
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
            assert!(
                (g[j] - fd).abs() < 1e-6,
                "{name}[{j}]: tape {} fd {fd}",
                g[j]
            );
        }
        // extreme logits: finite value and gradient
        let big = Tensor::from_vec(
            vec![1000.0f64, -1000.0, 0.0, -1000.0, 1000.0, 500.0],
            &[2, 3],
        )
        .unwrap();
        let tape = GradientTape::new();
        tape.watch(&big);
        let l = f(&big);
        let [g] = tape.gradient(&l, [&big]).unwrap();
        assert!(
            l.to_scalar::<f64>().unwrap().is_finite(),
            "{name}: loss at ±1000"
        );
        assert!(
            g.unwrap()
                .to_vec::<f64>()
                .unwrap()
                .iter()
                .all(|v| v.is_finite()),
            "{name}: gradient at ±1000"
        );
    }
}

#[test]
fn a_custom_model_struct_trains_with_an_optimizer() {
    use gradtape::optimizers::{Optimizer, SGD};
    struct Regression {
        a: Variable,
        b: Variable,
    }
    impl Layer for Regression {
        fn call(&self, x: &Tensor, _: bool) -> gradtape::Result<Tensor> {
            gradtape::ops::add(&self.a, &gradtape::ops::multiply(&self.b, x)?)
        }
        fn trainable_variables(&self) -> Vec<Variable> {
            vec![self.a.clone(), self.b.clone()]
        }
    }
    let m = Regression {
        a: Variable::new(0.0),
        b: Variable::new(0.0),
    };
    let x = Tensor::from_vec(vec![0.0f32, 1.0, 2.0, 3.0], &[4]).unwrap();
    let y = Tensor::from_vec(vec![1.0f32, 3.0, 5.0, 7.0], &[4]).unwrap();
    let mut opt = SGD::new(0.05);
    for _ in 0..500 {
        let tape = GradientTape::new();
        let loss = losses::mean_squared_error(
            &y,
            &m.call(&x, true).unwrap(),
            losses::Reduction::SumOverBatchSize,
        )
        .unwrap();
        let [da, db] = tape.gradient(&loss, [&m.a, &m.b]).unwrap();
        opt.apply_gradients(&[(da, &m.a), (db, &m.b)]).unwrap();
    }
    assert!((m.a.value().to_scalar::<f32>().unwrap() - 1.0).abs() < 1e-2);
    assert!((m.b.value().to_scalar::<f32>().unwrap() - 2.0).abs() < 1e-2);
}

/// The built-in schedules computed with ops (what a step uses, so that a traced step
/// recomputes the rate) give the bits of their host form at every step, edge cases included:
/// unsorted boundaries, a staircase, no decay steps, a warm-up.
#[test]
fn schedules_give_the_same_rate_with_ops_as_on_the_host() {
    use gradtape::optimizers::*;
    let schedules: Vec<(&str, Box<dyn LearningRateSchedule>)> = vec![
        (
            "exponential",
            Box::new(ExponentialDecay {
                initial_learning_rate: 0.1,
                decay_steps: 7,
                decay_rate: 0.93,
                staircase: false,
            }),
        ),
        (
            "staircase, no decay steps",
            Box::new(ExponentialDecay {
                initial_learning_rate: 0.3,
                decay_steps: 0,
                decay_rate: 0.5,
                staircase: true,
            }),
        ),
        (
            "piecewise, unsorted",
            Box::new(PiecewiseConstantDecay {
                boundaries: vec![3, 9, 7, 20],
                values: vec![0.1, 0.05, 0.02],
            }),
        ),
        (
            "cosine",
            Box::new(CosineDecay {
                initial_learning_rate: 0.01,
                decay_steps: 30,
                alpha: 0.1,
                warmup_target: None,
                warmup_steps: 0,
            }),
        ),
        (
            "cosine with warm-up",
            Box::new(CosineDecay {
                initial_learning_rate: 0.001,
                decay_steps: 25,
                alpha: 0.0,
                warmup_target: Some(0.02),
                warmup_steps: 6,
            }),
        ),
    ];
    for (name, s) in &schedules {
        for step in 0..60u64 {
            let host = s.at(step);
            let ops = s
                .at_tensor(&Tensor::scalar(step as i64))
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert_eq!(
                ops.to_bits(),
                host.to_bits(),
                "{name} at step {step}: {ops} vs {host}"
            );
        }
    }
}

/// The optimizers keep their step count and slots in variables (Keras's `iterations` and slot
/// variables): a step reads and assigns them, so changing one changes the next step.
#[test]
fn optimizer_state_lives_in_variables() {
    use gradtape::optimizers::*;
    let w = named("w", Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap());
    let g = Tensor::from_vec(vec![0.5f32, -1.0], &[2]).unwrap();
    let mut opt = SGD::new(0.1).momentum(0.9);
    opt.apply_gradients([(g.clone(), &w)]).unwrap();
    opt.apply_gradients([(g.clone(), &w)]).unwrap();
    let vars = opt.variables();
    let names: Vec<&str> = vars.iter().map(|v| v.name().unwrap()).collect();
    assert_eq!(names, ["iterations", "w/slot0"]);
    assert!(vars.iter().all(|v| !v.trainable()));
    assert_eq!(opt.iterations(), 2);
    assert_eq!(vars[0].value().to_scalar::<i64>().unwrap(), 2);
    // momentum zeroed through its variable: the next step is a first step again
    vars[1]
        .assign(&Tensor::zeros(&[2], gradtape::DType::F32).unwrap())
        .unwrap();
    let before = w.value().to_vec::<f32>().unwrap();
    opt.apply_gradients([(g.clone(), &w)]).unwrap();
    let after = w.value().to_vec::<f32>().unwrap();
    for ((b, a), g) in before.iter().zip(&after).zip(g.to_vec::<f32>().unwrap()) {
        assert_eq!(*a, b - 0.1f32 * g, "a first step from {b}");
    }
    // the step count read by a schedule comes from the variable
    let mut decayed = SGD::new(PiecewiseConstantDecay {
        boundaries: vec![4],
        values: vec![1.0, 0.5],
    });
    assert_eq!(decayed.learning_rate(), 1.0);
    decayed
        .iterations_variable()
        .assign(&Tensor::scalar(5i64))
        .unwrap();
    assert_eq!((decayed.iterations(), decayed.learning_rate()), (5, 0.5));
    let v = Variable::new(0.0);
    decayed
        .apply_gradients([(Tensor::scalar(1.0f32), &v)])
        .unwrap();
    assert_eq!(
        v.value().to_scalar::<f32>().unwrap(),
        -0.5,
        "the rate of step 5"
    );
    // the rule called directly on slot values (`update`) gives what `apply_gradients` does
    let x = Tensor::from_vec(vec![0.5f32, -3.0], &[2]).unwrap();
    let adam = Adam::new(0.1).amsgrad(true);
    let mut slots = vec![Tensor::zeros(&[2], gradtape::DType::F32).unwrap(); 3];
    let direct = adam.update(&x, &g, 0.1, 1.0, &mut slots).unwrap();
    let (w2, mut applied) = (Variable::new(x.clone()), Adam::new(0.1).amsgrad(true));
    applied.apply_gradients([(g.clone(), &w2)]).unwrap();
    assert_eq!(
        direct.to_vec::<f32>().unwrap(),
        w2.value().to_vec::<f32>().unwrap()
    );
    let kept: Vec<Vec<f32>> = applied.variables()[1..]
        .iter()
        .map(|s| s.value().to_vec().unwrap())
        .collect();
    let returned: Vec<Vec<f32>> = slots.iter().map(|s| s.to_vec().unwrap()).collect();
    assert_eq!(kept, returned, "the slots come back updated");
}
