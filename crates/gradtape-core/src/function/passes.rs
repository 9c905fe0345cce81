//! The graph passes (issue 22, slice 2): what a call runs shrinks, its answers do not. Each
//! kept value is computed by the same kernel from the same values as in the trace, so a
//! compiled call gives the eager call's bits.
//!
//! - *Constant folding*: a primitive whose inputs are all constants made inside the function
//!   runs once, here; its value becomes a constant. Constants captured from outside are not
//!   folded through, since a tape outside may watch them (their gradient flows through the
//!   call, as through a `tf.function`'s captures).
//! - *Common subexpressions*: a primitive with the same parameters on the same values, a
//!   variable read with no assign to it between, a scalar constant of the same bits, is
//!   computed once.
//! - *Identities*: a product with ones made inside the function (the seed a tape broadcasts
//!   through a `reduce_sum`'s gradient) is its other operand: `x · 1` is `x` in IEEE
//!   arithmetic, bit for bit (a signaling NaN aside, which the product would quiet).
//! - *Dead code*: what neither an output nor an effect (assign, print, check) needs is dropped:
//!   what a tape inside the function computed for gradients that are not used.

use std::collections::HashMap;

use crate::context::tapes::without_recording;
use crate::context::traces::{untraced, Node, NodeKind};
use crate::shape::numel;

/// The largest value constant folding makes (elements): a fold holds its result for as
/// long as the graph lives.
const FOLD_LIMIT: usize = 1 << 16;

/// What one pass did.
#[derive(Clone, Debug, PartialEq)]
pub struct PassReport {
    /// The pass (`"constant folding"`, `"common subexpressions"`, `"identities"`, `"dead code"`,
    /// then `"fusion"` and `"in place"`).
    pub pass: &'static str,
    /// Nodes folded into constants, merged into an earlier one, or dropped.
    pub changed: usize,
}

/// The passes, in order, on `nodes` and `outputs` (value indices).
pub(super) fn optimize(
    mut nodes: Vec<Node>,
    mut outputs: Vec<usize>,
) -> (Vec<Node>, Vec<usize>, Vec<PassReport>) {
    let folded = fold_constants(&mut nodes);
    let (merged, identities) = common_subexpressions(&mut nodes, &mut outputs);
    let before = nodes.len();
    let (nodes, outputs) = drop_dead_code(nodes, outputs);
    let reports = vec![
        PassReport {
            pass: "constant folding",
            changed: folded,
        },
        PassReport {
            pass: "common subexpressions",
            changed: merged,
        },
        PassReport {
            pass: "identities",
            changed: identities,
        },
        PassReport {
            pass: "dead code",
            changed: before - nodes.len(),
        },
    ];
    (nodes, outputs, reports)
}

/// A constant made inside the function, which no tape outside can watch.
fn made_here(node: &Node) -> Option<&crate::tensor::Tensor> {
    match &node.kind {
        NodeKind::Constant {
            tensor,
            made_here: true,
        } => Some(tensor),
        _ => None,
    }
}

fn fold_constants(nodes: &mut [Node]) -> usize {
    let mut folded = 0;
    for k in 0..nodes.len() {
        let NodeKind::Op {
            primitive, params, ..
        } = &nodes[k].kind
        else {
            continue;
        };
        let (primitive, params) = (*primitive, params.clone());
        if numel(&nodes[k].shape) > FOLD_LIMIT {
            continue;
        }
        let Some(inputs) = nodes[k]
            .inputs()
            .iter()
            .map(|&j| made_here(&nodes[j]).cloned())
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let inputs: Vec<&crate::tensor::Tensor> = inputs.iter().collect();
        // no trace or tape sees it (an outer function's trace is still running when an
        // inner one is optimized); an op that fails stays, to fail at every call
        let value =
            untraced(|| without_recording(|| crate::ops::apply(primitive, &inputs, &params)));
        let Ok(value) = value.and_then(|v| v.realize().cloned()) else {
            continue;
        };
        nodes[k].kind = NodeKind::Constant {
            tensor: value,
            made_here: true,
        };
        folded += 1;
    }
    folded
}

