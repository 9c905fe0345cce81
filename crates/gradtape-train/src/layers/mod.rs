//! Keras-style layers, with Keras's defaults and numbers: `Dense`, `Dropout`, `Flatten`,
//! `Reshape` (core); `Conv1D`, `Conv2D`, `DepthwiseConv2D`, `Conv2DTranspose` (convolution);
//! max, average and global pooling; `BatchNormalization`, `LayerNormalization`; `Embedding`;
//! `MultiHeadAttention`; `SimpleRNN`, `LSTM`, `GRU` (recurrent); models as a [`Sequential`] stack or a [`Functional`] graph (residual
//! blocks), each with a Keras-like `summary`; and the [`Layer`] trait a model of your own
//! implements (the seed's `regression` class is one).
//!
//! Unlike Keras, a layer is built when it is made: it is told its input's size (channels,
//! features) then, so its variables exist before the first call and a checkpoint can be restored
//! into a fresh model.
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

mod attention;
mod conv;
mod core;
mod embedding;
mod functional;
mod normalization;
mod pooling;
mod recurrent;

pub use self::core::{Dense, Dropout, Flatten, Reshape};
pub use attention::MultiHeadAttention;
pub use conv::{Conv1D, Conv2D, Conv2DTranspose, ConvConfig, DepthwiseConv2D};
pub use embedding::Embedding;
pub use functional::{Functional, FunctionalBuilder, Node};
pub use normalization::{BatchNormalization, LayerNormalization};
pub use pooling::{
    AveragePooling1D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling1D,
    MaxPooling2D,
};
pub use recurrent::{Bidirectional, Masking, MergeMode, RecurrentLayer, SimpleRNN, GRU, LSTM};

use gradtape_core::ops;
use gradtape_core::random::Generator;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::{Error, Result};
use gradtape_core::{Variable, VariableOptions};

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
    /// Variables the layer updates itself (`BatchNormalization`'s moving statistics): saved
    /// and restored by checkpoints, never trained.
    fn non_trainable_variables(&self) -> Vec<Variable> {
        vec![]
    }
    /// Every variable, trainable first: what a checkpoint of the model holds.
    fn variables(&self) -> Vec<Variable> {
        let mut v = self.trainable_variables();
        v.extend(self.non_trainable_variables());
        v
    }
    /// Keras's `get_weights`: every variable's value in [`Layer::variables`]' order (trainable
    /// first, as Keras orders `weights`).
    fn get_weights(&self) -> Vec<Tensor> {
        self.variables().iter().map(Variable::value).collect()
    }
    /// Keras's `set_weights`: assigns `weights` in [`Layer::get_weights`]' order. All are
    /// checked before any is assigned, so a bad list changes nothing.
    ///
    /// # Errors
    /// When the count, a shape or a dtype differs (the message names the layer and the
    /// variable).
    ///
    /// ```
    /// use gradtape::layers::{Activation, Dense, Layer};
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let a = Dense::new("a", 3, 2, Activation::Linear, gradtape::DType::F32, &mut rng)?;
    /// let b = Dense::new("b", 3, 2, Activation::Linear, gradtape::DType::F32, &mut rng)?;
    /// b.set_weights(&a.get_weights())?; // b now computes what a computes
    /// let x = gradtape::Tensor::ones(&[1, 3], gradtape::DType::F32)?;
    /// assert_eq!(a.call(&x, false)?.to_vec::<f32>()?, b.call(&x, false)?.to_vec::<f32>()?);
    /// assert!(b.set_weights(&a.get_weights()[..1]).is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    fn set_weights(&self, weights: &[Tensor]) -> Result<()> {
        let vars = self.variables();
        let layer = match self.name() {
            "" => self.class_name().to_string(),
            name => format!("{} {name:?}", self.class_name()),
        };
        if weights.len() != vars.len() {
            return Err(Error::arg(
                "set_weights",
                format!(
                    "{layer} has {} weights, {} were given",
                    vars.len(),
                    weights.len()
                ),
            ));
        }
        for (v, w) in vars.iter().zip(weights) {
            if v.shape() != w.shape() || v.dtype() != w.dtype() {
                return Err(Error::shape(
                    "set_weights",
                    format!(
                        "{layer}: weight {:?} is {}{:?}, the value given is {}{:?}",
                        v.name().unwrap_or("Variable"),
                        v.dtype(),
                        v.shape(),
                        w.dtype(),
                        w.shape()
                    ),
                ));
            }
        }
        vars.iter().zip(weights).try_for_each(|(v, w)| v.assign(w))
    }
    /// The name given at creation (Keras's `name`), shown by `summary`.
    fn name(&self) -> &str {
        ""
    }
    /// The layer's kind, as Keras's `summary` shows it (`Conv2D`, `Dense`).
    fn class_name(&self) -> &'static str {
        "Layer"
    }
}

