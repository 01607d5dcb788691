//! Running totals by spawn location, for the Prometheus metrics: what the
//! tasks of each location did, summed when each task ends, and the slow polls
//! of each location by duration class, counted as each slow poll ends.
//!
//! Live tasks are not in here: the metrics read them from the registry at
//! scrape time and add these totals (see `metrics/collect.rs`). Nothing here
//! runs per poll: a task's end adds its figures (a few atomic additions), a
//! slow poll's end (the cold path that makes its final report) adds one.
//!
//! The table names at most `max` distinct locations (their text, `path:line:col`);
//! the tasks of any further location are summed as [`Slot::Other`]. A location
//! keeps the slot it was first given for good, so every series only grows.
//! It takes no lock: a location is added with one compare-and-swap on a free
//! entry (and one allocation, once per location), and looked up over a short
//! linear probe of a table kept at most half full.

use std::sync::OnceLock;
use std::sync::atomic::{
    AtomicU8, AtomicU64, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

use crate::model::task::{POLL_HISTOGRAM_BUCKETS, SpawnLocation, TaskCell};

/// The upper bounds of the slow-poll duration classes, as multiples of the
/// slow-poll threshold `T` (`numerator / denominator`): `T`, 1.5 `T`, 2.5 `T`,
/// 5 `T`, 10 `T`, 25 `T`, 50 `T`, 100 `T` (100 ms … 10 s at the default
/// threshold). A slow poll counts in the first class whose bound it does not
/// exceed, or in the last, unbounded one.
pub(crate) const SLOW_CLASSES: [(u64, u64); 8] = [
    (1, 1),
    (3, 2),
    (5, 2),
    (5, 1),
    (10, 1),
    (25, 1),
    (50, 1),
    (100, 1),
];

/// A location as [`LAST`] knows it: (table id, file pointer, file length,
/// line, column). Source paths are `'static`: a pointer and a length name
/// one text for good.
type LookupKey = (u64, usize, usize, u32, u32);

thread_local! {
    /// The last location this thread looked up, and its slot.
    static LAST: std::cell::Cell<(LookupKey, Slot)> =
        const { std::cell::Cell::new(((0, 0, 0, 0, 0), Slot::Other)) };
}

/// Gives each table an id of its own (from 1) for [`LAST`].
static TABLES: AtomicU64 = AtomicU64::new(1);

/// Entries in use: free, being written, or holding a location.
const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// What the tasks of one location did (or of all the locations past the
/// limit), summed: every field only grows.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    /// Tasks that ended.
    pub(crate) ended: AtomicU64,
    /// Polls of those tasks.
    pub(crate) polls: AtomicU64,
    /// Time inside those polls, in nanoseconds.
    pub(crate) busy_ns: AtomicU64,
    /// Their polls by duration, as [`TaskCell::histogram`] counts them.
    pub(crate) histogram: [AtomicU64; POLL_HISTOGRAM_BUCKETS],
    /// Slow polls that ended (of live and ended tasks alike).
    pub(crate) slow_polls: AtomicU64,
    /// Those by duration class ([`SLOW_CLASSES`], then the unbounded class).
    pub(crate) slow: [AtomicU64; SLOW_CLASSES.len() + 1],
}

/// A copy of [`Totals`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TotalsNow {
    /// See [`Totals::ended`].
    pub(crate) ended: u64,
    /// See [`Totals::polls`].
    pub(crate) polls: u64,
    /// See [`Totals::busy_ns`].
    pub(crate) busy_ns: u64,
    /// See [`Totals::histogram`].
    pub(crate) histogram: [u64; POLL_HISTOGRAM_BUCKETS],
    /// See [`Totals::slow_polls`].
    pub(crate) slow_polls: u64,
    /// See [`Totals::slow`].
    pub(crate) slow: [u64; SLOW_CLASSES.len() + 1],
}

