//! Task records are reused, not freed and allocated again.
//!
//! A task is usually spawned on one thread and ends on another, so a record
//! allocated at spawn would be freed by another thread: the allocator then
//! takes the allocating thread's arena lock, and with two busy threads that
//! lock was a third of the spawn benchmark's CPU time (measured with perf:
//! futex waits in `__lll_lock_wait_private` under `free`). Records leaving the
//! finished history go to a per-thread cache instead, and move between
//! threads in batches through a small shared pool: one lock per
//! [`BATCH`] records. Both are bounded; a record beyond them is freed.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use crate::model::task::TaskCell;
use crate::sync::lock;

/// Records a thread keeps for its next spawns.
const LOCAL_MAX: usize = 2 * BATCH;
/// Records moved between a thread and the shared pool at once.
const BATCH: usize = 32;
/// Batches the shared pool holds at most (1,024 records, ~320 KiB).
const SHARED_MAX: usize = 32;

thread_local! {
    static LOCAL: RefCell<Vec<Arc<TaskCell>>> = const { RefCell::new(Vec::new()) };
}

static SHARED: Mutex<Vec<Vec<Arc<TaskCell>>>> = Mutex::new(Vec::new());

/// A shared record holding `cell`: a reused one when there is one.
pub(crate) fn new_cell(cell: TaskCell) -> Arc<TaskCell> {
    // The uniqueness check is made here rather than in `recycle`: its locked
    // instruction brings in the line the new contents are written to anyway.
    match take() {
        Some(mut reused) => match Arc::get_mut(&mut reused) {
            Some(slot) => {
                *slot = cell;
                reused
            }
            // Still held elsewhere (a snapshot being built): let it go.
            None => Arc::new(cell),
        },
        None => Arc::new(cell),
    }
}

fn take() -> Option<Arc<TaskCell>> {
    LOCAL
        .try_with(|local| {
            let mut local = local.try_borrow_mut().ok()?;
            if local.is_empty()
                && let Some(batch) = lock(&SHARED).pop()
            {
                *local = batch;
            }
            local.pop()
        })
        .ok()
        .flatten()
}

/// Takes back a finished record, for reuse once nobody else holds it.
pub(crate) fn recycle(cell: Arc<TaskCell>) {
    let _ = LOCAL.try_with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return;
        };
        local.push(cell);
        if local.len() > LOCAL_MAX {
            let keep = local.len() - BATCH;
            let batch = local.split_off(keep);
            let mut shared = lock(&SHARED);
            if shared.len() < SHARED_MAX {
                shared.push(batch);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::SpawnLocation;

    fn cell(id: u64) -> TaskCell {
        TaskCell::new(id, Some("x".into()), SpawnLocation::UNKNOWN, None)
    }

    /// One test: the shared pool is process-wide, parallel tests would take
    /// each other's batches.
    #[test]
    fn records_are_reused_only_when_nobody_holds_them() {
        a_recycled_record_is_reused_with_the_new_contents();
        a_record_still_held_elsewhere_is_not_reused();
        records_freed_on_one_thread_serve_spawns_on_another();
    }

    fn a_recycled_record_is_reused_with_the_new_contents() {
        let first = new_cell(cell(1));
        let addr = Arc::as_ptr(&first);
        first.polls.store(9, std::sync::atomic::Ordering::Relaxed);
        recycle(first);
        let second = new_cell(cell(2));
        assert_eq!(Arc::as_ptr(&second), addr);
        assert_eq!(second.id, 2);
        assert_eq!(second.polls.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    fn a_record_still_held_elsewhere_is_not_reused() {
        let first = new_cell(cell(1));
        let held = Arc::clone(&first);
        recycle(first);
        let second = new_cell(cell(2));
        assert_ne!(Arc::as_ptr(&second), Arc::as_ptr(&held));
        assert_eq!(held.id, 1);
        // The pool let go of its reference.
        assert_eq!(Arc::strong_count(&held), 1);
    }

    fn records_freed_on_one_thread_serve_spawns_on_another() {
        let cells: Vec<_> = std::thread::spawn(|| (0..200).map(|i| new_cell(cell(i))).collect())
            .join()
            .unwrap();
        let addrs: std::collections::HashSet<_> =
            cells.iter().map(|c| Arc::as_ptr(c) as usize).collect();
        std::thread::spawn(move || cells.into_iter().for_each(recycle))
            .join()
            .unwrap();
        // The freeing thread kept at most LOCAL_MAX, and its overflow went to
        // the shared pool, where this thread finds it.
        let reused = std::thread::spawn(move || {
            (0..BATCH)
                .map(|i| new_cell(cell(i as u64)))
                .filter(|c| addrs.contains(&(Arc::as_ptr(c) as usize)))
                .count()
        })
        .join()
        .unwrap();
        assert_eq!(reused, BATCH);
    }
}
