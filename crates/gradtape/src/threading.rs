//! Where gradtape's parallel kernels run, and how to run a training loop among them.
//!
//! Large kernels (matrix products, elementwise ops and reductions above about 131,000
//! elements, fused graphs) split their work across rayon's global thread pool, one thread per
//! core unless `RAYON_NUM_THREADS` says otherwise. Called from a thread outside that pool, each
//! such kernel hands its work over and sleeps until it is done: a wake-up per op, which on a
//! training step of small matrices costs about a fifth of the step (measured on 2 cores, see
//! `BENCHMARKS.md`). [`install`] runs a whole loop on one of the pool's threads instead, so
//! each kernel shares its work with the other threads and no thread waits to be woken.

/// Runs `f` on one of the compute pool's threads and returns its result.
///
/// Tapes are per thread, so `f` should make its own (as a training step does). When a tape is
/// recording on the calling thread, `f` runs right here instead, so that the tape sees its ops.
/// The calling thread's [`crate::fusion::min_elements`] setting goes along with `f`.
///
/// ```
/// use gradtape::{ops, threading, Axes, GradientTape, Tensor, Variable};
/// let w = Variable::new(Tensor::ones(&[3], gradtape::DType::F32));
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
    if rayon::current_thread_index().is_some() || crate::tape::any_recording() {
        return f();
    }
    let min = crate::fusion::min_elements();
    // `scope` called from outside the pool runs its body on a pool thread.
    rayon::scope(|_| {
        let before = crate::fusion::min_elements();
        crate::fusion::set_min_elements(min);
        let r = f();
        crate::fusion::set_min_elements(before);
        r
    })
}

/// The number of threads large kernels split their work across.
///
/// ```
/// assert!(gradtape::threading::num_threads() >= 1);
/// ```
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
