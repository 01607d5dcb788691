//! Threads of taskscope itself (its server runtime): their tasks are not the app's.

use std::cell::Cell;

thread_local! {
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as taskscope's own: tasks spawned on it are not recorded.
pub(crate) fn mark_internal_thread() {
    INTERNAL.with(|i| i.set(true));
}

pub(crate) fn is_internal_thread() -> bool {
    INTERNAL.try_with(Cell::get).unwrap_or(false)
}
