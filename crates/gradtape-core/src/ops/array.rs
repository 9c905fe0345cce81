//! Shape ops: reshape, transpose, broadcast, slicing, concatenation. Most are views over the
//! same storage; their gradients are the inverse view (or a scatter into zeros for slices).

use super::apply;
use super::batching;
use crate::backend::cpu;
use crate::dtype::dispatch;
use crate::error::{Error, Result};
use crate::primitive::{Batching, Derivative, Params, ParamsKind, Primitive, SliceSpec};
use crate::shape::{
    check_perm, contiguous_strides, for_each_row, normalize_axis, numel, Dims, Layout,
};
use crate::tensor::{AsTensor, Tensor};

use super::sum_to_shape;

/// The primitives of this file defined as data.
pub(crate) static PRIMITIVES: &[&Primitive] = &[
    &CONCAT,
    &TO_DEVICE,
    &IDENTITY,
    &RESHAPE,
    &TRANSPOSE,
    &BROADCAST_TO,
    &SLICE,
    &UNSLICE,
];

fn tensor(x: &impl AsTensor) -> Tensor {
    x.operand().into_tensor()
}

/// Reshape to a fully known shape: a view when the data is contiguous or only axes of size 1
/// change, a copy otherwise.
pub(crate) fn reshape_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if crate::shape::same(x.shape(), shape) {
        return Ok(x.clone());
    }
    // the kernel checks the sizes (after the batching rule, as before)
    apply(&RESHAPE, &[x], &Params::shape(shape))
}

/// The view of `l` as `shape` when the two differ only in axes of size 1 (`squeeze`,
/// `expand_dims`): the other axes keep their strides, so no copy is needed whatever they are
/// (slicing with an index, `x.slice(s![.., 1])`, stays a view).
fn unit_axes_changed(l: &Layout, shape: &[usize]) -> Option<Layout> {
    let mut kept = l
        .shape
        .iter()
        .zip(l.strides.iter())
        .filter(|(&d, _)| d != 1);
    let mut strides = Dims::filled(0isize, shape.len());
    for (s, &d) in strides.iter_mut().zip(shape) {
        if d != 1 {
            match kept.next() {
                Some((&from, &stride)) if from == d => *s = stride,
                _ => return None,
            }
        }
    }
    kept.next().is_none().then(|| Layout {
        shape: Dims::from_slice(shape),
        strides,
        offset: l.offset,
    })
}

fn check_reshape(from: &[usize], to: &[usize]) -> Result<()> {
    if numel(to) != numel(from) {
        return Err(Error::shape(
            "reshape",
            format!(
                "cannot reshape a tensor of shape {from:?} ({} elements) to {to:?}",
                numel(from)
            ),
        ));
    }
    Ok(())
}

/// The same elements in a new shape: a view (of the contiguous data, or of the input itself
/// when only axes of size 1 change).
pub(crate) static RESHAPE: Primitive = Primitive {
    name: "reshape",
    forward: |xs, params| {
        let (x, shape) = (xs[0], params.as_shape("reshape")?);
        check_reshape(x.shape(), shape)?;
        if let Some(l) = unit_axes_changed(x.layout(), shape) {
            return Ok(x.view(l));
        }
        let base = x.to_contiguous()?;
        Ok(base.view(Layout {
            shape: Dims::from_slice(shape),
            strides: contiguous_strides(shape),
            offset: base.layout().offset,
        }))
    },
    arity: 1,
    params: ParamsKind::Shape,
    derivative: Derivative::Linear {
        transpose: |_, x, g| reshape_to(g, &x.shape),
    },
    batching: Batching::OneInput(|p, params| {
        reshape_to(p, &batch_shape(p, params.as_shape("reshape")?))
    }),
    cuda: None,
    fused: None,
};

/// TensorFlow's `tf.identity`: the same elements (no copy) as a new tensor whose gradient is
/// the incoming one. The function transforms pass each argument through it, so one tensor
/// given as two arguments is two inputs with a gradient each (TensorFlow's `recompute_grad`
/// does the same; without it the two were confused and the gradient counted twice).
///
/// # Errors
/// Only as recording on a tape may fail (a tape's memory).
///
/// ```
/// use gradtape::{ops, GradientTape, Tensor};
/// let x = Tensor::scalar(3.0f32);
/// let tape = GradientTape::new();
/// tape.watch(&x);
/// let (a, b) = (ops::identity(&x)?, ops::identity(&x)?);
/// let [ga] = tape.gradient(&ops::multiply(&a, &b)?, [&a])?;
/// assert_eq!(ga.unwrap().item()?, 3.0); // d(a·b)/da = b, not 2·x
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn identity(x: &impl AsTensor) -> Result<Tensor> {
    apply(&IDENTITY, &[&tensor(x)], &Params::NONE)
}

