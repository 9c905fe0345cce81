//! `tf.linalg`'s decompositions and solves: each a primitive whose kernel is faer's (no
//! hand-written decomposition), with its gradient and tangent rules written beside it in
//! gradtape's own differentiable ops, so second derivatives, forward mode and `vmap` go through
//! them. Leading dimensions are batch dimensions. The rest of `linalg` (`cholesky_solve`,
//! `logdet`, `diag_part`, `trace`, `band_part`, `matrix_transpose`) is composed from these
//! and the other ops.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch, LltError};
use faer::linalg::triangular_solve as tri;
use faer::{MatMut, MatRef, Par};

use super::apply;
use crate::backend::cpu;
use crate::dtype::{dispatch, Element, Num};
use crate::error::{Error, Result};
use crate::primitive::{Batching, Derivative, Params, ParamsKind, Primitive};
use crate::shape::{broadcast_shapes, numel};
use crate::tensor::{AsTensor, Tensor};

use super::{
    add, matmul, multiply, reduce_sum, reshape_to, select, strided_slice, subtract, sum_to_shape,
    transpose,
};

pub(crate) static PRIMITIVES: &[&Primitive] = &[&CHOLESKY, &TRIANGULAR_SOLVE];

/// Below this many elements per matrix, faer runs on the calling thread (its parallel split
/// costs more than the work); batches of small matrices are spread over threads instead.
const PAR_ELEMS: usize = 128 * 128;

/// The size `n` of the square matrices in `x` (`[..., n, n]`).
fn square(op: &'static str, x: &Tensor) -> Result<usize> {
    match x.shape() {
        [.., m, n] if m == n => Ok(*n),
        s => Err(Error::shape(
            op,
            format!("expected square matrices [..., n, n], got shape {s:?}"),
        )),
    }
}

fn on_host(op: &'static str, x: &Tensor) -> Result<()> {
    match x.device().is_cuda() {
        true => Err(Error::device(
            op,
            format!(
                "has no GPU kernel yet; the input is on {} (move it to the CPU with \
                 `to_device(Device::Cpu)`)",
                x.device()
            ),
        )),
        false => Ok(()),
    }
}

/// `x` with its last two axes swapped (TensorFlow's `tf.linalg.matrix_transpose`).
///
/// # Errors
/// When `x` has rank below 2.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// assert_eq!(linalg::matrix_transpose(&x)?.shape(), &[3, 2]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn matrix_transpose(x: &impl AsTensor) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    let r = x.rank();
    if r < 2 {
        return Err(Error::shape(
            "matrix_transpose",
            format!("expected rank 2 or more, got shape {:?}", x.shape()),
        ));
    }
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 1, r - 2);
    transpose(&x, Some(&perm))
}

/// The lower Cholesky factor `L` of symmetric positive-definite matrices (`A = L Lᵀ`), read
/// from `A`'s lower triangle as TensorFlow's `tf.linalg.cholesky` reads it.
///
/// The gradient is TensorFlow's (Murray 2016), symmetric: it is the derivative along
/// symmetric changes of `A`, the only ones that keep it a valid input.
///
/// # Errors
/// When the matrices are not square or not float, on a GPU (no kernel yet), or when one is
/// not positive definite: the message names the batch index, the shape and the first
/// leading minor that is not positive (a NaN fails there too).
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![4.0f64, 2.0, 2.0, 5.0], &[2, 2])?;
/// assert_eq!(linalg::cholesky(&a)?.to_vec::<f64>()?, vec![2.0, 0.0, 1.0, 2.0]);
/// let bad = Tensor::from_vec(vec![1.0f64, 2.0, 2.0, 1.0], &[2, 2])?;
/// assert!(linalg::cholesky(&bad).unwrap_err().to_string().contains("leading minor of order 2"));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn cholesky(x: &impl AsTensor) -> Result<Tensor> {
    apply(&CHOLESKY, &[&x.operand().into_tensor()], &Params::NONE)
}

