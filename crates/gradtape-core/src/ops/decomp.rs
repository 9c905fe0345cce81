//! `tf.linalg`'s decompositions and solves: each a primitive whose kernel is faer's (no
//! hand-written decomposition), with its gradient and tangent rules written beside it in
//! gradtape's own differentiable ops, so second derivatives, forward mode and `vmap` go through
//! them. Leading dimensions are batch dimensions. The rest of `linalg` (`cholesky_solve`,
//! `logdet`, `diag_part`, `trace`, `band_part`, `matrix_transpose`) is composed from these
//! and the other ops.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch, LltError};
use faer::linalg::lu::partial_pivoting::{factor as lu, solve as lu_solve};
use faer::linalg::triangular_solve as tri;
use faer::{MatMut, MatRef, Par};

use super::apply;
use super::factors;
use crate::backend::cpu;
use crate::dtype::{dispatch, Element, Num};
use crate::error::{Error, Result};
use crate::primitive::{Batching, Derivative, Params, ParamsKind, Primitive};
use crate::shape::{broadcast_shapes, numel};
use crate::tensor::{AsTensor, Tensor};

use super::{
    add, broadcast_to, exp, expand_dims, matmul, multiply, reduce_sum, reshape_to, select, stack,
    strided_slice, subtract, sum_to_shape, transpose,
};

pub(crate) static PRIMITIVES: &[&Primitive] = &[
    &CHOLESKY,
    &TRIANGULAR_SOLVE,
    &SOLVE,
    &SLOGDET,
    &factors::EIGH,
    &factors::EIGVALSH,
    &factors::SVD,
    &factors::SVDVALS,
    &factors::QR,
];

/// Below this many elements per matrix, faer runs on the calling thread (its parallel split
/// costs more than the work); batches of small matrices are spread over threads instead.
pub(super) const PAR_ELEMS: usize = 128 * 128;

/// The size `n` of the square matrices in `x` (`[..., n, n]`).
pub(super) fn square(op: &'static str, x: &Tensor) -> Result<usize> {
    match x.shape() {
        [.., m, n] if m == n => Ok(*n),
        s => Err(Error::shape(
            op,
            format!("expected square matrices [..., n, n], got shape {s:?}"),
        )),
    }
}

