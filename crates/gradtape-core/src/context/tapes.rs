//! Reverse mode's state: this thread's tapes, their entries, and the custom-gradient frames,
//! with what records on them without computing anything (an entry, a cut, a watched variable).
//! What computes (a primitive's rules, a variable's per-example copy) is in `record`, above
//! the ops; the backward pass and the handles users hold are in `tape`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::context;
use crate::context::scoped::Entered;
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::{Tensor, TensorId};
use crate::variable::Variable;

// ---------------------------------------------------------------------------------------------
// Bookkeeping types

/// Tensor ids are sequential: a multiplicative hash spreads them over the table cheaply.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type IdSet = HashSet<TensorId, BuildHasherDefault<IdHasher>>;
pub(crate) type IdMap<V> = HashMap<TensorId, V, BuildHasherDefault<IdHasher>>;

/// A backward function: given the gradient of the output and which inputs need a gradient,
/// pushes one `Option` per input (`None`: not differentiable there, or not needed) onto a
/// buffer the backward pass reuses.
pub(crate) type Backward = dyn Fn(&Tensor, &[bool], &mut Vec<Option<Tensor>>) -> Result<()>;

/// Input ids, inline for the common case of at most three inputs.
#[derive(Clone)]
pub(crate) enum Ids {
    Inline([TensorId; 3], u8),
    Heap(Rc<[TensorId]>),
}

impl Ids {
    pub(crate) fn new(ids: impl ExactSizeIterator<Item = TensorId>) -> Self {
        if ids.len() <= 3 {
            let mut a = [0; 3];
            let n = ids.len();
            for (slot, id) in a.iter_mut().zip(ids) {
                *slot = id;
            }
            Ids::Inline(a, n as u8)
        } else {
            Ids::Heap(ids.collect())
        }
    }
    pub(crate) fn as_slice(&self) -> &[TensorId] {
        match self {
            Ids::Inline(a, n) => &a[..*n as usize],
            Ids::Heap(v) => v,
        }
    }
}

/// One recorded operation.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) op: &'static str,
    pub(crate) inputs: Ids,
    pub(crate) output: TensorId,
    pub(crate) backward: Rc<Backward>,
}