impl Totals {
    /// The totals now. Loads with `Acquire`: a task whose figures are seen
    /// here had left the live table before (its additions are `Release`, made
    /// after its removal), so a scan of the live table made after this read
    /// does not count it twice.
    pub(crate) fn now(&self) -> TotalsNow {
        TotalsNow {
            ended: self.ended.load(Acquire),
            polls: self.polls.load(Acquire),
            busy_ns: self.busy_ns.load(Acquire),
            histogram: std::array::from_fn(|k| self.histogram[k].load(Acquire)),
            slow_polls: self.slow_polls.load(Acquire),
            slow: std::array::from_fn(|k| self.slow[k].load(Acquire)),
        }
    }
}

/// Where a location's figures go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// Entry `i` of the table: a location of its own.
    Named(usize),
    /// Past the limit: summed with every other such location.
    Other,
}

struct Entry {
    state: AtomicU8,
    /// The location, set once by the writer that claimed the entry.
    location: OnceLock<SpawnLocation>,
    totals: OnceLock<Box<Totals>>,
}

/// Running totals for at most `max` spawn locations, and the rest.
pub(crate) struct Locations {
    /// This table's id, for the per-thread memory of the last lookup.
    id: u64,
    entries: Box<[Entry]>,
    /// Entries claimed (never more than `max`).
    used: AtomicUsize,
    max: usize,
    other: Totals,
    /// The upper bounds of [`SLOW_CLASSES`] for the threshold in force, in nanoseconds.
    slow_limits_ns: [u64; SLOW_CLASSES.len()],
}

impl std::fmt::Debug for Locations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locations")
            .field("used", &self.used.load(Relaxed))
            .field("max", &self.max)
            .finish()
    }
}

