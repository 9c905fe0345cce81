//! Elementwise arithmetic: the unary table, the roundings and the broadcasting binary ops,
//! each a [`Primitive`](crate::ops::Primitive) defined in one place.

use super::apply;
use crate::backend::cpu;
use crate::dtype::dispatch;
use crate::dtype::{Element, Float, Num};
use crate::error::Result;
use crate::fusion;
use crate::primitive::{Derivative, Fused, Params, Primitive, Saves};
use crate::shape::broadcast_shapes;
use crate::tensor::creation::operand_pair;
use crate::tensor::{AsTensor, Tensor};

use super::{cast, greater, greater_equal, less_equal, same_dtype, select};

/// `f` over every element; the result is contiguous with `x`'s shape. `cuda` is the same
/// function as a CUDA C expression of `v`, for a tensor on a GPU.
pub(crate) fn map_tensor<T: Element, U: Element>(
    op: &'static str,
    x: &Tensor,
    f: impl Fn(T) -> U + Sync,
    cuda: &str,
) -> Result<Tensor> {
    if let Some(y) = crate::backend::unary(op, x, cuda, U::DTYPE)? {
        return Ok(y);
    }
    Ok(Tensor::from_elems(
        cpu::map(x.data::<T>()?, x.layout(), f)?,
        x.shape(),
    ))
}

