//! Tracing a step once per signature and replaying it: TensorFlow's `tf.function`, JAX's `jit`.
//!
//! The first call of a [`Function`] for a signature (each tensor argument's shape, dtype and
//! device, and the default device) runs the Rust function on the real arguments while a
//! *trace* records every primitive it reaches, including what tapes, forward accumulators,
//! `vmap`, custom gradients and optimizers inside it compute, every variable read and assign
//! and every [`print()`]: its answers are the eager answers. Later calls with that signature run
//! the recorded [`Graph`] instead of the Rust code.
//!
//! What the Rust code does besides primitives runs at the first call only, as Python side
//! effects run only while `tf.function` traces: a Rust counter, a `println!`, a value computed
//! from a Rust variable. Use [`print()`] to print at every call. Reading a value the trace
//! computes (`to_vec`, `item`, `to_scalar`, a Rust `if` on one) is an [`Error::Trace`]
//! naming the call (JAX's concretization error), never a value silently frozen; so is a random
//! draw (drawn on the host, it would repeat): draw outside and pass the tensor in.
//!
//! Variables are captured by handle: a call reads their values as they are then, and its
//! assigns update them, so a compiled training step leaves the variables as the eager step
//! does, bit for bit (the graph runs the same kernels in the same order). A variable the
//! function creates is created at the first call only (TensorFlow allows variables on the first
//! trace only). Tensors captured from outside are constants, as in TensorFlow.
//!
//! Tapes and accumulators outside the function see a call as the primitives it runs, so
//! gradients through a compiled call are the eager ones; inside `vmap`, a graph traced outside
//! replays with each primitive batched. After the trace, the graph passes fold constants made
//! inside, merge common subexpressions, drop products with ones made inside (a tape's seed),
//! drop dead code and plan fusion groups
//! ([`Graph::passes`]). When nothing watches the thread, a call runs each fusion group (a
//! chain of elementwise ops of one size and the whole-tensor reductions ending it) as one pass
//! over its elements, a block at a time, and the other nodes' kernels directly; under a tape,
//! an accumulator or `vmap` it runs node by node through the eager path. What a call saves is
//! the recording (no tape entries or backward closures: a tape inside the function became
//! plain ops), what the passes removed, the memory traffic of the fused chains, and fresh
//! memory: a fused update writes a variable in place when nothing else holds its value, and
//! each graph keeps the buffers its calls free for its next calls (counted in
//! [`crate::memory::cached_bytes`], released by [`crate::memory::empty_cache`]).
//! [`Function::input_signature`] runs one graph at every batch size where two traces show
//! that only sizes change. A small host step runs over buffers of the graph's own, with no
//! tensor between its kernels ([`Graph::runs_flat`]). On a GPU each fusion group is one
//! generated kernel, and
//! [`Function::cuda_graph`] launches the whole step as one recorded CUDA graph.
use std::sync::{Arc, Mutex};

use crate::context;
use crate::context::traces;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

mod flat;
mod fused;
mod graph;
mod passes;
mod print;
mod recorded;
mod signature;

pub use graph::Graph;
use graph::Signature;
pub use passes::PassReport;
pub use print::{print, print_with};
use signature::Family;
pub use signature::TensorSpec;

/// How many traces of one function before it warns (TensorFlow's threshold).
const RETRACE_WARNING: usize = 5;

/// `f` traced once per signature and replayed: TensorFlow's `tf.function`, JAX's `jit`. See
/// the [module docs](mod@crate::function) for what runs when.
///
/// ```
/// use gradtape::{function, ops, Tensor, Variable};
/// let w = Variable::new(Tensor::from_vec(vec![1.0f32, 2.0], &[2])?);
/// let step = function({
///     let w = w.clone();
///     move |args: &[Tensor]| {
///         let y = ops::multiply(&args[0], &w)?;
///         w.assign_add(&y)?;
///         Ok(y)
///     }
/// });
/// let x = Tensor::from_vec(vec![3.0f32, 4.0], &[2])?;
/// let first = step.call(&[&x])?; // traced: runs the Rust code
/// let second = step.call(&[&x])?; // replayed: reads w's new value
/// assert_eq!(first.to_vec::<f32>()?, vec![3.0, 8.0]);
/// assert_eq!(second.to_vec::<f32>()?, vec![12.0, 40.0]);
/// assert_eq!(step.tracing_count(), 1);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn function<F>(f: F) -> Function<F> {
    Function {
        f,
        name: "function".into(),
        optimize: true,
        input_signature: None,
        cuda_graph: false,
        state: Mutex::new(State::default()),
    }
}

