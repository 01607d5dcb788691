//! What taskscope knows about one task: the live record the hot path updates
//! ([`TaskCell`]) and the snapshots handed to users ([`TaskInfo`], [`FinishedTask`]).

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use std::time::{Duration, SystemTime};

use crate::clock;
use taskscope_api::TaskRef;
pub use taskscope_api::{TaskEnd, TaskState};

/// Where a task was spawned: `path:line:col` as the compiler saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpawnLocation {
    /// Source file, as `file!()` gives it.
    pub file: &'static str,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

impl SpawnLocation {
    /// Used when the spawn location is not known.
    pub const UNKNOWN: SpawnLocation = SpawnLocation {
        file: "<unknown>",
        line: 0,
        col: 0,
    };
}

impl fmt::Display for SpawnLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

impl From<&'static std::panic::Location<'static>> for SpawnLocation {
    fn from(loc: &'static std::panic::Location<'static>) -> Self {
        SpawnLocation {
            file: loc.file(),
            line: loc.line(),
            col: loc.column(),
        }
    }
}

/// A snapshot of one live task, as [`crate::all_tasks`] returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskInfo {
    /// Tokio's task id (`tokio::task::Id`), as a number.
    pub id: u64,
    /// The name given with `tokio::task::Builder::name`, if any.
    pub name: Option<String>,
    /// Running, scheduled or idle.
    pub state: TaskState,
    /// Where it was spawned.
    pub spawned_at: SpawnLocation,
    /// The task that spawned it, when it was spawned from inside a task.
    pub parent: Option<u64>,
    /// Time since it was spawned.
    pub age: Duration,
    /// Number of times it was polled.
    pub polls: u64,
    /// Total time spent inside its polls. An estimate when poll timing is
    /// sampled (the default, [`PollTiming::Sampled`](crate::PollTiming)):
    /// polls of 10 ms or more are all timed, shorter ones one in 8.
    pub busy: Duration,
    /// Total time alive but not being polled (`age - busy`; an estimate as `busy` is).
    pub idle: Duration,
    /// Time since its last poll ended; `None` before its first poll ends.
    pub since_last_poll: Option<Duration>,
    /// Longest single poll.
    pub max_poll: Duration,
    /// Number of times it was woken (only with the tracing capture, see the crate docs).
    pub wakes: u64,
    /// Wakers alive for it (only with the tracing capture).
    pub wakers: i64,
}

/// A task that has ended, as kept in the bounded history ([`crate::finished_tasks`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedTask {
    /// The task as it was when it ended (its state is that of its last moment).
    pub task: TaskInfo,
    /// How it ended.
    pub end: TaskEnd,
    /// When it ended.
    pub ended_at: SystemTime,
}

pub(crate) const ST_IDLE: u8 = 0;
pub(crate) const ST_SCHEDULED: u8 = 1;
pub(crate) const ST_RUNNING: u8 = 2;
/// Running, and woken while running: scheduled again when the poll ends.
pub(crate) const ST_RUNNING_WOKEN: u8 = 3;

pub(crate) use taskscope_api::histogram::poll_histogram_bucket;
pub use taskscope_api::histogram::{POLL_HISTOGRAM_BUCKETS, poll_histogram_bucket_limit};

/// Tokio's task id as a number, without formatting it: `Id` hashes as its
/// `u64` (the registry's key, and what `Display` prints).
pub(crate) fn tokio_task_id(id: tokio::task::Id) -> u64 {
    use std::hash::{Hash, Hasher};
    struct Capture(u64);
    impl Hasher for Capture {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            // Not reached for `Id` (it hashes one `u64`); keep a stable fallback.
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }
    let mut h = Capture(0);
    id.hash(&mut h);
    h.0
}

/// Bits of [`TaskCell::reported`]: which leak reports were made for the task.
pub(crate) const REPORTED_LOST: u8 = 1;
/// See [`REPORTED_LOST`].
pub(crate) const REPORTED_SHUTDOWN: u8 = 2;

/// A panic seen inside a task's poll.
#[derive(Clone, Debug)]
pub(crate) struct PanicRecord {
    pub(crate) message: String,
    pub(crate) location: Option<String>,
}

