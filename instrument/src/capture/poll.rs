//! The per-poll hot path: a thread-local stack of polls in progress and the
//! updates to the task's record. No lock, no allocation, no syscall: one or
//! two clock reads (the TSC), a handful of relaxed atomic loads and stores on
//! the task's own record, and one compare against the slow-poll threshold.
//!
//! # Which polls are timed
//!
//! Every poll's start is read from the clock (the watchdog needs it to see a
//! slow poll in progress). Its end is read only when the poll is *timed*
//! (`TASKSCOPE_POLL_TIMING=sampled`, the default; with `every`, always):
//! - when the watchdog's tick ([`clock::coarse`], every 10 ms) passed during
//!   the poll: it may be long, and every slow poll is timed;
//! - when the tick is stale — more than 3 ticks before the poll's start, or
//!   0: before the watchdog's first tick, while it works (a stack capture and
//!   its symbolization can take a second: [`clock::hold`]), after it stopped
//!   — since nothing would show that the poll was long;
//! - otherwise one poll in `SAMPLED_ONE_IN`, chosen by a per-thread random
//!   number, which then counts `SAMPLED_ONE_IN` times in the busy time and
//!   the histogram (a Horvitz-Thompson estimate: each timed poll weighs the
//!   inverse of its chance of being timed, so the sums are unbiased).
//!
//! An untimed poll is counted, and its end taken as its start (it lasted less
//! than a tick). Reading the TSC costs ~10 ns on a virtual machine, a third
//! of the hooks path's cost per poll (BENCHMARKS.md, "Poll timing").

use std::cell::Cell;
use std::sync::atomic::Ordering::Relaxed;

use crate::clock;
use crate::detect::watch_slot;
use crate::detect::{events, slow_poll};
use crate::model::task::{
    ST_IDLE, ST_RUNNING, ST_RUNNING_WOKEN, ST_SCHEDULED, TaskCell, TaskEnd, poll_histogram_bucket,
};
use crate::session::Session;

/// Polls can nest (a `LocalSet` or `block_on` inside a poll); deeper nesting
/// than this is not tracked.
const MAX_DEPTH: usize = 8;

#[derive(Clone, Copy)]
struct Frame {
    key: u64,
    cell: *const TaskCell,
    start: u64,
    /// The task ended inside this poll (runtime hooks): finish it when the poll ends.
    ended: bool,
}

const EMPTY: Frame = Frame {
    key: 0,
    cell: std::ptr::null(),
    start: 0,
    ended: false,
};

struct PollStack {
    depth: Cell<usize>,
    /// The thread's xorshift state that picks the sampled polls (0: not seeded yet).
    random: Cell<u32>,
    frames: [Cell<Frame>; MAX_DEPTH],
}

thread_local! {
    static STACK: PollStack = const {
        PollStack {
            depth: Cell::new(0),
            random: Cell::new(0),
            frames: [const { Cell::new(EMPTY) }; MAX_DEPTH],
        }
    };
}

