//! The sink side of the findings pipeline: one thread that takes findings off
//! the queue and hands each to every sink (the log, the report file, the
//! recent list), and reports drops.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use taskscope_api::{Finding, FindingKind};

use super::log_sink;
use super::report_file::ReportFile;
use super::shared::{DROP_NOTICE_EVERY, Message, Shared};
use crate::sync::lock;

/// The sink thread's state: what [`Sinks::run`] needs.
pub(crate) struct Sinks {
    rx: Receiver<Message>,
    report: Option<ReportFile>,
    shared: Arc<Shared>,
    /// When the last `findings_dropped` notice went out.
    pub(super) last_notice: Option<Instant>,
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
    pub(super) fn new(
        rx: Receiver<Message>,
        report: Option<ReportFile>,
        shared: Arc<Shared>,
    ) -> Sinks {
        Sinks {
            rx,
            report,
            shared,
            last_notice: None,
            flushes_seen: 0,
        }
    }

    /// The sink thread's loop, until every [`super::Pipeline`] is gone.
    pub(crate) fn run(mut self) {
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
                match self
                    .rx
                    .recv_timeout(DROP_NOTICE_EVERY.saturating_sub(since))
                {
                    Ok(message) => Some(message),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
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
        let _ = catch_unwind(AssertUnwindSafe(|| log_sink::emit(&finding)));
        let line = self.report.as_mut().map(|report| {
            catch_unwind(AssertUnwindSafe(|| report.write(&finding))).unwrap_or(false)
        });
        self.shared.counts.count(&finding.kind);
        self.shared.recent.push(finding);
        line
    }
}
