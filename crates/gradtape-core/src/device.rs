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

use crate::context::scoped::Entered;
use crate::error::Result;

pub use crate::backend::{synchronize, Device};

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
    let _on = device_guard(device)?;
    Ok(f())
}

/// New tensors on `device` until the guard is dropped: [`with_device`] for a block
/// (TensorFlow's `with tf.device(...)`), ended by the end of the block or an early `?`.
///
/// # Errors
/// When `device` cannot be used ([`Device::check`]).
///
/// ```
/// use gradtape::{device, Device, DType, Tensor};
/// {
///     let _cpu = device::device_guard(Device::Cpu)?;
///     assert_eq!(Tensor::zeros(&[2], DType::F32)?.device(), Device::Cpu);
/// }
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn device_guard(device: Device) -> Result<DeviceGuard> {
    device.check()?;
    Ok(DeviceGuard {
        _scope: Entered::enter(|c| (&c.device, &c.device_scopes), device),
    })
}

/// See [`device_guard`]. Dropped in any order, guards leave the newest live one's device, and
/// the last restores what the first found.
#[must_use = "the device scope ends when the guard is dropped"]
pub struct DeviceGuard {
    _scope: Entered<Device>,
}
