//! The device boundary: where a tensor's elements live.
//!
//! A storage is host memory (a `Vec`, read by the kernels in [`crate::backend::cpu`] through a
//! [`crate::shape::Layout`]) or, with the `cuda` feature, GPU memory (read by the kernels in
//! [`crate::backend::cuda`]). Tensors, ops and the tape only hold `Arc<Storage>`; an op asks for the side
//! it has a kernel for, and a host kernel given GPU memory gets an error, never a copy.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::device::{counter, Device};
pub(crate) use crate::dtype::CpuStorage;

static LIVE_STORAGES: AtomicUsize = AtomicUsize::new(0);

/// A block of elements shared by every tensor that views it.
#[derive(Debug)]
pub(crate) enum Storage {
    /// Host memory.
    Cpu(CpuStorage),
    /// GPU memory (its own byte counters live in [`crate::backend::cuda`]).
    #[cfg(feature = "cuda")]
    Cuda(crate::backend::cuda::CudaStorage),
}

impl Storage {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn dtype(&self) -> crate::dtype::DType {
        match self {
            Storage::Cpu(c) => c.dtype(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => c.dtype(),
        }
    }

    pub fn new(cpu: CpuStorage) -> Self {
        LIVE_STORAGES.fetch_add(1, Ordering::Relaxed);
        counter(Device::Cpu).add(cpu.bytes());
        Storage::Cpu(cpu)
    }

    /// The host elements, or the error that says they are on a GPU (an op with only a host
    /// kernel was given a GPU tensor).
    #[inline]
    pub fn cpu(&self) -> Result<&CpuStorage, crate::error::Error> {
        match self {
            Storage::Cpu(c) => Ok(c),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Err(crate::backend::cuda::no_kernel(c)),
        }
    }

    /// The host elements to overwrite (the caller owns the only handle).
    pub fn cpu_mut(&mut self) -> Option<&mut CpuStorage> {
        match self {
            Storage::Cpu(c) => Some(c),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => None,
        }
    }

    pub fn device(&self) -> crate::backend::device::Device {
        match self {
            Storage::Cpu(_) => crate::backend::device::Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => crate::backend::device::Device::Cuda(c.ordinal()),
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        #[cfg_attr(not(feature = "cuda"), allow(irrefutable_let_patterns))]
        if let Storage::Cpu(cpu) = self {
            LIVE_STORAGES.fetch_sub(1, Ordering::Relaxed);
            counter(Device::Cpu).sub(cpu.bytes());
            crate::backend::pool::give(std::mem::replace(cpu, CpuStorage::Bool(Vec::new())));
        }
    }
}

/// Counters of the tensor storages alive in the process, to check that tapes release memory.
///
/// ```
/// use gradtape::{memory, Tensor};
/// let before = memory::live_storages();
/// let t = Tensor::zeros(&[1000], gradtape::DType::F32).unwrap();
/// assert!(memory::live_storages() >= before + 1);
/// drop(t);
/// ```
pub mod memory {
    use super::*;

    /// Number of storages alive now (all threads).
    ///
    /// ```
    /// let n = gradtape::memory::live_storages();
    /// let _t = gradtape::Tensor::zeros(&[4], gradtape::DType::F32).unwrap();
    /// assert_eq!(gradtape::memory::live_storages(), n + 1);
    /// ```
    pub fn live_storages() -> usize {
        LIVE_STORAGES.load(Ordering::Relaxed)
    }

    /// Bytes of element data alive now (all threads).
    ///
    /// ```
    /// let _t = gradtape::Tensor::zeros(&[4], gradtape::DType::F64).unwrap();
    /// assert!(gradtape::memory::live_bytes() >= 32);
    /// ```
    pub fn live_bytes() -> usize {
        counter(Device::Cpu).live()
    }

    /// The most bytes of element data alive at once (all threads) since the start or the last
    /// [`reset_peak_bytes`] (PyTorch's `max_memory_allocated`).
    ///
    /// ```
    /// gradtape::memory::reset_peak_bytes();
    /// let t = gradtape::Tensor::zeros(&[1000], gradtape::DType::F64).unwrap();
    /// assert!(gradtape::memory::peak_bytes() >= 8000);
    /// # drop(t);
    /// ```
    pub fn peak_bytes() -> usize {
        counter(Device::Cpu).peak()
    }

