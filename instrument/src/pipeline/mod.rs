//! The findings pipeline: a bounded queue from the detectors to one thread that
//! feeds the sinks (the in-memory list of recent findings, the log, the report
//! file). Submitting never blocks: when the queue is full the finding is
//! counted as dropped, and the sink thread itself reports the count as a
//! `findings_dropped` finding — at most once a second while findings are being
//! dropped, and at once when someone flushes — so the notice can never be
//! lost to a full queue.
//!
//! Accounting, as [`PipelineStats`] shows it: every finding the detectors
//! submit is either accepted into the queue or dropped (`submitted = accepted +
//! dropped`); every accepted finding is either still queued or has been
//! through every sink (`accepted = queued + processed`); with a report file,
//! every processed finding was either written or not (`processed = written +
//! unwritten`). The `findings_dropped` notices are the pipeline's own lines:
//! counted apart (`drop_notices`, `drop_notices_written`), the counts they
//! carry add up to `drops_noticed`, which catches up with `dropped` at every
//! flush.

pub(crate) mod counts;
pub(crate) mod log_sink;
mod recent;
// The recording (TASKSCOPE_RECORD): a sink of the viewer server's updates,
// fed by the server's publisher, written on a thread of its own.
pub(crate) mod record_file;
pub(crate) mod record_queue;
pub(crate) mod report_file;
mod shared;
mod sinks;
mod stats;

use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use taskscope_api::Finding;

use crate::sync::lock;
use report_file::ReportFile;
use shared::{Message, Shared};
pub(crate) use sinks::Sinks;
pub use stats::PipelineStats;

/// Findings waiting for the sinks at most.
pub(crate) const QUEUE_CAPACITY: usize = 4_096;

/// The submitting side of the pipeline (the sink side is [`Sinks`]).
pub(crate) struct Pipeline {
    tx: SyncSender<Message>,
    shared: Arc<Shared>,
}

