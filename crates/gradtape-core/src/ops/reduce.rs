//! Reductions over all axes or given ones, with `keepdims` and negative axes.

use std::borrow::Cow;

use super::apply;
use crate::backend::cpu::{self, Split3};
use crate::dtype::dispatch;
use crate::dtype::{DType, Element, Num};
use crate::error::{Error, Result};
use crate::fusion::{self, Fold};
use crate::primitive::{Batching, Derivative, Params, ParamsKind, Primitive};
use crate::shape::normalize_axes;
use crate::tensor::{AsTensor, Tensor};

use super::{broadcast_to, cast, divide, equal, reshape_to, select};

/// Which axes a reduction runs over: `Axes::All`, one axis (`1`, `-1`) or several (`[0, 2]`).
///
/// ```
/// use gradtape::{ops, Axes, Tensor};
/// let x = Tensor::ones(&[2, 3], gradtape::DType::F32)?;
/// assert_eq!(ops::reduce_sum(&x, Axes::All, false)?.to_scalar::<f32>()?, 6.0);
/// assert_eq!(ops::reduce_sum(&x, -1, false)?.shape(), &[2]);
/// assert_eq!(ops::reduce_sum(&x, [0, 1], true)?.shape(), &[1, 1]);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Axes {
    /// Every axis (TensorFlow's `axis=None`).
    All,
    /// These axes, each in `[-rank, rank)`.
    List(Vec<isize>),
}

impl Axes {
    fn resolve(&self, op: &'static str, rank: usize) -> Result<Vec<usize>> {
        match self {
            Axes::All => Ok((0..rank).collect()),
            Axes::List(v) => normalize_axes(op, v, rank),
        }
    }
}

impl From<isize> for Axes {
    fn from(a: isize) -> Self {
        Axes::List(vec![a])
    }
}
impl From<i32> for Axes {
    fn from(a: i32) -> Self {
        Axes::List(vec![a as isize])
    }
}
impl<const N: usize> From<[isize; N]> for Axes {
    fn from(a: [isize; N]) -> Self {
        Axes::List(a.to_vec())
    }
}
impl<const N: usize> From<[i32; N]> for Axes {
    fn from(a: [i32; N]) -> Self {
        Axes::List(a.iter().map(|&x| x as isize).collect())
    }
}
impl From<&[isize]> for Axes {
    fn from(a: &[isize]) -> Self {
        Axes::List(a.to_vec())
    }
}
impl From<Vec<isize>> for Axes {
    fn from(a: Vec<isize>) -> Self {
        Axes::List(a)
    }
}

/// The primitives of this file defined as data.
pub(crate) static PRIMITIVES: &[&Primitive] = &[
    &REDUCE_SUM,
    &REDUCE_MAX,
    &REDUCE_MAX_FIRST,
    &FIRST_EQUAL_MASK,
    &REDUCE_MIN,
    &REDUCE_PROD,
    &ARGMAX,
    &ARGMIN,
    &REDUCE_ANY,
    &REDUCE_ALL,
];

/// The shape left after reducing `axes` (kept as 1s with `keepdims`).
pub(crate) fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// The elements arranged as a contiguous `[outer, reduced, inner]` block. Consecutive axes need
/// no copy when the tensor is contiguous; scattered ones are permuted to the end first.
pub(crate) fn arrange<'a, T: Element>(
    x: &'a Tensor,
    axes: &[usize],
) -> Result<(Cow<'a, [T]>, Split3)> {
    let shape = x.shape();
    let rank = shape.len();
    let prod = |d: &[usize]| d.iter().product::<usize>();
    if axes.windows(2).all(|w| w[1] == w[0] + 1) {
        let (i, j) = match (axes.first(), axes.last()) {
            (Some(&i), Some(&j)) => (i, j + 1),
            _ => (rank, rank),
        };
        let sp = Split3 {
            outer: prod(&shape[..i]),
            reduced: prod(&shape[i..j]),
            inner: prod(&shape[j..]),
        };
        return Ok((x.contiguous_data::<T>()?, sp));
    }
    let kept: Vec<usize> = (0..rank).filter(|d| !axes.contains(d)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes).copied().collect();
    let l = x.layout().permute(&perm);
    let data = cpu::to_contiguous(x.data::<T>()?, &l)?;
    let sp = Split3 {
        outer: kept.iter().map(|&d| shape[d]).product(),
        reduced: axes.iter().map(|&d| shape[d]).product(),
        inner: 1,
    };
    Ok((Cow::Owned(data), sp))
}