pub(crate) static IDENTITY: Primitive = Primitive {
    name: "identity",
    forward: |xs, _| Ok(xs[0].with_new_id()),
    arity: 1,
    params: ParamsKind::None,
    derivative: Derivative::Linear {
        transpose: |_, _, g| Ok(g.clone()),
    },
    batching: Batching::Elementwise,
    cuda: None,
    fused: None,
};

/// A new shape for the same elements; one dimension may be `-1` (inferred).
///
/// # Errors
/// When the element counts differ, more than one `-1` is given, or a size is below -1.
///
/// ```
/// let x = gradtape::Tensor::zeros(&[2, 6], gradtape::DType::F32)?;
/// assert_eq!(gradtape::ops::reshape(&x, &[3, -1])?.shape(), &[3, 4]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn reshape(x: &impl AsTensor, shape: &[isize]) -> Result<Tensor> {
    let op = "reshape";
    let x = tensor(x);
    let unknown: Vec<usize> = (0..shape.len()).filter(|&i| shape[i] == -1).collect();
    if unknown.len() > 1 || shape.iter().any(|&d| d < -1) {
        return Err(Error::arg(
            op,
            format!("shape {shape:?} may hold at most one -1 and no other negative size"),
        ));
    }
    let known = numel(
        &shape
            .iter()
            .filter(|&&d| d >= 0)
            .map(|&d| d as usize)
            .collect::<Vec<_>>(),
    );
    let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(&i) = unknown.first() {
        if known == 0 || !x.numel().is_multiple_of(known) {
            return Err(Error::shape(
                op,
                format!(
                    "cannot reshape a tensor of shape {:?} ({} elements) to {shape:?}",
                    x.shape(),
                    x.numel()
                ),
            ));
        }
        out[i] = x.numel() / known;
    }
    reshape_to(&x, &out)
}

/// Permutes the dimensions (`perm[i]` is the input axis that becomes axis `i`); `None`
/// reverses them, as TensorFlow does. A view, no copy.
///
/// # Errors
/// When `perm` is not a permutation of the axes.
///
/// ```
/// let x = gradtape::Tensor::zeros(&[2, 3, 4], gradtape::DType::F32)?;
/// assert_eq!(gradtape::ops::transpose(&x, Some(&[0, 2, 1]))?.shape(), &[2, 4, 3]);
/// assert_eq!(gradtape::ops::transpose(&x, None)?.shape(), &[4, 3, 2]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn transpose(x: &impl AsTensor, perm: Option<&[usize]>) -> Result<Tensor> {
    let x = tensor(x);
    let perm: Vec<usize> = match perm {
        Some(p) => p.to_vec(),
        None => (0..x.rank()).rev().collect(),
    };
    check_perm("transpose", &perm, x.rank())?;
    apply(&TRANSPOSE, &[&x], &Params::perm(&perm))
}

/// A permutation of the axes: a view.
pub(crate) static TRANSPOSE: Primitive = Primitive {
    name: "transpose",
    forward: |xs, params| {
        let perm = params.as_perm("transpose")?;
        check_perm("transpose", perm, xs[0].rank())?;
        Ok(xs[0].view(xs[0].layout().permute(perm)))
    },
    arity: 1,
    params: ParamsKind::Perm,
    derivative: Derivative::Linear {
        transpose: |params, _, g| {
            let perm = params.as_perm("transpose")?;
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            transpose(g, Some(&inv))
        },
    },
    batching: Batching::OneInput(|p, params| {
        let batch_perm: Vec<usize> = std::iter::once(0)
            .chain(params.as_perm("transpose")?.iter().map(|a| a + 1))
            .collect();
        transpose(p, Some(&batch_perm))
    }),
    cuda: None,
    fused: None,
};