/// The live record of one task.
///
/// Fields that never change after spawn are plain; everything the hot path
/// updates is an atomic written by the one thread polling the task at the time
/// (Tokio never polls a task on two threads at once), so updates are plain
/// loads and stores, not read-modify-write instructions.
///
/// Layout: everything a poll writes comes first (`repr(C)` keeps the order):
/// the six per-poll counters share the first cache line with the `Arc`'s two
/// reference counts, wakes, state and the end the second, which also holds
/// the histogram's counters for polls under ~256 µs, so a poll and the task's
/// end dirty two cache lines of the record. (Aligning the record to 64 bytes measured slower: the
/// aligned allocation costs more at spawn than the line saves per poll.)
#[derive(Debug)]
#[repr(C)]
pub(crate) struct TaskCell {
    // ---- written by every poll: one cache line
    pub(crate) polls: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) max_poll_ns: AtomicU64,
    pub(crate) last_poll_start: AtomicU64,
    pub(crate) last_poll_end: AtomicU64,
    /// The previous poll's end, as the latest poll started (0: none); the
    /// tracing capture's only (`poll::begin_span`).
    pub(crate) prev_poll_end: AtomicU64,
    pub(crate) wakes: AtomicU64,
    /// When the task ended (0 while it runs), and how (`TaskEnd as u8`): on
    /// the line the last poll wrote, so the end does not miss the cache.
    ended: AtomicU64,
    pub(crate) state: AtomicU8,
    /// A panic was noted in `panic` (read at every end).
    pub(crate) panicked: AtomicBool,
    end: AtomicU8,
    /// The future a runtime's `block_on` runs (`#[tokio::main]`'s body), not a spawned task.
    pub(crate) is_block_on: bool,
    /// Leak reports made (`REPORTED_*` bits).
    pub(crate) reported: AtomicU8,
    /// How many times the latest poll counts in the busy time and the
    /// histogram (0: not timed; see `capture::poll`), so that the tracing
    /// capture can take back its span's last entry (the future's drop, not a
    /// poll) exactly. In what was padding.
    pub(crate) last_weight: AtomicU8,
    /// Clones of the task's span beyond the one Tokio holds (taskscope's subscriber).
    pub(crate) span_clones: AtomicU32,
    /// Wakes made from inside the task's own poll (tracing capture; only
    /// the polling thread writes it; saturates). In what was padding.
    pub(crate) self_wakes: AtomicU32,
    // ---- one counter written by every poll
    /// Poll durations, see [`POLL_HISTOGRAM_BUCKETS`].
    pub(crate) histogram: [AtomicU32; POLL_HISTOGRAM_BUCKETS],
    // ---- written at spawn, read by snapshots
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) spawned_at: SpawnLocation,
    /// The spawning task's id (8 bytes: ids are never 0).
    parent: Option<NonZeroU64>,
    pub(crate) created: u64,
    // ---- rare: wakers (tracing capture), panics, leak reports
    /// Waker clones (Tokio's `waker.clone` events). 32 bits, wrapping
    /// (the record stays in its allocator's 272-byte chunk): the live count,
    /// `clones - drops`, stays exact; the totals tokio-console shows wrap
    /// after 4,294,967,295 clones of one task's waker.
    pub(crate) waker_clones: AtomicU32,
    /// Waker drops (`waker.drop`, and `waker.wake`, which consumes its
    /// waker); 32 bits, wrapping, as `waker_clones`.
    pub(crate) waker_drops: AtomicU32,
    /// The panic of the task's poll, once (a `Box<PanicRecord>`, null until then).
    panic: AtomicPtr<PanicRecord>,
    /// `last_poll_end` of the idle period last reported as too long.
    pub(crate) idle_reported_at: AtomicU64,
}

impl Drop for TaskCell {
    fn drop(&mut self) {
        let record = *self.panic.get_mut();
        if !record.is_null() {
            // SAFETY: as in `take_panic`; `&mut self` excludes any other owner.
            drop(unsafe { Box::from_raw(record) });
        }
    }
}

impl TaskCell {
    pub(crate) fn new(
        id: u64,
        name: Option<Box<str>>,
        spawned_at: SpawnLocation,
        parent: Option<u64>,
    ) -> TaskCell {
        TaskCell {
            id,
            name,
            spawned_at,
            parent: parent.and_then(NonZeroU64::new),
            is_block_on: false,
            created: clock::now(),
            state: AtomicU8::new(ST_SCHEDULED),
            panicked: AtomicBool::new(false),
            polls: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            max_poll_ns: AtomicU64::new(0),
            last_poll_start: AtomicU64::new(0),
            last_poll_end: AtomicU64::new(0),
            prev_poll_end: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
            waker_clones: AtomicU32::new(0),
            waker_drops: AtomicU32::new(0),
            self_wakes: AtomicU32::new(0),
            panic: AtomicPtr::new(std::ptr::null_mut()),
            histogram: [const { AtomicU32::new(0) }; POLL_HISTOGRAM_BUCKETS],
            reported: AtomicU8::new(0),
            last_weight: AtomicU8::new(0),
            idle_reported_at: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            end: AtomicU8::new(TaskEnd::Completed as u8),
            span_clones: AtomicU32::new(0),
        }
    }

    /// The task that spawned this one, if it was spawned from inside a task.
    pub(crate) fn parent(&self) -> Option<u64> {
        self.parent.map(NonZeroU64::get)
    }

