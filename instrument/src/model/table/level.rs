//! One level of the task table: an open-addressed array of `(key, pointer)`
//! slots in windows of 8, with each window's reader and displaced counts, and
//! the coarse key range of what was inserted (see the table's docs).

#[cfg(not(taskscope_loom))]
use std::alloc::Layout;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::atomics::{AtomicIsize, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, stripe};

/// Slots per window: two cache lines.
pub(super) const WINDOW: usize = 8;
/// The most levels a table grows to.
pub(super) const MAX_LEVELS: usize = 32;
/// The largest level: 2^30 slots (16 GiB of address space).
pub(super) const MAX_LEVEL_BITS: u32 = 30;
/// Alternate windows an insert tries when the home window is full.
pub(super) const MAX_ALT: usize = 16;
/// A level is "full" (the next displaced insert makes a new level) at 7/8.
pub(super) const FULL_NUM: usize = 7;
pub(super) const FULL_DEN: usize = 8;
/// Granularity of a level's key range: the upper bound is raised once per
/// this many sequential keys.
pub(super) const RANGE_GRAIN: u64 = 1 << 12;
/// Counter stripes per level (each on its own cache line).
pub(super) const STRIPES: usize = 8;
/// The default first level: 16 Ki slots (256 KiB of address space).
pub(crate) const DEFAULT_FIRST_BITS: u32 = 14;

/// 16 bytes: a key and the record's pointer (`Arc::into_raw`).
pub(super) struct Slot<T> {
    pub(super) key: AtomicU64,
    pub(super) cell: AtomicPtr<T>,
}

/// Per window: pinned readers inside it, and how many keys whose home is in
/// it live in alternate windows.
pub(super) struct Meta {
    pub(super) readers: AtomicU32,
    pub(super) displaced: AtomicU32,
}

#[repr(align(64))]
struct Padded<X>(X);

/// A fixed-size array of zero-valid atomics. Outside loom it comes from
/// `alloc_zeroed` with 16-byte alignment (glibc's `calloc`: fresh pages for
/// large levels, resident only once written) and is aligned to 128 by hand.
#[repr(C)]
pub(super) struct Array<E> {
    ptr: *const E,
    len: usize,
    #[cfg(not(taskscope_loom))]
    raw: (*mut u8, Layout),
    #[cfg(taskscope_loom)]
    boxed: Box<[E]>,
}

impl<E> Array<E> {
    #[cfg(not(taskscope_loom))]
    fn zeroed(len: usize, _make: fn() -> E) -> Option<Array<E>> {
        const ALIGN: usize = 128;
        let bytes = len.checked_mul(size_of::<E>())?.checked_add(ALIGN)?;
        // Alignment 16 so that std asks `calloc` (a larger alignment would
        // make it `memset` the whole level, touching every page).
        let layout = Layout::from_size_align(bytes, 16).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        if raw.is_null() {
            return None;
        }
        // The 128-byte alignment is for speed only (a window on two lines, not three).
        let off = match raw.align_offset(ALIGN) {
            off if off < ALIGN => off,
            _ => 0,
        };
        // SAFETY: `off < ALIGN`, within the allocation. Every `E` this module
        // uses is a struct of std atomics, for which all-zero bytes are a valid value.
        let ptr = unsafe { raw.add(off) }.cast::<E>();
        debug_assert!(ptr.is_aligned());
        Some(Array {
            ptr,
            len,
            raw: (raw, layout),
        })
    }

    #[cfg(taskscope_loom)]
    fn zeroed(len: usize, make: fn() -> E) -> Option<Array<E>> {
        let boxed: Box<[E]> = (0..len).map(|_| make()).collect();
        Some(Array {
            ptr: boxed.as_ptr(),
            len,
            boxed,
        })
    }

    #[inline]
    pub(super) fn get(&self, i: usize) -> &E {
        debug_assert!(i < self.len);
        // SAFETY: `i < len` (every index is masked by the level's mask), and
        // the array lives as long as `self`.
        unsafe { &*self.ptr.add(i) }
    }
}

impl<E> Drop for Array<E> {
    fn drop(&mut self) {
        #[cfg(not(taskscope_loom))]
        // SAFETY: allocated in `zeroed` with this layout; the elements are
        // atomics, with nothing to drop.
        unsafe {
            std::alloc::dealloc(self.raw.0, self.raw.1)
        };
    }
}

/// The keys inserted into a level are within `min..=max` (coarse: a superset;
/// empty while `min > max`).
pub(super) struct Range {
    pub(super) min: AtomicU64,
    pub(super) max: AtomicU64,
}

impl Range {
    #[inline]
    pub(super) fn holds(&self, key: u64) -> bool {
        key >= self.min.load(Relaxed) && key <= self.max.load(Relaxed)
    }

    pub(super) fn note(&self, key: u64) {
        // Ordering: whoever looks `key` up with the guarantee of finding it
        // (its own poll, its end) happens after this insert.
        if key > self.max.load(Relaxed) {
            self.max.fetch_max(key | (RANGE_GRAIN - 1), Relaxed);
        }
        if key < self.min.load(Relaxed) {
            self.min.fetch_min(key & !(RANGE_GRAIN - 1), Relaxed);
        }
    }
}