pub(super) fn on_host(op: &'static str, x: &Tensor) -> Result<()> {
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
    super::linalg::swap_last_two("matrix_transpose", &x.operand().into_tensor())
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
pub(super) fn lower_half_diagonal(x: &Tensor) -> Result<Tensor> {
    let n = x.shape()[x.rank() - 1];
    let lower = mask((n, n), |i, j| i > j, x)?;
    let diag = mask((n, n), |i, j| i == j, x)?;
    let half = multiply(x, &0.5)?;
    select(&lower, x, &select(&diag, &half, &0.0)?)
}

/// An `[m, n]` boolean mask (on `like`'s device) where `keep(i, j)`.
pub(super) fn mask(
    (m, n): (usize, usize),
    keep: impl Fn(usize, usize) -> bool,
    like: &Tensor,
) -> Result<Tensor> {
    let v: Vec<bool> = (0..m * n).map(|e| keep(e / n, e % n)).collect();
    Tensor::from_vec(v, &[m, n])?.move_to(like.device())
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
pub(super) fn per_matrix<T: Element>(
    data: &mut [T],
    per: usize,
    f: impl Fn(usize, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    per_matrix_with(data, per, || (), |_, b, m| f(b, m))
}

/// About how many elements of small matrices one parallel task of [`per_matrix_with`] takes.
const GROUP_ELEMS: usize = 4096;

/// [`per_matrix`] with a scratch space that `scratch()` makes once per task (a group of
/// matrices) and lends to each `f(scratch, index, matrix)`: for small matrices, allocating
/// buffers per matrix cost more than factoring it (a 3×3 LU).
pub(super) fn per_matrix_with<T: Element, S>(
    data: &mut [T],
    per: usize,
    scratch: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    if per == 0 {
        return Ok(());
    }
    if per < PAR_ELEMS && data.len() >= cpu::PAR_MIN {
        let group = (GROUP_ELEMS / per).max(1);
        let failed = std::sync::Mutex::new(None::<(usize, Error)>);
        cpu::par_chunks_mut(data, per * group, &|g, chunk| {
            let mut s = scratch();
            for (j, m) in chunk.chunks_mut(per).enumerate() {
                let b = g * group + j;
                if let Err(e) = f(&mut s, b, m) {
                    let mut first = failed.lock().unwrap_or_else(|p| p.into_inner());
                    if first.as_ref().is_none_or(|(k, _)| b < *k) {
                        *first = Some((b, e));
                    }
                    break;
                }
            }
        });
        let first = failed.into_inner().unwrap_or_else(|p| p.into_inner());
        return first.map_or(Ok(()), |(_, e)| Err(e));
    }
    let mut s = scratch();
    data.chunks_mut(per)
        .enumerate()
        .try_for_each(|(b, m)| f(&mut s, b, m))
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
    match lower {
        true => band_part(x, -1, 0),
        false => band_part(x, 0, -1),
    }
}

/// The sizes of a solve's operands: `n`×`n` matrices, `n`×`k` right-hand sides, and both
/// shapes with their batch dimensions broadcast together.
struct Operands {
    n: usize,
    k: usize,
    a_shape: Vec<usize>,
    out_shape: Vec<usize>,
}

/// Checks a solve's operands (square matrices, right-hand sides of `n` rows, one float dtype,
/// on the host, batch dimensions that broadcast) and sizes them.
fn operands(op: &'static str, a: &Tensor, b: &Tensor) -> Result<Operands> {
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
    Ok(Operands {
        n,
        k,
        a_shape: with([n, n]),
        out_shape: with([n, k]),
    })
}

/// Runs `f(scratch, index, matrix, rhs)` on every system of a solve: `a` and `b` copied out
/// with their batch dimensions broadcast, the right-hand side's copy solved in place into the
/// result; `scratch()` as in [`per_matrix_with`].
fn solve_each<T: Element, S>(
    a: &Tensor,
    b: &Tensor,
    o: &Operands,
    scratch: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &[T], &mut [T]) -> Result<()> + Sync,
) -> Result<Tensor> {
    let am = cpu::to_contiguous(a.data::<T>()?, &a.layout().broadcast_to(&o.a_shape))?;
    let mut out = cpu::to_contiguous(b.data::<T>()?, &b.layout().broadcast_to(&o.out_shape))?;
    let per_a = o.n * o.n;
    if numel(&o.out_shape) > 0 {
        per_matrix_with(&mut out, o.n * o.k, scratch, |s, i, x| {
            f(s, i, &am[i * per_a..(i + 1) * per_a], x)
        })?;
    }
    Ok(Tensor::from_elems(out, &o.out_shape))
}

fn triangular_solve_kernel(a: &Tensor, b: &Tensor, lower: bool, adjoint: bool) -> Result<Tensor> {
    let op = "triangular_solve";
    let o = operands(op, a, b)?;
    let (n, k) = (o.n, o.k);
    dispatch!(float op, a.dtype(), T => {
        solve_each::<T, ()>(a, b, &o, || (), |_, _, m, x| {
            let par = if n * n >= PAR_ELEMS { Par::rayon(0) } else { Par::Seq };
            let m = MatRef::from_row_major_slice(m, n, n);
            let x = MatMut::from_row_major_slice_mut(x, n, k);
            match (lower, adjoint) {
                (true, false) => tri::solve_lower_triangular_in_place(m, x, par),
                (true, true) => tri::solve_upper_triangular_in_place(m.transpose(), x, par),
                (false, false) => tri::solve_upper_triangular_in_place(m, x, par),
                (false, true) => tri::solve_lower_triangular_in_place(m.transpose(), x, par),
            }
            Ok(())
        })
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

/// The `m`×`n` matrices' shape, and where their diagonal `k` starts in row-major order and
/// how long it is (TensorFlow's `k`: 0 the main diagonal, above it positive, below negative).
fn diagonal_k(op: &'static str, x: &Tensor, k: i64) -> Result<(usize, usize, usize, usize)> {
    let (m, n) = match x.shape() {
        [.., m, n] => (*m, *n),
        s => {
            return Err(Error::shape(
                op,
                format!("expected matrices [..., m, n], got shape {s:?}"),
            ))
        }
    };
    let (mi, ni) = (m as i64, n as i64);
    // TensorFlow's range (-m, n), widened to k = 0 for empty matrices
    if k != 0 && !(-mi < k && k < ni) {
        return Err(Error::arg(
            op,
            format!(
                "diagonal k = {k} is outside the matrices of shape {:?}",
                x.shape()
            ),
        ));
    }
    let (start, len) = match k >= 0 {
        true => (k as usize, m.min(n.saturating_sub(k as usize))),
        false => ((-k) as usize * n, n.min(m.saturating_sub((-k) as usize))),
    };
    Ok((m, n, start, len))
}

/// Diagonal `k` of each matrix (TensorFlow's `tf.linalg.diag_part(input, k)`): `[..., m, n]`
/// gives `[..., len]`, the main diagonal (`k = 0`) of length `min(m, n)`, those above it
/// (`k > 0`) and below (`k < 0`) shorter. A strided view, so its gradient scatters back.
///
/// # Errors
/// When `x` has rank below 2 or `k` is outside `(-m, n)`.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// assert_eq!(linalg::diag_part(&x, 0)?.to_vec::<f32>()?, vec![1.0, 5.0]);
/// assert_eq!(linalg::diag_part(&x, 1)?.to_vec::<f32>()?, vec![2.0, 6.0]);
/// assert_eq!(linalg::diag_part(&x, -1)?.to_vec::<f32>()?, vec![4.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn diag_part(x: &impl AsTensor, k: i64) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    let (m, n, start, len) = diagonal_k("diag_part", &x, k)?;
    let lead = &x.shape()[..x.rank() - 2];
    let flat: Vec<usize> = lead.iter().copied().chain([m * n]).collect();
    let rows = reshape_to(&x, &flat)?;
    let r = flat.len();
    let mut begin = vec![0isize; r];
    let mut end: Vec<isize> = flat.iter().map(|&d| d as isize).collect();
    let mut strides = vec![1isize; r];
    if len == 0 {
        // only empty matrices (k = 0) have an empty diagonal: an empty slice of the rows
        end[r - 1] = 0;
        return strided_slice(&rows, &begin, &end, &strides);
    }
    begin[r - 1] = start as isize;
    end[r - 1] = (start + (len - 1) * (n + 1) + 1) as isize;
    strides[r - 1] = n as isize + 1;
    strided_slice(&rows, &begin, &end, &strides)
}

/// `m`×`n` matrices holding `d` (`[..., len]`) on diagonal `k` and zeros elsewhere: `d`
/// spread with `n` zeros after each element, shifted to where the diagonal starts, and cut to
/// `m·n` (pads, a reshape and a slice: linear, so differentiable).
fn place_diagonal(d: &Tensor, k: i64, (m, n): (usize, usize)) -> Result<Tensor> {
    let lead = &d.shape()[..d.rank() - 1];
    let len = d.shape()[d.rank() - 1];
    let start = if k >= 0 {
        k as usize
    } else {
        (-k) as usize * n
    };
    let r = lead.len() + 1;
    let mut pads = vec![[0usize, 0]; r + 1];
    pads[r] = [0, n];
    let spread = super::pad(&expand_dims(d, -1)?, &pads)?; // [..., len, n + 1]
    let flat: Vec<usize> = lead.iter().copied().chain([len * (n + 1)]).collect();
    let spread = reshape_to(&spread, &flat)?;
    let (total, used) = (m * n, start + len * (n + 1));
    let mut pads = vec![[0usize, 0]; r];
    pads[r - 1] = [start, total.saturating_sub(used)];
    let mut placed = super::pad(&spread, &pads)?;
    if used > total {
        // only zeros follow the last element past m·n
        let mut size = vec![-1isize; r];
        size[r - 1] = total as isize;
        placed = super::slice(&placed, &vec![0; r], &size)?;
    }
    let shape: Vec<usize> = lead.iter().copied().chain([m, n]).collect();
    reshape_to(&placed, &shape)
}

/// Square matrices with `diagonal` (`[..., len]`) on diagonal `k` and zeros elsewhere
/// (TensorFlow's `tf.linalg.diag(diagonal, k)`): `len + |k|` on a side, as TensorFlow's default
/// `num_rows`/`num_cols`. Its gradient is diagonal `k` of the upstream gradient.
///
/// # Errors
/// When `diagonal` is a scalar.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let d = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
/// assert_eq!(linalg::diag(&d, 0)?.to_vec::<f32>()?, vec![1.0, 0.0, 0.0, 2.0]);
/// assert_eq!(linalg::diag(&d, 1)?.to_vec::<f32>()?, vec![0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn diag(diagonal: &impl AsTensor, k: i64) -> Result<Tensor> {
    let d = diagonal.operand().into_tensor();
    let Some(&len) = d.shape().last() else {
        return Err(Error::shape(
            "diag",
            "expected a diagonal [..., n], got a scalar",
        ));
    };
    let side = len + k.unsigned_abs() as usize;
    place_diagonal(&d, k, (side, side))
}

/// `x` with diagonal `k` of each matrix replaced by `diagonal` (TensorFlow's
/// `tf.linalg.set_diag(input, diagonal, k)`). The gradient goes to `x` off that diagonal and
/// to `diagonal` on it.
///
/// # Errors
/// When `x` has rank below 2, `k` is outside `(-m, n)`, or `diagonal` is not `x`'s batch
/// shape followed by the diagonal's length.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// let d = Tensor::from_vec(vec![9.0f32, 8.0], &[2])?;
/// assert_eq!(linalg::set_diag(&x, &d, 0)?.to_vec::<f32>()?, vec![9.0, 2.0, 3.0, 8.0]);
/// let one = Tensor::from_vec(vec![7.0f32], &[1])?;
/// assert_eq!(linalg::set_diag(&x, &one, -1)?.to_vec::<f32>()?, vec![1.0, 2.0, 7.0, 4.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn set_diag(x: &impl AsTensor, diagonal: &impl AsTensor, k: i64) -> Result<Tensor> {
    let (x, d) = (x.operand().into_tensor(), diagonal.operand().into_tensor());
    let (m, n, _, len) = diagonal_k("set_diag", &x, k)?;
    let want: Vec<usize> = x.shape()[..x.rank() - 2]
        .iter()
        .copied()
        .chain([len])
        .collect();
    if d.shape() != want {
        return Err(Error::shape(
            "set_diag",
            format!(
                "diagonal {k} must be {want:?} for matrices of shape {:?}, got {:?}",
                x.shape(),
                d.shape()
            ),
        ));
    }
    let on = mask((m, n), |i, j| j as i64 - i as i64 == k, &x)?;
    select(&on, &place_diagonal(&d, k, (m, n))?, &x)
}

/// The sum of the main diagonal of each matrix (`tf.linalg.trace`; square or not).
///
/// # Errors
/// When `x` has rank below 2.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// assert_eq!(linalg::trace(&x)?.item()?, 5.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn trace(x: &impl AsTensor) -> Result<Tensor> {
    reduce_sum(&diag_part(x, 0)?, -1, false)
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
    let d = diag_part(&cholesky(x)?, 0)?;
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
    let keep = mask(
        (m, n),
        |i, j| {
            let (i, j) = (i as i64, j as i64);
            (num_lower < 0 || i - j <= num_lower) && (num_upper < 0 || j - i <= num_upper)
        },
        &x,
    )?;
    select(&keep, &x, &0.0)
}

/// What an LU factorization and solve of `n`×`n` matrices (and `k` right-hand sides) need
/// besides their operands, made once for many matrices ([`per_matrix_with`]).
struct LuScratch<T> {
    n: usize,
    par: Par,
    /// The factored copy: L's unit lower triangle and U together, row-major.
    lu: Vec<T>,
    perm: Vec<usize>,
    perm_inv: Vec<usize>,
    mem: MemBuffer,
}

impl<T: faer::traits::ComplexField + Element + Num + PartialEq> LuScratch<T> {
    fn new(n: usize, k: usize) -> LuScratch<T> {
        let par = if n * n >= PAR_ELEMS {
            Par::rayon(0)
        } else {
            Par::Seq
        };
        let mem = MemBuffer::new(StackReq::any_of(&[
            lu::lu_in_place_scratch::<usize, T>(n, n, par, Default::default()),
            lu_solve::solve_in_place_scratch::<usize, T>(n, k, par),
        ]));
        LuScratch {
            n,
            par,
            lu: vec![T::ZERO; n * n],
            perm: vec![0; n],
            perm_inv: vec![0; n],
            mem,
        }
    }

    /// Factors the row-major `a` with partial pivoting and gives the number of row
    /// transpositions; `Err(i)` names the first zero pivot: the matrix is singular.
    fn factor(&mut self, a: &[T]) -> std::result::Result<usize, usize> {
        let n = self.n;
        self.lu.copy_from_slice(a);
        let (info, _) = lu::lu_in_place(
            MatMut::from_row_major_slice_mut(&mut self.lu, n, n),
            &mut self.perm,
            &mut self.perm_inv,
            self.par,
            MemStack::new(&mut self.mem),
            Default::default(),
        );
        match (0..n).find(|&i| self.lu[i * n + i] == T::ZERO) {
            Some(i) => Err(i),
            None => Ok(info.transposition_count),
        }
    }

    /// Solves the last factored system for the row-major `n`×`k` right-hand side `x`, in place.
    fn solve(&mut self, x: &mut [T], k: usize) {
        let n = self.n;
        let lu = MatRef::from_row_major_slice(&self.lu, n, n);
        // the permutation faer just produced and its inverse (the check cannot fail)
        let row_perm = faer::perm::PermRef::new_checked(&self.perm, &self.perm_inv, n);
        let x = MatMut::from_row_major_slice_mut(x, n, k);
        lu_solve::solve_in_place(lu, lu, row_perm, x, self.par, MemStack::new(&mut self.mem));
    }
}

/// Solves `A X = B` for square `A` (TensorFlow's `tf.linalg.solve`), by LU with partial
/// pivoting. `matrix` is `[..., n, n]`, `rhs` `[..., n, k]`; leading dimensions broadcast, as
/// NumPy's and JAX's `solve` do (TensorFlow's asks for equal ranks).
///
/// The gradient is TensorFlow's: `B̄ = A⁻ᵀ X̄`, `Ā = -B̄ Xᵀ`.
///
/// # Errors
/// When the shapes do not fit, the dtypes differ or are not float, on a GPU, or when a matrix
/// is singular (an exact zero pivot; TensorFlow: "Input matrix is not invertible"). A NaN in
/// the input gives NaN, as TensorFlow's does.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![0.0f64, 2.0, 1.0, 1.0], &[2, 2])?; // needs a row swap
/// let b = Tensor::from_vec(vec![4.0f64, 3.0], &[2, 1])?;
/// assert_eq!(linalg::solve(&a, &b)?.to_vec::<f64>()?, vec![1.0, 2.0]);
/// let singular = Tensor::from_vec(vec![1.0f64, 2.0, 2.0, 4.0], &[2, 2])?;
/// assert!(linalg::solve(&singular, &b).unwrap_err().to_string().contains("singular"));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn solve(matrix: &impl AsTensor, rhs: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = (matrix.operand().into_tensor(), rhs.operand().into_tensor());
    apply(&SOLVE, &[&a, &b], &Params::NONE)
}

