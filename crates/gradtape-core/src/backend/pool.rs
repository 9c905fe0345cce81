//! Large buffers of dropped tensors, kept for the next tensor of the same kind.
//!
//! A fresh buffer of tens of megabytes comes from the kernel as untouched pages, and every
//! page faults on its first write: at 10 million elements that cost more than the arithmetic.
//! Eager code makes and drops same-sized temporaries on every step, so reusing them pays.
//! The price is resident memory after large tensors are gone: at most
//! [`crate::memory::cache_limit`] bytes, released by [`crate::memory::empty_cache`]. While a
//! compiled graph runs, its own arena ([`crate::backend::arena`]) comes first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::dtype::CpuStorage;
use crate::dtype::Element;
use crate::error::{Error, Result};

/// Buffers below this many bytes go back to the allocator (which recycles them well).
const MIN_BYTES: usize = 1 << 20;
/// The default of [`crate::memory::cache_limit`].
const DEFAULT_LIMIT: usize = 1 << 30;
const MAX_BUFFERS: usize = 32;

pub(crate) static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT);
static POOL: Mutex<Vec<CpuStorage>> = Mutex::new(Vec::new());

fn lock() -> std::sync::MutexGuard<'static, Vec<CpuStorage>> {
    // The pool holds plain buffers: one left by a panicking thread is still a buffer.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn give(s: CpuStorage) {
    // a compiled graph running on this thread keeps it for its next allocations
    let Some(s) = crate::backend::arena::give(s, LIMIT.load(Ordering::Relaxed)) else {
        return;
    };
    let bytes = s.capacity_bytes();
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
    pool.iter().map(CpuStorage::capacity_bytes).sum()
}

/// What the pool and the compiled graphs' arenas hold.
pub(crate) fn cached_bytes() -> usize {
    cached(&lock()) + crate::backend::arena::cached_bytes()
}

/// Drops pooled buffers until at most `limit` bytes remain, and the arenas' buffers when
/// those alone hold more.
pub(crate) fn trim(limit: usize) {
    if crate::backend::arena::cached_bytes() > 0 && cached_bytes() > limit {
        crate::backend::arena::release_all();
    }
    let mut pool = lock();
    while cached(&pool) > limit {
        pool.pop();
    }
}

/// `n` copies of `v`, allocated as [`take`] does (an error, never an abort, when `n` is
/// more than memory can hold).
///
/// Written as a plain fill of the spare capacity, not `Vec::resize`: `resize` stores one
/// element at a time behind a length guard, and where the compiler did not inline it (which
/// depends on how the crate is cut into codegen units) it ran at a fraction of memory speed:
/// 16% of the per-example-gradients benchmark, a 100 MB zeroed buffer per step.
pub(crate) fn filled<T: Element>(op: &'static str, n: usize, v: T) -> Result<Vec<T>> {
    let mut out = take::<T>(op, n)?;
    let spare = &mut out.spare_capacity_mut()[..n];
    // SAFETY: `v` is one of the four element types (sealed), none of which has padding, so
    // all its bytes are initialized and may be read.
    let bytes = unsafe {
        std::slice::from_raw_parts((&v as *const T).cast::<u8>(), std::mem::size_of::<T>())
    };
    if bytes.iter().all(|&b| b == 0) {
        // Zeros (the common case: accumulators, padding) as one `memset`, the fastest write
        // there is, also of fresh pages.
        // SAFETY: `spare` is `n` elements of the vector's capacity (`take` guarantees room for
        // `n`), and the all-zero bit pattern is a valid value of every element type (0, 0.0,
        // false).
        unsafe { std::ptr::write_bytes(spare.as_mut_ptr(), 0, n) };
    } else {
        for slot in spare.iter_mut() {
            slot.write(v);
        }
    }
    // SAFETY: `take` returned an empty vector with capacity for at least `n` elements, and
    // the first `n` of them were just initialized.
    unsafe { out.set_len(n) };
    Ok(out)
}

/// An empty vector with room for `n` elements, reusing a pooled buffer when one fits
/// (between `n` and `2n` elements, so little memory sits unused).
///
/// # Errors
/// When `n` elements cannot be allocated (more bytes than an allocation may have, or more
/// than the system gives): an error before any work, never an abort.
pub(crate) fn take<T: Element>(op: &'static str, n: usize) -> Result<Vec<T>> {
    if let Some(v) = crate::backend::arena::take::<T>(n) {
        return Ok(v);
    }
    if n.saturating_mul(std::mem::size_of::<T>()) >= MIN_BYTES {
        let mut pool = lock();
        let fits = |s: &CpuStorage| {
            s.dtype() == T::DTYPE && {
                let c = s.capacity_bytes() / std::mem::size_of::<T>().max(1);
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
    crate::backend::arena::note_system(n * std::mem::size_of::<T>());
    Ok(v)
}
