//! The decompositions of `linalg` whose result is several factors: `eigh`/`eigvalsh`
//! (symmetric eigenproblems), `svd`/`svdvals` and `qr`, and `pinv`, composed from the SVD.
//! The kernels are faer's; the gradient rules are TensorFlow's (`linalg_grad.py`: Giles 2008,
//! Seeger et al. 2017, Walter and Lehmann 2018 for QR), the tangent rules JAX's, each written
//! beside its primitive in gradtape's own differentiable ops.
//!
//! A primitive has one output. These lay their factors side by side, each flattened, on one
//! last axis (`[..., size of all factors]`: [`pack`]), and the public function splits them
//! apart ([`unpack`]), so tapes, forward mode, `vmap` and `gradtape::function` handle them as
//! any one-output primitive; no transformation knows about several outputs. The gradient rule
//! gets the packed cotangent (zeros in the factors the caller did not use) and splits it the
//! same way. The price is one copy of the factors, O(n²) against the decomposition's O(n³).
//!
//! Degenerate spectra: where two eigenvalues (or two singular values) are equal, the
//! eigenvectors (singular vectors) are not unique and their derivative is unbounded. The rules
//! use TensorFlow's safe reciprocal `x / (x² + 1e-20)` for `1 / (λⱼ - λᵢ)`, which is 0 for
//! equal values: the gradient stays finite, as TensorFlow's does, and is exact for functions
//! that do not depend on the choice of vectors within the repeated space (the eigenvalues
//! themselves, `V f(Λ) Vᵀ` for a smooth `f`, the 2-norm).

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::linalg::householder;
use faer::linalg::qr::no_pivoting::factor::{
    qr_in_place, qr_in_place_scratch, recommended_block_size,
};
use faer::linalg::svd::{svd as faer_svd, svd_scratch, ComputeSvdVectors};
use faer::{ColMut, Conj, MatMut, MatRef, Par};

use super::apply;
use super::decomp::{
    band_part, diag, diag_part, lower_half_diagonal, mask, matrix_transpose, on_host, per_matrix,
    square as square_size, triangular_solve, PAR_ELEMS,
};
use super::{
    add, concat, divide, expand_dims, matmul, multiply, reciprocal, reduce_max, reshape_to, select,
    slice, split_sizes, square, subtract,
};
use crate::dtype::{dispatch, Num};
use crate::error::{Error, Result};
use crate::primitive::{Batching, Derivative, Params, ParamsKind, Primitive};
use crate::shape::numel;
use crate::tensor::{AsTensor, Tensor};

/// `factors` (each `lead` followed by its own dimensions) flattened and laid side by side on
/// one last axis: how these primitives return several results as one tensor.
fn pack(factors: &[Tensor], lead: &[usize]) -> Result<Tensor> {
    let flat = factors
        .iter()
        .map(|f| {
            let size = numel(&f.shape()[lead.len()..]);
            let shape: Vec<usize> = lead.iter().copied().chain([size]).collect();
            reshape_to(f, &shape)
        })
        .collect::<Result<Vec<_>>>()?;
    concat(&flat, -1)
}

/// The factors of a [`pack`]ed tensor, given their own shapes (after the leading ones).
fn unpack<const N: usize>(packed: &Tensor, shapes: [&[usize]; N]) -> Result<[Tensor; N]> {
    let lead = &packed.shape()[..packed.rank() - 1];
    let parts = split_sizes(packed, &shapes.map(numel), -1)?;
    let mut out = Vec::with_capacity(N);
    for (p, s) in parts.iter().zip(shapes) {
        let shape: Vec<usize> = lead.iter().chain(s).copied().collect();
        out.push(reshape_to(p, &shape)?);
    }
    out.try_into()
        .map_err(|_| Error::arg("unpack", "one part per shape"))
}

/// The `[m, n]` of the matrices in `x` (rank 2 or more).
fn matrix_size(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    match x.shape() {
        [.., m, n] => Ok((*m, *n)),
        s => Err(Error::shape(
            op,
            format!("expected matrices [..., m, n], got shape {s:?}"),
        )),
    }
}

/// `x` with the last axis' elements `start..start + len` kept.
fn columns(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    let r = x.rank();
    let mut begin = vec![0; r];
    let mut size = vec![-1isize; r];
    begin[r - 1] = start;
    size[r - 1] = len as isize;
    slice(x, &begin, &size)
}

/// TensorFlow's `_SafeReciprocal`: `1 / x`, but 0 at 0, so that equal eigenvalues or
/// singular values give a finite gradient.
fn safe_reciprocal(x: &Tensor) -> Result<Tensor> {
    multiply(x, &reciprocal(&add(&square(x)?, &1e-20)?)?)
}

