//! `MultiHeadAttention`, composed from matmul, softmax, reshapes and transposes.

use super::{float_dtype, weight, Initializer, Layer};
use gradtape_core::ops;
use gradtape_core::random::Generator;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::Variable;
use gradtape_core::{Error, Result};

/// Keras's `MultiHeadAttention` with `num_heads` heads of `key_dim` (values of the same size),
/// for queries, keys and values of `model_dim` features, giving `model_dim` features.
/// Keras's weights and names: `query`, `key` and `value` kernels `[model_dim, heads, key_dim]`
/// with biases `[heads, key_dim]`, and `attention_output` `[heads, key_dim, model_dim]` with
/// bias `[model_dim]`. Queries are scaled by `1/√key_dim`; masked scores get `-1e9` before the
/// softmax, as Keras's softmax does. No dropout.
///
/// As a [`Layer`], `call(x)` is self-attention; [`MultiHeadAttention::attend`] takes separate
/// query, value and key and a causal mask.
///
/// ```
/// use gradtape::layers::{Layer, MultiHeadAttention};
/// let mut rng = gradtape::random::Generator::from_seed(0);
/// let mha = MultiHeadAttention::new("mha", 2, 4, 8, gradtape::DType::F32, &mut rng)?;
/// let x = rng.uniform(&[3, 5, 8], -1.0, 1.0, gradtape::DType::F32)?;
/// assert_eq!(mha.call(&x, false)?.shape(), &[3, 5, 8]);
/// let causal = mha.attend(&x, &x, None, true)?;
/// // with a causal mask the first position sees only itself: changing later positions
/// // leaves it unchanged
/// let x2 = gradtape::ops::concat(&[x.slice(gradtape::s![.., 0..1, ..])?, gradtape::Tensor::zeros(&[3, 4, 8], gradtape::DType::F32)?], 1)?;
/// let first = |t: &gradtape::Tensor| t.slice(gradtape::s![.., 0, ..]).unwrap().to_vec::<f32>().unwrap();
/// assert_eq!(first(&causal), first(&mha.attend(&x2, &x2, None, true)?));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct MultiHeadAttention {
    name: String,
    heads: usize,
    key_dim: usize,
    model_dim: usize,
    query: (Variable, Variable),
    key: (Variable, Variable),
    value: (Variable, Variable),
    output: (Variable, Variable),
    /// Keras's `use_causal_mask`, for [`Layer::call`].
    causal: bool,
}

impl MultiHeadAttention {
    /// A layer of `num_heads` heads of `key_dim` over `model_dim` features, Glorot-uniform
    /// kernels and zero biases.
    ///
    /// # Errors
    /// When a size is 0 or `dtype` is not float.
    pub fn new(
        name: &str,
        num_heads: usize,
        key_dim: usize,
        model_dim: usize,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<MultiHeadAttention> {
        float_dtype("MultiHeadAttention", dtype)?;
        if num_heads == 0 || key_dim == 0 || model_dim == 0 {
            return Err(Error::arg(
                "MultiHeadAttention",
                format!("layer {name:?}: heads {num_heads}, key_dim {key_dim} and model_dim {model_dim} must be at least 1"),
            ));
        }
        let mut dense =
            |what: &str, kernel: &[usize], bias: &[usize]| -> Result<(Variable, Variable)> {
                let k = Initializer::GlorotUniform.sample_shape(kernel, dtype, rng)?;
                Ok((
                    weight(name, &format!("{what}/kernel"), k, true),
                    weight(
                        name,
                        &format!("{what}/bias"),
                        Tensor::zeros(bias, dtype)?,
                        true,
                    ),
                ))
            };
        let (h, k, d) = (num_heads, key_dim, model_dim);
        Ok(MultiHeadAttention {
            name: name.to_string(),
            heads: h,
            key_dim: k,
            model_dim: d,
            query: dense("query", &[d, h, k], &[h, k])?,
            key: dense("key", &[d, h, k], &[h, k])?,
            value: dense("value", &[d, h, k], &[h, k])?,
            output: dense("attention_output", &[h, k, d], &[d])?,
            causal: false,
        })
    }

    /// Self-attention with Keras's `use_causal_mask=True` in [`Layer::call`] (each position
    /// attends to itself and the ones before it), so a causal layer goes in a `Sequential`.
    ///
    /// ```
    /// use gradtape::layers::{Layer, MultiHeadAttention};
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let mha = MultiHeadAttention::new("mha", 2, 4, 8, gradtape::DType::F32, &mut rng)?;
    /// let x = rng.uniform(&[1, 5, 8], -1.0, 1.0, gradtape::DType::F32)?;
    /// let want = mha.attend(&x, &x, None, true)?.to_vec::<f32>()?;
    /// let mha = mha.use_causal_mask(true);
    /// assert_eq!(mha.call(&x, false)?.to_vec::<f32>()?, want);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn use_causal_mask(mut self, causal: bool) -> MultiHeadAttention {
        self.causal = causal;
        self
    }