/// What [`function()`] returns: call it with [`Function::call`].
pub struct Function<F> {
    f: F,
    name: String,
    optimize: bool,
    input_signature: Option<Vec<TensorSpec>>,
    cuda_graph: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Per signature: the graph as traced, and the one that runs (after the passes).
    graphs: Vec<(Arc<Graph>, Arc<Graph>)>,
    traces: usize,
    warning: Option<String>,
    /// With an unknown dimension in the input signature: whether one graph runs at every
    /// batch size.
    family: Option<Family>,
}

/// What a function returns: one tensor, several (a `Vec` or a tuple), or none.
pub trait Outputs: Sized {
    /// The tensors, in order.
    fn into_tensors(self) -> Vec<Tensor>;
    /// Back from the tensors [`Outputs::into_tensors`] gave (a graph's outputs).
    ///
    /// # Errors
    /// When there are not as many as the type holds.
    fn from_tensors(tensors: Vec<Tensor>) -> Result<Self>;
}

fn count_error(want: usize, got: usize) -> Error {
    Error::trace(
        "function",
        format!("the graph returns {got} tensors, the function's type {want}"),
    )
}

impl Outputs for Tensor {
    fn into_tensors(self) -> Vec<Tensor> {
        vec![self]
    }
    fn from_tensors(tensors: Vec<Tensor>) -> Result<Self> {
        let n = tensors.len();
        let [t] = <[Tensor; 1]>::try_from(tensors).map_err(|_| count_error(1, n))?;
        Ok(t)
    }
}

impl Outputs for Vec<Tensor> {
    fn into_tensors(self) -> Vec<Tensor> {
        self
    }
    fn from_tensors(tensors: Vec<Tensor>) -> Result<Self> {
        Ok(tensors)
    }
}

impl Outputs for () {
    fn into_tensors(self) -> Vec<Tensor> {
        vec![]
    }
    fn from_tensors(tensors: Vec<Tensor>) -> Result<Self> {
        match tensors.len() {
            0 => Ok(()),
            n => Err(count_error(0, n)),
        }
    }
}

macro_rules! tuple_outputs {
    ($n:literal: $($t:ident),+) => {
        impl Outputs for ($(tuple_outputs!(@tensor $t),)+) {
            fn into_tensors(self) -> Vec<Tensor> {
                let ($($t,)+) = self;
                vec![$($t),+]
            }
            fn from_tensors(tensors: Vec<Tensor>) -> Result<Self> {
                let n = tensors.len();
                let [$($t),+] = <[Tensor; $n]>::try_from(tensors).map_err(|_| count_error($n, n))?;
                Ok(($($t,)+))
            }
        }
    };
    (@tensor $t:ident) => { Tensor };
}
tuple_outputs!(2: a, b);
tuple_outputs!(3: a, b, c);
tuple_outputs!(4: a, b, c, d);

impl<F> Function<F> {
    /// The same function, named `name` in its graphs, warnings and errors.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many times it has traced (TensorFlow's `experimental_get_tracing_count`): once per
    /// new signature.
    #[doc(alias = "experimental_get_tracing_count")]
    pub fn tracing_count(&self) -> usize {
        self.state().traces
    }

    /// The warning printed once on standard error when the function has traced
    /// 5 times (TensorFlow's threshold), if it has.
    pub fn retracing_warning(&self) -> Option<String> {
        self.state().warning.clone()
    }

    /// The graphs that run, one per signature traced so far, oldest first: after the graph
    /// passes ([`Graph::passes`] says what each did), unless [`Function::optimize`] is off.
    pub fn graphs(&self) -> Vec<Arc<Graph>> {
        self.state().graphs.iter().map(|(_, g)| g.clone()).collect()
    }

