//! Aggregation: slow polls by spawn location, the other findings by kind and
//! location.
//!
//! Slow polls go to [`taskscope_api::slow_polls::SlowPolls`], the model the
//! live view uses too, with the file's index as the source: it pairs the
//! reports of one poll (also across runs appended to one file) and computes
//! the figures. The other findings go to [`taskscope_api::problems`], the
//! model of the live view's Problems view. Findings are added one at a time
//! as they are read ([`Aggregator`]); the models keep per poll a few numbers
//! and per group of other findings one finding, with tasks, threads and
//! stacks stored once however many reports share them, so a report of a few
//! hundred MB fits in a small fraction of its size.

use taskscope_api::FindingKind;
use taskscope_api::problems::{ProblemGroup, ProblemGroups};
use taskscope_api::slow_polls::{SlowPollGroup, SlowPolls};
use taskscope_api::stack::SourceRoots;

use super::parse::Entry;

/// Everything the report shows.
#[derive(Debug, Default)]
pub struct Summary {
    /// Slow polls by spawn location, longest total first.
    pub slow_polls: Vec<SlowPollGroup>,
    /// The other findings by kind and location: by kind, then most findings
    /// first, then by location (ties in the order first seen).
    pub other: Vec<ProblemGroup>,
    /// The app's source roots, learnt from the slow polls' stacks (to show
    /// paths relative to them).
    pub roots: SourceRoots,
}

/// Takes findings one at a time, then gives the [`Summary`].
#[derive(Default)]
pub struct Aggregator {
    slow: SlowPolls,
    other: ProblemGroups,
    roots: SourceRoots,
}

impl Aggregator {
    /// An aggregator that has seen nothing.
    pub fn new() -> Aggregator {
        Aggregator::default()
    }

    /// Counts one finding.
    pub fn add(&mut self, entry: Entry) {
        // File indexes past u32::MAX (never: one file a command-line argument)
        // would share the last source.
        let source = u32::try_from(entry.file).unwrap_or(u32::MAX);
        let finding = &entry.finding;
        if self.slow.ingest(source, finding) {
            if let (FindingKind::SlowPoll { stack, .. }, Some(task)) =
                (&finding.kind, &finding.task)
            {
                self.roots.learn(stack, &task.spawned_at);
            }
        } else {
            self.other.ingest(finding);
        }
    }

    /// The summary of everything added.
    pub fn finish(self) -> Summary {
        let mut slow_polls: Vec<SlowPollGroup> = self.slow.groups().collect();
        slow_polls.sort_by(|a, b| {
            b.total_ms
                .total_cmp(&a.total_ms)
                .then_with(|| a.spawned_at.cmp(&b.spawned_at))
        });

        let mut other = self.other.into_groups();
        let rank = |kind: &str| FindingKind::NAMES.iter().position(|k| *k == kind);
        other.sort_by(|a, b| {
            rank(a.kind)
                .cmp(&rank(b.kind))
                .then(b.count.cmp(&a.count))
                .then_with(|| a.location.cmp(&b.location))
        });
        Summary {
            slow_polls,
            other,
            roots: self.roots,
        }
    }
}

