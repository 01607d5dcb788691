//! The recording's queue: from the viewer server's publisher (which makes
//! the updates) to the recording's own thread (which writes them,
//! [`super::record_file`]). The publisher never waits: an update that finds
//! the queue full is dropped and counted, the writer says so on stderr, and
//! the recording goes on with a full snapshot (the reader sees the numbers
//! skipped). The queue holds at most [`QUEUE_UPDATES`] publishes and
//! [`QUEUE_BYTES`] bytes (one publish bigger than that is taken when the
//! queue is empty, so that a big app's snapshot can be recorded at all).
//!
//! The queue is also how the builder's guard asks, at shutdown, for one last
//! publish to be recorded and written ([`RecordControl::finish`]).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::sync::lock;

/// Publishes waiting for the recording's thread, at most.
pub(crate) const QUEUE_UPDATES: usize = 32;

/// Bytes of updates waiting for the recording's thread, at most (the
/// encoded updates are shared with the viewers' queues, not copied).
pub(crate) const QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// One update, as its encoded chunks (shared with the viewers' queues).
pub(crate) type Chunks = Arc<Vec<Bytes>>;

/// What one publish hands the recording.
#[derive(Debug)]
pub(crate) struct RecordItem {
    /// The publish's number in this run (the records' `seq`).
    pub(crate) seq: u64,
    /// The updates' time.
    pub(crate) at_unix_ns: u64,
    /// Start a new segment with these bytes (magic, version, header) before
    /// the updates.
    pub(crate) new_segment: Option<Vec<u8>>,
    /// The updates in order, each with whether it is a snapshot.
    pub(crate) updates: Vec<(bool, Chunks)>,
    /// The last publish before the app ends: [`RecordControl::finish`] waits for it.
    pub(crate) last: bool,
}

impl RecordItem {
    /// Bytes the item holds (what the queue's bound counts).
    pub(crate) fn bytes(&self) -> usize {
        let updates: usize = self
            .updates
            .iter()
            .flat_map(|(_, chunks)| chunks.iter())
            .map(Bytes::len)
            .sum();
        updates + self.new_segment.as_ref().map_or(0, Vec::len)
    }
}

/// Counters of the recording, for the warnings and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecordStats {
    /// Publishes handed to the queue.
    pub(crate) queued: u64,
    /// Publishes dropped because the queue was full.
    pub(crate) dropped: u64,
    /// Publishes written.
    pub(crate) written: u64,
    /// Publishes taken off the queue but not written (the file could not be
    /// written; the recording starts a new segment when it can).
    pub(crate) unwritten: u64,
    /// Bytes written (all segments, headers included).
    pub(crate) bytes: u64,
    /// Segments started.
    pub(crate) segments: u64,
    /// Old segments deleted to keep the bound.
    pub(crate) segments_dropped: u64,
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) items: VecDeque<RecordItem>,
    pub(super) bytes: usize,
    /// The publisher's side is gone: the writer ends once the queue is empty.
    pub(super) closed: bool,
    /// The item marked `last` has been written (or could not be).
    pub(super) finished: bool,
}

/// What the publisher, the writer and the guard share.
pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    /// The writer waits on it for items.
    pub(super) ready: Condvar,
    /// [`RecordControl::finish`] waits on it.
    pub(super) done: Condvar,
    /// The writer asks for a new segment (after a failure to write).
    pub(super) want_segment: AtomicBool,
    /// The writer runs and can record (false once it gave up for good).
    pub(super) alive: AtomicBool,
    /// Shutdown asked for one last publish.
    pub(super) finish_wanted: AtomicBool,
    /// Wakes the publisher for that last publish.
    pub(super) finish: Notify,
    pub(super) queued: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) written: AtomicU64,
    pub(super) unwritten: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) segments: AtomicU64,
    pub(super) segments_dropped: AtomicU64,
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            done: Condvar::new(),
            want_segment: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            finish_wanted: AtomicBool::new(false),
            finish: Notify::new(),
            queued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            unwritten: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            segments_dropped: AtomicU64::new(0),
        }
    }

    pub(super) fn stats(&self) -> RecordStats {
        RecordStats {
            queued: self.queued.load(SeqCst),
            dropped: self.dropped.load(SeqCst),
            written: self.written.load(SeqCst),
            unwritten: self.unwritten.load(SeqCst),
            bytes: self.bytes.load(SeqCst),
            segments: self.segments.load(SeqCst),
            segments_dropped: self.segments_dropped.load(SeqCst),
        }
    }

    /// The writer gave up for good: the publisher stops recording, and a
    /// shutdown does not wait for it.
    pub(super) fn give_up(&self) {
        self.alive.store(false, SeqCst);
        let mut queue = lock(&self.queue);
        queue.items.clear();
        queue.bytes = 0;
        queue.finished = true;
        self.done.notify_all();
    }
}

