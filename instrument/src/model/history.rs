//! The bounded history of finished tasks: a ring of records, overwritten
//! oldest first, without a lock. A task's end is one atomic increment of the
//! ring's position and one pointer swap; the record overwritten is released by
//! the thread that overwrites it. Records older than the history's age limit
//! are released by [`History::prune`] (the watchdog runs it) and never shown.

use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::clock;
use crate::model::task::TaskCell;
use crate::sync::Readers;

/// One cache line per entry: consecutive ends, usually on different threads,
/// write consecutive entries.
#[repr(align(64))]
struct Entry {
    cell: AtomicPtr<TaskCell>,
    readers: Readers,
}

/// The ring's write position, on a line of its own: every end on every thread
/// writes it, and every end reads the entries' length.
#[repr(align(64))]
struct Position(AtomicUsize);

pub(crate) struct History {
    entries: Box<[Entry]>,
    max_age_ns: u64,
    /// What becomes of a record the history lets go of (`cell_pool::recycle`).
    release: fn(Arc<TaskCell>),
    next: Position,
}

impl History {
    /// A history of at most `capacity` tasks, each kept at most `max_age_ns`;
    /// records it lets go of are handed to `release`.
    pub(crate) fn new(capacity: usize, max_age_ns: u64, release: fn(Arc<TaskCell>)) -> History {
        History {
            entries: (0..capacity)
                .map(|_| Entry {
                    cell: AtomicPtr::new(std::ptr::null_mut()),
                    readers: Readers::default(),
                })
                .collect(),
            next: Position(AtomicUsize::new(0)),
            max_age_ns,
            release,
        }
    }

    /// Adds a finished task (its `ended` time set), releasing the oldest when full.
    pub(crate) fn push(&self, cell: Arc<TaskCell>) {
        if self.entries.is_empty() {
            (self.release)(cell);
            return;
        }
        let at = self.next.0.fetch_add(1, Ordering::Relaxed) % self.entries.len();
        let entry = &self.entries[at];
        let old = entry
            .cell
            .swap(Arc::into_raw(cell).cast_mut(), Ordering::SeqCst);
        self.let_go(entry, old);
    }

    fn let_go(&self, entry: &Entry, old: *mut TaskCell) {
        if !old.is_null() {
            entry.readers.wait();
            // SAFETY: `old` came from `Arc::into_raw` in `push` and is no
            // longer in the ring; no reader holds it any more.
            (self.release)(unsafe { Arc::from_raw(old) });
        }
    }

    /// The finished tasks younger than the age limit at `now`, oldest first.
    pub(crate) fn read(&self, now: u64) -> Vec<Arc<TaskCell>> {
        let mut cells: Vec<Arc<TaskCell>> = self
            .entries
            .iter()
            .filter_map(|entry| {
                entry.readers.read(|| {
                    let ptr = entry.cell.load(Ordering::SeqCst);
                    // SAFETY: a counted reader: the pusher that replaces this
                    // pointer waits for us before it releases the record. The
                    // count is raised through the pointer from `Arc::into_raw`
                    // itself (its provenance covers the reference counts; one
                    // derived from a `&TaskCell` would not, and Miri's Stacked
                    // Borrows rejects that).
                    (!ptr.is_null()).then(|| unsafe {
                        Arc::increment_strong_count(ptr);
                        Arc::from_raw(ptr)
                    })
                })
            })
            .filter(|cell| !self.too_old(cell, now))
            .collect();
        cells.sort_by_key(|cell| cell.ended());
        cells
    }

    fn too_old(&self, cell: &TaskCell, now: u64) -> bool {
        clock::since(cell.ended(), now) > self.max_age_ns
    }

    /// Releases the records older than the age limit.
    pub(crate) fn prune(&self, now: u64) {
        for entry in self.entries.iter() {
            let ptr = entry.cell.load(Ordering::SeqCst);
            if ptr.is_null() {
                continue;
            }
            // SAFETY: a counted reader, as in `read`; the pointer is checked
            // again under the count.
            let old = entry.readers.read(|| {
                let now_ptr = entry.cell.load(Ordering::SeqCst);
                !now_ptr.is_null() && self.too_old(unsafe { &*now_ptr }, now)
            });
            if old
                && entry
                    .cell
                    .compare_exchange(
                        ptr,
                        std::ptr::null_mut(),
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .is_ok()
            {
                self.let_go(entry, ptr);
            }
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        for entry in self.entries.iter() {
            let ptr = entry.cell.swap(std::ptr::null_mut(), Ordering::Acquire);
            self.let_go(entry, ptr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::{SpawnLocation, TaskEnd};

    fn finished(id: u64, ended: u64) -> Arc<TaskCell> {
        let cell = TaskCell::new(id, None, SpawnLocation::UNKNOWN, None);
        cell.set_end(TaskEnd::Completed, ended);
        Arc::new(cell)
    }

    #[test]
    fn keeps_the_newest_up_to_capacity_oldest_first() {
        let h = History::new(3, u64::MAX, drop);
        let now = clock::now();
        let cells: Vec<_> = (1..=5).map(|i| finished(i, now + i)).collect();
        for c in &cells {
            h.push(Arc::clone(c));
        }
        let ids: Vec<u64> = h.read(now).iter().map(|c| c.id).collect();
        assert_eq!(ids, [3, 4, 5]);
        // Overwritten records are released.
        assert_eq!(Arc::strong_count(&cells[0]), 1);
        assert_eq!(Arc::strong_count(&cells[4]), 2);
    }

    #[test]
    fn old_records_are_not_shown_and_are_released_by_prune() {
        let h = History::new(10, 1_000, drop);
        let now = clock::now();
        let old = finished(1, now.saturating_sub(1 << 40));
        let young = finished(2, now);
        h.push(Arc::clone(&old));
        h.push(Arc::clone(&young));
        let ids: Vec<u64> = h.read(now).iter().map(|c| c.id).collect();
        assert_eq!(ids, [2]);
        h.prune(now);
        assert_eq!(Arc::strong_count(&old), 1);
        assert_eq!(Arc::strong_count(&young), 2);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let h = History::new(0, u64::MAX, drop);
        let c = finished(1, clock::now());
        h.push(Arc::clone(&c));
        assert!(h.read(clock::now()).is_empty());
        assert_eq!(Arc::strong_count(&c), 1);
    }

    #[test]
    fn concurrent_pushes_and_reads_release_every_record_once() {
        let h = History::new(64, u64::MAX, drop);
        // Smaller under Miri (about a thousand times slower).
        let n = if cfg!(miri) { 400 } else { 20_000 };
        let cells: Vec<_> = (1..=n).map(|i| finished(i, clock::now())).collect();
        std::thread::scope(|s| {
            for part in cells.chunks(n as usize / 4) {
                let h = &h;
                s.spawn(move || {
                    for c in part {
                        h.push(Arc::clone(c));
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..if cfg!(miri) { 5 } else { 200 } {
                    assert!(h.read(clock::now()).len() <= 64);
                }
            });
        });
        drop(h);
        assert!(cells.iter().all(|c| Arc::strong_count(c) == 1));
    }
}