impl Pipeline {
    /// A pipeline and its sink side, which the caller runs on a thread of
    /// its own ([`Sinks::run`]); the report file is opened there, never on
    /// the caller's thread. Until it runs, findings wait in the queue.
    pub(crate) fn new(report: Option<ReportFile>) -> (Pipeline, Sinks) {
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared::new());
        let sinks = Sinks::new(rx, report, Arc::clone(&shared));
        (Pipeline { tx, shared }, sinks)
    }

    /// The sink thread could not be started: nothing will take the queue,
    /// flushes give up at once.
    pub(crate) fn sinks_failed(&self) {
        self.shared.alive.store(false, SeqCst);
    }

    /// Hands a finding to the sinks without ever blocking.
    pub(crate) fn submit(&self, finding: Finding) {
        let shared = &*self.shared;
        shared.submitted.fetch_add(1, Relaxed);
        shared.in_flight.fetch_add(1, SeqCst);
        match self.tx.try_send(Message::Finding(finding)) {
            Ok(()) => shared.accepted.fetch_add(1, SeqCst),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                shared.dropped.fetch_add(1, SeqCst)
            }
        };
        shared.in_flight.fetch_sub(1, SeqCst);
    }

    /// `(accepted, dropped)`, read when no submit is between its queueing and
    /// its counting (if such a moment comes within a few thousand tries), so
    /// that every finding queued before the call is in `accepted`.
    fn settled_counts(&self) -> (u64, u64) {
        let shared = &*self.shared;
        for i in 0..10_000 {
            if shared.in_flight.load(SeqCst) == 0 {
                break;
            }
            if i % 100 == 99 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        (shared.accepted.load(SeqCst), shared.dropped.load(SeqCst))
    }

    pub(crate) fn stats(&self) -> PipelineStats {
        let shared = &*self.shared;
        let p = lock(&shared.progress);
        let (processed, written, unwritten) = (p.processed, p.written, p.unwritten);
        let (drop_notices, drop_notices_written) = (p.drop_notices, p.drop_notices_written);
        drop(p);
        let drops_noticed = shared.drops_noticed.load(SeqCst);
        let dropped = shared.dropped.load(SeqCst);
        let accepted = shared.accepted.load(SeqCst);
        PipelineStats {
            // A submit in flight has bumped `submitted` but not the others yet.
            submitted: shared.submitted.load(Relaxed).max(accepted + dropped),
            accepted,
            dropped,
            processed,
            written,
            unwritten,
            drop_notices,
            drop_notices_written,
            drops_noticed,
        }
    }

    /// Waits until every finding accepted so far has been through the sinks,
    /// and every finding dropped so far has been reported as dropped, at most
    /// `timeout`. Returns false on timeout (or when the sink thread is gone).
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let shared = &*self.shared;
        let deadline = Instant::now() + timeout;
        let (accepted, dropped) = self.settled_counts();
        shared.flush_requests.fetch_add(1, SeqCst);
        // Wake the sink thread if it waits for findings. When the queue is
        // full it is busy, and looks at `flush_requests` after each finding.
        let _ = self.tx.try_send(Message::Wake);
        shared.waiters.fetch_add(1, SeqCst);
        let mut p = lock(&shared.progress);
        let flushed = loop {
            if p.processed >= accepted && shared.drops_noticed.load(SeqCst) >= dropped {
                break true;
            }
            let now = Instant::now();
            if now >= deadline || !shared.alive.load(SeqCst) {
                break false;
            }
            // Bounded waits: a wake-up lost to a race costs 50 ms, not the timeout.
            let wait = (deadline - now).min(Duration::from_millis(50));
            p = shared
                .done
                .wait_timeout(p, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        drop(p);
        shared.waiters.fetch_sub(1, SeqCst);
        flushed
    }

    /// Findings through the sinks so far, by kind and reason ([`counts::SERIES`]).
    pub(crate) fn finding_counts(
        &self,
    ) -> [(&'static str, &'static str, u64); counts::SERIES.len()] {
        self.shared.counts.now()
    }

    /// The recent findings (up to [`recent::RECENT_CAPACITY`]), oldest first.
    pub(crate) fn recent(&self) -> Vec<Finding> {
        self.shared.recent.all()
    }

    /// The recent findings with a sequence number above `after`, oldest first,
    /// with their sequence numbers (`recent_since(0)`: all of them).
    pub(crate) fn recent_since(&self, after: u64) -> Vec<(u64, Finding)> {
        self.shared.recent.since(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recent::RECENT_CAPACITY;
    use taskscope_api::{FindingKind, TaskRef};

    /// A pipeline with its sink thread running (as the builder starts it).
    fn started(report: Option<ReportFile>) -> Pipeline {
        let (pipeline, sinks) = Pipeline::new(report);
        std::thread::spawn(move || sinks.run());
        pipeline
    }

    fn never_awaited(n: u64) -> Finding {
        Finding::new(
            FindingKind::NeverAwaited {
                name: format!("f{n}"),
                created_at: "src/main.rs:1:1".into(),
            },
            Some(TaskRef {
                id: n,
                name: None,
                spawned_at: "src/main.rs:2:2".into(),
            }),
        )
    }

    fn temp_path(test: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("taskscope-pipeline-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("report.jsonl")
    }

    fn lines(path: &std::path::Path) -> Vec<Finding> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn every_accepted_finding_is_written_and_every_drop_is_noticed() {
        let path = temp_path("flood");
        let pipeline = started(Some(ReportFile::new(path.clone())));
        let n = 3 * QUEUE_CAPACITY as u64;
        // Faster than the sink thread writes: some are dropped.
        std::thread::scope(|s| {
            for t in 0..2 {
                let pipeline = &pipeline;
                s.spawn(move || {
                    for i in 0..n / 2 {
                        pipeline.submit(never_awaited(t * n + i));
                    }
                });
            }
        });
        assert!(pipeline.flush(Duration::from_secs(30)));
        let stats = pipeline.stats();
        assert_eq!(stats.submitted, n);
        assert_eq!(stats.submitted, stats.accepted + stats.dropped);
        assert_eq!(stats.queued(), 0);
        assert_eq!(stats.written + stats.unwritten, stats.processed);
        assert_eq!(stats.unwritten, 0);
        assert_eq!(stats.drops_noticed, stats.dropped);

        let found = lines(&path);
        let notices: Vec<u64> = found
            .iter()
            .filter_map(|f| match f.kind {
                FindingKind::FindingsDropped { count } => Some(count),
                _ => None,
            })
            .collect();
        assert_eq!(found.len() as u64 - notices.len() as u64, stats.written);
        assert_eq!(notices.len() as u64, stats.drop_notices_written);
        assert_eq!(notices.iter().sum::<u64>(), stats.dropped);
        if stats.dropped > 0 {
            assert!(!notices.is_empty());
        }
        assert_eq!(
            pipeline.recent().len(),
            RECENT_CAPACITY.min(stats.processed as usize + notices.len())
        );
    }

    #[test]
    fn drops_are_noticed_at_flush_even_while_the_queue_stays_full() {
        // No sink thread to drain the queue: fill it, then drop more.
        let (tx, rx) = sync_channel(2);
        let shared = Arc::new(Shared::new());
        let pipeline = Pipeline {
            tx,
            shared: Arc::clone(&shared),
        };
        for i in 0..5 {
            pipeline.submit(never_awaited(i));
        }
        let stats = pipeline.stats();
        assert_eq!((stats.accepted, stats.dropped), (2, 3));
        // The sink thread starts late, with the first notice just sent (so
        // only a flush can make it send the next one at once).
        let mut sinks = Sinks::new(rx, None, Arc::clone(&shared));
        sinks.last_notice = Some(Instant::now());
        let thread = std::thread::spawn(move || sinks.run());
        assert!(pipeline.flush(Duration::from_millis(900)));
        let stats = pipeline.stats();
        assert_eq!((stats.processed, stats.drops_noticed), (2, 3));
        let notices: Vec<FindingKind> = pipeline
            .recent()
            .into_iter()
            .map(|f| f.kind)
            .filter(|k| k.name() == "findings_dropped")
            .collect();
        assert_eq!(notices, [FindingKind::FindingsDropped { count: 3 }]);
        drop(pipeline);
        thread.join().unwrap();
        assert!(!shared.alive.load(SeqCst));
    }

    #[test]
    fn flush_gives_up_when_the_sink_thread_is_gone() {
        let (tx, rx) = sync_channel(4);
        drop(rx);
        let shared = Shared::new();
        shared
            .alive
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let pipeline = Pipeline {
            tx,
            shared: Arc::new(shared),
        };
        pipeline.submit(never_awaited(1));
        assert_eq!(pipeline.stats().dropped, 1);
        let started = Instant::now();
        assert!(!pipeline.flush(Duration::from_secs(60)));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no wait for a dead thread"
        );
    }
}
