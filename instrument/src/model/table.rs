//! A fixed-size, lock-free table from a task key to its live record: the
//! registry of live tasks. It owns one reference to each record.
//!
//! The key is Tokio's task id (runtime hooks) or the task's span id (tracing
//! capture). Each slot is a `(key, pointer)` pair claimed with a compare-and-swap
//! on the key, looked up with plain loads over a short linear probe. A lookup
//! never dereferences a pointer whose key it has not matched, and a slot is only
//! released by its own task's end, so a lookup made on behalf of a live task
//! always finds that task's record, never a freed one. Lookups on behalf of a
//! task that may end meanwhile (a wake from another thread) use
//! [`IdTable::with_pinned`], which holds the slot's user count while it reads the
//! record; [`IdTable::remove`] waits for that count to drop. Keys that find no free
//! slot within the probe go to a mutex-protected overflow map; that only
//! happens when tens of thousands of tasks are alive at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::task::TaskCell;
use crate::sync::{Readers, lock};

const SLOTS: usize = 1 << 16;
const PROBE: usize = 8;

/// 16 bytes: four slots a cache line for the per-poll lookup.
struct Slot {
    key: AtomicU64,
    cell: AtomicPtr<TaskCell>,
}

pub(crate) struct IdTable {
    slots: Box<[Slot]>,
    /// Readers inside [`IdTable::with_pinned`], per slot (apart from the
    /// slots: only pinned reads and removes touch them).
    users: Box<[Readers]>,
    overflow: Mutex<IdMap<Arc<TaskCell>>>,
    overflowed: AtomicU64,
}

#[inline]
fn home(key: u64) -> usize {
    // The key itself: Tokio's task ids are sequential, so tasks spawned one
    // after the other share cache lines of the table instead of each missing
    // the cache (measured: a hashed slot made the insert's compare-and-swap
    // most of the spawn cost). Span ids are slab indices, also dense.
    (key as usize) & (SLOTS - 1)
}

impl IdTable {
    pub(crate) fn new() -> IdTable {
        let slots = (0..SLOTS)
            .map(|_| Slot {
                key: AtomicU64::new(0),
                cell: AtomicPtr::new(std::ptr::null_mut()),
            })
            .collect();
        IdTable {
            slots,
            users: (0..SLOTS).map(|_| Readers::default()).collect(),
            overflow: Mutex::new(IdMap::default()),
            overflowed: AtomicU64::new(0),
        }
    }

    /// Publishes `cell` under `key` (non-zero); the table keeps it until
    /// [`IdTable::remove`].
    pub(crate) fn insert(&self, key: u64, cell: Arc<TaskCell>) {
        debug_assert_ne!(key, 0);
        let start = home(key);
        for i in 0..PROBE {
            let slot = &self.slots[(start + i) & (SLOTS - 1)];
            if slot
                .key
                .compare_exchange(0, key, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                slot.cell
                    .store(Arc::into_raw(cell).cast_mut(), Ordering::Release);
                return;
            }
        }
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        lock(&self.overflow).insert(key, cell);
    }

    /// Runs `f` on the record of `key`, if it is in the table: the per-poll
    /// lookup, plain loads only.
    ///
    /// # Safety
    ///
    /// The task under `key` must not end (no [`IdTable::remove`] of `key`)
    /// before this call returns: call it from inside the task's own poll (its
    /// end comes after the poll), from its spawn, or from the thread that will
    /// end it. Otherwise the record could be released while `f` reads it; use
    /// [`IdTable::with_pinned`] then.
    #[inline]
    pub(crate) unsafe fn with<R>(&self, key: u64, f: impl FnOnce(&TaskCell) -> R) -> Option<R> {
        let start = home(key);
        for i in 0..PROBE {
            let slot = &self.slots[(start + i) & (SLOTS - 1)];
            if slot.key.load(Ordering::Acquire) == key {
                let ptr = slot.cell.load(Ordering::Acquire);
                if ptr.is_null() {
                    // Claimed but not yet published: only during the insert itself.
                    break;
                }
                // SAFETY: the key matched, so the slot belongs to this key's live
                // task; the caller guarantees (this function's contract) that the
                // task, and so the record the table owns until the task ends,
                // outlives this call.
                return Some(f(unsafe { &*ptr }));
            }
        }
        self.with_overflow(key, f)
    }