pub(crate) static SOLVE: Primitive = Primitive {
    name: "solve",
    forward: |xs, _| solve_kernel(xs[0], xs[1]),
    arity: 2,
    params: ParamsKind::None,
    derivative: Derivative::General {
        vjp: |saved, _, g, needs| {
            let (a, b, x) = (saved.a()?, saved.b()?, saved.out()?);
            let gb = solve(&matrix_transpose(a)?, g)?;
            let ga = match needs[0] {
                true => {
                    let full = matmul(&gb, &matrix_transpose(x)?)?;
                    Some(sum_to_shape(&multiply(&full, &-1.0)?, a.shape())?)
                }
                false => None,
            };
            let gb = match needs[1] {
                true => Some(sum_to_shape(&gb, b.shape())?),
                false => None,
            };
            Ok(vec![ga, gb])
        },
        // dX = A⁻¹ (dB - dA X)
        jvp: |saved, _, t| {
            let (a, x) = (saved.a()?, saved.out()?);
            let mut rhs = t[1].clone();
            if let Some(da) = &t[0] {
                let term = matmul(da, x)?;
                rhs = Some(match rhs {
                    Some(r) => subtract(&r, &term)?,
                    None => multiply(&term, &-1.0)?,
                });
            }
            rhs.map(|r| solve(a, &r)).transpose()
        },
    },
    batching: Batching::Broadcast,
    cuda: None,
    fused: None,
};

