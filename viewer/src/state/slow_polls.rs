//! Slow polls grouped by the spawn location of their task: the code
//! locations that block the runtime, how often, how long, and where.
//!
//! One poll is reported while it still runs (`in_progress: true`, maybe
//! several times) and once more when it ends; the reports of one poll are
//! paired by `(task id, poll)` and count once. The stack is the one captured
//! while the thread was blocked: when the final report carries none, the
//! stack of an earlier report of the same poll is kept.

use std::collections::HashMap;

use taskscope_api::{StackFrame, TaskRef};

use super::{Finding, FindingKind};

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

/// One slow poll (all its reports folded into one).
#[derive(Clone, Debug, PartialEq)]
pub struct SlowPoll {
    /// The task, when known.
    pub task: Option<TaskRef>,
    /// Which poll of the task (0 when the app did not say).
    pub poll: u64,
    /// Duration, in milliseconds (so far, while in progress).
    pub duration_ms: f64,
    /// Whether the final report is still to come.
    pub in_progress: bool,
    /// Worker thread.
    pub thread: String,
    /// Time of the latest report (RFC 3339).
    pub time: String,
}

/// The stack of the longest slow poll of a group that had one.
#[derive(Clone, Debug, PartialEq)]
pub struct WorstStack {
    /// Duration of that poll, in milliseconds.
    pub duration_ms: f64,
    /// Its task.
    pub task: Option<TaskRef>,
    /// Which poll of the task.
    pub poll: u64,
    /// Worker thread.
    pub thread: String,
    /// Frames, innermost first.
    pub frames: Vec<StackFrame>,
}

/// The slow polls of tasks spawned at one location.
#[derive(Clone, Debug, PartialEq)]
pub struct SlowGroup {
    /// `path:line:col` of the spawn, or `<unknown>`.
    pub location: String,
    /// Each poll once, in the order first reported.
    pub polls: Vec<SlowPoll>,
    /// Longest duration, in milliseconds.
    pub max_ms: f64,
    /// 99th percentile of the durations (nearest rank), in milliseconds.
    pub p99_ms: f64,
    /// Index in `polls` of the longest.
    pub worst: usize,
    /// The stack of the longest poll that had one.
    pub worst_stack: Option<WorstStack>,
    /// Why the latest report without a stack had none.
    pub stack_unavailable: Option<String>,
    /// Polls still blocked (no final report yet).
    pub in_progress: usize,
    /// Sequence number of the latest report (for "newest first").
    pub last_seq: u64,
}

impl SlowGroup {
    /// Number of slow polls (each poll once).
    pub fn count(&self) -> usize {
        self.polls.len()
    }

    /// The longest poll.
    pub fn worst_poll(&self) -> Option<&SlowPoll> {
        self.polls.get(self.worst)
    }

    /// Distinct task names of the group, in order of appearance, at most `max`.
    pub fn task_names(&self, max: usize) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for p in &self.polls {
            if let Some(name) = p.task.as_ref().and_then(|t| t.name.as_deref())
                && !names.contains(&name)
            {
                names.push(name);
                if names.len() == max {
                    break;
                }
            }
        }
        names
    }

    fn update_p99(&mut self) {
        let mut durations: Vec<f64> = self.polls.iter().map(|p| p.duration_ms).collect();
        if durations.is_empty() {
            self.p99_ms = 0.0;
            return;
        }
        // Nearest rank: the smallest value with at least 99% of the values at or below it.
        let rank = ((durations.len() as f64) * 0.99).ceil() as usize;
        let index = rank.clamp(1, durations.len()) - 1;
        let (_, p99, _) = durations.select_nth_unstable_by(index, f64::total_cmp);
        self.p99_ms = *p99;
    }
}

/// A poll reported in progress, waiting for its final report.
#[derive(Clone, Debug)]
struct OpenPoll {
    group: usize,
    index: usize,
    /// The latest stack reported for it.
    frames: Vec<StackFrame>,
}

/// All slow polls, grouped by spawn location.
#[derive(Clone, Debug, Default)]
pub struct SlowPolls {
    groups: Vec<SlowGroup>,
    by_location: HashMap<String, usize>,
    open: HashMap<(u64, u64), OpenPoll>,
    seq: u64,
}