/// One open-addressed array of slots.
#[repr(C)]
pub(super) struct Level<T> {
    // ---- read by every lookup: the first cache line (with the slots' pointer)
    /// Slots - 1.
    pub(super) mask: usize,
    /// Alternate windows used so far (a lookup of a displaced key tries `0..=max_alt`).
    max_alt: AtomicUsize,
    slots: Array<Slot<T>>,
    pub(super) meta: Array<Meta>,
    // ---- written by inserts and removes, one line per stripe
    live: [Padded<AtomicIsize>; STRIPES],
}

// SAFETY: the raw pointers are to the level's own arrays, only reached
// through atomics.
unsafe impl<T> Send for Level<T> {}
unsafe impl<T> Sync for Level<T> {}

/// The home slot of `key` in a level of `mask + 1` slots. Keys below 2^32
/// (Tokio's ids for the first four billion tasks) map to themselves, so
/// sequential keys are on consecutive slots; the high half (the tracing
/// registry's thread and generation bits) moves the run elsewhere.
#[inline]
pub(super) fn fold(key: u64) -> u64 {
    key.wrapping_add((key >> 32).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The first alternate window of `key` (before masking).
#[inline]
fn alt_base(key: u64) -> usize {
    (key.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 29) as usize
}

impl<T> Level<T> {
    pub(super) fn new(bits: u32) -> Option<Box<Level<T>>> {
        let len = 1usize.checked_shl(bits)?;
        Some(Box::new(Level {
            slots: Array::zeroed(len, || Slot {
                key: AtomicU64::new(0),
                cell: AtomicPtr::new(std::ptr::null_mut()),
            })?,
            meta: Array::zeroed(len / WINDOW, || Meta {
                readers: AtomicU32::new(0),
                displaced: AtomicU32::new(0),
            })?,
            mask: len - 1,
            max_alt: AtomicUsize::new(0),
            live: std::array::from_fn(|_| Padded(AtomicIsize::new(0))),
        }))
    }

    #[inline]
    pub(super) fn slot(&self, at: usize) -> &Slot<T> {
        self.slots.get(at)
    }

    #[inline]
    pub(super) fn window_meta(&self, at: usize) -> &Meta {
        self.meta.get(at / WINDOW)
    }

    pub(super) fn count(&self, delta: isize) {
        self.live[stripe() % STRIPES].0.fetch_add(delta, Relaxed);
    }

    pub(super) fn live(&self) -> usize {
        let n: isize = self.live.iter().map(|c| c.0.load(Relaxed)).sum();
        n.max(0) as usize
    }

    pub(super) fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The slot holding `key`, if any (plain loads: the level never goes away).
    #[inline]
    pub(super) fn find(&self, key: u64) -> Option<usize> {
        let home = fold(key) as usize & self.mask;
        let base = home & !(WINDOW - 1);
        for i in 0..WINDOW {
            let at = base | ((home + i) & (WINDOW - 1));
            if self.slot(at).key.load(Acquire) == key {
                return Some(at);
            }
        }
        if self.window_meta(home).displaced.load(Relaxed) == 0 {
            return None;
        }
        self.find_displaced(key, home / WINDOW)
    }

    #[cold]
    fn find_displaced(&self, key: u64, home_window: usize) -> Option<usize> {
        let windows = self.capacity() / WINDOW;
        let first = alt_base(key);
        let last = self.max_alt.load(Relaxed).min(MAX_ALT - 1);
        for a in 0..=last {
            let w = (first + a) & (windows - 1);
            if w == home_window {
                continue;
            }
            for i in 0..WINDOW {
                let at = w * WINDOW + i;
                if self.slot(at).key.load(Acquire) == key {
                    return Some(at);
                }
            }
        }
        None
    }

    #[inline]
    fn claim(&self, at: usize, key: u64, cell: *mut T) -> bool {
        let slot = self.slot(at);
        if slot.key.load(Relaxed) == 0
            && slot.key.compare_exchange(0, key, Acquire, Relaxed).is_ok()
        {
            slot.cell.store(cell, Release);
            true
        } else {
            false
        }
    }

    /// Puts `key` in this level if there is room; `newest` says whether a
    /// full level should refuse displaced keys (so that the table grows).
    pub(super) fn try_insert(&self, range: &Range, key: u64, cell: *mut T, newest: bool) -> bool {
        range.note(key);
        let home = fold(key) as usize & self.mask;
        let base = home & !(WINDOW - 1);
        for i in 0..WINDOW {
            if self.claim(base | ((home + i) & (WINDOW - 1)), key, cell) {
                self.count(1);
                return true;
            }
        }
        // The home window is full. Past 7/8 the table grows instead.
        if newest && self.live() * FULL_DEN >= self.capacity() * FULL_NUM {
            return false;
        }
        let meta = self.window_meta(home);
        // Before the key is visible anywhere else: a lookup that misses in the
        // home window must see that some key of it lives elsewhere.
        meta.displaced.fetch_add(1, Relaxed);
        let windows = self.capacity() / WINDOW;
        let first = alt_base(key);
        for a in 0..MAX_ALT {
            let w = (first + a) & (windows - 1);
            if w == home / WINDOW {
                continue;
            }
            if self.max_alt.load(Relaxed) < a {
                self.max_alt.fetch_max(a, Relaxed);
            }
            for i in 0..WINDOW {
                if self.claim(w * WINDOW + i, key, cell) {
                    self.count(1);
                    return true;
                }
            }
        }
        meta.displaced.fetch_sub(1, Relaxed);
        false
    }
}