/// Merges common subexpressions and replaces products with ones by their other operand
/// (every later reader reads the kept value); returns how many of each.
fn common_subexpressions(nodes: &mut [Node], outputs: &mut [usize]) -> (usize, usize) {
    let mut rep: Vec<usize> = (0..nodes.len()).collect();
    let mut ops: HashMap<(usize, Vec<usize>), Vec<usize>> = HashMap::new();
    let mut reads: HashMap<(u64, bool), usize> = HashMap::new();
    let mut scalars: HashMap<(crate::dtype::DType, u64), usize> = HashMap::new();
    let mut sizes: HashMap<(usize, Vec<usize>, crate::dtype::DType), usize> = HashMap::new();
    let (mut merged, mut identities) = (0, 0);
    for k in 0..nodes.len() {
        for i in inputs_mut(&mut nodes[k]) {
            *i = rep[*i];
        }
        if let Some(j) = times_one(nodes, k) {
            rep[k] = j;
            identities += 1;
            continue;
        }
        let earlier = match &nodes[k].kind {
            NodeKind::Op {
                primitive,
                params,
                inputs,
            } => {
                let key = (*primitive as *const _ as usize, inputs.clone());
                let same = ops.get(&key).and_then(|cands| {
                    cands.iter().copied().find(|&j| {
                        matches!(&nodes[j].kind, NodeKind::Op { params: p, .. } if p == params)
                    })
                });
                if same.is_none() {
                    ops.entry(key).or_default().push(k);
                }
                same
            }
            NodeKind::Read { variable, raw } => {
                let key = (variable.handle_id(), *raw);
                let same = reads.get(&key).copied();
                reads.entry(key).or_insert(k);
                same
            }
            NodeKind::Assign { variable, .. } => {
                let h = variable.handle_id();
                reads.retain(|&(handle, _), _| handle != h);
                None
            }
            NodeKind::Constant {
                tensor,
                made_here: true,
            } if tensor.rank() == 0 => match tensor.read_f64_vec() {
                Ok(v) => {
                    let key = (tensor.dtype(), v[0].to_bits());
                    let same = scalars.get(&key).copied();
                    scalars.entry(key).or_insert(k);
                    same
                }
                Err(_) => None,
            },
            NodeKind::Size { input, axes } => {
                let key = (*input, axes.clone(), nodes[k].dtype);
                let same = sizes.get(&key).copied();
                sizes.entry(key).or_insert(k);
                same
            }
            _ => None,
        };
        if let Some(j) = earlier {
            rep[k] = j;
            // seen by tapes outside if either was (a recorded reader of it needs the path)
            nodes[j].unrecorded &= nodes[k].unrecorded;
            merged += 1;
        }
    }
    for o in outputs.iter_mut() {
        *o = rep[*o];
    }
    (merged, identities)
}

/// The operand `x` of node `k` when `k` is `x · 1` of `x`'s shape and dtype, with ones made
/// inside the function (a captured tensor may be watched by a tape outside, whose gradient
/// needs the product) and `x` seen by tapes outside exactly when `k` is.
fn times_one(nodes: &[Node], k: usize) -> Option<usize> {
    let NodeKind::Op {
        primitive, inputs, ..
    } = &nodes[k].kind
    else {
        return None;
    };
    if !std::ptr::eq(*primitive, &crate::ops::MULTIPLY) {
        return None;
    }
    let x = match inputs[..] {
        [a, b] if is_one(nodes, a) => b,
        [a, b] if is_one(nodes, b) => a,
        _ => return None,
    };
    let (node, kept) = (&nodes[k], &nodes[x]);
    (kept.shape == node.shape && kept.dtype == node.dtype && kept.unrecorded == node.unrecorded)
        .then_some(x)
}

/// Node `j` is ones made inside the function: a constant, or one broadcast.
fn is_one(nodes: &[Node], j: usize) -> bool {
    match &nodes[j].kind {
        NodeKind::Op {
            primitive, inputs, ..
        } if std::ptr::eq(*primitive, &crate::ops::BROADCAST_TO) => is_one(nodes, inputs[0]),
        _ => made_here(&nodes[j])
            .is_some_and(|t| t.read_f64_vec().is_ok_and(|v| v.iter().all(|&x| x == 1.0))),
    }
}

fn inputs_mut(node: &mut Node) -> &mut [usize] {
    match &mut node.kind {
        NodeKind::Op { inputs, .. }
        | NodeKind::Print { inputs, .. }
        | NodeKind::Check { inputs, .. } => inputs,
        NodeKind::Assign { value, .. } | NodeKind::Size { input: value, .. } => {
            std::slice::from_mut(value)
        }
        _ => &mut [],
    }
}

/// Keeps what the outputs and the effects need, in their order, numbered anew.
fn drop_dead_code(nodes: Vec<Node>, outputs: Vec<usize>) -> (Vec<Node>, Vec<usize>) {
    let mut live = vec![false; nodes.len()];
    for &o in &outputs {
        live[o] = true;
    }
    for k in (0..nodes.len()).rev() {
        let effect = matches!(
            nodes[k].kind,
            NodeKind::Assign { .. } | NodeKind::Print { .. } | NodeKind::Check { .. }
        );
        if live[k] || effect {
            live[k] = true;
            for &j in nodes[k].inputs() {
                live[j] = true;
            }
        }
    }
    let mut index = vec![usize::MAX; nodes.len()];
    let mut kept = Vec::with_capacity(nodes.len());
    for (k, mut node) in nodes.into_iter().enumerate() {
        if !live[k] {
            continue;
        }
        for i in inputs_mut(&mut node) {
            *i = index[*i];
        }
        index[k] = kept.len();
        kept.push(node);
    }
    let outputs = outputs.into_iter().map(|o| index[o]).collect();
    (kept, outputs)
}
