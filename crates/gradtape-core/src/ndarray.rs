//! Conversions between [`Tensor`] and `ndarray` arrays (cargo feature `ndarray`), so data can
//! come from, and results go to, the crates of the ndarray ecosystem. Both directions copy the
//! elements in logical (row-major) order, whatever the source's strides.
//!
//! ```
//! use gradtape::Tensor;
//! let a = ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]);
//! let t = Tensor::from_ndarray(&a.t())?; // a transposed view
//! assert_eq!(t.to_vec::<f32>()?, vec![1.0, 3.0, 2.0, 4.0]);
//! let back: ndarray::ArrayD<f32> = t.to_ndarray()?;
//! assert_eq!(back.shape(), &[2, 2]);
//! # Ok::<(), gradtape::Error>(())
//! ```

use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};

use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Tensor {
    /// A tensor with the shape and elements of an ndarray array or view (copied).
    ///
    /// # Errors
    /// Only if the elements cannot be allocated.
    ///
    /// ```
    /// let t = gradtape::Tensor::from_ndarray(&ndarray::Array1::from(vec![1i64, 2, 3]))?;
    /// assert_eq!(t.dtype(), gradtape::DType::I64);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn from_ndarray<T, S, D>(array: &ArrayBase<S, D>) -> Result<Tensor>
    where
        T: Element,
        S: Data<Elem = T>,
        D: Dimension,
    {
        Tensor::from_vec(array.iter().copied().collect(), array.shape())
    }

    /// The elements as an ndarray array of dynamic rank (copied).
    ///
    /// # Errors
    /// When `T` is not the tensor's dtype, or a pending tensor cannot be computed.
    ///
    /// ```
    /// let t = gradtape::Tensor::from_vec(vec![1.0f64, 2.0], &[2, 1])?;
    /// let a = t.to_ndarray::<f64>()?;
    /// assert_eq!(a[[1, 0]], 2.0);
    /// assert!(t.to_ndarray::<f32>().is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn to_ndarray<T: Element>(&self) -> Result<ArrayD<T>> {
        ArrayD::from_shape_vec(IxDyn(self.shape()), self.to_vec::<T>()?)
            .map_err(|e| Error::shape("to_ndarray", format!("shape {:?}: {e}", self.shape())))
    }
}

impl<T: Element, S: Data<Elem = T>, D: Dimension> TryFrom<&ArrayBase<S, D>> for Tensor {
    type Error = Error;
    fn try_from(array: &ArrayBase<S, D>) -> Result<Tensor> {
        Tensor::from_ndarray(array)
    }
}

impl<T: Element> TryFrom<&Tensor> for ArrayD<T> {
    type Error = Error;
    fn try_from(t: &Tensor) -> Result<ArrayD<T>> {
        t.to_ndarray()
    }
}