pub(crate) static CHOLESKY: Primitive = Primitive {
    name: "cholesky",
    forward: |xs, _| cholesky_kernel(xs[0]),
    arity: 1,
    params: ParamsKind::None,
    derivative: Derivative::General {
        // Φ(Lᵀ Ḡ) (lower triangle, diagonal halved), then S = L⁻ᵀ Φ L⁻¹, symmetrized
        vjp: |saved, _, g, _| {
            let l = saved.out()?;
            let phi = lower_half_diagonal(&matmul(&matrix_transpose(l)?, g)?)?;
            let left = triangular_solve(l, &phi, true, true)?; // L⁻ᵀ Φ
            let s = matrix_transpose(&triangular_solve(l, &matrix_transpose(&left)?, true, true)?)?;
            let sym = multiply(&add(&s, &matrix_transpose(&s)?)?, &0.5)?;
            Ok(vec![Some(sym)])
        },
        // dL = L Φ(L⁻¹ sym(dA) L⁻ᵀ)
        jvp: |saved, _, t| {
            let Some(da) = &t[0] else { return Ok(None) };
            let l = saved.out()?;
            let sym = multiply(&add(da, &matrix_transpose(da)?)?, &0.5)?;
            let half = triangular_solve(l, &sym, true, false)?; // L⁻¹ S
            let inner = triangular_solve(l, &matrix_transpose(&half)?, true, false)?;
            Ok(Some(matmul(l, &lower_half_diagonal(&inner)?)?))
        },
    },
    // its kernel takes any leading dimensions, the batch axis among them
    batching: Batching::OneInput(|p, _| cholesky(p)),
    cuda: None,
    fused: None,
};

/// The lower triangle of `x` with its diagonal halved (Murray's Φ).
fn lower_half_diagonal(x: &Tensor) -> Result<Tensor> {
    let n = x.shape()[x.rank() - 1];
    let lower = mask(n, |i, j| i > j, x)?;
    let diag = mask(n, |i, j| i == j, x)?;
    let half = multiply(x, &0.5)?;
    select(&lower, x, &select(&diag, &half, &0.0)?)
}

/// An `[n, n]` boolean mask (on `like`'s device) where `keep(i, j)`.
fn mask(n: usize, keep: impl Fn(usize, usize) -> bool, like: &Tensor) -> Result<Tensor> {
    let m: Vec<bool> = (0..n * n).map(|e| keep(e / n, e % n)).collect();
    Tensor::from_vec(m, &[n, n])?.move_to(like.device())
}

fn cholesky_kernel(x: &Tensor) -> Result<Tensor> {
    let op = "cholesky";
    let n = square(op, x)?;
    on_host(op, x)?;
    dispatch!(float op, x.dtype(), T => {
        let mut out = x.contiguous_data::<T>()?.into_owned();
        let per = n * n;
        let factor = |b: usize, m: &mut [T]| -> Result<()> {
            let par = if per >= PAR_ELEMS { Par::rayon(0) } else { Par::Seq };
            let mut mem = MemBuffer::new(cholesky_in_place_scratch::<T>(n, par, Default::default()));
            let a = MatMut::from_row_major_slice_mut(m, n, n);
            // faer reads the lower triangle and writes L over it
            cholesky_in_place(a, Default::default(), par, MemStack::new(&mut mem), Default::default())
                .map_err(|LltError::NonPositivePivot { index }| {
                    Error::arg(
                        op,
                        format!(
                            "matrix {b} of shape {:?} is not positive definite: its leading \
                             minor of order {} is not positive (TensorFlow: \"Cholesky \
                             decomposition was not successful\")",
                            x.shape(),
                            index + 1
                        ),
                    )
                })?;
            for i in 0..n {
                m[i * n + i + 1..(i + 1) * n].fill(T::ZERO);
            }
            Ok(())
        };
        per_matrix(&mut out, per, factor)?;
        Ok(Tensor::from_elems(out, x.shape()))
    })
}

