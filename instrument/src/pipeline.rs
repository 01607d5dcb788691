//! The findings pipeline: a bounded queue from the detectors to one thread that
//! feeds the sinks (the log, the report file, the in-memory list of recent
//! findings). Submitting never blocks: when the queue is full the finding is
//! counted as dropped, and the count is reported as a `findings_dropped` finding.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::findings::{Finding, FindingKind};
use crate::report::ReportFile;
use crate::table::lock;

/// Findings waiting for the sinks at most.
pub(crate) const QUEUE_CAPACITY: usize = 4_096;
/// Findings kept in memory for [`crate::findings`] and the viewer.
pub(crate) const RECENT_CAPACITY: usize = 1_000;

/// Counters of the pipeline, for the log, the report and the viewer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Findings the detectors produced.
    pub submitted: u64,
    /// Findings dropped because the queue was full (`submitted - dropped` were accepted).
    pub dropped: u64,
    /// Accepted findings the sinks have handled.
    pub processed: u64,
    /// Findings written to the report file.
    pub written: u64,
    /// Findings the report file could not take (unwritable file).
    pub unwritten: u64,
}

pub(crate) struct Pipeline {
    tx: SyncSender<Finding>,
    submitted: AtomicU64,
    dropped: AtomicU64,
    shared: Arc<Shared>,
}

struct Shared {
    progress: Mutex<Progress>,
    done: Condvar,
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
}

impl Pipeline {
    pub(crate) fn start(report: Option<ReportFile>) -> Pipeline {
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress::default()),
            done: Condvar::new(),
            recent: Mutex::new(VecDeque::new()),
        });
        let sink_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("taskscope-findings".into())
            .spawn(move || run_sinks(rx, report, sink_shared));
        if let Err(err) = spawned {
            eprintln!(
                "taskscope: cannot start the findings thread ({err}); findings are kept in memory only"
            );
        }
        Pipeline {
            tx,
            submitted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            shared,
        }
    }

    /// Hands a finding to the sinks without ever blocking.
    pub(crate) fn submit(&self, finding: Finding) {
        self.submitted.fetch_add(1, Relaxed);
        match self.tx.try_send(finding) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    pub(crate) fn stats(&self) -> PipelineStats {
        let p = lock(&self.shared.progress);
        PipelineStats {
            submitted: self.submitted.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            processed: p.processed,
            written: p.written,
            unwritten: p.unwritten,
        }
    }

    /// Waits until every accepted finding has been through the sinks, at most `timeout`.
    /// Returns false on timeout.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = lock(&self.shared.progress);
        loop {
            let accepted = self.submitted.load(Relaxed) - self.dropped.load(Relaxed);
            if p.processed >= accepted {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            p = self
                .shared
                .done
                .wait_timeout(p, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
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

    /// Reports the drops not reported yet, as one `findings_dropped` finding.
    pub(crate) fn report_drops(&self, already: &AtomicU64) {
        let dropped = self.dropped.load(Relaxed);
        let before = already.swap(dropped, Relaxed);
        if dropped > before {
            let finding = Finding::new(
                FindingKind::FindingsDropped {
                    count: dropped - before,
                },
                None,
            );
            // Bypass the counters: this one must not count itself as dropped.
            if self.tx.try_send(finding).is_ok() {
                self.submitted.fetch_add(1, Relaxed);
            } else {
                already.store(before, Relaxed);
            }
        }
    }
}

fn run_sinks(rx: Receiver<Finding>, mut report: Option<ReportFile>, shared: Arc<Shared>) {
    for finding in rx {
        crate::log::emit(&finding);
        let wrote = report.as_mut().map(|r| r.write(&finding));
        {
            let mut recent = lock(&shared.recent);
            let seq = recent.back().map_or(1, |(seq, _)| seq + 1);
            if recent.len() == RECENT_CAPACITY {
                recent.pop_front();
            }
            recent.push_back((seq, finding));
        }
        let mut p = lock(&shared.progress);
        p.processed += 1;
        match wrote {
            Some(true) => p.written += 1,
            Some(false) => p.unwritten += 1,
            None => {}
        }
        drop(p);
        shared.done.notify_all();
    }
    if let Some(r) = report {
        let _ = r.path();
    }
}
