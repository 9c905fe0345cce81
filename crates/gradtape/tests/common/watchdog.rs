//! A watchdog for tests that could deadlock (shared with the CLI's trainer tests by `#[path]`).

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