/// Inserts a dimension of size 1 at `axis` (in `[-rank-1, rank]`).
///
/// # Errors
/// When the axis is out of range.
///
/// ```
/// let x = gradtape::Tensor::zeros(&[3], gradtape::DType::F32)?;
/// assert_eq!(gradtape::ops::expand_dims(&x, -1)?.shape(), &[3, 1]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn expand_dims(x: &impl AsTensor, axis: isize) -> Result<Tensor> {
    let x = tensor(x);
    let a = normalize_axis("expand_dims", axis, x.rank() + 1)?;
    let mut shape = x.shape().to_vec();
    shape.insert(a, 1);
    reshape_to(&x, &shape)
}

/// Removes dimensions of size 1: the given ones, or all when `axes` is empty.
///
/// # Errors
/// When an axis is out of range or its dimension is not 1.
///
/// ```
/// let x = gradtape::Tensor::zeros(&[1, 3, 1], gradtape::DType::F32)?;
/// assert_eq!(gradtape::ops::squeeze(&x, &[])?.shape(), &[3]);
/// assert_eq!(gradtape::ops::squeeze(&x, &[0])?.shape(), &[3, 1]);
/// assert!(gradtape::ops::squeeze(&x, &[1]).is_err());
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn squeeze(x: &impl AsTensor, axes: &[isize]) -> Result<Tensor> {
    let op = "squeeze";
    let x = tensor(x);
    let drop: Vec<usize> = if axes.is_empty() {
        (0..x.rank()).filter(|&i| x.shape()[i] == 1).collect()
    } else {
        let mut v = Vec::new();
        for &a in axes {
            let n = normalize_axis(op, a, x.rank())?;
            if x.shape()[n] != 1 {
                return Err(Error::shape(
                    op,
                    format!(
                        "cannot squeeze axis {a} of shape {:?}: its size is {}, not 1",
                        x.shape(),
                        x.shape()[n]
                    ),
                ));
            }
            v.push(n);
        }
        v
    };
    let kept: Vec<usize> = (0..x.rank())
        .filter(|i| !drop.contains(i))
        .map(|i| x.shape()[i])
        .collect();
    // a view whatever the strides (`reshape` keeps one when only axes of size 1 change)
    reshape_to(&x, &kept)
}

/// Broadcasts to `shape` (a view with zero strides, no copy). Gradient: summed back.
///
/// # Errors
/// When `x`'s shape does not broadcast to `shape`.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
/// assert_eq!(gradtape::ops::broadcast_to(&x, &[2, 2])?.to_vec::<f32>()?, vec![1.0, 2.0, 1.0, 2.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn broadcast_to(x: &impl AsTensor, shape: &[usize]) -> Result<Tensor> {
    let x = tensor(x);
    if crate::shape::same(x.shape(), shape) {
        return Ok(x);
    }
    check_broadcast(x.shape(), shape)?;
    apply(&BROADCAST_TO, &[&x], &Params::shape(shape))
}

fn check_broadcast(from: &[usize], to: &[usize]) -> Result<()> {
    let ok = from.len() <= to.len()
        && from
            .iter()
            .zip(&to[to.len() - from.len()..])
            .all(|(&a, &b)| a == b || a == 1);
    if ok {
        Ok(())
    } else {
        Err(Error::shape(
            "broadcast_to",
            format!("shape {from:?} does not broadcast to {to:?}"),
        ))
    }
}

/// A view with zero strides; its transpose sums the gradient back.
pub(crate) static BROADCAST_TO: Primitive = Primitive {
    name: "broadcast_to",
    forward: |xs, params| {
        let (x, shape) = (xs[0], params.as_shape("broadcast_to")?);
        check_broadcast(x.shape(), shape)?;
        Ok(x.view(x.layout().broadcast_to(shape)))
    },
    arity: 1,
    params: ParamsKind::Shape,
    derivative: Derivative::Linear {
        transpose: |_, x, g| sum_to_shape(g, &x.shape),
    },
    batching: Batching::OneInput(|p, params| {
        let shape = params.as_shape("broadcast_to")?;
        // unit axes after the batch axis up to the target's rank, then the batch's shape
        let mut q = p.clone();
        for _ in p.rank() - 1..shape.len() {
            q = expand_dims(&q, 1)?;
        }
        broadcast_to(&q, &batch_shape(p, shape))
    }),
    cuda: None,
    fused: None,
};

// ---------------------------------------------------------------------------------------------
// Slicing: one view primitive and its adjoint

