//! A growable, lock-free table from a task key to its live record: the
//! registry of live tasks. It owns one reference to each record.
//!
//! The key is Tokio's task id (runtime hooks, `init()`) or the task's span id
//! (the tracing layer). Any `u64` but 0.
//!
//! # Layout
//!
//! The table is a short list of *levels*, each an open-addressed array of
//! 16-byte `(key, pointer)` slots (the first has `1 << first_bits` slots, 16 Ki
//! by default). When the newest level is full, a new one is allocated with
//! about half as many slots as there are live keys (a power of two between a
//! quarter and a half), so that right after a growth the table holds at most
//! ~1.6 slots per live key (~28 bytes), and ~1.0-1.3 once it has filled
//! (measured: 17.8 bytes per key at 1M dense keys, 20.9 with sparse ones).
//! Levels are zeroed by the allocator (pages the table never writes cost no
//! memory) and kept until the table is dropped: a reader never sees a level's
//! memory go away, so looking up needs no guard.
//!
//! Slots come in *windows* of 8 (two cache lines, 128-byte aligned). A key's
//! *home* is the slot `fold(key) & mask`; for Tokio's sequential ids (and the
//! tracing registry's dense span ids) consecutive keys get consecutive homes,
//! so tasks spawned together share cache lines, and nearly every key sits
//! exactly at its home. Insert takes the home slot or another free slot of the
//! home window; if the window is full it goes to a few *alternate* windows
//! found from a hash of the key (so one long-lived task does not push every
//! later key off its home, which is what linear probing does with sequential
//! keys), and counts itself in the home window's `displaced` counter, so that a
//! lookup that misses in the home window knows whether to look further.
//!
//! New keys go to the newest level; when it is full, to an older level that
//! is less than half full (the tasks that filled it have ended) before a new
//! level is made, so that waves of tasks do not add a level each. The per-poll lookup first tries the
//! key's home slot in the newest level (one load of `newest`, one of the
//! level's header, one slot: 37 instructions with the poll's two stores,
//! against 30 for the old table's first slot). Otherwise each level's key
//! range (kept coarsely, so sequential inserts update it once per 4,096 keys)
//! names the level: Tokio's ids grow with time, so the ranges ascend and a
//! binary search finds the level; keys out of that order (span ids) fall back
//! to trying every level whose range holds the key. A key outside the whole
//! table's range is a miss in two compares.
//!
//! # Pinned reads
//!
//! Each window has a reader count. [`IdTable::with_pinned`] and
//! [`IdTable::for_each_live`] raise it (a `SeqCst` increment), then load the
//! slot's pointer (a `SeqCst` load); [`IdTable::remove`] swaps the slot's
//! pointer out, issues a `SeqCst` fence, then waits for the count to drop
//! before it hands the reference back. Either the remover sees the reader, or
//! the reader sees the pointer gone. The remover only waits for readers of its
//! own window, which hold the count for the length of their closure.
//!
//! Why the reader needs no fence of its own (Rust's memory model is C++20's,
//! \[atomics.order\]/4): suppose the remover's load of the count read a value
//! from before the reader's increment (that load is coherence-ordered before
//! the increment) and the reader's pointer load read the pointer from before
//! the swap (coherence-ordered before the swap). The remover's fence is
//! sequenced before its load and after its swap, so by 4.3 the fence precedes
//! the increment in the single total order S of `SeqCst` operations and
//! fences, and by 4.2 the pointer load precedes the fence in S; but the
//! increment is sequenced before the pointer load, both `SeqCst`, so it
//! precedes it in S: a cycle, so that outcome cannot happen. On x86 the
//! increment is a `lock xadd` and the load a plain `mov`: the reader's
//! `mfence`-like `lock or` (a quarter of the samples in `init()`'s waker-event
//! handler, perf) is gone. Loom models `SeqCst` accesses as acquire-release and
//! reports this as a race that cannot happen (without the fence, its three
//! models of pinned reads fail), so under loom the reader also issues the
//! fence it used to: loom checks a stronger protocol than the one shipped, and
//! the argument above covers the difference. Miri, whose weak-memory
//! emulation follows C++20's model (it explores some weak behaviours, not
//! all), runs the unit tests on the shipped one.
//!
//! # Not done
//!
//! Levels are not given back when they empty (memory is the high-water mark);
//! a level whose live count reaches 0 could have its pages released with
//! `madvise(MADV_DONTNEED)` (all its slots are zero by then, so readers would
//! see no difference).
//!
//! # Checked
//!
//! The unit tests (`tests`) run under Miri, and the protocol of pinned
//! reads, removes, the walk and growth under loom (`loom`, with
//! `--cfg taskscope_loom`, which switches this module's atomics to loom's:
//! see `atomics`). The commands are in `BENCHMARKS.md` ("Correctness checks").