/// `[i, j] = 1 / (dⱼ - dᵢ)` (0 where they are equal), from `d` (`[..., k]`). The diagonal is
/// selected away rather than left to the safe reciprocal: its derivative at 0 is 1e20, and the
/// two such terms that cancel in a second derivative would swamp it.
fn inverse_gaps(d: &Tensor) -> Result<Tensor> {
    let k = d.shape()[d.rank() - 1];
    let gaps = safe_reciprocal(&subtract(&expand_dims(d, -2)?, &expand_dims(d, -1)?)?)?;
    select(&mask((k, k), |i, j| i != j, d)?, &gaps, &0.0)
}

/// The symmetric matrix that an input read by its lower triangle stands for.
fn lower_symmetric(x: &Tensor) -> Result<Tensor> {
    let n = x.shape()[x.rank() - 1];
    let lower = mask((n, n), |i, j| i >= j, x)?;
    select(&lower, x, &matrix_transpose(x)?)
}

/// The error for a matrix faer's iteration did not converge on.
fn no_convergence(op: &'static str, b: usize, x: &Tensor) -> Error {
    Error::arg(
        op,
        format!(
            "matrix {b} of shape {:?}: the iteration did not converge",
            x.shape()
        ),
    )
}

/// An `Err` for a NaN or infinite element of matrix `b` (an iterative decomposition would
/// return garbage or never converge on one).
fn finite<T: Num>(op: &'static str, b: usize, x: &Tensor, a: &[T]) -> Result<()> {
    match a.iter().any(|v| !v.to_f64().is_finite()) {
        true => Err(Error::arg(
            op,
            format!(
                "matrix {b} of shape {:?} has a NaN or infinite element (TensorFlow returns \
                 NaN)",
                x.shape()
            ),
        )),
        false => Ok(()),
    }
}

fn par(elems: usize) -> Par {
    match elems >= PAR_ELEMS {
        true => Par::rayon(0),
        false => Par::Seq,
    }
}

/// Writes the identity into the `rows`×`cols` row-major `m` (zeros elsewhere).
fn identity<T: Num>(m: &mut [T], rows: usize, cols: usize) {
    m.fill(T::ZERO);
    for i in 0..rows.min(cols) {
        m[i * cols + i] = T::ONE;
    }
}

// ---- eigh ----------------------------------------------------------------------------------

/// The eigenvalues (ascending) and eigenvectors (columns) of symmetric matrices, read from
/// their lower triangle (TensorFlow's `tf.linalg.eigh`): `A = V diag(e) Vᵀ`.
///
/// Each eigenvector's sign is faer's choice, which may differ from TensorFlow's or NumPy's
/// (LAPACK's); functions of the decomposition that do not depend on it (`V f(e) Vᵀ`, `v ⊙ v`)
/// agree. The gradient is TensorFlow's, with respect to the lower triangle (the only part
/// read); at repeated eigenvalues it stays finite (see the module's notes).
///
/// # Errors
/// When the matrices are not square or not float, on a GPU, or when one has a NaN or
/// infinite element.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![2.0f64, 1.0, 1.0, 2.0], &[2, 2])?;
/// let (e, v) = linalg::eigh(&a)?;
/// let e = e.to_vec::<f64>()?;
/// assert!((e[0] - 1.0).abs() < 1e-12 && (e[1] - 3.0).abs() < 1e-12);
/// assert_eq!(v.shape(), &[2, 2]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn eigh(x: &impl AsTensor) -> Result<(Tensor, Tensor)> {
    let x = x.operand().into_tensor();
    let n = square_size("eigh", &x)?;
    let packed = apply(&EIGH, &[&x], &Params::NONE)?;
    let [e, v] = unpack(&packed, [&[n], &[n, n]])?;
    Ok((e, v))
}

/// The eigenvalues (ascending) of symmetric matrices, read from their lower triangle
/// (TensorFlow's `tf.linalg.eigvalsh`): faster than [`eigh`], which also computes the
/// vectors. Its gradient `V diag(ḡ) Vᵀ` computes them.
///
/// # Errors
/// As [`eigh`].
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![2.0f64, 0.0, 0.0, -1.0], &[2, 2])?;
/// assert_eq!(linalg::eigvalsh(&a)?.to_vec::<f64>()?, vec![-1.0, 2.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn eigvalsh(x: &impl AsTensor) -> Result<Tensor> {
    apply(&EIGVALSH, &[&x.operand().into_tensor()], &Params::NONE)
}

