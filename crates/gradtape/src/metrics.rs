//! Metrics: a running mean, accuracies and a confusion matrix.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

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
    pub fn update_state(&mut self, values: &Tensor) -> crate::Result<()> {
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

/// The fraction of positions where `y_true == y_pred` (any dtype, same shape).
///
/// # Errors
/// When shapes or dtypes differ.
///
/// ```
/// let t = gradtape::Tensor::from_vec(vec![1i64, 2, 3, 4], &[4])?;
/// let p = gradtape::Tensor::from_vec(vec![1i64, 2, 0, 4], &[4])?;
/// assert_eq!(gradtape::metrics::accuracy(&t, &p)?, 0.75);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn accuracy(y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
    if y_true.shape() != y_pred.shape() {
        return Err(Error::shape(
            "accuracy",
            format!(
                "y_true {:?} and y_pred {:?} differ",
                y_true.shape(),
                y_pred.shape()
            ),
        ));
    }
    let eq = ops::cast(&ops::equal(y_true, y_pred)?, DType::F64)?;
    let n = eq.numel().max(1) as f64;
    Ok(eq.to_f64_vec()?.iter().sum::<f64>() / n)
}

/// The fraction of rows whose largest score is at the int64 label (Keras's
/// `sparse_categorical_accuracy`).
///
/// # Errors
/// When labels are not int64 or do not have the shape of `scores` without its last axis.
///
/// ```
/// let labels = gradtape::Tensor::from_vec(vec![1i64, 0], &[2])?;
/// let scores = gradtape::Tensor::from_vec(vec![0.1f32, 0.9, 0.2, 0.8], &[2, 2])?;
/// assert_eq!(gradtape::metrics::sparse_categorical_accuracy(&labels, &scores)?, 0.5);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn sparse_categorical_accuracy(labels: &Tensor, scores: &Tensor) -> Result<f64> {
    if labels.dtype() != DType::I64 {
        return Err(Error::dtype(
            "sparse_categorical_accuracy",
            format!("labels must be int64, got {}", labels.dtype()),
        ));
    }
    accuracy(labels, &ops::argmax(scores, -1)?)
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
