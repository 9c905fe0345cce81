//! A traced graph: its nodes, how it runs (replayed through `ops::apply`), and how it prints.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::flat::Flat;
use super::fused::{Groups, Step};
use super::passes::PassReport;
use super::print::print_to;
use super::recorded::{Held, Recordable, Recorded};
use crate::backend::arena::Arena;
use crate::backend::device::Device;
use crate::context::tapes::{without_recording, Watching};
use crate::context::traces::{Node, NodeKind};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What a graph is traced for: each argument's shape, dtype and device, and the default
/// device (where the function's constants were made).
#[derive(Clone, Debug)]
pub(crate) struct Signature {
    args: Vec<(Vec<usize>, DType, Device)>,
    device: Device,
}

impl Signature {
    /// `args` (and the default device now) have this signature: what every call checks,
    /// without making one.
    pub(crate) fn matches(&self, args: &[&Tensor]) -> bool {
        self.args.len() == args.len()
            && self
                .args
                .iter()
                .zip(args)
                .all(|((shape, dtype, device), a)| {
                    crate::shape::same(a.shape(), shape)
                        && a.dtype() == *dtype
                        && a.device() == *device
                })
            && crate::device::default_device() == self.device
    }

    /// The same dtypes and devices, argument by argument, and the same default device: the
    /// signature of another batch size of the same function.
    pub(crate) fn same_but_shapes(&self, other: &Signature) -> bool {
        self.device == other.device
            && self.args.len() == other.args.len()
            && self
                .args
                .iter()
                .zip(&other.args)
                .all(|((_, d1, v1), (_, d2, v2))| d1 == d2 && v1 == v2)
    }

    pub(crate) fn of(args: &[&Tensor]) -> Signature {
        Signature {
            args: args
                .iter()
                .map(|a| (a.shape().to_vec(), a.dtype(), a.device()))
                .collect(),
            device: crate::device::default_device(),
        }
    }
}

/// What one trace of a [`Function`](super::Function) recorded: nodes in the order they ran, each defining a
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
    pub(super) name: String,
    pub(super) signature: Signature,
    pub(super) nodes: Vec<Node>,
    pub(super) outputs: Vec<usize>,
    pub(super) custom_gradients: bool,
    passes: Vec<PassReport>,
    /// For each node, the values whose last reader it is (freed once it ran).
    last_uses: Vec<Vec<usize>>,
    /// The fusion groups that run when nothing watches the thread (empty when not fused).
    groups: Groups,
    /// `last_uses` per step of `groups.order` when the groups run: a group reads its leaves
    /// at its step.
    fused_last_uses: Vec<Vec<usize>>,
    /// The host buffers its calls free, for its next calls (the memory plan of the values
    /// outside fusion groups; see `backend::arena`).
    arena: Arc<Mutex<Arena>>,
    /// Some value is as large as the buffers an arena keeps (else the seed's step at 200
    /// points paid its bookkeeping, about 5%, for nothing).
    large: bool,
    /// Its run on a GPU recorded as one CUDA graph (`Function::cuda_graph`).
    recorded: Mutex<Recorded>,
    /// Its small host steps run over buffers of their own (see `flat.rs`), when it can.
    flat: Option<Mutex<Flat>>,
}

impl Graph {
    pub(super) fn new(
        name: String,
        signature: Signature,
        nodes: Vec<Node>,
        outputs: Vec<usize>,
        custom_gradients: bool,
        mut passes: Vec<PassReport>,
        fuse: bool,
    ) -> Graph {
        let mut groups = match fuse {
            true => Groups::plan(&nodes, &outputs),
            false => Groups::default(),
        };
        if fuse {
            passes.push(PassReport {
                pass: "fusion",
                changed: groups.groups.iter().map(|g| g.nodes.len()).sum(),
            });
        }
        // where each node's reads happen when the groups run: at its step
        let mut at = vec![0; nodes.len()];
        for (i, step) in groups.order.iter().enumerate() {
            match *step {
                Step::Node(k) => at[k] = i,
                Step::Group(g) => groups.groups[g].nodes.iter().for_each(|&k| at[k] = i),
            }
        }
        let last_uses = last_uses_at(&nodes, &outputs, nodes.len(), |k| k);
        let fused_last_uses = match groups.groups.is_empty() {
            true => vec![],
            false => last_uses_at(&nodes, &outputs, groups.order.len(), |k| at[k]),
        };
        if fuse {
            let changed = groups.plan_in_place(&nodes, &at, &fused_last_uses);
            passes.push(PassReport {
                pass: "in place",
                changed,
            });
        }
        let large = nodes.iter().any(|n| {
            n.shape.iter().product::<usize>() * n.dtype.size_in_bytes()
                >= crate::backend::arena::MIN_BYTES
        });
        let flat = match large || !fuse {
            true => None,
            false => Flat::plan(&nodes, &groups).map(Mutex::new),
        };
        Graph {
            name,
            signature,
            outputs,
            custom_gradients,
            passes,
            last_uses,
            groups,
            fused_last_uses,
            arena: Arena::shared(),
            recorded: Mutex::default(),
            large,
            flat,
            nodes,
        }
    }