/// Runs `f(index, matrix)` on each `per`-element matrix of `data`, over threads when there
/// are many small ones; the first error wins.
fn per_matrix<T: Element>(
    data: &mut [T],
    per: usize,
    f: impl Fn(usize, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    if per == 0 {
        return Ok(());
    }
    if per < PAR_ELEMS && data.len() >= cpu::PAR_MIN {
        let failed = std::sync::Mutex::new(None::<(usize, Error)>);
        cpu::par_chunks_mut(data, per, &|b, m| {
            if let Err(e) = f(b, m) {
                let mut first = failed.lock().unwrap_or_else(|p| p.into_inner());
                if first.as_ref().is_none_or(|(k, _)| b < *k) {
                    *first = Some((b, e));
                }
            }
        });
        let first = failed.into_inner().unwrap_or_else(|p| p.into_inner());
        return first.map_or(Ok(()), |(_, e)| Err(e));
    }
    data.chunks_mut(per)
        .enumerate()
        .try_for_each(|(b, m)| f(b, m))
}

/// Solves `A X = B` (or `Aᵀ X = B` with `adjoint`) for triangular `A`, reading only its lower
/// (or upper) triangle, as TensorFlow's `tf.linalg.triangular_solve(matrix, rhs, lower,
/// adjoint)`. `matrix` is `[..., n, n]`, `rhs` `[..., n, k]`; leading dimensions broadcast.
///
/// A zero on the diagonal gives infinities or NaN, as TensorFlow's does (it is a
/// substitution, not a check).
///
/// # Errors
/// When the shapes do not fit (`matrix` not square, `rhs` not `n` rows, batch dimensions that
/// do not broadcast), the dtypes differ or are not float, or on a GPU.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let l = Tensor::from_vec(vec![2.0f64, 0.0, 1.0, 4.0], &[2, 2])?;
/// let b = Tensor::from_vec(vec![2.0f64, 9.0], &[2, 1])?;
/// assert_eq!(linalg::triangular_solve(&l, &b, true, false)?.to_vec::<f64>()?, vec![1.0, 2.0]);
/// // Lᵀ x = b
/// assert_eq!(linalg::triangular_solve(&l, &b, true, true)?.to_vec::<f64>()?, vec![-0.125, 2.25]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn triangular_solve(
    matrix: &impl AsTensor,
    rhs: &impl AsTensor,
    lower: bool,
    adjoint: bool,
) -> Result<Tensor> {
    let (a, b) = (matrix.operand().into_tensor(), rhs.operand().into_tensor());
    apply(
        &TRIANGULAR_SOLVE,
        &[&a, &b],
        &Params::triangular(lower, adjoint),
    )
}

pub(crate) static TRIANGULAR_SOLVE: Primitive = Primitive {
    name: "triangular_solve",
    forward: |xs, params| {
        let (lower, adjoint) = params.as_triangular("triangular_solve")?;
        triangular_solve_kernel(xs[0], xs[1], lower, adjoint)
    },
    arity: 2,
    params: ParamsKind::Triangular,
    derivative: Derivative::General {
        vjp: |saved, params, g, needs| {
            let (lower, adjoint) = params.as_triangular("triangular_solve")?;
            let (a, b, x) = (saved.a()?, saved.b()?, saved.out()?);
            // B̄ = op(A)⁻ᵀ X̄
            let gb = triangular_solve(a, g, lower, !adjoint)?;
            let ga = match needs[0] {
                false => None,
                true => {
                    // Ā = -B̄ Xᵀ (or -X B̄ᵀ for the adjoint), on A's triangle
                    let full = match adjoint {
                        false => matmul(&gb, &matrix_transpose(x)?)?,
                        true => matmul(x, &matrix_transpose(&gb)?)?,
                    };
                    let tri = triangle(&full, lower)?;
                    Some(sum_to_shape(&multiply(&tri, &-1.0)?, a.shape())?)
                }
            };
            let gb = match needs[1] {
                true => Some(sum_to_shape(&gb, b.shape())?),
                false => None,
            };
            Ok(vec![ga, gb])
        },
        // dX = op(A)⁻¹ (dB - op(dA) X)
        jvp: |saved, params, t| {
            let (lower, adjoint) = params.as_triangular("triangular_solve")?;
            let (a, x) = (saved.a()?, saved.out()?);
            let mut rhs = t[1].clone();
            if let Some(da) = &t[0] {
                let da = triangle(da, lower)?;
                let op_da = if adjoint { matrix_transpose(&da)? } else { da };
                let term = matmul(&op_da, x)?;
                rhs = Some(match rhs {
                    Some(r) => subtract(&r, &term)?,
                    None => multiply(&term, &-1.0)?,
                });
            }
            rhs.map(|r| triangular_solve(a, &r, lower, adjoint))
                .transpose()
        },
    },
    // leading dimensions broadcast in the kernel, so the batch axis is one more of them
    batching: Batching::Broadcast,
    cuda: None,
    fused: None,
};

