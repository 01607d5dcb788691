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

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::report::ReportFile;
use crate::table::lock;
use taskscope_api::{Finding, FindingKind};

/// Findings waiting for the sinks at most.
pub(crate) const QUEUE_CAPACITY: usize = 4_096;
/// Findings kept in memory for [`crate::findings`] and the viewer.
pub(crate) const RECENT_CAPACITY: usize = 1_000;
/// While findings are being dropped, how often the sink thread reports it.
pub(crate) const DROP_NOTICE_EVERY: Duration = Duration::from_secs(1);

/// Counters of the findings pipeline ([`crate::pipeline_stats`]), for the
/// viewer, for tests, and for an app that wants to know what its report file
/// is missing.
///
/// Once [`crate::flush`] has returned true (and no finding came in since):
/// `submitted == accepted + dropped`, `queued() == 0`, `processed ==
/// accepted`, with a report file `written + unwritten == processed`, and
/// `drops_noticed == dropped`. The report file then holds `written +
/// drop_notices_written` lines of this run.
///
/// ```
/// let stats = taskscope::pipeline_stats(); // all zero: taskscope is not started
/// assert_eq!(stats.submitted, stats.accepted + stats.dropped);
/// assert_eq!(stats.queued(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineStats {
    /// Findings the detectors produced.
    pub submitted: u64,
    /// Findings taken into the queue to the sinks.
    pub accepted: u64,
    /// Findings dropped because the queue was full (or the sink thread was gone).
    pub dropped: u64,
    /// Accepted findings that have been through every sink (memory, log, report file).
    pub processed: u64,
    /// Accepted findings written to the report file.
    pub written: u64,
    /// Accepted findings the report file could not take (it could not be
    /// opened or written; the log and the in-memory list still had them).
    pub unwritten: u64,
    /// `findings_dropped` notices the sink thread emitted (log, memory, report file).
    pub drop_notices: u64,
    /// Those of the notices written to the report file.
    pub drop_notices_written: u64,
    /// Dropped findings accounted for by the notices (the sum of their `count`).
    pub drops_noticed: u64,
}

impl PipelineStats {
    /// Accepted findings not yet through the sinks.
    pub fn queued(&self) -> u64 {
        self.accepted.saturating_sub(self.processed)
    }
}

/// What goes through the queue.
enum Message {
    Finding(Finding),
    /// Wakes the sink thread: a flush wants the pending drops reported now.
    Wake,
}

pub(crate) struct Pipeline {
    tx: SyncSender<Message>,
    shared: Arc<Shared>,
}

struct Shared {
    submitted: AtomicU64,
    /// Submits between their `submitted` and their `accepted`/`dropped` count.
    in_flight: AtomicUsize,
    accepted: AtomicU64,
    dropped: AtomicU64,
    progress: Mutex<Progress>,
    done: Condvar,
    /// Threads waiting on `done` (the sink thread only notifies when there are).
    waiters: AtomicUsize,
    /// Dropped findings the sink thread has reported (written by it only; an
    /// atomic, not in `progress`, so that `report_drops` takes no lock).
    drops_noticed: AtomicU64,
    /// Bumped by every flush: the sink thread reports pending drops at once.
    flush_requests: AtomicU64,
    /// The sink thread runs (false if it could not start, or has ended).
    alive: AtomicBool,
    /// The recent findings with their sequence numbers (from 1, one more for
    /// each finding the sinks handle), so the viewer server can ask for the
    /// ones newer than those it has sent.
    recent: Mutex<VecDeque<(u64, Finding)>>,
}

#[derive(Default)]
struct Progress {
    processed: u64,
    written: u64,
    unwritten: u64,
    drop_notices: u64,
    drop_notices_written: u64,
}

impl Shared {
    fn new() -> Shared {
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
            recent: Mutex::new(VecDeque::new()),
        }
    }
}

impl Pipeline {
    /// Starts the sink thread. The report file is opened on that thread,
    /// never on the caller's.
    pub(crate) fn start(report: Option<ReportFile>) -> Pipeline {
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared::new());
        let sinks = Sinks {
            report,
            shared: Arc::clone(&shared),
            last_notice: None,
            flushes_seen: 0,
        };
        let spawned = std::thread::Builder::new()
            .name("taskscope-findings".into())
            .spawn(move || sinks.run(rx));
        if let Err(err) = spawned {
            shared.alive.store(false, SeqCst);
            eprintln!(
                "taskscope: cannot start the findings thread ({err}); findings are not written anywhere"
            );
        }
        Pipeline { tx, shared }
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

