//! Lazy fusion of elementwise chains on large tensors.
//!
//! On ten million floats an eager op spends its time moving memory, not computing: `a + b·x`
//! reads `x` and writes a 40 MB `b·x`, then reads that back to add `a` and writes another 40 MB.
//! So at [`min_elements`] elements and above, an elementwise op on float tensors does not
//! compute: it returns a *pending* tensor that remembers the op and its operands, a small
//! expression graph. The graph runs when its elements are needed, in one pass, a block of 1,024
//! elements at a time so that every intermediate stays in cache:
//!
//! - a reduction over all elements (`reduce_sum`, `reduce_max`, `reduce_min`) folds the blocks
//!   as they are made, and nothing of the chain is ever written to memory. Such a reduction is
//!   pending too, and when one is read, the other pending reductions of the thread that read
//!   the same arrays run in the same pass (a loss and its gradients are reductions of the same
//!   data, and a tape asks for them one at a time);
//! - anything else that reads the elements (another op, `to_vec`, a variable assignment,
//!   [`crate::Tensor::realize`]) computes them once and keeps them.
//!
//! Nothing changes for the user: a pending tensor has its shape and dtype, records on tapes like
//! any other, and gives the same bits as eager evaluation (the same per-element functions and
//! the same summation order). The price is recomputation: a pending tensor read by two fused
//! reductions is computed twice. For arithmetic that is cheaper than a trip through memory;
//! graphs are capped at [`MAX_NODES`] ops so that no chain grows without bound (a bigger one is
//! computed eagerly, which realizes its pending operands).
//!
//! Small tensors stay eager: below the threshold the data sit in cache anyway and building a
//! graph would cost more than it saves. A CUDA backend would compile the same graphs into one
//! kernel each; the graph is device-neutral, only its binding to host slices is host code.
//!
//! Pending tensors can be shared between threads and read from any of them. No reader ever
//! waits for another to finish computing one (see `realize` below); the grouping of pending
//! reductions into one pass is per thread, so it only ever saves work, never orders it. A
//! computation that fails (memory that cannot be had) is kept as an error that every later
//! read returns.

pub(crate) use crate::backend::fusion::{binary_kernel, unary_kernel, Fold};
pub(crate) use crate::backend::fusion::{BinaryKernel, UnaryKernel};
use crate::backend::fusion::{Leaf, Pending};
pub use crate::backend::fusion::{DEFAULT_MIN_ELEMENTS, MAX_NODES};
use crate::dtype::DType;
use crate::tensor::{Tensor, WeakTensor};

/// The size from which elementwise ops on this thread return pending tensors.
///
/// ```
/// assert_eq!(gradtape::fusion::min_elements(), gradtape::fusion::DEFAULT_MIN_ELEMENTS);
/// ```
#[inline]
pub fn min_elements() -> usize {
    crate::context::with(|c| c.fusion_min_elements.get())
}

/// Sets the size from which elementwise ops on this thread return pending tensors;
/// `usize::MAX` makes every op eager. Results do not depend on it, only speed and memory do.
///
/// ```
/// use gradtape::{fusion, ops, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
/// fusion::set_min_elements(1);
/// let y = ops::exp(&ops::multiply(&x, &2.0)?)?;
/// assert!(!y.is_realized());
/// fusion::set_min_elements(usize::MAX);
/// let z = ops::exp(&ops::multiply(&x, &2.0)?)?;
/// assert!(z.is_realized());
/// assert_eq!(y.to_vec::<f32>()?, z.to_vec::<f32>()?);
/// fusion::set_min_elements(fusion::DEFAULT_MIN_ELEMENTS);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn set_min_elements(n: usize) {
    crate::context::with(|c| c.fusion_min_elements.set(n.max(1)));
}

/// `x` through a unary kernel as a pending tensor, or `None` when the op should run eagerly
/// (too small, not float, or a graph too big).
#[inline]
pub(crate) fn unary(x: &Tensor, k: &'static UnaryKernel) -> Option<Tensor> {
    crate::backend::fusion::unary(x, k, min_elements())
}

/// `a ∘ b` as a pending tensor (broadcasting only scalars), or `None` to run eagerly.
#[inline]
pub(crate) fn binary(a: &Tensor, b: &Tensor, k: &'static BinaryKernel) -> Option<Tensor> {
    crate::backend::fusion::binary(a, b, k, min_elements())
}

/// The reduction of all of a pending tensor's elements, itself pending (see
/// `backend::fusion::fold`).
#[inline]
pub(crate) fn fold(x: &Tensor, out_shape: &[usize], fold: Fold) -> Option<Tensor> {
    crate::backend::fusion::fold(x, out_shape, fold)
}

/// The fusion engine's view of a tensor (it keeps tensors as graph operands, and a pending
/// tensor holds its graph). Here rather than beside `Tensor`, because `waiting` reads the
/// thread's pending reductions from the context, which sits above the tensor type.
impl Leaf for Tensor {
    type Weak = WeakTensor;
    fn is_realized(&self) -> bool {
        Tensor::is_realized(self)
    }
    fn owns_storage(&self) -> bool {
        Tensor::owns_storage(self)
    }
    fn shares_storage_with(&self, other: &Tensor) -> bool {
        Tensor::shares_storage_with(self, other)
    }
    fn pending(&self) -> Option<(&Tensor, &Pending<Tensor>)> {
        Tensor::pending(self)
    }
    fn unrealized(&self) -> Option<(&Tensor, &Pending<Tensor>)> {
        Tensor::unrealized(self)
    }
    fn from_pending(p: Pending<Tensor>, shape: &[usize], dtype: DType) -> Tensor {
        Tensor::from_graph(p, shape, dtype)
    }
    fn dismantle(self, work: &mut Vec<Tensor>) {
        Tensor::dismantle(self, work)
    }
    fn downgrade(&self) -> WeakTensor {
        Tensor::downgrade(self)
    }
    fn upgrade(w: &WeakTensor) -> Option<Tensor> {
        w.upgrade()
    }
    fn waiting<R>(f: impl FnOnce(&mut Vec<WeakTensor>) -> R) -> R {
        crate::context::with(|c| f(&mut c.fusion_waiting.borrow_mut()))
    }
}
