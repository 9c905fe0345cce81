//! `Embedding`: a trainable lookup table from integer ids to vectors.

use super::{float_dtype, weight, Initializer, Layer};
use std::sync::Arc;

use gradtape_core::internal::{check_values, Checker};
use gradtape_core::ops;
use gradtape_core::random::Generator;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::Variable;
use gradtape_core::{Error, Result};

/// Keras's `Embedding`: row `id` of an `[input_dim, output_dim]` table for each id (int64, or
/// floats holding whole numbers, which Keras casts too). A gather, so the table's gradient adds
/// up the rows of repeated ids, as TensorFlow's does. The table starts uniform in ±0.05.
///
/// ```
/// use gradtape::layers::{Embedding, Layer};
/// use gradtape::{GradientTape, Tensor};
/// let mut rng = gradtape::random::Generator::from_seed(0);
/// let e = Embedding::new("emb", 10, 4, gradtape::DType::F32, &mut rng)?;
/// let ids = Tensor::from_vec(vec![3i64, 3, 7], &[1, 3])?;
/// let tape = GradientTape::new();
/// let y = e.call(&ids, true)?;
/// assert_eq!(y.shape(), &[1, 3, 4]);
/// let loss = gradtape::ops::reduce_sum(&y, gradtape::Axes::All, false)?;
/// let [g] = tape.gradient(&loss, [e.embeddings()])?;
/// let g = g.unwrap().to_vec::<f32>()?;
/// assert_eq!((g[3 * 4], g[7 * 4], g[0]), (2.0, 1.0, 0.0)); // id 3 twice
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Embedding {
    name: String,
    embeddings: Variable,
}

impl Embedding {
    /// A table of `input_dim` ids by `output_dim` features.
    ///
    /// # Errors
    /// When `dtype` is not float or a size is 0.
    pub fn new(
        name: &str,
        input_dim: usize,
        output_dim: usize,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Embedding> {
        Embedding::with_initializer(
            name,
            input_dim,
            output_dim,
            Initializer::RandomUniform(-0.05, 0.05),
            dtype,
            rng,
        )
    }

    /// With another initializer for the table.
    ///
    /// # Errors
    /// As [`Embedding::new`].
    pub fn with_initializer(
        name: &str,
        input_dim: usize,
        output_dim: usize,
        initializer: Initializer,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Embedding> {
        float_dtype("Embedding", dtype)?;
        if input_dim == 0 || output_dim == 0 {
            return Err(Error::arg(
                "Embedding",
                format!("layer {name:?}: sizes must be at least 1, got {input_dim} x {output_dim}"),
            ));
        }
        let table = initializer.sample_shape(&[input_dim, output_dim], dtype, rng)?;
        Ok(Embedding {
            name: name.to_string(),
            embeddings: weight(name, "embeddings", table, true),
        })
    }

    /// Keras's `mask_zero`: `[batch, time]`, true where the id is not 0 (id 0 is padding),
    /// for a recurrent layer's `call_with_mask`.
    ///
    /// # Errors
    /// When `ids` is bool.
    pub fn compute_mask(&self, ids: &Tensor) -> Result<Tensor> {
        if ids.dtype() == DType::Bool {
            return Err(Error::dtype(
                "Embedding",
                format!(
                    "layer {:?} masks integer ids, got bool {:?}",
                    self.name,
                    ids.shape()
                ),
            ));
        }
        ops::not_equal(ids, &0.0)
    }

    /// The table (`{name}/embeddings`).
    pub fn embeddings(&self) -> &Variable {
        &self.embeddings
    }
}

impl Layer for Embedding {
    fn call(&self, ids: &Tensor, _training: bool) -> Result<Tensor> {
        let ids = match ids.dtype() {
            DType::I64 => ids.clone(),
            DType::Bool => {
                return Err(Error::dtype(
                    "Embedding",
                    format!(
                        "layer {:?} looks up integer ids, got bool {:?}",
                        self.name,
                        ids.shape()
                    ),
                ))
            }
            _ => {
                // checked on the values, at every call of a compiled function too
                let whole = ops::equal(&ops::round(ids)?, ids)?;
                let (name, dtype) = (self.name.clone(), ids.dtype());
                let check: Checker =
                    Arc::new(
                        move |t: &[Tensor]| match t[0].to_vec::<bool>()?.iter().all(|&b| b) {
                            true => Ok(()),
                            false => Err(Error::arg(
                                "Embedding",
                                format!(
                                "layer {name:?} looks up integer ids, got fractional {dtype} values"
                            ),
                            )),
                        },
                    );
                check_values(&[&gradtape_core::vmap::all_examples(&whole)], check)?;
                ops::cast(ids, DType::I64)?
            }
        };
        ops::gather(&self.embeddings, &ids, 0)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![self.embeddings.clone()]
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn class_name(&self) -> &'static str {
        "Embedding"
    }
}