mod atomics;
mod level;

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

use atomics::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, backoff, fence};
pub(crate) use level::DEFAULT_FIRST_BITS;
use level::{Level, MAX_LEVEL_BITS, MAX_LEVELS, Range, WINDOW, fold};

/// The table: see the module docs.
pub(crate) struct IdTable<T> {
    /// The newest level (`levels[top]`, or briefly an older one while a
    /// growth settles): the per-poll lookup's first load. Never null.
    newest: AtomicPtr<Level<T>>,
    /// The newest level's index.
    top: AtomicUsize,
    /// The key range of the whole table: misses outside it cost two compares.
    bounds: Range,
    /// Each level's key range, side by side for the scan of `find_anywhere`.
    ranges: [Range; MAX_LEVELS],
    levels: [AtomicPtr<Level<T>>; MAX_LEVELS],
    first_bits: u32,
    /// The table owns one reference to each record.
    _owns: PhantomData<Arc<T>>,
}

// SAFETY: the table hands out `&T` to other threads (so `T: Sync`) and
// releases records on whichever thread removes them (so `T: Send`), like `Arc<T>`.
unsafe impl<T: Send + Sync> Send for IdTable<T> {}
unsafe impl<T: Send + Sync> Sync for IdTable<T> {}

impl<T> Default for IdTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Holds a window's reader count raised; lowers it when dropped, also if the
/// reader's closure panics (a count left raised would stall `remove` forever).
struct Pin<'a>(&'a AtomicU32);

impl<'a> Pin<'a> {
    #[inline]
    fn new(readers: &'a AtomicU32) -> Pin<'a> {
        // `SeqCst`, as the pointer loads made under the pin (`load_pinned`):
        // with the fence in `remove`, either the remover's load of the count
        // sees this increment, or this reader's pointer load sees the
        // remover's swap (the module's "Pinned reads" says why).
        readers.fetch_add(1, SeqCst);
        // Loom weakens `SeqCst` accesses to acquire-release: give it the fence.
        #[cfg(taskscope_loom)]
        fence(SeqCst);
        Pin(readers)
    }

    /// A slot's pointer, loaded under this pin (`SeqCst`: see [`Pin::new`]).
    #[inline]
    fn load_pinned<T>(&self, cell: &AtomicPtr<T>) -> *mut T {
        cell.load(SeqCst)
    }
}

impl Drop for Pin<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: the reads made under the pin happen before the remover's
        // acquire load of 0, and so before it releases the record.
        self.0.fetch_sub(1, Release);
    }
}

/// Where a walk in steps ([`IdTable::for_each_live_from`]) goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    level: usize,
    window: usize,
}

impl Cursor {
    /// The start of a walk.
    pub(crate) const START: Cursor = Cursor {
        level: 0,
        window: 0,
    };
}

impl<T> IdTable<T> {
    /// A table whose first level has 16 Ki slots.
    pub(crate) fn new() -> IdTable<T> {
        Self::with_first_level_bits(DEFAULT_FIRST_BITS)
    }