/// The state of one tape, shared by the handle the user holds and this thread's active list.
pub struct TapeState {
    /// Place in the order tapes and forward accumulators started (or resumed) on this thread.
    pub(crate) seq: Cell<u64>,
    pub(crate) watch_accessed_variables: bool,
    /// On this thread's active list and not paused.
    pub(crate) recording: Cell<bool>,
    /// On this thread's active list (paused or not).
    pub(crate) active: Cell<bool>,
    /// `stop_recording` scopes alive on this tape, and whether it recorded before the first.
    pub(crate) pauses: Cell<u32>,
    pub(crate) resume_to: Cell<bool>,
    /// Ids of tensors on this tape: watched ones and outputs of recorded ops.
    pub(crate) tensors: RefCell<IdSet>,
    pub(crate) entries: RefCell<Vec<Entry>>,
    pub(crate) variables: RefCell<Vec<Variable>>,
    /// Shapes of what each entry read and wrote, kept only when asked for (`TapeBuilder::trace`).
    pub(crate) trace: Option<RefCell<Vec<TracedOp>>>,
    /// The innermost vmap level running when the tape started (0: none): a tape started
    /// inside a vmap takes each example's gradients.
    pub(crate) born_in: usize,
    /// Where a path from a watched tensor ended without a gradient: the op and its traced
    /// inputs (for [`Tape::why_no_gradient`](crate::Tape::why_no_gradient)).
    pub(crate) cuts: RefCell<Vec<(&'static str, Vec<TensorId>)>>,
    /// Variables read while the tape was paused (`stop_recording`).
    pub(crate) paused_reads: RefCell<Vec<TensorId>>,
}

/// A tensor as a traced tape saw it: which one (an id unique in the process), its shape and
/// dtype, and the variable's name when it is a variable's handle.
///
/// ```
/// use gradtape::{ops, GradientTape, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
/// let tape = GradientTape::builder().trace(true).start();
/// tape.watch(&x);
/// let _ = ops::exp(&x)?;
/// assert_eq!(tape.trace()[0].inputs[0].id, x.id());
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TracedTensor {
    /// Identity of the tensor (or of the variable's handle).
    pub id: u64,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its dtype.
    pub dtype: DType,
    /// The variable's name (or `"Variable"`) when this is a variable read by `ReadVariableOp`.
    pub variable: Option<String>,
}

impl TracedTensor {
    pub(crate) fn of(t: &Tensor) -> Self {
        TracedTensor {
            id: t.id(),
            shape: t.shape().to_vec(),
            dtype: t.dtype(),
            variable: None,
        }
    }
}

/// One operation a traced tape recorded: what the seed calls the tape storing "the inputs and
/// outputs". See [`TapeBuilder::trace`](crate::TapeBuilder::trace).
///
/// ```
/// use gradtape::{ops, GradientTape, Tensor};
/// let x = Tensor::scalar(1.0f32);
/// let tape = GradientTape::builder().trace(true).start();
/// tape.watch(&x);
/// let y = ops::sin(&x)?;
/// let op = &tape.trace()[0];
/// assert_eq!((op.op, op.output.id), ("sin", y.id()));
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TracedOp {
    /// The op's name (`multiply`, `reduce_sum`, `ReadVariableOp`, ...).
    pub op: &'static str,
    /// Its inputs, in order.
    pub inputs: Vec<TracedTensor>,
    /// Its output.
    pub output: TracedTensor,
}

/// Buffers of finished tapes and backward passes, kept per thread so that a training loop that
/// makes a tape every step does not regrow its tables every step.
pub(crate) struct Spare {
    pub(crate) entries: Vec<Vec<Entry>>,
    pub(crate) sets: Vec<IdSet>,
    pub(crate) maps: Vec<IdMap<Tensor>>,
}

pub(crate) const SPARE_KEEP: usize = 4;
pub(crate) const SPARE_MAX_LEN: usize = 1 << 20;

pub(crate) fn spare<R>(f: impl FnOnce(&mut Spare) -> R) -> Option<R> {
    context::try_with(|c| c.tapes.spare.try_borrow_mut().ok().map(|mut s| f(&mut s))).flatten()
}

pub(crate) fn take_entries() -> Vec<Entry> {
    spare(|s| s.entries.pop()).flatten().unwrap_or_default()
}
pub(crate) fn take_set() -> IdSet {
    spare(|s| s.sets.pop()).flatten().unwrap_or_default()
}
pub(crate) fn take_map() -> IdMap<Tensor> {
    spare(|s| s.maps.pop()).flatten().unwrap_or_default()
}
pub(crate) fn give_entries(mut v: Vec<Entry>) {
    v.clear();
    if v.capacity() <= SPARE_MAX_LEN {
        spare(|s| (s.entries.len() < SPARE_KEEP).then(|| s.entries.push(v)));
    }
}
pub(crate) fn give_set(mut v: IdSet) {
    v.clear();
    if v.capacity() <= SPARE_MAX_LEN {
        spare(|s| (s.sets.len() < SPARE_KEEP).then(|| s.sets.push(v)));
    }
}
pub(crate) fn give_map(mut v: IdMap<Tensor>) {
    v.clear();
    if v.capacity() <= SPARE_MAX_LEN {
        spare(|s| (s.maps.len() < SPARE_KEEP).then(|| s.maps.push(v)));
    }
}

impl Drop for TapeState {
    fn drop(&mut self) {
        give_entries(std::mem::take(self.entries.get_mut()));
        give_set(std::mem::take(self.tensors.get_mut()));
    }
}

/// This thread's tapes and custom-gradient frames: reverse mode's part of the
/// [`Context`](crate::context::Context).
pub(crate) struct Tapes {
    pub(crate) spare: RefCell<Spare>,
    pub(crate) active: RefCell<Vec<Rc<TapeState>>>,
    /// Number of tapes recording on this thread: the one check every op pays.
    pub(crate) recording: Cell<usize>,
    /// Forward functions of custom gradients running on this thread (nested ones too).
    pub(crate) custom_depth: Cell<usize>,
    /// The trainable float variables each of them has read, in order of first read.
    pub(crate) custom_reads: RefCell<Vec<Vec<Variable>>>,
}

impl Tapes {
    pub(crate) const fn new() -> Tapes {
        Tapes {
            spare: RefCell::new(Spare {
                entries: Vec::new(),
                sets: Vec::new(),
                maps: Vec::new(),
            }),
            active: RefCell::new(Vec::new()),
            recording: Cell::new(0),
            custom_depth: Cell::new(0),
            custom_reads: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn any_recording(&self) -> bool {
        self.recording.get() > 0
    }

    pub(crate) fn in_custom_forward(&self) -> bool {
        self.custom_depth.get() > 0
    }
}

/// Runs `f` with this thread's active tapes.
pub(crate) fn active<R>(f: impl FnOnce(&RefCell<Vec<Rc<TapeState>>>) -> R) -> R {
    context::with(|c| f(&c.tapes.active))
}

/// The next place in the order tapes and forward accumulators start on this thread.
pub(crate) fn next_seq() -> u64 {
    context::with(|c| {
        c.seq.set(c.seq.get() + 1);
        c.seq.get()
    })
}

/// Tapes that started after a forward accumulator do not record the computation of its
/// tangents (TensorFlow's rule: a tape inside an accumulator sees the primal ops, one around it
/// sees the tangents too); they are paused until this guard drops.
pub(crate) struct PauseAfter(Vec<Rc<TapeState>>);

/// Pauses the recording tapes that started after `seq`.
pub(crate) fn pause_tapes_after(seq: u64) -> PauseAfter {
    if recording_count() == 0 {
        return PauseAfter(Vec::new());
    }
    active(|active| {
        let later: Vec<Rc<TapeState>> = active
            .borrow()
            .iter()
            .filter(|t| t.recording.get() && t.seq.get() > seq)
            .cloned()
            .collect();
        for t in &later {
            set_recording(t, false);
        }
        PauseAfter(later)
    })
}

impl Drop for PauseAfter {
    fn drop(&mut self) {
        for t in &self.0 {
            if t.active.get() {
                set_recording(t, true);
            }
        }
    }
}

/// True when some tape is recording on this thread.
pub(crate) fn any_recording() -> bool {
    recording_count() > 0
}

#[inline]
pub(crate) fn recording_count() -> usize {
    context::with(|c| c.tapes.recording.get())
}

pub(crate) fn set_recording(state: &TapeState, on: bool) {
    if state.recording.get() != on {
        state.recording.set(on);
        context::try_with(|c| {
            let r = &c.tapes.recording;
            r.set(if on {
                r.get() + 1
            } else {
                r.get().saturating_sub(1)
            })
        });
    }
}

/// What watches ops on this thread right now: the three checks every op pays, read from the
/// context at once.
#[derive(Clone, Copy)]
pub(crate) struct Watching {
    pub(crate) checking: bool,
    pub(crate) recording: bool,
    pub(crate) running: bool,
    pub(crate) tracing: bool,
}

impl Watching {
    /// Read from the context `c`.
    #[inline]
    pub(crate) fn of(c: &context::Context) -> Watching {
        Watching {
            checking: c.check_numerics.get(),
            recording: c.tapes.recording.get() != 0,
            running: c.forward.any_running(),
            tracing: c.traces.active.get() != 0,
        }
    }

    /// Nothing watches: no tape records, no accumulator runs, numerics are not checked, no
    /// function is traced.
    #[inline]
    pub(crate) fn nothing(self) -> bool {
        !(self.checking || self.recording || self.running || self.tracing)
    }
}

/// Notes, on every recording tape that traces one of `inputs`, that `op` ends the path there
/// without a gradient (an op with no gradient rule, `stop_gradient`, an assign): what
/// [`Tape::why_no_gradient`](crate::Tape::why_no_gradient) reports.
pub(crate) fn cut(op: &'static str, inputs: &[&Tensor]) {
    if recording_count() == 0 {
        return;
    }
    active(|active| {
        for tape in active.borrow().iter().filter(|t| t.recording.get()) {
            let traced: Vec<TensorId> = {
                let set = tape.tensors.borrow();
                inputs
                    .iter()
                    .map(|t| t.id())
                    .filter(|id| set.contains(id))
                    .collect()
            };
            if !traced.is_empty() {
                tape.cuts.borrow_mut().push((op, traced));
            }
        }
    });
}

pub(crate) fn record_with<B>(
    op: &'static str,
    inputs: &[&Tensor],
    variables: &[TensorId],
    output: &Tensor,
    backward: impl FnOnce() -> B,
) where
    B: Fn(&Tensor, &[bool], &mut Vec<Option<Tensor>>) -> Result<()> + 'static,
{
    active(|active| {
        let active = active.borrow();
        let mut make = Some(backward);
        let mut shared: Option<Rc<Backward>> = None;
        for tape in active.iter().filter(|t| t.recording.get()) {
            let mut set = tape.tensors.borrow_mut();
            if !inputs.iter().any(|t| set.contains(&t.id()))
                && !variables.iter().any(|id| set.contains(id))
            {
                continue;
            }
            set.insert(output.id());
            if shared.is_none() {
                if let Some(m) = make.take() {
                    shared = Some(Rc::new(m()));
                }
            }
            if let Some(bw) = &shared {
                tape.entries.borrow_mut().push(Entry {
                    op,
                    inputs: if variables.is_empty() {
                        Ids::new(inputs.iter().map(|t| t.id()))
                    } else {
                        let all: Vec<TensorId> = inputs
                            .iter()
                            .map(|t| t.id())
                            .chain(variables.iter().copied())
                            .collect();
                        Ids::new(all.into_iter())
                    },
                    output: output.id(),
                    backward: bw.clone(),
                });
            }
            if let Some(trace) = &tape.trace {
                trace.borrow_mut().push(TracedOp {
                    op,
                    inputs: inputs.iter().map(|t| TracedTensor::of(t)).collect(),
                    output: TracedTensor::of(output),
                });
            }
        }
    })
}

/// A read while every tape is paused or none exists: remembered by the paused tapes, so that
/// a missing gradient can be explained.
#[inline(never)]
pub(crate) fn note_paused_read(var: &Variable) {
    active(|active| {
        for tape in active
            .borrow()
            .iter()
            .filter(|t| t.active.get() && !t.recording.get())
        {
            tape.note_paused_read(var.handle_id());
        }
    });
}

#[inline(never)]
pub(crate) fn note_custom_read(var: &Variable) {
    if !var.trainable() || !var.dtype().is_float() {
        return;
    }
    context::with(|c| {
        if let Some(list) = c.tapes.custom_reads.borrow_mut().last_mut() {
            if !list.iter().any(|v| v.handle_id() == var.handle_id()) {
                list.push(var.clone());
            }
        }
    });
}

/// Runs a custom gradient's forward `f` with recording off, and returns what it returned with
/// the variables it read.
pub(crate) fn run_custom_forward<R>(f: impl FnOnce() -> R) -> (R, Vec<Variable>) {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            context::try_with(|c| {
                let d = &c.tapes.custom_depth;
                d.set(d.get().saturating_sub(1));
                c.tapes.custom_reads.borrow_mut().pop();
            });
        }
    }
    context::with(|c| {
        c.tapes.custom_depth.set(c.tapes.custom_depth.get() + 1);
        c.tapes.custom_reads.borrow_mut().push(Vec::new());
    });
    let pop = Pop;
    let r = without_recording(f);
    let reads = context::with(|c| {
        c.tapes
            .custom_reads
            .borrow_mut()
            .last_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    });
    drop(pop);
    // A custom gradient nested in another's forward read these for the enclosing one too:
    // its gradient must reach them (they were credited to the innermost only).
    for var in &reads {
        note_custom_read(var);
    }
    (r, reads)
}

/// Runs `f` with no tape recording and no forward accumulator running on this thread
/// (variable updates and the forward of a custom gradient use it; public as
/// [`crate::no_grad`]).
pub fn without_recording<R>(f: impl FnOnce() -> R) -> R {
    let _off = no_grad_guard();
    f()
}

/// PyTorch's `torch.no_grad()` with forward mode off too: no tape records and no forward
/// accumulator computes tangents on this thread while `f` runs (a tape's own
/// `stop_recording` pauses that tape only).
///
/// ```
/// use gradtape::{ops, ForwardAccumulator, GradientTape, Tensor};
/// let x = Tensor::scalar(2.0f64);
/// let acc = ForwardAccumulator::new([&x], &[Tensor::scalar(1.0f64)])?;
/// let tape = GradientTape::new();
/// tape.watch(&x);
/// let y = gradtape::no_grad(|| ops::square(&x))?;
/// assert!(acc.jvp(&y)?.is_none());
/// assert!(tape.gradient(&y, &x)?.is_none());
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    without_recording(f)
}