/// Groups `entries` (a convenience over [`Aggregator`]).
#[cfg(test)]
pub fn summarize(entries: impl IntoIterator<Item = Entry>) -> Summary {
    let mut aggregator = Aggregator::new();
    for entry in entries {
        aggregator.add(entry);
    }
    aggregator.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope_api::{Finding, LeakReason, StackFrame, TaskRef};

    fn task(id: u64, name: &str, at: &str) -> Option<TaskRef> {
        Some(TaskRef {
            id,
            name: Some(name.into()),
            spawned_at: at.into(),
        })
    }

    fn frame(function: &str, line: u32) -> StackFrame {
        StackFrame {
            function: function.into(),
            file: Some("src/app.rs".into()),
            line: Some(line),
        }
    }

    fn slow(
        task: Option<TaskRef>,
        poll: u64,
        ms: f64,
        in_progress: bool,
        stack: &[StackFrame],
    ) -> Finding {
        Finding {
            v: 1,
            kind: FindingKind::SlowPoll {
                duration_ms: ms,
                threshold_ms: 100,
                thread: "worker-1".into(),
                stack: stack.to_vec(),
                stack_unavailable: None,
                stack_truncated: false,
                in_progress,
                poll,
            },
            time: "2026-11-22T10:00:00.000Z".into(),
            task,
        }
    }

    fn entries(findings: Vec<Finding>) -> Vec<Entry> {
        findings
            .into_iter()
            .enumerate()
            .map(|(i, finding)| Entry {
                finding,
                file: 0,
                line: i as u64 + 1,
            })
            .collect()
    }

    // The pairing and the figures are tested with the model
    // (taskscope_api::slow_polls); here, what the report adds: the order of
    // the groups, files as sources, and the other findings.

    #[test]
    fn slow_polls_by_spawn_location_longest_total_first() {
        let a = "src/a.rs:1:1";
        let b = "src/b.rs:2:2";
        let c = "src/c.rs:3:3";
        let read = frame("std::fs::read", 20);
        let summary = summarize(entries(vec![
            slow(task(1, "one", a), 1, 150.0, false, &[]),
            slow(
                task(2, "two", b),
                1,
                400.0,
                false,
                std::slice::from_ref(&read),
            ),
            slow(task(1, "one", a), 2, 120.0, false, &[]),
            slow(task(3, "three", a), 1, 300.0, false, &[]),
            // Equal totals: by location.
            slow(task(4, "four", c), 1, 400.0, false, &[]),
        ]));
        let groups: Vec<(Option<&str>, u64, f64)> = summary
            .slow_polls
            .iter()
            .map(|g| (g.spawned_at.as_deref(), g.count, g.total_ms))
            .collect();
        assert_eq!(
            groups,
            [
                (Some(a), 3, 570.0),
                (Some(b), 1, 400.0),
                (Some(c), 1, 400.0)
            ]
        );
        assert_eq!(summary.slow_polls[1].top_frame.as_ref(), Some(&read));
        assert!(summary.other.is_empty());
    }

    #[test]
    fn each_file_is_a_source_of_its_own() {
        // The same task id and poll in another file (another run) is another
        // poll; in one file, a report of the same time is the same poll.
        let at = "src/a.rs:1:1";
        let mut two_files = entries(vec![
            slow(task(1, "h", at), 4, 150.0, false, &[]),
            slow(task(1, "h", at), 4, 150.0, false, &[]),
            slow(task(1, "h", at), 4, 150.0, false, &[]),
        ]);
        two_files[1].file = 1;
        two_files[2].file = 1;
        assert_eq!(summarize(two_files).slow_polls[0].count, 2);
    }

    #[test]
    fn other_findings_by_kind_and_location() {
        let never = |name: &str, at: &str| Finding {
            v: 1,
            kind: FindingKind::NeverAwaited {
                name: name.into(),
                created_at: at.into(),
            },
            time: "t".into(),
            task: None,
        };
        let leaked = |id, reason, at: &str| Finding {
            v: 1,
            kind: FindingKind::LeakedTask {
                reason,
                age_ms: 1,
                idle_ms: 1,
                waiting_at: Vec::new(),
                waiting_at_note: None,
            },
            time: "t".into(),
            task: task(id, "l", at),
        };
        let panicked = |id, at: Option<&str>| Finding {
            v: 1,
            kind: FindingKind::TaskPanicked {
                message: "boom".into(),
                panicked_at: at.map(str::to_owned),
                joined: Some(false),
            },
            time: "t".into(),
            task: task(id, "p", "src/spawn.rs:5:5"),
        };
        let dropped = |count| Finding {
            v: 1,
            kind: FindingKind::FindingsDropped { count },
            time: "t".into(),
            task: None,
        };
        let summary = summarize(entries(vec![
            dropped(5),
            never("fetch", "src/n.rs:1:1"),
            leaked(7, LeakReason::LostWaker, "src/l.rs:2:2"),
            never("fetch", "src/n.rs:1:1"),
            leaked(8, LeakReason::AliveAtShutdown, "src/l.rs:2:2"),
            leaked(9, LeakReason::LostWaker, "src/l.rs:2:2"),
            panicked(10, Some("src/p.rs:9:9")),
            panicked(11, None),
            never("other", "src/n.rs:3:3"),
            dropped(7),
        ]));
        let rows: Vec<(&str, Option<&str>, Option<LeakReason>, u64)> = summary
            .other
            .iter()
            .map(|g| (g.kind, g.location.as_deref(), g.reason, g.count))
            .collect();
        assert_eq!(
            rows,
            [
                ("never_awaited", Some("src/n.rs:1:1"), None, 2),
                ("never_awaited", Some("src/n.rs:3:3"), None, 1),
                (
                    "leaked_task",
                    Some("src/l.rs:2:2"),
                    Some(LeakReason::LostWaker),
                    2
                ),
                (
                    "leaked_task",
                    Some("src/l.rs:2:2"),
                    Some(LeakReason::AliveAtShutdown),
                    1
                ),
                ("task_panicked", Some("src/p.rs:9:9"), None, 1),
                ("task_panicked", Some("src/spawn.rs:5:5"), None, 1),
                ("findings_dropped", None, None, 12),
            ]
        );
        assert_eq!(summary.other[0].example.as_deref(), Some("fetch"));
        assert_eq!(summary.other[2].example_task.as_ref().unwrap().id, 7);
        assert_eq!(summary.other[4].example.as_deref(), Some("boom"));
    }
}
