//! Findings other than slow polls, grouped by kind and location: the one
//! model behind the live view's Problems view and the "other findings" of
//! `taskscope report`.
//!
//! A group is one kind at one location ([`ProblemKey`]): a never-awaited
//! future by where it was created, a leaked task by its spawn location and
//! why it leaked, a panic by where it panicked (else its task's spawn
//! location), dropped findings all together. Each group has its count, when it
//! was first and last seen, its newest finding (to show its message) and, as
//! examples, the first task named and the first finding's detail.
//!
//! ```
//! use taskscope_api::problems::ProblemGroups;
//! use taskscope_api::{Finding, FindingKind};
//!
//! let never = |second: u32| Finding {
//!     v: 1,
//!     kind: FindingKind::NeverAwaited { name: "fetch_user".into(), created_at: "src/main.rs:10:5".into() },
//!     time: format!("2026-11-22T10:00:{second:02}.000Z"),
//!     task: None,
//! };
//! let mut problems = ProblemGroups::new();
//! for second in [4, 1, 9] {
//!     assert!(problems.ingest(&never(second)));
//! }
//! let group = &problems.groups()[0];
//! assert_eq!((group.kind, group.location.as_deref(), group.count), ("never_awaited", Some("src/main.rs:10:5"), 3));
//! assert_eq!((group.first_seen.as_str(), group.last_seen.as_str()), ("2026-11-22T10:00:01.000Z", "2026-11-22T10:00:09.000Z"));
//! assert_eq!(group.newest.time, "2026-11-22T10:00:09.000Z");
//! assert_eq!(group.newest.message(), "future fetch_user (created at src/main.rs:10:5) was never awaited");
//! ```

use std::collections::HashMap;
use std::time::SystemTime;

use crate::findings::{Finding, FindingKind, LeakReason, TaskRef};
use crate::time::parse_time;

/// What a group is: a kind at a location.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProblemKey {
    /// The finding kind, one of [`FindingKind::NAMES`] other than `slow_poll`.
    pub kind: &'static str,
    /// `created_at` (never awaited), the task's `spawned_at` (leaked), the
    /// panic's location or else the task's `spawned_at` (panicked); `None`
    /// when unknown, and for dropped findings.
    pub location: Option<String>,
    /// Why the tasks leaked (leaked tasks only).
    pub reason: Option<LeakReason>,
}

impl ProblemKey {
    /// The group `finding` belongs to; `None` for a slow poll.
    pub fn of(finding: &Finding) -> Option<ProblemKey> {
        let (kind, location, reason) = key_parts(finding)?;
        Some(ProblemKey {
            kind,
            location: location.map(str::to_owned),
            reason,
        })
    }

    /// Whether `finding` belongs to this group (without copying anything).
    pub fn matches(&self, finding: &Finding) -> bool {
        key_parts(finding).is_some_and(|(kind, location, reason)| {
            kind == self.kind && location == self.location.as_deref() && reason == self.reason
        })
    }
}

/// A finding's key, borrowed.
fn key_parts(finding: &Finding) -> Option<(&'static str, Option<&str>, Option<LeakReason>)> {
    let spawned_at = || finding.task.as_ref().map(|t| t.spawned_at.as_str());
    let (location, reason) = match &finding.kind {
        FindingKind::SlowPoll { .. } => return None,
        FindingKind::NeverAwaited { created_at, .. } => (Some(created_at.as_str()), None),
        FindingKind::LeakedTask { reason, .. } => (spawned_at(), Some(*reason)),
        FindingKind::TaskPanicked { panicked_at, .. } => {
            (panicked_at.as_deref().or_else(spawned_at), None)
        }
        FindingKind::FindingsDropped { .. } => (None, None),
    };
    Some((finding.kind.name(), location, reason))
}

/// The findings of one kind at one location.
#[derive(Clone, Debug, PartialEq)]
pub struct ProblemGroup {
    /// The finding kind (see [`ProblemKey::kind`]).
    pub kind: &'static str,
    /// Where (see [`ProblemKey::location`]).
    pub location: Option<String>,
    /// Why the tasks leaked (leaked tasks only).
    pub reason: Option<LeakReason>,
    /// How many findings; for dropped findings, how many findings were dropped.
    pub count: u64,
    /// The earliest `time` of its findings, as written (a time that cannot be
    /// read counts as later than any that can).
    pub first_seen: String,
    /// The latest `time` of its findings, as written.
    pub last_seen: String,
    /// Its newest finding (the latest time; of equal times, the last taken),
    /// whose [`Finding::message`] says what happened most recently.
    pub newest: Finding,
    /// The task of the first finding that names one.
    pub example_task: Option<TaskRef>,
    /// A detail of the first finding: the future's name (never awaited) or the
    /// panic message (panicked).
    pub example: Option<String>,
    /// Sequence number of the latest finding taken (see
    /// [`ProblemGroups::taken`]): a later finding of any group has a larger one.
    pub last_taken: u64,
    first_at: Option<SystemTime>,
    last_at: Option<SystemTime>,
}