/// The lower (or upper) triangle of `x`, diagonal included.
fn triangle(x: &Tensor, lower: bool) -> Result<Tensor> {
    let n = x.shape()[x.rank() - 1];
    let keep = mask(n, |i, j| if lower { i >= j } else { i <= j }, x)?;
    select(&keep, x, &0.0)
}

fn triangular_solve_kernel(a: &Tensor, b: &Tensor, lower: bool, adjoint: bool) -> Result<Tensor> {
    let op = "triangular_solve";
    let n = square(op, a)?;
    let (bs, k) = match b.shape() {
        [bs @ .., m, k] if *m == n => (bs, *k),
        s => {
            return Err(Error::shape(
                op,
                format!(
                    "rhs must be [..., {n}, k] for a matrix of shape {:?}, got {s:?}",
                    a.shape()
                ),
            ))
        }
    };
    if a.dtype() != b.dtype() {
        return Err(Error::dtype(
            op,
            format!("matrix is {} but rhs is {}", a.dtype(), b.dtype()),
        ));
    }
    on_host(op, a)?;
    on_host(op, b)?;
    let batch = broadcast_shapes(op, &a.shape()[..a.rank() - 2], bs)?;
    let with = |tail: [usize; 2]| -> Vec<usize> { batch.iter().copied().chain(tail).collect() };
    let (a_shape, out_shape) = (with([n, n]), with([n, k]));
    dispatch!(float op, a.dtype(), T => {
        let am = cpu::to_contiguous(a.data::<T>()?, &a.layout().broadcast_to(&a_shape))?;
        let mut out = cpu::to_contiguous(b.data::<T>()?, &b.layout().broadcast_to(&out_shape))?;
        let per_a = n * n;
        let solve = |i: usize, x: &mut [T]| -> Result<()> {
            let par = if per_a >= PAR_ELEMS { Par::rayon(0) } else { Par::Seq };
            let m = MatRef::from_row_major_slice(&am[i * per_a..(i + 1) * per_a], n, n);
            let x = MatMut::from_row_major_slice_mut(x, n, k);
            match (lower, adjoint) {
                (true, false) => tri::solve_lower_triangular_in_place(m, x, par),
                (true, true) => tri::solve_upper_triangular_in_place(m.transpose(), x, par),
                (false, false) => tri::solve_upper_triangular_in_place(m, x, par),
                (false, true) => tri::solve_lower_triangular_in_place(m.transpose(), x, par),
            }
            Ok(())
        };
        if numel(&out_shape) > 0 {
            per_matrix(&mut out, n * k, solve)?;
        }
        Ok(Tensor::from_elems(out, &out_shape))
    })
}

/// Solves `A X = B` given `A`'s Cholesky factor `chol` (TensorFlow's
/// `tf.linalg.cholesky_solve`): two triangular solves.
///
/// # Errors
/// As [`triangular_solve`].
///
/// ```
/// use gradtape::{linalg, ops, Tensor};
/// let a = Tensor::from_vec(vec![4.0f64, 2.0, 2.0, 3.0], &[2, 2])?;
/// let b = Tensor::from_vec(vec![6.0f64, 5.0], &[2, 1])?;
/// let x = linalg::cholesky_solve(&linalg::cholesky(&a)?, &b)?;
/// assert_eq!(ops::matmul(&a, &x)?.to_vec::<f64>()?, vec![6.0, 5.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn cholesky_solve(chol: &impl AsTensor, rhs: &impl AsTensor) -> Result<Tensor> {
    let chol = chol.operand().into_tensor();
    let y = triangular_solve(&chol, rhs, true, false)?;
    triangular_solve(&chol, &y, true, true)
}

