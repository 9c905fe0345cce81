//! Settings a guard changes for a scope (`check_numerics_guard`, `device_guard`, `no_grad`):
//! each guard, when dropped, restores what it found. A Rust value can be moved and dropped in
//! any order, so a guard dropped while a newer one of the same setting is alive hands what it
//! found to that one instead of restoring it: the setting stays the newest live scope's, and
//! the last guard dropped restores what was there before the first.

use std::cell::{Cell, RefCell};

/// The live scopes of one setting: each guard's id and the value it found.
pub(crate) struct Scopes<T> {
    live: RefCell<Vec<(u64, T)>>,
    next: Cell<u64>,
}

impl<T: Copy> Scopes<T> {
    pub(crate) const fn new() -> Scopes<T> {
        Scopes {
            live: RefCell::new(Vec::new()),
            next: Cell::new(0),
        }
    }

    /// Sets `setting` to `value` for a new scope; returns the scope's id.
    pub(crate) fn enter(&self, setting: &Cell<T>, value: T) -> u64 {
        let id = self.next.get();
        self.next.set(id + 1);
        self.live.borrow_mut().push((id, setting.replace(value)));
        id
    }

    /// Ends scope `id`: the newest live scope restores what it found; an older one gives
    /// what it found to the next newer scope.
    pub(crate) fn exit(&self, setting: &Cell<T>, id: u64) {
        let mut live = self.live.borrow_mut();
        if let Some(at) = live.iter().position(|&(k, _)| k == id) {
            let (_, found) = live.remove(at);
            match live.get_mut(at) {
                Some(newer) => newer.1 = found,
                None => setting.set(found),
            }
        }
    }
}