/// The same slice of every example of a batch `p` (batch axis first).
trait WithBatch {
    fn with_batch(&self, p: &Tensor) -> SliceSpec;
}

impl WithBatch for SliceSpec {
    fn with_batch(&self, p: &Tensor) -> SliceSpec {
        let prepend =
            |v: &[usize], first: usize| std::iter::once(first).chain(v.iter().copied()).collect();
        SliceSpec {
            starts: prepend(&self.starts, 0),
            lens: prepend(&self.lens, p.shape()[0]),
            steps: std::iter::once(1)
                .chain(self.steps.iter().copied())
                .collect(),
        }
    }
}

/// `shape` of one example as the shape of the batch `p` (batch axis first).
fn batch_shape(p: &Tensor, shape: &[usize]) -> Vec<usize> {
    std::iter::once(p.shape()[0])
        .chain(shape.iter().copied())
        .collect()
}

fn slice_layout(l: &Layout, spec: &SliceSpec) -> Layout {
    let mut offset = l.offset as isize;
    for (i, &s) in spec.starts.iter().enumerate() {
        if spec.lens[i] > 0 {
            offset += s as isize * l.strides[i];
        }
    }
    Layout {
        shape: Dims::from_slice(&spec.lens),
        strides: l
            .strides
            .iter()
            .zip(&spec.steps)
            .map(|(&s, &st)| s * st)
            .collect(),
        offset: offset.max(0) as usize,
    }
}

/// Checks that `spec` selects elements of a tensor of `shape` only (each view it makes is
/// read without further bounds checks).
fn check_slice(op: &'static str, shape: &[usize], spec: &SliceSpec) -> Result<()> {
    let rank = shape.len();
    let fits = spec.starts.len() == rank
        && spec.lens.len() == rank
        && spec.steps.len() == rank
        && (0..rank).all(|i| {
            let (start, len, step) = (spec.starts[i] as i128, spec.lens[i] as i128, spec.steps[i]);
            let last = start + (len - 1) * step as i128;
            len == 0 || (start < shape[i] as i128 && (0..shape[i] as i128).contains(&last))
        });
    if fits {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!("slice {spec:?} does not fit shape {shape:?}"),
        ))
    }
}

/// The view primitive behind `slice`, `strided_slice` and `split`.
fn slice_view(x: &Tensor, spec: SliceSpec) -> Result<Tensor> {
    apply(&SLICE, &[x], &Params::slice(spec))
}

/// A strided view; its transpose writes the gradient into zeros ([`UNSLICE`]).
pub(crate) static SLICE: Primitive = Primitive {
    name: "slice",
    forward: |xs, params| {
        let (x, spec) = (xs[0], params.as_slice("slice")?);
        check_slice("slice", x.shape(), spec)?;
        Ok(x.view(slice_layout(x.layout(), spec)))
    },
    arity: 1,
    params: ParamsKind::Slice,
    derivative: Derivative::Linear {
        transpose: |params, x, g| unslice(g, &x.shape, params.as_slice("slice")?),
    },
    batching: Batching::OneInput(|p, params| {
        let spec = params.as_slice("slice")?;
        slice_view(p, spec.with_batch(p))
    }),
    cuda: None,
    fused: None,
};

/// The adjoint of [`slice_view`]: zeros of `shape` with `g` written where the slice came from.
/// Its own gradient is the slice again, so slices differentiate to any order.
fn unslice(g: &Tensor, shape: &[usize], spec: &SliceSpec) -> Result<Tensor> {
    apply(&UNSLICE, &[g], &Params::unslice(shape, spec.clone()))
}