    /// Runs `f` on the record of `key`, if it is in the table, when the task
    /// may end concurrently (a waker event from another thread): the slot's
    /// user count keeps [`IdTable::remove`] (and so the record's release) waiting
    /// until `f` returns. Two uncontended atomic read-modify-writes.
    #[inline]
    pub(crate) fn with_pinned<R>(&self, key: u64, f: impl FnOnce(&TaskCell) -> R) -> Option<R> {
        let start = home(key);
        for i in 0..PROBE {
            let at = (start + i) & (SLOTS - 1);
            if self.slots[at].key.load(Ordering::Relaxed) == key {
                return self.pinned(at, key, f);
            }
        }
        self.with_overflow(key, f)
    }

    /// The record of `key`, if live (any thread).
    pub(crate) fn get(&self, key: u64) -> Option<Arc<TaskCell>> {
        // SAFETY: `cell` came from `Arc::into_raw` (or is an overflow map's
        // `Arc`), kept alive by the table's reference while the slot is pinned.
        self.with_pinned(key, |cell| unsafe { clone_arc(cell) })
    }

    /// Every live record with its key (a scan of the table: for snapshots).
    pub(crate) fn live(&self) -> Vec<(u64, Arc<TaskCell>)> {
        let mut all = Vec::new();
        for (at, slot) in self.slots.iter().enumerate() {
            let key = slot.key.load(Ordering::Relaxed);
            if key == 0 {
                continue;
            }
            // SAFETY: as in `get`.
            let cell = self.pinned(at, key, |cell| unsafe { clone_arc(cell) });
            if let Some(cell) = cell {
                all.push((key, cell));
            }
        }
        if self.overflowed.load(Ordering::Relaxed) > 0 {
            all.extend(
                lock(&self.overflow)
                    .iter()
                    .map(|(k, c)| (*k, Arc::clone(c))),
            );
        }
        all
    }

    #[cold]
    fn with_overflow<R>(&self, key: u64, f: impl FnOnce(&TaskCell) -> R) -> Option<R> {
        if self.overflowed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let cell = lock(&self.overflow).get(&key).cloned();
        cell.map(|c| f(&c))
    }

    /// Takes `key` out of the table: the table's reference to its record.
    pub(crate) fn remove(&self, key: u64) -> Option<Arc<TaskCell>> {
        let start = home(key);
        for i in 0..PROBE {
            let at = (start + i) & (SLOTS - 1);
            let slot = &self.slots[at];
            if slot.key.load(Ordering::Acquire) == key {
                let ptr = slot.cell.swap(std::ptr::null_mut(), Ordering::SeqCst);
                slot.key.store(0, Ordering::SeqCst);
                // A `with_pinned` reader that saw the key is still reading.
                self.users[at].wait();
                // SAFETY: `ptr` came from `Arc::into_raw` in `insert`, and no
                // reader holds it any more: the reference is ours to take back.
                return (!ptr.is_null()).then(|| unsafe { Arc::from_raw(ptr) });
            }
        }
        if self.overflowed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let cell = lock(&self.overflow).remove(&key);
        if cell.is_some() {
            self.overflowed.fetch_sub(1, Ordering::Relaxed);
        }
        cell
    }
}

impl Drop for IdTable {
    fn drop(&mut self) {
        for slot in self.slots.iter() {
            let ptr = slot.cell.swap(std::ptr::null_mut(), Ordering::Acquire);
            if !ptr.is_null() {
                // SAFETY: the table's own reference, from `insert`.
                drop(unsafe { Arc::from_raw(ptr) });
            }
        }
    }
}