/// `f` folded over `axes` from `init`; `cuda` is `f` as a CUDA C expression of `a` and `b`,
/// for a tensor on a GPU.
fn reduce_with<T: Num>(
    op: &'static str,
    x: &Tensor,
    axes: &[usize],
    out_shape: &[usize],
    init: T,
    f: impl Fn(T, T) -> T + Sync,
    cuda: &str,
) -> Result<Tensor> {
    if let Some(y) = crate::backend::reduce(op, x, axes, init.to_f64(), cuda, out_shape)? {
        return Ok(y);
    }
    let (src, sp) = arrange::<T>(x, axes)?;
    Ok(Tensor::from_elems(
        cpu::reduce3(&src, &sp, init, f),
        out_shape,
    ))
}

/// Reshapes `g` (the gradient of a reduction's output) to the keepdims shape and broadcasts it
/// back over the input.
fn spread(g: &Tensor, in_shape: &[usize], axes: &[usize]) -> Result<Tensor> {
    broadcast_to(
        &reshape_to(g, &reduced_shape(in_shape, axes, true))?,
        in_shape,
    )
}

/// Sum of elements over `axis`. Gradient: the incoming gradient broadcast back.
///
/// # Errors
/// When an axis is out of range or repeated, or the dtype is bool.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// assert_eq!(ops::reduce_sum(&x, 0, false)?.to_vec::<f32>()?, vec![4.0, 6.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn reduce_sum(x: &impl AsTensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    let op = "reduce_sum";
    let x = x.operand().into_tensor();
    let axes = axis.into().resolve(op, x.rank())?;
    apply(&REDUCE_SUM, &[&x], &Params::reduce(&axes, keepdims))
}

/// Checks axes given as parameters (an op resolves its own): each in range, increasing.
fn check_axes(op: &'static str, axes: &[usize], rank: usize) -> Result<()> {
    if axes.iter().all(|&a| a < rank) && axes.windows(2).all(|w| w[0] < w[1]) {
        Ok(())
    } else {
        Err(Error::axis(
            op,
            format!("axes {axes:?} are not increasing axes of a rank-{rank} tensor"),
        ))
    }
}

/// Linear: its transpose broadcasts the gradient back over the reduced axes.
pub(crate) static REDUCE_SUM: Primitive = Primitive {
    name: "reduce_sum",
    forward: |xs, params| {
        let op = "reduce_sum";
        let (x, (axes, keepdims)) = (xs[0], params.as_reduce(op)?);
        check_axes(op, axes, x.rank())?;
        let shape = reduced_shape(x.shape(), axes, keepdims);
        Ok(match fusion::fold(x, &shape, Fold::Sum) {
            Some(t) => t,
            None => {
                dispatch!(numeric op, x.dtype(), T => reduce_with::<T>(op, x, axes, &shape, T::ZERO, |p, q| p.wadd(q), "a + b")?)
            }
        })
    },
    arity: 1,
    params: ParamsKind::Reduce,
    derivative: Derivative::Linear {
        transpose: |params, x, g| spread(g, &x.shape, params.as_reduce("reduce_sum")?.0),
    },
    batching: Batching::OneInput(|p, params| {
        let (axes, keepdims) = params.as_reduce("reduce_sum")?;
        reduce_sum(p, batch_axes(axes), keepdims)
    }),
    cuda: Some("a + b"),
    fused: Some(crate::primitive::Fused::Fold(Fold::Sum)),
};

