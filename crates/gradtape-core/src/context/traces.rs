//! `gradtape::function`'s state: the traces running on this thread, each the graph so far of
//! what a function's first call for a signature computes, with a map from tensor ids to the
//! graph's values. A trace records and looks up, and computes nothing: `ops::apply` notes each
//! primitive call here, variable reads and assigns note themselves, and the read-backs ask
//! [`check_concrete`] before reading a value the graph computes. Running a graph is
//! `crate::function`'s, above the ops.
//!
//! Every trace on the stack sees every call (a function traced inside another's trace is
//! inlined into the outer graph as the primitives it runs).

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::tapes::IdMap;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::primitive::{Params, Primitive};
use crate::tensor::{next_id, Tensor, TensorId};
use crate::variable::Variable;

/// Where [`crate::print`]'s lines go when not to standard error.
pub(crate) type PrintSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A check of values (labels in range, whole-number ids) that must hold at every call of a
/// compiled function, as TensorFlow's `tf.debugging.assert_*` ops do in a graph.
pub type Checker = Arc<dyn Fn(&[Tensor]) -> Result<()> + Send + Sync>;

/// One step of a graph. Values are node indices: a node that defines one (all but `Assign`
/// and `Print`) defines the value of its own index.
#[derive(Clone)]
pub(crate) enum NodeKind {
    /// The function's `i`-th argument.
    Arg(usize),
    /// A tensor the function captured or made from Rust values: the same at every call.
    /// `made_here`: made while tracing (or a cached scalar constant, which nothing outside
    /// can hold), so no tape outside the function can watch it: the graph passes may fold
    /// the ops on it.
    Constant { tensor: Tensor, made_here: bool },
    /// A variable's current value, read at this point of every call. `raw`: read as an
    /// assign reads the value it updates (not seen by tapes), else as [`Variable::value`].
    Read { variable: Variable, raw: bool },
    /// A primitive call.
    Op {
        primitive: &'static Primitive,
        params: Params,
        inputs: Vec<usize>,
    },
    /// The variable takes `value` at this point of every call.
    Assign { variable: Variable, value: usize },
    /// [`crate::print`] at every call.
    Print {
        text: String,
        inputs: Vec<usize>,
        sink: Option<PrintSink>,
    },
    /// [`check_values`] at every call.
    Check { check: Checker, inputs: Vec<usize> },
    /// How many elements value `input` has over `axes`, as a scalar of the node's dtype
    /// (`reduce_mean`'s divisor): a size read at every call, not a constant, so that one
    /// graph runs at every batch size (`Function::input_signature`).
    Size { input: usize, axes: Vec<usize> },
}

/// A node and the shape and dtype of the value it defines (the variable's for an `Assign`;
/// empty and `Bool` for a `Print`).
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    /// It ran inside `without_recording` (an optimizer's update, an assign's arithmetic, a
    /// custom gradient's forward), where tapes outside the function must not see it.
    pub(crate) unrecorded: bool,
}

impl Node {
    /// The values this node reads.
    pub(crate) fn inputs(&self) -> &[usize] {
        match &self.kind {
            NodeKind::Op { inputs, .. }
            | NodeKind::Print { inputs, .. }
            | NodeKind::Check { inputs, .. } => inputs,
            NodeKind::Assign { value, .. } | NodeKind::Size { input: value, .. } => {
                std::slice::from_ref(value)
            }
            _ => &[],
        }
    }

    /// How the value is named in messages and listings: TensorFlow's `"name:0"` without the
    /// output index (every primitive has one output).
    pub(crate) fn symbol(&self, k: usize) -> String {
        match &self.kind {
            NodeKind::Arg(i) => format!("arg{i}"),
            NodeKind::Constant { .. } => format!("constant_{k}"),
            NodeKind::Read { .. } => format!("read_variable_{k}"),
            NodeKind::Op { primitive, .. } => format!("{}_{k}", primitive.name()),
            NodeKind::Assign { .. } => format!("assign_{k}"),
            NodeKind::Print { .. } => format!("print_{k}"),
            NodeKind::Check { .. } => format!("check_{k}"),
            NodeKind::Size { .. } => format!("size_{k}"),
        }
    }
}

