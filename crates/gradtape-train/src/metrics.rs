//! Metrics: a running mean, accuracies and a confusion matrix.

use gradtape_core::ops;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::{Error, Result};

/// A running (weighted) mean, as Keras's `metrics.Mean`.
///
/// ```
/// let mut m = gradtape::metrics::Mean::default();
/// m.update_state(&gradtape::Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?)?;
/// m.update(5.0);
/// assert_eq!(m.result(), 2.75);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Mean {
    total: f64,
    count: f64,
}

impl Mean {
    /// Adds every element of `values`.
    ///
    /// ```
    /// let mut m = gradtape::metrics::Mean::default();
    /// m.update_state(&gradtape::Tensor::from_vec(vec![2.0f32, 4.0], &[2])?)?;
    /// assert_eq!(m.result(), 3.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    ///
    /// # Errors
    /// When `values` is a pending tensor whose elements cannot be computed.
    pub fn update_state(&mut self, values: &Tensor) -> gradtape_core::Result<()> {
        for v in values.to_f64_vec()? {
            self.update(v);
        }
        Ok(())
    }
    /// Adds one value.
    ///
    /// ```
    /// let mut m = gradtape::metrics::Mean::default();
    /// m.update(1.0);
    /// assert_eq!(m.result(), 1.0);
    /// ```
    pub fn update(&mut self, v: f64) {
        self.update_weighted(v, 1.0);
    }
    /// Adds a value that counts `weight` times (a batch's mean, weighted by its size).
    ///
    /// ```
    /// let mut m = gradtape::metrics::Mean::default();
    /// m.update_weighted(1.0, 3.0);
    /// m.update(5.0);
    /// assert_eq!(m.result(), 2.0);
    /// ```
    pub fn update_weighted(&mut self, v: f64, weight: f64) {
        self.total += v * weight;
        self.count += weight;
    }
    /// The mean so far (0 before any value).
    ///
    /// ```
    /// assert_eq!(gradtape::metrics::Mean::default().result(), 0.0);
    /// ```
    pub fn result(&self) -> f64 {
        if self.count == 0.0 {
            0.0
        } else {
            self.total / self.count
        }
    }
    /// Forgets everything.
    ///
    /// ```
    /// let mut m = gradtape::metrics::Mean::default();
    /// m.update(1.0);
    /// m.reset_state();
    /// assert_eq!(m.result(), 0.0);
    /// ```
    pub fn reset_state(&mut self) {
        *self = Mean::default();
    }
}

/// The fraction of positions where `y_true == y_pred`: class labels against predicted class
/// labels (Keras's `Accuracy`).
///
/// # Errors
/// When shapes or dtypes differ, or `y_pred` holds values that are not whole numbers
/// (probabilities or scores: use [`binary_accuracy`], [`categorical_accuracy`] or
/// [`sparse_categorical_accuracy`], which know what a prediction is).
///
/// ```
/// let t = gradtape::Tensor::from_vec(vec![1i64, 2, 3, 4], &[4])?;
/// let p = gradtape::Tensor::from_vec(vec![1i64, 2, 0, 4], &[4])?;
/// assert_eq!(gradtape::metrics::accuracy(&t, &p)?, 0.75);
/// let probs = gradtape::Tensor::from_vec(vec![0.9f32, 0.2, 0.6, 0.7], &[4])?;
/// assert!(gradtape::metrics::accuracy(&t.cast(gradtape::DType::F32)?, &probs).is_err());
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn accuracy(y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
    let op = "accuracy";
    comparable(op, y_true, y_pred)?;
    if y_pred.dtype().is_float() && y_pred.to_f64_vec()?.iter().any(|v| v.fract() != 0.0) {
        return Err(Error::arg(
            op,
            format!(
                "y_pred {} {:?} holds values that are not class labels (probabilities?): use binary_accuracy, categorical_accuracy or sparse_categorical_accuracy",
                y_pred.dtype(),
                y_pred.shape()
            ),
        ));
    }
    mean_equal(y_true, y_pred)
}

fn comparable(op: &'static str, y_true: &Tensor, y_pred: &Tensor) -> Result<()> {
    if y_true.shape() != y_pred.shape() || y_true.dtype() != y_pred.dtype() {
        return Err(Error::shape(
            op,
            format!(
                "y_true {} {:?} and y_pred {} {:?} cannot be compared (shapes and dtypes must match)",
                y_true.dtype(),
                y_true.shape(),
                y_pred.dtype(),
                y_pred.shape()
            ),
        ));
    }
    Ok(())
}

fn mean_equal(a: &Tensor, b: &Tensor) -> Result<f64> {
    let eq = ops::cast(&ops::equal(a, b)?, DType::F64)?;
    let n = eq.numel().max(1) as f64;
    Ok(eq.to_f64_vec()?.iter().sum::<f64>() / n)
}