fn solve_kernel(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let op = "solve";
    let o = operands(op, a, b)?;
    let (n, k) = (o.n, o.k);
    dispatch!(float op, a.dtype(), T => {
        solve_each::<T, _>(a, b, &o, || LuScratch::<T>::new(n, k), |lu, i, m, x| {
            lu.factor(m).map_err(|p| {
                Error::arg(
                    op,
                    format!(
                        "matrix {i} of shape {:?} is singular: pivot {p} of its LU \
                         factorization is zero (TensorFlow: \"Input matrix is not invertible\")",
                        a.shape()
                    ),
                )
            })?;
            lu.solve(x, k);
            Ok(())
        })
    })
}

/// The inverse of each square matrix (`tf.linalg.inv`): [`solve`] with the identity.
///
/// # Errors
/// As [`solve`] (a singular matrix is an error).
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![2.0f64, 0.0, 0.0, 4.0], &[2, 2])?;
/// assert_eq!(linalg::inv(&a)?.to_vec::<f64>()?, vec![0.5, 0.0, 0.0, 0.25]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn inv(x: &impl AsTensor) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    let n = square("inv", &x)?;
    let eye = Tensor::eye(n, x.dtype())?.move_to(x.device())?;
    let mut shape = x.shape().to_vec();
    shape[x.rank() - 1] = n;
    solve(&x, &broadcast_to(&eye, &shape)?)
}

