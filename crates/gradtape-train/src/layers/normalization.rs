//! Normalization layers: `BatchNormalization` (batch statistics while training, moving ones
//! for inference, as Keras) and `LayerNormalization`. Both normalize the last axis's features
//! and are compositions of differentiable ops, so gradients, second order, `vmap` and forward
//! mode come from the ops.

use super::{float_dtype, weight, Layer};
use gradtape_core::ops;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::Variable;
use gradtape_core::{Error, Result};

fn check(layer: &'static str, name: &str, gamma: &Variable, x: &Tensor) -> Result<()> {
    let f = gamma.shape()[0];
    if x.rank() < 2 || x.shape()[x.rank() - 1] != f || x.dtype() != gamma.dtype() {
        return Err(Error::shape(
            layer,
            format!(
                "layer {name:?} normalizes {f} {} features on the last axis, got {} {:?}",
                gamma.dtype(),
                x.dtype(),
                x.shape()
            ),
        ));
    }
    Ok(())
}

/// `(x - mean) / √(variance + ε) · γ + β`.
fn normalize(
    x: &Tensor,
    mean: &Tensor,
    variance: &Tensor,
    epsilon: f64,
    gamma: &Variable,
    beta: &Variable,
) -> Result<Tensor> {
    let scale = ops::multiply(&ops::rsqrt(&ops::add(variance, &epsilon)?)?, gamma)?;
    ops::add(&ops::multiply(&ops::subtract(x, mean)?, &scale)?, beta)
}

fn check_options(name: &str, momentum: f64, epsilon: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&momentum) || epsilon.is_nan() || epsilon < 0.0 {
        return Err(Error::arg(
            "BatchNormalization",
            format!("layer {name:?}: momentum {momentum} must be in [0, 1] and epsilon {epsilon} at least 0"),
        ));
    }
    Ok(())
}

/// Keras's `BatchNormalization` over the last axis: while training, each feature is normalized
/// by the batch's mean and (biased) variance over every other axis, and the moving statistics
/// (non-trainable variables) move toward them by `momentum` (0.99); at inference the moving
/// statistics are used. `ε` is 0.001, as in Keras.
///
/// ```
/// use gradtape::layers::{BatchNormalization, Layer};
/// use gradtape::Tensor;
/// let bn = BatchNormalization::new("bn", 2, gradtape::DType::F64)?;
/// let x = Tensor::from_vec(vec![1.0f64, 10.0, 3.0, 30.0], &[2, 2])?;
/// let y = bn.call(&x, true)?.to_vec::<f64>()?;
/// assert!((y[0] + 1.0).abs() < 1e-3 && (y[3] - 1.0).abs() < 1e-5); // standardized per feature
/// // the moving mean moved 1% of the way toward the batch mean (2, 20)
/// let m = bn.moving_mean().value().to_vec::<f64>()?;
/// assert!((m[0] - 0.02).abs() < 1e-15 && (m[1] - 0.2).abs() < 1e-15);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct BatchNormalization {
    name: String,
    gamma: Variable,
    beta: Variable,
    moving_mean: Variable,
    moving_variance: Variable,
    momentum: f64,
    epsilon: f64,
}

impl BatchNormalization {
    /// A layer for `features` channels, `γ = 1`, `β = 0`, moving mean 0 and variance 1.
    ///
    /// # Errors
    /// When `dtype` is not float.
    pub fn new(name: &str, features: usize, dtype: DType) -> Result<BatchNormalization> {
        BatchNormalization::with(name, features, 0.99, 1e-3, dtype)
    }

    /// Keras's `momentum` (0.99 by default): how far the moving statistics keep their value
    /// at each training step. A builder step, so that momentum and `ε` cannot be swapped:
    /// `BatchNormalization::new("bn", 3, dtype)?.momentum(0.9)?.epsilon(1e-5)?`.
    ///
    /// # Errors
    /// When `momentum` is not in `[0, 1]`.
    ///
    /// ```
    /// use gradtape::layers::BatchNormalization;
    /// let bn = BatchNormalization::new("bn", 3, gradtape::DType::F32)?.momentum(0.9)?.epsilon(1e-5)?;
    /// assert!(BatchNormalization::new("bn", 3, gradtape::DType::F32)?.momentum(1.5).is_err());
    /// # let _ = bn;
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn momentum(mut self, momentum: f64) -> Result<BatchNormalization> {
        check_options(&self.name, momentum, self.epsilon)?;
        self.momentum = momentum;
        Ok(self)
    }

    /// Keras's `epsilon` (0.001 by default), added to the variance.
    ///
    /// # Errors
    /// When `epsilon` is negative or NaN.
    pub fn epsilon(mut self, epsilon: f64) -> Result<BatchNormalization> {
        check_options(&self.name, self.momentum, epsilon)?;
        self.epsilon = epsilon;
        Ok(self)
    }

