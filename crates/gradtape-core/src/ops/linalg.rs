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

use super::{same_dtype, transpose};

/// The matrix product `a · b` over the last two dimensions; leading dimensions are batch
/// dimensions and broadcast. Both operands need rank ≥ 2 (as in `tf.matmul`).
///
/// # Errors
/// When a rank is below 2, inner dimensions differ, batch dimensions do not broadcast, or the
/// dtypes differ or are not float.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// let i = Tensor::eye(2, gradtape::DType::F32)?;
/// assert_eq!(ops::matmul(&a, &i)?.to_vec::<f32>()?, vec![1.0, 2.0, 3.0, 4.0]);
/// let e = ops::matmul(&a, &Tensor::zeros(&[3, 1], gradtape::DType::F32)?).unwrap_err();
/// assert_eq!(e.to_string(), "matmul: inner dimensions differ: [2, 2] x [3, 1]");
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn matmul(a: &impl AsTensor, b: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(a, b);
    matmul_core(&a, &b)
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
    let a = if transpose_a { swap_last_two(&a)? } else { a };
    let b = if transpose_b { swap_last_two(&b)? } else { b };
    matmul_core(&a, &b)
}

fn swap_last_two(x: &Tensor) -> Result<Tensor> {
    let r = x.rank();
    if r < 2 {
        return Err(Error::shape(
            "matmul",
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