    /// What each graph pass changed, in the order they ran (empty for a graph as traced).
    pub fn passes(&self) -> &[PassReport] {
        &self.passes
    }

    /// The fusion group node `k` runs in, if any.
    fn group_of(&self, k: usize) -> Option<usize> {
        self.groups.of.get(k).copied().flatten()
    }

    /// How many fusion groups run when nothing watches the thread, each one pass over its
    /// elements (see [`Graph`]'s listing, which marks their nodes).
    pub fn fusion_groups(&self) -> usize {
        self.groups.groups.len()
    }

    /// Whether calls on the host run over buffers of the graph's own, with no tensor between
    /// its kernels: a small step (every value under a page) of fusion groups, variable reads
    /// and assigns, constants and reshapes. Its values are the usual run's, bit for bit.
    pub fn runs_flat(&self) -> bool {
        self.flat.is_some()
    }

    /// How many calls ran as one launch of a CUDA graph (see [`crate::Function::cuda_graph`]).
    pub fn cuda_graph_launches(&self) -> usize {
        self.recorded().launches
    }

    /// Why calls on a GPU no longer try to launch as a CUDA graph, if they have stopped: a
    /// node that cannot be recorded (a print, a numerics check, a copy between host and
    /// GPU), or variables that keep changing buffers.
    pub fn cuda_graph_refusal(&self) -> Option<String> {
        self.recorded().off.clone()
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // a cache of launches: a panic elsewhere leaves at worst a recording to redo
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// It assigns a variable.
    pub(super) fn assigns(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n.kind, NodeKind::Assign { .. }))
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
                NodeKind::Check { .. } => "check",
                NodeKind::Size { .. } => "size",
                NodeKind::Arg(_) | NodeKind::Constant { .. } => continue,
            };
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }

    /// The graph in Graphviz's DOT language (`dot -Tsvg`): a box per node, an edge per input,
    /// each fusion group a dashed cluster.
    pub fn to_dot(&self) -> String {
        format!(
            "digraph \"{}\" {{\n  node [shape=box];\n{}}}\n",
            escape(&self.name),
            self.dot_body("")
        )
    }

    /// The graph as a DOT cluster named `cluster_{prefix}`, its nodes' names starting with
    /// `prefix`: to draw it inside another graph's file (the CLI's `--tape-dot` draws the
    /// tape's operations and the compiled step side by side).
    pub fn to_dot_cluster(&self, prefix: &str) -> String {
        format!(
            "  subgraph \"cluster_{p}\" {{\n  label=\"{}\";\n  node [shape=box];\n{}  }}\n",
            escape(&self.name),
            self.dot_body(prefix),
            p = escape(prefix),
        )
    }

    fn dot_body(&self, prefix: &str) -> String {
        let p = escape(prefix);
        let mut s = String::new();
        for (k, node) in self.nodes.iter().enumerate() {
            let label = match &node.kind {
                NodeKind::Assign { .. } | NodeKind::Print { .. } | NodeKind::Check { .. } => {
                    escape(&self.head(k))
                }
                // DOT's `\n` breaks the label's line
                _ => format!("%{k} = {}\\n{}", escape(&self.head(k)), type_of(node)),
            };
            s += &format!("  \"{p}n{k}\" [label=\"{label}\"];\n");
            for &j in node.inputs() {
                s += &format!("  \"{p}n{j}\" -> \"{p}n{k}\";\n");
            }
        }
        for (i, &j) in self.outputs.iter().enumerate() {
            s += &format!(
                "  \"{p}out{i}\" [label=\"output {i}\", shape=plaintext];\n  \"{p}n{j}\" -> \"{p}out{i}\";\n"
            );
        }
        for (g, group) in self.groups.groups.iter().enumerate() {
            let nodes: Vec<String> = group
                .nodes
                .iter()
                .map(|k| format!("\"{p}n{k}\";"))
                .collect();
            s += &format!(
                "  subgraph \"cluster_{p}fusion_{g}\" {{ label=\"fusion {g}\"; style=dashed; {} }}\n",
                nodes.join(" ")
            );
        }
        s
    }

    /// What node `k` is, without its inputs.
    fn head(&self, k: usize) -> String {
        match &self.nodes[k].kind {
            NodeKind::Arg(i) => format!("arg{i}"),
            NodeKind::Constant { tensor: t, .. } => match t.numel() {
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
            NodeKind::Check { .. } => "check".into(),
            NodeKind::Size { axes, .. } => format!("size axes {axes:?}"),
        }
    }

    /// Runs the graph on `args` (of its signature), each node through the path its eager op
    /// takes, so that tapes, accumulators and traces outside see the primitives; when nothing
    /// watches the thread (no tape, no accumulator running, no trace, no numerics check, no
    /// custom gradient's forward), each primitive's kernel is called directly, as `apply`
    /// would call it, and variables are read as they are.
    ///
    /// With `cuda_graph`, a direct run on a GPU is launched as one recorded CUDA graph when
    /// it can be (see `recorded.rs`).
    pub(super) fn replay(&self, args: &[&Tensor], cuda_graph: bool) -> Result<Vec<Tensor>> {
        let batched = args.iter().any(|a| a.batch().is_some());
        let direct = !batched
            && crate::context::with(|c| {
                // no tape at all (a paused one notes reads), no custom gradient's forward (which
                // credits variable reads to its gradient)
                Watching::of(c).nothing()
                    && !c.tapes.in_custom_forward()
                    && c.tapes.active.borrow().is_empty()
            });
        if direct && cuda_graph && self.signature.device != Device::Cpu {
            // a second thread calling meanwhile runs kernel by kernel
            if let Ok(mut recorded) = self.recorded.try_lock() {
                if let Some(out) = recorded.call(self, self.signature.device, args)? {
                    return Ok(out);
                }
            }
        }
        // a small host step over its own buffers (a second thread calling meanwhile, and a
        // call whose arguments do not fit, take the usual path)
        if let (true, Some(flat)) = (direct, &self.flat) {
            if !crate::backend::noting_kernels() {
                if let Ok(mut flat) = flat.try_lock() {
                    let run = flat.run(&self.nodes, &self.groups, &self.outputs, args)?;
                    if let Some(out) = run {
                        return Ok(out);
                    }
                }
            }
        }
        // The direct run keeps its freed buffers for the next call (not under a tape: it may
        // keep values past the call, and the run is eager's, op by op); a second thread
        // calling at the same time allocates as eager code does.
        if direct && self.large {
            if let Ok(mut arena) = self.arena.try_lock() {
                return arena.scope(|| self.run_all(args, direct, None));
            }
        }
        self.run_all(args, direct, None)
    }

    fn run_all(
        &self,
        args: &[&Tensor],
        direct: bool,
        mut held: Option<&mut Held>,
    ) -> Result<Vec<Tensor>> {
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        if direct && !self.groups.groups.is_empty() {
            for (i, step) in self.groups.order.iter().enumerate() {
                match *step {
                    Step::Node(k) => {
                        values[k] =
                            self.run(&self.nodes[k], args, &values, true, held.as_deref_mut())?
                    }
                    Step::Group(g) => {
                        let g = &self.groups.groups[g];
                        // the nodes one by one when a leaf is not laid out for a pass
                        if !g.run(&self.nodes, &mut values)? {
                            for &m in &g.nodes {
                                let node = &self.nodes[m];
                                values[m] =
                                    self.run(node, args, &values, true, held.as_deref_mut())?;
                            }
                        }
                    }
                }
                for &j in &self.fused_last_uses[i] {
                    values[j] = None;
                }
            }
        } else {
            for (k, node) in self.nodes.iter().enumerate() {
                values[k] = match (direct, node.unrecorded) {
                    (false, true) => {
                        without_recording(|| self.run(node, args, &values, false, None))
                    }
                    _ => self.run(node, args, &values, direct, held.as_deref_mut()),
                }?;
                for &j in &self.last_uses[k] {
                    values[j] = None;
                }
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
        direct: bool,
        held: Option<&mut Held>,
    ) -> Result<Option<Tensor>> {
        let ids = node.inputs();
        // the inputs on the stack for the common case of at most four (every primitive but
        // `concat`, and most prints)
        let few: [&Tensor; 4];
        let many: Vec<&Tensor>;
        let inputs: &[&Tensor] = match ids.len() {
            0 => &[],
            n if n <= 4 => {
                let mut a = [value(values, ids[0])?; 4];
                for (slot, &j) in a.iter_mut().zip(ids) {
                    *slot = value(values, j)?;
                }
                few = a;
                &few[..n]
            }
            _ => {
                many = ids
                    .iter()
                    .map(|&j| value(values, j))
                    .collect::<Result<_>>()?;
                &many
            }
        };
        Ok(match &node.kind {
            NodeKind::Arg(i) => Some(args[*i].clone()),
            NodeKind::Constant { tensor, .. } => Some(tensor.clone()),
            NodeKind::Read { variable, raw } => Some(match (raw, direct, held) {
                // recording: the value assigned earlier in the step, else the buffer
                (_, true, Some(h)) => h.read(variable)?,
                // nothing watches: the value as a read would give it
                (_, true, None) => variable.current(),
                (true, false, _) => variable.read_for_update(),
                (false, false, _) => variable.value(),
            }),
            NodeKind::Op {
                primitive, params, ..
            } => Some(match direct {
                true => (primitive.forward)(inputs, params)?,
                false => crate::ops::apply(primitive, inputs, params)?,
            }),
            NodeKind::Assign { variable, .. } => {
                match held {
                    Some(h) => h.assign(variable, inputs[0])?,
                    None => variable.replace("assign", inputs[0])?,
                }
                None
            }
            NodeKind::Check { check, .. } => {
                crate::context::traces::check_values(inputs, check.clone())?;
                None
            }
            NodeKind::Print { text, sink, .. } => {
                print_to(text, inputs, sink.as_ref())?;
                None
            }
            NodeKind::Size { axes, .. } => {
                let count: usize = axes.iter().map(|&a| inputs[0].shape()[a]).product();
                Some(Tensor::from_f64s(&[count as f64], &[], node.dtype))
            }
        })
    }
}

impl Recordable for Graph {
    fn unrecordable(&self, device: Device, args: &[&Tensor]) -> Option<String> {
        if let Some(a) = args.iter().find(|a| a.device() != device) {
            return Some(format!(
                "an argument is on {}, the step on {device}",
                a.device()
            ));
        }
        self.nodes.iter().find_map(|node| match &node.kind {
            NodeKind::Print { .. } => Some("it prints (a host read at every call)".into()),
            NodeKind::Check { .. } => Some("it checks numerics (a host read at every call)".into()),
            NodeKind::Size { .. } => Some("it reads a size at every call".into()),
            NodeKind::Read { variable, .. } | NodeKind::Assign { variable, .. }
                if variable.device() != device =>
            {
                let name = variable.name().unwrap_or("Variable");
                Some(format!("variable '{name}' is on {}", variable.device()))
            }
            _ => None,
        })
    }

    fn output_types(&self) -> Vec<(Vec<usize>, DType)> {
        self.outputs
            .iter()
            .map(|&j| (self.nodes[j].shape.clone(), self.nodes[j].dtype))
            .collect()
    }

    fn run_recorded(&self, args: &[&Tensor], held: &mut Held) -> Result<Vec<Tensor>> {
        self.run_all(args, true, Some(held))
    }
}

/// For each node, the values whose last reader it is, a node's reads happening at node
/// `at(k)`; the outputs are never freed.
fn last_uses_at(
    nodes: &[Node],
    outputs: &[usize],
    steps: usize,
    at: impl Fn(usize) -> usize,
) -> Vec<Vec<usize>> {
    let mut last = vec![None; nodes.len()];
    for (k, node) in nodes.iter().enumerate() {
        for &j in node.inputs() {
            last[j] = last[j].max(Some(at(k)));
        }
    }
    let mut last_uses = vec![vec![]; steps];
    for (j, reader) in last.into_iter().enumerate() {
        if let Some(k) = reader.filter(|_| !outputs.contains(&j)) {
            last_uses[k].push(j);
        }
    }
    last_uses
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
                NodeKind::Assign { .. } | NodeKind::Print { .. } | NodeKind::Check { .. } => {
                    writeln!(f, "  {call}")?
                }
                _ => match self.group_of(k) {
                    Some(g) if self.groups.in_place(g, k) => writeln!(
                        f,
                        "  %{k} = {call} : {}  [fusion {g}, in place]",
                        type_of(node)
                    )?,
                    Some(g) => writeln!(f, "  %{k} = {call} : {}  [fusion {g}]", type_of(node))?,
                    None => writeln!(f, "  %{k} = {call} : {}", type_of(node))?,
                },
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
