//! Indexing: gather and its adjoint scatter-add, gather_nd (a composition), one_hot.

use super::apply;
use super::batching;
use crate::dtype::dispatch;
use crate::dtype::{DType, Element, Num};
use crate::error::{Error, Result};
use crate::primitive::{Batching, Derivative, Params, ParamsKind, Primitive};
use crate::shape::normalize_axis;
use crate::tensor::{AsTensor, Tensor};

use super::reshape_to;

/// The batching rule for batched indices (and parameters): the op once per example.
fn per_example(xs: &[&Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) -> Result<Tensor> {
    batching::rule_loop(xs, f).unwrap_or_else(|| Err(Error::arg("vmap", "no batched operand")))
}

fn indices_of(op: &'static str, indices: &Tensor) -> Result<Vec<i64>> {
    if indices.dtype() != DType::I64 {
        return Err(Error::dtype(
            op,
            format!(
                "indices must be int64, got {} {:?}",
                indices.dtype(),
                indices.shape()
            ),
        ));
    }
    // Indices on a GPU are read back: the bounds are checked on the host before any kernel.
    if indices.device().is_cuda() {
        return indices.read_vec::<i64>();
    }
    Ok(indices.contiguous_data::<i64>()?.into_owned())
}

fn check_bounds(op: &'static str, idx: &[i64], bound: usize) -> Result<()> {
    if let Some((i, &v)) = idx
        .iter()
        .enumerate()
        .find(|(_, &v)| v < 0 || v as u64 >= bound as u64)
    {
        return Err(Error::index(
            op,
            format!("indices[{i}] = {v} is not in [0, {bound})"),
        ));
    }
    Ok(())
}

/// Slices of `params` along `axis` picked by int64 `indices` (repeats allowed). The output
/// shape is `params.shape[..axis] + indices.shape + params.shape[axis+1..]`. The gradient
/// scatters back and adds where an index repeats (TensorFlow's dense equivalent).
///
/// # Errors
/// When `indices` is not int64, an index is out of range, or the axis is invalid.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let p = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], &[3])?;
/// let i = Tensor::from_vec(vec![2i64, 0, 2], &[3])?;
/// assert_eq!(ops::gather(&p, &i, 0)?.to_vec::<f32>()?, vec![30.0, 10.0, 30.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn gather(params: &impl AsTensor, indices: &Tensor, axis: isize) -> Result<Tensor> {
    let op = "gather";
    let p = params.operand().into_tensor();
    if p.rank() == 0 {
        return Err(Error::shape(op, "params must have rank >= 1, got a scalar"));
    }
    let ax = normalize_axis(op, axis, p.rank())?;
    apply(&GATHER, &[&p, indices], &Params::axis(ax))
}

/// Linear in the parameters given the indices; its transpose is `scatter_add`.
pub(crate) static GATHER: Primitive = Primitive {
    name: "gather",
    forward: |xs, params| {
        let op = "gather";
        let (p, indices, ax) = (xs[0], xs[1], params.as_axis(op)?);
        if ax >= p.rank() {
            return Err(Error::axis(
                op,
                format!("axis {ax} is out of range for shape {:?}", p.shape()),
            ));
        }
        let idx = indices_of(op, indices)?;
        let d = p.shape()[ax];
        check_bounds(op, &idx, d)?;
        let outer: usize = p.shape()[..ax].iter().product();
        let inner: usize = p.shape()[ax + 1..].iter().product();
        let mut shape = p.shape()[..ax].to_vec();
        shape.extend_from_slice(indices.shape());
        shape.extend_from_slice(&p.shape()[ax + 1..]);
        if let Some(out) = crate::backend::gather(p, &idx, ax, &shape)? {
            return Ok(out);
        }
        dispatch!(p.dtype(), T => {
            let src = p.contiguous_data::<T>()?;
            let mut buf = crate::backend::pool::take::<T>(op, outer * idx.len() * inner)?;
            for o in 0..outer {
                if inner == 1 {
                    // one element per index (max pooling, a flat table): no slice per element
                    let row = &src[o * d..(o + 1) * d];
                    buf.extend(idx.iter().map(|&i| row[i as usize]));
                    continue;
                }
                for &i in &idx {
                    let base = (o * d + i as usize) * inner;
                    buf.extend_from_slice(&src[base..base + inner]);
                }
            }
            Ok(Tensor::from_elems(buf, &shape))
        })
    },
    arity: 2,
    params: ParamsKind::Axis,
    derivative: Derivative::LinearInFirst {
        transpose: |params, x, indices, g| {
            let ax = params.as_axis("gather")?;
            scatter_add(g, indices, ax, x.shape[ax])
        },
    },
    batching: Batching::Inputs(|xs, params| {
        batching::unbatched(xs, |level, a| {
            let ax = params.as_axis("gather")?;
            let out = match (&a[0], &a[1]) {
                ((pp, true), (pi, false)) => gather(pp, pi, ax as isize + 1)?,
                // the batch axis of the indices lands where the gathered axis was
                ((pp, false), (pi, true)) => {
                    batching::batch_first(&gather(pp, pi, ax as isize)?, ax)?
                }
                _ => return per_example(xs, |e| gather(&e[0], &e[1], ax as isize)),
            };
            Ok(batching::wrap(out, level))
        })
    }),
    cuda: None,
    fused: None,
};

