//! The one per-thread context: every piece of state that changes what an op does on this
//! thread, in one place.
//!
//! Before, it was 16 thread-locals in seven modules, and `threading::install` carried the three
//! it knew of to its pool thread; the others (forward accumulators, custom-gradient frames,
//! vmap levels) were silently left behind, so an accumulator's tangent or a variable read in a
//! `recompute_grad` was lost when the work inside moved. Now what travels is decided here, once:
//! [`Snapshot`] carries the scopes (default device, numerics checking, fusion threshold, the
//! gradient rule being checked) and the vmap levels; what cannot move (tapes, accumulators and
//! custom-gradient frames hold `Rc` state that sees only this thread's ops) is named by
//! [`Context::bound_to_thread`], and work that must see it runs where it is.
//!
//! Each transformation keeps its own part's state and invariants in a module of its own here
//! (`tapes`, `accumulators`, `levels`): they record and look up, and compute nothing, so the
//! context sits below the ops and the transformations that compute sit above them. The one
//! call upwards is through [`Context::recorder`].

use std::cell::{Cell, RefCell};

use crate::backend::device::Device;
use crate::dtype::DType;
use crate::error::Result;
use crate::primitive::{Params, Primitive};
use crate::tensor::{Tensor, WeakTensor};

pub(crate) mod accumulators;
pub(crate) mod levels;
pub(crate) mod scoped;
pub(crate) mod tapes;
pub(crate) mod traces;

/// What `apply` calls for a primitive call that a tape or a forward accumulator watches:
/// `record::record`, the reverse and forward interpreter. It is above the ops (its rules are
/// written with them) and `apply` below, so it is found here, as a JAX trace is found on the
/// trace stack, not imported.
pub(crate) type Recorder =
    fn(&'static Primitive, &[&Tensor], &Params, &Tensor, tapes::Watching) -> Result<()>;

/// Everything per thread, in one `const`-initialised thread-local; the three checks every op
/// pays (`tapes.recording`, `forward.running`, `check_numerics`) are read together in one
/// access (`tapes::Watching::of`, by `ops::apply`).
pub(crate) struct Context {
    /// Where creation functions put new tensors ([`crate::device::with_device`]).
    pub(crate) device: Cell<Device>,
    /// [`crate::debugging::check_numerics`] is on.
    pub(crate) check_numerics: Cell<bool>,
    /// The guards that set `device`, `check_numerics` and (for `no_grad`) the recording
    /// tapes' count, still alive.
    pub(crate) device_scopes: scoped::Scopes<Device>,
    pub(crate) check_numerics_scopes: scoped::Scopes<bool>,
    pub(crate) recording_scopes: scoped::Scopes<usize>,
    /// The forward op whose gradient rule is running, while checking numerics.
    pub(crate) gradient_of: Cell<Option<&'static str>>,
    /// [`crate::fusion::min_elements`].
    pub(crate) fusion_min_elements: Cell<usize>,
    /// Counts tapes and forward accumulators as they start, to order them.
    pub(crate) seq: Cell<u64>,
    /// Reverse mode: tapes and custom-gradient frames.
    pub(crate) tapes: tapes::Tapes,
    /// Forward mode: accumulators.
    pub(crate) forward: accumulators::Accumulators,
    /// Vectorization: vmap levels.
    pub(crate) vmap: levels::Levels,
    /// `gradtape::function`: the traces running.
    pub(crate) traces: traces::Traces,
    /// Set when a tape or an accumulator starts on this thread (`record::interpret_here`);
    /// tapes and accumulators do not travel to other threads, so neither does it.
    pub(crate) recorder: Cell<Option<Recorder>>,
    /// Pending reductions made on this thread, so that one fused run can serve several.
    pub(crate) fusion_waiting: RefCell<Vec<WeakTensor>>,
    /// Recently used scalar constants, direct-mapped by value (see `tensor::creation::scalar_constant`).
    #[allow(clippy::type_complexity)]
    pub(crate) constants: RefCell<Vec<Option<(u64, DType, Tensor)>>>,
}

impl Context {
    const fn new() -> Context {
        Context {
            device: Cell::new(Device::Cpu),
            check_numerics: Cell::new(false),
            device_scopes: scoped::Scopes::new(),
            check_numerics_scopes: scoped::Scopes::new(),
            recording_scopes: scoped::Scopes::new(),
            gradient_of: Cell::new(None),
            fusion_min_elements: Cell::new(crate::backend::fusion::DEFAULT_MIN_ELEMENTS),
            seq: Cell::new(0),
            tapes: tapes::Tapes::new(),
            forward: accumulators::Accumulators::new(),
            vmap: levels::Levels::new(),
            traces: traces::Traces::new(),
            recorder: Cell::new(None),
            fusion_waiting: RefCell::new(Vec::new()),
            constants: RefCell::new(Vec::new()),
        }
    }

    /// Why work that reads or makes tensors must run on this thread, if it must: a recording
    /// tape, a running forward accumulator or a custom gradient's forward sees only the ops
    /// of its own thread.
    pub(crate) fn bound_to_thread(&self) -> Option<&'static str> {
        if self.tapes.any_recording() {
            Some("a gradient tape is recording")
        } else if self.forward.any_running() {
            Some("a forward accumulator is running")
        } else if self.tapes.in_custom_forward() {
            Some("a custom gradient's forward function is running")
        } else if self.traces.active.get() > 0 {
            Some("a function is being traced")
        } else {
            None
        }
    }

    /// What goes along with work moved to another thread.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            device: self.device.get(),
            check_numerics: self.check_numerics.get(),
            gradient_of: self.gradient_of.get(),
            fusion_min_elements: self.fusion_min_elements.get(),
            vmap_levels: self.vmap.levels(),
        }
    }
}