pub(crate) static UNSLICE: Primitive = Primitive {
    name: "unslice",
    forward: |xs, params| {
        let (g, (shape, spec)) = (xs[0], params.as_unslice("unslice")?);
        check_slice("unslice", shape, spec)?;
        if !crate::shape::same(g.shape(), &spec.lens) {
            return Err(Error::shape(
                "unslice",
                format!("values of shape {:?} for a slice {spec:?}", g.shape()),
            ));
        }
        let target = slice_layout(&Layout::contiguous(shape), spec);
        if let Some(out) = crate::backend::unslice(g, shape, &target)? {
            return Ok(out);
        }
        Ok(dispatch!(g.dtype(), T => {
            let mut buf = crate::backend::pool::filled("unslice", numel(shape), T::default())?;
            let src = cpu::to_contiguous(g.data::<T>()?, g.layout())?;
            let inner = target.shape.last().copied().unwrap_or(1);
            let st = target.strides.last().copied().unwrap_or(0);
            for_each_row(&target.shape, [&target.strides], [target.offset], |row, [o]| {
                for i in 0..inner {
                    buf[(o + i as isize * st) as usize] = src[row * inner + i];
                }
            });
            Tensor::from_elems(buf, shape)
        }))
    },
    arity: 1,
    params: ParamsKind::Unslice,
    derivative: Derivative::Linear {
        transpose: |params, _, gg| slice_view(gg, params.as_unslice("unslice")?.1.clone()),
    },
    batching: Batching::OneInput(|p, params| {
        let (shape, spec) = params.as_unslice("unslice")?;
        unslice(p, &batch_shape(p, shape), &spec.with_batch(p))
    }),
    cuda: None,
    fused: None,
};

/// TensorFlow's `tf.slice`: `size[i]` elements from `begin[i]` (`-1`: to the end). A view.
///
/// # Errors
/// When the lists do not match the rank or the slice leaves the tensor.
///
/// ```
/// let x = gradtape::Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3])?;
/// let s = gradtape::ops::slice(&x, &[0, 1], &[2, -1])?;
/// assert_eq!(s.to_vec::<f32>()?, vec![1.0, 2.0, 4.0, 5.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn slice(x: &impl AsTensor, begin: &[usize], size: &[isize]) -> Result<Tensor> {
    let op = "slice";
    let x = tensor(x);
    if begin.len() != x.rank() || size.len() != x.rank() {
        return Err(Error::shape(
            op,
            format!(
                "begin {begin:?} and size {size:?} must have one entry per dimension of shape {:?}",
                x.shape()
            ),
        ));
    }
    let mut lens = Vec::with_capacity(x.rank());
    for i in 0..x.rank() {
        let d = x.shape()[i];
        let len = if size[i] == -1 && begin[i] <= d {
            d - begin[i]
        } else {
            size[i].max(0) as usize
        };
        if size[i] < -1 || begin[i] > d || len > d - begin[i] {
            return Err(Error::index(
                op,
                format!(
                    "begin {begin:?} with size {size:?} is outside shape {:?} (dimension {i})",
                    x.shape()
                ),
            ));
        }
        lens.push(len);
    }
    slice_view(
        &x,
        SliceSpec {
            starts: begin.to_vec(),
            lens,
            steps: vec![1; x.rank()],
        },
    )
}

/// Python-style slicing `x[b0:e0:s0, b1:e1:s1, ...]` (TensorFlow's `strided_slice` without
/// masks): negative indices count from the end, bounds are clamped, negative strides walk
/// backwards (`end = -(dim + 1)` reaches index 0). Dimensions not listed are kept whole.
///
/// # Errors
/// When more entries than dimensions are given, the lists differ in length, or a stride is 0.
///
/// ```
/// let x = gradtape::Tensor::from_vec((0..5).map(|v| v as f32).collect(), &[5])?;
/// let r = gradtape::ops::strided_slice(&x, &[-1], &[-6], &[-2])?;
/// assert_eq!(r.to_vec::<f32>()?, vec![4.0, 2.0, 0.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn strided_slice(
    x: &impl AsTensor,
    begin: &[isize],
    end: &[isize],
    strides: &[isize],
) -> Result<Tensor> {
    let op = "strided_slice";
    let x = tensor(x);
    if begin.len() != end.len() || begin.len() != strides.len() || begin.len() > x.rank() {
        return Err(Error::shape(
            op,
            format!("begin {begin:?}, end {end:?} and strides {strides:?} must have equal length <= rank of {:?}", x.shape()),
        ));
    }
    let mut spec = SliceSpec {
        starts: vec![],
        lens: vec![],
        steps: vec![],
    };
    for i in 0..x.rank() {
        let d = x.shape()[i] as isize;
        if i >= begin.len() {
            spec.starts.push(0);
            spec.lens.push(d as usize);
            spec.steps.push(1);
            continue;
        }
        if strides[i] == 0 {
            return Err(Error::arg(
                op,
                format!("strides {strides:?} has a zero in dimension {i}"),
            ));
        }
        // A step longer than the dimension takes at most one element, as the clamped one does.
        let step = strides[i].clamp(-d.max(1), d.max(1));
        let norm = |v: isize| if v < 0 { v + d } else { v };
        let (start, len) = if step > 0 {
            let s = norm(begin[i]).clamp(0, d);
            let e = norm(end[i]).clamp(0, d);
            (s, if e > s { (e - s + step - 1) / step } else { 0 })
        } else {
            let s = norm(begin[i]).clamp(-1, d - 1);
            let e = norm(end[i]).clamp(-1, d - 1);
            (
                s,
                if s > e {
                    (s - e + (-step) - 1) / (-step)
                } else {
                    0
                },
            )
        };
        spec.starts.push(start.max(0) as usize);
        spec.lens.push(len as usize);
        spec.steps.push(step);
    }
    slice_view(&x, spec)
}