/// The sign and the log of the absolute value of each determinant (TensorFlow's
/// `tf.linalg.slogdet`), from one LU factorization: finite where the determinant itself
/// would overflow. A singular matrix gives sign 0 and `-inf`, as TensorFlow's does (its
/// gradient, `A⁻ᵀ`, is then an error).
///
/// # Errors
/// When the matrices are not square or not float, or on a GPU.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![0.0f64, 2.0, 3.0, 1.0], &[2, 2])?; // det = -6
/// let (sign, logabs) = linalg::slogdet(&a)?;
/// assert_eq!(sign.item()?, -1.0);
/// assert!((logabs.item()? - 6f64.ln()).abs() < 1e-15);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn slogdet(x: &impl AsTensor) -> Result<(Tensor, Tensor)> {
    let both = apply(&SLOGDET, &[&x.operand().into_tensor()], &Params::NONE)?;
    let r = both.rank();
    let pick = |k: isize| -> Result<Tensor> {
        let mut begin = vec![0isize; r];
        let mut end: Vec<isize> = both.shape().iter().map(|&d| d as isize).collect();
        begin[r - 1] = k;
        end[r - 1] = k + 1;
        let one = strided_slice(&both, &begin, &end, &vec![1; r])?;
        reshape_to(&one, &both.shape()[..r - 1])
    };
    Ok((pick(0)?, pick(1)?))
}

