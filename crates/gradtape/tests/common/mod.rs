//! Helpers shared by the test files that use them.
#![allow(dead_code)]

use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::Duration;

/// A generous limit for work that takes a second or two: only a deadlock reaches it.
const WATCHDOG: Duration = Duration::from_secs(180);

/// Runs `f` on its own thread and fails the test if it has not finished within [`WATCHDOG`]:
/// a deadlocked test then fails with a message instead of hanging the suite. This is no timing
/// assertion; nothing healthy comes near the limit.
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => {
            panic!(
                "{what}: still running after {} s, deadlocked",
                WATCHDOG.as_secs()
            )
        }
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("{what}: finished without a result"),
        },
    }
}

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
