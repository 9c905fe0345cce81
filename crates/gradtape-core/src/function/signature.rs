//! A fixed input signature with an unknown dimension (TensorFlow's `input_signature` of
//! `tf.TensorSpec([None, 784])`), and running one graph at every batch size.
//!
//! A trace runs the Rust code on real tensors, so a size it reads is a number (`x.shape()[0]`),
//! not a symbol, and a number made from it (a mean's divisor) is a constant of the graph. So
//! one trace cannot say which of its numbers are the batch size. Two can: the second batch
//! size traces again, and when the two graphs are the same but for sizes that are affine in the
//! batch size (`a·b + c`: 128 and 64 in the first axis, 128·784 in a flattened one), and
//! constants that are equal or fill a batch-sized shape with one value, every later batch size
//! runs the graph with its sizes put in, without tracing. A constant that differs (a divisor
//! computed in Rust from the batch size) makes each batch size trace, and says so once.
//!
//! What two traces cannot see: Rust code that branches on the batch size at a threshold
//! between neither traced size nor the new one (`if b > 1000`). Compute such a branch with
//! ops, or call with the sizes that matter first.

use std::sync::Arc;

use super::graph::{Graph, Signature};
use crate::context::traces::{Node, NodeKind};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A tensor argument's shape and dtype for [`Function::input_signature`]
/// (TensorFlow's `tf.TensorSpec`): `None` for a dimension of any size.
///
/// [`Function::input_signature`]: super::Function::input_signature
///
/// ```
/// use gradtape::{DType, TensorSpec};
/// let spec = TensorSpec::new(&[None, Some(784)], DType::F32);
/// assert_eq!(spec.to_string(), "TensorSpec(shape=(None, 784), dtype=float32)");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    shape: Vec<Option<usize>>,
    dtype: DType,
}

impl TensorSpec {
    /// A tensor of this shape (`None`: any size) and dtype.
    pub fn new(shape: &[Option<usize>], dtype: DType) -> TensorSpec {
        TensorSpec {
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// Its shape, `None` where any size is accepted.
    pub fn shape(&self) -> &[Option<usize>] {
        &self.shape
    }

    /// Its dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn accepts(&self, t: &Tensor) -> bool {
        t.dtype() == self.dtype
            && t.rank() == self.shape.len()
            && self
                .shape
                .iter()
                .zip(t.shape())
                .all(|(s, &d)| s.is_none_or(|s| s == d))
    }
}

impl std::fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| d.map_or("None".into(), |d| d.to_string()))
            .collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        write!(f, "TensorSpec(shape={shape}, dtype={})", self.dtype)
    }
}

/// Checks `args` against `specs`; returns the batch size: the size of every unknown
/// dimension, when they are all the same (`None` when there is none, or they differ: the call
/// then has a graph of its own).
pub(super) fn check(name: &str, specs: &[TensorSpec], args: &[&Tensor]) -> Result<Option<usize>> {
    let op = "function";
    if specs.len() != args.len() {
        return Err(Error::arg(
            op,
            format!(
                "function '{name}' takes {} tensors (its input_signature), not {}",
                specs.len(),
                args.len()
            ),
        ));
    }
    let mut batch: Option<Option<usize>> = None;
    for (i, (spec, a)) in specs.iter().zip(args).enumerate() {
        if !spec.accepts(a) {
            let err = match a.dtype() == spec.dtype {
                true => Error::shape,
                false => Error::dtype,
            };
            return Err(err(
                op,
                format!(
                    "function '{name}': argument {i} of shape {:?} and dtype {} does not match \
                     its input_signature's {spec}",
                    a.shape(),
                    a.dtype()
                ),
            ));
        }
        for (s, &d) in spec.shape.iter().zip(a.shape()) {
            if s.is_none() {
                batch = match batch {
                    None => Some(Some(d)),
                    Some(Some(b)) if b == d => Some(Some(b)),
                    _ => Some(None),
                };
            }
        }
    }
    Ok(batch.flatten())
}

/// A size of a graph traced at two batch sizes: the same at both, or `a·b + c`.
#[derive(Clone, Copy, Debug)]
enum Size {
    Fixed(usize),
    Affine { a: i64, c: i64 },
}

impl Size {
    fn of(d1: usize, d2: usize, b1: usize, b2: usize) -> Option<Size> {
        if d1 == d2 {
            return Some(Size::Fixed(d1));
        }
        let (dd, db) = (d2 as i64 - d1 as i64, b2 as i64 - b1 as i64);
        (db != 0 && dd % db == 0).then(|| {
            let a = dd / db;
            Size::Affine {
                a,
                c: d1 as i64 - a * b1 as i64,
            }
        })
    }