/// The derivative of max/min with respect to each element: shared equally among the elements
/// equal to the result `y` (kept as size 1 over `axes`; TensorFlow's convention for ties),
/// zero elsewhere.
fn extreme_weights(x: &Tensor, y: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let indicators = cast(&equal(x, y)?, x.dtype())?;
    let count = reduce_sum(&indicators, axes_list(axes), true)?;
    divide(&indicators, &count)
}

/// The derivative of a maximum given all to the first element equal to it, in row-major order
/// over `axes` (max pooling's convention in TensorFlow, PyTorch and JAX): one pass of
/// [`FIRST_EQUAL_MASK`].
fn first_extreme_weights(x: &Tensor, y: &Tensor, axes: &[usize]) -> Result<Tensor> {
    apply(&FIRST_EQUAL_MASK, &[x, y], &Params::reduce(axes, true))
}

/// `1` at the first element of each group over `axes` (row-major) equal to `y` (`x` reduced
/// over `axes`, kept as size 1), `0` at the others, and NaN in every element of a group whose
/// `y` is NaN (so a NaN in a max-pool window still gives a NaN gradient). A mask: no
/// derivative of its own. One pass over `x` laid out as `[outer, window, inner]`.
pub(crate) static FIRST_EQUAL_MASK: Primitive = Primitive {
    name: "first_equal_mask",
    forward: |xs, params| {
        let op = "first_equal_mask";
        let (x, y, (axes, _)) = (xs[0], xs[1], params.as_reduce(op)?);
        check_axes(op, axes, x.rank())?;
        let want = reduced_shape(x.shape(), axes, true);
        if !crate::shape::same(y.shape(), want.as_slice()) || y.dtype() != x.dtype() {
            return Err(Error::shape(
                op,
                format!(
                    "y must be {} {want:?} (x {} {:?} reduced over {axes:?}), got {} {:?}",
                    x.dtype(),
                    x.dtype(),
                    x.shape(),
                    y.dtype(),
                    y.shape()
                ),
            ));
        }
        if x.device().is_cuda() {
            return first_equal_composed(x, y, axes);
        }
        dispatch!(float op, x.dtype(), T => first_equal_host::<T>(x, y, axes))
    },
    arity: 2,
    params: ParamsKind::Reduce,
    derivative: Derivative::None,
    batching: Batching::Inputs(|xs, params| {
        super::batching::unbatched(xs, |level, a| {
            let (axes, _) = params.as_reduce("first_equal_mask")?;
            let shifted: Vec<usize> = axes.iter().map(|&a| a + 1).collect();
            let batch = |(t, batched): &(Tensor, bool), like: &Tensor| -> Result<Tensor> {
                match batched {
                    true => Ok(t.clone()),
                    false => {
                        let mut shape = vec![like.shape()[0]];
                        shape.extend_from_slice(t.shape());
                        broadcast_to(&reshape_to(t, &[&[1], t.shape()].concat())?, &shape)
                    }
                }
            };
            let like = if a[0].1 { &a[0].0 } else { &a[1].0 };
            let (x, y) = (batch(&a[0], like)?, batch(&a[1], like)?);
            let out = apply(
                &FIRST_EQUAL_MASK,
                &[&x, &y],
                &Params::reduce(&shifted, true),
            )?;
            Ok(super::batching::wrap(out, level))
        })
    }),
    cuda: None,
    fused: None,
};