/// `[e, V]` packed; TensorFlow's gradient, JAX's tangent.
pub(crate) static EIGH: Primitive = Primitive {
    name: "eigh",
    forward: |xs, _| eigh_kernel(xs[0], true),
    arity: 1,
    params: ParamsKind::None,
    derivative: Derivative::General {
        vjp: |saved, _, g, _| {
            let n = square_size("eigh", saved.a()?)?;
            let [e, v] = unpack(saved.out()?, [&[n], &[n, n]])?;
            let [ge, gv] = unpack(g, [&[n], &[n, n]])?;
            Ok(vec![Some(eigh_vjp(&e, &v, &ge, Some(&gv))?)])
        },
        jvp: |saved, _, t| {
            let Some(da) = &t[0] else { return Ok(None) };
            let a = saved.a()?;
            let n = square_size("eigh", a)?;
            let [e, v] = unpack(saved.out()?, [&[n], &[n, n]])?;
            // Vᵀ dA V: its diagonal is de, the rest turns the vectors
            let p = in_eigenbasis(&v, da)?;
            let dv = matmul(&v, &multiply(&inverse_gaps(&e)?, &p)?)?;
            pack(&[diag_part(&p, 0)?, dv], &a.shape()[..a.rank() - 2]).map(Some)
        },
    },
    batching: Batching::OneInput(|p, _| apply(&EIGH, &[p], &Params::NONE)),
    cuda: None,
    fused: None,
};

/// The eigenvalues alone; the rules compute the vectors.
pub(crate) static EIGVALSH: Primitive = Primitive {
    name: "eigvalsh",
    forward: |xs, _| eigh_kernel(xs[0], false),
    arity: 1,
    params: ParamsKind::None,
    derivative: Derivative::General {
        vjp: |saved, _, g, _| {
            let (e, v) = eigh(saved.a()?)?;
            Ok(vec![Some(eigh_vjp(&e, &v, g, None)?)])
        },
        jvp: |saved, _, t| {
            let Some(da) = &t[0] else { return Ok(None) };
            let (_, v) = eigh(saved.a()?)?;
            diag_part(&in_eigenbasis(&v, da)?, 0).map(Some)
        },
    },
    batching: Batching::OneInput(|p, _| apply(&EIGVALSH, &[p], &Params::NONE)),
    cuda: None,
    fused: None,
};

/// `Vᵀ dA V` for the symmetric change that `da` stands for (read from its lower triangle, as
/// the forward reads `A`).
fn in_eigenbasis(v: &Tensor, da: &Tensor) -> Result<Tensor> {
    matmul(&matmul(&matrix_transpose(v)?, &lower_symmetric(da)?)?, v)
}

/// TensorFlow's `_SelfAdjointEigV2Grad`: `V (diag(ē) + F ⊙ Vᵀ V̄) Vᵀ`, then onto the lower
/// triangle that the forward read (off-diagonal terms doubled, as each stands for two).
fn eigh_vjp(e: &Tensor, v: &Tensor, ge: &Tensor, gv: Option<&Tensor>) -> Result<Tensor> {
    let mut inner = diag(ge, 0)?;
    if let Some(gv) = gv {
        let turn = multiply(&inverse_gaps(e)?, &matmul(&matrix_transpose(v)?, gv)?)?;
        inner = add(&inner, &turn)?;
    }
    let grad = matmul(&matmul(v, &inner)?, &matrix_transpose(v)?)?;
    lower_half_diagonal(&add(&grad, &matrix_transpose(&grad)?)?)
}

fn eigh_kernel(x: &Tensor, vectors: bool) -> Result<Tensor> {
    let op = if vectors { "eigh" } else { "eigvalsh" };
    let n = square_size(op, x)?;
    on_host(op, x)?;
    let per_out = if vectors { n + n * n } else { n };
    let mut shape = x.shape()[..x.rank() - 2].to_vec();
    shape.push(per_out);
    dispatch!(float op, x.dtype(), T => {
        let data = x.contiguous_data::<T>()?;
        let mut out = vec![T::ZERO; numel(&shape)];
        per_matrix(&mut out, per_out, |b, o| {
            let a = &data[b * n * n..(b + 1) * n * n];
            finite(op, b, x, a)?;
            let par = par(n * n);
            let compute = match vectors {
                true => ComputeEigenvectors::Yes,
                false => ComputeEigenvectors::No,
            };
            let mut mem = MemBuffer::new(self_adjoint_evd_scratch::<T>(n, compute, par, Default::default()));
            let (e, v) = o.split_at_mut(n);
            let v = vectors.then(|| MatMut::from_row_major_slice_mut(v, n, n));
            // faer reads the lower triangle, as TensorFlow's kernel does
            self_adjoint_evd(
                MatRef::from_row_major_slice(a, n, n),
                ColMut::from_slice_mut(e).as_diagonal_mut(),
                v,
                par,
                MemStack::new(&mut mem),
                Default::default(),
            )
            .map_err(|_| no_convergence(op, b, x))
        })?;
        Ok(Tensor::from_elems(out, &shape))
    })
}

// ---- svd -----------------------------------------------------------------------------------

