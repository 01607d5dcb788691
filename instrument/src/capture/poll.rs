//! The per-poll hot path: a thread-local stack of polls in progress and the
//! updates to the task's record. No lock, no allocation, no syscall: two clock
//! reads (the TSC), a handful of relaxed atomic loads and stores on the task's own
//! record, and one compare against the slow-poll threshold.

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
    frames: [Cell<Frame>; MAX_DEPTH],
}

thread_local! {
    static STACK: PollStack = const {
        PollStack {
            depth: Cell::new(0),
            frames: [const { Cell::new(EMPTY) }; MAX_DEPTH],
        }
    };
}

/// A poll of the task `cell` (table key `key`) starts on this thread.
#[inline]
pub(crate) fn begin(key: u64, cell: &TaskCell) {
    let now = clock::now();
    cell.prev_poll_end
        .store(cell.last_poll_end.load(Relaxed), Relaxed);
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
    let Ok(Some((frame, watched))) = STACK.try_with(|s| {
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
        Some((frame, watched))
    }) else {
        return;
    };
    let now = clock::now();
    let took = clock::since(frame.start, now);

    // SAFETY: the frame was pushed by this task's poll on this thread, and a task's
    // record is only released at its end, which is after this point (see `ended`).
    let cell = unsafe { &*frame.cell };
    TaskCell::bump(&cell.polls, 1);
    TaskCell::bump(&cell.busy_ns, took);
    let bucket = &cell.histogram[poll_histogram_bucket(took)];
    bucket.store(bucket.load(Relaxed).wrapping_add(1), Relaxed);
    if took > cell.max_poll_ns.load(Relaxed) {
        cell.max_poll_ns.store(took, Relaxed);
    }
    cell.last_poll_end.store(now, Relaxed);
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
#[inline]
pub(crate) fn self_woken(cell: &TaskCell) {
    // Only the polling thread writes it: a load and a store, saturating.
    let n = cell.self_wakes.load(Relaxed);
    cell.self_wakes.store(n.saturating_add(1), Relaxed);
    woken(cell);
}