/// [`no_grad`] until the guard is dropped (the end of the block, or an early `?`).
///
/// ```
/// use gradtape::{ops, GradientTape, Tensor};
/// let x = Tensor::scalar(2.0f64);
/// let tape = GradientTape::persistent();
/// tape.watch(&x);
/// let y = {
///     let _off = gradtape::no_grad_guard();
///     ops::square(&x)?
/// };
/// let z = ops::square(&x)?;
/// assert!(tape.gradient(&y, &x)?.is_none());
/// assert_eq!(tape.gradient(&z, &x)?.unwrap().item()?, 4.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn no_grad_guard() -> NoGradGuard {
    context::with(|c| c.traces.unrecorded.set(c.traces.unrecorded.get() + 1));
    NoGradGuard {
        _recording: Entered::enter(|c| (&c.tapes.recording, &c.recording_scopes), 0),
        _accumulators: crate::context::accumulators::Paused::from(0),
    }
}

/// See [`no_grad_guard`]. Dropped in any order, guards keep recording off while any is alive.
#[must_use = "recording resumes when the guard is dropped"]
pub struct NoGradGuard {
    /// The recording tapes' count, 0 while it lives.
    _recording: Entered<usize>,
    /// The accumulators it paused (each resumes when this drops; pauses are counted).
    _accumulators: crate::context::accumulators::Paused,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        context::try_with(|c| c.traces.unrecorded.set(c.traces.unrecorded.get() - 1));
    }
}

impl TapeState {
    /// Once per variable, so a long loop inside `stop_recording` keeps one entry per variable.
    pub(crate) fn note_paused_read(&self, handle: TensorId) {
        let mut reads = self.paused_reads.borrow_mut();
        if !reads.contains(&handle) {
            reads.push(handle);
        }
    }
    pub(crate) fn watch_tensor(&self, t: &Tensor) {
        if t.dtype().is_float() {
            self.tensors.borrow_mut().insert(t.id());
        }
    }
    pub(crate) fn watch_variable(&self, v: &Variable) {
        if v.dtype().is_float() && self.tensors.borrow_mut().insert(v.handle_id()) {
            self.variables.borrow_mut().push(v.clone());
        }
    }
}