/// The singular value decomposition `A = U diag(s) Vᵀ` of `[..., m, n]` matrices, as
/// TensorFlow's `tf.linalg.svd(a, full_matrices)` returns it: `(s, u, v)`, singular values
/// descending, `V` itself (not `Vᵀ`). With `full_matrices` false, `U` is `m×k` and `V` `n×k`
/// (`k = min(m, n)`); with true, `m×m` and `n×n`. For the values alone, [`svdvals`].
///
/// Each pair of singular vectors has faer's sign, which may differ from TensorFlow's;
/// functions that do not depend on it (`U Vᵀ`, `u ⊙ u`, the values) agree. The gradient is
/// TensorFlow's (finite at repeated or zero singular values: see the module's notes), the
/// tangent JAX's.
///
/// # Errors
/// When `x` has rank below 2 or is not float, on a GPU, when a matrix has a NaN or infinite
/// element, and for the derivative of full matrices where it is not defined (TensorFlow's
/// and JAX's limits: a gradient only when `|m - n| ≤ 1`, a tangent only when `m = n`).
///
/// ```
/// use gradtape::{linalg, ops, Tensor};
/// let a = Tensor::from_vec(vec![3.0f64, 0.0, 0.0, 0.0, -2.0, 0.0], &[2, 3])?;
/// let (s, u, v) = linalg::svd(&a, false)?;
/// assert_eq!(s.to_vec::<f64>()?, vec![3.0, 2.0]);
/// assert_eq!((u.shape(), v.shape()), (&[2, 2][..], &[3, 2][..]));
/// let back = ops::matmul(&ops::multiply(&u, &s)?, &linalg::matrix_transpose(&v)?)?;
/// for (x, y) in back.to_vec::<f64>()?.iter().zip(a.to_vec::<f64>()?) {
///     assert!((x - y).abs() < 1e-12);
/// }
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn svd(x: &impl AsTensor, full_matrices: bool) -> Result<(Tensor, Tensor, Tensor)> {
    let x = x.operand().into_tensor();
    let (m, n) = matrix_size("svd", &x)?;
    let packed = apply(&SVD, &[&x], &Params::full_matrices(full_matrices))?;
    let [s, u, v] = svd_factors(&packed, m, n, full_matrices)?;
    Ok((s, u, v))
}

/// The singular values (descending) of `[..., m, n]` matrices: TensorFlow's
/// `tf.linalg.svd(a, compute_uv=False)` (NumPy's, JAX's and PyTorch's `svdvals`), faster than
/// [`svd`]. Its gradient `U diag(ḡ) Vᵀ` computes the vectors.
///
/// # Errors
/// As [`svd`].
///
/// ```
/// use gradtape::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![0.0f32, 2.0, -5.0, 0.0], &[2, 2])?;
/// assert_eq!(linalg::svdvals(&a)?.to_vec::<f32>()?, vec![5.0, 2.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn svdvals(x: &impl AsTensor) -> Result<Tensor> {
    apply(&SVDVALS, &[&x.operand().into_tensor()], &Params::NONE)
}

/// The shapes of `s`, `U` and `V` for `m×n` matrices.
fn svd_factors(packed: &Tensor, m: usize, n: usize, full: bool) -> Result<[Tensor; 3]> {
    let k = m.min(n);
    let (mu, nv) = if full { (m, n) } else { (k, k) };
    unpack(packed, [&[k], &[m, mu], &[n, nv]])
}

/// `[s, U, V]` packed; TensorFlow's gradient, JAX's tangent.
pub(crate) static SVD: Primitive = Primitive {
    name: "svd",
    forward: |xs, params| svd_kernel(xs[0], Some(params.as_full_matrices("svd")?)),
    arity: 1,
    params: ParamsKind::FullMatrices,
    derivative: Derivative::General {
        vjp: |saved, params, g, _| {
            let full = params.as_full_matrices("svd")?;
            let (m, n) = matrix_size("svd", saved.a()?)?;
            let [s, u, v] = svd_factors(saved.out()?, m, n, full)?;
            let [gs, gu, gv] = svd_factors(g, m, n, full)?;
            Ok(vec![Some(svd_vjp(&s, [u, v], &gs, Some([gu, gv]), full)?)])
        },
        jvp: |saved, params, t| {
            let Some(da) = &t[0] else { return Ok(None) };
            let full = params.as_full_matrices("svd")?;
            let a = saved.a()?;
            let (m, n) = matrix_size("svd", a)?;
            if full && m != n {
                return Err(Error::arg(
                    "svd",
                    format!(
                        "forward mode through full_matrices = true of {m}x{n} matrices is not \
                         defined (the extra vectors are not unique; JAX has no such rule \
                         either); use full_matrices = false"
                    ),
                ));
            }
            let [s, u, v] = svd_factors(saved.out()?, m, n, full)?;
            let ds = matmul(&matmul(&matrix_transpose(&u)?, da)?, &v)?; // Uᵀ dA V
            let gaps = inverse_gaps(&square(&s)?)?;
            let (s_row, s_col) = (expand_dims(&s, -2)?, expand_dims(&s, -1)?);
            let sym = |x: Tensor| -> Result<Tensor> {
                multiply(&gaps, &add(&x, &matrix_transpose(&x)?)?)
            };
            let mut du = matmul(&u, &sym(multiply(&ds, &s_row)?)?)?;
            let mut dv = matmul(&v, &sym(multiply(&s_col, &ds)?)?)?;
            let s_inv = expand_dims(&safe_reciprocal(&s)?, -2)?;
            // the parts outside the span of the other side's vectors
            let outside = |w: &Tensor, x: Tensor| -> Result<Tensor> {
                let off = subtract(&x, &matmul(w, &matmul(&matrix_transpose(w)?, &x)?)?)?;
                multiply(&off, &s_inv)
            };
            if m > n {
                du = add(&du, &outside(&u, matmul(da, &v)?)?)?;
            }
            if n > m {
                dv = add(&dv, &outside(&v, matmul(&matrix_transpose(da)?, &u)?)?)?;
            }
            pack(&[diag_part(&ds, 0)?, du, dv], &a.shape()[..a.rank() - 2]).map(Some)
        },
    },
    batching: Batching::OneInput(|p, params| apply(&SVD, &[p], params)),
    cuda: None,
    fused: None,
};

