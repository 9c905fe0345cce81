//! `+ - * /` and unary `-` on tensors and variables, and short methods for the common ops.
//!
//! # Why operators panic and `ops` does not
//!
//! Operators return a [`Tensor`], so a forward pass reads like its formula:
//! `let y = &x * &w + 1.0;` and `2.0 * &x` compile as written, and a statement needs at most
//! the one `?` of the fallible call in it. Rust's operator traits cannot return a `Result` that
//! the next operator accepts alongside a bare number (neither `Result` nor `f64` is this
//! crate's type), so the choice is between operators that return `Result` (candle: a `?`
//! after every operator) and operators that panic on a shape or dtype error (tch-rs, ndarray,
//! nalgebra, burn). gradtape takes the second, as PyTorch raises at the line that failed:
//! the panic message is the op's full error message (op, shapes, dtypes) and points at the
//! caller's line (`#[track_caller]`). Code that must not panic calls the functions of
//! [`crate::ops`], which return the same error as an `Err`: `ops::add(&x, &y)?`. Nothing inside
//! gradtape uses the operators.
//!
//! A Rust number on the right may be any of `f64`, `f32`, `i64`, `i32`; on the left, `f64` and
//! `i32` (the types of bare literals, so `2.0 * &x` and `2 * &x` need no suffix). The number
//! takes the tensor's dtype.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::error::Result;
use crate::ops::{self, Axes};
use crate::tensor::{AsTensor, Tensor};
use crate::variable::Variable;
use crate::DType;

/// The tensor, or a panic with the op's error message at the caller's line.
#[track_caller]
fn or_panic(result: Result<Tensor>, operator: &str, function: &str) -> Tensor {
    match result {
        Ok(t) => t,
        Err(e) => panic!("{e} (operator `{operator}`; `gradtape::ops::{function}` returns this error as a Result instead)"),
    }
}

macro_rules! binary_operator {
    ($Trait:ident, $method:ident, $f:ident, $sym:literal) => {
        impl<R: AsTensor> $Trait<R> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: R) -> Tensor {
                or_panic(ops::$f(self, &rhs), $sym, stringify!($f))
            }
        }
        impl<R: AsTensor> $Trait<R> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: R) -> Tensor {
                or_panic(ops::$f(&self, &rhs), $sym, stringify!($f))
            }
        }
        impl<R: AsTensor> $Trait<R> for &Variable {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: R) -> Tensor {
                or_panic(ops::$f(self, &rhs), $sym, stringify!($f))
            }
        }
        binary_operator!(@left $Trait, $method, $f, $sym, f64, i32);
    };
    (@left $Trait:ident, $method:ident, $f:ident, $sym:literal, $($n:ty),*) => {$(
        impl $Trait<&Tensor> for $n {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                or_panic(ops::$f(&self, rhs), $sym, stringify!($f))
            }
        }
        impl $Trait<Tensor> for $n {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                or_panic(ops::$f(&self, &rhs), $sym, stringify!($f))
            }
        }
        impl $Trait<&Variable> for $n {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Variable) -> Tensor {
                or_panic(ops::$f(&self, rhs), $sym, stringify!($f))
            }
        }
    )*};
}

binary_operator!(Add, add, add, "+");
binary_operator!(Sub, sub, subtract, "-");
binary_operator!(Mul, mul, multiply, "*");
binary_operator!(Div, div, divide, "/");

impl Neg for &Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        or_panic(ops::negative(self), "-", "negative")
    }
}

impl Neg for Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        or_panic(ops::negative(&self), "-", "negative")
    }
}

impl Neg for &Variable {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        or_panic(ops::negative(self), "-", "negative")
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
/// let y = 2.0 * &x.sqrt()?; // operators take bare numbers on either side
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
    /// let a = gradtape::Tensor::eye(2, gradtape::DType::F64)?;
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
    /// let x = gradtape::Tensor::zeros(&[6], gradtape::DType::F32)?;
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
    /// let x = gradtape::Tensor::zeros(&[2, 3], gradtape::DType::F32)?;
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
    /// let x = gradtape::Tensor::ones(&[2, 3], gradtape::DType::F32)?;
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