    /// `[batch, t, model_dim]` to `[batch, heads, t, key_dim]` through one projection.
    fn project(&self, x: &Tensor, (kernel, bias): &(Variable, Variable)) -> Result<Tensor> {
        let (b, t) = (x.shape()[0], x.shape()[1]);
        let hk = self.heads * self.key_dim;
        let y = ops::matmul(
            x,
            &ops::reshape(kernel, &[self.model_dim as isize, hk as isize])?,
        )?;
        let y = ops::add(&y, &ops::reshape(bias, &[hk as isize])?)?;
        let y = ops::reshape(
            &y,
            &[
                b as isize,
                t as isize,
                self.heads as isize,
                self.key_dim as isize,
            ],
        )?;
        ops::transpose(&y, Some(&[0, 2, 1, 3]))
    }

    fn check(&self, what: &str, x: &Tensor) -> Result<()> {
        if x.rank() != 3 || x.shape()[2] != self.model_dim || x.dtype() != self.query.0.dtype() {
            return Err(Error::shape(
                "MultiHeadAttention",
                format!(
                    "layer {:?}: {what} must be {} [batch, length, {}], got {} {:?}",
                    self.name,
                    self.query.0.dtype(),
                    self.model_dim,
                    x.dtype(),
                    x.shape()
                ),
            ));
        }
        Ok(())
    }

    /// Attention of `query` (`[batch, t, model_dim]`) over `value` (`[batch, s, model_dim]`),
    /// keyed by `key` (the value when `None`); with `causal`, position `i` attends to positions
    /// `≤ i` only (Keras's `use_causal_mask`).
    ///
    /// # Errors
    /// When the shapes or dtypes do not fit (the message names them).
    pub fn attend(
        &self,
        query: &Tensor,
        value: &Tensor,
        key: Option<&Tensor>,
        causal: bool,
    ) -> Result<Tensor> {
        let key = key.unwrap_or(value);
        self.check("query", query)?;
        self.check("value", value)?;
        self.check("key", key)?;
        if key.shape()[..2] != value.shape()[..2] || query.shape()[0] != value.shape()[0] {
            return Err(Error::shape(
                "MultiHeadAttention",
                format!(
                    "layer {:?}: query {:?}, key {:?} and value {:?} must share the batch, key and value the length",
                    self.name,
                    query.shape(),
                    key.shape(),
                    value.shape()
                ),
            ));
        }
        let (b, t, s) = (query.shape()[0], query.shape()[1], value.shape()[1]);
        let q = ops::multiply(
            &self.project(query, &self.query)?,
            &(1.0 / (self.key_dim as f64).sqrt()),
        )?;
        let k = self.project(key, &self.key)?;
        let v = self.project(value, &self.value)?;
        let mut scores = ops::matmul_transposed(&q, &k, false, true)?; // [b, h, t, s]
        if causal {
            let adder: Vec<f64> = (0..t)
                .flat_map(|i| (0..s).map(move |j| if j <= i { 0.0 } else { -1e9 }))
                .collect();
            let adder = Tensor::from_vec(adder, &[t, s])?.cast(scores.dtype())?;
            scores = ops::add(&scores, &adder)?;
        }
        let probs = ops::softmax(&scores, -1)?;
        let heads = ops::transpose(&ops::matmul(&probs, &v)?, Some(&[0, 2, 1, 3]))?; // [b, t, h, k]
        let hk = (self.heads * self.key_dim) as isize;
        let flat = ops::reshape(&heads, &[b as isize, t as isize, hk])?;
        let (wo, bo) = &self.output;
        let y = ops::matmul(&flat, &ops::reshape(wo, &[hk, self.model_dim as isize])?)?;
        ops::add(&y, bo)
    }
}

impl Layer for MultiHeadAttention {
    fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        self.attend(x, x, None, self.causal)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        [&self.query, &self.key, &self.value, &self.output]
            .iter()
            .flat_map(|(k, b)| [k.clone(), b.clone()])
            .collect()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn class_name(&self) -> &'static str {
        "MultiHeadAttention"
    }
}