    /// Starts [`peak_bytes`] again from the bytes alive now.
    ///
    /// ```
    /// gradtape::memory::reset_peak_bytes();
    /// assert!(gradtape::memory::peak_bytes() >= gradtape::memory::live_bytes());
    /// ```
    pub fn reset_peak_bytes() {
        counter(Device::Cpu).reset_peak();
    }

    /// Bytes of tensor data alive now on `device` (all threads): [`live_bytes`] for the host,
    /// the GPU's own for `Device::Cuda(n)` (PyTorch's `torch.cuda.memory_allocated(n)`); 0 for
    /// a GPU never used.
    ///
    /// ```
    /// use gradtape::{memory, Device};
    /// let _t = gradtape::Tensor::zeros(&[4], gradtape::DType::F64).unwrap();
    /// assert!(memory::live_bytes_on(Device::Cpu) >= 32);
    /// if !Device::Cuda(0).is_available() {
    ///     assert_eq!(memory::live_bytes_on(Device::Cuda(0)), 0);
    /// }
    /// ```
    pub fn live_bytes_on(device: Device) -> usize {
        counter(device).live()
    }

    /// The most bytes of tensor data alive at once on `device` since the start or the last
    /// [`reset_peak_bytes_on`] for it (PyTorch's `torch.cuda.max_memory_allocated(n)`).
    ///
    /// ```
    /// use gradtape::{memory, Device};
    /// memory::reset_peak_bytes_on(Device::Cpu);
    /// let t = gradtape::Tensor::zeros(&[1000], gradtape::DType::F64).unwrap();
    /// assert!(memory::peak_bytes_on(Device::Cpu) >= 8000);
    /// # drop(t);
    /// ```
    pub fn peak_bytes_on(device: Device) -> usize {
        counter(device).peak()
    }

    /// Starts [`peak_bytes_on`] `device` again from the bytes alive there now.
    ///
    /// ```
    /// use gradtape::{memory, Device};
    /// memory::reset_peak_bytes_on(Device::Cpu);
    /// assert!(memory::peak_bytes_on(Device::Cpu) >= memory::live_bytes_on(Device::Cpu));
    /// ```
    pub fn reset_peak_bytes_on(device: Device) {
        counter(device).reset_peak();
    }

    /// Bytes held by the cache of large freed buffers (see [`empty_cache`]) and by the
    /// compiled functions' graphs, which keep the buffers a call frees for their next call.
    ///
    /// ```
    /// gradtape::memory::empty_cache();
    /// assert_eq!(gradtape::memory::cached_bytes(), 0);
    /// ```
    pub fn cached_bytes() -> usize {
        crate::backend::pool::cached_bytes()
    }

    /// Releases every cached buffer to the system (PyTorch's `torch.cuda.empty_cache`).
    ///
    /// Freed buffers of 1 MiB and more are kept, up to [`cache_limit`] bytes, because the next
    /// step of a training loop asks for the same sizes again and fresh pages are slow to fault
    /// in; a compiled function's graph keeps those of 4 KiB and more that its calls free,
    /// within the same limit. After the large work is done, call this to give that memory
    /// back (a graph running on another thread meanwhile gives its buffers back when its
    /// next call starts).
    ///
    /// ```
    /// use gradtape::{memory, DType, Tensor};
    /// drop(Tensor::zeros(&[1 << 20], DType::F32).unwrap()); // 4 MiB, cached when freed
    /// assert!(memory::cached_bytes() >= 4 << 20);
    /// memory::empty_cache();
    /// assert_eq!(memory::cached_bytes(), 0);
    /// ```
    pub fn empty_cache() {
        crate::backend::pool::trim(0);
    }

    /// The most bytes the cache of freed buffers keeps (1 GiB unless changed).
    ///
    /// ```
    /// assert!(gradtape::memory::cache_limit() > 0);
    /// ```
    pub fn cache_limit() -> usize {
        crate::backend::pool::LIMIT.load(Ordering::Relaxed)
    }

    /// Sets [`cache_limit`] for the whole process, dropping cached buffers beyond it; 0 turns
    /// the cache off.
    ///
    /// ```
    /// use gradtape::{memory, DType, Tensor};
    /// let before = memory::cache_limit();
    /// memory::set_cache_limit(0);
    /// drop(Tensor::zeros(&[1 << 20], DType::F32).unwrap());
    /// assert_eq!(memory::cached_bytes(), 0);
    /// memory::set_cache_limit(before);
    /// ```
    pub fn set_cache_limit(bytes: usize) {
        crate::backend::pool::LIMIT.store(bytes, Ordering::Relaxed);
        crate::backend::pool::trim(bytes);
    }
}
