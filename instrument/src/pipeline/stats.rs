//! The findings pipeline's counters, as [`crate::pipeline_stats`] returns them.

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