/// TensorFlow's `tf.reverse`: `x` with the order of its elements along each of `axes` reversed
/// (negative axes count from the end; an axis named twice is an error, as in TensorFlow). A
/// view with negative strides, as NumPy's `flip`: no copy, and its gradient reverses the
/// upstream gradient the same way (through [`strided_slice`]).
///
/// # Errors
/// When an axis is out of range or repeated.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// assert_eq!(gradtape::ops::reverse(&x, &[1])?.to_vec::<f32>()?, vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
/// assert_eq!(gradtape::ops::reverse(&x, &[0, -1])?.to_vec::<f32>()?, vec![6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);
/// assert!(gradtape::ops::reverse(&x, &[1, -1]).is_err());
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn reverse(x: &impl AsTensor, axes: &[isize]) -> Result<Tensor> {
    let op = "reverse";
    let x = tensor(x);
    let rank = x.rank();
    let mut flip = vec![false; rank];
    for &a in axes {
        let i = normalize_axis(op, a, rank)?;
        if flip[i] {
            return Err(Error::axis(
                op,
                format!(
                    "axis {a} is named twice in {axes:?} for a tensor of shape {:?}",
                    x.shape()
                ),
            ));
        }
        flip[i] = true;
    }
    let (mut begin, mut end, mut strides) = (vec![], vec![], vec![]);
    for (i, &f) in flip.iter().enumerate() {
        let d = x.shape()[i] as isize;
        if f {
            begin.push(-1);
            end.push(-(d + 1));
            strides.push(-1);
        } else {
            begin.push(0);
            end.push(d);
            strides.push(1);
        }
    }
    strided_slice(&x, &begin, &end, &strides)
}

/// Pads with zeros: `paddings[i] = [before, after]` for dimension `i`.
///
/// # Errors
/// When `paddings` does not have one entry per dimension.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![1.0f32], &[1])?;
/// assert_eq!(gradtape::ops::pad(&x, &[[1, 2]])?.to_vec::<f32>()?, vec![0.0, 1.0, 0.0, 0.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn pad(x: &impl AsTensor, paddings: &[[usize; 2]]) -> Result<Tensor> {
    let x = tensor(x);
    if paddings.len() != x.rank() {
        return Err(Error::shape(
            "pad",
            format!(
                "{} paddings for a tensor of shape {:?}",
                paddings.len(),
                x.shape()
            ),
        ));
    }
    let shape: Vec<usize> = x
        .shape()
        .iter()
        .zip(paddings)
        .map(|(&d, p)| d.checked_add(p[0])?.checked_add(p[1]))
        .collect::<Option<Vec<usize>>>()
        .filter(|s| numel(s) < usize::MAX)
        .ok_or_else(|| {
            Error::arg(
                "pad",
                format!("paddings {paddings:?} overflow shape {:?}", x.shape()),
            )
        })?;
    let spec = SliceSpec {
        starts: paddings.iter().map(|p| p[0]).collect(),
        lens: x.shape().to_vec(),
        steps: vec![1; x.rank()],
    };
    // a size the allocator refuses is reported as pad's, not as its helper's
    unslice(&x, &shape, &spec).map_err(|e| match e {
        Error::ResourceExhausted { .. } => Error::resource("pad", format!("{e}")),
        e => e,
    })
}

// ---------------------------------------------------------------------------------------------
// Joining and splitting

