//! The [`Device`] type: host memory or one NVIDIA GPU, and what each can do in this build.
//!
//! The public module `gradtape::device` re-exports it beside the per-thread scope
//! ([`crate::device::with_device`]), which lives above the backends.
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Bytes of tensor data alive on one device, and the most alive at once: the one kind of
/// counter every backend keeps, read through `gradtape::memory` for any device.
pub(crate) struct Counter {
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl Counter {
    const fn new() -> Counter {
        Counter {
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }
    /// `bytes` more alive.
    #[inline]
    pub(crate) fn add(&self, bytes: usize) {
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        // A plain load first: the read-modify-write only when a new peak is reached.
        if now > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
    }
    /// `bytes` fewer alive.
    #[inline]
    pub(crate) fn sub(&self, bytes: usize) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
    /// Starts the peak again from the bytes alive now.
    pub(crate) fn reset_peak(&self) {
        self.peak.store(self.live(), Ordering::Relaxed);
    }
}

/// GPUs counted one by one; higher ordinals share the last counter (their sum stays exact in
/// [`ALL_GPUS`]).
pub(crate) const COUNTED_GPUS: usize = 64;
static HOST: Counter = Counter::new();
static GPUS: [Counter; COUNTED_GPUS] = [const { Counter::new() }; COUNTED_GPUS];
/// Every GPU together (`gradtape::cuda::live_bytes`, PyTorch's totals).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) static ALL_GPUS: Counter = Counter::new();

/// The counter of `device`.
#[inline]
pub(crate) fn counter(device: Device) -> &'static Counter {
    match device {
        Device::Cpu => &HOST,
        Device::Cuda(n) => &GPUS[n.min(COUNTED_GPUS - 1)],
    }
}
