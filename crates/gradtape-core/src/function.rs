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
//! gradients through a compiled call are the eager ones. Slice 1 of issue 22: the graph is
//! replayed op by op through the same path eager ops take (no per-op savings yet; the graph
//! passes and a compiled executor come next, ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::backend::device::Device;
use crate::context;
use crate::context::tapes::without_recording;
use crate::context::traces::{self, Node, NodeKind, PrintSink};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

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
        state: Mutex::new(State::default()),
    }
}

/// What [`function()`] returns: call it with [`Function::call`].
pub struct Function<F> {
    f: F,
    name: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    graphs: Vec<Arc<Graph>>,
    traces: usize,
    warning: Option<String>,
}

/// What a graph is traced for: each argument's shape, dtype and device, and the default
/// device (where the function's constants were made).
#[derive(Clone, Debug, PartialEq)]
struct Signature {
    args: Vec<(Vec<usize>, DType, Device)>,
    device: Device,
}

impl Signature {
    fn of(args: &[&Tensor]) -> Signature {
        Signature {
            args: args
                .iter()
                .map(|a| (a.shape().to_vec(), a.dtype(), a.device()))
                .collect(),
            device: crate::device::default_device(),
        }
    }
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

    /// The graphs traced so far, one per signature, oldest first.
    pub fn graphs(&self) -> Vec<Arc<Graph>> {
        self.state().graphs.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // the state is a cache: a panic elsewhere cannot leave it half-written
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls it on `args`: traced on the first call for their signature, the graph replayed
    /// on later ones.
    ///
    /// # Errors
    /// Whatever `f` returns while it traces (nothing is cached then), an [`Error::Trace`] for a
    /// traced value read back or a random draw inside `f`, or for a call on one example's
    /// tensors inside `vmap` (not supported yet), and whatever an op of the graph refuses.
    pub fn call<R>(&self, args: &[&Tensor]) -> Result<R>
    where
        F: Fn(&[Tensor]) -> Result<R>,
        R: Outputs,
    {
        if args.iter().any(|a| a.batch().is_some()) {
            return Err(Error::trace(
                "function",
                format!(
                    "{}: called on one example's tensors inside vmap, which is not supported yet: \
                     vmap the function's Rust closure instead",
                    self.name
                ),
            ));
        }
        let signature = Signature::of(args);
        let found = self
            .state()
            .graphs
            .iter()
            .find(|g| g.signature == signature)
            .cloned();
        match found {
            // a custom gradient's rule is not in the graph: what must see it sees `f` run
            Some(g) if g.custom_gradients && watched() => {
                let args: Vec<Tensor> = args.iter().map(|&a| a.clone()).collect();
                (self.f)(&args)
            }
            Some(g) => R::from_tensors(g.replay(args)?),
            None => self.trace(signature, args),
        }
    }

    fn trace<R>(&self, signature: Signature, args: &[&Tensor]) -> Result<R>
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
        let guard = traces::begin(&inputs);
        let outputs = (self.f)(&inputs)?.into_tensors();
        let (nodes, outs, custom_gradients) = guard.finish(&outputs);
        let graph = Arc::new(Graph::new(
            self.name.clone(),
            signature,
            nodes,
            outs,
            custom_gradients,
        ));
        let warn = {
            let mut state = self.state();
            state.graphs.push(graph);
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
            warn.then(|| state.warning.clone()).flatten()
        };
        if let Some(w) = warn {
            eprintln!("gradtape: warning: {w}");
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

/// What one trace of a [`Function`] recorded: nodes in the order they ran, each defining a
/// value (`%k`) from earlier ones: the arguments, constants (tensors captured or made from Rust
/// values), variable reads, primitive calls; and the effects, variable assigns and prints.
///
/// ```
/// use gradtape::{function, ops, Tensor};
/// let f = function(|a: &[Tensor]| ops::exp(&ops::multiply(&a[0], &2.0)?));
/// let _: Tensor = f.call(&[&Tensor::scalar(1.0f32)])?;
/// let g = &f.graphs()[0];
/// assert_eq!(g.op_counts().get("multiply"), Some(&1));
/// assert!(g.to_string().contains("%3 = exp(%2) : float32[]"), "{g}");
/// assert!(g.to_dot().starts_with("digraph"));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Graph {
    name: String,
    signature: Signature,
    nodes: Vec<Node>,
    outputs: Vec<usize>,
    custom_gradients: bool,
    /// For each node, the values whose last reader it is (freed once it ran).
    last_uses: Vec<Vec<usize>>,
}

impl Graph {
    fn new(
        name: String,
        signature: Signature,
        nodes: Vec<Node>,
        outputs: Vec<usize>,
        custom_gradients: bool,
    ) -> Graph {
        let mut last = vec![None; nodes.len()];
        for (k, node) in nodes.iter().enumerate() {
            for &j in node.inputs() {
                last[j] = Some(k);
            }
        }
        let mut last_uses = vec![vec![]; nodes.len()];
        for (j, reader) in last.into_iter().enumerate() {
            if let Some(k) = reader.filter(|_| !outputs.contains(&j)) {
                last_uses[k].push(j);
            }
        }
        Graph {
            name,
            signature,
            nodes,
            outputs,
            custom_gradients,
            last_uses,
        }
    }

    /// The nodes, arguments and constants included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// No nodes (a function of no arguments that computes nothing).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many times each primitive runs in a call, and each effect (`read_variable`,
    /// `assign`, `print`); arguments and constants are not counted.
    pub fn op_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for node in &self.nodes {
            let name = match &node.kind {
                NodeKind::Op { primitive, .. } => primitive.name(),
                NodeKind::Read { .. } => "read_variable",
                NodeKind::Assign { .. } => "assign",
                NodeKind::Print { .. } => "print",
                NodeKind::Arg(_) | NodeKind::Constant(_) => continue,
            };
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }

    /// The graph in Graphviz's DOT language (`dot -Tsvg`): a box per node, an edge per input.
    pub fn to_dot(&self) -> String {
        let mut s = format!(
            "digraph \"{}\" {{\n  node [shape=box];\n",
            escape(&self.name)
        );
        for (k, node) in self.nodes.iter().enumerate() {
            let label = format!("%{k} = {}\\n{}", self.head(k), type_of(node));
            s += &format!(
                "  n{k} [label=\"{}\"];\n",
                escape(&label).replace("\\\\n", "\\n")
            );
            for &j in node.inputs() {
                s += &format!("  n{j} -> n{k};\n");
            }
        }
        for (i, &j) in self.outputs.iter().enumerate() {
            s += &format!("  out{i} [label=\"output {i}\", shape=plaintext];\n  n{j} -> out{i};\n");
        }
        s + "}\n"
    }

    /// What node `k` is, without its inputs.
    fn head(&self, k: usize) -> String {
        match &self.nodes[k].kind {
            NodeKind::Arg(i) => format!("arg{i}"),
            NodeKind::Constant(t) => match t.numel() {
                1 => format!("constant {}", crate::display::numpy(t).unwrap_or_default()),
                _ => "constant".into(),
            },
            NodeKind::Read { variable, .. } => {
                format!("read_variable '{}'", variable.name().unwrap_or("Variable"))
            }
            NodeKind::Op {
                primitive, params, ..
            } => match params.kind() == crate::primitive::ParamsKind::None {
                true => primitive.name().to_string(),
                false => format!("{} {params:?}", primitive.name()),
            },
            NodeKind::Assign { variable, .. } => {
                format!("assign '{}'", variable.name().unwrap_or("Variable"))
            }
            NodeKind::Print { text, .. } => format!("print {text:?}"),
        }
    }

    /// Runs the graph on `args` (of its signature), each node through the path its eager op
    /// takes, so that tapes and accumulators outside see the primitives.
    fn replay(&self, args: &[&Tensor]) -> Result<Vec<Tensor>> {
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        for (k, node) in self.nodes.iter().enumerate() {
            let value = {
                let run = || self.run(node, args, &values);
                match node.unrecorded {
                    true => without_recording(run),
                    false => run(),
                }
            }?;
            values[k] = value;
            for &j in &self.last_uses[k] {
                values[j] = None;
            }
        }
        self.outputs
            .iter()
            .map(|&j| value(&values, j).cloned())
            .collect()
    }

    fn run(
        &self,
        node: &Node,
        args: &[&Tensor],
        values: &[Option<Tensor>],
    ) -> Result<Option<Tensor>> {
        let inputs = || -> Result<Vec<&Tensor>> {
            node.inputs().iter().map(|&j| value(values, j)).collect()
        };
        Ok(match &node.kind {
            NodeKind::Arg(i) => Some(args[*i].clone()),
            NodeKind::Constant(t) => Some(t.clone()),
            NodeKind::Read { variable, raw } => Some(match raw {
                true => variable.read_for_update(),
                false => variable.value(),
            }),
            NodeKind::Op {
                primitive, params, ..
            } => Some(crate::ops::apply(primitive, &inputs()?, params)?),
            NodeKind::Assign { variable, .. } => {
                variable.replace("assign", inputs()?[0])?;
                None
            }
            NodeKind::Print { text, sink, .. } => {
                print_to(text, &inputs()?, sink.as_ref())?;
                None
            }
        })
    }
}

/// Value `j` while replaying: computed and not yet freed, or the graph is wrong.
fn value(values: &[Option<Tensor>], j: usize) -> Result<&Tensor> {
    values.get(j).and_then(Option::as_ref).ok_or_else(|| {
        Error::trace(
            "function",
            format!("value %{j} is read before it is computed or after its last reader"),
        )
    })
}

fn type_of(node: &Node) -> String {
    format!("{}{:?}", node.dtype, node.shape)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// One line per node (`%3 = multiply(%0, %2) : float32[2, 3]`), then what it returns.
impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args: Vec<String> = self
            .signature
            .args
            .iter()
            .enumerate()
            .map(|(i, (shape, dtype, device))| match device {
                Device::Cpu => format!("arg{i}: {dtype}{shape:?}"),
                d => format!("arg{i}: {dtype}{shape:?} on {d}"),
            })
            .collect();
        writeln!(f, "graph {}({}) {{", self.name, args.join(", "))?;
        for (k, node) in self.nodes.iter().enumerate() {
            let ins: Vec<String> = node.inputs().iter().map(|j| format!("%{j}")).collect();
            let call = match node.inputs().is_empty() {
                true => self.head(k),
                false => format!("{}({})", self.head(k), ins.join(", ")),
            };
            match &node.kind {
                NodeKind::Assign { .. } | NodeKind::Print { .. } => writeln!(f, "  {call}")?,
                _ => writeln!(f, "  %{k} = {call} : {}", type_of(node))?,
            }
        }
        let outs: Vec<String> = self.outputs.iter().map(|j| format!("%{j}")).collect();
        writeln!(f, "  return ({})\n}}", outs.join(", "))
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Prints `text` and the tensors' elements on standard error at every call, also inside a
/// [`function()`] (TensorFlow's `tf.print`; Rust's `println!` there runs while it traces only).
///
/// ```
/// gradtape::print("x:", &[&gradtape::Tensor::scalar(2.0f32)])?; // x: 2.0
/// # Ok::<(), gradtape::Error>(())
/// ```
///
/// # Errors
/// When a tensor's elements cannot be computed (a pending tensor whose computation failed).
pub fn print(text: &str, tensors: &[&Tensor]) -> Result<()> {
    print_to(text, tensors, None)
}

/// [`print()`] to `sink` instead of standard error (TensorFlow's `output_stream`): a log, a test.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// let lines = Arc::new(Mutex::new(vec![]));
/// let sink = { let lines = lines.clone(); move |l: &str| lines.lock().unwrap().push(l.to_string()) };
/// gradtape::print_with("x:", &[&gradtape::Tensor::from_vec(vec![1i64, 2], &[2])?], sink)?;
/// assert_eq!(lines.lock().unwrap()[0], "x: [1 2]");
/// # Ok::<(), gradtape::Error>(())
/// ```
///
/// # Errors
/// As [`print()`].
pub fn print_with(
    text: &str,
    tensors: &[&Tensor],
    sink: impl Fn(&str) + Send + Sync + 'static,
) -> Result<()> {
    let sink: PrintSink = Arc::new(sink);
    print_to(text, tensors, Some(&sink))
}

fn print_to(text: &str, tensors: &[&Tensor], sink: Option<&PrintSink>) -> Result<()> {
    // inside vmap, every example: the batch behind them
    let tensors: Vec<Tensor> = tensors
        .iter()
        .map(|t| crate::vmap::all_examples(t))
        .collect();
    let tensors: Vec<&Tensor> = tensors.iter().collect();
    traces::note_print(text, &tensors, sink);
    let mut line = text.to_string();
    for t in tensors {
        if !line.is_empty() {
            line.push(' ');
        }
        line += &crate::display::numpy(t)?;
    }
    match sink {
        Some(sink) => sink(&line),
        None => eprintln!("{line}"),
    }
    Ok(())
}