/// The publisher's side of the recording.
pub(crate) struct Recording {
    shared: Arc<Shared>,
    /// The largest a segment may grow to before the next one is started
    /// (a share of the bound: see [`super::record_file`]).
    pub(crate) segment_limit: u64,
}

impl Recording {
    pub(super) fn new(shared: Arc<Shared>, segment_limit: u64) -> Recording {
        Recording {
            shared,
            segment_limit,
        }
    }

    /// Whether the recording can still record (the writer has not given up).
    pub(crate) fn alive(&self) -> bool {
        self.shared.alive.load(Relaxed)
    }

    /// Whether the writer asks for a new segment (and forgets the question).
    pub(crate) fn take_segment_request(&self) -> bool {
        self.shared.want_segment.swap(false, SeqCst)
    }

    /// Whether shutdown asks for one last publish.
    pub(crate) fn finish_wanted(&self) -> bool {
        self.shared.finish_wanted.load(SeqCst)
    }

    /// What the publisher's loop waits on for the last publish.
    pub(crate) fn finish_signal(&self) -> FinishSignal {
        FinishSignal {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Hands `item` to the writer without waiting; false (counted) when the
    /// queue is full or the writer is gone.
    pub(crate) fn offer(&self, item: RecordItem) -> bool {
        let shared = &*self.shared;
        if !self.alive() {
            return false;
        }
        let size = item.bytes();
        let mut queue = lock(&shared.queue);
        let full = queue.items.len() >= QUEUE_UPDATES
            || (!queue.items.is_empty() && queue.bytes + size > QUEUE_BYTES);
        if full {
            drop(queue);
            shared.dropped.fetch_add(1, SeqCst);
            return false;
        }
        queue.bytes += size;
        queue.items.push_back(item);
        drop(queue);
        shared.queued.fetch_add(1, SeqCst);
        shared.ready.notify_one();
        true
    }

    /// The counters as they stand.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> RecordStats {
        self.shared.stats()
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.ready.notify_all();
    }
}

/// Shutdown's request for one last publish, as the publisher's loop waits for it.
pub(crate) struct FinishSignal {
    shared: Arc<Shared>,
}

impl FinishSignal {
    /// Waits until shutdown asks for one last publish.
    pub(crate) async fn asked(&self) {
        loop {
            let notified = self.shared.finish.notified();
            if self.shared.finish_wanted.load(SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// What the builder's guard keeps: a way to ask for the last publish at
/// shutdown and wait until it is written.
#[derive(Clone)]
pub(crate) struct RecordControl {
    shared: Arc<Shared>,
}

impl RecordControl {
    pub(super) fn new(shared: Arc<Shared>) -> RecordControl {
        RecordControl { shared }
    }

    /// Asks for one last publish to be recorded and waits until it is
    /// written, until `deadline` at most. False when it was not written in
    /// time; true at once when there is nothing to wait for (the recording
    /// gave up, and said so, or nothing publishes any more).
    pub(crate) fn finish(&self, deadline: Instant) -> bool {
        let shared = &*self.shared;
        if !shared.alive.load(SeqCst) {
            return true;
        }
        shared.finish_wanted.store(true, SeqCst);
        shared.finish.notify_one();
        let mut queue = lock(&shared.queue);
        loop {
            if queue.finished || (queue.closed && queue.items.is_empty()) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Bounded waits: a wake-up lost to a race costs 50 ms, not the deadline.
            let wait = (deadline - now).min(Duration::from_millis(50));
            queue = shared
                .done
                .wait_timeout(queue, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The counters as they stand.
    pub(crate) fn stats(&self) -> RecordStats {
        self.shared.stats()
    }
}
