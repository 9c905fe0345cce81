//! Neural-network functions, all compositions of the primitives: they need no gradient code of
//! their own, and their derivatives of every order come from the primitives' rules.

use crate::error::Result;
use crate::tensor::{AsTensor, Tensor};

use super::{
    add, exp, expm1, greater_equal, is_finite, less, log, maximum, minimum, multiply, reduce_max,
    reduce_sum, reshape_to, select, stop_gradient, subtract, Axes,
};

/// `exp(x) / sum(exp(x))` along `axis`, shifted by the (constant) maximum for stability.
///
/// # Errors
/// When the axis is invalid or the dtype is not float.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![1000.0f32, 1000.0], &[2])?;
/// assert_eq!(gradtape::ops::softmax(&x, -1)?.to_vec::<f32>()?, vec![0.5, 0.5]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn softmax(logits: &impl AsTensor, axis: isize) -> Result<Tensor> {
    let x = logits.operand().into_tensor();
    let shifted = subtract(&x, &stop_gradient(&reduce_max(&x, axis, true)?)?)?;
    let e = exp(&shifted)?;
    super::divide(&e, &reduce_sum(&e, axis, true)?)
}

/// `log(softmax(x))` along `axis`, computed without forming the softmax.
///
/// # Errors
/// When the axis is invalid or the dtype is not float.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![0.0f64, 0.0], &[2])?;
/// let l = gradtape::ops::log_softmax(&x, 0)?.to_vec::<f64>()?;
/// assert!((l[0] + 2f64.ln()).abs() < 1e-15);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn log_softmax(logits: &impl AsTensor, axis: isize) -> Result<Tensor> {
    let x = logits.operand().into_tensor();
    let shifted = subtract(&x, &stop_gradient(&reduce_max(&x, axis, true)?)?)?;
    subtract(&shifted, &log(&reduce_sum(&exp(&shifted)?, axis, true)?)?)
}

/// `log(sum(exp(x)))` over `axis`, stable for large values, following TensorFlow's
/// `reduce_logsumexp` step by step (an infinite maximum is not subtracted).
///
/// # Errors
/// When an axis is invalid or the dtype is not float.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![1000.0f64, 1000.0], &[2])?;
/// let r = gradtape::ops::reduce_logsumexp(&x, gradtape::Axes::All, false)?.to_scalar::<f64>()?;
/// assert!((r - (1000.0 + 2f64.ln())).abs() < 1e-12);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn reduce_logsumexp(
    x: &impl AsTensor,
    axis: impl Into<Axes>,
    keepdims: bool,
) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    let axis = axis.into();
    let raw_max = reduce_max(&x, axis.clone(), true)?;
    let my_max = stop_gradient(&select(&is_finite(&raw_max)?, &raw_max, &0.0)?)?;
    let result = log(&reduce_sum(&exp(&subtract(&x, &my_max)?)?, axis, keepdims)?)?;
    let my_max = reshape_to(&my_max, result.shape())?;
    add(&result, &my_max)
}

/// Exponential linear unit: `x` for `x > 0`, `eˣ - 1` otherwise.
///
/// # Errors
/// When the dtype is not float.
///
/// ```
/// assert_eq!(gradtape::ops::elu(&2.0)?.to_scalar::<f32>()?, 2.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn elu(x: &impl AsTensor) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    // expm1 of min(x, 0): the branch not taken stays finite, so its zero gradient is not NaN.
    // `x < 0` picks the exponential branch, so at 0 the first derivative is 1 and the second 0,
    // as TensorFlow's EluGrad and its gradient give.
    select(&less(&x, &0.0)?, &expm1(&minimum(&x, &0.0)?)?, &x)
}

/// Scaled exponential linear unit (Klambauer et al.), with TensorFlow's constants.
///
/// # Errors
/// When the dtype is not float.
///
/// ```
/// assert!((gradtape::ops::selu(&1.0)?.to_scalar::<f32>()? - 1.050_701).abs() < 1e-6);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn selu(x: &impl AsTensor) -> Result<Tensor> {
    const ALPHA: f64 = 1.673_263_242_354_377_3;
    const SCALE: f64 = 1.050_700_987_355_480_5;
    let x = x.operand().into_tensor();
    let neg = multiply(&expm1(&minimum(&x, &0.0)?)?, &ALPHA)?;
    // `>=` so that the gradient at 0 is `scale`, as TensorFlow's SeluGrad gives.
    multiply(&select(&greater_equal(&x, &0.0)?, &x, &neg)?, &SCALE)
}

/// Clamps to `[clip_value_min, clip_value_max]` as TensorFlow does: `minimum` then `maximum`,
/// so at a bound the gradient passes through (1), inside it is 1, outside 0.
///
/// # Errors
/// When dtypes differ or shapes do not broadcast.
///
/// ```
/// let x = gradtape::Tensor::from_vec(vec![-2.0f32, 0.5, 3.0], &[3])?;
/// assert_eq!(gradtape::ops::clip_by_value(&x, &0.0, &1.0)?.to_vec::<f32>()?, vec![0.0, 0.5, 1.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn clip_by_value(
    t: &impl AsTensor,
    clip_value_min: &impl AsTensor,
    clip_value_max: &impl AsTensor,
) -> Result<Tensor> {
    maximum(&minimum(t, clip_value_max)?, clip_value_min)
}
