//! Keras's losses, written with differentiable ops (so every loss has gradients of every order).
//!
//! Each takes `(y_true, y_pred, ..., reduction)`: the per-sample loss is taken over the last
//! axis (Keras's convention), then reduced over the batch. Cross-entropies accept probabilities
//! or logits; from logits they stay finite at logits of ±1000.
//!
//! ```
//! use gradtape::losses::{mean_squared_error, Reduction};
//! use gradtape::Tensor;
//! let y = Tensor::from_vec(vec![1.0f32, 2.0], &[2, 1])?;
//! let p = Tensor::from_vec(vec![1.5f32, 1.0], &[2, 1])?;
//! let l = mean_squared_error(&y, &p, Reduction::SumOverBatchSize)?;
//! assert_eq!(l.to_scalar::<f32>()?, 0.625);
//! # Ok::<(), gradtape::Error>(())
//! ```

use gradtape_core::internal::class_labels_one_hot;
use gradtape_core::ops::{
    abs, add, cast, clip_by_value, divide, less_equal, log, multiply, negative, reduce_mean,
    reduce_sum, select, sigmoid_cross_entropy_with_logits, softmax_cross_entropy_with_logits,
    square, subtract, Axes,
};
use gradtape_core::{AsTensor, Tensor};
use gradtape_core::{Error, Result};

/// Keras's `epsilon()`: probabilities are clipped to `[EPSILON, 1 - EPSILON]`.
///
/// ```
/// let p = gradtape::Tensor::scalar(0.0f64);
/// let l = gradtape::losses::binary_crossentropy(&1.0, &p, false, gradtape::losses::Reduction::Sum)?;
/// assert!((l.to_scalar::<f64>()? + gradtape::losses::EPSILON.ln()).abs() < 1e-9);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub const EPSILON: f64 = 1e-7;

/// How per-sample losses become the loss.
///
/// ```
/// assert_eq!(gradtape::losses::Reduction::default(), gradtape::losses::Reduction::SumOverBatchSize);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over the batch (Keras's default, `"sum_over_batch_size"`).
    #[default]
    SumOverBatchSize,
    /// The sum.
    Sum,
    /// No reduction: one loss per sample.
    None,
}

fn reduce(per_sample: Tensor, reduction: Reduction) -> Result<Tensor> {
    match reduction {
        Reduction::None => Ok(per_sample),
        Reduction::Sum => reduce_sum(&per_sample, Axes::All, false),
        Reduction::SumOverBatchSize => reduce_mean(&per_sample, Axes::All, false),
    }
}

fn pair(
    op: &'static str,
    y_true: &impl AsTensor,
    y_pred: &impl AsTensor,
) -> Result<(Tensor, Tensor)> {
    let p = y_pred.operand().into_tensor();
    let t = y_true.operand().into_tensor_of(p.dtype());
    if !p.dtype().is_float() {
        return Err(Error::dtype(
            op,
            format!("y_pred must be float32 or float64, got {}", p.dtype()),
        ));
    }
    let t = if t.dtype() == p.dtype() {
        t
    } else {
        cast(&t, p.dtype())?
    };
    if t.shape() != p.shape() {
        return Err(Error::shape(
            op,
            format!(
                "y_true {:?} and y_pred {:?} differ in shape",
                t.shape(),
                p.shape()
            ),
        ));
    }
    Ok((t, p))
}

fn last_axis_mean(x: &Tensor) -> Result<Tensor> {
    if x.rank() == 0 {
        return Ok(x.clone());
    }
    reduce_mean(x, -1, false)
}

fn last_axis_sum(x: &Tensor) -> Result<Tensor> {
    if x.rank() == 0 {
        return Ok(x.clone());
    }
    reduce_sum(x, -1, false)
}