    /// The graphs as traced, before the passes, in the order of [`Function::graphs`].
    pub fn traced_graphs(&self) -> Vec<Arc<Graph>> {
        self.state().graphs.iter().map(|(t, _)| t.clone()).collect()
    }

    /// The same function with the graph passes (constant folding, common subexpressions,
    /// dead code) on, the default, or off: to compare, or to see every op a trace recorded
    /// run.
    pub fn optimize(mut self, on: bool) -> Self {
        self.optimize = on;
        self
    }

    /// The same function for arguments of these shapes and dtypes only (TensorFlow's
    /// `input_signature`), `None` in a shape for a dimension of any size: every call is
    /// checked against it (an error names the argument and the spec), and where the unknown
    /// dimensions of a call are one size, the batch, one graph serves every batch size once
    /// two have been traced and found to differ only in sizes (see [`TensorSpec`] and
    /// ARCHITECTURE.md: the second batch size traces again, since a trace sees sizes as
    /// numbers; a number computed in Rust from the batch size makes every batch size trace,
    /// and a warning says which).
    ///
    /// ```
    /// use gradtape::{function, ops, Axes, DType, Tensor, TensorSpec};
    /// let f = function(|a: &[Tensor]| ops::reduce_sum(&ops::square(&a[0])?, Axes::All, false))
    ///     .input_signature(vec![TensorSpec::new(&[None, Some(2)], DType::F32)]);
    /// for batch in [1, 2, 3, 4] {
    ///     let x = Tensor::ones(&[batch, 2], DType::F32)?;
    ///     assert_eq!(f.call::<Tensor>(&[&x])?.to_scalar::<f32>()?, 2.0 * batch as f32);
    /// }
    /// assert_eq!(f.tracing_count(), 2);
    /// let wrong = Tensor::ones(&[4, 3], DType::F32)?;
    /// assert!(f.call::<Tensor>(&[&wrong]).is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn input_signature(mut self, specs: Vec<TensorSpec>) -> Self {
        self.input_signature = Some(specs);
        self
    }

    /// The same function with its calls on a GPU launched as one CUDA graph each (PyTorch's
    /// `torch.compile(mode="reduce-overhead")`): the graph's kernels are recorded by the
    /// driver on the second call of a signature and replayed with one launch from the third,
    /// instead of one launch per kernel (a few µs each). The results are the same kernels'
    /// in the same order. Off by default, and nothing changes on the host.
    ///
    /// What a recording needs, and what it costs: each argument is copied into a buffer of
    /// its own (not when the same tensor is passed again), each output copied out; a variable
    /// it updates is written in place, which needs the variable to be the only holder of its
    /// value (a tensor taken from it with [`Variable::value`](crate::Variable::value) and
    /// kept makes that call run kernel by kernel, and the next one record again). A step that
    /// prints, checks numerics, reads a size at each call, or copies between host and GPU is
    /// not recorded; [`Graph::cuda_graph_refusal`] says why, [`Graph::cuda_graph_launches`]
    /// counts the launches.
    ///
    /// Not yet run on a GPU (the sessions that built it had none): `tests/cuda.rs` has the
    /// checks a GPU run makes first, which is why it is not the default.
    pub fn cuda_graph(mut self, on: bool) -> Self {
        self.cuda_graph = on;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // the state is a cache: a panic elsewhere cannot leave it half-written
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls it on `args`: traced on the first call for their signature, the graph replayed
    /// on later ones.
    ///
    /// Inside `vmap` (`args` one example's tensors), a graph traced outside for the example's
    /// signature is replayed with each primitive batched (JAX's `vmap` of a `jit`); without
    /// one, or when the graph assigns a variable, `f` runs as written (no trace is made
    /// there: its values are one example's, and its effects would happen once per batch).
    ///
    /// # Errors
    /// Whatever `f` returns while it traces (nothing is cached then), an [`Error::Trace`] for a
    /// traced value read back, a random draw, or a tensor of an enclosing `vmap` captured
    /// inside `f`, and whatever an op of the graph refuses.
    pub fn call<R>(&self, args: &[&Tensor]) -> Result<R>
    where
        F: Fn(&[Tensor]) -> Result<R>,
        R: Outputs,
    {
        let batch = match &self.input_signature {
            Some(specs) => signature::check(&self.name, specs, args)?,
            None => None,
        };
        let found = self
            .state()
            .graphs
            .iter()
            .find(|(_, g)| g.signature.matches(args))
            .map(|(_, g)| g.clone());
        let eager = || {
            let args: Vec<Tensor> = args.iter().map(|&a| a.clone()).collect();
            (self.f)(&args)
        };
        let in_vmap = args.iter().any(|a| a.batch().is_some());
        match found {
            // a custom gradient's rule is not in the graph: what must see it sees `f` run
            Some(g) if g.custom_gradients && watched() => eager(),
            // one example's tensors inside vmap: the graph traced outside, each primitive
            // batched as it replays (JAX's vmap of a jit), unless it assigns
            Some(g) if in_vmap && g.assigns() => eager(),
            Some(g) => R::from_tensors(g.replay(args, self.cuda_graph)?),
            // a trace runs the Rust code on real values once; inside vmap those are one
            // example's, and its effects would happen once for the batch: run it as written
            None if in_vmap => eager(),
            None => match batch.and_then(|b| self.at_batch(b, args)) {
                Some(g) => R::from_tensors(g.replay(args, self.cuda_graph)?),
                None => self.trace(Signature::of(args), args, batch),
            },
        }
    }

    /// The graph for `args` at batch size `b` from the one graph of every batch size, kept
    /// for the next call of this signature; `None` when there is no such graph (yet).
    fn at_batch(&self, b: usize, args: &[&Tensor]) -> Option<Arc<Graph>> {
        let mut state = self.state();
        let g = Arc::new(state.family.as_ref()?.instantiate(b, args, self.optimize)?);
        state.graphs.push((g.clone(), g.clone()));
        Some(g)
    }

    fn trace<R>(&self, signature: Signature, args: &[&Tensor], batch: Option<usize>) -> Result<R>
    where
        F: Fn(&[Tensor]) -> Result<R>,
        R: Outputs,
    {
        // each argument a tensor of its own: one passed twice, or also captured by `f`, is
        // then two values, as `func` makes them
        let inputs = args
            .iter()
            .map(crate::ops::identity)
            .collect::<Result<Vec<_>>>()?;
        // sizes as nodes only where one graph may serve every batch size
        let sizes = self
            .input_signature
            .as_ref()
            .is_some_and(|specs| specs.iter().any(|s| s.shape().contains(&None)));
        let guard = traces::begin(&inputs, sizes);
        let outputs = (self.f)(&inputs)?.into_tensors();
        let (nodes, outs, custom_gradients) = guard.finish(&outputs);
        let traced = Arc::new(Graph::new(
            self.name.clone(),
            signature.clone(),
            nodes.clone(),
            outs.clone(),
            custom_gradients,
            vec![],
            false,
        ));
        let run = match self.optimize {
            true => {
                let (nodes, outs, reports) = passes::optimize(nodes, outs);
                Arc::new(Graph::new(
                    self.name.clone(),
                    signature,
                    nodes,
                    outs,
                    custom_gradients,
                    reports,
                    true,
                ))
            }
            false => traced.clone(),
        };
        let (warn, refused) = {
            let mut state = self.state();
            // one graph for every batch size: the first trace is kept, the second decides
            let refused = match (batch, state.family.take()) {
                (Some(b), None) => {
                    state.family = Some(Family::Traced {
                        b1: b,
                        base: run.clone(),
                    });
                    None
                }
                (Some(b), Some(family)) => {
                    let (family, why) = family.learn(b, &run);
                    state.family = Some(family);
                    why
                }
                (None, family) => {
                    state.family = family;
                    None
                }
            };
            state.graphs.push((traced, run));
            state.traces += 1;
            let warn = state.traces >= RETRACE_WARNING && state.warning.is_none();
            if warn {
                state.warning = Some(format!(
                    "function '{}' has traced {} times, once per new signature (the shapes, \
                     dtypes and devices of its tensor arguments): tracing runs the Rust code \
                     eagerly and keeps one graph per signature; pass arguments of fewer shapes",
                    self.name, state.traces
                ));
            }
            (warn.then(|| state.warning.clone()).flatten(), refused)
        };
        if let Some(w) = warn {
            eprintln!("gradtape: warning: {w}");
        }
        if let Some(why) = refused {
            eprintln!(
                "gradtape: warning: function '{}' traces once per batch size, though its \
                 input_signature leaves that dimension unknown: {why}",
                self.name
            );
        }
        R::from_tensors(outputs)
    }
}