fn first_equal_host<T: crate::dtype::Float>(
    x: &Tensor,
    y: &Tensor,
    axes: &[usize],
) -> Result<Tensor> {
    let (src, sp) = arrange::<T>(x, axes)?;
    let yd = y.contiguous_data::<T>()?;
    let Split3 {
        outer,
        reduced,
        inner,
    } = sp;
    let group = reduced * inner;
    // every element is written below; from the pool, so a large mask reuses warm pages
    let mut out = crate::backend::pool::filled("first_equal_mask", outer * group, T::ZERO)?;
    // Channels in blocks of 64 with a flag each (on the stack): the window is walked in
    // order, each compare runs across contiguous channels without a branch (it vectorizes),
    // and a group whose maximum is NaN (rare) is filled with NaN afterwards.
    const BLOCK: usize = 64;
    let mark = |o: usize, out: &mut [T]| {
        let (xs, ys) = (
            &src[o * group..(o + 1) * group],
            &yd[o * inner..(o + 1) * inner],
        );
        for i0 in (0..inner).step_by(BLOCK) {
            let w = BLOCK.min(inner - i0);
            let y = &ys[i0..i0 + w];
            let mut found = [false; BLOCK];
            for r in 0..reduced {
                let at = r * inner + i0;
                let (x, m) = (&xs[at..at + w], &mut out[at..at + w]);
                for ((m, (&x, &y)), f) in m.iter_mut().zip(x.iter().zip(y)).zip(&mut found) {
                    let eq = x == y;
                    *m = if eq & !*f { T::ONE } else { T::ZERO };
                    *f |= eq;
                }
            }
            for (i, &y) in y.iter().enumerate() {
                if y.is_nan() {
                    (0..reduced).for_each(|r| out[r * inner + i0 + i] = y);
                }
            }
        }
    };
    // many groups per task: a group is often small (a 2×2 window of 32 channels)
    let per_task = (1 << 14) / group.max(1) + 1;
    if group > 0 {
        let run = |t: usize, chunk: &mut [T]| {
            for (k, g) in chunk.chunks_mut(group).enumerate() {
                mark(t * per_task + k, g);
            }
        };
        if out.len() >= cpu::PAR_MIN {
            cpu::par_chunks_mut(&mut out, group * per_task, &run);
        } else {
            run(0, &mut out);
        }
    }
    if axes.windows(2).all(|w| w[1] == w[0] + 1) {
        return Ok(Tensor::from_elems(out, x.shape()));
    }
    // arranged as [kept axes.., reduced axes..]: back to x's order
    let rank = x.rank();
    let kept: Vec<usize> = (0..rank).filter(|d| !axes.contains(d)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes).copied().collect();
    let arranged: Vec<usize> = perm.iter().map(|&d| x.shape()[d]).collect();
    let mut inverse = vec![0; rank];
    for (k, &d) in perm.iter().enumerate() {
        inverse[d] = k;
    }
    let l = crate::shape::Layout::contiguous(&arranged).permute(&inverse);
    Ok(Tensor::from_elems(cpu::to_contiguous(&out, &l)?, x.shape()))
}

/// [`FIRST_EQUAL_MASK`] from ops every device has: the lowest tied index found with an index
/// ramp and a minimum (several passes where the host's kernel makes one).
fn first_equal_composed(x: &Tensor, y: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let mut shape = vec![1usize; x.rank()];
    for &a in axes {
        shape[a] = x.shape()[a];
    }
    let count = crate::shape::numel(&shape);
    let ramp = Tensor::arange(0.0, count as f64, 1.0, x.dtype())?.move_to(x.device())?;
    let ramp = reshape_to(&ramp, &shape)?;
    let candidates = select(&equal(x, y)?, &ramp, &(count as f64))?;
    let first = reduce_min(&candidates, axes_list(axes), true)?;
    let mask = cast(&equal(&ramp, &first)?, x.dtype())?;
    // NaN over a group whose maximum is NaN
    let nan = super::is_nan(y)?;
    select(&nan, &f64::NAN, &mask)
}

/// Axes of one example as axes of the whole batch (batch axis first).
fn batch_axes(axes: &[usize]) -> Axes {
    Axes::List(axes.iter().map(|&a| a as isize + 1).collect())
}

fn axes_list(axes: &[usize]) -> Axes {
    Axes::List(axes.iter().map(|&a| a as isize).collect())
}