/// The singular values alone; the rules compute the vectors.
pub(crate) static SVDVALS: Primitive = Primitive {
    name: "svdvals",
    forward: |xs, _| svd_kernel(xs[0], None),
    arity: 1,
    params: ParamsKind::None,
    derivative: Derivative::General {
        vjp: |saved, _, g, _| {
            let (s, u, v) = svd(saved.a()?, false)?;
            Ok(vec![Some(svd_vjp(&s, [u, v], g, None, false)?)])
        },
        jvp: |saved, _, t| {
            let Some(da) = &t[0] else { return Ok(None) };
            let (_, u, v) = svd(saved.a()?, false)?;
            diag_part(&matmul(&matmul(&matrix_transpose(&u)?, da)?, &v)?, 0).map(Some)
        },
    },
    batching: Batching::OneInput(|p, _| apply(&SVDVALS, &[p], &Params::NONE)),
    cuda: None,
    fused: None,
};

/// TensorFlow's `_SvdGrad` for real matrices: worked for `m ≤ n` (a tall matrix through its
/// transpose, `Aᵀ = V S Uᵀ`), `term1` from the square part and `term2` from the directions
/// outside `U`'s span.
fn svd_vjp(
    s: &Tensor,
    [u, v]: [Tensor; 2],
    gs: &Tensor,
    guv: Option<[Tensor; 2]>,
    full: bool,
) -> Result<Tensor> {
    let (mut m, mut n) = (u.shape()[u.rank() - 2], v.shape()[v.rank() - 2]);
    let adjoint = m > n;
    let (u, v, guv) = match adjoint {
        true => {
            std::mem::swap(&mut m, &mut n);
            (v, u, guv.map(|[gu, gv]| [gv, gu]))
        }
        false => (u, v, guv),
    };
    if full && n - m > 1 && guv.is_some() {
        return Err(Error::arg(
            "svd",
            format!(
                "the gradient of full_matrices = true for {}x{} matrices is not defined (the \
                 extra vectors are not unique; TensorFlow: not implemented when |m - n| > 1); \
                 use full_matrices = false",
                if adjoint { n } else { m },
                if adjoint { m } else { n },
            ),
        ));
    }
    let v1 = columns(&v, 0, m)?;
    let (s_row, s_col) = (expand_dims(s, -2)?, expand_dims(s, -1)?);
    let mut inner = diag(gs, 0)?;
    let mut term2 = None;
    if let Some([gu, gv]) = &guv {
        let gaps = inverse_gaps(&square(s)?)?;
        let gv1 = columns(gv, 0, m)?;
        let f_u = multiply(&gaps, &matmul(&matrix_transpose(&u)?, gu)?)?;
        let f_v = multiply(&gaps, &matmul(&matrix_transpose(&v1)?, &gv1)?)?;
        let sym = |x: &Tensor| add(x, &matrix_transpose(x)?);
        inner = add(&inner, &multiply(&sym(&f_u)?, &s_row)?)?;
        inner = add(&inner, &multiply(&s_col, &sym(&f_v)?)?)?;
        if m < n {
            let gv1t = matrix_transpose(&gv1)?;
            let mut nous = subtract(
                &gv1t,
                &matmul(&matmul(&gv1t, &v1)?, &matrix_transpose(&v1)?)?,
            )?;
            if full {
                let (v2, gv2) = (columns(&v, m, n - m)?, columns(gv, m, n - m)?);
                let v1t_gv2 = matmul(&matrix_transpose(&v1)?, &gv2)?;
                nous = subtract(&nous, &matmul(&v1t_gv2, &matrix_transpose(&v2)?)?)?;
            }
            let u_s_inv = multiply(&u, &expand_dims(&safe_reciprocal(s)?, -2)?)?;
            term2 = Some(matmul(&u_s_inv, &nous)?);
        }
    }
    let mut grad = matmul(&matmul(&u, &inner)?, &matrix_transpose(&v1)?)?;
    if let Some(t) = term2 {
        grad = add(&grad, &t)?;
    }
    match adjoint {
        true => matrix_transpose(&grad),
        false => Ok(grad),
    }
}