/// One function's trace in progress.
pub(crate) struct Trace {
    pub(crate) nodes: Vec<Node>,
    values: IdMap<usize>,
    /// The nodes pushed now run inside `without_recording`.
    unrecorded: bool,
    /// A custom gradient ran: its rule is not in the graph.
    pub(crate) custom_gradients: bool,
    /// Sizes read from tensors are [`NodeKind::Size`] nodes (the function has an unknown
    /// dimension to run at every size); otherwise they are constants, which the passes fold
    /// and merge.
    sizes: bool,
    /// The first tensor id made after the trace began.
    first_id: TensorId,
    /// The first vmap level started after the trace began (levels are never reused).
    first_level: usize,
}

impl Trace {
    fn push(&mut self, kind: NodeKind, shape: &[usize], dtype: DType) -> usize {
        self.nodes.push(Node {
            kind,
            shape: shape.to_vec(),
            dtype,
            unrecorded: self.unrecorded,
        });
        self.nodes.len() - 1
    }

    fn define(&mut self, t: &Tensor, kind: NodeKind) -> usize {
        let k = self.push(kind, t.shape(), t.dtype());
        self.values.insert(t.id(), k);
        k
    }

    /// The value `t` is in the graph: what defined its id, else a constant captured now.
    fn value(&mut self, t: &Tensor, c: &super::Context) -> usize {
        if let Some(&k) = self.values.get(&t.id()) {
            return k;
        }
        let cached = || {
            c.constants
                .try_borrow()
                .is_ok_and(|cs| cs.iter().flatten().any(|(_, _, x)| x.id() == t.id()))
        };
        let made_here = t.id() >= self.first_id || cached();
        self.define(
            t,
            NodeKind::Constant {
                tensor: t.clone(),
                made_here,
            },
        )
    }

    /// The node `t`'s id is a value of, looking through `vmap`'s example tags to the batch.
    fn known(&self, t: &Tensor) -> Option<usize> {
        let mut t = t;
        loop {
            if let Some(&k) = self.values.get(&t.id()) {
                return Some(k);
            }
            t = t.batch()?.0;
        }
    }
}

/// This thread's traces.
pub(crate) struct Traces {
    stack: RefCell<Vec<Trace>>,
    /// How many traces record now: the stack's length, 0 inside [`untraced`]; read by
    /// `Watching::of` with the other checks every op makes.
    pub(crate) active: Cell<usize>,
    /// The traces below this place in the stack are paused (by [`untraced`]); those started
    /// inside it record.
    floor: Cell<usize>,
    /// How deep in `without_recording` scopes the thread is.
    pub(crate) unrecorded: Cell<usize>,
}

impl Traces {
    pub(crate) const fn new() -> Traces {
        Traces {
            stack: RefCell::new(Vec::new()),
            active: Cell::new(0),
            floor: Cell::new(0),
            unrecorded: Cell::new(0),
        }
    }

    /// `active` for a stack of `len` traces.
    fn set_active(&self, len: usize) {
        self.active.set(len.saturating_sub(self.floor.get()));
    }

    fn each(&self, mut f: impl FnMut(&mut Trace)) {
        if self.active.get() == 0 {
            return;
        }
        let unrecorded = self.unrecorded.get() > 0;
        let floor = self.floor.get();
        for trace in self.stack.borrow_mut().iter_mut().skip(floor) {
            trace.unrecorded = unrecorded;
            f(trace);
        }
    }
}

/// A trace running on this thread: ended (and dropped) when this is, also by a panic in the
/// function; [`TraceGuard::finish`] takes the graph.
pub(crate) struct TraceGuard {
    depth: usize,
}

/// Starts a trace whose arguments are `args` (tensors of their own ids, seen nowhere else).
pub(crate) fn begin(args: &[Tensor], sizes: bool) -> TraceGuard {
    super::with(|c| {
        let mut stack = c.traces.stack.borrow_mut();
        let mut trace = Trace {
            nodes: Vec::new(),
            values: IdMap::default(),
            unrecorded: false,
            custom_gradients: false,
            sizes,
            first_id: next_id(),
            first_level: super::levels::NEXT_LEVEL.load(std::sync::atomic::Ordering::Relaxed),
        };
        for (i, a) in args.iter().enumerate() {
            trace.define(a, NodeKind::Arg(i));
        }
        stack.push(trace);
        c.traces.set_active(stack.len());
        TraceGuard {
            depth: stack.len() - 1,
        }
    })
}