/// The determinant of each square matrix (`tf.linalg.det`): `sign · exp(log|det|)` of
/// [`slogdet`]; its gradient is `det · A⁻ᵀ`, as TensorFlow's.
///
/// # Errors
/// As [`slogdet`].
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![0.0f64, 2.0, 3.0, 1.0], &[2, 2])?;
/// assert!((linalg::det(&a)?.item()? + 6.0).abs() < 1e-12);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn det(x: &impl AsTensor) -> Result<Tensor> {
    let (sign, logabs) = slogdet(x)?;
    multiply(&sign, &exp(&logabs)?)
}

/// `[sign, log|det|]` stacked on a last axis of 2 (one primitive, one LU); only the second
/// part has a derivative: `g · A⁻ᵀ`, tangent `trace(A⁻¹ dA)`.
pub(crate) static SLOGDET: Primitive = Primitive {
    name: "slogdet",
    forward: |xs, _| slogdet_kernel(xs[0]),
    arity: 1,
    params: ParamsKind::None,
    derivative: Derivative::General {
        vjp: |saved, _, g, _| {
            let a = saved.a()?;
            let r = g.rank();
            let mut begin = vec![0isize; r];
            let end: Vec<isize> = g.shape().iter().map(|&d| d as isize).collect();
            begin[r - 1] = 1;
            let g_lad = strided_slice(g, &begin, &end, &vec![1; r])?; // [..., 1]
            let inv_t = inv(&matrix_transpose(a)?)?;
            Ok(vec![Some(multiply(&inv_t, &expand_dims(&g_lad, -1)?)?)])
        },
        jvp: |saved, _, t| {
            let Some(da) = &t[0] else { return Ok(None) };
            let a = saved.a()?;
            let d_lad = trace(&solve(a, da)?)?;
            let zero = multiply(&d_lad, &0.0)?;
            Ok(Some(stack(&[&zero, &d_lad], -1)?))
        },
    },
    batching: Batching::OneInput(|p, _| apply(&SLOGDET, &[p], &Params::NONE)),
    cuda: None,
    fused: None,
};

fn slogdet_kernel(x: &Tensor) -> Result<Tensor> {
    let op = "slogdet";
    let n = square(op, x)?;
    on_host(op, x)?;
    let mut shape = x.shape()[..x.rank() - 2].to_vec();
    shape.push(2);
    dispatch!(float op, x.dtype(), T => {
        let data = x.contiguous_data::<T>()?;
        let count = numel(&shape) / 2;
        let per = n * n;
        let mut out = vec![T::ZERO; 2 * count];
        let one = |lu: &mut LuScratch<T>, i: usize, o: &mut [T]| -> Result<()> {
            let (mut sign, mut logabs) = (1.0f64, 0.0f64);
            match lu.factor(&data[i * per..(i + 1) * per]) {
                Err(_) => {
                    sign = 0.0;
                    logabs = f64::NEG_INFINITY;
                }
                Ok(swaps) => {
                    if swaps % 2 == 1 {
                        sign = -sign;
                    }
                    for k in 0..n {
                        let d = lu.lu[k * n + k].to_f64();
                        if d < 0.0 {
                            sign = -sign;
                        }
                        logabs += d.abs().ln();
                    }
                    if logabs.is_nan() {
                        sign = f64::NAN;
                    }
                }
            }
            o[0] = T::from_f64(sign);
            o[1] = T::from_f64(logabs);
            Ok(())
        };
        per_matrix_with(&mut out, 2, || LuScratch::<T>::new(n, 0), one)?;
        Ok(Tensor::from_elems(out, &shape))
    })
}