/// `vectors`: `None` for the values alone, `Some(full_matrices)` for the vectors too.
fn svd_kernel(x: &Tensor, vectors: Option<bool>) -> Result<Tensor> {
    let op = if vectors.is_some() { "svd" } else { "svdvals" };
    let (m, n) = matrix_size(op, x)?;
    on_host(op, x)?;
    let k = m.min(n);
    let (mu, nv) = match vectors {
        Some(true) => (m, n),
        Some(false) => (k, k),
        None => (0, 0),
    };
    let per_out = k + m * mu + n * nv;
    let mut shape = x.shape()[..x.rank() - 2].to_vec();
    shape.push(per_out);
    let compute = match vectors {
        Some(true) => ComputeSvdVectors::Full,
        Some(false) => ComputeSvdVectors::Thin,
        None => ComputeSvdVectors::No,
    };
    dispatch!(float op, x.dtype(), T => {
        let data = x.contiguous_data::<T>()?;
        let mut out = vec![T::ZERO; numel(&shape)];
        per_matrix(&mut out, per_out, |b, o| {
            let a = &data[b * m * n..(b + 1) * m * n];
            finite(op, b, x, a)?;
            let (s, rest) = o.split_at_mut(k);
            let (u, v) = rest.split_at_mut(m * mu);
            if k == 0 {
                // no values; full vectors of an empty side are the identity
                identity(u, m, mu);
                identity(v, n, nv);
                return Ok(());
            }
            let par = par(m * n);
            let mut mem = MemBuffer::new(svd_scratch::<T>(m, n, compute, compute, par, Default::default()));
            let (u, v) = match vectors {
                Some(_) => (
                    Some(MatMut::from_row_major_slice_mut(u, m, mu)),
                    Some(MatMut::from_row_major_slice_mut(v, n, nv)),
                ),
                None => (None, None),
            };
            faer_svd(
                MatRef::from_row_major_slice(a, m, n),
                ColMut::from_slice_mut(s).as_diagonal_mut(),
                u,
                v,
                par,
                MemStack::new(&mut mem),
                Default::default(),
            )
            .map_err(|_| no_convergence(op, b, x))
        })?;
        Ok(Tensor::from_elems(out, &shape))
    })
}

// ---- qr ------------------------------------------------------------------------------------

/// The QR decomposition `A = Q R` of `[..., m, n]` matrices (TensorFlow's
/// `tf.linalg.qr(a, full_matrices)`), by Householder reflections: `Q` has orthonormal columns
/// (`m×k`, or `m×m` with `full_matrices`), `R` is upper triangular (`k×n`, or `m×n`).
///
/// `R`'s diagonal may be negative (as LAPACK's and TensorFlow's may); multiplying a column of
/// `Q` and the row of `R` by -1 gives the other valid factorization. The gradient is
/// TensorFlow's, the tangent JAX's (extended to wide matrices by TensorFlow's split `A = [X,
/// Y]`).
///
/// # Errors
/// When `x` has rank below 2 or is not float, on a GPU, and for the derivative of
/// `full_matrices` with `m > n` (`Q`'s extra columns are not unique; TensorFlow and JAX
/// have no rule either).
///
/// ```
/// use gradtape::{linalg, ops, Tensor};
/// let a = Tensor::from_vec(vec![3.0f64, 1.0, 4.0, 2.0, 0.0, 5.0], &[3, 2])?;
/// let (q, r) = linalg::qr(&a, false)?;
/// assert_eq!((q.shape(), r.shape()), (&[3, 2][..], &[2, 2][..]));
/// for (x, y) in ops::matmul(&q, &r)?.to_vec::<f64>()?.iter().zip(a.to_vec::<f64>()?) {
///     assert!((x - y).abs() < 1e-12);
/// }
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn qr(x: &impl AsTensor, full_matrices: bool) -> Result<(Tensor, Tensor)> {
    let x = x.operand().into_tensor();
    let (m, n) = matrix_size("qr", &x)?;
    let packed = apply(&QR, &[&x], &Params::full_matrices(full_matrices))?;
    let [q, r] = qr_factors(&packed, m, n, full_matrices)?;
    Ok((q, r))
}

fn qr_factors(packed: &Tensor, m: usize, n: usize, full: bool) -> Result<[Tensor; 2]> {
    let mq = if full { m } else { m.min(n) };
    unpack(packed, [&[m, mq], &[mq, n]])
}