impl TraceGuard {
    /// The graph, the value of each of `outputs` in it, and whether a custom gradient ran.
    pub(crate) fn finish(self, outputs: &[Tensor]) -> (Vec<Node>, Vec<usize>, bool) {
        let (trace, outs) = super::with(|c| {
            let mut stack = c.traces.stack.borrow_mut();
            let mut trace = stack.remove(self.depth);
            stack.truncate(self.depth);
            c.traces.set_active(stack.len());
            trace.unrecorded = false;
            let outs: Vec<usize> = outputs.iter().map(|o| trace.value(o, c)).collect();
            (trace, outs)
        });
        std::mem::forget(self);
        (trace.nodes, outs, trace.custom_gradients)
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        let _ = super::try_with(|c| {
            let mut stack = c.traces.stack.borrow_mut();
            stack.truncate(self.depth);
            c.traces.set_active(stack.len());
        });
    }
}

/// `p` ran on `inputs` and gave `out`: a node on every trace.
pub(crate) fn note_op(p: &'static Primitive, inputs: &[&Tensor], params: &Params, out: &Tensor) {
    super::with(|c| {
        c.traces.each(|trace| {
            let inputs = inputs.iter().map(|x| trace.value(x, c)).collect();
            trace.define(
                out,
                NodeKind::Op {
                    primitive: p,
                    params: params.clone(),
                    inputs,
                },
            );
        })
    })
}

/// `var` was read and gave `t`; `raw`: by an assign, for the value it updates.
pub(crate) fn note_read(var: &Variable, t: &Tensor, raw: bool) {
    super::with(|c| {
        c.traces.each(|trace| {
            trace.define(
                t,
                NodeKind::Read {
                    variable: var.clone(),
                    raw,
                },
            );
        })
    })
}

/// The number of elements of `of` over `axes` (`count`) as a scalar tensor that a trace with
/// unknown dimensions records as a size of the graph, not a constant (see
/// [`NodeKind::Size`]); `None` when no such trace records, so eager code divides by the plain
/// number and allocates nothing.
pub(crate) fn size_of(of: &Tensor, axes: &[usize], count: usize) -> Option<Tensor> {
    super::with(|c| {
        let mut sized = false;
        c.traces.each(|trace| sized |= trace.sizes);
        if !sized {
            return None;
        }
        let t = Tensor::from_f64s(&[count as f64], &[], of.dtype());
        c.traces.each(|trace| {
            if !trace.sizes {
                return;
            }
            let input = trace.value(of, c);
            trace.define(
                &t,
                NodeKind::Size {
                    input,
                    axes: axes.to_vec(),
                },
            );
        });
        Some(t)
    })
}

/// `var` was assigned `t`.
pub(crate) fn note_assign(var: &Variable, t: &Tensor) {
    super::with(|c| {
        c.traces.each(|trace| {
            let value = trace.value(t, c);
            trace.push(
                NodeKind::Assign {
                    variable: var.clone(),
                    value,
                },
                var.shape(),
                var.dtype(),
            );
        })
    })
}

/// `new` is `old` under another id, made outside `apply` (a custom gradient's outputs, a
/// variable read a tape watches): the same value in every trace that knows `old`.
pub(crate) fn alias(new: &Tensor, old: &Tensor) {
    super::with(|c| {
        c.traces.each(|trace| {
            let (mut n, mut o) = (new, old);
            loop {
                if let Some(&k) = trace.values.get(&o.id()) {
                    trace.values.insert(n.id(), k);
                }
                match (n.batch(), o.batch()) {
                    (Some((np, _)), Some((op, _))) => (n, o) = (np, op),
                    _ => break,
                }
            }
        })
    })
}

/// A custom gradient ran: a tape or accumulator outside a function it is in must see the
/// function run eagerly, since the graph holds its forward only.
pub(crate) fn note_custom_gradient() {
    super::with(|c| c.traces.each(|trace| trace.custom_gradients = true))
}

