//! Convolution layers over NHWC images (and `[batch, width, channels]` sequences), on
//! [`gradtape_core::ops::conv2d_with`] and its relatives.

use super::{float_dtype, weight, Activation, Initializer, Layer};
use gradtape_core::ops::{self, ConvOptions, Padding};
use gradtape_core::random::Generator;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::Variable;
use gradtape_core::{Error, Result};

/// What a convolution layer takes besides its sizes, with Keras's defaults: stride 1, `"valid"`
/// padding, no dilation, one group, no activation, a bias, Glorot-uniform kernel, zero bias.
/// A 1-D layer uses the first element of `strides` and `dilation`.
///
/// ```
/// use gradtape::layers::{Activation, ConvConfig};
/// use gradtape::ops::Padding;
/// let c = ConvConfig { padding: Padding::Same, activation: Activation::Relu, ..ConvConfig::default() };
/// assert_eq!(c.strides, [1, 1]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvConfig {
    /// Step between windows along height and width.
    pub strides: [usize; 2],
    /// `Valid` or `Same`.
    pub padding: Padding,
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
    /// Channel groups (`Conv2D` only).
    pub groups: usize,
    /// Applied to the output.
    pub activation: Activation,
    /// Whether the layer adds a bias.
    pub use_bias: bool,
    /// How the kernel starts.
    pub kernel_initializer: Initializer,
    /// How the bias starts.
    pub bias_initializer: Initializer,
}

impl Default for ConvConfig {
    fn default() -> Self {
        ConvConfig {
            strides: [1, 1],
            padding: Padding::Valid,
            dilation: [1, 1],
            groups: 1,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
        }
    }
}

/// The variables and settings every convolution layer shares.
struct Conv {
    name: String,
    kernel: Variable,
    bias: Option<Variable>,
    config: ConvConfig,
    /// Input channels, checked on every call.
    inputs: usize,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    fn new(
        layer: &'static str,
        name: &str,
        inputs: usize,
        kernel_shape: &[usize],
        outputs: usize,
        config: ConvConfig,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Conv> {
        float_dtype(layer, dtype)?;
        if kernel_shape.contains(&0) || outputs == 0 || inputs == 0 {
            return Err(Error::arg(
                layer,
                format!(
                    "layer {name:?}: sizes must be at least 1 (kernel {kernel_shape:?}, {inputs} inputs, {outputs} outputs)"
                ),
            ));
        }
        let kernel = weight(
            name,
            "kernel",
            config
                .kernel_initializer
                .sample_shape(kernel_shape, dtype, rng)?,
            true,
        );
        let bias = match config.use_bias {
            true => Some(weight(
                name,
                "bias",
                config
                    .bias_initializer
                    .sample_shape(&[outputs], dtype, rng)?,
                true,
            )),
            false => None,
        };
        Ok(Conv {
            name: name.to_string(),
            kernel,
            bias,
            config,
            inputs,
        })
    }

    /// Checks the input's rank, channels and dtype against the layer.
    fn check(&self, layer: &'static str, x: &Tensor, rank: usize, layout: &str) -> Result<()> {
        let s = x.shape();
        if s.len() != rank || s[rank - 1] != self.inputs || x.dtype() != self.kernel.dtype() {
            return Err(Error::shape(
                layer,
                format!(
                    "layer {:?} expects {} input of shape {layout} with {} channels, got {} {s:?}",
                    self.name,
                    self.kernel.dtype(),
                    self.inputs,
                    x.dtype()
                ),
            ));
        }
        Ok(())
    }

    /// Bias and activation on the convolution's result.
    fn finish(&self, y: Tensor) -> Result<Tensor> {
        let y = match &self.bias {
            Some(b) => ops::add(&y, b)?,
            None => y,
        };
        self.config.activation.apply(&y)
    }

    fn variables(&self) -> Vec<Variable> {
        std::iter::once(self.kernel.clone())
            .chain(self.bias.clone())
            .collect()
    }
}

/// The layers that have no channel groups refuse a config with some.
fn ungrouped(layer: &'static str, name: &str, config: &ConvConfig) -> Result<()> {
    if config.groups != 1 {
        return Err(Error::arg(
            layer,
            format!(
                "layer {name:?}: groups are not supported (got {})",
                config.groups
            ),
        ));
    }
    Ok(())
}

macro_rules! conv_layer {
    ($ty:ident) => {
        impl $ty {
            /// The kernel, named `{name}/kernel`.
            pub fn kernel(&self) -> &Variable {
                &self.0.kernel
            }
            /// The bias, named `{name}/bias`, when the layer has one.
            pub fn bias(&self) -> Option<&Variable> {
                self.0.bias.as_ref()
            }
        }
        impl Layer for $ty {
            fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
                self.forward(x)
            }
            fn trainable_variables(&self) -> Vec<Variable> {
                self.0.variables()
            }
            fn name(&self) -> &str {
                &self.0.name
            }
            fn class_name(&self) -> &'static str {
                stringify!($ty)
            }
        }
    };
}

