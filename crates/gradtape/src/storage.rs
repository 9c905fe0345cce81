//! The device boundary: where a tensor's elements live.
//!
//! Today every storage is a host `Vec`; kernels in [`crate::cpu`] read them through a
//! [`crate::shape::Layout`]. A CUDA backend adds a variant to [`Storage`] and a kernel module
//! beside `cpu`; tensors, ops and the tape only hold `Arc<Storage>` and never look inside.

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

/// A block of elements shared by every tensor that views it.
#[derive(Debug)]
pub(crate) struct Storage {
    cpu: CpuStorage,
}

impl Storage {
    pub fn new(cpu: CpuStorage) -> Self {
        LIVE_STORAGES.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(cpu.bytes(), Ordering::Relaxed);
        Storage { cpu }
    }
    pub fn cpu(&self) -> &CpuStorage {
        &self.cpu
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        LIVE_STORAGES.fetch_sub(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(self.cpu.bytes(), Ordering::Relaxed);
        let cpu = std::mem::replace(&mut self.cpu, CpuStorage::Bool(Vec::new()));
        pool::give(cpu);
    }
}

/// Large buffers of dropped tensors, kept for the next tensor of the same kind.
///
/// A fresh buffer of tens of megabytes comes from the kernel as untouched pages, and every
/// page faults on its first write: at 10 million elements that cost more than the arithmetic.
/// Eager code makes and drops same-sized temporaries on every step, so reusing them pays.
pub(crate) mod pool {
    use super::*;
    use crate::dtype::Element;

    /// Buffers below this many bytes go back to the allocator (which recycles them well).
    const MIN_BYTES: usize = 1 << 20;
    /// At most this many bytes wait in the pool.
    const MAX_POOLED: usize = 1 << 30;
    const MAX_BUFFERS: usize = 32;

    static POOL: Mutex<Vec<CpuStorage>> = Mutex::new(Vec::new());

    fn capacity_bytes(s: &CpuStorage) -> usize {
        match s {
            CpuStorage::F32(v) => v.capacity() * 4,
            CpuStorage::F64(v) => v.capacity() * 8,
            CpuStorage::I64(v) => v.capacity() * 8,
            CpuStorage::Bool(v) => v.capacity(),
        }
    }

    pub(crate) fn give(s: CpuStorage) {
        let bytes = capacity_bytes(&s);
        if bytes < MIN_BYTES {
            return;
        }
        let Ok(mut pool) = POOL.lock() else { return };
        let pooled: usize = pool.iter().map(capacity_bytes).sum();
        if pool.len() < MAX_BUFFERS && pooled + bytes <= MAX_POOLED {
            pool.push(s);
        }
    }

    /// An empty vector with room for `n` elements, reusing a pooled buffer when one fits
    /// (between `n` and `2n` elements, so little memory sits unused).
    pub(crate) fn take<T: Element>(n: usize) -> Vec<T> {
        if n * std::mem::size_of::<T>() >= MIN_BYTES {
            if let Ok(mut pool) = POOL.lock() {
                let fits = |s: &CpuStorage| {
                    s.dtype() == T::DTYPE && {
                        let c = capacity_bytes(s) / std::mem::size_of::<T>().max(1);
                        c >= n && c <= 2 * n
                    }
                };
                if let Some(i) = pool.iter().position(fits) {
                    if let Some(mut v) = T::from_storage(pool.swap_remove(i)) {
                        v.clear();
                        return v;
                    }
                }
            }
        }
        Vec::with_capacity(n)
    }
}

/// Counters of the tensor storages alive in the process, to check that tapes release memory.
///
/// ```
/// use gradtape::{memory, Tensor};
/// let before = memory::live_storages();
/// let t = Tensor::zeros(&[1000], gradtape::DType::F32);
/// assert!(memory::live_storages() >= before + 1);
/// drop(t);
/// ```
pub mod memory {
    use super::*;

    /// Number of storages alive now (all threads).
    ///
    /// ```
    /// let n = gradtape::memory::live_storages();
    /// let _t = gradtape::Tensor::zeros(&[4], gradtape::DType::F32);
    /// assert_eq!(gradtape::memory::live_storages(), n + 1);
    /// ```
    pub fn live_storages() -> usize {
        LIVE_STORAGES.load(Ordering::Relaxed)
    }

    /// Bytes of element data alive now (all threads).
    ///
    /// ```
    /// let _t = gradtape::Tensor::zeros(&[4], gradtape::DType::F64);
    /// assert!(gradtape::memory::live_bytes() >= 32);
    /// ```
    pub fn live_bytes() -> usize {
        LIVE_BYTES.load(Ordering::Relaxed)
    }
}