/// The seed's loss: the sum of squared errors over the last axis, reduced.
/// With `Reduction::Sum` and 1-D inputs this is `tf.reduce_sum(tf.square(y_true - y_pred))`.
///
/// # Errors
/// When shapes differ or `y_pred` is not float.
///
/// ```
/// use gradtape::{losses, Tensor};
/// let y = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
/// let p = Tensor::from_vec(vec![0.0f32, 0.0], &[2])?;
/// assert_eq!(losses::sum_squared_error(&y, &p, losses::Reduction::Sum)?.to_scalar::<f32>()?, 5.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn sum_squared_error(
    y_true: &impl AsTensor,
    y_pred: &impl AsTensor,
    reduction: Reduction,
) -> Result<Tensor> {
    let (t, p) = pair("sum_squared_error", y_true, y_pred)?;
    reduce(last_axis_sum(&square(&subtract(&t, &p)?)?)?, reduction)
}

/// Mean squared error over the last axis, reduced.
///
/// # Errors
/// When shapes differ or `y_pred` is not float.
///
/// ```
/// use gradtape::{losses, Tensor};
/// let y = Tensor::from_vec(vec![1.0f32, 3.0], &[1, 2])?;
/// let p = Tensor::zeros(&[1, 2], gradtape::DType::F32)?;
/// assert_eq!(losses::mean_squared_error(&y, &p, losses::Reduction::SumOverBatchSize)?.to_scalar::<f32>()?, 5.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn mean_squared_error(
    y_true: &impl AsTensor,
    y_pred: &impl AsTensor,
    reduction: Reduction,
) -> Result<Tensor> {
    let (t, p) = pair("mean_squared_error", y_true, y_pred)?;
    reduce(last_axis_mean(&square(&subtract(&t, &p)?)?)?, reduction)
}

/// Mean absolute error over the last axis, reduced.
///
/// # Errors
/// When shapes differ or `y_pred` is not float.
///
/// ```
/// use gradtape::{losses, Tensor};
/// let y = Tensor::from_vec(vec![1.0f32, -3.0], &[1, 2])?;
/// let p = Tensor::zeros(&[1, 2], gradtape::DType::F32)?;
/// assert_eq!(losses::mean_absolute_error(&y, &p, losses::Reduction::Sum)?.to_scalar::<f32>()?, 2.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn mean_absolute_error(
    y_true: &impl AsTensor,
    y_pred: &impl AsTensor,
    reduction: Reduction,
) -> Result<Tensor> {
    let (t, p) = pair("mean_absolute_error", y_true, y_pred)?;
    reduce(last_axis_mean(&abs(&subtract(&t, &p)?)?)?, reduction)
}

/// Huber loss: quadratic for errors up to `delta`, linear beyond (Keras's formula).
///
/// # Errors
/// When shapes differ or `y_pred` is not float.
///
/// ```
/// use gradtape::{losses, Tensor};
/// let y = Tensor::from_vec(vec![0.0f32, 0.0], &[1, 2])?;
/// let p = Tensor::from_vec(vec![0.5f32, 3.0], &[1, 2])?;
/// // (0.5·0.25 + (3 - 0.5)) / 2
/// assert_eq!(losses::huber(&y, &p, 1.0, losses::Reduction::Sum)?.to_scalar::<f32>()?, 1.3125);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn huber(
    y_true: &impl AsTensor,
    y_pred: &impl AsTensor,
    delta: f64,
    reduction: Reduction,
) -> Result<Tensor> {
    let (t, p) = pair("huber", y_true, y_pred)?;
    let error = subtract(&p, &t)?;
    let abs_error = abs(&error)?;
    let quadratic = multiply(&square(&error)?, &0.5)?;
    let linear = subtract(&multiply(&abs_error, &delta)?, &(0.5 * delta * delta))?;
    let per = select(&less_equal(&abs_error, &delta)?, &quadratic, &linear)?;
    reduce(last_axis_mean(&per)?, reduction)
}