    /// A table whose first level has `1 << bits` slots (at least one window).
    pub(crate) fn with_first_level_bits(bits: u32) -> IdTable<T> {
        let bits = bits.max(WINDOW.trailing_zeros());
        let table = IdTable {
            newest: AtomicPtr::new(std::ptr::null_mut()),
            top: AtomicUsize::new(0),
            bounds: Range {
                min: AtomicU64::new(u64::MAX),
                max: AtomicU64::new(0),
            },
            ranges: std::array::from_fn(|_| Range {
                min: AtomicU64::new(u64::MAX),
                max: AtomicU64::new(0),
            }),
            levels: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            first_bits: bits,
            _owns: PhantomData,
        };
        let first = Level::new(bits).expect("allocating the task table's first level");
        let first = Box::into_raw(first);
        table.levels[0].store(first, Release);
        table.newest.store(first, Release);
        table
    }

    #[inline(always)]
    fn level(&self, l: usize) -> Option<&Level<T>> {
        let ptr = self.levels.get(l)?.load(Acquire);
        // SAFETY: a published level is only freed by `drop`, which has `&mut self`.
        unsafe { ptr.as_ref() }
    }

    /// The level and slot holding `key`. The common case inline: the key
    /// at its home slot in the newest level.
    #[inline(always)]
    fn find(&self, key: u64) -> Option<(&Level<T>, usize)> {
        // SAFETY: `newest` is set in `new` before the table is shared and
        // only ever replaced by another published level; levels live until drop.
        let level = unsafe { &*self.newest.load(Acquire) };
        let home = fold(key) as usize & level.mask;
        if level.slot(home).key.load(Acquire) == key {
            return Some((level, home));
        }
        self.find_anywhere(key)
    }

    /// The level and slot holding `key`, wherever it is.
    #[inline(never)]
    fn find_anywhere(&self, key: u64) -> Option<(&Level<T>, usize)> {
        if !self.bounds.holds(key) {
            return None;
        }
        let top = self.top.load(Acquire).min(MAX_LEVELS - 1);
        let ranges = &self.ranges[..=top];
        // Tokio's ids grow with time and new keys go to the newest level, so
        // the levels' lower bounds ascend: a binary search names the level
        // (the last whose lower bound is at most `key`).
        let after = ranges.partition_point(|r| r.min.load(Relaxed) <= key);
        let guess = after.checked_sub(1);
        if let Some(l) = guess
            && ranges[l].holds(key)
            && let Some(level) = self.level(l)
            && let Some(at) = level.find(key)
        {
            return Some((level, at));
        }
        // Otherwise (keys inserted out of order, span ids, a key not in the
        // table): every level whose range holds the key, newest first.
        for l in (0..=top).rev() {
            if Some(l) == guess || !ranges[l].holds(key) {
                continue;
            }
            if let Some(level) = self.level(l)
                && let Some(at) = level.find(key)
            {
                return Some((level, at));
            }
        }
        None
    }

    /// Publishes `cell` under `key` (non-zero, not already in the table); the
    /// table keeps it until [`IdTable::remove`]. Gives `cell` back only if
    /// every level is full (more than a billion live keys by default).
    pub(crate) fn insert(&self, key: u64, cell: Arc<T>) -> Result<(), Arc<T>> {
        debug_assert_ne!(key, 0);
        let raw = Arc::into_raw(cell).cast_mut();
        self.bounds.note(key);
        loop {
            let top = self.top.load(Acquire);
            let level = self.level(top).expect("levels up to top are published");
            let range = &self.ranges[top];
            if level.try_insert(range, key, raw, true) {
                return Ok(());
            }
            if self.insert_in_older(top, key, raw) {
                return Ok(());
            }
            if !self.grow(top) {
                // Every level exists and the last is full past 7/8: take any room left.
                if level.try_insert(range, key, raw, false) {
                    return Ok(());
                }
                // SAFETY: `raw` came from `Arc::into_raw` above and was not published.
                return Err(unsafe { Arc::from_raw(raw) });
            }
        }
    }