/// A reduction whose derivative is a weighting of the elements (see
/// [`Derivative::Reduction`]): its primitive and its op.
macro_rules! weighted_reduction {
    ($(#[$doc:meta])* $name:ident($P:ident), $init:ident, $f:ident, fold $fold:expr, cuda $cuda:literal, weights $weights:expr) => {
        pub(crate) static $P: Primitive = Primitive {
            name: stringify!($name),
            forward: |xs, params| {
                let op = stringify!($name);
                let (x, (axes, keepdims)) = (xs[0], params.as_reduce(op)?);
                check_axes(op, axes, x.rank())?;
                let shape = reduced_shape(x.shape(), axes, keepdims);
                let fold: Option<Fold> = $fold;
                if let Some(t) = fold.and_then(|f| fusion::fold(x, &shape, f)) {
                    return Ok(t);
                }
                dispatch!(numeric op, x.dtype(), T => {
                    reduce_with::<T>(op, x, axes, &shape, T::$init, |p, q| p.$f(q), $cuda)
                })
            },
            arity: 1,
            params: ParamsKind::Reduce,
            derivative: Derivative::Reduction { weights: $weights },
            batching: Batching::OneInput(|p, params| {
                let (axes, keepdims) = params.as_reduce(stringify!($name))?;
                $name(p, batch_axes(axes), keepdims)
            }),
            cuda: Some($cuda),
            fused: match $fold {
                Some(f) => Some(crate::primitive::Fused::Fold(f)),
                None => None,
            },
        };

        $(#[$doc])*
        ///
        /// # Errors
        /// When an axis is out of range or repeated, or the dtype is bool.
        pub fn $name(x: &impl AsTensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
            let x = x.operand().into_tensor();
            let axes = axis.into().resolve(stringify!($name), x.rank())?;
            apply(&$P, &[&x], &Params::reduce(&axes, keepdims))
        }
    };
}

weighted_reduction!(
    /// Maximum over `axis` (negative infinity over an empty axis). Ties share the gradient.
    ///
    /// ```
    /// let x = gradtape::Tensor::from_vec(vec![1.0f32, 5.0, 3.0], &[3])?;
    /// assert_eq!(gradtape::ops::reduce_max(&x, gradtape::Axes::All, false)?.to_scalar::<f32>()?, 5.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    reduce_max(REDUCE_MAX), LOWEST, max_, fold Some(Fold::Max), cuda "(a > b || a != a) ? a : b",
    weights extreme_weights
);
weighted_reduction!(
    /// [`reduce_max`] whose gradient goes to the first maximum (row-major over `axis`)
    /// instead of being shared among ties: max pooling's convention (TensorFlow's, PyTorch's
    /// and JAX's `max_pool`), which `max_pool2d` and `max_pool1d` use.
    ///
    /// ```
    /// use gradtape::{ops, Axes, GradientTape, Tensor};
    /// let x = Tensor::ones(&[4], gradtape::DType::F32)?;
    /// let tape = GradientTape::new();
    /// tape.watch(&x);
    /// let y = ops::reduce_max_first(&x, Axes::All, false)?;
    /// assert_eq!(tape.gradient(&y, &x)?.unwrap().to_vec::<f32>()?, vec![1.0, 0.0, 0.0, 0.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    reduce_max_first(REDUCE_MAX_FIRST), LOWEST, max_, fold Some(Fold::Max), cuda "(a > b || a != a) ? a : b",
    weights first_extreme_weights
);
weighted_reduction!(
    /// Minimum over `axis` (infinity over an empty axis). Ties share the gradient.
    ///
    /// ```
    /// let x = gradtape::Tensor::from_vec(vec![1.0f32, 5.0, 3.0], &[3])?;
    /// assert_eq!(gradtape::ops::reduce_min(&x, 0, false)?.to_scalar::<f32>()?, 1.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    reduce_min(REDUCE_MIN), HIGHEST, min_, fold Some(Fold::Min), cuda "(a < b || a != a) ? a : b",
    weights extreme_weights
);
weighted_reduction!(
    /// Product over `axis`. The gradient is exact with zeros in the input: each element gets
    /// the product of the others (no division by zero), as TensorFlow's rule gives.
    ///
    /// ```
    /// let x = gradtape::Tensor::from_vec(vec![2.0f32, 3.0, 4.0], &[3])?;
    /// assert_eq!(gradtape::ops::reduce_prod(&x, gradtape::Axes::All, false)?.to_scalar::<f32>()?, 24.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    reduce_prod(REDUCE_PROD), ONE, wmul, fold None, cuda "a * b",
    weights |x, _, axes| prod_weights(x, axes)
);

/// The derivative of a product with respect to each element: the product of the others, exact
/// with zeros in the input. With z zeros along the reduced axes: z = 0 -> prod / x; z = 1 ->
/// the zero element gets the product of the non-zeros, the others 0; z >= 2 -> all 0.
fn prod_weights(x: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let kd = axes_list(axes);
    let is_zero = equal(x, &0.0)?;
    let nonzero = select(&is_zero, &1.0, x)?;
    let prod_nz = reduce_prod(&nonzero, kd.clone(), true)?;
    let zeros = reduce_sum(&cast(&is_zero, x.dtype())?, kd, true)?;
    let none = equal(&zeros, &0.0)?;
    let one = equal(&zeros, &1.0)?;
    let when_one = select(&is_zero, &prod_nz, &0.0)?;
    let when_none = divide(&prod_nz, &nonzero)?;
    select(&none, &when_none, &select(&one, &when_one, &0.0)?)
}

/// Mean over `axis` (a composition: the sum divided by the count).
///
/// # Errors
/// When an axis is out of range or repeated, or the dtype is not float.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// assert_eq!(gradtape::ops::reduce_mean(&x, 1, false)?.to_vec::<f32>()?, vec![1.5, 3.5]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn reduce_mean(x: &impl AsTensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    let op = "reduce_mean";
    let x = x.operand().into_tensor();
    if !x.dtype().is_float() {
        return Err(Error::dtype(
            op,
            format!(
                "expected float32 or float64, got {} (cast first)",
                x.dtype()
            ),
        ));
    }
    let axis = axis.into();
    let axes = axis.resolve(op, x.rank())?;
    let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let sum = reduce_sum(&x, axis, keepdims)?;
    // the divisor as a size of `x`, not a number, in a trace with unknown dimensions
    // (`input_signature`)
    match crate::context::traces::size_of(&x, &axes, count) {
        Some(divisor) => divide(&sum, &divisor),
        None => divide(&sum, &(count as f64)),
    }
}

fn arg_extreme(p: &'static Primitive, x: &Tensor, axis: isize) -> Result<Tensor> {
    // a scalar has one element, at index 0 of the one axis it is seen as
    let axes = normalize_axes(p.name, &[axis], x.rank().max(1))?;
    apply(p, &[x], &Params::axis(axes[0]))
}

/// argmax or argmin of `x` along `ax` (0 for a scalar): the host kernel, or a composition on a
/// GPU.
fn arg_kernel(op: &'static str, x: &Tensor, ax: usize, max: bool) -> Result<Tensor> {
    if x.rank() == 0 && ax == 0 {
        return Ok(Tensor::scalar(0i64));
    }
    if ax >= x.rank() {
        return Err(Error::axis(
            op,
            format!("axis {ax} is out of range for shape {:?}", x.shape()),
        ));
    }
    if x.shape()[ax] == 0 {
        return Err(Error::shape(
            op,
            format!(
                "cannot take {op} over an empty axis {ax} of shape {:?}",
                x.shape()
            ),
        ));
    }
    let shape = reduced_shape(x.shape(), &[ax], false);
    if x.device().is_cuda() {
        if x.dtype() == DType::Bool {
            return Err(Error::dtype(
                op,
                "expected a numeric tensor (float32, float64 or int64), got bool",
            ));
        }
        let range: Tensor = crate::backend::iota(x.device(), x.shape()[ax], DType::I64)?;
        return first_extreme_index(x, ax, max, &range);
    }
    dispatch!(numeric op, x.dtype(), T => {
        let (src, sp) = arrange::<T>(x, &[ax])?;
        let better = |v: T, b: T| if max { v > b } else { v < b };
        Ok(Tensor::from_elems(cpu::arg_reduce3(&src, &sp, better), &shape))
    })
}

/// The batching rule of argmax and argmin: an example that is a scalar has its index 0.
fn arg_batched(p: &Tensor, ax: usize, this: &'static Primitive) -> Result<Tensor> {
    if p.rank() == 1 {
        Tensor::zeros(&p.shape()[..1], DType::I64)
    } else {
        apply(this, &[p], &Params::axis(ax + 1))
    }
}

/// No gradient (an int64 result).
pub(crate) static ARGMAX: Primitive = Primitive {
    name: "argmax",
    forward: |xs, params| arg_kernel("argmax", xs[0], params.as_axis("argmax")?, true),
    arity: 1,
    params: ParamsKind::Axis,
    derivative: Derivative::None,
    batching: Batching::OneInput(|p, params| arg_batched(p, params.as_axis("argmax")?, &ARGMAX)),
    cuda: None,
    fused: None,
};

/// No gradient (an int64 result).
pub(crate) static ARGMIN: Primitive = Primitive {
    name: "argmin",
    forward: |xs, params| arg_kernel("argmin", xs[0], params.as_axis("argmin")?, false),
    arity: 1,
    params: ParamsKind::Axis,
    derivative: Derivative::None,
    batching: Batching::OneInput(|p, params| arg_batched(p, params.as_axis("argmin")?, &ARGMIN)),
    cuda: None,
    fused: None,
};

/// argmax/argmin from ops every device has (for the GPU, which has no arg-reduction kernel):
/// the smallest index along `ax` whose element equals the extreme, so ties give the first, as
/// the host kernel does. `range` is `[0, 1, ..., d-1]` as int64 on `x`'s device. (A NaN
/// equals nothing, so a row of NaN gives `d`, where the host kernel gives 0.)
fn first_extreme_index(x: &Tensor, ax: usize, max: bool, range: &Tensor) -> Result<Tensor> {
    let axis = ax as isize;
    let extreme = if max {
        reduce_max(x, axis, true)?
    } else {
        reduce_min(x, axis, true)?
    };
    let hit = equal(x, &extreme)?;
    let d = x.shape()[ax];
    let mut column = vec![1usize; x.rank() - ax];
    column[0] = d;
    let index = reshape_to(range, &column)?;
    reduce_min(&select(&hit, &index, &(d as i64))?, axis, false)
}

/// Index of the largest element along `axis` (the first one on ties), as int64. No gradient.
///
/// # Errors
/// When the axis is out of range or empty, or the dtype is bool.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 5.0, 3.0, 7.0, 0.0, 2.0], &[2, 3])?;
/// assert_eq!(gradtape::ops::argmax(&x, 1)?.to_vec::<i64>()?, vec![1, 0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn argmax(x: &impl AsTensor, axis: isize) -> Result<Tensor> {
    arg_extreme(&ARGMAX, &x.operand().into_tensor(), axis)
}