/// Binary cross-entropy over the last axis, from probabilities (clipped to
/// `[EPSILON, 1 - EPSILON]`) or from logits.
///
/// # Errors
/// When shapes differ or `y_pred` is not float.
///
/// ```
/// use gradtape::{losses, Tensor};
/// let y = Tensor::from_vec(vec![1.0f32, 0.0], &[1, 2])?;
/// let logits = Tensor::from_vec(vec![1000.0f32, -1000.0], &[1, 2])?;
/// let l = losses::binary_crossentropy(&y, &logits, true, losses::Reduction::Sum)?;
/// assert_eq!(l.to_scalar::<f32>()?, 0.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn binary_crossentropy(
    y_true: &impl AsTensor,
    y_pred: &impl AsTensor,
    from_logits: bool,
    reduction: Reduction,
) -> Result<Tensor> {
    let (t, p) = pair("binary_crossentropy", y_true, y_pred)?;
    let per = if from_logits {
        sigmoid_cross_entropy_with_logits(&t, &p)?
    } else {
        let o = clip_by_value(&p, &EPSILON, &(1.0 - EPSILON))?;
        let bce = add(
            &multiply(&t, &log(&o)?)?,
            &multiply(&subtract(&1.0, &t)?, &log(&subtract(&1.0, &o)?)?)?,
        )?;
        negative(&bce)?
    };
    reduce(last_axis_mean(&per)?, reduction)
}

/// `-Σ y_true · log p` over the last axis, with `p = softmax(logits)` (from logits) or the
/// given probabilities normalised and clipped (Keras's formula).
fn categorical_core(t: &Tensor, p: &Tensor, from_logits: bool) -> Result<Tensor> {
    if p.rank() == 0 {
        return Err(Error::shape(
            "categorical_crossentropy",
            "y_pred must have a class axis, got a scalar",
        ));
    }
    if from_logits {
        return softmax_cross_entropy_with_logits(t, p, -1);
    }
    let norm = divide(p, &reduce_sum(p, -1, true)?)?;
    let log_p = log(&clip_by_value(&norm, &EPSILON, &(1.0 - EPSILON))?)?;
    negative(&reduce_sum(&multiply(t, &log_p)?, -1, false)?)
}

/// Categorical cross-entropy with one-hot (or soft) targets along the last axis.
///
/// # Errors
/// When shapes differ, `y_pred` is not float, or it has no class axis.
///
/// ```
/// use gradtape::{losses, Tensor};
/// let y = Tensor::from_vec(vec![0.0f32, 1.0], &[1, 2])?;
/// let logits = Tensor::from_vec(vec![-1000.0f32, 1000.0], &[1, 2])?;
/// let l = losses::categorical_crossentropy(&y, &logits, true, losses::Reduction::SumOverBatchSize)?;
/// assert_eq!(l.to_scalar::<f32>()?, 0.0);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn categorical_crossentropy(
    y_true: &impl AsTensor,
    y_pred: &impl AsTensor,
    from_logits: bool,
    reduction: Reduction,
) -> Result<Tensor> {
    let (t, p) = pair("categorical_crossentropy", y_true, y_pred)?;
    reduce(categorical_core(&t, &p, from_logits)?, reduction)
}

/// Categorical cross-entropy with int64 class indices as targets (shape of `y_pred` without
/// its last axis).
///
/// # Errors
/// When labels are not int64, their shape does not match, or `y_pred` is not float.
///
/// ```
/// use gradtape::{losses, Tensor};
/// let labels = Tensor::from_vec(vec![1i64, 0], &[2])?;
/// let logits = Tensor::from_vec(vec![0.0f32, 0.0, 0.0, 0.0], &[2, 2])?;
/// let l = losses::sparse_categorical_crossentropy(&labels, &logits, true, losses::Reduction::SumOverBatchSize)?;
/// assert!((l.to_scalar::<f32>()? - 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn sparse_categorical_crossentropy(
    labels: &Tensor,
    y_pred: &impl AsTensor,
    from_logits: bool,
    reduction: Reduction,
) -> Result<Tensor> {
    let p = y_pred.operand().into_tensor();
    let t = class_labels_one_hot("sparse_categorical_crossentropy", labels, &p)?;
    reduce(categorical_core(&t, &p, from_logits)?, reduction)
}