/// The least-squares solution of `A X ≈ B` (TensorFlow's `tf.linalg.lstsq(matrix, rhs,
/// l2_regularizer, fast)`), minimizing `|A X - B|² + λ |X|²` with `λ = l2_regularizer`.
///
/// With `fast` (TensorFlow's default), the normal equations: `(AᵀA + λI)⁻¹ AᵀB` by Cholesky
/// when `A` (`[..., m, n]`) has at least as many rows as columns, `Aᵀ(AAᵀ + λI)⁻¹B` (the
/// minimum-norm solution) when it has fewer. This squares `A`'s condition number and fails
/// on a rank-deficient `A` without a regularizer. Without `fast`, the SVD: `X = V diag(s /
/// (s² + λ)) Uᵀ B`, the minimum-norm solution even for rank-deficient `A` (singular values
/// below [`pinv`](super::factors::pinv)'s cutoff count as zero when `λ = 0`), as robust as
/// TensorFlow's complete orthogonal decomposition and the same solution. Two differences
/// from TensorFlow there: it has a gradient (TensorFlow: "Gradient not defined for
/// fast=False"), and it applies `l2_regularizer` (TensorFlow's robust path ignores it).
///
/// Both are compositions of differentiable primitives, so their gradients are those
/// primitives'.
///
/// # Errors
/// When the shapes do not fit (`rhs` must be `[..., m, k]`), the dtypes differ or are not
/// float, `l2_regularizer` is negative or not finite, or, with `fast`, the normal matrix is not
/// positive definite (`A` rank-deficient without a regularizer).
///
/// ```
/// use gradtape::{linalg, Tensor};
/// // the line through (0, 1), (1, 3), (2, 5): y = 1 + 2x
/// let a = Tensor::from_vec(vec![1.0f64, 0.0, 1.0, 1.0, 1.0, 2.0], &[3, 2])?;
/// let y = Tensor::from_vec(vec![1.0f64, 3.0, 5.0], &[3, 1])?;
/// for fast in [true, false] {
///     let coef = linalg::lstsq(&a, &y, 0.0, fast)?.to_vec::<f64>()?;
///     assert!((coef[0] - 1.0).abs() < 1e-12 && (coef[1] - 2.0).abs() < 1e-12);
/// }
/// // a repeated column: rank-deficient, so only the robust path answers
/// let twice = Tensor::from_vec(vec![1.0f64, 1.0, 2.0, 2.0, 3.0, 3.0], &[3, 2])?;
/// assert!(linalg::lstsq(&twice, &y, 0.0, true).is_err());
/// let coef = linalg::lstsq(&twice, &y, 0.0, false)?.to_vec::<f64>()?;
/// assert!((coef[0] - coef[1]).abs() < 1e-12); // the minimum-norm split
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn lstsq(
    matrix: &impl AsTensor,
    rhs: &impl AsTensor,
    l2_regularizer: f64,
    fast: bool,
) -> Result<Tensor> {
    let op = "lstsq";
    let (a, b) = (matrix.operand().into_tensor(), rhs.operand().into_tensor());
    let (m, n) = match a.shape() {
        [.., m, n] => (*m, *n),
        s => {
            return Err(Error::shape(
                op,
                format!("expected matrices [..., m, n], got shape {s:?}"),
            ))
        }
    };
    match b.shape() {
        [.., r, _] if *r == m => {}
        s => {
            return Err(Error::shape(
                op,
                format!(
                    "rhs must be [..., {m}, k] for a matrix of shape {:?}, got {s:?}",
                    a.shape()
                ),
            ))
        }
    }
    if !(l2_regularizer >= 0.0 && l2_regularizer.is_finite()) {
        return Err(Error::arg(
            op,
            format!("l2_regularizer must be finite and >= 0, got {l2_regularizer}"),
        ));
    }
    if !fast {
        if l2_regularizer == 0.0 {
            return matmul(&factors::pinv(&a, None)?, &b);
        }
        let (s, u, v) = factors::svd(&a, false)?;
        let shrink = super::divide(&s, &add(&super::square(&s)?, &l2_regularizer)?)?;
        let vs = multiply(&v, &expand_dims(&shrink, -2)?)?;
        return matmul(&vs, &matmul(&matrix_transpose(&u)?, &b)?);
    }
    let at = matrix_transpose(&a)?;
    let regularized = |g: Tensor, size: usize| -> Result<Tensor> {
        match l2_regularizer {
            0.0 => Ok(g),
            l => add(
                &g,
                &multiply(&Tensor::eye(size, a.dtype())?.move_to(a.device())?, &l)?,
            ),
        }
    };
    if m >= n {
        let gram = regularized(matmul(&at, &a)?, n)?;
        cholesky_solve(&cholesky(&gram)?, &matmul(&at, &b)?)
    } else {
        let gram = regularized(matmul(&a, &at)?, m)?;
        matmul(&at, &cholesky_solve(&cholesky(&gram)?, &b)?)
    }
}

/// Which norm [`norm`] takes: TensorFlow's `ord`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormOrd {
    /// `'euclidean'` (TensorFlow's default): the 2-norm of a vector, the Frobenius norm of a
    /// matrix.
    Euclidean,
    /// `'fro'`: the Frobenius norm (matrices) or the 2-norm (vectors).
    Fro,
    /// `1`: the sum of absolute values (vectors), the largest column sum (matrices).
    One,
    /// `np.inf`: the largest absolute value (vectors), the largest row sum (matrices).
    Inf,
    /// Any `p > 0` for vectors: `(Σ |x|ᵖ)^(1/p)`; `P(2.0)` for matrices: the spectral norm,
    /// the largest singular value.
    P(f64),
}

/// Which axes [`norm`] reduces: TensorFlow's `axis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormAxes {
    /// `None`: the whole tensor as one vector.
    All,
    /// One axis: a vector norm along it.
    Vector(isize),
    /// Two axes (rows, columns): a matrix norm.
    Matrix(isize, isize),
}

