//! A fixed-size, lock-free table from a task key to its live record, for the hot path.
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
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::task::TaskCell;

const SLOTS: usize = 1 << 16;
const PROBE: usize = 8;

struct Slot {
    key: AtomicU64,
    cell: AtomicPtr<TaskCell>,
    /// Readers inside [`IdTable::with_pinned`] on this slot.
    users: AtomicU32,
}

pub(crate) struct IdTable {
    slots: Box<[Slot]>,
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
                users: AtomicU32::new(0),
            })
            .collect();
        IdTable {
            slots,
            overflow: Mutex::new(IdMap::default()),
            overflowed: AtomicU64::new(0),
        }
    }

    /// Publishes `cell` under `key` (non-zero). The table borrows the record:
    /// the caller keeps it alive until [`IdTable::remove`].
    pub(crate) fn insert(&self, key: u64, cell: &Arc<TaskCell>) {
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
                    .store(Arc::as_ptr(cell).cast_mut(), Ordering::Release);
                return;
            }
        }
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        lock(&self.overflow).insert(key, Arc::clone(cell));
    }

    /// Runs `f` on the record of `key`, if it is in the table.
    ///
    /// Only call this for a key whose task cannot end concurrently (from inside
    /// its own poll, or from its spawn), so the record stays alive during `f`.
    #[inline]
    pub(crate) fn with<R>(&self, key: u64, f: impl FnOnce(&TaskCell) -> R) -> Option<R> {
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
                // task; the caller guarantees the task (and so the record, owned
                // by the registry until the task ends) outlives this call.
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
            let slot = &self.slots[(start + i) & (SLOTS - 1)];
            if slot.key.load(Ordering::Relaxed) != key {
                continue;
            }
            // Announce the read, then check the slot still holds `key`: `remove`
            // clears the key before it checks the count (both sequentially
            // consistent), so either it sees this reader or this reader sees it.
            slot.users.fetch_add(1, Ordering::SeqCst);
            let result = if slot.key.load(Ordering::SeqCst) == key {
                let ptr = slot.cell.load(Ordering::SeqCst);
                // SAFETY: the key matched after the user count was raised, so
                // `remove` of this key has not passed its wait: the registry
                // still owns the record.
                (!ptr.is_null()).then(|| f(unsafe { &*ptr }))
            } else {
                None
            };
            slot.users.fetch_sub(1, Ordering::Release);
            return result;
        }
        self.with_overflow(key, f)
    }

    #[cold]
    fn with_overflow<R>(&self, key: u64, f: impl FnOnce(&TaskCell) -> R) -> Option<R> {
        if self.overflowed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let cell = lock(&self.overflow).get(&key).cloned();
        cell.map(|c| f(&c))
    }

    /// Takes `key` out of the table.
    pub(crate) fn remove(&self, key: u64) {
        let start = home(key);
        for i in 0..PROBE {
            let slot = &self.slots[(start + i) & (SLOTS - 1)];
            if slot.key.load(Ordering::Acquire) == key {
                slot.cell.store(std::ptr::null_mut(), Ordering::SeqCst);
                slot.key.store(0, Ordering::SeqCst);
                // A `with_pinned` reader that saw the key is still reading.
                let mut spins = 0u32;
                while slot.users.load(Ordering::SeqCst) != 0 {
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                return;
            }
        }
        if self.overflowed.load(Ordering::Relaxed) > 0
            && lock(&self.overflow).remove(&key).is_some()
        {
            self.overflowed.fetch_sub(1, Ordering::Relaxed);
        }
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of taskscope's locks must not poison the app's use of it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::SpawnLocation;

    fn cell(id: u64) -> Arc<TaskCell> {
        Arc::new(TaskCell::new(id, None, SpawnLocation::UNKNOWN, None))
    }

    #[test]
    fn insert_find_remove() {
        let t = IdTable::new();
        let cells: Vec<_> = (1..=1000).map(cell).collect();
        for c in &cells {
            t.insert(c.id, c);
        }
        for c in &cells {
            assert_eq!(t.with(c.id, |x| x.id), Some(c.id));
        }
        assert_eq!(t.with(5000, |x| x.id), None);
        t.remove(7);
        assert_eq!(t.with(7, |x| x.id), None);
        assert_eq!(t.with(8, |x| x.id), Some(8));
    }

    #[test]
    fn keys_beyond_capacity_overflow_and_are_still_found() {
        let t = IdTable::new();
        let n = SLOTS as u64 + 5_000;
        let cells: Vec<_> = (1..=n).map(cell).collect();
        for c in &cells {
            t.insert(c.id, c);
        }
        assert!(t.overflowed.load(Ordering::Relaxed) >= 5_000);
        for c in cells.iter().step_by(97) {
            assert_eq!(t.with(c.id, |x| x.id), Some(c.id));
        }
        for c in &cells {
            t.remove(c.id);
        }
        assert_eq!(t.overflowed.load(Ordering::Relaxed), 0);
        assert_eq!(t.with(3, |x| x.id), None);
    }
}
