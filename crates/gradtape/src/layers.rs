//! Keras-style layers: `Dense`, `Dropout`, `Sequential`, and the [`Layer`] trait a model of your
//! own implements (the seed's `regression` class is one).
//!
//! ```
//! use gradtape::layers::{Activation, Dense, Layer, Sequential};
//! use gradtape::random::Generator;
//! use gradtape::{DType, Tensor};
//! let mut rng = Generator::from_seed(0);
//! let model = Sequential::new(vec![
//!     Box::new(Dense::new("hidden", 4, 8, Activation::Relu, DType::F32, &mut rng)?),
//!     Box::new(Dense::new("out", 8, 3, Activation::Linear, DType::F32, &mut rng)?),
//! ]);
//! let y = model.call(&Tensor::ones(&[2, 4], DType::F32)?, false)?;
//! assert_eq!(y.shape(), &[2, 3]);
//! assert_eq!(model.trainable_variables().len(), 4);
//! # Ok::<(), gradtape::Error>(())
//! ```
//!
//! A model of your own is a struct holding variables, with a `call`:
//!
//! ```
//! use gradtape::layers::Layer;
//! use gradtape::{ops, Result, Tensor, Variable};
//! struct Regression { a: Variable, b: Variable }
//! impl Layer for Regression {
//!     fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
//!         ops::add(&self.a, &ops::multiply(&self.b, x)?)
//!     }
//!     fn trainable_variables(&self) -> Vec<Variable> {
//!         vec![self.a.clone(), self.b.clone()]
//!     }
//! }
//! let m = Regression { a: Variable::new(0.5), b: Variable::new(2.0) };
//! assert_eq!(m.call(&Tensor::scalar(1.0f32), false)?.to_scalar::<f32>()?, 2.5);
//! # Ok::<(), gradtape::Error>(())
//! ```

use std::sync::Mutex;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops;
use crate::random::Generator;
use crate::tensor::Tensor;
use crate::variable::{Variable, VariableOptions};

/// A piece of a model: a function of its input with variables of its own.
///
/// ```
/// use gradtape::layers::{Activation, Dense, Layer};
/// let mut rng = gradtape::random::Generator::from_seed(0);
/// let d: Box<dyn Layer> = Box::new(Dense::new("d", 3, 2, Activation::Tanh, gradtape::DType::F32, &mut rng)?);
/// assert_eq!(d.trainable_variables().len(), 2);
/// # Ok::<(), gradtape::Error>(())
/// ```
/// Layers are `Send + Sync`, so a model can move to, or be shared with, worker threads.
pub trait Layer: Send + Sync {
    /// The forward pass; `training` switches layers like `Dropout` on.
    ///
    /// # Errors
    /// When the input does not fit the layer (the message names the shapes).
    fn call(&self, x: &Tensor, training: bool) -> Result<Tensor>;
    /// The variables a tape should differentiate and an optimizer update.
    fn trainable_variables(&self) -> Vec<Variable>;
}

/// Activation functions applied by a layer.
///
/// ```
/// use gradtape::layers::Activation;
/// let x = gradtape::Tensor::from_vec(vec![0.0f32, 0.0], &[2])?;
/// assert_eq!(Activation::Softmax.apply(&x)?.to_vec::<f32>()?, vec![0.5, 0.5]);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The identity.
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// The logistic function.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Softmax over the last axis.
    Softmax,
    /// Exponential linear unit.
    Elu,
}

impl Activation {
    /// Applies the activation.
    ///
    /// # Errors
    /// When the input is not float.
    ///
    /// ```
    /// use gradtape::layers::Activation;
    /// assert_eq!(Activation::Relu.apply(&gradtape::Tensor::scalar(-1.0f32))?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Linear => Ok(x.clone()),
            Activation::Relu => ops::relu(x),
            Activation::Sigmoid => ops::sigmoid(x),
            Activation::Tanh => ops::tanh(x),
            Activation::Softmax => ops::softmax(x, -1),
            Activation::Elu => ops::elu(x),
        }
    }
}

/// How a layer's kernel starts.
///
/// ```
/// assert_eq!(gradtape::layers::Initializer::default(), gradtape::layers::Initializer::GlorotUniform);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Initializer {
    /// Uniform in `±√(6 / (fan_in + fan_out))` (Keras's default).
    #[default]
    GlorotUniform,
    /// Uniform in `±√(6 / fan_in)` (for ReLU layers).
    HeUniform,
    /// Normal with standard deviation `√(2 / fan_in)`, truncated at two standard deviations.
    HeNormal,
    /// Zeros.
    Zeros,
}

impl Initializer {
    /// A `[fan_in, fan_out]` tensor drawn from the initializer.
    ///
    /// # Errors
    /// When `dtype` is not a float type.
    ///
    /// ```
    /// use gradtape::layers::Initializer;
    /// let mut g = gradtape::random::Generator::from_seed(1);
    /// let k = Initializer::GlorotUniform.sample(3, 5, gradtape::DType::F32, &mut g)?;
    /// let limit = (6.0f32 / 8.0).sqrt();
    /// assert!(k.to_vec::<f32>()?.iter().all(|v| v.abs() <= limit));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn sample(
        self,
        fan_in: usize,
        fan_out: usize,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Tensor> {
        let shape = [fan_in, fan_out];
        match self {
            Initializer::GlorotUniform => {
                let l = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
                rng.uniform(&shape, -l, l, dtype)
            }
            Initializer::HeUniform => {
                let l = (6.0 / fan_in.max(1) as f64).sqrt();
                rng.uniform(&shape, -l, l, dtype)
            }
            Initializer::HeNormal => {
                // Keras: the truncated normal's stddev is divided by 0.8796... so that the kept
                // values have variance 2 / fan_in.
                let sd = (2.0 / fan_in.max(1) as f64).sqrt() / 0.879_625_661_034_239_8;
                let v: Vec<f64> = (0..fan_in * fan_out)
                    .map(|_| loop {
                        let z = rng.next_normal();
                        if z.abs() <= 2.0 {
                            break z * sd;
                        }
                    })
                    .collect();
                Tensor::from_vec(v, &shape)?.cast(dtype)
            }
            Initializer::Zeros => Tensor::zeros(&shape, dtype),
        }
    }
}

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
        let u = {
            let mut g = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            g.uniform(x.shape(), 0.0, 1.0, x.dtype())?
        };
        let keep = ops::cast(&ops::greater_equal(&u, &self.rate)?, x.dtype())?;
        ops::multiply(&ops::multiply(x, &keep)?, &(1.0 / (1.0 - self.rate)))
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![]
    }
}

/// Layers applied one after another.
///
/// ```
/// use gradtape::layers::{Dropout, Layer, Sequential};
/// let s = Sequential::new(vec![Box::new(Dropout::new(0.5, 0)?)]);
/// assert!(s.trainable_variables().is_empty());
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Sequential {
    /// The layers, in order.
    pub layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// A model from its layers.
    ///
    /// ```
    /// use gradtape::layers::{Layer, Sequential};
    /// let s = Sequential::new(vec![]);
    /// let x = gradtape::Tensor::scalar(1.0f32);
    /// assert_eq!(s.call(&x, false)?.to_scalar::<f32>()?, 1.0);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn new(layers: Vec<Box<dyn Layer>>) -> Sequential {
        Sequential { layers }
    }
}

impl Layer for Sequential {
    fn call(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for l in &self.layers {
            y = l.call(&y, training)?;
        }
        Ok(y)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        self.layers
            .iter()
            .flat_map(|l| l.trainable_variables())
            .collect()
    }
}
