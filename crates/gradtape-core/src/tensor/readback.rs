//! Reading a tensor's elements back into Rust: above the context, since inside
//! [`crate::function()`]'s trace a value the graph computes cannot be read (it would be frozen
//! at the first call's value: JAX's concretization error). The core's own reads, which run at
//! every call, use the crate-internal readers of `tensor/mod.rs`.

use crate::context::traces::check_concrete;
use crate::dtype::Element;
use crate::error::{Error, Result};

use super::Tensor;

impl Tensor {
    /// The elements in row-major order (TensorFlow's `.numpy().ravel()`).
    ///
    /// # Errors
    /// When `T` is not the tensor's element type (no silent conversion).
    /// Inside a [`function`](crate::function())'s trace, when the trace computes the tensor
    /// ([`Error::Trace`]: the value would be frozen into the graph).
    ///
    /// ```
    /// let t = gradtape::Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
    /// assert_eq!(t.to_vec::<f32>()?, vec![1.0, 2.0]);
    /// assert!(t.to_vec::<f64>().is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        check_concrete("to_vec", self)?;
        self.read_vec()
    }

    /// The single element of a tensor with one element (any rank).
    ///
    /// # Errors
    /// When `T` is not the element type or the tensor does not hold exactly one element.
    /// Inside a [`function`](crate::function())'s trace, when the trace computes the tensor
    /// ([`Error::Trace`]: the value would be frozen into the graph).
    ///
    /// ```
    /// assert_eq!(gradtape::Tensor::scalar(3i64).to_scalar::<i64>()?, 3);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn to_scalar<T: Element>(&self) -> Result<T> {
        self.one_element("to_scalar")?;
        Ok(self.read_vec::<T>()?[0])
    }

    /// The single element of a one-element tensor as an `f64`, whatever the dtype (PyTorch's
    /// `item()`, TensorFlow's `float(t)`): `println!("{}", loss.item()?)`. Exact for every
    /// float32, float64 and bool value, and for integers up to 2⁵³; use
    /// [`Tensor::to_scalar`] for an exact `i64`.
    ///
    /// # Errors
    /// When the tensor does not hold exactly one element.
    /// Inside a [`function`](crate::function())'s trace, when the trace computes the tensor
    /// ([`Error::Trace`]: the value would be frozen into the graph).
    ///
    /// ```
    /// let loss = gradtape::Tensor::from_vec(vec![0.25f32], &[1, 1])?;
    /// assert_eq!(loss.item()?, 0.25);
    /// assert!(gradtape::Tensor::zeros(&[2], gradtape::DType::F32)?.item().is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn item(&self) -> Result<f64> {
        self.one_element("item")?;
        Ok(self.read_f64_vec()?[0])
    }

    /// The elements converted to `f64`, whatever the dtype (for reports and tests).
    ///
    /// # Errors
    /// When a pending tensor's elements cannot be computed (see [`Tensor::realize`]).
    /// Inside a [`function`](crate::function())'s trace, when the trace computes the tensor
    /// ([`Error::Trace`]: the value would be frozen into the graph).
    ///
    /// ```
    /// let t = gradtape::Tensor::from_vec(vec![true, false], &[2])?;
    /// assert_eq!(t.to_f64_vec()?, vec![1.0, 0.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        check_concrete("to_f64_vec", self)?;
        self.read_f64_vec()
    }

    /// `op` may read this tensor's one element: concrete, and one element.
    fn one_element(&self, op: &'static str) -> Result<()> {
        check_concrete(op, self)?;
        if self.numel() != 1 {
            return Err(Error::shape(
                op,
                format!(
                    "tensor of shape {:?} has {} elements, not 1",
                    self.shape(),
                    self.numel()
                ),
            ));
        }
        Ok(())
    }
}