/// A tape records, an accumulator runs or a trace records on this thread.
fn watched() -> bool {
    context::with(|c| {
        c.tapes.recording.get() != 0 || c.forward.any_running() || c.traces.active.get() != 0
    })
}

#[cfg(test)]
mod tests {
    use crate::backend::arena::from_system;
    use crate::random::Generator;
    use crate::{ops, Axes, DType, GradientTape, Result, Tensor, Variable};

    /// A training step with matmul results and gradients outside fusion groups (64 × 64
    /// float32, 16 KB each), its hidden layer returned at every call.
    fn step(x: &Tensor, w: &Variable) -> Result<Vec<Tensor>> {
        let tape = GradientTape::new();
        let h = ops::tanh(&ops::matmul(x, w)?)?;
        let loss = ops::reduce_sum(&ops::square(&ops::matmul(&h, w)?)?, Axes::All, false)?;
        let [g] = tape.gradient(&loss, [w])?;
        if let Some(g) = g {
            w.assign_sub(&ops::multiply(&g, &1e-4)?)?;
        }
        Ok(vec![loss, h])
    }

    #[test]
    fn a_graph_reuses_the_buffers_its_calls_free_and_keeps_the_eager_bits() -> Result<()> {
        let mut rng = Generator::from_seed(7);
        let x = rng.normal(&[64, 64], 0.0, 0.3, DType::F32)?;
        let w0 = rng.normal(&[64, 64], 0.0, 0.1, DType::F32)?;
        let (eager_w, w) = (Variable::new(w0.clone()), Variable::new(w0));
        let f = super::function(|_: &[Tensor]| step(&x, &w));
        let mut kept = vec![];
        for call in 0..6 {
            let before = from_system();
            let out: Vec<Tensor> = f.call(&[])?;
            let taken = from_system() - before;
            if call >= 2 {
                // the returned hidden layer is the one buffer each call must take new
                assert!(
                    taken <= 1,
                    "call {call} took {taken} buffers from the system"
                );
            }
            let eager = step(&x, &eager_w)?;
            for (c, e) in out.iter().zip(&eager) {
                assert_eq!(c.to_vec::<f32>()?, e.to_vec::<f32>()?, "call {call}");
            }
            kept.push((out, eager));
        }
        assert_eq!(w.value().to_vec::<f32>()?, eager_w.value().to_vec::<f32>()?);
        // what a call returned is never a buffer a later call reused
        for (out, eager) in &kept {
            assert_eq!(out[1].to_vec::<f32>()?, eager[1].to_vec::<f32>()?);
        }
        // `empty_cache` takes the arena's buffers: the next call allocates again
        crate::memory::empty_cache();
        let before = from_system();
        let _: Vec<Tensor> = f.call(&[])?;
        assert!(from_system() - before > 1);
        Ok(())
    }

