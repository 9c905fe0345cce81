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

/// `tf.nn.sigmoid_cross_entropy_with_logits`: the binary cross-entropy of each logit against
/// its label, `max(x, 0) - x·z + log(1 + exp(-|x|))` step by step as TensorFlow computes it
/// (stable at any logit, its gradient at 0 `sigmoid(0) - z`). Elementwise, no reduction.
///
/// # Errors
/// When the shapes differ (TensorFlow does not broadcast here), or the dtypes differ or are not
/// float.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let labels = Tensor::from_vec(vec![1.0f32, 0.0], &[2])?;
/// let logits = Tensor::from_vec(vec![1000.0f32, 0.0], &[2])?;
/// let l = ops::sigmoid_cross_entropy_with_logits(&labels, &logits)?.to_vec::<f32>()?;
/// assert_eq!(l[0], 0.0);
/// assert!((l[1] - 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn sigmoid_cross_entropy_with_logits(
    labels: &impl AsTensor,
    logits: &impl AsTensor,
) -> Result<Tensor> {
    let (z, x) = labels_and_logits("sigmoid_cross_entropy_with_logits", labels, logits)?;
    let cond = greater_equal(&x, &0.0)?;
    let relu_logits = select(&cond, &x, &0.0)?;
    let neg_abs_logits = select(&cond, &super::negative(&x)?, &x)?;
    add(
        &subtract(&relu_logits, &multiply(&x, &z)?)?,
        &super::log1p(&exp(&neg_abs_logits)?)?,
    )
}

/// `tf.nn.softmax_cross_entropy_with_logits`: `-Σ labels · log_softmax(logits)` along `axis`
/// (TensorFlow's default is -1), for one-hot or soft labels; differentiable in both. For
/// labels that do not sum to 1 along the axis the gradient for the logits is the exact one,
/// `softmax · Σ labels - labels`; TensorFlow's fused kernel gives `softmax - labels` there
/// (it assumes a distribution). For distributions the two agree; second derivatives for the
/// labels are exact too, where TensorFlow's fused op drops a term (its own composed
/// `-reduce_sum(labels * log_softmax(logits))` agrees with gradtape).
///
/// # Errors
/// When the shapes differ, the axis is invalid, or the dtypes differ or are not float.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let labels = Tensor::from_vec(vec![0.0f32, 1.0, 0.5, 0.5], &[2, 2])?;
/// let logits = Tensor::from_vec(vec![-1000.0f32, 1000.0, 0.0, 0.0], &[2, 2])?;
/// let l = ops::softmax_cross_entropy_with_logits(&labels, &logits, -1)?.to_vec::<f32>()?;
/// assert_eq!(l[0], 0.0);
/// assert!((l[1] - 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn softmax_cross_entropy_with_logits(
    labels: &impl AsTensor,
    logits: &impl AsTensor,
    axis: isize,
) -> Result<Tensor> {
    let (z, x) = labels_and_logits("softmax_cross_entropy_with_logits", labels, logits)?;
    super::negative(&reduce_sum(
        &multiply(&z, &log_softmax(&x, axis)?)?,
        axis,
        false,
    )?)
}

/// `tf.nn.sparse_softmax_cross_entropy_with_logits`: `-log_softmax(logits)[label]` over the
/// last axis, for int64 class indices of `logits`' shape without its last axis. A label out
/// of range is an error (checked at every call of a compiled function too), as on
/// TensorFlow's CPU, never a silent zero.
///
/// # Errors
/// When labels are not int64, their shape is not `logits`' without its last axis, a label is
/// not a class, or `logits` is not float.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let labels = Tensor::from_vec(vec![1i64, 0], &[2])?;
/// let logits = Tensor::from_vec(vec![-1000.0f32, 1000.0, 0.0, 0.0], &[2, 2])?;
/// let l = ops::sparse_softmax_cross_entropy_with_logits(&labels, &logits)?.to_vec::<f32>()?;
/// assert_eq!(l[0], 0.0);
/// assert!((l[1] - 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn sparse_softmax_cross_entropy_with_logits(
    labels: &Tensor,
    logits: &impl AsTensor,
) -> Result<Tensor> {
    let op = "sparse_softmax_cross_entropy_with_logits";
    let x = logits.operand().into_tensor();
    let one_hot = labels::class_labels_one_hot(op, labels, &x)?;
    softmax_cross_entropy_with_logits(&one_hot, &x, -1)
}

/// Labels and logits of one shape and one float dtype.
fn labels_and_logits(
    op: &'static str,
    labels: &impl AsTensor,
    logits: &impl AsTensor,
) -> Result<(Tensor, Tensor)> {
    use crate::error::Error;
    let x = logits.operand().into_tensor();
    let z = labels.operand().into_tensor_of(x.dtype());
    if z.shape() != x.shape() {
        return Err(Error::shape(
            op,
            format!(
                "labels {:?} and logits {:?} must have the same shape",
                z.shape(),
                x.shape()
            ),
        ));
    }
    super::same_dtype(op, &z, &x)?;
    if !x.dtype().is_float() {
        return Err(Error::dtype(
            op,
            format!("expected float32 or float64, got {}", x.dtype()),
        ));
    }
    Ok((z, x))
}

/// Shared with the Keras losses (through `gradtape::internal`).
pub(crate) mod labels {
    use crate::error::Result;
    use crate::tensor::Tensor;

    /// Class indices as one-hot rows of `logits`' dtype, after checking them: int64, of
    /// `logits`' shape without its last axis, each in `[0, classes)` (on the values, at every
    /// call of a compiled function too: `one_hot` would give a zero row for a label out of range).
    pub fn class_labels_one_hot(
        op: &'static str,
        labels: &Tensor,
        logits: &Tensor,
    ) -> Result<Tensor> {
        use crate::error::Error;
        if labels.dtype() != crate::DType::I64 {
            return Err(Error::dtype(
                op,
                format!("labels must be int64, got {}", labels.dtype()),
            ));
        }
        let r = logits.rank();
        if r == 0 || labels.shape() != &logits.shape()[..r - 1] {
            return Err(Error::shape(
                op,
                format!(
                    "labels {:?} must be the logits' {:?} without its last axis",
                    labels.shape(),
                    logits.shape()
                ),
            ));
        }
        if !logits.dtype().is_float() {
            return Err(Error::dtype(
                op,
                format!("expected float logits, got {}", logits.dtype()),
            ));
        }
        let classes = logits.shape()[r - 1];
        // inside vmap, every example's labels
        let check: crate::context::traces::Checker =
            std::sync::Arc::new(move |t: &[Tensor]| {
                match t[0]
                    .to_vec::<i64>()?
                    .into_iter()
                    .find(|&l| l < 0 || l as u64 >= classes as u64)
                {
                    Some(bad) => Err(Error::index(
                        op,
                        format!("label {bad} is not in [0, {classes})"),
                    )),
                    None => Ok(()),
                }
            });
        crate::context::traces::check_values(&[&labels.all_examples()], check)?;
        crate::ops::one_hot(labels, classes, 1.0, 0.0, logits.dtype())
    }
}
