//! Forward mode's state: this thread's forward accumulators and their tangents. The JVP rules
//! run in `record`; the handle users hold is `forward_accumulator::ForwardAccumulator`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::context;
use crate::context::tapes::IdMap;
use crate::error::Result;
use crate::tensor::{Tensor, TensorId, WeakTensor};

/// An op's JVP rule: the tangent of each input (`None`: zero) to the tangent of its output
/// (`None`: zero).
pub(crate) type JvpRule<'a> = dyn Fn(&[Option<Tensor>]) -> Result<Option<Tensor>> + 'a;

/// A tangent and the tensor it belongs to (`None`: a variable's handle, kept while the
/// accumulator lives).
pub(crate) struct Tangent {
    pub(crate) of: Option<WeakTensor>,
    pub(crate) tangent: Tensor,
}

/// One accumulator's state, shared by its handle and this thread's list.
pub(crate) struct State {
    /// Place among the tapes and accumulators started (or resumed) on this thread.
    pub(crate) seq: Cell<u64>,
    /// Not stopped.
    pub(crate) active: Cell<bool>,
    /// Paused while it, or an accumulator started before it, computes a tangent (and inside
    /// the internal `without_recording`).
    pub(crate) paused: Cell<u32>,
    pub(crate) tangents: RefCell<IdMap<Tangent>>,
    /// Drop the tangents of dead tensors when the table grows past this.
    pub(crate) prune_at: Cell<usize>,
    /// Ops whose JVP rule ran, in order of first use.
    pub(crate) ops: RefCell<Vec<&'static str>>,
}

/// This thread's accumulators: forward mode's part of the
/// [`Context`](crate::context::Context).
pub(crate) struct Accumulators {
    /// Active accumulators on this thread, in the order they started.
    pub(crate) list: RefCell<Vec<Rc<State>>>,
    /// How many of them run (active and not paused): the one check every op pays.
    pub(crate) running: Cell<usize>,
}

impl Accumulators {
    pub(crate) const fn new() -> Accumulators {
        Accumulators {
            list: RefCell::new(Vec::new()),
            running: Cell::new(0),
        }
    }

    pub(crate) fn any_running(&self) -> bool {
        self.running.get() > 0
    }

    pub(crate) fn add_running(&self, delta: isize) {
        self.running
            .set(self.running.get().saturating_add_signed(delta));
    }
}

pub(crate) fn running_count(delta: isize) {
    context::try_with(|c| c.forward.add_running(delta));
}

/// The `k`-th active accumulator of this thread.
pub(crate) fn nth(k: usize) -> Option<Rc<State>> {
    context::with(|c| c.forward.list.borrow().get(k).cloned())
}

/// True when some accumulator runs on this thread.
#[inline]
pub(crate) fn any_running() -> bool {
    context::with(|c| c.forward.any_running())
}

impl State {
    pub(crate) fn running(&self) -> bool {
        self.active.get() && self.paused.get() == 0
    }
    pub(crate) fn pause(&self) {
        if self.running() {
            running_count(-1);
        }
        self.paused.set(self.paused.get() + 1);
    }
    pub(crate) fn resume(&self) {
        self.paused.set(self.paused.get().saturating_sub(1));
        if self.running() {
            running_count(1);
        }
    }
    pub(crate) fn get(&self, id: TensorId) -> Option<Tensor> {
        self.tangents.borrow().get(&id).map(|t| t.tangent.clone())
    }
    pub(crate) fn insert(&self, t: &Tensor, tangent: Tensor) {
        let mut map = self.tangents.borrow_mut();
        map.insert(
            t.id(),
            Tangent {
                of: Some(t.downgrade()),
                tangent,
            },
        );
        if map.len() > self.prune_at.get() {
            map.retain(|_, t| t.of.as_ref().is_none_or(WeakTensor::alive));
            self.prune_at.set((2 * map.len()).max(1024));
        }
    }
}

/// Pauses the running accumulators from index `from` on until dropped.
pub(crate) struct Paused(Vec<Rc<State>>);

impl Paused {
    pub(crate) fn from(from: usize) -> Paused {
        Paused(context::with(|c| {
            let list: Vec<Rc<State>> = c.forward.list.borrow().iter().skip(from).cloned().collect();
            for s in &list {
                s.pause();
            }
            list
        }))
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for s in &self.0 {
            s.resume();
        }
    }
}