/// A quick hash of the location's text (a multiply and a rotate per 8 bytes;
/// the keys are the app's own source paths, not input from outside). The
/// text, not the pointer: the same file may be compiled into several codegen
/// units, each with its own copy of the string.
fn hash(location: &SpawnLocation) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
    let mut h = mix(
        0,
        (u64::from(location.line) << 32) | u64::from(location.col),
    );
    let mut chunks = location.file.as_bytes().chunks_exact(8);
    for chunk in &mut chunks {
        h = mix(h, u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = mix(mix(h, u64::from_le_bytes(tail)), location.file.len() as u64);
    // The high bits, best mixed by the multiplications, into the low ones.
    h ^ (h >> 32)
}

impl Locations {
    /// Totals for at most `max` locations (the table is sized for twice as
    /// many, so a probe stays short), with the slow-poll classes of
    /// `threshold_ns`.
    pub(crate) fn new(max: usize, threshold_ns: u64) -> Locations {
        let size = (2 * max).next_power_of_two().max(2);
        Locations {
            id: TABLES.fetch_add(1, Relaxed),
            entries: (0..size)
                .map(|_| Entry {
                    state: AtomicU8::new(FREE),
                    location: OnceLock::new(),
                    totals: OnceLock::new(),
                })
                .collect(),
            used: AtomicUsize::new(0),
            max,
            other: Totals::default(),
            slow_limits_ns: SLOW_CLASSES.map(|(num, den)| {
                u64::try_from(u128::from(threshold_ns) * u128::from(num) / u128::from(den))
                    .unwrap_or(u64::MAX)
            }),
        }
    }

    /// The upper bounds of the slow-poll classes, in nanoseconds.
    pub(crate) fn slow_limits_ns(&self) -> [u64; SLOW_CLASSES.len()] {
        self.slow_limits_ns
    }

    /// The slot of `location`: its own (claimed now if it has none yet and
    /// the limit allows), or [`Slot::Other`].
    pub(crate) fn slot(&self, location: &SpawnLocation) -> Slot {
        let mask = self.entries.len() - 1;
        let mut at = (hash(location) as usize) & mask;
        // At most `max` of the entries (at most half) are ever claimed: a
        // free one is always found within the table's length.
        for _ in 0..self.entries.len() {
            let entry = &self.entries[at];
            match entry.state.load(Acquire) {
                READY => {
                    if entry.location.get() == Some(location) {
                        return Slot::Named(at);
                    }
                }
                // Being written, perhaps for this very location: passed over.
                // The location may then get a second entry; the metrics sum
                // the entries of one text, so nothing is counted twice.
                WRITING => {}
                _ => {
                    if !self.reserve() {
                        return Slot::Other;
                    }
                    if entry
                        .state
                        .compare_exchange(FREE, WRITING, AcqRel, Acquire)
                        .is_ok()
                    {
                        let _ = entry.location.set(*location);
                        let _ = entry.totals.set(Box::default());
                        entry.state.store(READY, Release);
                        return Slot::Named(at);
                    }
                    // Another thread claimed it first: look at it again.
                    self.used.fetch_sub(1, Relaxed);
                    continue;
                }
            }
            at = (at + 1) & mask;
        }
        Slot::Other
    }

    /// Takes one of the `max` entries, if one is left.
    fn reserve(&self) -> bool {
        self.used
            .fetch_update(Relaxed, Relaxed, |used| {
                (used < self.max).then_some(used + 1)
            })
            .is_ok()
    }

    /// The totals of `slot`.
    pub(crate) fn totals(&self, slot: Slot) -> &Totals {
        match slot {
            Slot::Named(at) => self.entries[at]
                .totals
                .get()
                .map_or(&self.other, |totals| totals),
            Slot::Other => &self.other,
        }
    }

    /// Every named location with its slot (in table order), for a scrape.
    pub(crate) fn named(&self) -> Vec<(Slot, SpawnLocation)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.state.load(Acquire) == READY)
            .filter_map(|(at, e)| Some((Slot::Named(at), *e.location.get()?)))
            .collect()
    }

    /// Claims another entry for `location` even when it has one, as two
    /// threads meeting a new location at once may (see [`Locations::slot`]).
    #[cfg(test)]
    pub(crate) fn claim_another_entry(&self, location: &SpawnLocation) {
        let entry = self
            .entries
            .iter()
            .find(|e| e.state.load(Acquire) == FREE)
            .expect("a free entry");
        assert!(self.reserve(), "under the limit");
        entry.state.store(WRITING, Release);
        let _ = entry.location.set(*location);
        let _ = entry.totals.set(Box::default());
        entry.state.store(READY, Release);
    }

    /// A task ended (it has left the live table): adds its figures to its
    /// location's totals.
    pub(crate) fn task_ended(&self, cell: &TaskCell) {
        let totals = self.totals(self.slot_cached(&cell.spawned_at));
        let polls = cell.polls.load(Relaxed);
        // `Release`: see `Totals::now`.
        totals.polls.fetch_add(polls, Release);
        totals
            .busy_ns
            .fetch_add(cell.busy_ns.load(Relaxed), Release);
        // Every bucket: with sampled poll timing a timed poll counts several
        // times, so the counts do not add up to the polls.
        for (k, bucket) in cell.histogram.iter().enumerate() {
            let count = u64::from(bucket.load(Relaxed));
            if count != 0 {
                totals.histogram[k].fetch_add(count, Release);
            }
        }
        totals.ended.fetch_add(1, Release);
    }

    /// The slot of `location`, through this thread's memory of the last
    /// location it looked up (tasks end in runs from one place): a hit costs
    /// a thread-local read and a few compares instead of hashing the path.
    /// A slot, once given, never changes, so the memory never goes stale.
    fn slot_cached(&self, location: &SpawnLocation) -> Slot {
        let key = (
            self.id,
            location.file.as_ptr() as usize,
            location.file.len(),
            location.line,
            location.col,
        );
        if let Ok(Some(slot)) = LAST.try_with(|last| {
            let (k, slot) = last.get();
            (k == key).then_some(slot)
        }) {
            return slot;
        }
        let slot = self.slot(location);
        let _ = LAST.try_with(|last| last.set((key, slot)));
        slot
    }

    /// A poll of a task spawned at `location` ended after `took_ns`, at or
    /// over the threshold.
    pub(crate) fn slow_poll(&self, location: &SpawnLocation, took_ns: u64) {
        let totals = self.totals(self.slot_cached(location));
        let class = self
            .slow_limits_ns
            .iter()
            .position(|&limit| took_ns <= limit)
            .unwrap_or(SLOW_CLASSES.len());
        totals.slow[class].fetch_add(1, Release);
        totals.slow_polls.fetch_add(1, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::poll_histogram_bucket;

    fn at(file: &'static str, line: u32) -> SpawnLocation {
        SpawnLocation { file, line, col: 5 }
    }

    #[test]
    fn a_location_keeps_its_slot_and_the_rest_are_other() {
        let locations = Locations::new(2, 100_000_000);
        let a = locations.slot(&at("src/a.rs", 1));
        let b = locations.slot(&at("src/b.rs", 2));
        assert!(matches!(a, Slot::Named(_)) && matches!(b, Slot::Named(_)));
        assert_ne!(a, b);
        assert_eq!(locations.slot(&at("src/c.rs", 3)), Slot::Other);
        assert_eq!(locations.slot(&at("src/a.rs", 1)), a);
        // The same text through another string (another codegen unit's copy).
        let copy: &'static str = Box::leak(String::from("src/b.rs").into_boxed_str());
        assert_eq!(locations.slot(&at(copy, 2)), b);
        let named: Vec<String> = locations
            .named()
            .iter()
            .map(|(_, l)| l.to_string())
            .collect();
        assert_eq!(named.len(), 2);
        assert!(named.contains(&"src/a.rs:1:5".to_string()), "{named:?}");
    }

    #[test]
    fn sizes_are_what_the_docs_say() {
        // The crate docs ("Watching a fleet", Cost) give these.
        assert_eq!(std::mem::size_of::<Totals>(), 264);
        assert_eq!(std::mem::size_of::<Entry>(), 56);
        assert_eq!(Locations::new(1_000, 1).entries.len(), 2_048);
        assert_eq!(Locations::new(10_000, 1).entries.len(), 32_768);
    }

    #[test]
    fn no_location_of_its_own_with_a_limit_of_zero() {
        let locations = Locations::new(0, 1);
        assert_eq!(locations.slot(&at("src/a.rs", 1)), Slot::Other);
        assert!(locations.named().is_empty());
    }

    #[test]
    fn an_ended_task_adds_its_polls_and_slow_polls_go_by_class() {
        let locations = Locations::new(10, 100_000_000);
        let cell = TaskCell::new(1, None, at("src/a.rs", 1), None);
        for took in [500u64, 2_000, 300_000_000] {
            TaskCell::bump(&cell.polls, 1);
            TaskCell::bump(&cell.busy_ns, took);
            cell.histogram[poll_histogram_bucket(took)].fetch_add(1, Relaxed);
        }
        locations.task_ended(&cell);
        locations.task_ended(&cell);
        for ms in [100, 101, 150, 250, 10_000, 10_001] {
            locations.slow_poll(&at("src/a.rs", 1), ms * 1_000_000);
        }
        let now = locations.totals(locations.slot(&at("src/a.rs", 1))).now();
        assert_eq!((now.ended, now.polls), (2, 6));
        assert_eq!(now.busy_ns, 2 * 300_002_500);
        assert_eq!(now.histogram[0] + now.histogram[1] + now.histogram[19], 6);
        assert_eq!(now.histogram.iter().sum::<u64>(), 6);
        assert_eq!(now.slow_polls, 6);
        // 100 ms (= T), 101 and 150 ms (<= 1.5 T), 250 ms (<= 2.5 T),
        // 10 s (<= 100 T), 10.001 s (beyond).
        assert_eq!(now.slow, [1, 2, 1, 0, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn threads_adding_the_same_new_locations_at_once_lose_nothing() {
        let locations = Locations::new(1_000, 1);
        let files: Vec<&'static str> = (0..50)
            .map(|i| &*Box::leak(format!("src/f{i}.rs").into_boxed_str()))
            .collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        for file in &files {
                            locations.slow_poll(&at(file, 7), 1);
                        }
                    }
                });
            }
        });
        // Per text: the entries of one location (one, or more if two threads
        // claimed one each at the same moment) hold all its 400 slow polls.
        let mut by_text = std::collections::HashMap::<String, u64>::new();
        for (slot, location) in locations.named() {
            *by_text.entry(location.to_string()).or_default() +=
                locations.totals(slot).now().slow_polls;
        }
        assert_eq!(by_text.len(), 50);
        assert!(by_text.values().all(|&n| n == 400), "{by_text:?}");
        assert_eq!(locations.totals(Slot::Other).now().slow_polls, 0);
    }
}