    /// Puts `key` in a level older than `top` that is less than half full,
    /// newest first: the tasks that filled it have ended since. Without this,
    /// an app whose live tasks come and go in waves (a burst of connections,
    /// then another) would add a level at each wave and run out of levels;
    /// with it, the table holds at most the most tasks ever alive at once.
    /// The key widens that level's range: lookups find it there (see
    /// `find_anywhere`).
    #[cold]
    #[inline(never)]
    fn insert_in_older(&self, top: usize, key: u64, raw: *mut T) -> bool {
        for l in (0..top).rev() {
            if let Some(level) = self.level(l)
                && level.live() * 2 < level.capacity()
                && level.try_insert(&self.ranges[l], key, raw, false)
            {
                return true;
            }
        }
        false
    }

    /// Makes level `top + 1` the newest (unless another insert did). False
    /// when there is no next level.
    #[cold]
    #[inline(never)]
    fn grow(&self, top: usize) -> bool {
        let next = top + 1;
        if next >= MAX_LEVELS {
            return false;
        }
        if self.levels[next].load(Acquire).is_null() {
            // A new level holds about half as many keys as are live (a power
            // of two between a quarter and a half), so that the slots
            // allocated stay within ~1.6 per live key right after a growth
            // (doubling the whole table would allow 2.3).
            let half = (self.len() / 2).max(1 << self.first_bits);
            let bits = (usize::BITS - 1 - half.leading_zeros()).min(MAX_LEVEL_BITS);
            let Some(level) = Level::<T>::new(bits) else {
                return false;
            };
            let level = Box::into_raw(level);
            if self.levels[next]
                .compare_exchange(std::ptr::null_mut(), level, AcqRel, Acquire)
                .is_err()
            {
                // SAFETY: ours, never published.
                drop(unsafe { Box::from_raw(level) });
            }
        }
        let _ = self.top.compare_exchange(top, next, AcqRel, Acquire);
        // Point `newest` at `levels[top]`. Read `newest` before `top`: a
        // grower that saw an older `top` then fails its exchange and retries,
        // so the last word is always the newest level's.
        loop {
            let cur = self.newest.load(SeqCst);
            let want = self.levels[self.top.load(SeqCst)].load(SeqCst);
            if cur == want
                || self
                    .newest
                    .compare_exchange(cur, want, SeqCst, SeqCst)
                    .is_ok()
            {
                break;
            }
        }
        true
    }

    /// Runs `f` on the record of `key`, if it is in the table.
    ///
    /// The per-poll lookup: plain loads, no read-modify-write.
    ///
    /// # Safety
    ///
    /// `key` must not be removed while this runs: call it for a task from
    /// inside its own poll or spawn (Tokio never ends a task during its
    /// poll's hooks), not for a task that may end on another thread (use
    /// [`IdTable::with_pinned`] for that). If the key is not in the table, the
    /// call is always safe.
    #[inline]
    pub(crate) unsafe fn with<R>(&self, key: u64, f: impl FnOnce(&T) -> R) -> Option<R> {
        let (level, at) = self.find(key)?;
        let ptr = level.slot(at).cell.load(Acquire);
        // SAFETY: the key matched, so the pointer is this key's record (or
        // null while its insert is still publishing it); per the contract the
        // key's removal, the only thing that releases the table's reference,
        // cannot run meanwhile.
        unsafe { ptr.as_ref() }.map(f)
    }

    /// Runs `f` on the record of `key`, if it is in the table, when the task
    /// may end concurrently (a wake from another thread): the window's reader
    /// count keeps [`IdTable::remove`] (and so the record's release) waiting
    /// until `f` returns. Keep `f` short: removes of keys in the same window
    /// wait for it.
    #[inline]
    #[cfg_attr(not(feature = "tracing-capture"), allow(dead_code))]
    pub(crate) fn with_pinned<R>(&self, key: u64, f: impl FnOnce(&T) -> R) -> Option<R> {
        // SAFETY: `pinned` hands over a live record's pointer, valid until it returns.
        self.pinned(key, |ptr| f(unsafe { &*ptr }))
    }

