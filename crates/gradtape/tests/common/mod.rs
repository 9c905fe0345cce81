//! Helpers shared by the test files that use them.
#![allow(dead_code)]

mod watchdog;
pub use watchdog::within;

use gradtape::{ops, threading, Axes, GradientTape, Tensor, Variable, VariableOptions};
use rayon::prelude::*;

/// Makes rayon's global pool `threads` wide (once per test binary) and checks it.
pub fn global_pool(threads: usize) {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    assert_eq!(threading::num_threads(), threads);
}

/// Several OS threads, each training its own variable under `install`, all reading one shared
/// pending tensor and updating one shared counter variable, while par_iter tasks read another
/// pending tensor: no hang, no tape that sees another thread's variable, no lost update.
pub fn stress(os_threads: usize, steps: usize) {
    within("the concurrency stress test", move || {
        let n = 1 << 19;
        let x = Tensor::from_vec(vec![0.5f32; n], &[n]).unwrap();
        let shared = ops::exp(&x).unwrap();
        assert!(!shared.is_realized());
        let counter = Variable::new(Tensor::scalar(0.0f64));
        let want = n as f32 * 0.5 * 0.5f32.exp();
        std::thread::scope(|s| {
            for t in 0..os_threads {
                let (x, shared, counter) = (&x, &shared, &counter);
                s.spawn(move || {
                    let name = format!("w{t}");
                    let w = Variable::with_options(
                        1.0,
                        VariableOptions {
                            name: Some(name.clone()),
                            trainable: true,
                        },
                    );
                    threading::install(|| {
                        for _ in 0..steps {
                            let tape = GradientTape::new();
                            let y = ops::multiply(&ops::multiply(&w, shared).unwrap(), x).unwrap();
                            let loss = ops::reduce_sum(&y, Axes::All, false).unwrap();
                            let watched: Vec<String> = tape
                                .watched_variables()
                                .iter()
                                .filter_map(|v| v.name().map(String::from))
                                .collect();
                            assert_eq!(watched, vec![name.clone()]);
                            let [g] = tape.gradient(&loss, [&w]).unwrap();
                            let g = g.unwrap().to_scalar::<f32>().unwrap();
                            assert!((g - want).abs() <= 1e-5 * want, "{g} vs {want}");
                            counter.assign_add(&1.0).unwrap();
                        }
                    });
                });
            }
            // Meanwhile, tasks on the global pool read a pending tensor of their own.
            let z = ops::sqrt(&ops::add(&x, &0.5).unwrap()).unwrap();
            let sums: Vec<f32> = (0..32)
                .into_par_iter()
                .map(|_| {
                    ops::reduce_sum(&z, Axes::All, false)
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                })
                .collect();
            assert!(sums.iter().all(|&s| s == sums[0] && s == n as f32));
        });
        let total = counter.value().to_scalar::<f64>().unwrap();
        assert_eq!(total, (os_threads * steps) as f64);
    });
}

// ----- Reference fixtures (TensorFlow, JAX) -----

use gradtape::DType;
use serde_json::Value;

/// A fixture file of `tests/fixtures/`, parsed.
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The numbers of a JSON array (or one number); the strings "inf" and "-inf" are infinities
/// (JSON has none).
pub fn numbers(v: &Value) -> Vec<f64> {
    let one = |x: &Value| match x {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        x => x.as_f64().unwrap(),
    };
    match v {
        Value::Array(a) => a.iter().map(one).collect(),
        x => vec![one(x)],
    }
}

/// A tensor written as `{"shape": [...], "values": [...]}`, cast to `dtype`.
pub fn fixture_tensor(v: &Value, dtype: DType) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    Tensor::from_vec(numbers(&v["values"]), &shape)
        .unwrap()
        .cast(dtype)
        .unwrap()
}

/// The parity tolerance against another framework: 2e-5 in float32, 1e-10 in float64.
pub fn parity_tol(dtype: DType) -> f64 {
    if dtype == DType::F32 {
        2e-5
    } else {
        1e-10
    }
}

/// Every element within `tol · (|want| + max|want|)` of the reference.
pub fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (w.abs() + scale + 1e-12),
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

/// The small model the data-parallel tests train (float64, so results compare to 1e-12).
pub fn replica_model(seed: u64) -> gradtape::layers::Sequential {
    use gradtape::layers::{Activation, Dense, Sequential};
    let rng = &mut gradtape::random::Generator::from_seed(seed);
    Sequential::new(vec![
        Box::new(Dense::new("h", 8, 16, Activation::Tanh, DType::F64, rng).unwrap()),
        Box::new(Dense::new("o", 16, 3, Activation::Linear, DType::F64, rng).unwrap()),
    ])
}

/// Ten Adam steps over global batches of 16 of 64 rows; this member trains on its shard of
/// each, the gradients averaged over `comm`. Returns every weight, flattened.
pub fn train_replica(
    comm: &dyn gradtape::distributed::Communicator,
    seed: u64,
) -> gradtape::Result<Vec<f64>> {
    train_replica_batches(comm, seed, 16)
}

/// [`train_replica`] with global batches of `batch` rows, which need not divide evenly among
/// the members (the gradients are then weighted by each shard's rows).
pub fn train_replica_batches(
    comm: &dyn gradtape::distributed::Communicator,
    seed: u64,
    batch: usize,
) -> gradtape::Result<Vec<f64>> {
    use gradtape::distributed::{average_gradients_weighted, broadcast_variables, shard};
    use gradtape::layers::Layer;
    use gradtape::losses::{sparse_categorical_crossentropy, Reduction};
    use gradtape::optimizers::{Adam, Optimizer};
    let m = replica_model(seed);
    let mut data = gradtape::random::Generator::from_seed(5);
    let x = data.uniform(&[64, 8], -1.0, 1.0, DType::F64)?;
    let y = Tensor::from_vec((0..64).map(|i| (i * 7 % 3) as i64).collect(), &[64])?;
    let vars = m.trainable_variables();
    broadcast_variables(comm, &vars, 0)?;
    let mut opt = Adam::new(0.01);
    for step in 0..10 {
        let batch: Vec<i64> = (0..batch)
            .map(|i| ((step * batch + i) % 64) as i64)
            .collect();
        let mine = shard(&batch, comm.rank(), comm.size());
        let rows = Tensor::from_vec(mine.clone(), &[mine.len()])?;
        let (xb, yb) = (ops::gather(&x, &rows, 0)?, ops::gather(&y, &rows, 0)?);
        let tape = GradientTape::new();
        let loss = sparse_categorical_crossentropy(
            &yb,
            &m.call(&xb, true)?,
            true,
            Reduction::SumOverBatchSize,
        )?;
        let grads = average_gradients_weighted(comm, tape.gradient(&loss, &vars)?, mine.len())?;
        opt.apply_gradients(grads.into_iter().zip(&vars))?;
    }
    let mut all = vec![];
    for v in &vars {
        all.extend(v.value().to_vec::<f64>()?);
    }
    Ok(all)
}
