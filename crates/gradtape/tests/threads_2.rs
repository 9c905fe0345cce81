//! The concurrency stress test on a 2-thread pool, and the case that made one thread's
//! `install` run inside another's step (it needs a pool of exactly two threads).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gradtape::{ops, threading, GradientTape, Variable, VariableOptions};

#[test]
fn stress_on_two_pool_threads() {
    common::global_pool(2);
    common::stress(4, 10);
}

fn named(name: &str) -> Variable {
    Variable::with_options(
        1.0,
        VariableOptions {
            name: Some(name.into()),
            trainable: true,
        },
    )
}

/// Waits (a bounded time) until `flag` is set.
fn wait_for(flag: &AtomicBool) {
    let start = Instant::now();
    while !flag.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Thread A's step waits inside parallel work (a `join` whose second half another pool thread
/// took) while thread B calls `install`. On a shared pool the waiting thread picked up B's
/// closure and ran it inside A's step, so A's tape recorded B's work and watched B's variable.
#[test]
fn another_thread_s_install_never_runs_inside_a_waiting_step() {
    common::global_pool(2);
    common::within("a step waiting while another thread installs", || {
        let a_waiting = Arc::new(AtomicBool::new(false));
        let b_started = Arc::new(AtomicBool::new(false));
        let second_half_started = AtomicBool::new(false);
        let b = {
            let (a_waiting, b_started) = (a_waiting.clone(), b_started.clone());
            std::thread::spawn(move || {
                wait_for(&a_waiting);
                let w = named("b");
                threading::install(|| {
                    b_started.store(true, Ordering::SeqCst);
                    let tape = GradientTape::new();
                    let y = ops::multiply(&w, &w).unwrap();
                    tape.gradient(&y, [&w]).unwrap()[0].is_some()
                })
            })
        };
        let w = named("a");
        let watched = threading::install(|| {
            let tape = GradientTape::new();
            let _ = ops::multiply(&w, &2.0).unwrap();
            rayon::join(
                // Runs here; returns once the other half has been taken by another thread.
                || wait_for(&second_half_started),
                || {
                    second_half_started.store(true, Ordering::SeqCst);
                    a_waiting.store(true, Ordering::SeqCst);
                    // Keeps this half busy until B's closure has started somewhere.
                    wait_for(&b_started);
                },
            );
            tape.watched_variables()
                .iter()
                .filter_map(|v| v.name().map(String::from))
                .collect::<Vec<_>>()
        });
        assert!(b.join().unwrap());
        assert_eq!(
            watched,
            vec!["a".to_string()],
            "B's work ran inside A's step"
        );
    });
}
