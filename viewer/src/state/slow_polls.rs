//! Slow polls grouped by the spawn location of their task: the code
//! locations that block the runtime, how often, how long, and where.
//!
//! The figures come from [`taskscope_api::slow_polls`], the model
//! `taskscope report` uses too, fed every slow-poll finding as it arrives
//! (one source: the app the viewer is attached to). See there how the
//! reports of one poll are paired and what each figure means. The groups'
//! figures are recomputed when read, and only for the groups that took a
//! report since the last read.

use taskscope_api::slow_polls;
pub use taskscope_api::slow_polls::{SlowPollGroup, WorstPoll};

use crate::state::model::Finding;

/// The source of every finding in the live view: one app, one stream.
const LIVE: u32 = 0;

/// Order of the groups in the slow-polls view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlowOrder {
    /// The group with the most recent slow poll first.
    Newest,
    /// The group with the longest poll first.
    Worst,
}

impl SlowOrder {
    /// The other order.
    pub fn toggled(self) -> SlowOrder {
        match self {
            SlowOrder::Newest => SlowOrder::Worst,
            SlowOrder::Worst => SlowOrder::Newest,
        }
    }

    /// How the order reads in a title.
    pub fn describe(self) -> &'static str {
        match self {
            SlowOrder::Newest => "newest first",
            SlowOrder::Worst => "worst first",
        }
    }
}

/// All slow polls, grouped by spawn location.
#[derive(Debug, Default)]
pub struct SlowPolls {
    model: slow_polls::SlowPolls,
    /// The figures of each group, in the model's order.
    groups: Vec<SlowPollGroup>,
    /// The model's latest report when `groups` was brought up to date.
    seen: u64,
}

impl SlowPolls {
    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = SlowPolls::default();
    }

    /// Adds a finding; returns false (and does nothing) when it is not a slow poll.
    pub fn ingest(&mut self, finding: &Finding) -> bool {
        self.model.ingest(LIVE, finding)
    }

    /// Number of slow polls (each poll once).
    pub fn total(&self) -> usize {
        self.model.poll_count()
    }

    /// The groups, in the order their locations first appeared.
    pub fn groups(&mut self) -> &[SlowPollGroup] {
        self.refresh();
        &self.groups
    }

    /// The groups in `order` (ties: location).
    pub fn sorted(&mut self, order: SlowOrder) -> Vec<&SlowPollGroup> {
        let mut groups: Vec<&SlowPollGroup> = self.groups().iter().collect();
        match order {
            SlowOrder::Newest => groups.sort_by_key(|g| std::cmp::Reverse(g.last_report)),
            SlowOrder::Worst => groups.sort_by(|a, b| {
                b.max_ms
                    .total_cmp(&a.max_ms)
                    .then_with(|| a.spawned_at.cmp(&b.spawned_at))
            }),
        }
        groups
    }

    /// Recomputes the figures of the groups that took a report since the last time.
    fn refresh(&mut self) {
        if self.seen == self.model.last_report() {
            return;
        }
        for (index, group) in self.model.changed_since(self.seen) {
            match self.groups.get_mut(index) {
                Some(slot) => *slot = group,
                // New groups come last, in order.
                None => self.groups.push(group),
            }
        }
        self.seen = self.model.last_report();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope_api::{FindingKind, StackFrame, TaskRef};

    fn slow(id: u64, at: &str, poll: u64, ms: f64, in_progress: bool, top: &str) -> Finding {
        let stack = if top.is_empty() {
            vec![]
        } else {
            vec![StackFrame {
                function: top.into(),
                file: Some("src/x.rs".into()),
                line: Some(1),
            }]
        };
        Finding::new(
            FindingKind::SlowPoll {
                duration_ms: ms,
                threshold_ms: 100,
                thread: "tokio-runtime-worker".into(),
                stack,
                stack_unavailable: None,
                stack_truncated: false,
                in_progress,
                poll,
            },
            Some(TaskRef {
                id,
                name: None,
                spawned_at: at.into(),
            }),
        )
    }

    #[test]
    fn reports_of_one_poll_count_once_and_keep_the_blocked_stack() {
        let mut s = SlowPolls::default();
        assert!(s.ingest(&slow(7, "src/a.rs:1:1", 3, 1000.0, true, "app::block")));
        assert_eq!(s.groups()[0].unfinished, 1);
        assert!(s.ingest(&slow(7, "src/a.rs:1:1", 3, 2000.0, true, "")));
        assert!(s.ingest(&slow(7, "src/a.rs:1:1", 3, 2500.0, false, "")));
        let g = &s.groups()[0];
        assert_eq!((g.count, g.unfinished, g.max_ms), (1, 0, 2500.0));
        assert_eq!(g.worst.stack[0].function, "app::block");
        assert_eq!(g.worst.duration_ms, 2500.0);
        assert_eq!(s.total(), 1);
    }

    #[test]
    fn groups_by_location_newest_or_worst_first() {
        let mut s = SlowPolls::default();
        for (i, ms) in [150.0, 900.0, 120.0].into_iter().enumerate() {
            s.ingest(&slow(i as u64, "src/a.rs:1:1", 1, ms, false, "f"));
        }
        s.ingest(&slow(9, "src/b.rs:2:2", 1, 5000.0, false, "g"));
        assert_eq!(s.total(), 4);
        let newest = s.sorted(SlowOrder::Newest);
        assert_eq!(newest[0].location(), "src/b.rs:2:2");
        let a = newest[1];
        assert_eq!((a.count, a.max_ms, a.p99_ms), (3, 900.0, 900.0));
        assert_eq!(a.worst.duration_ms, 900.0);
        // A newer poll of a (read after the groups were): a comes first.
        s.ingest(&slow(3, "src/a.rs:1:1", 1, 130.0, false, ""));
        let newest = s.sorted(SlowOrder::Newest);
        assert_eq!((newest[0].location(), newest[0].count), ("src/a.rs:1:1", 4));
        assert_eq!(s.sorted(SlowOrder::Worst)[0].location(), "src/b.rs:2:2");
    }

    #[test]
    fn other_findings_are_not_slow_polls() {
        let mut s = SlowPolls::default();
        let f = Finding::new(FindingKind::FindingsDropped { count: 1 }, None);
        assert!(!s.ingest(&f));
        assert_eq!(s.total(), 0);
        assert!(s.groups().is_empty());
    }
}