/// A float dtype for a layer's variables, or an error naming the layer.
pub(crate) fn float_dtype(layer: &'static str, dtype: DType) -> Result<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(Error::dtype(
            layer,
            format!("layers hold float32 or float64 variables, not {dtype}"),
        ))
    }
}

/// An inverted-dropout mask of `shape` drawn from `rng`: 0 with probability `rate`,
/// `1 / (1 - rate)` elsewhere (Keras's scaling), for `Dropout` and the recurrent layers.
pub(crate) fn dropout_mask(
    rng: &std::sync::Mutex<Generator>,
    shape: &[usize],
    rate: f64,
    dtype: DType,
) -> Result<Tensor> {
    let u = {
        let mut g = rng.lock().unwrap_or_else(|e| e.into_inner());
        g.uniform(shape, 0.0, 1.0, dtype)?
    };
    let keep = ops::cast(&ops::greater_equal(&u, &rate)?, dtype)?;
    ops::multiply(&keep, &(1.0 / (1.0 - rate)))
}

/// A variable named `{layer}/{what}`.
pub(crate) fn weight(layer: &str, what: &str, value: Tensor, trainable: bool) -> Variable {
    Variable::with_options(
        value,
        VariableOptions {
            name: Some(format!("{layer}/{what}")),
            trainable,
        },
    )
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

/// How a layer's weights start (Keras's initializers, by their Keras names).
///
/// ```
/// assert_eq!(gradtape::layers::Initializer::default(), gradtape::layers::Initializer::GlorotUniform);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Initializer {
    /// Uniform in `±√(6 / (fan_in + fan_out))` (Keras's default, `glorot_uniform`).
    #[default]
    GlorotUniform,
    /// Truncated normal with standard deviation `√(2 / (fan_in + fan_out))` (`glorot_normal`).
    GlorotNormal,
    /// Uniform in `±√(6 / fan_in)` (`he_uniform`, for ReLU layers).
    HeUniform,
    /// Truncated normal with standard deviation `√(2 / fan_in)` (`he_normal`).
    HeNormal,
    /// Uniform in `±√(3 / fan_in)` (`lecun_uniform`).
    LecunUniform,
    /// Truncated normal with standard deviation `√(1 / fan_in)` (`lecun_normal`).
    LecunNormal,
    /// Uniform in `[low, high)` (`RandomUniform`; `Embedding`'s default is ±0.05).
    RandomUniform(f64, f64),
    /// Zeros.
    Zeros,
    /// Ones.
    Ones,
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
        self.sample_shape(&[fan_in, fan_out], dtype, rng)
    }

    /// A tensor of any `shape`, with Keras's fans: a vector's length for both; for a kernel,
    /// the last two axes are `in` and `out` and the others the receptive field
    /// (`fan_in = in · kh · kw`).
    ///
    /// # Errors
    /// When `dtype` is not a float type.
    ///
    /// ```
    /// use gradtape::layers::Initializer;
    /// let mut g = gradtape::random::Generator::from_seed(1);
    /// let k = Initializer::HeUniform.sample_shape(&[3, 3, 2, 8], gradtape::DType::F32, &mut g)?;
    /// let limit = (6.0f32 / 18.0).sqrt(); // fan_in = 3·3·2
    /// assert!(k.to_vec::<f32>()?.iter().all(|v| v.abs() <= limit));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn sample_shape(
        self,
        shape: &[usize],
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Tensor> {
        let (fan_in, fan_out) = match *shape {
            [] => (1, 1),
            [n] => (n, n),
            [.., i, o] => {
                // saturating: a shape too large to hold is refused when it is drawn
                let field = shape[..shape.len() - 2]
                    .iter()
                    .fold(1usize, |a, &b| a.saturating_mul(b));
                (i.saturating_mul(field), o.saturating_mul(field))
            }
        };
        let (fi, fo) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        // Keras's truncated normal: redrawn beyond two standard deviations, the standard
        // deviation divided by 0.8796... so that the kept values have the intended variance
        let mut truncated = |variance: f64| -> Result<Tensor> {
            let sd = variance.sqrt() / 0.879_625_661_034_239_8;
            gradtape_core::random::samples("Initializer", shape, dtype, || loop {
                let z = rng.next_normal();
                if z.abs() <= 2.0 {
                    break z * sd;
                }
            })
        };
        match self {
            Initializer::GlorotUniform => {
                let l = (6.0 / (fi + fo)).sqrt();
                rng.uniform(shape, -l, l, dtype)
            }
            Initializer::GlorotNormal => truncated(2.0 / (fi + fo)),
            Initializer::HeUniform => {
                let l = (6.0 / fi).sqrt();
                rng.uniform(shape, -l, l, dtype)
            }
            Initializer::HeNormal => truncated(2.0 / fi),
            Initializer::LecunUniform => {
                let l = (3.0 / fi).sqrt();
                rng.uniform(shape, -l, l, dtype)
            }
            Initializer::LecunNormal => truncated(1.0 / fi),
            Initializer::RandomUniform(lo, hi) => rng.uniform(shape, lo, hi, dtype),
            Initializer::Zeros => Tensor::zeros(shape, dtype),
            Initializer::Ones => Tensor::ones(shape, dtype),
        }
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
    fn non_trainable_variables(&self) -> Vec<Variable> {
        self.layers
            .iter()
            .flat_map(|l| l.non_trainable_variables())
            .collect()
    }
    fn class_name(&self) -> &'static str {
        "Sequential"
    }
}

