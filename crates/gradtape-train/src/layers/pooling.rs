//! Pooling layers: max and average over windows (1-D and 2-D), and over whole images.

use super::Layer;
use gradtape_core::ops::{self, Padding};
use gradtape_core::Tensor;
use gradtape_core::Variable;
use gradtape_core::{Error, Result};

/// A pooling layer over windows of `$size` (`Size2` for images: one size or `[h, w]`, as
/// Keras takes `2` or `(2, 3)`; `usize` for sequences).
macro_rules! pool_layer {
    ($(#[$doc:meta])* $ty:ident, $op:ident, $size:ty, $arg:ty) => {
        $(#[$doc])*
        pub struct $ty {
            pool_size: $size,
            strides: $size,
            padding: Padding,
        }

        impl $ty {
            /// Windows of `pool_size`, moved by the same size (Keras's default), no padding.
            pub fn new(pool_size: $arg) -> $ty {
                let pool_size = pool_size.into();
                $ty { pool_size, strides: pool_size, padding: Padding::Valid }
            }
            /// With other strides and padding.
            pub fn with(pool_size: $arg, strides: $arg, padding: Padding) -> $ty {
                $ty { pool_size: pool_size.into(), strides: strides.into(), padding }
            }
        }

        impl Layer for $ty {
            fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
                ops::$op(x, self.pool_size, self.strides, self.padding)
            }
            fn trainable_variables(&self) -> Vec<Variable> {
                vec![]
            }
            fn class_name(&self) -> &'static str {
                stringify!($ty)
            }
        }
    };
}

pool_layer!(
    /// Keras's `MaxPooling2D` over NHWC images.
    ///
    /// ```
    /// use gradtape::layers::{Layer, MaxPooling2D};
    /// let x = gradtape::Tensor::ones(&[1, 4, 6, 3], gradtape::DType::F32)?;
    /// assert_eq!(MaxPooling2D::new(2).call(&x, false)?.shape(), &[1, 2, 3, 3]); // pool_size=2
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    MaxPooling2D,
    max_pool2d,
    ops::Size2,
    impl Into<ops::Size2>
);
pool_layer!(
    /// Keras's `AveragePooling2D` over NHWC images.
    ///
    /// ```
    /// use gradtape::layers::{AveragePooling2D, Layer};
    /// use gradtape::ops::Padding;
    /// let x = gradtape::Tensor::ones(&[1, 5, 5, 1], gradtape::DType::F32)?;
    /// let y = AveragePooling2D::with([2, 2], [2, 2], Padding::Same).call(&x, false)?;
    /// assert_eq!(y.shape(), &[1, 3, 3, 1]);
    /// assert!(y.to_vec::<f32>()?.iter().all(|&v| v == 1.0)); // border windows average their inside
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    AveragePooling2D,
    avg_pool2d,
    ops::Size2,
    impl Into<ops::Size2>
);

pool_layer!(
    /// Keras's `MaxPooling1D` over `[batch, width, channels]`.
    ///
    /// ```
    /// use gradtape::layers::{Layer, MaxPooling1D};
    /// let x = gradtape::Tensor::ones(&[2, 9, 3], gradtape::DType::F32)?;
    /// assert_eq!(MaxPooling1D::new(3).call(&x, false)?.shape(), &[2, 3, 3]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    MaxPooling1D,
    max_pool1d,
    usize,
    usize
);
pool_layer!(
    /// Keras's `AveragePooling1D` over `[batch, width, channels]`.
    ///
    /// ```
    /// use gradtape::layers::{AveragePooling1D, Layer};
    /// let x = gradtape::Tensor::ones(&[2, 9, 3], gradtape::DType::F32)?;
    /// assert_eq!(AveragePooling1D::new(2).call(&x, false)?.shape(), &[2, 4, 3]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    AveragePooling1D,
    avg_pool1d,
    usize,
    usize
);

fn global(op: &'static str, x: &Tensor) -> Result<()> {
    if x.rank() != 4 {
        return Err(Error::shape(
            op,
            format!(
                "expects images of shape [batch, height, width, channels], got {:?}",
                x.shape()
            ),
        ));
    }
    Ok(())
}

/// Keras's `GlobalAveragePooling2D`: the mean of each channel over the image (`[batch, c]`).
///
/// ```
/// use gradtape::layers::{GlobalAveragePooling2D, Layer};
/// let x = gradtape::Tensor::ones(&[2, 4, 4, 3], gradtape::DType::F32)?;
/// assert_eq!(GlobalAveragePooling2D.call(&x, false)?.shape(), &[2, 3]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct GlobalAveragePooling2D;

impl Layer for GlobalAveragePooling2D {
    fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        global("GlobalAveragePooling2D", x)?;
        ops::reduce_mean(x, [1isize, 2], false)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![]
    }
    fn class_name(&self) -> &'static str {
        "GlobalAveragePooling2D"
    }
}

/// Keras's `GlobalMaxPooling2D`: the largest value of each channel over the image.
///
/// ```
/// use gradtape::layers::{GlobalMaxPooling2D, Layer};
/// let x = gradtape::Tensor::from_vec((0..8).map(|v| v as f32).collect(), &[1, 2, 2, 2])?;
/// assert_eq!(GlobalMaxPooling2D.call(&x, false)?.to_vec::<f32>()?, vec![6.0, 7.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct GlobalMaxPooling2D;

impl Layer for GlobalMaxPooling2D {
    fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        global("GlobalMaxPooling2D", x)?;
        ops::reduce_max(x, [1isize, 2], false)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![]
    }
    fn class_name(&self) -> &'static str {
        "GlobalMaxPooling2D"
    }
}
