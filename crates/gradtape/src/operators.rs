//! `+ - * /` and unary `-` on tensors and variables, and short methods for the common ops.
//!
//! Operators return `Result<Tensor>`, so a shape or dtype error surfaces as an `Err` the caller
//! handles with `?`, never as a panic: `let y = (&(&b * &x)? + &a)?;`. A Rust number on either
//! side takes the tensor's dtype.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::error::Result;
use crate::ops::{self, Axes};
use crate::tensor::{AsTensor, Tensor};
use crate::variable::Variable;
use crate::DType;

macro_rules! binary_operator {
    ($Trait:ident, $method:ident, $f:path) => {
        impl<R: AsTensor> $Trait<R> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: R) -> Result<Tensor> {
                $f(self, &rhs)
            }
        }
        impl<R: AsTensor> $Trait<R> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: R) -> Result<Tensor> {
                $f(&self, &rhs)
            }
        }
        impl<R: AsTensor> $Trait<R> for &Variable {
            type Output = Result<Tensor>;
            fn $method(self, rhs: R) -> Result<Tensor> {
                $f(self, &rhs)
            }
        }
        impl $Trait<&Tensor> for f64 {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                $f(&self, rhs)
            }
        }
        impl $Trait<&Tensor> for f32 {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                $f(&self, rhs)
            }
        }
        impl $Trait<&Variable> for f64 {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Variable) -> Result<Tensor> {
                $f(&self, rhs)
            }
        }
    };
}

binary_operator!(Add, add, ops::add);
binary_operator!(Sub, sub, ops::subtract);
binary_operator!(Mul, mul, ops::multiply);
binary_operator!(Div, div, ops::divide);

impl Neg for &Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        ops::negative(self)
    }
}

impl Neg for Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        ops::negative(&self)
    }
}

macro_rules! unary_methods {
    ($($name:ident),*) => {$(
        #[doc = concat!("[`ops::", stringify!($name), "`] as a method.\n\n# Errors\nAs the op.")]
        pub fn $name(&self) -> Result<Tensor> {
            ops::$name(self)
        }
    )*};
}

/// Short methods for the common ops (each is the `ops` function of the same name).
///
/// ```
/// use gradtape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 4.0], &[2])?;
/// let y = (&x.sqrt()? * 2.0)?;
/// assert_eq!(y.reduce_sum(gradtape::Axes::All, false)?.to_scalar::<f32>()?, 6.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
impl Tensor {
    unary_methods!(square, sqrt, exp, log, abs, tanh, sigmoid, relu, softplus, sin, cos);

    /// [`ops::pow`] as a method.
    ///
    /// # Errors
    /// As the op.
    ///
    /// ```
    /// let x = gradtape::Tensor::scalar(2.0f32);
    /// assert_eq!(x.pow(&3.0)?.to_scalar::<f32>()?, 8.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn pow(&self, exponent: &impl AsTensor) -> Result<Tensor> {
        ops::pow(self, exponent)
    }

    /// [`ops::matmul`] as a method.
    ///
    /// # Errors
    /// As the op.
    ///
    /// ```
    /// let a = gradtape::Tensor::eye(2, gradtape::DType::F64);
    /// assert_eq!(a.matmul(&a)?.to_vec::<f64>()?, vec![1.0, 0.0, 0.0, 1.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn matmul(&self, other: &impl AsTensor) -> Result<Tensor> {
        ops::matmul(self, other)
    }

    /// [`ops::reshape`] as a method.
    ///
    /// # Errors
    /// As the op.
    ///
    /// ```
    /// let x = gradtape::Tensor::zeros(&[6], gradtape::DType::F32);
    /// assert_eq!(x.reshape(&[2, -1])?.shape(), &[2, 3]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn reshape(&self, shape: &[isize]) -> Result<Tensor> {
        ops::reshape(self, shape)
    }

    /// The transpose with dimensions reversed ([`ops::transpose`] with `None`).
    ///
    /// # Errors
    /// Never for a valid tensor.
    ///
    /// ```
    /// let x = gradtape::Tensor::zeros(&[2, 3], gradtape::DType::F32);
    /// assert_eq!(x.t()?.shape(), &[3, 2]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn t(&self) -> Result<Tensor> {
        ops::transpose(self, None)
    }

    /// [`ops::reduce_sum`] as a method.
    ///
    /// # Errors
    /// As the op.
    ///
    /// ```
    /// let x = gradtape::Tensor::ones(&[2, 3], gradtape::DType::F32);
    /// assert_eq!(x.reduce_sum(1, false)?.to_vec::<f32>()?, vec![3.0, 3.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn reduce_sum(&self, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
        ops::reduce_sum(self, axis, keepdims)
    }

    /// [`ops::reduce_mean`] as a method.
    ///
    /// # Errors
    /// As the op.
    ///
    /// ```
    /// let x = gradtape::Tensor::from_vec(vec![1.0f32, 3.0], &[2])?;
    /// assert_eq!(x.reduce_mean(gradtape::Axes::All, false)?.to_scalar::<f32>()?, 2.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn reduce_mean(&self, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
        ops::reduce_mean(self, axis, keepdims)
    }

    /// [`ops::reduce_max`] as a method.
    ///
    /// # Errors
    /// As the op.
    ///
    /// ```
    /// let x = gradtape::Tensor::from_vec(vec![1.0f32, 3.0], &[2])?;
    /// assert_eq!(x.reduce_max(0, false)?.to_scalar::<f32>()?, 3.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn reduce_max(&self, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
        ops::reduce_max(self, axis, keepdims)
    }

    /// [`ops::cast`] as a method.
    ///
    /// # Errors
    /// As the op.
    ///
    /// ```
    /// let x = gradtape::Tensor::scalar(2.5f32);
    /// assert_eq!(x.cast(gradtape::DType::I64)?.to_scalar::<i64>()?, 2);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn cast(&self, dtype: DType) -> Result<Tensor> {
        ops::cast(self, dtype)
    }
}