impl Sequential {
    /// Keras's `model.summary()`: each layer's name and kind, its output shape for inputs of
    /// `input_shape` (without the batch axis, shown as `None`) and its parameter count, then
    /// the totals. Runs the model once on zeros.
    ///
    /// # Errors
    /// When the model cannot run on such inputs (the layer's message says why).
    ///
    /// ```
    /// use gradtape::layers::{Activation, Dense, Flatten, Sequential};
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let m = Sequential::new(vec![
    ///     Box::new(Flatten),
    ///     Box::new(Dense::new("out", 12, 3, Activation::Linear, gradtape::DType::F32, &mut rng)?),
    /// ]);
    /// let s = m.summary(&[3, 4], gradtape::DType::F32)?;
    /// assert!(s.contains("out (Dense)") && s.contains("(None, 3)") && s.contains("Total params: 39"));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn summary(&self, input_shape: &[usize], dtype: DType) -> Result<String> {
        let mut x = summary_input(input_shape, dtype)?;
        let mut rows = vec![];
        for l in &self.layers {
            x = l.call(&x, false)?;
            rows.push(SummaryRow::of(l.as_ref(), &x));
        }
        Ok(render_summary("sequential", &rows, &self.variables()))
    }
}

/// One line of a summary.
pub(crate) struct SummaryRow {
    /// The layer's own name, or `None` for one Keras names after its class.
    name: Option<String>,
    class: String,
    shape: String,
    params: usize,
}

impl SummaryRow {
    pub(crate) fn of(layer: &dyn Layer, out: &Tensor) -> SummaryRow {
        SummaryRow {
            name: Some(layer.name().to_string()).filter(|n| !n.is_empty()),
            class: layer.class_name().to_string(),
            shape: batch_shape(out.shape()),
            params: count(&layer.variables()),
        }
    }
    /// A step without weights or a name of its own (input, add, concatenate).
    pub(crate) fn unnamed(class: &str, out: &Tensor) -> SummaryRow {
        SummaryRow {
            name: None,
            class: class.to_string(),
            shape: batch_shape(out.shape()),
            params: 0,
        }
    }
}

/// Keras's automatic layer name: the class in snake case (`MaxPooling2D` → `max_pooling2d`,
/// `GlobalAveragePooling2D` → `global_average_pooling2d`), as `to_snake_case` in Keras.
fn snake_case(class: &str) -> String {
    let c: Vec<char> = class.chars().collect();
    let mut out = String::new();
    for (i, &ch) in c.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| c[p]);
        let next_lower = c.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        // a capital starting a lowercase word, or one right after a lowercase letter
        let starts_word = ch.is_ascii_uppercase()
            && prev.is_some_and(|p| p.is_ascii_lowercase() || (next_lower && p != '_'));
        if starts_word {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

/// The names the rows show: a layer's own name, else Keras's automatic one numbered within
/// the model (`max_pooling2d`, `max_pooling2d_1`, ...), so two unnamed layers of one class can
/// be told apart.
fn row_names(rows: &[SummaryRow]) -> Vec<String> {
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    rows.iter()
        .map(|r| {
            let name = r.name.clone().unwrap_or_else(|| {
                let base = snake_case(&r.class);
                let n = seen.entry(base.clone()).or_insert(0);
                *n += 1;
                match *n {
                    1 => base,
                    k => format!("{base}_{}", k - 1),
                }
            });
            format!("{name} ({})", r.class)
        })
        .collect()
}

/// Zeros of `[1, ...shape]`: one example, as a summary runs the model.
pub(crate) fn summary_input(shape: &[usize], dtype: DType) -> Result<Tensor> {
    let mut s = vec![1];
    s.extend_from_slice(shape);
    Tensor::zeros(&s, dtype)
}

fn batch_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = std::iter::once("None".to_string())
        .chain(shape.iter().skip(1).map(|d| d.to_string()))
        .collect();
    match dims.len() {
        1 => "(None,)".to_string(),
        _ => format!("({})", dims.join(", ")),
    }
}

fn count(vars: &[Variable]) -> usize {
    vars.iter()
        .map(|v| v.shape().iter().product::<usize>())
        .sum()
}

/// The table Keras prints.
pub(crate) fn render_summary(model: &str, rows: &[SummaryRow], vars: &[Variable]) -> String {
    let rule = "=".repeat(72);
    let mut out = format!("Model: \"{model}\"\n{}\n", "_".repeat(72));
    out += &format!(
        "{:<34}{:<26}{:>12}\n{rule}\n",
        "Layer (type)", "Output Shape", "Param #"
    );
    for (r, name) in rows.iter().zip(row_names(rows)) {
        out += &format!("{name:<34}{:<26}{:>12}\n", r.shape, r.params);
    }
    let trainable = count(
        &vars
            .iter()
            .filter(|v| v.trainable())
            .cloned()
            .collect::<Vec<_>>(),
    );
    let total = count(vars);
    out += &format!(
        "{rule}\nTotal params: {total}\nTrainable params: {trainable}\nNon-trainable params: {}\n",
        total - trainable
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keras's `to_snake_case` on the classes gradtape has (checked against Keras's own names).
    #[test]
    fn automatic_names_are_keras_snake_case() {
        for (class, name) in [
            ("Dense", "dense"),
            ("Conv2D", "conv2d"),
            ("Conv2DTranspose", "conv2d_transpose"),
            ("MaxPooling2D", "max_pooling2d"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("BatchNormalization", "batch_normalization"),
            ("MultiHeadAttention", "multi_head_attention"),
            ("InputLayer", "input_layer"),
            ("ReLU", "re_lu"),
        ] {
            assert_eq!(snake_case(class), name);
        }
    }

    /// Issue 20: two pooling layers were both "maxpooling2d"; Keras numbers them.
    #[test]
    fn unnamed_layers_of_one_class_are_numbered_in_the_summary() {
        let model = Sequential::new(vec![
            Box::new(MaxPooling2D::new([2, 2])),
            Box::new(MaxPooling2D::new([2, 2])),
            Box::new(Flatten),
        ]);
        let s = model.summary(&[8, 8, 1], DType::F32).unwrap();
        let names: Vec<&str> = s
            .lines()
            .filter(|l| l.contains(") ") && !l.starts_with("Layer"))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            names,
            ["max_pooling2d", "max_pooling2d_1", "flatten"],
            "{s}"
        );
    }
}