/// TensorFlow's `tf.norm(x, ord, axis, keepdims)`: vector norms over the whole tensor or one
/// axis, matrix norms (Frobenius, 1, ∞) over two. A composition of reductions, so its
/// gradient is theirs (NaN at zero for the 2-norm, as TensorFlow's; a tie for the largest
/// element or column shares the gradient).
///
/// # Errors
/// When an axis is out of range or the two matrix axes are one, `P` is not positive and
/// finite, or the order does not apply: of the `P` orders, matrices take only 2 (the
/// largest singular value, by [`svdvals`](super::factors::svdvals)), as in TensorFlow.
///
/// ```
/// use gradtape::{linalg::{self, NormAxes, NormOrd}, Tensor};
/// let x = Tensor::from_vec(vec![3.0f64, -4.0, 0.0, 1.0], &[2, 2])?;
/// assert_eq!(linalg::norm(&x, NormOrd::Euclidean, NormAxes::All, false)?.item()?, 26f64.sqrt());
/// assert_eq!(linalg::norm(&x, NormOrd::One, NormAxes::Vector(-1), false)?.to_vec::<f64>()?, vec![7.0, 1.0]);
/// // the largest column sum of absolute values: |−4| + |1|
/// assert_eq!(linalg::norm(&x, NormOrd::One, NormAxes::Matrix(-2, -1), false)?.item()?, 5.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn norm(x: &impl AsTensor, ord: NormOrd, axis: NormAxes, keepdims: bool) -> Result<Tensor> {
    let op = "norm";
    let x = x.operand().into_tensor();
    if let NormOrd::P(p) = ord {
        if !(p > 0.0 && p.is_finite()) {
            return Err(Error::arg(
                op,
                format!("ord p must be positive and finite, got {p}"),
            ));
        }
    }
    let rank = x.rank();
    let resolve = |a: isize| -> Result<usize> {
        let r = rank as isize;
        match if a < 0 { a + r } else { a } {
            b if (0..r).contains(&b) => Ok(b as usize),
            _ => Err(Error::axis(
                op,
                format!("axis {a} is out of range for shape {:?}", x.shape()),
            )),
        }
    };
    let abs = super::abs(&x)?;
    let sum_sq = |axes: crate::ops::Axes| -> Result<Tensor> {
        super::sqrt(&reduce_sum(&super::square(&x)?, axes, keepdims)?)
    };
    match axis {
        NormAxes::All | NormAxes::Vector(_) => {
            let axes = match axis {
                NormAxes::Vector(a) => crate::ops::Axes::List(vec![resolve(a)? as isize]),
                _ => crate::ops::Axes::All,
            };
            match ord {
                NormOrd::Euclidean | NormOrd::Fro => sum_sq(axes),
                NormOrd::One => reduce_sum(&abs, axes, keepdims),
                NormOrd::Inf => super::reduce_max(&abs, axes, keepdims),
                NormOrd::P(p) => {
                    let powered = reduce_sum(&super::pow(&abs, &p)?, axes, keepdims)?;
                    super::pow(&powered, &(1.0 / p))
                }
            }
        }
        NormAxes::Matrix(r, c) => {
            let (r, c) = (resolve(r)?, resolve(c)?);
            if r == c {
                return Err(Error::axis(
                    op,
                    format!("the two matrix axes must differ, got {r} twice"),
                ));
            }
            let both = crate::ops::Axes::List(vec![r.min(c) as isize, r.max(c) as isize]);
            // sum over one axis (kept), then the largest over the other
            let largest_sum = |summed: usize, over: usize| -> Result<Tensor> {
                let sums = reduce_sum(&abs, summed as isize, true)?;
                let top = super::reduce_max(&sums, over as isize, true)?;
                match keepdims {
                    true => Ok(top),
                    false => super::squeeze(&top, &[r.min(c) as isize, r.max(c) as isize]),
                }
            };
            match ord {
                NormOrd::Euclidean | NormOrd::Fro => sum_sq(both),
                NormOrd::One => largest_sum(r, c),
                NormOrd::Inf => largest_sum(c, r),
                // the largest singular value, of the two axes moved last (TensorFlow's way)
                NormOrd::P(2.0) => {
                    let mut perm: Vec<usize> = (0..rank).filter(|&a| a != r && a != c).collect();
                    perm.extend([r, c]);
                    let s = super::factors::svdvals(&transpose(&x, Some(&perm))?)?;
                    let top = super::reduce_max(&s, -1, false)?;
                    match keepdims {
                        true => expand_dims(&expand_dims(&top, r.min(c) as isize)?, r.max(c) as isize),
                        false => Ok(top),
                    }
                }
                NormOrd::P(p) => Err(Error::arg(
                    op,
                    format!("ord {p} is a vector norm; matrices take Euclidean, Fro, One, Inf or P(2.0)"),
                )),
            }
        }
    }
}