    /// What keeps a step from being recorded as a CUDA graph, decided before any GPU is
    /// asked (so it runs here): host arguments and variables, prints, numerics checks, sizes.
    #[test]
    fn a_step_that_reads_the_host_at_every_call_is_not_recorded() -> Result<()> {
        use super::recorded::Recordable;
        let gpu = crate::Device::Cuda(0);
        let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
        let v = Variable::new(x.clone());
        type Body<'a> = Box<dyn Fn(&[Tensor]) -> Result<Tensor> + 'a>;
        let cases: Vec<(&str, Body, &str)> = vec![
            (
                "argument",
                Box::new(|a| ops::exp(&a[0])),
                "an argument is on cpu",
            ),
            (
                "print",
                Box::new(|a| {
                    crate::print("x", &[&a[0]])?;
                    ops::exp(&a[0])
                }),
                "it prints",
            ),
            (
                "variable",
                Box::new(|a| ops::multiply(&a[0], &v)),
                "variable 'Variable' is on cpu",
            ),
        ];
        for (what, body, want) in cases {
            let f = super::function(body);
            let _: Tensor = f.call(&[&x])?;
            let g = &f.graphs()[0];
            // no argument at all: the graph's own nodes decide
            let why = match what {
                "argument" => g.unrecordable(gpu, &[&x]),
                _ => g.unrecordable(gpu, &[]),
            };
            assert!(
                why.as_deref().is_some_and(|w| w.contains(want)),
                "{what}: {why:?}"
            );
        }
        Ok(())
    }