/// Joins tensors along an existing axis. Gradient: the matching slice for each input.
///
/// # Errors
/// When the list is empty, dtypes differ, or shapes differ outside `axis`.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let a = Tensor::ones(&[2, 1], gradtape::DType::F32)?;
/// let b = Tensor::zeros(&[2, 2], gradtape::DType::F32)?;
/// assert_eq!(ops::concat(&[&a, &b], 1)?.to_vec::<f32>()?, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn concat<T: AsTensor>(values: &[T], axis: isize) -> Result<Tensor> {
    let op = "concat";
    let xs: Vec<Tensor> = values.iter().map(tensor).collect();
    let Some(first) = xs.first() else {
        return Err(Error::arg(op, "needs at least one tensor"));
    };
    if first.rank() == 0 {
        return Err(Error::shape(op, "cannot concatenate scalars (use stack)"));
    }
    let ax = normalize_axis(op, axis, first.rank())?;
    let refs: Vec<&Tensor> = xs.iter().collect();
    apply(&CONCAT, &refs, &Params::axis(ax))
}

/// Linear in all its inputs; its transpose slices the gradient back into their parts.
pub(crate) static CONCAT: Primitive = Primitive {
    name: "concat",
    forward: |xs, params| {
        let (op, ax) = ("concat", params.as_axis("concat")?);
        let first = xs[0];
        let fits = |x: &Tensor| {
            ax < first.rank()
                && x.dtype() == first.dtype()
                && x.rank() == first.rank()
                && (0..x.rank()).all(|i| i == ax || x.shape()[i] == first.shape()[i])
        };
        if !xs.iter().all(|x| fits(x)) {
            let shapes: Vec<String> = xs
                .iter()
                .map(|t| format!("{} {:?}", t.dtype(), t.shape()))
                .collect();
            return Err(Error::shape(
                op,
                format!("cannot join along axis {ax}: {}", shapes.join(", ")),
            ));
        }
        let mut shape = first.shape().to_vec();
        shape[ax] = xs.iter().map(|x| x.shape()[ax]).sum();
        let outer: usize = shape[..ax].iter().product();
        let inner: usize = shape[ax + 1..].iter().product();
        if let Some(out) = crate::backend::concat(xs, ax, &shape)? {
            return Ok(out);
        }
        Ok(dispatch!(first.dtype(), T => {
            let mut buf = Vec::with_capacity(numel(&shape));
            let parts: Vec<_> = xs.iter().map(|x| x.contiguous_data::<T>()).collect::<Result<_>>()?;
            for o in 0..outer {
                for (x, p) in xs.iter().zip(&parts) {
                    let w = x.shape()[ax] * inner;
                    buf.extend_from_slice(&p[o * w..(o + 1) * w]);
                }
            }
            Tensor::from_elems(buf, &shape)
        }))
    },
    arity: crate::primitive::ANY,
    params: ParamsKind::Axis,
    derivative: Derivative::LinearInAll {
        transpose: |params, xs, g| {
            let ax = params.as_axis("concat")?;
            let mut start = 0;
            xs.iter()
                .map(|x| {
                    let n = x.shape[ax];
                    start += n;
                    slice_axis(g, ax, start - n, n)
                })
                .collect()
        },
    },
    batching: Batching::Inputs(|xs, params| {
        let ax = match params.as_axis("concat") {
            Ok(ax) => ax,
            Err(e) => return Some(Err(e)),
        };
        batching::rule_list(xs, |ps| concat(ps, ax as isize + 1))
    }),
    cuda: None,
    fused: None,
};

/// [`Tensor::to_device`] once it has checked that the device changes.
pub(crate) fn to_device(x: &Tensor, device: crate::Device) -> Result<Tensor> {
    apply(&TO_DEVICE, &[x], &Params::device(device))
}

/// Linear: a tape records the move, and the gradient goes back to the source device.
pub(crate) static TO_DEVICE: Primitive = Primitive {
    name: "to_device",
    forward: |xs, params| xs[0].move_to(params.as_device("to_device")?),
    arity: 1,
    params: ParamsKind::Device,
    derivative: Derivative::Linear {
        transpose: |_, x, g| g.to_device(x.device),
    },
    batching: Batching::OneInput(|p, params| p.to_device(params.as_device("to_device")?)),
    cuda: None,
    fused: None,
};

/// `len` elements from `start` along axis `ax`.
fn slice_axis(x: &Tensor, ax: usize, start: usize, len: usize) -> Result<Tensor> {
    let mut spec = SliceSpec {
        starts: vec![0; x.rank()],
        lens: x.shape().to_vec(),
        steps: vec![1; x.rank()],
    };
    spec.starts[ax] = start;
    spec.lens[ax] = len;
    slice_view(x, spec)
}