/// One row per elementwise function: its name and primitive, its forward on one element
/// (generic over `f32`/`f64`, giving the host and fused kernels), the same as CUDA C, and its
/// gradient from the saved input `x` or output `y` and the incoming `g`, written with
/// differentiable ops and following TensorFlow's formula where conventions differ.
macro_rules! unary_ops {
    ($(
        $(#[$doc:meta])*
        $name:ident($P:ident): |$v:ident| $fwd:expr, cuda $cuda:literal, grad($kind:ident) |$s:ident, $g:ident| $grad:expr;
    )*) => {
        $(
            pub(crate) static $P: Primitive = {
                #[inline(always)]
                fn fwd<T: Float>($v: T) -> T {
                    $fwd
                }
                const KERNEL: &fusion::UnaryKernel = fusion::unary_kernel!(fwd);
                fn forward(xs: &[&Tensor], _: &Params) -> Result<Tensor> {
                    let x = xs[0];
                    if let Some(y) = fusion::unary(x, KERNEL) {
                        return Ok(y);
                    }
                    dispatch!(float stringify!($name), x.dtype(), T => map_tensor::<T, T>(stringify!($name), x, fwd::<T>, $cuda))
                }
                fn rule($s: &Tensor, $g: &Tensor) -> Result<Tensor> {
                    $grad
                }
                let derivative = Derivative::Diagonal { saves: Saves::$kind, rule };
                Primitive::elementwise(stringify!($name), 1, forward, derivative, Some($cuda))
                    .with_fused(Fused::Unary(KERNEL))
            };

            $(#[$doc])*
            ///
            /// # Errors
            /// When the operand is not float32 or float64.
            pub fn $name(x: &impl AsTensor) -> Result<Tensor> {
                apply(&$P, &[&x.operand().into_tensor()], &Params::NONE)
            }
        )*

        /// The unary table's primitives.
        pub(crate) static UNARY: &[&Primitive] = &[$(&$P),*];
    };
}

unary_ops! {
    /// `-x`.
    ///
    /// ```
    /// let x = gradtape::Tensor::from_vec(vec![1.0f32, -2.0], &[2])?;
    /// assert_eq!(gradtape::ops::negative(&x)?.to_vec::<f32>()?, vec![-1.0, 2.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    negative(NEGATIVE): |v| -v, cuda "-v", grad(Input) |_x, g| negative(g);
    /// `x²`; gradient `2x`.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::square(&3.0)?.to_scalar::<f32>()?, 9.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    square(SQUARE): |v| v * v, cuda "v * v", grad(Input) |x, g| multiply(g, &multiply(x, &2.0)?);
    /// `√x`; gradient `0.5 / √x` (infinite at 0, as in TensorFlow).
    ///
    /// ```
    /// assert_eq!(gradtape::ops::sqrt(&4.0)?.to_scalar::<f32>()?, 2.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    sqrt(SQRT): |v| v.sqrt(), cuda "sqrt(v)", grad(Output) |y, g| multiply(&divide(g, y)?, &0.5);
    /// `1 / √x`.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::rsqrt(&4.0)?.to_scalar::<f32>()?, 0.5);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    rsqrt(RSQRT): |v| T::ONE / v.sqrt(), cuda "1 / sqrt(v)", grad(Output) |y, g| multiply(&multiply(g, &-0.5)?, &multiply(&square(y)?, y)?);
    /// `1 / x`.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::reciprocal(&4.0)?.to_scalar::<f32>()?, 0.25);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    reciprocal(RECIPROCAL): |v| T::ONE / v, cuda "1 / v", grad(Output) |y, g| negative(&multiply(g, &square(y)?)?);
    /// `eᕽ`; gradient `eᕽ` (the saved output).
    ///
    /// ```
    /// assert_eq!(gradtape::ops::exp(&0.0)?.to_scalar::<f32>()?, 1.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    exp(EXP): |v| v.exp(), cuda "exp(v)", grad(Output) |y, g| multiply(g, y);
    /// `eᕽ - 1`, accurate near 0.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::expm1(&0.0)?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    expm1(EXPM1): |v| v.exp_m1(), cuda "expm1(v)", grad(Input) |x, g| multiply(g, &exp(x)?);
    /// Natural logarithm; gradient `1 / x`.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::log(&1.0)?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    log(LOG): |v| v.ln(), cuda "log(v)", grad(Input) |x, g| multiply(g, &reciprocal(x)?);
    /// `ln(1 + x)`, accurate near 0.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::log1p(&0.0)?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    log1p(LOG1P): |v| v.ln_1p(), cuda "log1p(v)", grad(Input) |x, g| multiply(g, &reciprocal(&add(x, &1.0)?)?);
    /// `|x|`; gradient `sign(x)`, so 0 at 0 (TensorFlow's convention).
    ///
    /// ```
    /// assert_eq!(gradtape::ops::abs(&-2.0)?.to_scalar::<f32>()?, 2.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    abs(ABS): |v| v.abs_(), cuda "fabs(v)", grad(Input) |x, g| multiply(g, &sign(x)?);
    /// -1, 0 or 1; its gradient is zero (TensorFlow returns zeros, not `None`).
    ///
    /// ```
    /// assert_eq!(gradtape::ops::sign(&-2.0)?.to_scalar::<f32>()?, -1.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    sign(SIGN): |v| v.sign_(), cuda "sign_(v)", grad(Input) |x, _g| Tensor::zeros_like(x);
    /// Sine.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::sin(&0.0)?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    sin(SIN): |v| v.sin(), cuda "sin(v)", grad(Input) |x, g| multiply(g, &cos(x)?);
    /// Cosine.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::cos(&0.0)?.to_scalar::<f32>()?, 1.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    cos(COS): |v| v.cos(), cuda "cos(v)", grad(Input) |x, g| negative(&multiply(g, &sin(x)?)?);
    /// Hyperbolic tangent; gradient `1 - y²` from the output.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::tanh(&0.0)?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    tanh(TANH): |v| v.tanh(), cuda "tanh(v)", grad(Output) |y, g| multiply(g, &subtract(&1.0, &square(y)?)?);
    /// The logistic function `1 / (1 + e⁻ᕽ)`, computed without overflow.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::sigmoid(&0.0)?.to_scalar::<f32>()?, 0.5);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    sigmoid(SIGMOID): |v| v.sigmoid(), cuda "v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v))", grad(Output) |y, g| multiply(g, &multiply(y, &subtract(&1.0, y)?)?);
    /// `max(x, 0)`; gradient 0 at 0 (TensorFlow's convention). NaN stays NaN, as in
    /// TensorFlow: a ReLU that turned a NaN input into 0 hid bad data from the loss and from
    /// the non-finite-loss check while the weights filled with NaN.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::relu(&-1.0)?.to_scalar::<f32>()?, 0.0);
    /// assert!(gradtape::ops::relu(&f64::NAN)?.to_scalar::<f32>()?.is_nan());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    relu(RELU): |v| if v > T::ZERO || v.is_nan() { v } else { T::ZERO }, cuda "(v > 0 || v != v) ? v : 0", grad(Output) |y, g| multiply(g, &cast(&greater(y, &0.0)?, g.dtype())?);
    /// `ln(1 + eᕽ)`, stable for large |x|. A primitive rather than a composition so that its
    /// gradient is exactly `sigmoid(x)` everywhere, 0.5 at 0 as in TensorFlow (compositions
    /// through `relu` or `abs` get 0 or 1 at that kink).
    ///
    /// ```
    /// assert!((gradtape::ops::softplus(&0.0)?.to_scalar::<f32>()? - 2f32.ln()).abs() < 1e-7);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    softplus(SOFTPLUS): |v| if v > T::ZERO {
        v + (-v).exp().ln_1p()
    } else {
        v.exp().ln_1p()
    }, cuda "v > 0 ? v + log1p(exp(-v)) : log1p(exp(v))", grad(Input) |x, g| multiply(g, &sigmoid(x)?);
}

/// The roundings: elementwise and batched like the unary table, but with no gradient (a
/// tape ends the path there, as TensorFlow's gives `None`).
macro_rules! rounding_ops {
    ($(
        $(#[$doc:meta])*
        $name:ident($P:ident): |$v:ident| $fwd:expr, cuda $cuda:literal;
    )*) => {
        $(
            pub(crate) static $P: Primitive = Primitive::elementwise(
                stringify!($name),
                1,
                |xs, _| {
                    dispatch!(float stringify!($name), xs[0].dtype(), T => map_tensor::<T, T>(stringify!($name), xs[0], |$v| $fwd, $cuda))
                },
                Derivative::None,
                Some($cuda),
            );

            $(#[$doc])*
            ///
            /// # Errors
            /// When the operand is not a float tensor.
            pub fn $name(x: &impl AsTensor) -> Result<Tensor> {
                apply(&$P, &[&x.operand().into_tensor()], &Params::NONE)
            }
        )*

        /// The roundings' primitives.
        pub(crate) static ROUNDING: &[&Primitive] = &[$(&$P),*];
    };
}

rounding_ops! {
    /// Rounds half to even (TensorFlow's `round`). Not differentiable: a tape gives `None`.
    ///
    /// ```
    /// let x = gradtape::Tensor::from_vec(vec![0.5f32, 1.5, -2.5], &[3])?;
    /// assert_eq!(gradtape::ops::round(&x)?.to_vec::<f32>()?, vec![0.0, 2.0, -2.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    round(ROUND): |v| v.round_even(), cuda "rint(v)";
    /// Largest integer not above each element. Not differentiable.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::floor(&1.7)?.to_scalar::<f32>()?, 1.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    floor(FLOOR): |v| v.floor(), cuda "floor(v)";
    /// Smallest integer not below each element. Not differentiable.
    ///
    /// ```
    /// assert_eq!(gradtape::ops::ceil(&1.2)?.to_scalar::<f32>()?, 2.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    ceil(CEIL): |v| v.ceil(), cuda "ceil(v)";
}

// ---------------------------------------------------------------------------------------------
// Binary ops

/// `f` over two operands of element type `T` broadcast together, giving elements of type `U`.
/// Equal shapes (the common case) skip the broadcast bookkeeping entirely. `cuda` is the same
/// function as a CUDA C expression of `p` and `q`, for operands on a GPU.
pub(crate) fn zip_tensors<T: Element, U: Element>(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(T, T) -> U + Sync,
    cuda: &str,
) -> Result<Tensor> {
    same_dtype(op, a, b)?;
    if let Some(y) = crate::backend::binary(op, a, b, cuda, U::DTYPE)? {
        return Ok(y);
    }
    let (da, db) = (a.data::<T>()?, b.data::<T>()?);
    if crate::shape::same(a.shape(), b.shape()) {
        return Ok(Tensor::from_elems(
            cpu::zip(da, a.layout(), db, b.layout(), f)?,
            a.shape(),
        ));
    }
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    let (la, lb) = (
        a.layout().broadcast_to(&shape),
        b.layout().broadcast_to(&shape),
    );
    Ok(Tensor::from_elems(cpu::zip(da, &la, db, &lb, f)?, &shape))
}

/// A broadcasting binary primitive from its element function (`$dispatch` names the dtypes it
/// takes), the same as CUDA C of `p` and `q`, what its rule saves, and its partial
/// derivatives (see [`Derivative::Broadcast`]).
macro_rules! binary_primitive {
    ($P:ident, $op:literal, $dispatch:ident, |$p:ident, $q:ident| $e:expr, cuda $cuda:literal, saves $saves:ident, $partial:expr) => {
        pub(crate) static $P: Primitive = {
            /// A pending tensor when [`crate::fusion`] takes it (large float operands), the
            /// eager kernel otherwise.
            const KERNEL: &fusion::BinaryKernel = fusion::binary_kernel!(|$p, $q| $e);
            fn forward(xs: &[&Tensor], _: &Params) -> Result<Tensor> {
                let (a, b) = (xs[0], xs[1]);
                if let Some(t) = fusion::binary(a, b, KERNEL) {
                    return Ok(t);
                }
                dispatch!($dispatch $op, a.dtype(), T => {
                    zip_tensors::<T, T>($op, a, b, |$p, $q| $e, $cuda)
                })
            }
            let derivative = Derivative::Broadcast {
                saves: Saves::$saves,
                partial: $partial,
            };
            Primitive::elementwise($op, 2, forward, derivative, Some($cuda))
                .with_fused(Fused::Binary(KERNEL))
        };
    };
}

binary_primitive!(ADD, "add", numeric, |p, q| p.wadd(q), cuda "p + q", saves Nothing, |_, g, _| Ok(g.clone()));
binary_primitive!(SUBTRACT, "subtract", numeric, |p, q| p.wsub(q), cuda "p - q", saves Nothing, |_, g, i| {
    if i == 0 {
        Ok(g.clone())
    } else {
        negative(g)
    }
});
binary_primitive!(MULTIPLY, "multiply", numeric, |p, q| p.wmul(q), cuda "p * q", saves Inputs, |s, g, i| {
    if i == 0 {
        multiply(g, s.b()?)
    } else {
        multiply(s.a()?, g)
    }
});
binary_primitive!(DIVIDE, "divide", float, |p, q| p / q, cuda "p / q", saves Inputs, |s, g, i| {
    let (a, b) = (s.a()?, s.b()?);
    if i == 0 {
        divide(g, b)
    } else {
        multiply(g, &divide(&divide(&negative(a)?, b)?, b)?)
    }
});
binary_primitive!(MAXIMUM, "maximum", numeric, |p, q| p.max_(q), cuda "(p > q || p != p) ? p : q", saves Inputs, |s, g, i| {
    to_the_chosen(&greater_equal(s.a()?, s.b()?)?, g, i)
});
binary_primitive!(MINIMUM, "minimum", numeric, |p, q| p.min_(q), cuda "(p < q || p != p) ? p : q", saves Inputs, |s, g, i| {
    to_the_chosen(&less_equal(s.a()?, s.b()?)?, g, i)
});
binary_primitive!(POW, "pow", float, |p, q| p.powf(q), cuda "pow(p, q)", saves InputsAndOutput, |s, g, i| {
    let (a, b, z) = (s.a()?, s.b()?, s.out()?);
    if i == 0 {
        multiply(g, &multiply(b, &pow(a, &subtract(b, &1.0)?)?)?)
    } else {
        let positive = greater(a, &0.0)?;
        let safe = select(&positive, a, &1.0)?;
        let log_x = select(&positive, &log(&safe)?, &0.0)?;
        multiply(g, &multiply(z, &log_x)?)
    }
});

/// The broadcasting binary primitives.
pub(crate) static BINARY: &[&Primitive] = &[
    &ADD, &SUBTRACT, &MULTIPLY, &DIVIDE, &MAXIMUM, &MINIMUM, &POW,
];

/// `maximum`'s and `minimum`'s gradient: `g` goes to input 0 where `x_chosen` (ties included,
/// TensorFlow's convention), to input 1 elsewhere.
fn to_the_chosen(x_chosen: &Tensor, g: &Tensor, i: usize) -> Result<Tensor> {
    if i == 0 {
        select(x_chosen, g, &0.0)
    } else {
        select(x_chosen, &0.0, g)
    }
}

/// `x + y` with broadcasting.
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
/// assert_eq!(gradtape::ops::add(&x, &1.0)?.to_vec::<f32>()?, vec![2.0, 3.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn add(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    apply(&ADD, &[&a, &b], &Params::NONE)
}

/// `x - y` with broadcasting.
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// assert_eq!(gradtape::ops::subtract(&3.0, &1.0)?.to_scalar::<f32>()?, 2.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn subtract(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    apply(&SUBTRACT, &[&a, &b], &Params::NONE)
}

/// `x * y` with broadcasting.
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// assert_eq!(gradtape::ops::multiply(&3.0, &2.0)?.to_scalar::<f32>()?, 6.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn multiply(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    apply(&MULTIPLY, &[&a, &b], &Params::NONE)
}