impl ProblemGroup {
    /// The group's key.
    pub fn key(&self) -> ProblemKey {
        ProblemKey {
            kind: self.kind,
            location: self.location.clone(),
            reason: self.reason,
        }
    }

    /// Whether `key` is this group's.
    pub fn has_key(&self, key: &ProblemKey) -> bool {
        self.kind == key.kind && self.location == key.location && self.reason == key.reason
    }
}

/// The findings other than slow polls, grouped by kind and location. Takes
/// them one at a time ([`ProblemGroups::ingest`]); keeps per group a few
/// fields and one finding, however many findings the group has.
#[derive(Clone, Debug, Default)]
pub struct ProblemGroups {
    groups: Vec<ProblemGroup>,
    index: HashMap<ProblemKey, usize>,
    /// Findings taken.
    taken: u64,
    /// The most groups kept (0: no limit).
    max_groups: usize,
    /// Findings not grouped because `max_groups` groups were already kept.
    ungrouped: u64,
}

impl ProblemGroups {
    /// A model that has seen nothing and groups every location.
    pub fn new() -> ProblemGroups {
        ProblemGroups::default()
    }

    /// A model that keeps at most `max` groups: findings of a new location
    /// past that are counted ([`ProblemGroups::ungrouped`]), not grouped.
    pub fn with_max_groups(max: usize) -> ProblemGroups {
        ProblemGroups {
            max_groups: max,
            ..ProblemGroups::default()
        }
    }