impl SlowPolls {
    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = SlowPolls::default();
    }

    /// The groups, in the order their locations first appeared.
    pub fn groups(&self) -> &[SlowGroup] {
        &self.groups
    }

    /// Number of slow polls (each poll once).
    pub fn total(&self) -> usize {
        self.groups.iter().map(SlowGroup::count).sum()
    }

    /// The groups in `order` (ties: location).
    pub fn sorted(&self, order: SlowOrder) -> Vec<&SlowGroup> {
        let mut groups: Vec<&SlowGroup> = self.groups.iter().collect();
        match order {
            SlowOrder::Newest => groups.sort_by_key(|g| std::cmp::Reverse(g.last_seq)),
            SlowOrder::Worst => groups.sort_by(|a, b| {
                b.max_ms
                    .total_cmp(&a.max_ms)
                    .then_with(|| a.location.cmp(&b.location))
            }),
        }
        groups
    }

    /// Adds a finding; returns false (and does nothing) when it is not a slow poll.
    pub fn ingest(&mut self, finding: &Finding) -> bool {
        let FindingKind::SlowPoll {
            duration_ms,
            thread,
            stack,
            stack_unavailable,
            in_progress,
            poll,
            ..
        } = &finding.kind
        else {
            return false;
        };
        self.seq += 1;
        let seq = self.seq;
        let location = finding
            .task
            .as_ref()
            .map(|t| t.spawned_at.as_str())
            .unwrap_or("<unknown>");
        let pair = match &finding.task {
            Some(task) if *poll > 0 => Some((task.id, *poll)),
            _ => None,
        };
        let group_index = match self.by_location.get(location) {
            Some(&i) => i,
            None => {
                self.groups.push(SlowGroup {
                    location: location.to_owned(),
                    polls: Vec::new(),
                    max_ms: 0.0,
                    p99_ms: 0.0,
                    worst: 0,
                    worst_stack: None,
                    stack_unavailable: None,
                    in_progress: 0,
                    last_seq: 0,
                });
                self.by_location
                    .insert(location.to_owned(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[group_index];
        group.last_seq = seq;

        // Fold into the earlier report of the same poll, if any.
        let open = pair.and_then(|key| self.open.get_mut(&key).map(|open| (key, open)));
        let (index, frames) = match open {
            Some((key, open)) if open.group == group_index => {
                let record = &mut group.polls[open.index];
                record.duration_ms = record.duration_ms.max(*duration_ms);
                record.thread.clone_from(thread);
                record.time.clone_from(&finding.time);
                if !stack.is_empty() {
                    open.frames.clone_from(stack);
                }
                let frames = open.frames.clone();
                let index = open.index;
                if !*in_progress {
                    record.in_progress = false;
                    group.in_progress = group.in_progress.saturating_sub(1);
                    self.open.remove(&key);
                }
                (index, frames)
            }
            _ => {
                group.polls.push(SlowPoll {
                    task: finding.task.clone(),
                    poll: *poll,
                    duration_ms: *duration_ms,
                    in_progress: *in_progress,
                    thread: thread.clone(),
                    time: finding.time.clone(),
                });
                let index = group.polls.len() - 1;
                if *in_progress {
                    group.in_progress += 1;
                    if let Some(key) = pair {
                        self.open.insert(
                            key,
                            OpenPoll {
                                group: group_index,
                                index,
                                frames: stack.clone(),
                            },
                        );
                    }
                }
                (index, stack.clone())
            }
        };

        let record = &group.polls[index];
        if group.polls.len() == 1 || record.duration_ms > group.max_ms {
            group.max_ms = record.duration_ms;
            group.worst = index;
        }
        if frames.is_empty() {
            if let Some(why) = stack_unavailable {
                group.stack_unavailable = Some(why.clone());
            }
        } else {
            let same_poll = group.worst_stack.as_ref().is_some_and(|w| {
                w.poll == record.poll
                    && record.poll > 0
                    && w.task.as_ref().map(|t| t.id) == record.task.as_ref().map(|t| t.id)
            });
            let longer = group
                .worst_stack
                .as_ref()
                .is_none_or(|w| record.duration_ms >= w.duration_ms);
            if same_poll || longer {
                group.worst_stack = Some(WorstStack {
                    duration_ms: record.duration_ms,
                    task: record.task.clone(),
                    poll: record.poll,
                    thread: record.thread.clone(),
                    frames,
                });
            }
        }
        group.update_p99();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s.groups()[0].in_progress, 1);
        assert!(s.ingest(&slow(7, "src/a.rs:1:1", 3, 2000.0, true, "")));
        assert!(s.ingest(&slow(7, "src/a.rs:1:1", 3, 2500.0, false, "")));
        let g = &s.groups()[0];
        assert_eq!(g.count(), 1);
        assert_eq!(g.in_progress, 0);
        assert_eq!(g.max_ms, 2500.0);
        let worst = g.worst_stack.as_ref().unwrap();
        assert_eq!(worst.frames[0].function, "app::block");
        assert_eq!(worst.duration_ms, 2500.0);
    }

    #[test]
    fn groups_by_location_with_max_and_p99() {
        let mut s = SlowPolls::default();
        for (i, ms) in [150.0, 900.0, 120.0].into_iter().enumerate() {
            s.ingest(&slow(i as u64, "src/a.rs:1:1", 1, ms, false, "f"));
        }
        s.ingest(&slow(9, "src/b.rs:2:2", 1, 5000.0, false, "g"));
        assert_eq!(s.total(), 4);
        let newest = s.sorted(SlowOrder::Newest);
        assert_eq!(newest[0].location, "src/b.rs:2:2");
        let a = newest[1];
        assert_eq!((a.count(), a.max_ms, a.p99_ms), (3, 900.0, 900.0));
        assert_eq!(a.worst_poll().unwrap().duration_ms, 900.0);
        s.ingest(&slow(3, "src/a.rs:1:1", 1, 130.0, false, ""));
        assert_eq!(s.sorted(SlowOrder::Newest)[0].location, "src/a.rs:1:1");
        assert_eq!(s.sorted(SlowOrder::Worst)[0].location, "src/b.rs:2:2");
    }

    #[test]
    fn other_findings_are_not_slow_polls() {
        let mut s = SlowPolls::default();
        let f = Finding::new(FindingKind::FindingsDropped { count: 1 }, None);
        assert!(!s.ingest(&f));
        assert_eq!(s.total(), 0);
    }
}