/// `x / y` with broadcasting. Integer operands divide as float64 (TensorFlow's `truediv`).
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// assert_eq!(gradtape::ops::divide(&3.0, &2.0)?.to_scalar::<f32>()?, 1.5);
/// let i = gradtape::Tensor::scalar(3i64);
/// assert_eq!(gradtape::ops::divide(&i, &2)?.to_scalar::<f64>()?, 1.5);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn divide(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    if a.dtype() == crate::DType::I64 && b.dtype() == crate::DType::I64 {
        return divide(&cast(&a, crate::DType::F64)?, &cast(&b, crate::DType::F64)?);
    }
    apply(&DIVIDE, &[&a, &b], &Params::NONE)
}

/// Elementwise maximum. On ties the gradient goes to `x` (TensorFlow's convention).
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// assert_eq!(gradtape::ops::maximum(&3.0, &2.0)?.to_scalar::<f32>()?, 3.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn maximum(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    apply(&MAXIMUM, &[&a, &b], &Params::NONE)
}

/// Elementwise minimum. On ties the gradient goes to `x` (TensorFlow's convention).
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// assert_eq!(gradtape::ops::minimum(&3.0, &2.0)?.to_scalar::<f32>()?, 2.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn minimum(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    apply(&MINIMUM, &[&a, &b], &Params::NONE)
}

/// `xʸ`, with a tensor or a number as exponent. The gradient with respect to `y` is
/// `xʸ·ln x` where `x > 0` and 0 elsewhere (TensorFlow's convention).
///
/// # Errors
/// When dtypes differ, shapes do not broadcast, or the operands are not float.
///
/// ```
/// assert_eq!(gradtape::ops::pow(&2.0, &3.0)?.to_scalar::<f32>()?, 8.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn pow(x: &impl AsTensor, y: &impl AsTensor) -> Result<Tensor> {
    let (a, b) = operand_pair(x, y);
    apply(&POW, &[&a, &b], &Params::NONE)
}