/// Index of the smallest element along `axis` (the first one on ties), as int64. No gradient.
///
/// # Errors
/// When the axis is out of range or empty, or the dtype is bool.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 5.0, 3.0, 7.0, 0.0, 2.0], &[2, 3])?;
/// assert_eq!(gradtape::ops::argmin(&x, 0)?.to_vec::<i64>()?, vec![0, 1, 1]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn argmin(x: &impl AsTensor, axis: isize) -> Result<Tensor> {
    arg_extreme(&ARGMIN, &x.operand().into_tensor(), axis)
}

fn bool_reduce(p: &'static Primitive, x: &Tensor, axis: Axes, keepdims: bool) -> Result<Tensor> {
    if x.dtype() != DType::Bool {
        return Err(Error::dtype(
            p.name,
            format!("expected a bool tensor, got {}", x.dtype()),
        ));
    }
    let axes = axis.resolve(p.name, x.rank())?;
    apply(p, &[x], &Params::reduce(&axes, keepdims))
}

/// `reduce_any` (`any`) or `reduce_all` of a bool tensor over `axes`.
fn bool_kernel(op: &'static str, x: &Tensor, params: &Params, any: bool) -> Result<Tensor> {
    let (axes, keepdims) = params.as_reduce(op)?;
    if x.dtype() != DType::Bool {
        return Err(Error::dtype(
            op,
            format!("expected a bool tensor, got {}", x.dtype()),
        ));
    }
    check_axes(op, axes, x.rank())?;
    let shape = reduced_shape(x.shape(), axes, keepdims);
    // On a GPU: the max (any) or min (all) of the bools as int64.
    if x.device().is_cuda() {
        let ints = cast(x, DType::I64)?;
        let folded = if any {
            reduce_max(&ints, axes_list(axes), keepdims)?
        } else {
            reduce_min(&ints, axes_list(axes), keepdims)?
        };
        return cast(&folded, DType::Bool);
    }
    let (src, sp) = arrange::<bool>(x, axes)?;
    let out = if any {
        cpu::reduce3(&src, &sp, false, |p, q| p | q)
    } else {
        cpu::reduce3(&src, &sp, true, |p, q| p & q)
    };
    Ok(Tensor::from_elems(out, &shape))
}

