//! Findings by kind and reason, counted by the sink thread as each one goes
//! through the sinks (the `findings_dropped` notices included): what the
//! metrics call `taskscope_findings_total`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use taskscope_api::{FindingKind, LeakReason};

/// Every `(kind, reason)` pair counted. `reason` tells a leak's cause, and a
/// slow poll's report made while it still runs (`in_progress`, repeated every
/// second) from its final one (`ended`); the other kinds have none (`""`).
pub(crate) const SERIES: [(&str, &str); 8] = [
    ("slow_poll", "in_progress"),
    ("slow_poll", "ended"),
    ("never_awaited", ""),
    ("leaked_task", "alive_at_shutdown"),
    ("leaked_task", "lost_waker"),
    ("leaked_task", "idle_too_long"),
    ("task_panicked", ""),
    ("findings_dropped", ""),
];

/// One counter per entry of [`SERIES`].
#[derive(Debug, Default)]
pub(crate) struct FindingCounts([AtomicU64; SERIES.len()]);

fn series(kind: &FindingKind) -> usize {
    match kind {
        FindingKind::SlowPoll {
            in_progress: true, ..
        } => 0,
        FindingKind::SlowPoll { .. } => 1,
        FindingKind::NeverAwaited { .. } => 2,
        FindingKind::LeakedTask { reason, .. } => match reason {
            LeakReason::AliveAtShutdown => 3,
            LeakReason::LostWaker => 4,
            LeakReason::IdleTooLong => 5,
        },
        FindingKind::TaskPanicked { .. } => 6,
        FindingKind::FindingsDropped { .. } => 7,
    }
}

impl FindingCounts {
    /// Counts one finding of `kind` (the sink thread only).
    pub(super) fn count(&self, kind: &FindingKind) {
        self.0[series(kind)].fetch_add(1, Relaxed);
    }

    /// Every series with its count, in the order of [`SERIES`].
    pub(crate) fn now(&self) -> [(&'static str, &'static str, u64); SERIES.len()] {
        std::array::from_fn(|i| (SERIES[i].0, SERIES[i].1, self.0[i].load(Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_series_under_its_own_name() {
        let kinds = [
            FindingKind::NeverAwaited {
                name: "f".into(),
                created_at: "src/a.rs:1:1".into(),
            },
            FindingKind::LeakedTask {
                reason: LeakReason::LostWaker,
                age_ms: 1,
                idle_ms: 1,
                waiting_at: Vec::new(),
                waiting_at_note: None,
            },
            FindingKind::LeakedTask {
                reason: LeakReason::LostWaker,
                age_ms: 2,
                idle_ms: 2,
                waiting_at: Vec::new(),
                waiting_at_note: None,
            },
            FindingKind::TaskPanicked {
                message: "boom".into(),
                panicked_at: None,
                joined: None,
            },
            FindingKind::FindingsDropped { count: 3 },
        ];
        let counts = FindingCounts::default();
        for kind in &kinds {
            counts.count(kind);
            assert_eq!(SERIES[series(kind)].0, kind.name());
        }
        let now = counts.now();
        assert_eq!(now[4], ("leaked_task", "lost_waker", 2));
        assert_eq!(now.iter().map(|s| s.2).sum::<u64>(), 5);
        assert_eq!(now[0], ("slow_poll", "in_progress", 0));
    }
}
