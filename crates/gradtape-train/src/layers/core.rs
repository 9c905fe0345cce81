//! The core layers: `Dense`, `Dropout`, `Flatten`, `Reshape`.

use std::sync::Mutex;

use super::{Activation, Initializer, Layer};
use gradtape_core::ops;
use gradtape_core::random::Generator;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::{Error, Result};
use gradtape_core::{Variable, VariableOptions};

/// A fully connected layer: `activation(x · kernel + bias)`.
///
/// ```
/// use gradtape::layers::{Activation, Dense};
/// let mut rng = gradtape::random::Generator::from_seed(0);
/// let d = Dense::new("d", 3, 2, Activation::Linear, gradtape::DType::F32, &mut rng)?;
/// assert_eq!(d.kernel.shape(), &[3, 2]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Dense {
    /// `[inputs, units]`, named `{name}/kernel`.
    pub kernel: Variable,
    /// `[units]`, named `{name}/bias`, when the layer has one.
    pub bias: Option<Variable>,
    /// The activation.
    pub activation: Activation,
}

impl Dense {
    /// A layer with Glorot-uniform kernel, zero bias and the given activation.
    ///
    /// # Errors
    /// When `dtype` is not a float type.
    ///
    /// ```
    /// use gradtape::layers::{Activation, Dense, Layer};
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let d = Dense::new("d", 2, 3, Activation::Linear, gradtape::DType::F64, &mut rng)?;
    /// assert_eq!(d.kernel.name(), Some("d/kernel"));
    /// assert_eq!(d.call(&gradtape::Tensor::zeros(&[5, 2], gradtape::DType::F64)?, false)?.shape(), &[5, 3]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn new(
        name: &str,
        inputs: usize,
        units: usize,
        activation: Activation,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Dense> {
        Dense::with_options(
            name,
            inputs,
            units,
            activation,
            Initializer::GlorotUniform,
            true,
            dtype,
            rng,
        )
    }

    /// A layer with a chosen initializer and an optional bias.
    ///
    /// # Errors
    /// When `dtype` is not a float type.
    ///
    /// ```
    /// use gradtape::layers::{Activation, Dense, Initializer};
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let d = Dense::with_options("d", 4, 2, Activation::Relu, Initializer::HeNormal, false, gradtape::DType::F32, &mut rng)?;
    /// assert!(d.bias.is_none());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn with_options(
        name: &str,
        inputs: usize,
        units: usize,
        activation: Activation,
        initializer: Initializer,
        use_bias: bool,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Dense> {
        if !dtype.is_float() {
            return Err(Error::dtype(
                "Dense",
                format!("layers hold float32 or float64 variables, not {dtype}"),
            ));
        }
        let named = |n: &str| VariableOptions {
            name: Some(format!("{name}/{n}")),
            trainable: true,
        };
        let kernel = Variable::with_options(
            initializer.sample(inputs, units, dtype, rng)?,
            named("kernel"),
        );
        let bias = match use_bias {
            true => Some(Variable::with_options(
                Tensor::zeros(&[units], dtype)?,
                named("bias"),
            )),
            false => None,
        };
        Ok(Dense {
            kernel,
            bias,
            activation,
        })
    }
}

impl Dense {
    /// The name given at creation (the prefix of its variables' names).
    ///
    /// ```
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let d = gradtape::layers::Dense::new("hidden", 4, 2, gradtape::layers::Activation::Relu, gradtape::DType::F32, &mut rng)?;
    /// assert_eq!(d.name(), "hidden");
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        let full = self.kernel.name().unwrap_or("dense/kernel");
        full.strip_suffix("/kernel").unwrap_or(full)
    }
}