    fn at(self, b: usize) -> Option<usize> {
        match self {
            Size::Fixed(d) => Some(d),
            Size::Affine { a, c } => usize::try_from(a.checked_mul(b as i64)?.checked_add(c)?).ok(),
        }
    }
}

/// How a constant is made at another batch size.
#[derive(Clone, Copy)]
enum Made {
    /// The traced tensor (its shape does not depend on the batch size).
    Same,
    /// Every element this value, at the batch's shape.
    Fill(f64),
}

/// One node's sizes: its shape's, its parameters', and how a constant is made.
struct PolyNode {
    shape: Vec<Size>,
    params: Vec<Size>,
    made: Made,
}

/// A graph traced at batch size `b1` that runs at any batch size.
pub(super) struct Poly {
    base: Arc<Graph>,
    nodes: Vec<PolyNode>,
}

/// What a function with an unknown dimension knows about running one graph at every batch
/// size: the first graph and its batch size until a second is traced, then the answer.
pub(super) enum Family {
    Traced { b1: usize, base: Arc<Graph> },
    Poly(Poly),
    Refused,
}

impl Family {
    /// After a trace at batch size `b` gave `graph`: the family as it now is, and the reason
    /// when it is refused now.
    pub(super) fn learn(self, b: usize, graph: &Arc<Graph>) -> (Family, Option<String>) {
        match self {
            // two traces on other dtypes or devices say nothing of the batch size
            Family::Traced { b1, base }
                if b1 != b && base.signature.same_but_shapes(&graph.signature) =>
            {
                match unify(&base, graph, b1, b) {
                    Ok(p) => (Family::Poly(p), None),
                    Err(why) => (Family::Refused, Some(why)),
                }
            }
            other => (other, None),
        }
    }

    /// The graph at batch size `b` for `args`, when one graph runs at every size.
    pub(super) fn instantiate(&self, b: usize, args: &[&Tensor], fuse: bool) -> Option<Graph> {
        let Family::Poly(p) = self else { return None };
        let base = &p.base;
        let signature = Signature::of(args);
        if !base.signature.same_but_shapes(&signature) {
            return None;
        }
        let mut nodes = Vec::with_capacity(base.nodes.len());
        for (node, poly) in base.nodes.iter().zip(&p.nodes) {
            let shape: Vec<usize> = poly.shape.iter().map(|s| s.at(b)).collect::<Option<_>>()?;
            let kind = match (&node.kind, poly.made) {
                (NodeKind::Constant { tensor, made_here }, Made::Fill(v)) => NodeKind::Constant {
                    tensor: Tensor::full(&shape, v, tensor.dtype()).ok()?,
                    made_here: *made_here,
                },
                (
                    NodeKind::Op {
                        primitive,
                        params,
                        inputs,
                    },
                    _,
                ) if !poly.params.is_empty() => {
                    let sizes: Vec<usize> =
                        poly.params.iter().map(|s| s.at(b)).collect::<Option<_>>()?;
                    NodeKind::Op {
                        primitive,
                        params: params.with_sizes(&sizes),
                        inputs: inputs.clone(),
                    }
                }
                (kind, _) => kind.clone(),
            };
            nodes.push(Node {
                kind,
                shape,
                dtype: node.dtype,
                unrecorded: node.unrecorded,
            });
        }
        let passes = base
            .passes()
            .iter()
            .filter(|r| r.pass != "fusion")
            .cloned()
            .collect();
        let g = Graph::new(
            base.name.clone(),
            signature,
            nodes,
            base.outputs.clone(),
            base.custom_gradients,
            passes,
            fuse,
        );
        // the arguments' shapes must be what the sizes give (a dimension the signature
        // leaves unknown may be fixed in the graph when both traces had it equal)
        let args_fit = g.nodes.iter().all(|node| match node.kind {
            NodeKind::Arg(i) => args
                .get(i)
                .is_some_and(|a| a.shape() == node.shape.as_slice()),
            _ => true,
        });
        args_fit.then_some(g)
    }
}