/// The batching rule of the bool reductions: the same axes, past the batch axis.
fn bool_batched(p: &Tensor, params: &Params, this: &'static Primitive) -> Result<Tensor> {
    let (axes, keepdims) = params.as_reduce(this.name)?;
    let shifted: Vec<usize> = axes.iter().map(|&a| a + 1).collect();
    apply(this, &[p], &Params::reduce(&shifted, keepdims))
}

/// No gradient (a bool result).
pub(crate) static REDUCE_ANY: Primitive = Primitive {
    name: "reduce_any",
    forward: |xs, params| bool_kernel("reduce_any", xs[0], params, true),
    arity: 1,
    params: ParamsKind::Reduce,
    derivative: Derivative::None,
    batching: Batching::OneInput(|p, params| bool_batched(p, params, &REDUCE_ANY)),
    cuda: None,
    fused: None,
};

/// No gradient (a bool result).
pub(crate) static REDUCE_ALL: Primitive = Primitive {
    name: "reduce_all",
    forward: |xs, params| bool_kernel("reduce_all", xs[0], params, false),
    arity: 1,
    params: ParamsKind::Reduce,
    derivative: Derivative::None,
    batching: Batching::OneInput(|p, params| bool_batched(p, params, &REDUCE_ALL)),
    cuda: None,
    fused: None,
};