/// The fraction of predictions on the right side of `threshold` (Keras's `binary_accuracy`:
/// `y_pred > threshold` against labels 0/1; Keras's default threshold is 0.5 for
/// probabilities, use 0 for logits).
///
/// # Errors
/// When shapes differ, `y_pred` is not float, or `y_true` holds something other than 0 and 1.
///
/// ```
/// let t = gradtape::Tensor::from_vec(vec![1.0f32, 0.0, 1.0, 0.0], &[4])?;
/// let p = gradtape::Tensor::from_vec(vec![0.9f32, 0.2, 0.4, 0.7], &[4])?;
/// assert_eq!(gradtape::metrics::binary_accuracy(&t, &p, 0.5)?, 0.5);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn binary_accuracy(y_true: &Tensor, y_pred: &Tensor, threshold: f64) -> Result<f64> {
    let op = "binary_accuracy";
    if y_true.shape() != y_pred.shape() || !y_pred.dtype().is_float() {
        return Err(Error::shape(
            op,
            format!(
                "y_true {} {:?} and y_pred {} {:?}: need one shape and float predictions",
                y_true.dtype(),
                y_true.shape(),
                y_pred.dtype(),
                y_pred.shape()
            ),
        ));
    }
    let labels = y_true.to_f64_vec()?;
    if let Some(v) = labels.iter().find(|&&v| v != 0.0 && v != 1.0) {
        return Err(Error::arg(
            op,
            format!("y_true holds {v}; binary labels are 0 and 1"),
        ));
    }
    let pred = y_pred.to_f64_vec()?;
    let hits = labels
        .iter()
        .zip(&pred)
        .filter(|(&t, &p)| (p > threshold) == (t == 1.0))
        .count();
    Ok(hits as f64 / labels.len().max(1) as f64)
}

/// The fraction of rows whose largest prediction is where the one-hot `y_true` has its 1
/// (Keras's `categorical_accuracy`).
///
/// # Errors
/// When shapes differ or the tensors have no class axis.
///
/// ```
/// let t = gradtape::Tensor::from_vec(vec![0.0f32, 1.0, 1.0, 0.0], &[2, 2])?;
/// let p = gradtape::Tensor::from_vec(vec![0.1f32, 0.9, 0.2, 0.8], &[2, 2])?;
/// assert_eq!(gradtape::metrics::categorical_accuracy(&t, &p)?, 0.5);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn categorical_accuracy(y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
    let op = "categorical_accuracy";
    if y_true.shape() != y_pred.shape() || y_pred.rank() == 0 {
        return Err(Error::shape(
            op,
            format!(
                "y_true {:?} (one-hot) and y_pred {:?} must have one shape with a class axis last",
                y_true.shape(),
                y_pred.shape()
            ),
        ));
    }
    mean_equal(&ops::argmax(y_true, -1)?, &ops::argmax(y_pred, -1)?)
}

/// The fraction of rows whose largest score is at the integer label (Keras's
/// `sparse_categorical_accuracy`). Labels may be int64 or whole floats, shaped as `scores`
/// without its last axis (or with a last axis of 1, as Keras allows).
///
/// # Errors
/// When labels are not whole numbers or do not have the shape of `scores` without its last
/// axis.
///
/// ```
/// let labels = gradtape::Tensor::from_vec(vec![1i64, 0], &[2])?;
/// let scores = gradtape::Tensor::from_vec(vec![0.1f32, 0.9, 0.2, 0.8], &[2, 2])?;
/// assert_eq!(gradtape::metrics::sparse_categorical_accuracy(&labels, &scores)?, 0.5);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn sparse_categorical_accuracy(labels: &Tensor, scores: &Tensor) -> Result<f64> {
    let op = "sparse_categorical_accuracy";
    let rows = &scores.shape()[..scores.rank().saturating_sub(1)];
    let labels =
        if labels.shape().last() == Some(&1) && &labels.shape()[..labels.rank() - 1] == rows {
            ops::squeeze(labels, &[-1])?
        } else {
            labels.clone()
        };
    if scores.rank() == 0 || labels.shape() != rows || labels.dtype() == DType::Bool {
        return Err(Error::shape(
            op,
            format!(
                "labels {} {:?} must be integers shaped as scores {:?} without the class axis",
                labels.dtype(),
                labels.shape(),
                scores.shape()
            ),
        ));
    }
    let labels = match labels.dtype() {
        DType::I64 => labels,
        _ => {
            if let Some(v) = labels.to_f64_vec()?.iter().find(|v| v.fract() != 0.0) {
                return Err(Error::arg(op, format!("label {v} is not a class index")));
            }
            ops::cast(&labels, DType::I64)?
        }
    };
    mean_equal(&labels, &ops::argmax(scores, -1)?)
}

/// `matrix[i][j]` counts the samples of true class `i` predicted as class `j` (TensorFlow's
/// `tf.math.confusion_matrix` orientation).
///
/// # Errors
/// When the inputs are not int64 of one shape or hold a class outside `[0, num_classes)`.
///
/// ```
/// let t = gradtape::Tensor::from_vec(vec![0i64, 1, 1], &[3])?;
/// let p = gradtape::Tensor::from_vec(vec![0i64, 0, 1], &[3])?;
/// let m = gradtape::metrics::confusion_matrix(&t, &p, 2)?;
/// assert_eq!(m, vec![vec![1, 0], vec![1, 1]]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn confusion_matrix(
    labels: &Tensor,
    predictions: &Tensor,
    num_classes: usize,
) -> Result<Vec<Vec<u64>>> {
    let op = "confusion_matrix";
    if labels.shape() != predictions.shape() {
        return Err(Error::shape(
            op,
            format!(
                "labels {:?} and predictions {:?} differ",
                labels.shape(),
                predictions.shape()
            ),
        ));
    }
    let (t, p) = (labels.to_vec::<i64>()?, predictions.to_vec::<i64>()?);
    let mut m = vec![vec![0u64; num_classes]; num_classes];
    for (&a, &b) in t.iter().zip(&p) {
        let ok = |v: i64| v >= 0 && (v as u64) < num_classes as u64;
        if !ok(a) || !ok(b) {
            return Err(Error::index(
                op,
                format!(
                    "class {} is not in [0, {num_classes})",
                    if ok(a) { b } else { a }
                ),
            ));
        }
        m[a as usize][b as usize] += 1;
    }
    Ok(m)
}