/// Joins tensors of one shape along a new axis (a composition of `expand_dims` and `concat`).
///
/// # Errors
/// When the list is empty or shapes or dtypes differ.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let a = Tensor::ones(&[3], gradtape::DType::F32)?;
/// assert_eq!(ops::stack(&[&a, &a], 0)?.shape(), &[2, 3]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn stack<T: AsTensor>(values: &[T], axis: isize) -> Result<Tensor> {
    let op = "stack";
    let xs: Vec<Tensor> = values.iter().map(tensor).collect();
    let Some(first) = xs.first() else {
        return Err(Error::arg(op, "needs at least one tensor"));
    };
    if let Some(bad) = xs.iter().find(|x| x.shape() != first.shape()) {
        return Err(Error::shape(
            op,
            format!("shapes differ: {:?} and {:?}", first.shape(), bad.shape()),
        ));
    }
    let ax = normalize_axis(op, axis, first.rank() + 1)? as isize;
    let expanded: Vec<Tensor> = xs
        .iter()
        .map(|x| expand_dims(x, ax))
        .collect::<Result<_>>()?;
    concat(&expanded, ax)
}

/// Splits into `num` equal parts along `axis` (views).
///
/// # Errors
/// When `num` is 0 or does not divide the dimension.
///
/// ```
/// let x = gradtape::Tensor::zeros(&[4, 6], gradtape::DType::F32)?;
/// let parts = gradtape::ops::split(&x, 3, 1)?;
/// assert_eq!(parts.len(), 3);
/// assert_eq!(parts[0].shape(), &[4, 2]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn split(x: &impl AsTensor, num: usize, axis: isize) -> Result<Vec<Tensor>> {
    let op = "split";
    let x = tensor(x);
    let ax = normalize_axis(op, axis, x.rank())?;
    let d = x.shape()[ax];
    if num == 0 || !d.is_multiple_of(num) {
        return Err(Error::arg(
            op,
            format!(
                "cannot split dimension {ax} of size {d} (shape {:?}) into {num} equal parts",
                x.shape()
            ),
        ));
    }
    split_sizes(&x, &vec![d / num; num], axis)
}

/// Splits into parts of the given sizes along `axis` (views).
///
/// # Errors
/// When the sizes do not add up to the dimension.
///
/// ```
/// let x = gradtape::Tensor::zeros(&[5], gradtape::DType::F32)?;
/// let parts = gradtape::ops::split_sizes(&x, &[2, 3], 0)?;
/// assert_eq!(parts[1].shape(), &[3]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn split_sizes(x: &impl AsTensor, sizes: &[usize], axis: isize) -> Result<Vec<Tensor>> {
    let op = "split";
    let x = tensor(x);
    let ax = normalize_axis(op, axis, x.rank())?;
    if sizes.iter().sum::<usize>() != x.shape()[ax] {
        return Err(Error::arg(
            op,
            format!(
                "sizes {sizes:?} do not add up to dimension {ax} of shape {:?}",
                x.shape()
            ),
        ));
    }
    let mut start = 0;
    sizes
        .iter()
        .map(|&n| {
            let part = slice_axis(&x, ax, start, n);
            start += n;
            part
        })
        .collect()
}

/// The method form of the `to_device` primitive, here beside it: the tensor type's
/// own module sits below the ops.
impl Tensor {
    /// The same values on `device` (PyTorch's `.to(device)`; TensorFlow copies inside
    /// `tf.device`). A tape records the move: the gradient flows back to the source device.
    ///
    /// # Errors
    /// When `device` cannot be used ([`Device::check`](crate::Device::check) says what is missing).
    ///
    /// ```
    /// use gradtape::{Device, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
    /// assert_eq!(x.to_device(Device::Cpu)?.to_vec::<f32>()?, vec![1.0, 2.0]);
    /// if !Device::Cuda(0).is_available() {
    ///     let e = x.to_device(Device::Cuda(0)).unwrap_err();
    ///     println!("{e}"); // which of driver, GPU, NVRTC or cuBLAS is missing
    /// }
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn to_device(&self, device: crate::Device) -> Result<Tensor> {
        let from = self.device();
        if from == device {
            return Ok(self.clone());
        }
        to_device(self, device)
    }
}