    /// The record of `key`, if live (any thread).
    pub(crate) fn get(&self, key: u64) -> Option<Arc<T>> {
        self.pinned(key, |ptr| {
            // SAFETY: `ptr` is the table's `Arc` (from `Arc::into_raw`, with the
            // provenance of the whole allocation, which the count needs), alive while pinned.
            unsafe {
                Arc::increment_strong_count(ptr);
                Arc::from_raw(ptr)
            }
        })
    }

    /// Runs `f` on the pointer of `key`'s record while the record's window is pinned.
    #[inline]
    fn pinned<R>(&self, key: u64, f: impl FnOnce(*const T) -> R) -> Option<R> {
        let (level, at) = self.find(key)?;
        let slot = level.slot(at);
        let pin = Pin::new(&level.window_meta(at).readers);
        let ptr = pin.load_pinned(&slot.cell);
        // The slot may have been emptied and claimed by another key since
        // `find`: check that the pointer is still `key`'s.
        if ptr.is_null() || slot.key.load(Acquire) != key {
            return None;
        }
        // The pointer was loaded under the pin and the key still matched
        // after it: a remove of `key` has not passed its wait (which comes
        // after it swaps the pointer out), so the record is alive until the
        // pin drops.
        Some(f(ptr))
    }

    /// Takes `key` out of the table: the table's reference to its record.
    /// Waits for pinned readers of the key's window.
    pub(crate) fn remove(&self, key: u64) -> Option<Arc<T>> {
        let (level, at) = self.find(key)?;
        let slot = level.slot(at);
        let ptr = slot.cell.swap(std::ptr::null_mut(), AcqRel);
        if ptr.is_null() {
            // Not yet published (a remove racing its own insert: not done by
            // taskscope) or removed concurrently (a double remove).
            return None;
        }
        // Pairs with the fence in `Pin::new` (see there).
        fence(SeqCst);
        let readers = &level.window_meta(at).readers;
        let mut spins = 0;
        while readers.load(Acquire) != 0 {
            backoff(&mut spins);
        }
        slot.key.store(0, Release);
        let home = fold(key) as usize & level.mask;
        if home / WINDOW != at / WINDOW {
            level.window_meta(home).displaced.fetch_sub(1, Relaxed);
        }
        level.count(-1);
        // SAFETY: from `Arc::into_raw` in `insert`; swapped out by this call
        // only, and no pinned reader holds it any more.
        Some(unsafe { Arc::from_raw(ptr) })
    }

    /// Calls `f` with every live key and record, without cloning or locking:
    /// each window is pinned while its records are visited, so keep `f` short
    /// (no blocking, no submitting findings, no growing a large `Vec`: reserve
    /// first, or note keys and act after the walk). The record comes as the
    /// table's own `Arc`, borrowed: `Arc::clone` it to keep a record past the
    /// call (the publisher keeps the new ones only).
    pub(crate) fn for_each_live(&self, f: impl FnMut(u64, &Arc<T>)) {
        let mut from = Some(Cursor::START);
        let mut f = f;
        while let Some(at) = from {
            from = self.for_each_live_from(at, usize::MAX, &mut f);
        }
    }

    /// [`IdTable::for_each_live`] in steps: visits the live records of at
    /// most `windows` windows (of 8 slots) from `from`, and returns where to go
    /// on, or `None` once the walk has passed the last level. Keys inserted
    /// or removed between steps may be seen or missed, as in one walk.
    pub(crate) fn for_each_live_from(
        &self,
        from: Cursor,
        windows: usize,
        mut f: impl FnMut(u64, &Arc<T>),
    ) -> Option<Cursor> {
        self.walk(from, windows, |key, ptr| {
            // SAFETY: `walk` hands over the pointer of the table's own `Arc`
            // (from `Arc::into_raw`, with the provenance of the whole
            // allocation), alive while the window is pinned; `ManuallyDrop`
            // leaves that reference with the table.
            let cell = ManuallyDrop::new(unsafe { Arc::from_raw(ptr) });
            f(key, &cell)
        })
    }

