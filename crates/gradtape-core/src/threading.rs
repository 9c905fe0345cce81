//! Where gradtape's parallel kernels run, and how to run a training loop among them.
//!
//! Large kernels (matrix products, elementwise ops and reductions above about 131,000
//! elements, fused graphs) split their work across the rayon pool of the thread that calls
//! them: rayon's global pool, one thread per core unless `RAYON_NUM_THREADS` says otherwise,
//! or the pool [`install`] lends. Called from a thread outside that pool, each
//! such kernel hands its work over and sleeps until it is done: a wake-up per op, which on a
//! training step of small matrices costs about a fifth of the step (measured on 2 cores, see
//! `BENCHMARKS.md`). [`install`] runs a whole loop on one of the pool's threads instead, so
//! each kernel shares its work with the other threads and no thread waits to be woken.

pub use crate::context::Snapshot;

/// Runs `f` on the threads of a compute pool of its own and returns its result.
///
/// Tapes are per thread, so `f` should make its own (as a training step does). When a tape is
/// recording on the calling thread (or a forward accumulator runs, or a custom gradient's
/// forward function), or the caller already runs on a rayon pool's thread, `f` runs right here
/// instead, so that the tape sees its ops. The calling thread's scopes go along with `f` (a
/// [`Snapshot`]): [`crate::fusion::min_elements`], [`crate::debugging::check_numerics`], the
/// default device of [`crate::device::with_device`] and the levels of running `vmap`s.
///
/// Each `install` that runs at the same time as another gets a pool of its own (one per
/// concurrent caller, made on first need and kept for later calls, at most
/// [`MAX_POOLS`]; beyond that `f` runs on the calling thread). Sharing one pool is what let
/// two training loops mix: a pool thread waiting inside one loop's parallel kernel steals
/// queued work, and if that work is the other thread's `install`, the other loop runs nested
/// inside this one's step, its ops landing on this step's tape. A pool runs one `install` at a
/// time, so the only work its threads can steal is that closure's own kernels.
///
/// ```
/// use gradtape::{ops, threading, Axes, GradientTape, Tensor, Variable};
/// let w = Variable::new(Tensor::ones(&[3], gradtape::DType::F32)?);
/// let grad = threading::install(|| {
///     let tape = GradientTape::new();
///     let loss = ops::reduce_sum(&ops::square(&w)?, Axes::All, false)?;
///     let [g] = tape.gradient(&loss, [&w])?;
///     g.unwrap().to_vec::<f32>()
/// })?;
/// assert_eq!(grad, vec![2.0, 2.0, 2.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some()
        || crate::context::with(|c| c.bound_to_thread().is_some())
    {
        return f();
    }
    let Some(pool) = pools::check_out() else {
        return f();
    };
    let snapshot = snapshot();
    // Called from outside the pool, `install` runs `f` on one of its threads; this thread
    // sleeps meanwhile (it belongs to no pool, so it steals nothing).
    pool.0.install(|| snapshot.run(f))
}

/// The calling thread's scopes, to carry to a thread of your own: `snapshot.run(f)` there runs
/// `f` as if here (see [`Snapshot`]).
///
/// ```
/// use gradtape::{device, threading, Device};
/// let s = device::with_device(Device::Cpu, threading::snapshot)?;
/// let d = std::thread::spawn(move || s.run(device::default_device)).join().unwrap();
/// assert_eq!(d, Device::Cpu);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn snapshot() -> Snapshot {
    crate::context::with(|c| c.snapshot())
}

/// The most compute pools [`install`] keeps, one per `install` running at the same time.
pub const MAX_POOLS: usize = 8;

/// Compute pools for [`install`], each lent to one caller at a time.
mod pools {
    use std::sync::{Arc, Mutex};

    use rayon::{ThreadPool, ThreadPoolBuilder};

    struct Pools {
        free: Vec<Arc<ThreadPool>>,
        made: usize,
    }

    static POOLS: Mutex<Pools> = Mutex::new(Pools {
        free: Vec::new(),
        made: 0,
    });

    fn lock() -> std::sync::MutexGuard<'static, Pools> {
        POOLS.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pool no other `install` is using: a free one, or a new one with as many threads as
    /// rayon's global pool (`RAYON_NUM_THREADS`, else one per core). `None` when
    /// [`super::MAX_POOLS`] are in use or a pool cannot be made.
    pub(super) fn check_out() -> Option<Lent> {
        let mut pools = lock();
        if let Some(p) = pools.free.pop() {
            return Some(Lent(p));
        }
        if pools.made >= super::MAX_POOLS {
            return None;
        }
        let pool = ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("gradtape-compute-{i}"))
            // The size of a main thread's stack: `install` often runs a whole program's work.
            .stack_size(8 << 20)
            .build()
            .ok()?;
        pools.made += 1;
        Some(Lent(Arc::new(pool)))
    }

    /// A pool lent to one `install`; it goes back when dropped, also if `f` panicked.
    pub(super) struct Lent(pub(super) Arc<ThreadPool>);

    impl Drop for Lent {
        fn drop(&mut self) {
            lock().free.push(self.0.clone());
        }
    }
}

/// The number of threads large kernels split their work across.
///
/// ```
/// assert!(gradtape::threading::num_threads() >= 1);
/// ```
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