    /// Inside a recording, a variable read after an assign sees the assigned value (as the
    /// run kernel by kernel does), an assign is checked as `assign` checks it, and a read of
    /// a variable whose value is not a GPU buffer refuses the recording.
    #[test]
    fn a_recording_holds_assigns_for_the_end_of_the_step() -> Result<()> {
        let v = Variable::new(Tensor::from_vec(vec![1.0f32, 2.0], &[2])?);
        let mut held = super::recorded::Held::default();
        let e = held.read(&v).unwrap_err().to_string();
        assert!(
            e.contains("cuda_graph") && e.contains("not a whole GPU buffer"),
            "{e}"
        );
        let new = Tensor::from_vec(vec![5.0f32, 6.0], &[2])?;
        held.assign(&v, &new)?;
        assert_eq!(held.read(&v)?.to_vec::<f32>()?, vec![5.0, 6.0]);
        // the variable itself is untouched until the recording writes it
        assert_eq!(v.value().to_vec::<f32>()?, vec![1.0, 2.0]);
        let e = held
            .assign(&v, &Tensor::from_vec(vec![1.0f32], &[1])?)
            .unwrap_err()
            .to_string();
        assert!(e.contains("assign") && e.contains("[1]"), "{e}");
        Ok(())
    }

    /// A recorded step writes a variable's buffer in place only when the variable's value has
    /// no other handle: a clone, a view, a weak reference (a tape's) each forbid it.
    #[test]
    fn a_value_is_the_sole_handle_only_when_nothing_else_can_see_it() -> Result<()> {
        let mut t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
        assert!(t.sole_handle());
        let clone = t.clone();
        assert!(!t.sole_handle());
        drop(clone);
        let view = t.with_new_id();
        assert!(!t.sole_handle(), "a view holds the owner");
        let mut v = view.clone();
        drop(view);
        assert!(!v.sole_handle(), "the owner is still held");
        drop(t);
        assert!(v.sole_handle(), "a view whose owner only it holds");
        let weak = v.downgrade();
        assert!(!v.sole_handle(), "a weak reference could read it later");
        drop(weak);
        assert!(v.sole_handle());
        Ok(())
    }

    /// The recording's schedule on a step that cannot be recorded: one kernel-by-kernel run,
    /// then a refused recording, and after the second refusal it stops trying and says why
    /// (decided before any GPU is asked, so it runs here).
    #[test]
    fn a_step_refused_twice_stops_trying_and_says_why() {
        use super::recorded::{Held, Recordable, Recorded};
        struct Printing;
        impl Recordable for Printing {
            fn unrecordable(&self, _: crate::Device, _: &[&Tensor]) -> Option<String> {
                Some("it prints".into())
            }
            fn output_types(&self) -> Vec<(Vec<usize>, DType)> {
                vec![]
            }
            fn run_recorded(&self, _: &[&Tensor], _: &mut Held) -> Result<Vec<Tensor>> {
                unreachable!("a refused step is never run inside a recording")
            }
        }
        let mut r = Recorded::default();
        for call in 0..6 {
            let out = r.call(&Printing, crate::Device::Cuda(0), &[]).unwrap();
            assert!(out.is_none(), "call {call} runs kernel by kernel");
            let want_off = call >= 3; // warm, refused, warm, refused
            assert_eq!(r.off.is_some(), want_off, "call {call}: {:?}", r.off);
        }
        let why = r.off.unwrap();
        assert!(why.contains("cannot be recorded: it prints"), "{why}");
        assert_eq!(r.launches, 0);
    }
}