/// The next number of the thread's xorshift32, seeded from `seed` (a
/// timestamp) on first use.
#[inline]
fn next_random(state: &Cell<u32>, seed: u64) -> u32 {
    let mut x = state.get();
    if x == 0 {
        x = (seed as u32 ^ (seed >> 32) as u32) | 1;
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    state.set(x);
    x
}

/// How many times a poll counts in the sums (0: not timed), from its start,
/// the watchdog's last tick and the sampling mask.
#[inline]
fn timing_weight(session: &Session, start: u64, random: u32) -> u64 {
    let coarse = clock::coarse();
    if coarse >= start || start - coarse > session.coarse_stale_ticks {
        // A tick passed during the poll, or the tick is stale (or 0: the
        // watchdog is busy or gone): time it, once.
        1
    } else if random & session.sample_mask == 0 {
        u64::from(session.sample_mask) + 1
    } else {
        0
    }
}

/// A poll of the task `cell` (table key `key`) starts on this thread, as the
/// tracing capture sees it: Tokio's enter of the task's span. The span is
/// also entered once more to drop the future, which is not a poll: the end
/// of the poll before is kept (`prev_poll_end`) for `tokio_spans::end_of`
/// to take that entry back.
#[cfg_attr(not(feature = "tracing-capture"), allow(dead_code))]
#[inline]
pub(crate) fn begin_span(key: u64, cell: &TaskCell) {
    cell.prev_poll_end
        .store(cell.last_poll_end.load(Relaxed), Relaxed);
    begin(key, cell);
}

/// A poll of the task `cell` (table key `key`) starts on this thread.
#[inline]
pub(crate) fn begin(key: u64, cell: &TaskCell) {
    let now = clock::now();
    cell.last_poll_start.store(now, Relaxed);
    cell.state.store(ST_RUNNING, Relaxed);
    let _ = STACK.try_with(|s| {
        let depth = s.depth.get();
        if depth < MAX_DEPTH {
            s.frames[depth].set(Frame {
                key,
                cell,
                start: now,
                ended: false,
            });
        }
        if depth == 0
            && let Some(slot) = watch_slot::current()
        {
            slot.begin(key, cell.polls.load(Relaxed) + 1, now);
        }
        s.depth.set(depth + 1);
    });
}

/// The poll of `key` that [`begin`] started on this thread ends.
#[inline]
pub(crate) fn end(session: &Session, key: u64) {
    let Ok(Some((frame, watched, random))) = STACK.try_with(|s| {
        let depth = s.depth.get();
        if depth == 0 {
            return None;
        }
        if depth <= MAX_DEPTH && s.frames[depth - 1].get().key != key {
            // Not the innermost poll's end: `begin` found no record for `key`
            // (a task of taskscope's own threads), so it pushed nothing.
            return None;
        }
        s.depth.set(depth - 1);
        let mut watched = None;
        if depth == 1
            && let Some(slot) = watch_slot::current()
        {
            slot.end();
            watched = Some((slot, slot.seq.load(Relaxed)));
        }
        let frame = s.frames.get(depth - 1)?.get();
        let random = if session.sample_mask == 0 {
            0
        } else {
            next_random(&s.random, frame.start)
        };
        Some((frame, watched, random))
    }) else {
        return;
    };

    // SAFETY: the frame was pushed by this task's poll on this thread, and a task's
    // record is only released at its end, which is after this point (see `ended`).
    let cell = unsafe { &*frame.cell };
    TaskCell::bump(&cell.polls, 1);
    let weight = timing_weight(session, frame.start, random);
    cell.last_weight.store(weight as u8, Relaxed);
    let mut took = 0;
    if weight == 0 {
        // Shorter than a tick: it ends (about) where it started.
        cell.last_poll_end.store(frame.start, Relaxed);
    } else {
        let now = clock::now();
        took = clock::since(frame.start, now);
        TaskCell::bump(&cell.busy_ns, took.saturating_mul(weight));
        let bucket = &cell.histogram[poll_histogram_bucket(took)];
        bucket.store(bucket.load(Relaxed).wrapping_add(weight as u32), Relaxed);
        if took > cell.max_poll_ns.load(Relaxed) {
            cell.max_poll_ns.store(took, Relaxed);
        }
        cell.last_poll_end.store(now, Relaxed);
    }
    let next = if cell.state.load(Relaxed) == ST_RUNNING_WOKEN {
        ST_SCHEDULED
    } else {
        ST_IDLE
    };
    cell.state.store(next, Relaxed);
    if took >= session.slow_poll_ns {
        slow_poll::ended(session, cell, took, watched);
    }
    if frame.ended {
        events::task_ended(session, frame.key, TaskEnd::Completed, false);
    }
}

/// The task whose poll is innermost on this thread, if any: `(key, record)`.
///
/// The record is valid for the duration of `f` because the task is being polled here.
pub(crate) fn with_current<R>(f: impl FnOnce(u64, &TaskCell) -> R) -> Option<R> {
    let frame = STACK
        .try_with(|s| {
            let depth = s.depth.get();
            (depth > 0 && depth <= MAX_DEPTH).then(|| s.frames[depth - 1].get())
        })
        .ok()
        .flatten()?;
    // SAFETY: as in `end`: the task is inside its poll on this thread.
    Some(f(frame.key, unsafe { &*frame.cell }))
}

/// The table key of the task being polled on this thread, if any.
pub(crate) fn current_key() -> Option<u64> {
    with_current(|key, _| key)
}

/// The id of the task being polled on this thread, as the parent of a task
/// it spawns.
pub(crate) fn current_task_id() -> Option<u64> {
    with_current(|_, cell| cell.id)
}

/// Marks the innermost poll's task as ended, if it is `key`: returns false when
/// the task is not being polled on this thread (it ended outside a poll).
pub(crate) fn mark_ended_in_poll(key: u64) -> bool {
    STACK
        .try_with(|s| {
            let depth = s.depth.get();
            if depth == 0 || depth > MAX_DEPTH {
                return false;
            }
            let mut frame = s.frames[depth - 1].get();
            if frame.key != key {
                return false;
            }
            frame.ended = true;
            s.frames[depth - 1].set(frame);
            true
        })
        .unwrap_or(false)
}

/// A wake of a task: scheduled, or woken while running.
/// (The tracing capture's: the hooks see no wakes.)
#[cfg_attr(not(feature = "tracing-capture"), allow(dead_code))]
#[inline]
pub(crate) fn woken(cell: &TaskCell) {
    cell.wakes.fetch_add(1, Relaxed);
    let state = cell.state.load(Relaxed);
    let next = match state {
        ST_RUNNING | ST_RUNNING_WOKEN => ST_RUNNING_WOKEN,
        _ => ST_SCHEDULED,
    };
    cell.state.store(next, Relaxed);
}

/// A wake of a task from inside its own poll, on the thread polling it.
#[cfg_attr(not(feature = "tracing-capture"), allow(dead_code))]
#[inline]
pub(crate) fn self_woken(cell: &TaskCell) {
    // Only the polling thread writes it: a load and a store, saturating.
    let n = cell.self_wakes.load(Relaxed);
    cell.self_wakes.store(n.saturating_add(1), Relaxed);
    woken(cell);
}

/// Polls made by hand, for the tests of what the hot path records.
#[cfg(all(test, not(miri)))]
pub(crate) mod testing {
    use super::{begin, end};
    use crate::clock;
    use crate::model::task::{SpawnLocation, TaskCell};
    use crate::session::Session;
    use crate::settings::{PollTiming, ServerAddr, Settings};

    /// A session (no server) timing polls as `timing` says.
    pub(crate) fn session(timing: PollTiming) -> Session {
        clock::init();
        Session::new(Settings {
            server_addr: ServerAddr::Off,
            poll_timing: timing,
            ..Settings::default()
        })
        .0
    }

    /// Runs `polls` polls of one task (`between` runs inside each) on this
    /// thread, each started with a fresh tick; returns the task's record.
    pub(crate) fn poll_many(session: &Session, polls: u64, between: impl Fn()) -> TaskCell {
        let cell = TaskCell::new(1, None, SpawnLocation::UNKNOWN, None);
        for _ in 0..polls {
            clock::tick();
            begin(1, &cell);
            between();
            end(session, 1);
        }
        cell
    }

    /// Polls counted in the histogram (each timed poll as many times as it weighs).
    pub(crate) fn timed(cell: &TaskCell) -> u64 {
        cell.histogram().iter().map(|&n| u64::from(n)).sum()
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::testing::{poll_many, session, timed};
    use super::*;
    use crate::model::task::SpawnLocation;
    use crate::settings::{PollTiming, ServerAddr, Settings};

    #[test]
    fn every_poll_is_timed_with_every() {
        let s = session(PollTiming::Every);
        assert_eq!(s.sample_mask, 0);
        let cell = poll_many(&s, 1_000, || {});
        assert_eq!(cell.polls.load(Relaxed), 1_000);
        assert_eq!(timed(&cell), 1_000);
    }

    #[test]
    fn short_polls_are_sampled_and_their_sums_estimate_the_whole() {
        let s = session(PollTiming::Sampled);
        assert_eq!(s.sample_mask, crate::settings::SAMPLED_ONE_IN - 1);
        let n = 40_000;
        let cell = TaskCell::new(1, None, SpawnLocation::UNKNOWN, None);
        let mut untimed = 0;
        for _ in 0..n {
            clock::tick();
            begin(1, &cell);
            end(&s, 1);
            // An untimed poll ends where it started.
            if cell.last_poll_end.load(Relaxed) == cell.last_poll_start.load(Relaxed) {
                untimed += 1;
            }
        }
        assert_eq!(cell.polls.load(Relaxed), n, "every poll is counted");
        // 7 in 8 are not timed (fewer when another test's tick lands inside a poll).
        assert!(
            (n * 8 / 10..=n * 9 / 10).contains(&untimed),
            "{untimed} of {n} polls untimed"
        );
        // Each timed poll counts 8 times: the histogram's total estimates the
        // polls (8 × Binomial(40,000, 1/8): mean 40,000, sd ~530).
        let estimate = timed(&cell);
        assert!(
            (n * 8 / 10..=n * 12 / 10).contains(&estimate),
            "{estimate} for {n} polls"
        );
        assert!(cell.busy_ns.load(Relaxed) > 0);
    }

    #[test]
    fn a_poll_during_which_the_tick_passed_is_always_timed_exactly() {
        let s = session(PollTiming::Sampled);
        let cell = poll_many(&s, 20, || {
            std::thread::sleep(std::time::Duration::from_millis(1));
            clock::tick();
        });
        assert_eq!(timed(&cell), 20, "each timed once, counted once");
        let busy = cell.busy_ns.load(Relaxed);
        assert!(busy >= 20_000_000, "{busy} ns for 20 polls of 1 ms or more");
        assert!(cell.max_poll_ns.load(Relaxed) >= 1_000_000);
    }

    #[test]
    fn a_stale_tick_times_every_poll() {
        let mut s = session(PollTiming::Sampled);
        // As if the watchdog had not ticked for longer than the stale bound.
        s.coarse_stale_ticks = 0;
        let cell = TaskCell::new(1, None, SpawnLocation::UNKNOWN, None);
        for _ in 0..100 {
            clock::tick();
            std::hint::black_box(clock::now());
            begin(1, &cell);
            end(&s, 1);
        }
        assert_eq!(timed(&cell), 100);
    }

    #[test]
    fn a_poll_that_ends_while_the_watchdog_works_is_timed() {
        let s = session(PollTiming::Sampled);
        let cell = TaskCell::new(1, None, SpawnLocation::UNKNOWN, None);
        for _ in 0..100 {
            clock::tick();
            begin(1, &cell);
            // The watchdog takes a stack: no tick for as long as that takes.
            clock::hold();
            end(&s, 1);
        }
        assert_eq!(timed(&cell), 100);
        clock::tick();
    }

    #[test]
    fn a_threshold_under_two_ticks_times_every_poll() {
        let (s, _) = Session::new(Settings {
            server_addr: ServerAddr::Off,
            slow_poll_threshold: std::time::Duration::from_millis(15),
            ..Settings::default()
        });
        assert_eq!(s.sample_mask, 0);
    }
}
