//! Where a tensor's elements live: host memory or one NVIDIA GPU.
//!
//! Every tensor sits on one [`Device`]. Ops run where their tensor operands are and never copy
//! between devices on their own: two tensor operands on different devices are an error that
//! names both (a Rust number, or a 0-d host tensor, is fine anywhere, as in PyTorch). Moving a
//! tensor is explicit: [`crate::Tensor::to_device`], which the tape differentiates.
//!
//! [`with_device`] sets the device new tensors are made on for a block of code, as TensorFlow's
//! `with tf.device('/GPU:0'):` does; creation functions use [`default_device`].
//!
//! The GPU backend (cargo feature `cuda`, off by default: `--features gradtape/cuda`) loads the
//! CUDA driver, NVRTC and cuBLAS at run time, so building needs no CUDA toolkit and a machine
//! without a GPU runs everything on the CPU. Asking for a GPU there, or in a build without the
//! feature, is an error that says which piece is missing.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A place for tensors: the host, or the `n`-th CUDA GPU (in the driver's order).
///
/// ```
/// use gradtape::Device;
/// assert_eq!("cuda:1".parse::<Device>()?, Device::Cuda(1));
/// assert_eq!("/GPU:0".parse::<Device>()?, Device::Cuda(0)); // TensorFlow's spelling
/// assert_eq!(Device::Cuda(0).to_string(), "cuda:0");
/// assert!("tpu".parse::<Device>().is_err());
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory, computed by the CPU kernels.
    #[default]
    Cpu,
    /// One NVIDIA GPU, by ordinal.
    Cuda(usize),
}

impl Device {
    /// Whether this is a GPU.
    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// `Ok` when tensors can be made on this device; otherwise the reason, naming what is
    /// missing: a build without the `cuda` feature, no NVIDIA driver (`libcuda`), no GPU of that
    /// ordinal, or no NVRTC or cuBLAS library on the library path.
    ///
    /// ```
    /// use gradtape::Device;
    /// assert!(Device::Cpu.check().is_ok());
    /// if let Err(e) = Device::Cuda(0).check() {
    ///     println!("no GPU here: {e}");
    /// }
    /// ```
    ///
    /// # Errors
    /// [`Error::Device`] with the missing piece.
    pub fn check(&self) -> Result<()> {
        match *self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => crate::cuda::gpu(n).map(|_| ()),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(n) => Err(Error::device(
                "device",
                format!(
                    "cuda:{n}: gradtape was built without its `cuda` feature (build with \
                     `--features gradtape/cuda`, or `--features cuda` for the CLI)"
                ),
            )),
        }
    }

    /// Whether [`Device::check`] passes.
    pub fn is_available(&self) -> bool {
        self.check().is_ok()
    }

    /// The number of CUDA GPUs the driver reports; 0 when there is no driver (or no `cuda`
    /// feature).
    ///
    /// ```
    /// use gradtape::Device;
    /// let n = Device::cuda_device_count();
    /// if n == 0 {
    ///     assert!(!Device::Cuda(0).is_available());
    /// }
    /// assert!(!Device::Cuda(n).is_available()); // one past the last GPU
    /// ```
    pub fn cuda_device_count() -> usize {
        #[cfg(feature = "cuda")]
        {
            crate::cuda::device_count().unwrap_or(0)
        }
        #[cfg(not(feature = "cuda"))]
        {
            0
        }
    }

    /// The first GPU when one can be used, the CPU otherwise (PyTorch's
    /// `"cuda" if torch.cuda.is_available() else "cpu"`).
    pub fn cuda_if_available() -> Device {
        if Device::Cuda(0).is_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }
    }

    /// The GPU's name (`"NVIDIA H200"`), or a description of the CPU device.
    ///
    /// # Errors
    /// When the device cannot be used ([`Device::check`]).
    pub fn name(&self) -> Result<String> {
        match *self {
            Device::Cpu => Ok(format!(
                "CPU ({} threads)",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => Ok(crate::cuda::gpu(n)?.name.clone()),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => self.check().map(|_| String::new()),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for Device {
    type Err = Error;

    /// `cpu`, `cuda`, `cuda:N`, `gpu`, `gpu:N`, and TensorFlow's `/CPU:0`, `/GPU:N`,
    /// `/device:GPU:N` (any case).
    fn from_str(s: &str) -> Result<Device> {
        let bad = || {
            Error::arg(
                "device",
                format!("'{s}' is not a device: use cpu, cuda, cuda:N (or TensorFlow's /GPU:N)"),
            )
        };
        let lower = s.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("/device:").unwrap_or(&lower);
        let name = name.strip_prefix('/').unwrap_or(name);
        let (kind, index) = match name.split_once(':') {
            Some((k, i)) => (k, Some(i.parse::<usize>().map_err(|_| bad())?)),
            None => (name, None),
        };
        match kind {
            "cpu" if index.unwrap_or(0) == 0 => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(index.unwrap_or(0))),
            _ => Err(bad()),
        }
    }
}

/// The device that creation functions (`Tensor::zeros`, `from_vec`, `Variable::new`, ...) put
/// new tensors on in this thread: the CPU unless [`with_device`] says otherwise.
pub fn default_device() -> Device {
    crate::context::with(|c| c.device.get())
}

/// Runs `f` with new tensors made on `device` (TensorFlow's `with tf.device(...)`); the
/// previous default comes back afterwards, also when `f` panics. Scopes nest; each thread has
/// its own.
///
/// ```
/// use gradtape::{device, Device, DType, Tensor};
/// let t = device::with_device(Device::Cpu, || Tensor::zeros(&[2], DType::F32))??;
/// assert_eq!(t.device(), Device::Cpu);
/// // Asking for a GPU on a machine without one is an error before `f` runs.
/// if !Device::Cuda(0).is_available() {
///     assert!(device::with_device(Device::Cuda(0), || ()).is_err());
/// }
/// # Ok::<(), gradtape::Error>(())
/// ```
///
/// # Errors
/// When `device` cannot be used ([`Device::check`]); `f` does not run then.
pub fn with_device<R>(device: Device, f: impl FnOnce() -> R) -> Result<R> {
    device.check()?;
    struct Restore(Device);
    impl Drop for Restore {
        fn drop(&mut self) {
            crate::context::try_with(|c| c.device.set(self.0));
        }
    }
    let _restore = Restore(crate::context::with(|c| c.device.replace(device)));
    Ok(f())
}

/// The device two tensor operands of `op` share, or the error that names both.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn common(op: &'static str, a: Device, b: Device) -> Result<Device> {
    if a == b {
        Ok(a)
    } else {
        Err(Error::device(
            op,
            format!(
                "operands are on different devices ({a} and {b}); move one with to_device first"
            ),
        ))
    }
}

/// Waits until every device has finished the work queued so far (PyTorch's
/// `torch.cuda.synchronize()`), for timing: GPU ops return when queued, not when done. On the
/// host, and in a build without the `cuda` feature, there is nothing to wait for. Reading a
/// value back waits by itself.
///
/// # Errors
/// When a GPU reports an error from earlier work (a failed kernel shows up here).
pub fn synchronize() -> Result<()> {
    #[cfg(feature = "cuda")]
    crate::cuda::synchronize()?;
    Ok(())
}
