//! The concurrency stress test on a 16-thread pool (more threads than this machine's cores,
//! which is how users oversubscribe).

mod common;

#[test]
fn stress_on_sixteen_pool_threads() {
    common::global_pool(16);
    common::stress(6, 8);
}