/// The diagonals of `x` (`[..., n, n]` gives `[..., n]`; TensorFlow's `tf.linalg.diag_part`
/// of square matrices).
///
/// # Errors
/// When the matrices are not square.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// assert_eq!(linalg::diag_part(&x)?.to_vec::<f32>()?, vec![1.0, 4.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn diag_part(x: &impl AsTensor) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    let n = square("diag_part", &x)?;
    let lead = &x.shape()[..x.rank() - 2];
    let flat: Vec<usize> = lead.iter().copied().chain([n * n]).collect();
    let rows = reshape_to(&x, &flat)?;
    let r = flat.len();
    let begin = vec![0isize; r];
    let end: Vec<isize> = flat.iter().map(|&d| d as isize).collect();
    let mut strides = vec![1isize; r];
    strides[r - 1] = n as isize + 1;
    strides_or_empty(&rows, &begin, &end, &strides, n)
}

/// A strided slice, or the empty result when the matrices are empty (a step over an empty
/// axis takes nothing).
fn strides_or_empty(
    x: &Tensor,
    begin: &[isize],
    end: &[isize],
    strides: &[isize],
    n: usize,
) -> Result<Tensor> {
    if n == 0 {
        return reshape_to(x, x.shape());
    }
    strided_slice(x, begin, end, strides)
}

/// The sum of the diagonal of each matrix (`tf.linalg.trace`).
///
/// # Errors
/// When the matrices are not square.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// assert_eq!(linalg::trace(&x)?.item()?, 5.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn trace(x: &impl AsTensor) -> Result<Tensor> {
    reduce_sum(&diag_part(x)?, -1, false)
}

/// The log-determinant of symmetric positive-definite matrices (TensorFlow's
/// `tf.linalg.logdet`): `2 Σ log diag(L)` of the Cholesky factor, which stays finite where
/// the determinant itself would overflow or underflow.
///
/// # Errors
/// As [`cholesky`].
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![4.0f64, 2.0, 2.0, 3.0], &[2, 2])?;
/// assert!((linalg::logdet(&a)?.item()? - 8f64.ln()).abs() < 1e-12);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn logdet(x: &impl AsTensor) -> Result<Tensor> {
    let d = diag_part(&cholesky(x)?)?;
    multiply(&reduce_sum(&super::log(&d)?, -1, false)?, &2.0)
}

/// The band of each matrix: elements at most `num_lower` below and `num_upper` above the
/// diagonal kept, the rest zero; a negative count keeps that whole triangle
/// (`tf.linalg.band_part`: `band_part(x, -1, 0)` is the lower triangle).
///
/// # Errors
/// When `x` has rank below 2.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// assert_eq!(linalg::band_part(&x, -1, 0)?.to_vec::<f32>()?, vec![1.0, 0.0, 3.0, 4.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn band_part(x: &impl AsTensor, num_lower: i64, num_upper: i64) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    let (m, n) = match x.shape() {
        [.., m, n] => (*m, *n),
        s => {
            return Err(Error::shape(
                "band_part",
                format!("expected rank 2 or more, got shape {s:?}"),
            ))
        }
    };
    let keep: Vec<bool> = (0..m * n)
        .map(|e| {
            let (i, j) = ((e / n.max(1)) as i64, (e % n.max(1)) as i64);
            (num_lower < 0 || i - j <= num_lower) && (num_upper < 0 || j - i <= num_upper)
        })
        .collect();
    let keep = Tensor::from_vec(keep, &[m, n])?.move_to(x.device())?;
    select(&keep, &x, &0.0)
}
