//! What the submitting side of the pipeline and its sink thread share: the
//! queue's message type, the counters, and the recent findings.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use taskscope_api::Finding;

use super::counts::FindingCounts;
use super::recent::Recent;

/// While findings are being dropped, how often the sink thread reports it.
pub(crate) const DROP_NOTICE_EVERY: Duration = Duration::from_secs(1);

/// What goes through the queue.
pub(super) enum Message {
    /// A finding for the sinks.
    Finding(Finding),
    /// Wakes the sink thread: a flush wants the pending drops reported now.
    Wake,
}

/// What the submitting side and the sink thread share.
pub(super) struct Shared {
    pub(super) submitted: AtomicU64,
    /// Submits between their `submitted` and their `accepted`/`dropped` count.
    pub(super) in_flight: AtomicUsize,
    pub(super) accepted: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) progress: Mutex<Progress>,
    pub(super) done: Condvar,
    /// Threads waiting on `done` (the sink thread only notifies when there are).
    pub(super) waiters: AtomicUsize,
    /// Dropped findings the sink thread has reported (written by it only; an
    /// atomic, not in `progress`, so that `report_drops` takes no lock).
    pub(super) drops_noticed: AtomicU64,
    /// Bumped by every flush: the sink thread reports pending drops at once.
    pub(super) flush_requests: AtomicU64,
    /// The sink thread runs (false if it could not start, or has ended).
    pub(super) alive: AtomicBool,
    /// The recent findings, numbered.
    pub(super) recent: Recent,
    /// Findings through the sinks, by kind and reason.
    pub(super) counts: FindingCounts,
}

/// What the sink thread has done, under one lock (flushes wait on it).
#[derive(Default)]
pub(super) struct Progress {
    pub(super) processed: u64,
    pub(super) written: u64,
    pub(super) unwritten: u64,
    pub(super) drop_notices: u64,
    pub(super) drop_notices_written: u64,
}

impl Shared {
    /// Everything at zero, the sink thread assumed alive.
    pub(super) fn new() -> Shared {
        Shared {
            submitted: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            progress: Mutex::new(Progress::default()),
            done: Condvar::new(),
            waiters: AtomicUsize::new(0),
            drops_noticed: AtomicU64::new(0),
            flush_requests: AtomicU64::new(0),
            alive: AtomicBool::new(true),
            recent: Recent::default(),
            counts: FindingCounts::default(),
        }
    }
}