/// The adjoint of gather: zeros with dimension `ax` of size `dim`, plus each slice of
/// `updates` added at its index. Its gradient is gather again.
pub(crate) fn scatter_add(
    updates: &Tensor,
    indices: &Tensor,
    ax: usize,
    dim: usize,
) -> Result<Tensor> {
    apply(&SCATTER_ADD, &[updates, indices], &Params::scatter(ax, dim))
}

/// Linear in the updates given the indices; its transpose is `gather`.
pub(crate) static SCATTER_ADD: Primitive = Primitive {
    name: "scatter_add",
    forward: |xs, params| {
        let op = "scatter_add";
        let (updates, indices, (ax, dim)) = (xs[0], xs[1], params.as_scatter(op)?);
        let idx = indices_of(op, indices)?;
        check_bounds(op, &idx, dim)?;
        let us = updates.shape();
        let k = indices.rank();
        if us.len() < ax + k || us[ax..ax + k] != *indices.shape() {
            return Err(Error::shape(
                op,
                format!(
                    "updates {us:?} do not match indices {:?} at axis {ax}",
                    indices.shape()
                ),
            ));
        }
        let outer: usize = us[..ax].iter().product();
        let inner: usize = us[ax + k..].iter().product();
        let mut shape = us[..ax].to_vec();
        shape.push(dim);
        shape.extend_from_slice(&us[ax + k..]);
        if let Some(out) = crate::backend::scatter_add(updates, &idx, ax, dim, &shape)? {
            return Ok(out);
        }
        dispatch!(numeric op, updates.dtype(), T => {
            let src = updates.contiguous_data::<T>()?;
            let mut buf = crate::backend::pool::filled::<T>(op, outer * dim * inner, T::default())?;
            for o in 0..outer {
                for (j, &i) in idx.iter().enumerate() {
                    let from = (o * idx.len() + j) * inner;
                    let to = (o * dim + i as usize) * inner;
                    for t in 0..inner {
                        buf[to + t] = buf[to + t].wadd(src[from + t]);
                    }
                }
            }
            Ok(Tensor::from_elems(buf, &shape))
        })
    },
    arity: 2,
    params: ParamsKind::Scatter,
    derivative: Derivative::LinearInFirst {
        transpose: |params, _, indices, g| {
            let (ax, _) = params.as_scatter("scatter_add")?;
            gather(g, indices, ax as isize)
        },
    },
    batching: Batching::Inputs(|xs, params| {
        batching::unbatched(xs, |level, a| {
            let (ax, dim) = params.as_scatter("scatter_add")?;
            if let ((pu, true), (pi, false)) = (&a[0], &a[1]) {
                return Ok(batching::wrap(scatter_add(pu, pi, ax + 1, dim)?, level));
            }
            per_example(xs, |e| scatter_add(&e[0], &e[1], ax, dim))
        })
    }),
    cuda: None,
    fused: None,
};

/// The primitives of this file.
pub(crate) static PRIMITIVES: &[&Primitive] = &[&GATHER, &SCATTER_ADD, &ONE_HOT];

/// Sums rows of `data` that share a segment id (`segment_ids` is int64 with the shape of a
/// prefix of `data`'s); the result has `num_segments` rows. Its gradient is a gather.
///
/// # Errors
/// When ids are not int64, out of `[0, num_segments)`, or not a prefix of `data`'s shape.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let d = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
/// let ids = Tensor::from_vec(vec![0i64, 1, 0], &[3])?;
/// assert_eq!(ops::unsorted_segment_sum(&d, &ids, 2)?.to_vec::<f32>()?, vec![4.0, 2.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn unsorted_segment_sum(
    data: &impl AsTensor,
    segment_ids: &Tensor,
    num_segments: usize,
) -> Result<Tensor> {
    let d = data.operand().into_tensor();
    let k = segment_ids.rank();
    if d.rank() < k || d.shape()[..k] != *segment_ids.shape() {
        return Err(Error::shape(
            "unsorted_segment_sum",
            format!(
                "segment_ids shape {:?} is not a prefix of data shape {:?}",
                segment_ids.shape(),
                d.shape()
            ),
        ));
    }
    let n = segment_ids.numel();
    let mut flat_shape = vec![n];
    flat_shape.extend_from_slice(&d.shape()[k..]);
    let flat = reshape_to(&d, &flat_shape)?;
    let ids = reshape_to(segment_ids, &[n])?;
    scatter_add(&flat, &ids, 0, num_segments)
}