/// Keras's `Conv2D`: `filters` kernels of `kernel_size` over NHWC images of `in_channels`
/// (kernel `[kh, kw, in_channels / groups, filters]`).
///
/// ```
/// use gradtape::layers::{Activation, Conv2D, ConvConfig, Layer};
/// use gradtape::ops::Padding;
/// let mut rng = gradtape::random::Generator::from_seed(0);
/// let config = ConvConfig { padding: Padding::Same, activation: Activation::Relu, ..ConvConfig::default() };
/// let conv = Conv2D::new("conv1", 1, 8, [3, 3], config, gradtape::DType::F32, &mut rng)?;
/// let y = conv.call(&gradtape::Tensor::ones(&[2, 28, 28, 1], gradtape::DType::F32)?, true)?;
/// assert_eq!(y.shape(), &[2, 28, 28, 8]);
/// assert_eq!(conv.kernel().shape(), &[3, 3, 1, 8]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Conv2D(Conv);

impl Conv2D {
    /// A layer of `filters` kernels of `kernel_size` for images with `in_channels`.
    ///
    /// # Errors
    /// When a size is 0, `dtype` is not float, or the channels do not split into the groups.
    ///
    /// ```
    /// use gradtape::layers::{Conv2D, ConvConfig};
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let bad = ConvConfig { groups: 3, ..ConvConfig::default() };
    /// assert!(Conv2D::new("c", 4, 6, [3, 3], bad, gradtape::DType::F32, &mut rng).is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn new(
        name: &str,
        in_channels: usize,
        filters: usize,
        kernel_size: impl Into<ops::Size2>,
        config: ConvConfig,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Conv2D> {
        let kernel_size: [usize; 2] = kernel_size.into().0;
        let g = config.groups;
        if g == 0 || !in_channels.is_multiple_of(g) || !filters.is_multiple_of(g) {
            return Err(Error::arg(
                "Conv2D",
                format!("layer {name:?}: {in_channels} input channels and {filters} filters must both divide into {g} groups"),
            ));
        }
        let shape = [kernel_size[0], kernel_size[1], in_channels / g, filters];
        Ok(Conv2D(Conv::new(
            "Conv2D",
            name,
            in_channels,
            &shape,
            filters,
            config,
            dtype,
            rng,
        )?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.0;
        c.check("Conv2D", x, 4, "[batch, height, width, channels]")?;
        let options = ConvOptions {
            dilation: c.config.dilation,
            groups: c.config.groups,
        };
        c.finish(ops::conv2d_with(
            x,
            &c.kernel,
            c.config.strides,
            c.config.padding,
            options,
        )?)
    }
}
conv_layer!(Conv2D);

/// Keras's `Conv1D` over `[batch, width, channels]` (kernel `[k, in_channels, filters]`).
///
/// ```
/// use gradtape::layers::{Conv1D, ConvConfig, Layer};
/// let mut rng = gradtape::random::Generator::from_seed(0);
/// let conv = Conv1D::new("c", 3, 4, 5, ConvConfig::default(), gradtape::DType::F32, &mut rng)?;
/// assert_eq!(conv.call(&gradtape::Tensor::ones(&[2, 10, 3], gradtape::DType::F32)?, false)?.shape(), &[2, 6, 4]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Conv1D(Conv);

impl Conv1D {
    /// A layer of `filters` kernels of width `kernel_size` for sequences with `in_channels`.
    ///
    /// # Errors
    /// When a size is 0, `dtype` is not float, or `groups` is not 1.
    pub fn new(
        name: &str,
        in_channels: usize,
        filters: usize,
        kernel_size: usize,
        config: ConvConfig,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Conv1D> {
        ungrouped("Conv1D", name, &config)?;
        let shape = [kernel_size, in_channels, filters];
        Ok(Conv1D(Conv::new(
            "Conv1D",
            name,
            in_channels,
            &shape,
            filters,
            config,
            dtype,
            rng,
        )?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.0;
        c.check("Conv1D", x, 3, "[batch, width, channels]")?;
        c.finish(ops::conv1d(
            x,
            &c.kernel,
            c.config.strides[0],
            c.config.padding,
            c.config.dilation[0],
        )?)
    }
}
conv_layer!(Conv1D);

/// Keras's `DepthwiseConv2D`: each input channel convolved with its own `depth_multiplier`
/// kernels (kernel `[kh, kw, in_channels, depth_multiplier]`, output channels
/// `in_channels · depth_multiplier`).
///
/// ```
/// use gradtape::layers::{ConvConfig, DepthwiseConv2D, Layer};
/// let mut rng = gradtape::random::Generator::from_seed(0);
/// let conv = DepthwiseConv2D::new("dw", 3, [3, 3], 2, ConvConfig::default(), gradtape::DType::F32, &mut rng)?;
/// assert_eq!(conv.call(&gradtape::Tensor::ones(&[1, 5, 5, 3], gradtape::DType::F32)?, false)?.shape(), &[1, 3, 3, 6]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct DepthwiseConv2D(Conv);

impl DepthwiseConv2D {
    /// A depthwise layer for images with `in_channels`.
    ///
    /// # Errors
    /// When a size is 0 or `dtype` is not float.
    pub fn new(
        name: &str,
        in_channels: usize,
        kernel_size: impl Into<ops::Size2>,
        depth_multiplier: usize,
        config: ConvConfig,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<DepthwiseConv2D> {
        let kernel_size: [usize; 2] = kernel_size.into().0;
        let shape = [
            kernel_size[0],
            kernel_size[1],
            in_channels,
            depth_multiplier,
        ];
        Ok(DepthwiseConv2D(Conv::new(
            "DepthwiseConv2D",
            name,
            in_channels,
            &shape,
            in_channels * depth_multiplier,
            config,
            dtype,
            rng,
        )?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.0;
        c.check("DepthwiseConv2D", x, 4, "[batch, height, width, channels]")?;
        c.finish(ops::depthwise_conv2d(
            x,
            &c.kernel,
            c.config.strides,
            c.config.padding,
            c.config.dilation,
        )?)
    }
}
conv_layer!(DepthwiseConv2D);

/// Keras's `Conv2DTranspose` (an upsampling convolution): kernel `[kh, kw, filters,
/// in_channels]`; output `h · stride` for `"same"`, `(h - 1) · stride + kh` for `"valid"`.
///
/// ```
/// use gradtape::layers::{ConvConfig, Conv2DTranspose, Layer};
/// use gradtape::ops::Padding;
/// let mut rng = gradtape::random::Generator::from_seed(0);
/// let config = ConvConfig { strides: [2, 2], padding: Padding::Same, ..ConvConfig::default() };
/// let up = Conv2DTranspose::new("up", 4, 2, [3, 3], config, gradtape::DType::F32, &mut rng)?;
/// assert_eq!(up.call(&gradtape::Tensor::ones(&[1, 7, 7, 4], gradtape::DType::F32)?, false)?.shape(), &[1, 14, 14, 2]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Conv2DTranspose(Conv);

impl Conv2DTranspose {
    /// A transposed convolution of `filters` kernels for images with `in_channels`.
    ///
    /// # Errors
    /// When a size is 0, `dtype` is not float, or `groups` is not 1.
    pub fn new(
        name: &str,
        in_channels: usize,
        filters: usize,
        kernel_size: impl Into<ops::Size2>,
        config: ConvConfig,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Conv2DTranspose> {
        let kernel_size: [usize; 2] = kernel_size.into().0;
        ungrouped("Conv2DTranspose", name, &config)?;
        let shape = [kernel_size[0], kernel_size[1], filters, in_channels];
        Ok(Conv2DTranspose(Conv::new(
            "Conv2DTranspose",
            name,
            in_channels,
            &shape,
            filters,
            config,
            dtype,
            rng,
        )?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.0;
        c.check("Conv2DTranspose", x, 4, "[batch, height, width, channels]")?;
        c.finish(ops::conv2d_transpose(
            x,
            &c.kernel,
            c.config.strides,
            c.config.padding,
            c.config.dilation,
        )?)
    }
}
conv_layer!(Conv2DTranspose);