thread_local! {
    static CONTEXT: Context = const { Context::new() };
}

/// Runs `f` with this thread's context.
#[inline(always)]
pub(crate) fn with<R>(f: impl FnOnce(&Context) -> R) -> R {
    CONTEXT.with(f)
}

/// Like [`with`], but `None` while the thread is being torn down (for `Drop` impls that may run
/// then: a tape kept in a thread-local of the user's).
pub(crate) fn try_with<R>(f: impl FnOnce(&Context) -> R) -> Option<R> {
    CONTEXT.try_with(f).ok()
}

/// The calling thread's scopes, to run work on another thread as if it ran here: the default
/// device of [`crate::device::with_device`], [`crate::debugging::check_numerics`],
/// [`crate::fusion::min_elements`] and the levels of the `vmap`s running here (so that one
/// example's tensors can be used there). [`crate::threading::install`] carries one; take one
/// with [`crate::threading::snapshot`] for a thread of your own.
///
/// Tapes, forward accumulators and custom-gradient frames do not travel: like TensorFlow's,
/// they see only the ops of the thread they were made on (`install` runs its work in place
/// while one of them is active, for that reason).
///
/// ```
/// use gradtape::{debugging, ops, threading, Tensor};
/// let snapshot = debugging::check_numerics(threading::snapshot);
/// let e = std::thread::spawn(move || snapshot.run(|| ops::log(&Tensor::scalar(-1.0f32))))
///     .join()
///     .unwrap();
/// assert!(e.unwrap_err().to_string().contains("NaN"));
/// ```
#[derive(Clone, Debug)]
pub struct Snapshot {
    device: Device,
    check_numerics: bool,
    gradient_of: Option<&'static str>,
    fusion_min_elements: usize,
    vmap_levels: Vec<(usize, usize)>,
}

impl Snapshot {
    /// Runs `f` on this thread with the scopes of the thread the snapshot was taken on; this
    /// thread's own come back afterwards, also when `f` panics.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Snapshot);
        impl Drop for Restore {
            fn drop(&mut self) {
                let _ = try_with(|c| {
                    self.0.set(c);
                    c.vmap.forget_copies_of_other_levels();
                });
            }
        }
        let _restore = Restore(with(|c| {
            let before = c.snapshot();
            self.set(c);
            before
        }));
        f()
    }

    fn set(&self, c: &Context) {
        c.device.set(self.device);
        c.check_numerics.set(self.check_numerics);
        c.gradient_of.set(self.gradient_of);
        c.fusion_min_elements.set(self.fusion_min_elements);
        c.vmap.set_levels(&self.vmap_levels);
    }
}