impl Layer for Dense {
    fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let (inputs, units) = (self.kernel.shape()[0], self.kernel.shape()[1]);
        if x.shape().len() < 2
            || x.shape()[x.shape().len() - 1] != inputs
            || x.dtype() != self.kernel.dtype()
        {
            return Err(Error::shape(
                "Dense",
                format!(
                    "layer {:?} ({inputs} inputs -> {units} units, {}) expects input of shape [batch, ..., {inputs}] and dtype {}, got {:?} {}",
                    self.name(),
                    self.kernel.dtype(),
                    self.kernel.dtype(),
                    x.shape(),
                    x.dtype()
                ),
            ));
        }
        let mut y = ops::matmul(x, &self.kernel)?;
        if let Some(b) = &self.bias {
            y = ops::add(&y, b)?;
        }
        self.activation.apply(&y)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        std::iter::once(self.kernel.clone())
            .chain(self.bias.clone())
            .collect()
    }
    fn name(&self) -> &str {
        Dense::name(self)
    }
    fn class_name(&self) -> &'static str {
        "Dense"
    }
}

/// Drops each input to 0 with probability `rate` while training and scales the rest by
/// `1 / (1 - rate)`; the identity otherwise.
///
/// ```
/// assert!(gradtape::layers::Dropout::new(1.0, 0).is_err());
/// ```
pub struct Dropout {
    rate: f64,
    rng: Mutex<Generator>,
}

impl Dropout {
    /// Dropout with this rate in `[0, 1)` and its own seeded generator.
    ///
    /// # Errors
    /// When `rate` is not in `[0, 1)`.
    ///
    /// ```
    /// use gradtape::layers::{Dropout, Layer};
    /// let d = Dropout::new(0.5, 0)?;
    /// let x = gradtape::Tensor::ones(&[1000], gradtape::DType::F32)?;
    /// assert_eq!(d.call(&x, false)?.to_vec::<f32>()?, x.to_vec::<f32>()?);
    /// let kept = d.call(&x, true)?.to_vec::<f32>()?.iter().filter(|&&v| v > 0.0).count();
    /// assert!((400..600).contains(&kept));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn new(rate: f64, seed: u64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::arg(
                "Dropout",
                format!("rate {rate} is not in [0, 1)"),
            ));
        }
        Ok(Dropout {
            rate,
            rng: Mutex::new(Generator::from_seed(seed)),
        })
    }
}

impl Layer for Dropout {
    fn call(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if !training || self.rate == 0.0 {
            return Ok(x.clone());
        }
        let keep = super::dropout_mask(&self.rng, x.shape(), self.rate, x.dtype())?;
        ops::multiply(x, &keep)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![]
    }
    fn class_name(&self) -> &'static str {
        "Dropout"
    }
}

/// Keras's `Flatten`: each example's axes joined into one (`[batch, h, w, c]` to
/// `[batch, h·w·c]`).
///
/// ```
/// use gradtape::layers::{Flatten, Layer};
/// let x = gradtape::Tensor::zeros(&[2, 3, 4], gradtape::DType::F32)?;
/// assert_eq!(Flatten.call(&x, false)?.shape(), &[2, 12]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Flatten;

impl Layer for Flatten {
    fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let Some(&batch) = x.shape().first() else {
            return Err(Error::shape(
                "Flatten",
                "expects a batch axis, got a scalar",
            ));
        };
        let rest: usize = x.shape()[1..].iter().product();
        ops::reshape(x, &[batch as isize, rest as isize])
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![]
    }
    fn class_name(&self) -> &'static str {
        "Flatten"
    }
}

/// Keras's `Reshape`: each example to `target` (one axis may be `-1`); the batch axis stays.
///
/// ```
/// use gradtape::layers::{Layer, Reshape};
/// let x = gradtape::Tensor::zeros(&[2, 12], gradtape::DType::F32)?;
/// assert_eq!(Reshape::new(&[3, -1]).call(&x, false)?.shape(), &[2, 3, 4]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Reshape {
    target: Vec<isize>,
}

impl Reshape {
    /// A layer reshaping each example to `target`.
    pub fn new(target: &[isize]) -> Reshape {
        Reshape {
            target: target.to_vec(),
        }
    }
}

impl Layer for Reshape {
    fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let Some(&batch) = x.shape().first() else {
            return Err(Error::shape(
                "Reshape",
                "expects a batch axis, got a scalar",
            ));
        };
        let mut shape = vec![batch as isize];
        shape.extend_from_slice(&self.target);
        ops::reshape(x, &shape)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![]
    }
    fn class_name(&self) -> &'static str {
        "Reshape"
    }
}