/// [`crate::print`] of `text` and `tensors`: a node on every trace.
pub(crate) fn note_print(text: &str, tensors: &[&Tensor], sink: Option<&PrintSink>) {
    super::with(|c| {
        c.traces.each(|trace| {
            let inputs = tensors.iter().map(|x| trace.value(x, c)).collect();
            trace.push(
                NodeKind::Print {
                    text: text.to_string(),
                    inputs,
                    sink: sink.cloned(),
                },
                &[],
                DType::Bool,
            );
        })
    })
}

/// Runs `check` on the values of `inputs` now, and at every call of a compiled function whose
/// trace this is in (a node with an effect, which no pass drops): for the checks a library
/// makes on values, which would otherwise hold at the first call only. `check` reads the
/// values (`to_vec`, ...) freely: it runs outside any trace.
///
/// # Errors
/// What `check` returns.
pub fn check_values(inputs: &[&Tensor], check: Checker) -> Result<()> {
    super::with(|c| {
        c.traces.each(|trace| {
            let inputs = inputs.iter().map(|x| trace.value(x, c)).collect();
            trace.push(
                NodeKind::Check {
                    check: check.clone(),
                    inputs,
                },
                &[],
                DType::Bool,
            );
        })
    });
    let values: Vec<Tensor> = inputs.iter().map(|&t| t.clone()).collect();
    untraced(|| check(&values))
}

/// A function is being traced on this thread (and not inside [`untraced`]).
pub(crate) fn tracing() -> bool {
    super::with(|c| c.traces.active.get() > 0)
}

/// `t`'s name in the innermost trace that computes it (`None`: no trace computes it; a
/// constant is concrete).
pub(crate) fn symbol(t: &Tensor) -> Option<String> {
    super::with(|c| {
        if c.traces.active.get() == 0 {
            return None;
        }
        let stack = c.traces.stack.borrow();
        let recording = stack.get(c.traces.floor.get()..).unwrap_or(&[]);
        recording.iter().rev().find_map(|trace| {
            let k = trace.known(t)?;
            let node = &trace.nodes[k];
            (!matches!(node.kind, NodeKind::Constant { .. })).then(|| node.symbol(k))
        })
    })
}

/// The error for reading `t`'s value with `op` while a trace computes it (JAX's
/// concretization error): the value would be this call's forever after.
pub(crate) fn check_concrete(op: &'static str, t: &Tensor) -> Result<()> {
    match symbol(t) {
        None => Ok(()),
        Some(name) => Err(Error::trace(
            op,
            format!(
                "cannot read the value of {name} ({} {:?}) while gradtape::function traces: \
                 it would be frozen at this call's value. Return it from the function and \
                 read it after the call, choose with ops (ops::select) instead of a Rust `if`, \
                 or print it at every call with gradtape::print",
                t.dtype(),
                t.shape()
            ),
        )),
    }
}

/// While a trace runs, `op` on one example's tensors of a `vmap` that began outside the trace
/// (a tensor `f` captured from the `vmap` it is called in): the graph would keep that call's
/// examples. An error; a `vmap` inside the function makes its batches from traced values.
pub(crate) fn check_batched(op: &'static str, inputs: &[&Tensor]) -> Result<()> {
    super::with(|c| {
        if c.traces.active.get() == 0 {
            return Ok(());
        }
        let stack = c.traces.stack.borrow();
        for x in inputs {
            let mut t = *x;
            while let Some((p, level)) = t.batch() {
                let recording = stack.get(c.traces.floor.get()..).unwrap_or(&[]);
                if recording.iter().any(|trace| level < trace.first_level) {
                    return Err(Error::trace(
                        op,
                        format!(
                            "a function being traced uses one example's tensor ({} {:?}) of a \
                             vmap it is called in: the graph would keep this call's examples. \
                             Pass the tensor to the function as an argument",
                            x.dtype(),
                            x.shape()
                        ),
                    ));
                }
                t = p;
            }
        }
        Ok(())
    })
}

/// Runs `f` with no trace seeing its ops and its reads allowed: for checks a library makes
/// on values (labels in range, whole-number ids), which then hold for the first call of a
/// signature only.
pub(crate) fn untraced<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = super::try_with(|c| {
                c.traces.floor.set(self.0);
                c.traces.set_active(c.traces.stack.borrow().len());
            });
        }
    }
    let _restore = Restore(super::with(|c| {
        let len = c.traces.stack.borrow().len();
        c.traces.active.set(0);
        c.traces.floor.replace(len)
    }));
    f()
}
