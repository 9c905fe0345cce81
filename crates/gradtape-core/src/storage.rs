//! The device boundary: where a tensor's elements live.
//!
//! A storage is host memory (a `Vec`, read by the kernels in [`crate::cpu`] through a
//! [`crate::shape::Layout`]) or, with the `cuda` feature, GPU memory (read by the kernels in
//! [`crate::cuda`]). Tensors, ops and the tape only hold `Arc<Storage>`; an op asks for the side
//! it has a kernel for, and a host kernel given GPU memory gets an error, never a copy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::dtype::DType;

/// Host memory of one dtype.
#[derive(Debug)]
pub enum CpuStorage {
    /// float32 elements.
    F32(Vec<f32>),
    /// float64 elements.
    F64(Vec<f64>),
    /// int64 elements.
    I64(Vec<i64>),
    /// bool elements.
    Bool(Vec<bool>),
}

impl CpuStorage {
    pub(crate) fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::Bool(_) => DType::Bool,
        }
    }
    fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
            CpuStorage::Bool(v) => v.len(),
        }
    }
    fn bytes(&self) -> usize {
        self.len() * self.dtype().size_in_bytes()
    }
}

static LIVE_STORAGES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// A block of elements shared by every tensor that views it.
#[derive(Debug)]
pub(crate) enum Storage {
    /// Host memory.
    Cpu(CpuStorage),
    /// GPU memory (its own byte counters live in [`crate::cuda`]).
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaStorage),
}

impl Storage {
    pub fn new(cpu: CpuStorage) -> Self {
        LIVE_STORAGES.fetch_add(1, Ordering::Relaxed);
        let now = LIVE_BYTES.fetch_add(cpu.bytes(), Ordering::Relaxed) + cpu.bytes();
        // A plain load first: the read-modify-write only when a new peak is reached.
        if now > PEAK_BYTES.load(Ordering::Relaxed) {
            PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
        }
        Storage::Cpu(cpu)
    }

    /// The host elements, or the error that says they are on a GPU (an op with only a host
    /// kernel was given a GPU tensor).
    #[inline]
    pub fn cpu(&self) -> Result<&CpuStorage, crate::error::Error> {
        match self {
            Storage::Cpu(c) => Ok(c),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Err(crate::cuda::no_kernel(c)),
        }
    }

