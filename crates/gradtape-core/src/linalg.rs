//! TensorFlow's `tf.linalg`: decompositions and solves with gradients, tangents and batching
//! rules (Cholesky, triangular, LU and Cholesky solves, determinants, symmetric
//! eigendecompositions, SVD, QR, pseudo-inverses, least squares, norms), the matrix helpers
//! around them, and the products `tf.linalg` also holds (`matmul`, `matvec`, `einsum`,
//! `tensordot`, the same functions as in [`crate::ops`]). Leading dimensions are batch
//! dimensions; float32 and float64. The kernels are faer's, behind the cargo feature
//! `linalg` (off by default: faer doubles a clean build).
//!
//! A Gaussian-process marginal likelihood term, `yᵀ K⁻¹ y + log det K`, and its gradient:
//!
//! ```
//! use gradtape::{linalg, ops, Axes, GradientTape, Tensor};
//! let k = Tensor::from_vec(vec![2.0f64, 0.5, 0.5, 1.0], &[2, 2])?;
//! let y = Tensor::from_vec(vec![1.0f64, -1.0], &[2, 1])?;
//! let tape = GradientTape::new();
//! tape.watch(&k);
//! let l = linalg::cholesky(&k)?;
//! let alpha = linalg::cholesky_solve(&l, &y)?;
//! let fit = ops::reduce_sum(&ops::multiply(&y, &alpha)?, Axes::All, false)?;
//! let nll = ops::add(&fit, &linalg::logdet(&k)?)?;
//! let g = tape.gradient(&nll, &k)?.unwrap();
//! // d/dK = K⁻¹ - K⁻¹ y yᵀ K⁻¹
//! let kinv = linalg::cholesky_solve(&l, &Tensor::eye(2, gradtape::DType::F64)?)?;
//! let a = ops::matmul(&kinv, &y)?;
//! let want = ops::subtract(&kinv, &ops::matmul(&a, &linalg::matrix_transpose(&a)?)?)?;
//! for (g, w) in g.to_vec::<f64>()?.iter().zip(want.to_vec::<f64>()?) {
//!     assert!((g - w).abs() < 1e-12);
//! }
//! # Ok::<(), gradtape::Error>(())
//! ```

pub use crate::ops::decomp::{
    band_part, cholesky, cholesky_solve, det, diag, diag_part, inv, logdet, lstsq,
    matrix_transpose, norm, set_diag, slogdet, solve, trace, triangular_solve, NormAxes, NormOrd,
};
pub use crate::ops::factors::{eigh, eigvalsh, pinv, qr, svd, svdvals};
pub use crate::ops::{einsum, matmul, matvec, tensordot};