impl IdTable {
    /// Runs `f` on the record of slot `at` if it still holds `key`, with the
    /// slot's user count raised so that `remove` cannot release the record meanwhile.
    #[inline]
    fn pinned<R>(&self, at: usize, key: u64, f: impl FnOnce(&TaskCell) -> R) -> Option<R> {
        let slot = &self.slots[at];
        // Announce the read, then check the slot still holds `key`: `remove`
        // clears the key before it checks the count (both sequentially
        // consistent), so either it sees this reader or this reader sees it.
        self.users[at].read(|| {
            if slot.key.load(Ordering::SeqCst) != key {
                return None;
            }
            let ptr = slot.cell.load(Ordering::SeqCst);
            // SAFETY: the key matched after the user count was raised, so a
            // `remove` of this key has not passed its wait: the record is alive.
            (!ptr.is_null()).then(|| f(unsafe { &*ptr }))
        })
    }
}

/// Takes a new reference to the record behind `cell`, a reference borrowed from an `Arc`.
///
/// # Safety
/// `cell` must point into a live `Arc<TaskCell>` allocation.
pub(crate) unsafe fn clone_arc(cell: &TaskCell) -> Arc<TaskCell> {
    let ptr: *const TaskCell = cell;
    // SAFETY: per the contract, `ptr` is an `Arc`'s pointer and the `Arc` is alive.
    unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    }
}

/// A hasher for task keys (ids and span ids, already unique numbers): one
/// multiplication instead of SipHash, which costs more than the rest of a
/// registry insert. Keys come from Tokio and `tracing`, not from outside input.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A `HashMap` keyed by task keys, with [`IdHasher`].
pub(crate) type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::SpawnLocation;

    fn cell(id: u64) -> Arc<TaskCell> {
        Arc::new(TaskCell::new(id, None, SpawnLocation::UNKNOWN, None))
    }

    #[test]
    fn insert_find_remove() {
        let t = IdTable::new();
        let cells: Vec<_> = (1..=1000).map(cell).collect();
        for c in &cells {
            t.insert(c.id, Arc::clone(c));
        }
        // SAFETY (every `with` below): this test is the only thread, so no
        // task is removed during a lookup.
        for c in &cells {
            assert_eq!(unsafe { t.with(c.id, |x| x.id) }, Some(c.id));
            assert_eq!(t.with_pinned(c.id, |x| x.id), Some(c.id));
        }
        assert_eq!(unsafe { t.with(5000, |x| x.id) }, None);
        assert_eq!(t.remove(7).map(|c| c.id), Some(7));
        assert!(t.remove(7).is_none());
        assert_eq!(unsafe { t.with(7, |x| x.id) }, None);
        assert_eq!(t.get(8).map(|c| c.id), Some(8));
        assert_eq!(t.live().len(), 999);
        // The table's references are its own: released on remove and on drop.
        assert_eq!(Arc::strong_count(&cells[6]), 1);
        assert_eq!(Arc::strong_count(&cells[7]), 2);
        drop(t);
        assert_eq!(Arc::strong_count(&cells[7]), 1);
    }

    #[test]
    fn keys_beyond_capacity_overflow_and_are_still_found() {
        let t = IdTable::new();
        let n = SLOTS as u64 + 5_000;
        let cells: Vec<_> = (1..=n).map(cell).collect();
        for c in &cells {
            t.insert(c.id, Arc::clone(c));
        }
        assert!(t.overflowed.load(Ordering::Relaxed) >= 5_000);
        for c in cells.iter().step_by(97) {
            // SAFETY: single-threaded test: nothing is removed meanwhile.
            assert_eq!(unsafe { t.with(c.id, |x| x.id) }, Some(c.id));
        }
        assert_eq!(t.live().len(), cells.len());
        for c in &cells {
            assert_eq!(t.remove(c.id).map(|c| c.id), Some(c.id));
        }
        assert_eq!(t.overflowed.load(Ordering::Relaxed), 0);
        // SAFETY: single-threaded test.
        assert_eq!(unsafe { t.with(3, |x| x.id) }, None);
    }
}
