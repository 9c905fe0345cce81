//! Matrix products: 2-D and batched (batch dimensions broadcast), with transpose flags.

use super::apply;
use crate::backend::cpu;
use crate::dtype::dispatch;
use crate::dtype::Float;
use crate::error::{Error, Result};
use crate::primitive::{Batching, Derivative, Params, ParamsKind, Primitive};
use crate::shape::{broadcast_shapes, for_each_row, numel, Dims, Layout, MatmulDims};
use crate::tensor::creation::operand_pair;
use crate::tensor::{AsTensor, Tensor};

use super::{expand_dims, reshape, same_dtype, squeeze, transpose};

/// The matrix product `a · b` over the last two dimensions; leading dimensions are batch
/// dimensions and broadcast. A rank-1 operand is a vector, as in NumPy's and JAX's `matmul`
/// (Python's `@`): a row vector on the left, a column vector on the right, and that axis is
/// dropped from the result (`tf.matmul` refuses rank 1; `tf.linalg.matvec` is [`matvec`]).
///
/// # Errors
/// When a rank is 0, inner dimensions differ, batch dimensions do not broadcast, or the dtypes
/// differ or are not float.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// let i = Tensor::eye(2, gradtape::DType::F32)?;
/// assert_eq!(ops::matmul(&a, &i)?.to_vec::<f32>()?, vec![1.0, 2.0, 3.0, 4.0]);
/// let col = Tensor::from_vec(vec![1.0f32, -1.0], &[2])?;
/// assert_eq!(ops::matmul(&a, &col)?.to_vec::<f32>()?, vec![-1.0, -1.0]); // a @ col
/// assert_eq!(ops::matmul(&col, &col)?.shape(), &[] as &[usize]); // an inner product
/// let e = ops::matmul(&a, &Tensor::zeros(&[3, 1], gradtape::DType::F32)?).unwrap_err();
/// assert_eq!(e.to_string(), "matmul: inner dimensions differ: [2, 2] x [3, 1]");
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn matmul(a: &impl AsTensor, b: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(a, b);
    let (ra, rb) = (a.rank(), b.rank());
    if ra >= 2 && rb >= 2 {
        return matmul_core(&a, &b);
    }
    let op = "matmul";
    if ra == 0 || rb == 0 {
        return Err(Error::shape(
            op,
            format!(
                "operands of shapes {:?} and {:?}: a scalar is neither a vector nor a matrix (multiply it)",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let k_a = a.shape()[ra - 1];
    let k_b = if rb == 1 {
        b.shape()[0]
    } else {
        b.shape()[rb - 2]
    };
    if k_a != k_b {
        return Err(Error::shape(
            op,
            format!("inner dimensions differ: {:?} x {:?}", a.shape(), b.shape()),
        ));
    }
    let a2 = if ra == 1 { expand_dims(&a, 0)? } else { a };
    let b2 = if rb == 1 { expand_dims(&b, -1)? } else { b };
    let mut r = matmul_core(&a2, &b2)?;
    if rb == 1 {
        r = squeeze(&r, &[-1])?;
    }
    if ra == 1 {
        r = squeeze(&r, &[if rb == 1 { -1 } else { -2 }])?;
    }
    Ok(r)
}

/// `tf.linalg.matvec`: the product of the matrices `a` (`[..., M, N]`) with the vectors `b`
/// (`[..., N]`), batch dimensions broadcast: `[..., M]`.
///
/// # Errors
/// When `a` has rank below 2, `b` rank 0, the inner dimensions differ, batch dimensions do
/// not broadcast, or the dtypes differ or are not float.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2])?;
/// let w = Tensor::from_vec(vec![0.5f32, -1.0], &[2])?;
/// assert_eq!(ops::matvec(&x, &w)?.to_vec::<f32>()?, vec![-1.5, -2.5, -3.5]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn matvec(a: &impl AsTensor, b: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(a, b);
    if a.rank() < 2 || b.rank() < 1 {
        return Err(Error::shape(
            "matvec",
            format!(
                "expected matrices [..., M, N] and vectors [..., N], got {:?} and {:?}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    squeeze(&matmul_core(&a, &expand_dims(&b, -1)?)?, &[-1])
}

/// Which axes [`tensordot`] contracts: the last `n` of `a` with the first `n` of `b`
/// (`axes=n` in TensorFlow and NumPy), or the listed axes of each, pairwise
/// (`axes=[[1, 0], [0, 1]]`).
#[derive(Clone, Debug, PartialEq)]
pub enum ContractAxes {
    /// The last `n` axes of `a` with the first `n` of `b`.
    Last(usize),
    /// Axes of `a` and of `b`, contracted pairwise (negative counts from the end).
    Pairs(Vec<isize>, Vec<isize>),
}

impl From<usize> for ContractAxes {
    fn from(n: usize) -> Self {
        ContractAxes::Last(n)
    }
}

impl<const N: usize> From<([isize; N], [isize; N])> for ContractAxes {
    fn from((a, b): ([isize; N], [isize; N])) -> Self {
        ContractAxes::Pairs(a.to_vec(), b.to_vec())
    }
}

impl From<(&[isize], &[isize])> for ContractAxes {
    fn from((a, b): (&[isize], &[isize])) -> Self {
        ContractAxes::Pairs(a.to_vec(), b.to_vec())
    }
}

/// `tf.tensordot`: the sum of products of `a` and `b` over the contracted axes; the result
/// has `a`'s other axes, then `b`'s, in order. One matrix product of the two operands
/// transposed and flattened, so its gradients are the matrix product's.
///
/// # Errors
/// When an axis is out of range or repeated, the counts differ, contracted dimensions differ,
/// or the dtypes differ or are not float.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let a = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3])?;
/// let b = Tensor::from_vec((0..12).map(|v| v as f32).collect(), &[3, 4])?;
/// assert_eq!(ops::tensordot(&a, &b, 1)?.to_vec::<f32>()?, ops::matmul(&a, &b)?.to_vec::<f32>()?);
/// // contract a's axis 0 with b's axis 1: [3] x [3, 4] shapes become [3, 3]
/// let c = Tensor::from_vec((0..8).map(|v| v as f32).collect(), &[4, 2])?;
/// assert_eq!(ops::tensordot(&a, &c, ([0], [1]))?.shape(), &[3, 4]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn tensordot(
    a: &impl AsTensor,
    b: &impl AsTensor,
    axes: impl Into<ContractAxes>,
) -> Result<Tensor> {
    let op = "tensordot";
    let (a, b) = operand_pair(a, b);
    let (ra, rb) = (a.rank(), b.rank());
    let (ax_a, ax_b): (Vec<usize>, Vec<usize>) = match axes.into() {
        ContractAxes::Last(n) => {
            if n > ra || n > rb {
                return Err(Error::axis(
                    op,
                    format!(
                        "cannot contract {n} axes of shapes {:?} and {:?}",
                        a.shape(),
                        b.shape()
                    ),
                ));
            }
            ((ra - n..ra).collect(), (0..n).collect())
        }
        ContractAxes::Pairs(p, q) => {
            if p.len() != q.len() {
                return Err(Error::axis(
                    op,
                    format!(
                        "{} axes of a against {} of b: {p:?}, {q:?}",
                        p.len(),
                        q.len()
                    ),
                ));
            }
            (pair_axes(op, &p, ra)?, pair_axes(op, &q, rb)?)
        }
    };
    contract(op, &a, &b, &ax_a, &ax_b)
}

/// `axes` of a tensor of rank `rank`, in the order given (they pair with the other
/// operand's): in range, negative from the end, none twice.
fn pair_axes(op: &'static str, axes: &[isize], rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let i = if a < 0 { a + rank as isize } else { a };
        if i < 0 || i >= rank as isize || out.contains(&(i as usize)) {
            return Err(Error::axis(
                op,
                format!("axes {axes:?} of a tensor of rank {rank}: out of range or repeated"),
            ));
        }
        out.push(i as usize);
    }
    Ok(out)
}

/// `a` and `b` contracted over `ax_a` with `ax_b` (pairwise; checked distinct and in range):
/// `a`'s other axes then `b`'s, through one matrix product.
pub(crate) fn contract(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    ax_a: &[usize],
    ax_b: &[usize],
) -> Result<Tensor> {
    contract_batched(op, a, b, (&[], &[]), (ax_a, ax_b))
}

/// `a` and `b` contracted over the axis pairs `axes`, with the axis pairs `batch` kept side
/// by side (`einsum`'s `bij,bjk->bik`): the batch axes, then `a`'s other axes, then `b`'s, as
/// one batched matrix product of the operands transposed and flattened.
pub(crate) fn contract_batched(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    batch: (&[usize], &[usize]),
    axes: (&[usize], &[usize]),
) -> Result<Tensor> {
    same_dtype(op, a, b)?;
    if !a.dtype().is_float() {
        return Err(Error::dtype(
            op,
            format!(
                "expected float32 or float64, got {} (cast first)",
                a.dtype()
            ),
        ));
    }
    for (&i, &j) in axes.0.iter().zip(axes.1).chain(batch.0.iter().zip(batch.1)) {
        if a.shape()[i] != b.shape()[j] {
            return Err(Error::shape(
                op,
                format!(
                    "contracted dimensions differ: axis {i} of {:?} against axis {j} of {:?}",
                    a.shape(),
                    b.shape()
                ),
            ));
        }
    }
    let used = |rank: usize, x: &[usize], y: &[usize]| -> Vec<usize> {
        (0..rank)
            .filter(|i| !x.contains(i) && !y.contains(i))
            .collect()
    };
    let free_a = used(a.rank(), batch.0, axes.0);
    let free_b = used(b.rank(), batch.1, axes.1);
    let dims =
        |t: &Tensor, ax: &[usize]| -> Vec<usize> { ax.iter().map(|&i| t.shape()[i]).collect() };
    let size = |t: &Tensor, ax: &[usize]| numel(&dims(t, ax)) as isize;
    let perm_a: Vec<usize> = [batch.0, &free_a, axes.0].concat();
    let perm_b: Vec<usize> = [batch.1, axes.1, &free_b].concat();
    let (nb, m, k, n) = (
        size(a, batch.0),
        size(a, &free_a),
        size(a, axes.0),
        size(b, &free_b),
    );
    let a3 = reshape(&transpose(a, Some(&perm_a))?, &[nb, m, k])?;
    let b3 = reshape(&transpose(b, Some(&perm_b))?, &[nb, k, n])?;
    let out: Vec<isize> = [dims(a, batch.0), dims(a, &free_a), dims(b, &free_b)]
        .concat()
        .into_iter()
        .map(|d| d as isize)
        .collect();
    reshape(&matmul_core(&a3, &b3)?, &out)
}

/// NumPy's and JAX's `dot`: for vectors the inner product, for matrices the matrix product,
/// and in general the sum over the last axis of `a` and the second-to-last of `b` (the last
/// when `b` is a vector); a scalar operand multiplies.
///
/// # Errors
/// When the contracted dimensions differ, or the dtypes differ or are not float.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
/// let w = Tensor::from_vec(vec![0.5f32, 0.5, 1.0], &[3])?;
/// assert_eq!(ops::dot(&x, &w)?.item()?, 4.5); // jnp.dot(x, w)
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn dot(a: &impl AsTensor, b: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(a, b);
    let (ra, rb) = (a.rank(), b.rank());
    match (ra, rb) {
        (0, _) | (_, 0) => super::multiply(&a, &b),
        (_, 1) => contract("dot", &a, &b, &[ra - 1], &[0]),
        _ => contract("dot", &a, &b, &[ra - 1], &[rb - 2]),
    }
}

/// `matmul` with TensorFlow's `transpose_a` / `transpose_b` flags (the transposes are views).
///
/// # Errors
/// As [`matmul`].
///
/// ```
/// use gradtape::{ops, Tensor};
/// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3, 1])?;
/// let r = ops::matmul_transposed(&a, &a, true, false)?; // aᵀa
/// assert_eq!(r.to_vec::<f32>()?, vec![14.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn matmul_transposed(
    a: &impl AsTensor,
    b: &impl AsTensor,
    transpose_a: bool,
    transpose_b: bool,
) -> Result<Tensor> {
    let (a, b) = operand_pair(a, b);
    let a = if transpose_a {
        swap_last_two("matmul", &a)?
    } else {
        a
    };
    let b = if transpose_b {
        swap_last_two("matmul", &b)?
    } else {
        b
    };
    matmul_core(&a, &b)
}

/// `x` with its last two axes swapped (each matrix of a batch transposed), for `op`.
pub(crate) fn swap_last_two(op: &'static str, x: &Tensor) -> Result<Tensor> {
    let r = x.rank();
    if r < 2 {
        return Err(Error::shape(
            op,
            format!(
                "operand of shape {:?} is not a matrix (rank < 2)",
                x.shape()
            ),
        ));
    }
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 1, r - 2);
    transpose(x, Some(&perm))
}

fn matmul_core(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_matrices(a, b)?;
    apply(&MATMUL, &[a, b], &Params::NONE)
}

fn check_matrices(a: &Tensor, b: &Tensor) -> Result<()> {
    same_dtype("matmul", a, b)?;
    for (name, t) in [("a", a), ("b", b)] {
        if t.rank() < 2 {
            return Err(Error::shape(
                "matmul",
                format!("{name} of shape {:?} is not a matrix (rank < 2)", t.shape()),
            ));
        }
    }
    Ok(())
}

/// Bilinear: the JVP is the product rule `ȧ b + a ḃ`, the gradients `g bᵀ` and `aᵀ g`.
pub(crate) static MATMUL: Primitive = Primitive {
    name: "matmul",
    forward: |xs, _| {
        let op = "matmul";
        let (a, b) = (xs[0], xs[1]);
        check_matrices(a, b)?;
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k, k2, n) = (
            a.shape()[ra - 2],
            a.shape()[ra - 1],
            b.shape()[rb - 2],
            b.shape()[rb - 1],
        );
        if k != k2 {
            return Err(Error::shape(
                op,
                format!("inner dimensions differ: {:?} x {:?}", a.shape(), b.shape()),
            ));
        }
        let batch = broadcast_shapes(op, &a.shape()[..ra - 2], &b.shape()[..rb - 2])?;
        let mut shape = batch.clone();
        shape.extend([m, n]);
        let dims = MatmulDims {
            batch: &batch,
            m,
            k,
            n,
        };
        if let Some(out) = crate::backend::matmul(a, b, &dims, &shape)? {
            return Ok(out);
        }
        dispatch!(float op, a.dtype(), T => product::<T>(a, b, &dims, &shape))
    },
    arity: 2,
    params: ParamsKind::None,
    derivative: Derivative::Bilinear {
        transpose: |s, g, i| {
            if i == 0 {
                matmul_transposed(g, s.b()?, false, true)
            } else {
                matmul_transposed(s.a()?, g, true, false)
            }
        },
    },
    batching: Batching::Broadcast,
    cuda: None,
    fused: None,
};

/// The primitives of this file defined as data.
pub(crate) static PRIMITIVES: &[&Primitive] = &[&MATMUL];

/// Runs one GEMM per batch element, reading both operands through their strides.
fn product<T: Float>(a: &Tensor, b: &Tensor, dims: &MatmulDims, shape: &[usize]) -> Result<Tensor> {
    let (batch, m, k, n) = (dims.batch, dims.m, dims.k, dims.n);
    let (da, db) = (a.data::<T>()?, b.data::<T>()?);
    let (la, lb) = (a.layout(), b.layout());
    let (ra, rb) = (la.shape.len(), lb.shape.len());
    let batch_view = |l: &Layout, r: usize| {
        let bl = Layout {
            shape: Dims::from_slice(&l.shape[..r - 2]),
            strides: Dims::from_slice(&l.strides[..r - 2]),
            offset: l.offset,
        };
        let mut v = bl.broadcast_to(batch);
        v.shape.push(1);
        v.strides.push(0);
        v
    };
    let (ba, bb) = (batch_view(la, ra), batch_view(lb, rb));
    let mut out = crate::backend::pool::filled::<T>("matmul", numel(shape), T::ZERO)?;
    // When `b` is the same matrix for every batch element and `a`'s batch axes continue its
    // rows with one stride, the batch is just more rows: one GEMM of (batch·m) × k by k × n
    // instead of one small GEMM per element (a vmap's batched-by-shared products, a layer
    // applied to [batch, time, features]).
    let nb = numel(batch);
    let (sm, sk) = (la.strides[ra - 2], la.strides[ra - 1]);
    let rows_fold = nb > 1 && m > 0 && {
        let mut expect = sm * m as isize;
        let mut ok = true;
        for i in (0..batch.len()).rev() {
            if batch[i] == 1 {
                continue;
            }
            if bb.strides[i] != 0 || ba.strides[i] != expect {
                ok = false;
                break;
            }
            expect *= batch[i] as isize;
        }
        ok
    };
    if rows_fold {
        cpu::gemm(
            nb * m,
            n,
            k,
            &mut out,
            da,
            ba.offset,
            sm,
            sk,
            db,
            bb.offset,
            lb.strides[rb - 2],
            lb.strides[rb - 1],
        )?;
        return Ok(Tensor::from_elems(out, shape));
    }
    let mut offsets = Vec::with_capacity(numel(batch));
    for_each_row(
        &ba.shape,
        [&ba.strides, &bb.strides],
        [ba.offset, bb.offset],
        |_, [oa, ob]| {
            offsets.push((oa as usize, ob as usize));
        },
    );
    for (dst, &(oa, ob)) in out.chunks_mut((m * n).max(1)).zip(&offsets) {
        cpu::gemm(
            m,
            n,
            k,
            dst,
            da,
            oa,
            la.strides[ra - 2],
            la.strides[ra - 1],
            db,
            ob,
            lb.strides[rb - 2],
            lb.strides[rb - 1],
        )?;
    }
    Ok(Tensor::from_elems(out, shape))
}