    /// Notes the panic of the task's poll (the first one counts).
    pub(crate) fn set_panic(&self, panic: PanicRecord) {
        let record = Box::into_raw(Box::new(panic));
        if self
            .panic
            .compare_exchange(std::ptr::null_mut(), record, AcqRel, Relaxed)
            .is_ok()
        {
            self.panicked.store(true, Release);
        } else {
            // SAFETY: `record` was not published: it is still ours.
            drop(unsafe { Box::from_raw(record) });
        }
    }

    /// Takes the panic noted on the task, if any.
    pub(crate) fn take_panic(&self) -> Option<PanicRecord> {
        let record = self.panic.swap(std::ptr::null_mut(), AcqRel);
        // SAFETY: a non-null pointer came from `Box::into_raw` in `set_panic`,
        // and the swap made this call its only owner.
        (!record.is_null()).then(|| *unsafe { Box::from_raw(record) })
    }

    /// Notes how and when (clock ticks) the task ended.
    pub(crate) fn set_end(&self, end: TaskEnd, at: u64) {
        self.end.store(end as u8, Relaxed);
        self.ended.store(at, Relaxed);
    }

    /// When the task ended (clock ticks), 0 while it runs.
    pub(crate) fn ended(&self) -> u64 {
        self.ended.load(Relaxed)
    }

    /// How the task ended (meaningful once [`TaskCell::ended`] is set).
    pub(crate) fn end(&self) -> TaskEnd {
        match self.end.load(Relaxed) {
            x if x == TaskEnd::Cancelled as u8 => TaskEnd::Cancelled,
            x if x == TaskEnd::Panicked as u8 => TaskEnd::Panicked,
            _ => TaskEnd::Completed,
        }
    }

    /// Adds `delta` to a counter only the polling thread writes.
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64, delta: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(delta), Relaxed);
    }

    /// Wakers alive for the task: clones less drops. Drops are read first,
    /// so a clone and drop made between the two reads can only make it
    /// higher, never a false 0.
    pub(crate) fn wakers(&self) -> u64 {
        u64::from(self.waker_counts().1)
    }

    /// Waker drops and live wakers. Drops are read first: every drop read has
    /// its clone counted by the time the clones are read, so the wrapping
    /// difference is the live count, unless drops whose clones were never
    /// seen (wakers made before the capture started) outnumber the clones:
    /// then a "negative" count, which is 0.
    pub(crate) fn waker_counts(&self) -> (u32, u32) {
        let drops = self.waker_drops.load(Acquire);
        let live = self.waker_clones.load(Acquire).wrapping_sub(drops);
        (drops, if live > u32::MAX / 2 { 0 } else { live })
    }

    /// The poll-duration histogram, see [`POLL_HISTOGRAM_BUCKETS`].
    pub(crate) fn histogram(&self) -> [u32; POLL_HISTOGRAM_BUCKETS] {
        std::array::from_fn(|k| self.histogram[k].load(Relaxed))
    }

    pub(crate) fn state(&self) -> TaskState {
        match self.state.load(Relaxed) {
            ST_RUNNING | ST_RUNNING_WOKEN => TaskState::Running,
            ST_SCHEDULED => TaskState::Scheduled,
            _ => TaskState::Idle,
        }
    }

    /// The task as findings name it.
    pub(crate) fn task_ref(&self) -> TaskRef {
        TaskRef {
            id: self.id,
            name: self.name.as_deref().map(str::to_owned),
            spawned_at: self.spawned_at.to_string(),
        }
    }

    /// Snapshot at time `now`.
    pub(crate) fn info(&self, now: u64) -> TaskInfo {
        let state = self.state();
        let age = clock::since(self.created, now);
        let mut busy = self.busy_ns.load(Relaxed);
        if state == TaskState::Running {
            let start = self.last_poll_start.load(Relaxed);
            if start != 0 {
                busy += clock::since(start, now);
            }
        }
        let last_end = self.last_poll_end.load(Relaxed);
        TaskInfo {
            id: self.id,
            name: self.name.as_deref().map(str::to_owned),
            state,
            spawned_at: self.spawned_at,
            parent: self.parent(),
            age: Duration::from_nanos(age),
            polls: self.polls.load(Relaxed),
            busy: Duration::from_nanos(busy.min(age)),
            idle: Duration::from_nanos(age.saturating_sub(busy)),
            since_last_poll: (last_end != 0)
                .then(|| Duration::from_nanos(clock::since(last_end, now))),
            max_poll: Duration::from_nanos(self.max_poll_ns.load(Relaxed)),
            wakes: self.wakes.load(Relaxed),
            wakers: self.wakers() as i64,
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod size_tests {
    /// The record fits glibc's 272-byte chunk with the `Arc`'s two counts
    /// (BENCHMARKS.md, "Memory of a live task"): a field added in what is
    /// padding keeps it there, one more word would not.
    #[test]
    fn the_record_stays_248_bytes() {
        assert_eq!(size_of::<super::TaskCell>(), 248);
    }
}