/// `[Q, R]` packed.
pub(crate) static QR: Primitive = Primitive {
    name: "qr",
    forward: |xs, params| qr_kernel(xs[0], params.as_full_matrices("qr")?),
    arity: 1,
    params: ParamsKind::FullMatrices,
    derivative: Derivative::General {
        vjp: |saved, params, g, _| {
            let a = saved.a()?;
            let (m, n) = qr_differentiable(a, params)?;
            let full = params.as_full_matrices("qr")?;
            let [q, r] = qr_factors(saved.out()?, m, n, full)?;
            let [gq, gr] = qr_factors(g, m, n, full)?;
            if m >= n {
                return Ok(vec![Some(qr_vjp_deep(&q, &r, &gq, &gr)?)]);
            }
            // A = [X, Y] with X square: R = [U, Qᵀ Y]
            let y = columns(a, m, n - m)?;
            let u = columns(&r, 0, m)?;
            let (gu, gv) = (columns(&gr, 0, m)?, columns(&gr, m, n - m)?);
            let gy = matmul(&q, &gv)?;
            let gq = add(&gq, &matmul(&y, &matrix_transpose(&gv)?)?)?;
            let gx = qr_vjp_deep(&q, &u, &gq, &gu)?;
            Ok(vec![Some(concat(&[gx, gy], -1)?)])
        },
        jvp: |saved, params, t| {
            let Some(da) = &t[0] else { return Ok(None) };
            let a = saved.a()?;
            let (m, n) = qr_differentiable(a, params)?;
            let full = params.as_full_matrices("qr")?;
            let [q, r] = qr_factors(saved.out()?, m, n, full)?;
            let lead = &a.shape()[..a.rank() - 2];
            if m >= n {
                let (dq, dr) = qr_jvp_deep(&q, &r, da)?;
                return pack(&[dq, dr], lead).map(Some);
            }
            let (y, u) = (columns(a, m, n - m)?, columns(&r, 0, m)?);
            let (dx, dy) = (columns(da, 0, m)?, columns(da, m, n - m)?);
            let (dq, du) = qr_jvp_deep(&q, &u, &dx)?;
            let dv = add(
                &matmul(&matrix_transpose(&dq)?, &y)?,
                &matmul(&matrix_transpose(&q)?, &dy)?,
            )?;
            pack(&[dq, concat(&[du, dv], -1)?], lead).map(Some)
        },
    },
    batching: Batching::OneInput(|p, params| apply(&QR, &[p], params)),
    cuda: None,
    fused: None,
};

/// `(m, n)`, or the error for the one case without a derivative.
fn qr_differentiable(a: &Tensor, params: &Params) -> Result<(usize, usize)> {
    let (m, n) = matrix_size("qr", a)?;
    match params.as_full_matrices("qr")? && m > n {
        true => Err(Error::arg(
            "qr",
            format!(
                "the derivative of full_matrices = true for {m}x{n} matrices (m > n) is not \
                 defined: Q's last {} columns are not unique (TensorFlow and JAX: not \
                 implemented); use full_matrices = false",
                m - n
            ),
        )),
        false => Ok((m, n)),
    }
}

/// `x R⁻ᵀ` for upper-triangular `R`.
fn times_r_inv_t(x: &Tensor, r: &Tensor) -> Result<Tensor> {
    matrix_transpose(&triangular_solve(r, &matrix_transpose(x)?, false, false)?)
}

/// TensorFlow's `_QrGradSquareAndDeepMatrices` (`m ≥ n`).
fn qr_vjp_deep(q: &Tensor, r: &Tensor, gq: &Tensor, gr: &Tensor) -> Result<Tensor> {
    let skew = |x: Tensor| subtract(&x, &matrix_transpose(&x)?);
    let qdq = matmul(&matrix_transpose(q)?, gq)?;
    let rdr = matmul(r, &matrix_transpose(gr)?)?;
    let tril = band_part(&add(&skew(qdq.clone())?, &skew(rdr)?)?, -1, 0)?;
    let grad_a = matmul(q, &add(gr, &times_r_inv_t(&tril, r)?)?)?;
    let grad_b = times_r_inv_t(&subtract(gq, &matmul(q, &qdq)?)?, r)?;
    add(&grad_a, &grad_b)
}

/// JAX's `qr_jvp_rule` (`m ≥ n`): `dQ = Q (dΩ - Qᵀ dA R⁻¹) + dA R⁻¹`, `dR = (Qᵀ dA R⁻¹ - dΩ) R`
/// with `dΩ` the skew part of `Qᵀ dA R⁻¹`'s strict lower triangle.
fn qr_jvp_deep(q: &Tensor, r: &Tensor, da: &Tensor) -> Result<(Tensor, Tensor)> {
    // dA R⁻¹ = (R⁻ᵀ dAᵀ)ᵀ
    let da_rinv = matrix_transpose(&triangular_solve(r, &matrix_transpose(da)?, false, true)?)?;
    let qt = matmul(&matrix_transpose(q)?, &da_rinv)?;
    let n = qt.shape()[qt.rank() - 1];
    let low = select(&mask((n, n), |i, j| i > j, &qt)?, &qt, &0.0)?;
    let omega = subtract(&low, &matrix_transpose(&low)?)?;
    let dq = add(&matmul(q, &subtract(&omega, &qt)?)?, &da_rinv)?;
    let dr = matmul(&subtract(&qt, &omega)?, r)?;
    Ok((dq, dr))
}