/// Gathers slices addressed by the last dimension of `indices` (a composition: the index
/// tuples are flattened into one index into `params` reshaped, then `gather`).
///
/// # Errors
/// When `indices` is not int64, its last dimension exceeds the rank, or an index is out of range.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let p = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// let i = Tensor::from_vec(vec![1i64, 0, 0, 1], &[2, 2])?;
/// assert_eq!(ops::gather_nd(&p, &i)?.to_vec::<f32>()?, vec![3.0, 2.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn gather_nd(params: &impl AsTensor, indices: &Tensor) -> Result<Tensor> {
    let op = "gather_nd";
    let p = params.operand().into_tensor();
    if indices.batch().is_some() {
        // Batched parameters alone go through the rules of reshape and gather below.
        return per_example(&[&p, indices], |e| gather_nd(&e[0], &e[1]));
    }
    let idx = indices_of(op, indices)?;
    let k = *indices.shape().last().unwrap_or(&0);
    if indices.rank() == 0 || k == 0 || k > p.rank() {
        return Err(Error::shape(
            op,
            format!(
                "indices shape {:?} must end in a size in [1, {}] for params {:?}",
                indices.shape(),
                p.rank(),
                p.shape()
            ),
        ));
    }
    let dims = &p.shape()[..k];
    let mut flat = Vec::with_capacity(idx.len() / k);
    for (t, tuple) in idx.chunks(k).enumerate() {
        let mut f = 0i64;
        for (j, (&i, &d)) in tuple.iter().zip(dims).enumerate() {
            if i < 0 || i as u64 >= d as u64 {
                return Err(Error::index(
                    op,
                    format!("index tuple {t} has {i} in position {j}, not in [0, {d})"),
                ));
            }
            f = f * d as i64 + i;
        }
        flat.push(f);
    }
    let lead = &indices.shape()[..indices.rank() - 1];
    let mut pshape = vec![dims.iter().product::<usize>()];
    pshape.extend_from_slice(&p.shape()[k..]);
    let flat_p = reshape_to(&p, &pshape)?;
    let flat_idx = Tensor::from_elems(flat, lead);
    gather(&flat_p, &flat_idx, 0)
}

/// One-hot rows: `on_value` at each index, `off_value` elsewhere, along a new last axis of
/// size `depth`. Indices outside `[0, depth)` give a row of `off_value` (TensorFlow's rule).
///
/// # Errors
/// When `indices` is not int64.
///
/// ```
/// use gradtape::{ops, DType, Tensor};
/// let i = Tensor::from_vec(vec![0i64, 2], &[2])?;
/// let h = ops::one_hot(&i, 3, 1.0, 0.0, DType::F32)?;
/// assert_eq!(h.to_vec::<f32>()?, vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn one_hot(
    indices: &Tensor,
    depth: usize,
    on_value: f64,
    off_value: f64,
    dtype: DType,
) -> Result<Tensor> {
    apply(
        &ONE_HOT,
        &[indices],
        &Params::one_hot(depth, on_value, off_value, dtype),
    )
}

/// No gradient (its input is int64); batched as a whole, the rows along the last axis.
pub(crate) static ONE_HOT: Primitive = Primitive {
    name: "one_hot",
    forward: |xs, params| {
        let (depth, on, off, dtype) = params.as_one_hot("one_hot")?;
        one_hot_kernel(xs[0], depth, on, off, dtype)
    },
    arity: 1,
    params: ParamsKind::OneHot,
    derivative: Derivative::None,
    batching: Batching::OneInput(|p, params| apply(&ONE_HOT, &[p], params)),
    cuda: None,
    fused: None,
};

fn one_hot_kernel(
    indices: &Tensor,
    depth: usize,
    on_value: f64,
    off_value: f64,
    dtype: DType,
) -> Result<Tensor> {
    // On a GPU: `indices[..., None] == arange(depth)`, selecting on/off values (ids out of
    // range give a row of off values, as on the host).
    if indices.device().is_cuda() {
        if indices.dtype() != DType::I64 {
            indices_of("one_hot", indices)?; // the dtype error, before anything is read
        }
        let range: Tensor = crate::backend::iota(indices.device(), depth, DType::I64)?;
        let column = crate::ops::expand_dims(indices, -1)?;
        let hit = crate::ops::equal(&column, &range)?;
        let (on, off) = (
            crate::Operand::Scalar(on_value).into_tensor_of(dtype),
            crate::Operand::Scalar(off_value).into_tensor_of(dtype),
        );
        return crate::ops::select(&hit, &on, &off);
    }
    let idx = indices_of("one_hot", indices)?;
    let mut shape = indices.shape().to_vec();
    shape.push(depth);
    // The depth comes from the caller: an Err for a size memory cannot hold, never an abort.
    let n = idx.len().checked_mul(depth).ok_or_else(|| {
        Error::resource(
            "one_hot",
            format!(
                "{} indices of depth {depth} have more elements than memory can hold",
                idx.len()
            ),
        )
    })?;
    fn rows<T: Element>(idx: &[i64], depth: usize, n: usize, on: f64, off: f64) -> Result<Vec<T>> {
        let mut v = crate::backend::pool::filled("one_hot", n, T::from_f64(off))?;
        for (r, &i) in idx.iter().enumerate() {
            if i >= 0 && (i as u64) < depth as u64 {
                v[r * depth + i as usize] = T::from_f64(on);
            }
        }
        Ok(v)
    }
    Ok(
        dispatch!(dtype, T => Tensor::from_elems(rows::<T>(&idx, depth, n, on_value, off_value)?, &shape)),
    )
}
