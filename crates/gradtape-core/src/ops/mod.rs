//! Every operation, under TensorFlow's names, each with its gradient rule beside it.
//!
//! `tf.add(x, y)` ports to `ops::add(&x, &y)`. Operands are anything [`AsTensor`](crate::AsTensor): tensors,
//! variables (read as TensorFlow reads them) and Rust numbers (which take the other operand's
//! dtype). Broadcasting follows NumPy everywhere.
//!
//! An op's forward computation, shape rule, batching rule (for [`crate::vmap()`]), gradient rule
//! and JVP rule (for [`crate::ForwardAccumulator`]) live in one function, and the rules are
//! written with these same ops, so they are themselves differentiable: that is what makes nested
//! tapes give higher derivatives and forward over reverse give Hessian-vector products. The primitives are few (elementwise maps and
//! zips, reductions, views, matmul, gather/scatter, concat, select); `softmax`, `logsumexp`,
//! `reduce_mean`, `elu`, `clip_by_value`, `stack`, `split`, `gather_nd` are compositions.

mod apply;
mod array;
pub(crate) mod batching;
mod compare;
pub(crate) mod conv;
#[cfg(feature = "linalg")]
pub(crate) mod decomp;
mod einsum;
mod elementwise;
#[cfg(feature = "linalg")]
pub(crate) mod factors;
mod index;
mod linalg;
pub(crate) mod nn;
mod reduce;
mod slicing;

pub use array::*;
pub use compare::*;
pub use conv::*;
pub use einsum::*;
pub use elementwise::*;
pub use index::*;
pub use linalg::*;
pub use nn::*;
pub use reduce::*;
pub use slicing::*;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub use crate::primitive::{Params, Primitive, SliceSpec};
pub(crate) use apply::apply;
pub(crate) use reduce::reduced_shape;

/// The primitives defined as data ([`Primitive`]): each one's kernel, derivative, batching
/// rule, parameters and CUDA expression in one value, run through one path. Every op with a
/// gradient is one of them or a composition of them; the differentiable ones are those whose
/// [`Primitive::is_differentiable`] is true.
///
/// ```
/// let names: Vec<&str> = gradtape::ops::primitives().map(|p| p.name()).collect();
/// assert!(names.contains(&"multiply") && names.contains(&"round"));
/// ```
pub fn primitives() -> impl Iterator<Item = &'static Primitive> {
    elementwise::UNARY
        .iter()
        .chain(elementwise::ROUNDING)
        .chain(elementwise::BINARY)
        .chain(compare::COMPARISONS)
        .chain(compare::LOGICAL)
        .chain(compare::PRIMITIVES)
        .chain(array::PRIMITIVES)
        .chain(reduce::PRIMITIVES)
        .chain(linalg::PRIMITIVES)
        .chain(index::PRIMITIVES)
        .chain(conv::PRIMITIVES)
        .chain(linalg_primitives())
        .copied()
}

/// The primitives of `linalg` (feature `linalg`), none without it.
fn linalg_primitives() -> &'static [&'static Primitive] {
    #[cfg(feature = "linalg")]
    return decomp::PRIMITIVES;
    #[cfg(not(feature = "linalg"))]
    return &[];
}

/// The differentiable primitives' names as of gradtape 0.2, before the primitives became data:
/// kept so that code reading it still builds. The registry is [`primitives`] (a primitive
/// added since is only there, `to_device` for one).
///
/// ```
/// #![allow(deprecated)]
/// assert!(gradtape::ops::DIFFERENTIABLE_OPS.contains(&"matmul"));
/// let differentiable = gradtape::ops::primitives().filter(|p| p.is_differentiable());
/// assert!(differentiable.map(|p| p.name()).any(|n| n == "to_device"));
/// ```
#[deprecated(note = "use `ops::primitives().filter(|p| p.is_differentiable())`")]
pub const DIFFERENTIABLE_OPS: &[&str] = &[
    // elementwise unary (the table in elementwise.rs)
    "negative",
    "square",
    "sqrt",
    "rsqrt",
    "reciprocal",
    "exp",
    "expm1",
    "log",
    "log1p",
    "abs",
    "sign",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "relu",
    "softplus",
    // elementwise binary and selection
    "add",
    "subtract",
    "multiply",
    "divide",
    "maximum",
    "minimum",
    "pow",
    "select",
    "cast",
    // reductions
    "reduce_sum",
    "reduce_max",
    "reduce_min",
    "reduce_prod",
    // products and views
    "matmul",
    "identity",
    "reshape",
    "transpose",
    "broadcast_to",
    "slice",
    "unslice",
    "concat",
    // indexing
    "gather",
    "scatter_add",
    // windows of images (convolution and pooling)
    "patches",
    "unpatches",
];

/// `Some(f())` when the input needs a gradient, `None` otherwise.
pub(crate) fn opt(need: bool, f: impl FnOnce() -> Result<Tensor>) -> Result<Option<Tensor>> {
    if need {
        f().map(Some)
    } else {
        Ok(None)
    }
}

/// The JVP rule of an op linear in its one input: the op applied to the tangent.
pub(crate) fn tangent1(
    t: &[Option<Tensor>],
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    t[0].as_ref().map(f).transpose()
}

/// The sum of a JVP rule's terms (one per input with a tangent), broadcast to the output's
/// shape (a term from a smaller, broadcast input covers the whole output).
pub(crate) fn tangent_sum(
    terms: impl IntoIterator<Item = Result<Option<Tensor>>>,
    shape: &[usize],
) -> Result<Option<Tensor>> {
    let mut sum: Option<Tensor> = None;
    for term in terms {
        if let Some(t) = term? {
            sum = Some(match sum {
                Some(s) => add(&s, &t)?,
                None => t,
            });
        }
    }
    sum.map(|s| {
        if crate::shape::same(s.shape(), shape) {
            Ok(s)
        } else {
            broadcast_to(&s, shape)
        }
    })
    .transpose()
}

/// Checks that two operands have one dtype (TensorFlow never promotes silently).
pub(crate) fn same_dtype(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::dtype(
            op,
            format!(
                "operands have different dtypes: {} {:?} and {} {:?} (cast one first)",
                a.dtype(),
                a.shape(),
                b.dtype(),
                b.shape()
            ),
        ));
    }
    Ok(())
}

/// Sums a broadcast gradient back to the shape of the input it flows to: the one un-broadcast
/// every binary rule uses.
pub(crate) fn sum_to_shape(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if crate::shape::same(g.shape(), shape) {
        return Ok(g.clone());
    }
    let gs = g.shape();
    let extra = gs.len() - shape.len();
    let axes: Vec<isize> = (0..gs.len())
        .filter(|&i| i < extra || (shape[i - extra] == 1 && gs[i] != 1))
        .map(|i| i as isize)
        .collect();
    let s = reduce_sum(g, axes, true)?;
    reshape_to(&s, shape)
}