    /// With another momentum and `ε` (positional; [`BatchNormalization::momentum`] and
    /// [`BatchNormalization::epsilon`] name them).
    ///
    /// # Errors
    /// When `dtype` is not float, or `momentum` is not in `[0, 1]`, or `epsilon` is negative.
    pub fn with(
        name: &str,
        features: usize,
        momentum: f64,
        epsilon: f64,
        dtype: DType,
    ) -> Result<BatchNormalization> {
        float_dtype("BatchNormalization", dtype)?;
        check_options(name, momentum, epsilon)?;
        let v = |what: &str, value: Tensor, trainable: bool| weight(name, what, value, trainable);
        Ok(BatchNormalization {
            name: name.to_string(),
            gamma: v("gamma", Tensor::ones(&[features], dtype)?, true),
            beta: v("beta", Tensor::zeros(&[features], dtype)?, true),
            moving_mean: v("moving_mean", Tensor::zeros(&[features], dtype)?, false),
            moving_variance: v("moving_variance", Tensor::ones(&[features], dtype)?, false),
            momentum,
            epsilon,
        })
    }

    /// The moving mean (`{name}/moving_mean`).
    pub fn moving_mean(&self) -> &Variable {
        &self.moving_mean
    }
    /// The moving variance (`{name}/moving_variance`).
    pub fn moving_variance(&self) -> &Variable {
        &self.moving_variance
    }
    /// `γ` (`{name}/gamma`).
    pub fn gamma(&self) -> &Variable {
        &self.gamma
    }
    /// `β` (`{name}/beta`).
    pub fn beta(&self) -> &Variable {
        &self.beta
    }

    /// `moving ← moving · momentum + batch · (1 - momentum)`, off every tape.
    fn update(&self, moving: &Variable, batch: &Tensor) -> Result<()> {
        let batch = ops::stop_gradient(batch)?;
        let kept = ops::multiply(&moving.value(), &self.momentum)?;
        moving.assign(&ops::add(
            &kept,
            &ops::multiply(&batch, &(1.0 - self.momentum))?,
        )?)
    }
}

impl Layer for BatchNormalization {
    fn call(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        check("BatchNormalization", &self.name, &self.gamma, x)?;
        if !training {
            return normalize(
                x,
                &self.moving_mean.read_value(),
                &self.moving_variance.read_value(),
                self.epsilon,
                &self.gamma,
                &self.beta,
            );
        }
        let axes: Vec<isize> = (0..x.rank() as isize - 1).collect();
        let mean = ops::reduce_mean(x, axes.clone(), false)?;
        let variance = ops::reduce_mean(&ops::square(&ops::subtract(x, &mean)?)?, axes, false)?;
        self.update(&self.moving_mean, &mean)?;
        self.update(&self.moving_variance, &variance)?;
        normalize(x, &mean, &variance, self.epsilon, &self.gamma, &self.beta)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![self.gamma.clone(), self.beta.clone()]
    }
    fn non_trainable_variables(&self) -> Vec<Variable> {
        vec![self.moving_mean.clone(), self.moving_variance.clone()]
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn class_name(&self) -> &'static str {
        "BatchNormalization"
    }
}

/// Keras's `LayerNormalization` over the last axis: each example's features normalized by
/// their own mean and variance, then scaled by `γ` and shifted by `β` (`ε` = 0.001).
///
/// ```
/// use gradtape::layers::{Layer, LayerNormalization};
/// use gradtape::Tensor;
/// let ln = LayerNormalization::new("ln", 3, gradtape::DType::F64)?;
/// let y = ln.call(&Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[1, 3])?, false)?.to_vec::<f64>()?;
/// assert!(y[1].abs() < 1e-12 && (y[0] + y[2]).abs() < 1e-12);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct LayerNormalization {
    name: String,
    gamma: Variable,
    beta: Variable,
    epsilon: f64,
}

impl LayerNormalization {
    /// A layer for `features` on the last axis, `γ = 1`, `β = 0`, `ε` = 0.001.
    ///
    /// # Errors
    /// When `dtype` is not float.
    pub fn new(name: &str, features: usize, dtype: DType) -> Result<LayerNormalization> {
        float_dtype("LayerNormalization", dtype)?;
        Ok(LayerNormalization {
            name: name.to_string(),
            gamma: weight(name, "gamma", Tensor::ones(&[features], dtype)?, true),
            beta: weight(name, "beta", Tensor::zeros(&[features], dtype)?, true),
            epsilon: 1e-3,
        })
    }
}

impl Layer for LayerNormalization {
    fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        check("LayerNormalization", &self.name, &self.gamma, x)?;
        let mean = ops::reduce_mean(x, -1, true)?;
        let variance = ops::reduce_mean(&ops::square(&ops::subtract(x, &mean)?)?, -1, true)?;
        normalize(x, &mean, &variance, self.epsilon, &self.gamma, &self.beta)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![self.gamma.clone(), self.beta.clone()]
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn class_name(&self) -> &'static str {
        "LayerNormalization"
    }
}