/// `g1` (traced at batch size `b1`) and `g2` (at `b2`) as one graph of the batch size, or
/// what differs.
fn unify(g1: &Arc<Graph>, g2: &Graph, b1: usize, b2: usize) -> std::result::Result<Poly, String> {
    let differ = |k: usize, what: &str| {
        format!(
            "node %{k} ({what}) differs between batch sizes {b1} and {b2} in a way a size cannot \
             explain"
        )
    };
    if g1.nodes.len() != g2.nodes.len()
        || g1.outputs != g2.outputs
        || g1.custom_gradients != g2.custom_gradients
    {
        return Err(format!(
            "the graphs traced at batch sizes {b1} and {b2} differ ({} and {} nodes)",
            g1.nodes.len(),
            g2.nodes.len()
        ));
    }
    let sizes = |k: usize, v1: &[usize], v2: &[usize], what: &str| {
        if v1.len() != v2.len() {
            return Err(differ(k, what));
        }
        v1.iter()
            .zip(v2)
            .map(|(&d1, &d2)| Size::of(d1, d2, b1, b2))
            .collect::<Option<Vec<Size>>>()
            .ok_or_else(|| differ(k, what))
    };
    let mut nodes = Vec::with_capacity(g1.nodes.len());
    for (k, (n1, n2)) in g1.nodes.iter().zip(&g2.nodes).enumerate() {
        if n1.dtype != n2.dtype || n1.unrecorded != n2.unrecorded {
            return Err(differ(k, "its dtype"));
        }
        let shape = sizes(k, &n1.shape, &n2.shape, "its shape")?;
        let mut poly = PolyNode {
            shape,
            params: vec![],
            made: Made::Same,
        };
        match (&n1.kind, &n2.kind) {
            (NodeKind::Arg(i), NodeKind::Arg(j)) if i == j => {}
            (
                NodeKind::Constant {
                    tensor: t1,
                    made_here: m1,
                },
                NodeKind::Constant {
                    tensor: t2,
                    made_here: m2,
                },
            ) if m1 == m2 => {
                let (v1, v2) = (
                    t1.read_f64_vec().map_err(|e| e.to_string())?,
                    t2.read_f64_vec().map_err(|e| e.to_string())?,
                );
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let fill = |v: &[f64]| {
                    v.first()
                        .filter(|f| v.iter().all(|x| x.to_bits() == f.to_bits()))
                        .copied()
                };
                if poly.shape.iter().any(|s| matches!(s, Size::Affine { .. })) {
                    match (fill(&v1), fill(&v2)) {
                        (Some(f1), Some(f2)) if f1.to_bits() == f2.to_bits() => {
                            poly.made = Made::Fill(f1)
                        }
                        _ => {
                            return Err(differ(
                                k,
                                "a constant of a batch-sized shape that is not one value",
                            ))
                        }
                    }
                } else if bits(&v1) != bits(&v2) {
                    let show = |v: &[f64]| match v.len() {
                        1 => v[0].to_string(),
                        n => format!("{n} values"),
                    };
                    return Err(format!(
                        "constant %{k} is {} at batch size {b1} and {} at {b2}: a number computed \
                         in Rust from the batch size (a mean's divisor, say) is frozen into the \
                         graph; compute it with ops from the tensor instead",
                        show(&v1),
                        show(&v2)
                    ));
                }
            }
            (
                NodeKind::Read {
                    variable: v1,
                    raw: r1,
                },
                NodeKind::Read {
                    variable: v2,
                    raw: r2,
                },
            ) if v1.handle_id() == v2.handle_id() && r1 == r2 => {}
            (
                NodeKind::Op {
                    primitive: p1,
                    params: q1,
                    inputs: i1,
                },
                NodeKind::Op {
                    primitive: p2,
                    params: q2,
                    inputs: i2,
                },
            ) if std::ptr::eq(*p1, *p2) && i1 == i2 => {
                let (s1, s2) = (q1.sizes(), q2.sizes());
                let zeros = vec![0; s1.len()];
                if s1.len() != s2.len() || q1.with_sizes(&zeros) != q2.with_sizes(&zeros) {
                    return Err(differ(k, p1.name()));
                }
                poly.params = sizes(k, &s1, &s2, p1.name())?;
                if poly.params.iter().all(|s| matches!(s, Size::Fixed(_))) {
                    poly.params.clear();
                }
            }
            (
                NodeKind::Assign {
                    variable: v1,
                    value: x1,
                },
                NodeKind::Assign {
                    variable: v2,
                    value: x2,
                },
            ) if v1.handle_id() == v2.handle_id() && x1 == x2 => {}
            (
                NodeKind::Print {
                    text: t1,
                    inputs: i1,
                    ..
                },
                NodeKind::Print {
                    text: t2,
                    inputs: i2,
                    ..
                },
            ) if t1 == t2 && i1 == i2 => {}
            (NodeKind::Check { inputs: i1, .. }, NodeKind::Check { inputs: i2, .. })
                if i1 == i2 => {}
            (
                NodeKind::Size {
                    input: i1,
                    axes: a1,
                },
                NodeKind::Size {
                    input: i2,
                    axes: a2,
                },
            ) if i1 == i2 && a1 == a2 => {}
            _ => return Err(differ(k, "its operation")),
        }
        nodes.push(poly);
    }
    Ok(Poly {
        base: g1.clone(),
        nodes,
    })
}
