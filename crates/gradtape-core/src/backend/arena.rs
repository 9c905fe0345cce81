//! A compiled graph's own host buffers, kept from one call to the next: the memory plan of
//! `gradtape::function` for the values outside fusion groups (matmul and convolution results,
//! gradients of other ops), as PyTorch keeps a private memory pool per captured CUDA graph.
//!
//! A call asks for the same buffers in the same order every time, so the plan is learned
//! rather than computed: while a graph runs, the buffers its values free go to its arena, and
//! its kernels' allocations are served from there first. After the second call a step takes
//! nothing new from the system but what escapes it (its outputs, the variables' new values,
//! whose old buffers come back when they are replaced), and no fresh page faults in. A static
//! plan (XLA's buffer assignment) would need every kernel to write into a buffer it is given;
//! here the kernels keep allocating through the pool's `take`, which asks the arena of the
//! graph running on the thread.
//!
//! Only buffers of [`MIN_BYTES`] or more are kept (below a page the allocator recycles them
//! well and nothing faults). What an arena holds counts in [`crate::memory::cached_bytes`],
//! within [`crate::memory::cache_limit`], and [`crate::memory::empty_cache`] releases it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::dtype::{CpuStorage, Element};

/// Smaller buffers go back to the allocator.
pub(crate) const MIN_BYTES: usize = 4096;

/// Bytes held by all arenas, between and during calls.
static BYTES: AtomicUsize = AtomicUsize::new(0);
/// Bumped by `empty_cache`: an arena that was running then drops what it holds at its next
/// call.
static GENERATION: AtomicUsize = AtomicUsize::new(0);
/// Every arena alive, for `empty_cache`.
static ALL: Mutex<Vec<Weak<Mutex<Arena>>>> = Mutex::new(Vec::new());

thread_local! {
    /// The arena of the graph running on this thread, if any.
    static ACTIVE: RefCell<Option<Arena>> = const { RefCell::new(None) };
    /// Buffers of `MIN_BYTES` or more this thread took from the system (what the tests read;
    /// counted in test builds only).
    static FROM_SYSTEM: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The freed buffers of one graph, each with the call that freed it.
#[derive(Default)]
pub(crate) struct Arena {
    free: Vec<(CpuStorage, u64)>,
    /// Calls so far (the stamp of the one running).
    call: u64,
    generation: usize,
}

impl Arena {
    /// A new empty arena that `empty_cache` can reach.
    pub(crate) fn shared() -> Arc<Mutex<Arena>> {
        let arena = Arc::new(Mutex::new(Arena::default()));
        let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&arena));
        arena
    }

    /// Runs `f` with this arena serving and keeping the thread's host buffers. Afterwards it
    /// keeps what this call freed and drops what it held but no allocation of this call
    /// wanted (a step that changed, or a buffer that stopped coming back), so it never holds
    /// more than one call's worth.
    pub(crate) fn scope<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let generation = GENERATION.load(Ordering::Relaxed);
        if generation != self.generation {
            self.release(|_| true);
            self.generation = generation;
        }
        self.call += 1;
        struct Restore<'a> {
            arena: &'a mut Arena,
            outer: Option<Arena>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let mine = ACTIVE.with(|a| a.replace(self.outer.take()));
                if let Some(mine) = mine {
                    *self.arena = mine;
                }
                let call = self.arena.call;
                self.arena.release(|&(_, stamp)| stamp != call);
            }
        }
        let outer = ACTIVE.with(|a| a.replace(Some(std::mem::take(self))));
        let _restore = Restore { arena: self, outer };
        f()
    }

    fn release(&mut self, drop_if: impl Fn(&(CpuStorage, u64)) -> bool) {
        self.free.retain(|entry| {
            let keep = !drop_if(entry);
            if !keep {
                BYTES.fetch_sub(entry.0.capacity_bytes(), Ordering::Relaxed);
            }
            keep
        });
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        self.release(|_| true);
    }
}

/// A buffer for `n` elements from the running graph's arena (between `n` and `2n`, the newest
/// that fits), or `None`.
pub(crate) fn take<T: Element>(n: usize) -> Option<Vec<T>> {
    if n.saturating_mul(std::mem::size_of::<T>()) < MIN_BYTES {
        return None;
    }
    ACTIVE
        .try_with(|a| {
            let mut a = a.borrow_mut();
            let arena = a.as_mut()?;
            let fits = |(s, _): &(CpuStorage, u64)| {
                s.dtype() == T::DTYPE && {
                    let c = s.capacity_bytes() / std::mem::size_of::<T>().max(1);
                    c >= n && c <= 2 * n
                }
            };
            let i = arena.free.iter().rposition(fits)?;
            let (s, _) = arena.free.swap_remove(i);
            BYTES.fetch_sub(s.capacity_bytes(), Ordering::Relaxed);
            let mut v = T::from_storage(s)?;
            v.clear();
            Some(v)
        })
        .ok()
        .flatten()
}

/// Notes that a buffer of `bytes` came from the system.
pub(crate) fn note_system(bytes: usize) {
    if cfg!(test) && bytes >= MIN_BYTES {
        let _ = FROM_SYSTEM.try_with(|c| c.set(c.get() + 1));
    }
}

/// Keeps `s` in the running graph's arena if all arenas then hold at most `limit` bytes, or
/// gives it back.
pub(crate) fn give(s: CpuStorage, limit: usize) -> Option<CpuStorage> {
    let bytes = s.capacity_bytes();
    if bytes < MIN_BYTES {
        return Some(s);
    }
    let mut s = Some(s);
    let _ = ACTIVE.try_with(|a| {
        if let Some(arena) = a.borrow_mut().as_mut() {
            if BYTES.load(Ordering::Relaxed) + bytes <= limit {
                BYTES.fetch_add(bytes, Ordering::Relaxed);
                arena.free.extend(s.take().map(|s| (s, arena.call)));
            }
        }
    });
    s
}

/// Bytes all arenas hold.
pub(crate) fn cached_bytes() -> usize {
    BYTES.load(Ordering::Relaxed)
}

/// Releases what every arena holds (those running now, at their next call).
pub(crate) fn release_all() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    let all = ALL.lock().unwrap_or_else(|e| e.into_inner());
    for arena in all.iter().filter_map(Weak::upgrade) {
        if let Ok(mut arena) = arena.try_lock() {
            arena.release(|_| true);
        }
    }
}

/// How many buffers of `MIN_BYTES` or more this thread has taken from the system.
#[cfg(test)]
pub(crate) fn from_system() -> usize {
    FROM_SYSTEM.with(|c| c.get())
}