/// Logical OR over `axis` of a bool tensor.
///
/// # Errors
/// When the tensor is not bool or an axis is invalid.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![false, true], &[2])?;
/// assert!(gradtape::ops::reduce_any(&x, gradtape::Axes::All, false)?.to_scalar::<bool>()?);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn reduce_any(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    bool_reduce(&REDUCE_ANY, x, axis.into(), keepdims)
}

/// Logical AND over `axis` of a bool tensor.
///
/// # Errors
/// When the tensor is not bool or an axis is invalid.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![false, true], &[2])?;
/// assert!(!gradtape::ops::reduce_all(&x, gradtape::Axes::All, false)?.to_scalar::<bool>()?);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn reduce_all(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    bool_reduce(&REDUCE_ALL, x, axis.into(), keepdims)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GPU's argmax/argmin composition, run on the host against the host kernel, with
    /// ties (values rounded to a few levels) along every axis.
    #[test]
    fn the_composed_argmax_picks_the_first_extreme_like_the_kernel() {
        let mut g = crate::random::Generator::from_seed(4);
        for dtype in [DType::F32, DType::F64, DType::I64] {
            let x = g.uniform(&[3, 4, 5], 0.0, 4.0, DType::F64).unwrap();
            let x = cast(&crate::ops::floor(&x).unwrap(), dtype).unwrap();
            for ax in 0..3 {
                let d = x.shape()[ax];
                let range = Tensor::arange(0.0, d as f64, 1.0, DType::I64).unwrap();
                for max in [true, false] {
                    let want = arg_kernel("argmax", &x, ax, max).unwrap();
                    let got = first_extreme_index(&x, ax, max, &range).unwrap();
                    assert_eq!(got.shape(), want.shape());
                    assert_eq!(got.to_vec::<i64>().unwrap(), want.to_vec::<i64>().unwrap());
                }
            }
        }
    }
}