    pub(crate) fn recent(&self) -> Vec<Finding> {
        lock(&self.shared.recent)
            .iter()
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// The recent findings with a sequence number above `after`, oldest first,
    /// with their sequence numbers (`recent_since(0)`: all of them).
    pub(crate) fn recent_since(&self, after: u64) -> Vec<(u64, Finding)> {
        let recent = lock(&self.shared.recent);
        let newer = recent
            .iter()
            .rev()
            .take_while(|(seq, _)| *seq > after)
            .count();
        recent.iter().skip(recent.len() - newer).cloned().collect()
    }
}

/// The sink thread's state.
struct Sinks {
    report: Option<ReportFile>,
    shared: Arc<Shared>,
    /// When the last `findings_dropped` notice went out.
    last_notice: Option<Instant>,
    /// The `flush_requests` value the last check saw.
    flushes_seen: u64,
}

/// Marks the sink thread as gone when it ends, however it ends.
struct AliveFlag<'a>(&'a AtomicBool);

impl Drop for AliveFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, SeqCst);
    }
}

impl Sinks {
    fn run(mut self, rx: Receiver<Message>) {
        let shared = Arc::clone(&self.shared);
        let _alive = AliveFlag(&shared.alive);
        if let Some(report) = self.report.as_mut() {
            // Create the file now (the user sees it exists), but name a problem
            // only with the first finding: the app's log may not be set up yet.
            report.open_quietly();
        }
        loop {
            let message = if self.drops_pending() {
                let since = self.last_notice.map_or(DROP_NOTICE_EVERY, |t| t.elapsed());
                match rx.recv_timeout(DROP_NOTICE_EVERY.saturating_sub(since)) {
                    Ok(message) => Some(message),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(message) => Some(message),
                    Err(_) => break,
                }
            };
            if let Some(Message::Finding(finding)) = message {
                let wrote = self.deliver(finding);
                let mut p = lock(&self.shared.progress);
                p.processed += 1;
                match wrote {
                    Some(true) => p.written += 1,
                    Some(false) => p.unwritten += 1,
                    None => {}
                }
                drop(p);
            }
            self.maybe_notice_drops();
            if self.shared.waiters.load(SeqCst) > 0 {
                self.shared.done.notify_all();
            }
        }
    }

    fn drops_pending(&self) -> bool {
        self.shared.dropped.load(SeqCst) > self.shared.drops_noticed.load(SeqCst)
    }

    /// Reports the drops not reported yet, if a second has passed since the
    /// last notice or a flush asks for it.
    fn maybe_notice_drops(&mut self) {
        let flushes = self.shared.flush_requests.load(SeqCst);
        let flush_wanted = flushes != self.flushes_seen;
        self.flushes_seen = flushes;
        let dropped = self.shared.dropped.load(SeqCst);
        let noticed = self.shared.drops_noticed.load(SeqCst);
        if dropped <= noticed {
            return;
        }
        let due = self
            .last_notice
            .is_none_or(|t| t.elapsed() >= DROP_NOTICE_EVERY);
        if !(due || flush_wanted) {
            return;
        }
        self.last_notice = Some(Instant::now());
        let count = dropped - noticed;
        let notice = Finding::new(FindingKind::FindingsDropped { count }, None);
        let wrote = self.deliver(notice);
        let mut p = lock(&self.shared.progress);
        p.drop_notices += 1;
        if wrote == Some(true) {
            p.drop_notices_written += 1;
        }
        drop(p);
        self.shared.drops_noticed.fetch_add(count, SeqCst);
    }

    /// Hands one finding to every sink: the log, the report file, then the
    /// in-memory list (the last: a finding listed there has been logged). Returns whether the
    /// report file took it (`None`: no report file). A sink that panics (a
    /// `tracing` layer of the app, say) costs that finding in that sink, not
    /// the sink thread.
    fn deliver(&mut self, finding: Finding) -> Option<bool> {
        let _ = catch_unwind(AssertUnwindSafe(|| crate::log::emit(&finding)));
        let line = self.report.as_mut().map(|report| {
            catch_unwind(AssertUnwindSafe(|| report.write(&finding))).unwrap_or(false)
        });
        let mut recent = lock(&self.shared.recent);
        let seq = recent.back().map_or(1, |(seq, _)| seq + 1);
        if recent.len() == RECENT_CAPACITY {
            recent.pop_front();
        }
        recent.push_back((seq, finding));
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope_api::TaskRef;

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
        let pipeline = Pipeline::start(Some(ReportFile::new(path.clone())));
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
        let sinks = Sinks {
            report: None,
            shared: Arc::clone(&shared),
            last_notice: Some(Instant::now()),
            flushes_seen: 0,
        };
        let thread = std::thread::spawn(move || sinks.run(rx));
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