    /// Every live record with its key, each a new reference (for callers
    /// that must hold records past the walk: the shutdown report).
    pub(crate) fn live(&self) -> Vec<(u64, Arc<T>)> {
        let mut all = Vec::with_capacity(self.len() + 64);
        self.for_each_live(|key, cell| all.push((key, Arc::clone(cell))));
        all
    }

    fn walk(
        &self,
        from: Cursor,
        windows: usize,
        mut f: impl FnMut(u64, *const T),
    ) -> Option<Cursor> {
        let top = self.top.load(Acquire);
        let mut budget = windows;
        let mut at = from;
        while at.level <= top {
            let Some(level) = self.level(at.level) else {
                at = Cursor {
                    level: at.level + 1,
                    window: 0,
                };
                continue;
            };
            let count = level.capacity() / WINDOW;
            while at.window < count {
                if budget == 0 {
                    return Some(at);
                }
                budget -= 1;
                let w = at.window;
                at.window += 1;
                let base = w * WINDOW;
                // Empty windows (most of a sparse level) without a pin.
                if (0..WINDOW).all(|i| level.slot(base + i).key.load(Relaxed) == 0) {
                    continue;
                }
                let pin = Pin::new(&level.meta.get(w).readers);
                for i in 0..WINDOW {
                    let slot = level.slot(base + i);
                    let key = slot.key.load(Acquire);
                    if key == 0 {
                        continue;
                    }
                    let ptr = pin.load_pinned(&slot.cell);
                    if ptr.is_null() || slot.key.load(Acquire) != key {
                        continue;
                    }
                    // Loaded under the pin with the key matching after it: as
                    // in `pinned`, alive until the pin drops.
                    f(key, ptr);
                }
            }
            at = Cursor {
                level: at.level + 1,
                window: 0,
            };
        }
        None
    }

    /// Live keys (exact when no insert or remove runs concurrently).
    pub(crate) fn len(&self) -> usize {
        (0..=self.top.load(Acquire))
            .filter_map(|l| self.level(l))
            .map(|l| l.live())
            .sum()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    /// Bytes of address space the table holds (levels, their windows' counts, headers).
    pub(crate) fn allocated_bytes(&self) -> usize {
        use level::{Meta, Slot};
        size_of::<Self>()
            + (0..MAX_LEVELS)
                .filter_map(|l| self.level(l))
                .map(|l| {
                    size_of::<Level<T>>()
                        + l.capacity() * size_of::<Slot<T>>()
                        + l.capacity() / WINDOW * size_of::<Meta>()
                })
                .sum::<usize>()
    }

    #[cfg(test)]
    /// The number of levels in use (for tests and stats).
    pub(crate) fn levels(&self) -> usize {
        self.top.load(Acquire) + 1
    }
}

impl<T> Drop for IdTable<T> {
    fn drop(&mut self) {
        for l in 0..MAX_LEVELS {
            let ptr = self.levels[l].swap(std::ptr::null_mut(), Acquire);
            if ptr.is_null() {
                continue;
            }
            // SAFETY: published by `new` or `grow` from `Box::into_raw`; `&mut
            // self`: no reader is left.
            let level = unsafe { Box::from_raw(ptr) };
            for at in 0..level.capacity() {
                let cell = level.slot(at).cell.swap(std::ptr::null_mut(), Acquire);
                if !cell.is_null() {
                    // SAFETY: the table's own reference, from `insert`.
                    drop(unsafe { Arc::from_raw(cell) });
                }
            }
        }
    }
}

#[cfg(all(test, not(taskscope_loom)))]
mod tests;

#[cfg(all(test, taskscope_loom))]
mod loom;