    /// Adds one finding. Returns false, and does nothing, for a slow poll.
    pub fn ingest(&mut self, finding: &Finding) -> bool {
        let Some(key) = ProblemKey::of(finding) else {
            return false;
        };
        self.taken += 1;
        let count = match finding.kind {
            FindingKind::FindingsDropped { count } => count,
            _ => 1,
        };
        let at = parse_time(&finding.time).ok();
        let index = match self.index.get(&key) {
            Some(&index) => index,
            None if self.max_groups > 0 && self.groups.len() >= self.max_groups => {
                self.ungrouped += 1;
                return true;
            }
            None => {
                let example = match &finding.kind {
                    FindingKind::NeverAwaited { name, .. } => Some(name.clone()),
                    FindingKind::TaskPanicked { message, .. } => Some(message.clone()),
                    _ => None,
                };
                self.groups.push(ProblemGroup {
                    kind: key.kind,
                    location: key.location.clone(),
                    reason: key.reason,
                    count: 0,
                    first_seen: finding.time.clone(),
                    last_seen: finding.time.clone(),
                    newest: finding.clone(),
                    example_task: None,
                    example,
                    last_taken: 0,
                    first_at: at,
                    last_at: at,
                });
                self.index.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[index];
        group.count = group.count.saturating_add(count);
        group.last_taken = self.taken;
        if group.example_task.is_none() {
            group.example_task = finding.task.clone();
        }
        // Unreadable times count as later than readable ones; of equal
        // times, the one taken later is the newer.
        let earlier = match (at, group.first_at) {
            (Some(at), Some(first)) => at < first,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier {
            group.first_at = at;
            group.first_seen = finding.time.clone();
        }
        let newer = match (at, group.last_at) {
            (Some(at), Some(last)) => at >= last,
            (None, _) => true,
            (Some(_), None) => false,
        };
        if newer {
            group.last_at = at;
            group.last_seen = finding.time.clone();
            group.newest = finding.clone();
        }
        true
    }

    /// The groups, in the order their keys were first seen.
    pub fn groups(&self) -> &[ProblemGroup] {
        &self.groups
    }

    /// The group of `key`, if there is one.
    pub fn get(&self, key: &ProblemKey) -> Option<&ProblemGroup> {
        self.index.get(key).map(|&i| &self.groups[i])
    }

    /// Findings taken so far (the sequence number of the latest).
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Findings not grouped: their location was new when the most groups
    /// ([`ProblemGroups::with_max_groups`]) were already kept.
    pub fn ungrouped(&self) -> u64 {
        self.ungrouped
    }

    /// The groups, consumed.
    pub fn into_groups(self) -> Vec<ProblemGroup> {
        self.groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u32) -> String {
        format!("2026-11-22T10:00:{second:02}.000Z")
    }

    fn panicked(id: u64, message: &str, where_: Option<&str>, time: String) -> Finding {
        Finding {
            v: 1,
            kind: FindingKind::TaskPanicked {
                message: message.into(),
                panicked_at: where_.map(str::to_owned),
                joined: None,
            },
            time,
            task: Some(TaskRef {
                id,
                name: None,
                spawned_at: "src/spawn.rs:5:5".into(),
            }),
        }
    }

    fn leaked(id: u64, reason: LeakReason, time: String) -> Finding {
        Finding {
            v: 1,
            kind: FindingKind::LeakedTask {
                reason,
                age_ms: 1,
                idle_ms: 1,
                waiting_at: Vec::new(),
                waiting_at_note: None,
            },
            time,
            task: Some(TaskRef {
                id,
                name: Some("poller".into()),
                spawned_at: "src/poll.rs:5:5".into(),
            }),
        }
    }

    #[test]
    fn one_group_per_kind_location_and_reason_with_first_last_and_newest() {
        let mut p = ProblemGroups::new();
        // Out of order in time, as across files.
        p.ingest(&panicked(1, "first", Some("src/p.rs:9:9"), at(5)));
        p.ingest(&panicked(2, "latest", Some("src/p.rs:9:9"), at(8)));
        p.ingest(&panicked(3, "earliest", Some("src/p.rs:9:9"), at(2)));
        p.ingest(&panicked(4, "elsewhere", None, at(3)));
        p.ingest(&leaked(7, LeakReason::LostWaker, at(1)));
        p.ingest(&leaked(8, LeakReason::AliveAtShutdown, at(1)));
        p.ingest(&leaked(9, LeakReason::LostWaker, at(4)));
        let rows: Vec<(&str, Option<&str>, Option<LeakReason>, u64)> = p
            .groups()
            .iter()
            .map(|g| (g.kind, g.location.as_deref(), g.reason, g.count))
            .collect();
        assert_eq!(
            rows,
            [
                ("task_panicked", Some("src/p.rs:9:9"), None, 3),
                ("task_panicked", Some("src/spawn.rs:5:5"), None, 1),
                (
                    "leaked_task",
                    Some("src/poll.rs:5:5"),
                    Some(LeakReason::LostWaker),
                    2
                ),
                (
                    "leaked_task",
                    Some("src/poll.rs:5:5"),
                    Some(LeakReason::AliveAtShutdown),
                    1
                ),
            ]
        );
        let g = &p.groups()[0];
        assert_eq!(
            (g.first_seen.as_str(), g.last_seen.as_str()),
            (at(2).as_str(), at(8).as_str())
        );
        assert!(
            g.newest.message().ends_with(": latest"),
            "{}",
            g.newest.message()
        );
        assert_eq!(g.example.as_deref(), Some("first"));
        assert_eq!(g.example_task.as_ref().map(|t| t.id), Some(1));
        assert_eq!(p.groups()[2].newest.task.as_ref().unwrap().id, 9);
        assert!(p.groups()[2].last_taken > p.groups()[0].last_taken);
        assert_eq!(p.taken(), 7);
        let key = ProblemKey::of(&leaked(1, LeakReason::LostWaker, at(0))).unwrap();
        assert_eq!(p.get(&key).map(|g| g.count), Some(2));
        assert!(p.groups()[2].has_key(&key));
        assert!(key.matches(&leaked(3, LeakReason::LostWaker, at(9))));
        assert!(!key.matches(&leaked(3, LeakReason::AliveAtShutdown, at(9))));
        assert_eq!(p.groups()[2].key(), key);
    }

    #[test]
    fn unreadable_times_count_as_latest_and_dropped_findings_sum() {
        let mut p = ProblemGroups::new();
        p.ingest(&panicked(1, "a", Some("src/p.rs:1:1"), "garbage".into()));
        p.ingest(&panicked(2, "b", Some("src/p.rs:1:1"), at(3)));
        let g = &p.groups()[0];
        assert_eq!(
            (g.first_seen.as_str(), g.last_seen.as_str()),
            (at(3).as_str(), "garbage")
        );
        let dropped = |count| Finding {
            v: 1,
            kind: FindingKind::FindingsDropped { count },
            time: at(1),
            task: None,
        };
        p.ingest(&dropped(5));
        p.ingest(&dropped(7));
        assert_eq!(p.groups()[1].count, 12);
        assert_eq!(p.groups()[1].location, None);
    }

    #[test]
    fn slow_polls_are_not_problems_and_groups_are_bounded() {
        let mut p = ProblemGroups::with_max_groups(2);
        let slow = Finding {
            v: 1,
            kind: FindingKind::SlowPoll {
                duration_ms: 150.0,
                threshold_ms: 100,
                thread: "w".into(),
                stack: vec![],
                stack_unavailable: None,
                stack_truncated: false,
                in_progress: false,
                poll: 1,
            },
            time: at(1),
            task: None,
        };
        assert!(!p.ingest(&slow));
        for i in 0..5 {
            p.ingest(&panicked(i, "x", Some(&format!("src/p.rs:{i}:1")), at(1)));
        }
        p.ingest(&panicked(9, "x", Some("src/p.rs:0:1"), at(2)));
        assert_eq!(p.groups().len(), 2);
        assert_eq!(p.groups()[0].count, 2);
        assert_eq!(p.ungrouped(), 3);
    }
}