fn qr_kernel(x: &Tensor, full: bool) -> Result<Tensor> {
    let op = "qr";
    let (m, n) = matrix_size(op, x)?;
    on_host(op, x)?;
    let k = m.min(n);
    let mq = if full { m } else { k };
    let per_out = m * mq + mq * n;
    let mut shape = x.shape()[..x.rank() - 2].to_vec();
    shape.push(per_out);
    dispatch!(float op, x.dtype(), T => {
        let data = x.contiguous_data::<T>()?;
        let mut out = vec![T::ZERO; numel(&shape)];
        per_matrix(&mut out, per_out, |b, o| {
            let (q, r) = o.split_at_mut(m * mq);
            identity(q, m, mq);
            if k == 0 {
                return Ok(());
            }
            let mut a = data[b * m * n..(b + 1) * m * n].to_vec();
            let par = par(m * n);
            let bs = recommended_block_size::<T>(m, n);
            let mut coeff = vec![T::ZERO; bs * k];
            let mut mem = MemBuffer::new(StackReq::any_of(&[
                qr_in_place_scratch::<T>(m, n, bs, par, Default::default()),
                householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<T>(m, bs, mq),
            ]));
            qr_in_place(
                MatMut::from_row_major_slice_mut(&mut a, m, n),
                MatMut::from_row_major_slice_mut(&mut coeff, bs, k),
                par,
                MemStack::new(&mut mem),
                Default::default(),
            );
            // R: the upper trapezoid (rows past k, with full matrices, stay zero)
            for i in 0..k {
                r[i * n + i..(i + 1) * n].copy_from_slice(&a[i * n + i..(i + 1) * n]);
            }
            // the reflectors: below the diagonal of the first k columns, unit diagonal
            let mut basis = vec![T::ZERO; m * k];
            for i in 0..m {
                for j in 0..k.min(i + 1) {
                    basis[i * k + j] = if i == j { T::ONE } else { a[i * n + j] };
                }
            }
            // Q: the reflectors applied to the identity's first mq columns
            householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
                MatRef::from_row_major_slice(&basis, m, k),
                MatRef::from_row_major_slice(&coeff, bs, k),
                Conj::No,
                MatMut::from_row_major_slice_mut(q, m, mq),
                par,
                MemStack::new(&mut mem),
            );
            Ok(())
        })?;
        Ok(Tensor::from_elems(out, &shape))
    })
}

// ---- compositions --------------------------------------------------------------------------

/// The Moore-Penrose pseudo-inverse of `[..., m, n]` matrices (TensorFlow's
/// `tf.linalg.pinv(a, rcond)`), from the SVD: singular values at or below `rcond` times the
/// largest count as zero (TensorFlow's way, saturating them to infinity, so that their
/// gradient is 0, not NaN). `rcond` defaults to `10 · max(m, n) · ε` of the dtype.
///
/// # Errors
/// As [`svd`]; and when `rcond` is negative or not finite.
///
/// ```
/// use gradtape::{linalg, Tensor};
/// // a rank-1 matrix: its pseudo-inverse is Aᵀ / |A|²
/// let a = Tensor::from_vec(vec![1.0f64, 2.0, 2.0, 4.0], &[2, 2])?;
/// let p = linalg::pinv(&a, None)?.to_vec::<f64>()?;
/// for (x, y) in p.iter().zip([0.04, 0.08, 0.08, 0.16]) {
///     assert!((x - y).abs() < 1e-12);
/// }
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn pinv(x: &impl AsTensor, rcond: Option<f64>) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    let (m, n) = matrix_size("pinv", &x)?;
    let eps = match x.dtype() {
        crate::DType::F32 => f32::EPSILON as f64,
        _ => f64::EPSILON,
    };
    let rcond = rcond.unwrap_or(10.0 * m.max(n) as f64 * eps);
    if !(rcond >= 0.0 && rcond.is_finite()) {
        return Err(Error::arg(
            "pinv",
            format!("rcond must be finite and >= 0, got {rcond}"),
        ));
    }
    let (s, u, v) = svd(&x, false)?;
    if s.shape().last() == Some(&0) {
        // an empty matrix: its pseudo-inverse is the empty transpose
        return matrix_transpose(&x);
    }
    let cutoff = multiply(&reduce_max(&s, -1, true)?, &rcond)?;
    let big = super::greater(&s, &cutoff)?;
    let s = select(&big, &s, &f64::INFINITY)?;
    let scaled = divide(&v, &expand_dims(&s, -2)?)?;
    matmul(&scaled, &matrix_transpose(&u)?)
}