    pub fn device(&self) -> crate::device::Device {
        match self {
            Storage::Cpu(_) => crate::device::Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => crate::device::Device::Cuda(c.ordinal()),
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        #[cfg_attr(not(feature = "cuda"), allow(irrefutable_let_patterns))]
        if let Storage::Cpu(cpu) = self {
            LIVE_STORAGES.fetch_sub(1, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(cpu.bytes(), Ordering::Relaxed);
            pool::give(std::mem::replace(cpu, CpuStorage::Bool(Vec::new())));
        }
    }
}

/// Large buffers of dropped tensors, kept for the next tensor of the same kind.
///
/// A fresh buffer of tens of megabytes comes from the kernel as untouched pages, and every
/// page faults on its first write: at 10 million elements that cost more than the arithmetic.
/// Eager code makes and drops same-sized temporaries on every step, so reusing them pays.
/// The price is resident memory after large tensors are gone: at most
/// [`memory::cache_limit`] bytes, released by [`memory::empty_cache`].
pub(crate) mod pool {
    use super::*;
    use crate::dtype::Element;
    use crate::error::{Error, Result};

    /// Buffers below this many bytes go back to the allocator (which recycles them well).
    const MIN_BYTES: usize = 1 << 20;
    /// The default of [`memory::cache_limit`].
    const DEFAULT_LIMIT: usize = 1 << 30;
    const MAX_BUFFERS: usize = 32;

    pub(super) static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT);
    static POOL: Mutex<Vec<CpuStorage>> = Mutex::new(Vec::new());

    fn capacity_bytes(s: &CpuStorage) -> usize {
        match s {
            CpuStorage::F32(v) => v.capacity() * 4,
            CpuStorage::F64(v) => v.capacity() * 8,
            CpuStorage::I64(v) => v.capacity() * 8,
            CpuStorage::Bool(v) => v.capacity(),
        }
    }

    fn lock() -> std::sync::MutexGuard<'static, Vec<CpuStorage>> {
        // The pool holds plain buffers: one left by a panicking thread is still a buffer.
        POOL.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn give(s: CpuStorage) {
        let bytes = capacity_bytes(&s);
        if bytes < MIN_BYTES {
            return;
        }
        let limit = LIMIT.load(Ordering::Relaxed);
        if bytes > limit {
            return;
        }
        let mut pool = lock();
        // The newest buffer is the likeliest to be wanted again (the next step of the same
        // loop): the oldest make room for it. Refusing it instead left a pool full of another
        // workload's sizes, and this one paying page faults on fresh buffers every step.
        while !pool.is_empty() && (pool.len() >= MAX_BUFFERS || cached(&pool) + bytes > limit) {
            pool.remove(0);
        }
        pool.push(s);
    }

    fn cached(pool: &[CpuStorage]) -> usize {
        pool.iter().map(capacity_bytes).sum()
    }

    pub(super) fn cached_bytes() -> usize {
        cached(&lock())
    }

    /// Drops pooled buffers until at most `limit` bytes remain.
    pub(super) fn trim(limit: usize) {
        let mut pool = lock();
        while cached(&pool) > limit {
            pool.pop();
        }
    }

    /// `n` copies of `v`, allocated as [`take`] does (an error, never an abort, when `n` is
    /// more than memory can hold).
    pub(crate) fn filled<T: Element>(op: &'static str, n: usize, v: T) -> Result<Vec<T>> {
        let mut out = take::<T>(op, n)?;
        out.resize(n, v);
        Ok(out)
    }

    /// An empty vector with room for `n` elements, reusing a pooled buffer when one fits
    /// (between `n` and `2n` elements, so little memory sits unused).
    ///
    /// # Errors
    /// When `n` elements cannot be allocated (more bytes than an allocation may have, or more
    /// than the system gives): an error before any work, never an abort.
    pub(crate) fn take<T: Element>(op: &'static str, n: usize) -> Result<Vec<T>> {
        if n.saturating_mul(std::mem::size_of::<T>()) >= MIN_BYTES {
            let mut pool = lock();
            let fits = |s: &CpuStorage| {
                s.dtype() == T::DTYPE && {
                    let c = capacity_bytes(s) / std::mem::size_of::<T>().max(1);
                    c >= n && c <= 2 * n
                }
            };
            if let Some(i) = pool.iter().rposition(fits) {
                if let Some(mut v) = T::from_storage(pool.remove(i)) {
                    v.clear();
                    return Ok(v);
                }
            }
        }
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| {
            Error::resource(
                op,
                format!(
                    "cannot allocate {n} elements of {} ({} bytes)",
                    T::DTYPE,
                    (n as u128) * std::mem::size_of::<T>() as u128
                ),
            )
        })?;
        Ok(v)
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
        LIVE_BYTES.load(Ordering::Relaxed)
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
        PEAK_BYTES.load(Ordering::Relaxed)
    }

    /// Starts [`peak_bytes`] again from the bytes alive now.
    ///
    /// ```
    /// gradtape::memory::reset_peak_bytes();
    /// assert!(gradtape::memory::peak_bytes() >= gradtape::memory::live_bytes());
    /// ```
    pub fn reset_peak_bytes() {
        PEAK_BYTES.store(LIVE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Bytes held by the cache of large freed buffers (see [`empty_cache`]).
    ///
    /// ```
    /// gradtape::memory::empty_cache();
    /// assert_eq!(gradtape::memory::cached_bytes(), 0);
    /// ```
    pub fn cached_bytes() -> usize {
        super::pool::cached_bytes()
    }

    /// Releases every cached buffer to the system (PyTorch's `torch.cuda.empty_cache`).
    ///
    /// Freed buffers of 1 MiB and more are kept, up to [`cache_limit`] bytes, because the next
    /// step of a training loop asks for the same sizes again and fresh pages are slow to fault
    /// in. After the large work is done, call this to give that memory back.
    ///
    /// ```
    /// use gradtape::{memory, DType, Tensor};
    /// drop(Tensor::zeros(&[1 << 20], DType::F32).unwrap()); // 4 MiB, cached when freed
    /// assert!(memory::cached_bytes() >= 4 << 20);
    /// memory::empty_cache();
    /// assert_eq!(memory::cached_bytes(), 0);
    /// ```
    pub fn empty_cache() {
        super::pool::trim(0);
    }

    /// The most bytes the cache of freed buffers keeps (1 GiB unless changed).
    ///
    /// ```
    /// assert!(gradtape::memory::cache_limit() > 0);
    /// ```
    pub fn cache_limit() -> usize {
        super::pool::LIMIT.load(Ordering::Relaxed)
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
        super::pool::LIMIT.store(bytes, Ordering::Relaxed);
        super::pool::trim(bytes);
    }
}
