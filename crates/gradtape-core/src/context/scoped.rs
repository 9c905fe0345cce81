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

/// Where a setting and its live scopes are in the context.
pub(crate) type Place<T> = fn(&super::Context) -> (&Cell<T>, &Scopes<T>);

/// One live scope of a setting, ended by dropping it: the part every public guard shares.
pub(crate) struct Entered<T: Copy + 'static> {
    id: u64,
    place: Place<T>,
    /// A scope of this thread's setting: not sent to another thread.
    _thread: std::marker::PhantomData<*const ()>,
}

impl<T: Copy + 'static> Entered<T> {
    /// Sets the setting at `place` to `value` until the result is dropped.
    pub(crate) fn enter(place: Place<T>, value: T) -> Entered<T> {
        let id = super::with(|c| {
            let (setting, scopes) = place(c);
            scopes.enter(setting, value)
        });
        Entered {
            id,
            place,
            _thread: std::marker::PhantomData,
        }
    }
}

impl<T: Copy + 'static> Drop for Entered<T> {
    fn drop(&mut self) {
        super::try_with(|c| {
            let (setting, scopes) = (self.place)(c);
            scopes.exit(setting, self.id)
        });
    }
}
