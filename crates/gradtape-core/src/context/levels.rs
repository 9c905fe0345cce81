//! Vectorization's state: the vmap levels running on this thread and the per-example copies
//! of variables made in them. The batching rules, which compute, are in `ops::batching`; the
//! transform users call is `vmap::vmap`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::context;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub(crate) static NEXT_LEVEL: AtomicUsize = AtomicUsize::new(1);

/// This thread's vmap levels: vectorization's part of the [`Context`](crate::context::Context).
pub(crate) struct Levels {
    /// The vmap levels running on this thread, innermost last: (level, batch size).
    pub(crate) levels: RefCell<Vec<(usize, usize)>>,
    /// Per-example copies of variables read under a tape started inside a vmap:
    /// (level, variable handle, the copy standing for the batch).
    pub(crate) copies: RefCell<Vec<(usize, u64, Tensor)>>,
}

impl Levels {
    pub(crate) const fn new() -> Levels {
        Levels {
            levels: RefCell::new(Vec::new()),
            copies: RefCell::new(Vec::new()),
        }
    }

    /// The running levels, for a [`Snapshot`](crate::context::Snapshot).
    pub(crate) fn levels(&self) -> Vec<(usize, usize)> {
        self.levels.borrow().clone()
    }

    /// Makes `levels` the running ones (work moved to or back from another thread).
    pub(crate) fn set_levels(&self, levels: &[(usize, usize)]) {
        let mut mine = self.levels.borrow_mut();
        mine.clear();
        mine.extend_from_slice(levels);
    }

    /// Drops the variable copies of levels that do not run here (any more): those made for
    /// the levels a [`Snapshot`](crate::context::Snapshot) brought, once its work is done.
    pub(crate) fn forget_copies_of_other_levels(&self) {
        let levels = self.levels.borrow();
        self.copies
            .borrow_mut()
            .retain(|(lv, _, _)| levels.iter().any(|&(l, _)| l == *lv));
    }
}

pub(crate) fn levels<R>(f: impl FnOnce(&RefCell<Vec<(usize, usize)>>) -> R) -> R {
    context::with(|c| f(&c.vmap.levels))
}

pub(crate) fn copies<R>(f: impl FnOnce(&RefCell<Vec<(usize, u64, Tensor)>>) -> R) -> R {
    context::with(|c| f(&c.vmap.copies))
}

/// The innermost vmap level running on this thread and its batch size.
pub(crate) fn innermost() -> Option<(usize, usize)> {
    levels(|l| l.borrow().last().copied())
}

/// The per-example copy of variable `handle` in `level`, if it was read there.
pub(crate) fn copy_of(handle: u64, level: usize) -> Option<Tensor> {
    copies(|c| {
        c.borrow()
            .iter()
            .find(|(l, h, _)| *l == level && *h == handle)
            .map(|(_, _, t)| t.clone())
    })
}

/// A level running on this thread until dropped.
pub(crate) struct LevelGuard(pub(crate) usize);

impl LevelGuard {
    pub(crate) fn enter(batch: usize) -> LevelGuard {
        let level = NEXT_LEVEL.fetch_add(1, Ordering::Relaxed);
        levels(|l| l.borrow_mut().push((level, batch)));
        LevelGuard(level)
    }
}

impl Drop for LevelGuard {
    fn drop(&mut self) {
        context::try_with(|c| {
            c.vmap.levels.borrow_mut().retain(|&(lv, _)| lv != self.0);
            c.vmap
                .copies
                .borrow_mut()
                .retain(|(lv, _, _)| *lv != self.0);
        });
    }
}

pub(crate) fn live(level: usize) -> Result<()> {
    if levels(|l| l.borrow().iter().any(|&(lv, _)| lv == level)) {
        Ok(())
    } else {
        Err(Error::arg(
            "vmap",
            "a tensor of one example escaped the vmap that made it (or moved to another thread); return it from the function instead",
        ))
    }
}

/// The innermost vmap level among the operands, when any is batched.
#[inline]
pub(crate) fn level_of(xs: &[&Tensor]) -> Option<usize> {
    xs.iter().filter_map(|x| x.batch().map(|(_, l)| l)).max()
}

/// The whole batch behind `x` at `level`, or `None` when `x` is not batched there.
pub(crate) fn at(x: &Tensor, level: usize) -> Option<&Tensor> {
    match x.batch() {
        Some((p, l)) if l == level => Some(p),
        _ => None,
    }
}

/// The batch size of a level.
pub(crate) fn size_of(level: usize) -> Result<usize> {
    live(level)?;
    Ok(levels(|l| {
        l.borrow()
            .iter()
            .find(|&&(lv, _)| lv == level)
            .map_or(0, |&(_, b)| b)
    }))
}

/// The vmap levels running on this thread now (innermost last), to be brought back by
/// [`with_levels`].
pub(crate) fn running() -> Vec<(usize, usize)> {
    context::with(|c| c.vmap.levels())
}

/// Runs `f` with `saved` levels running again besides the ones running now (each level is a
/// number used once, so bringing one back cannot confuse it with another). For work recorded
/// inside a vmap and run after it ended: a custom gradient's function, called by a tape
/// outside the vmap, computes on the examples' tensors it captured.
pub(crate) fn with_levels<R>(saved: &[(usize, usize)], f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Vec<(usize, usize)>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(before) = self.0.take() {
                context::try_with(|c| c.vmap.set_levels(&before));
            }
        }
    }
    let before = running();
    let missing: Vec<(usize, usize)> = saved
        .iter()
        .filter(|(l, _)| !before.iter().any(|(m, _)| m == l))
        .copied()
        .collect();
    if missing.is_empty() {
        return f();
    }
    let mut all = before.clone();
    all.extend(missing);
    // levels are numbered as they start, so by number is the order of nesting
    all.sort_unstable();
    levels(|l| *l.borrow_mut() = all);
    let _restore = Restore(Some(before));
    f()
}

/// Runs `f` inside a new vmap level of batch size `n` (for the tape's jacobians, which batch
/// cotangents rather than arguments).
pub(crate) fn with_level<R>(n: usize, f: impl FnOnce(usize) -> R) -> R {
    let guard = LevelGuard::enter(n);
    f(guard.0)
}
