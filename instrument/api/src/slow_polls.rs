//! Slow polls by spawn location: the one model of "which code locations
//! block the runtime, how often, how long, and where", behind both the live
//! view's Slow polls view and `taskscope report`.
//!
//! # Pairing
//!
//! A poll that stays blocked is reported while it runs (`in_progress: true`,
//! maybe several times) and once more when it ends; all those reports are one
//! poll. They are paired by source (a report file's index; the live view has
//! one source), task (id and spawn location) and `poll` number, in any order,
//! except that report files are appended to, so the next run of the same app
//! reuses the same task ids and poll numbers:
//! - a report timed after the poll's final report starts a new poll;
//! - a report whose poll started (its time less its duration) more than
//!   [`SAME_POLL_SLACK`] after the latest report of a poll with no final
//!   report yet starts a new poll: that one was still running then, so it is
//!   not this one (its run ended while it was blocked).
//!
//! Reports with `poll: 0` (an unknown number) are paired by order: in-progress
//! reports of a task belong to its next final report from the same source. A
//! report without a task is a poll of its own.
//!
//! A poll's duration, thread and stack are those of its longest final report,
//! else (still running) of its longest in-progress report. When that report
//! has no stack, the poll takes the stack of its longest in-progress report
//! that has one: the stack captured while the thread was blocked.
//!
//! # Figures
//!
//! Per spawn location ([`SlowPollGroup`]): distinct polls, polls still
//! running, total, longest, median and 99th percentile ([`nearest_rank`]),
//! the most frequent blocking frame ([`blocking_frame`]: the innermost frame
//! of the app's own code) and the longest poll with its stack, or why it has
//! none.
//!
//! # Cost
//!
//! [`SlowPolls::ingest`] does a few hash lookups per report (tasks, thread
//! names, reasons and stacks are stored once however many reports share
//! them) and keeps per poll a few numbers, so a report file of a few hundred
//! MB fits in a small fraction of its size. The figures are computed when
//! asked for, in one pass over the polls of a group (percentiles by
//! selection, not sorting); [`SlowPolls::changed_since`] gives only the
//! groups that took a report since, for a view that keeps its own copy.
//!
//! ```
//! use taskscope_api::slow_polls::SlowPolls;
//! use taskscope_api::{Finding, FindingKind, StackFrame, TaskRef};
//!
//! let task = TaskRef { id: 17, name: Some("handler".into()), spawned_at: "src/main.rs:42:5".into() };
//! let frame = StackFrame { function: "app::load_config".into(), file: None, line: None };
//! let report = |ms: f64, in_progress: bool, stack: Vec<StackFrame>| Finding {
//!     v: 1,
//!     kind: FindingKind::SlowPoll {
//!         duration_ms: ms, threshold_ms: 100, thread: "worker-1".into(), stack,
//!         stack_unavailable: None, stack_truncated: false, in_progress, poll: 3,
//!     },
//!     time: "2026-11-22T10:00:01.000Z".into(),
//!     task: Some(task.clone()),
//! };
//!
//! let mut slow = SlowPolls::new();
//! slow.ingest(0, &report(1000.0, true, vec![frame.clone()])); // still blocked
//! slow.ingest(0, &report(1500.0, false, vec![])); // ended: the same poll
//! let groups: Vec<_> = slow.groups().collect();
//! assert_eq!(groups.len(), 1);
//! let group = &groups[0];
//! assert_eq!((group.location(), group.count, group.unfinished), ("src/main.rs:42:5", 1, 0));
//! assert_eq!((group.max_ms, group.p99_ms), (1500.0, 1500.0));
//! assert_eq!(group.top_frame.as_ref(), Some(&frame));
//! assert_eq!(group.worst.stack, [frame]); // taken while blocked
//! ```

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::findings::{Finding, FindingKind, StackFrame, TaskRef, blocking_frame};
use crate::time::parse_time;

/// What [`SlowPollGroup::location`] says for slow polls reported without a task.
pub const NO_TASK: &str = "(no task)";

/// The slow polls of the tasks spawned at one location, summed up.
#[derive(Clone, Debug, PartialEq)]
pub struct SlowPollGroup {
    /// The tasks' `spawned_at`; `None` for slow polls reported without a task.
    pub spawned_at: Option<String>,
    /// Distinct polls (the reports of one poll count once).
    pub count: u64,
    /// Polls with no final report yet: still running at their last report.
    pub unfinished: u64,
    /// Sum of the polls' durations, in milliseconds (rounded to the
    /// nanosecond, so 153.2 + 100.1 is 253.3).
    pub total_ms: f64,
    /// The longest poll, in milliseconds.
    pub max_ms: f64,
    /// Median duration ([`nearest_rank`]), in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile duration ([`nearest_rank`]), in milliseconds.
    pub p99_ms: f64,
    /// The most frequent blocking frame ([`blocking_frame`] of each poll's
    /// stack); on a tie, the one seen first. `None` when no poll had a stack.
    pub top_frame: Option<StackFrame>,
    /// How many polls were blocked in `top_frame`.
    pub top_frame_polls: u64,
    /// The longest poll (the first of equals), with its stack.
    pub worst: WorstPoll,
    /// The names of the tasks, sorted, without repeats; unnamed tasks are left out.
    pub task_names: Vec<String>,
    /// Sequence number of the latest report of the group ([`SlowPolls::last_report`]
    /// when it came): a later report of any group has a larger one.
    pub last_report: u64,
}

impl SlowPollGroup {
    /// `spawned_at`, or [`NO_TASK`].
    pub fn location(&self) -> &str {
        self.spawned_at.as_deref().unwrap_or(NO_TASK)
    }
}

/// The longest poll of a group, with its stack.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorstPoll {
    /// Its duration (so far, when unfinished), in milliseconds.
    pub duration_ms: f64,
    /// The task, if the reports named one.
    pub task: Option<TaskRef>,
    /// Which poll of the task (0 when the app did not say).
    pub poll: u64,
    /// The worker thread.
    pub thread: String,
    /// Where it was blocked, innermost frame first (may be empty).
    pub stack: Vec<StackFrame>,
    /// Why there is no stack, when a report of the poll said (`None` when
    /// there is a stack).
    pub stack_unavailable: Option<String>,
    /// True when no final report came for it.
    pub unfinished: bool,
}

/// The nearest-rank percentile `p` (0-100) of `values`: the smallest value
/// with at least `p`% of the values at or below it; 0 for no values.
/// Reorders `values` (a selection, linear on average: no sort).
///
/// ```
/// use taskscope_api::slow_polls::nearest_rank;
/// let mut values: Vec<f64> = (1..=200).rev().map(f64::from).collect();
/// assert_eq!(nearest_rank(&mut values, 50), 100.0);
/// assert_eq!(nearest_rank(&mut values, 99), 198.0);
/// assert_eq!(nearest_rank(&mut [], 99), 0.0);
/// ```
pub fn nearest_rank(values: &mut [f64], p: u32) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len();
    let rank = (p.min(100) as usize * n).div_ceil(100).clamp(1, n);
    *values.select_nth_unstable_by(rank - 1, f64::total_cmp).1
}

/// Marks "none" in the id fields below.
const NONE: u32 = u32::MAX;

/// Each distinct value once; ids are indexes.
struct Interner<T: ?Sized> {
    ids: HashMap<Arc<T>, u32>,
    values: Vec<Arc<T>>,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            ids: HashMap::new(),
            values: Vec::new(),
        }
    }
}

impl<T: ?Sized + Eq + Hash> Interner<T> {
    /// The id of `value`, storing it (made by `make`) when new.
    fn intern(&mut self, value: &T, make: impl FnOnce() -> Arc<T>) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = self.values.len() as u32;
        let value = make();
        self.values.push(Arc::clone(&value));
        self.ids.insert(value, id);
        id
    }

    fn get(&self, id: u32) -> &T {
        &self.values[id as usize]
    }
}

/// A task, its strings interned.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct TaskKey {
    id: u64,
    /// Interned name, or [`NONE`].
    name: u32,
    /// Interned `spawned_at`.
    location: u32,
}

/// What one report says about its poll.
#[derive(Clone, Copy)]
struct Report {
    duration_ms: f64,
    /// Interned thread name.
    thread: u32,
    /// Interned stack, or [`NONE`] when empty.
    stack: u32,
}

/// One poll: its reports folded together.
struct Poll {
    /// Interned task, or [`NONE`].
    task: u32,
    /// The poll number the reports gave.
    number: u64,
    /// The longest final report, else the longest in-progress one.
    shown: Report,
    /// Whether a final report came.
    finished: bool,
    /// The stack of the longest in-progress report that had one, or [`NONE`].
    blocked_stack: u32,
    /// That report's duration.
    blocked_ms: f64,
    /// The latest reason a report gave for having no stack, or [`NONE`].
    why: u32,
}

impl Poll {
    fn new(task: u32, number: u64, report: Report, in_progress: bool, why: u32) -> Poll {
        let mut poll = Poll {
            task,
            number,
            shown: report,
            finished: !in_progress,
            blocked_stack: NONE,
            blocked_ms: 0.0,
            why: NONE,
        };
        poll.note(report, in_progress, why);
        poll
    }

    fn add(&mut self, report: Report, in_progress: bool, why: u32) {
        let longer = report.duration_ms > self.shown.duration_ms;
        if in_progress {
            if !self.finished && longer {
                self.shown = report;
            }
        } else if !self.finished || longer {
            self.shown = report;
            self.finished = true;
        }
        self.note(report, in_progress, why);
    }

    /// Keeps the stack taken while blocked, and why a stack is missing.
    fn note(&mut self, report: Report, in_progress: bool, why: u32) {
        if in_progress
            && report.stack != NONE
            && (self.blocked_stack == NONE || report.duration_ms > self.blocked_ms)
        {
            self.blocked_stack = report.stack;
            self.blocked_ms = report.duration_ms;
        }
        if why != NONE {
            self.why = why;
        }
    }

    /// The poll's stack: its shown report's, else the one taken while blocked.
    fn stack(&self) -> u32 {
        if self.shown.stack != NONE {
            self.shown.stack
        } else {
            self.blocked_stack
        }
    }
}

/// Which reports go to one poll: same source, task and poll number.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SlotKey {
    source: u32,
    location: u32,
    task: u64,
    poll: u64,
}

/// How much later than the latest report of an unfinished poll a report of
/// the same task and poll number may say its poll started and still be taken
/// as the same poll: room for reports stamped late on a busy machine and
/// times written to the millisecond.
pub const SAME_POLL_SLACK: Duration = Duration::from_secs(1);

/// The poll that the reports of one [`SlotKey`] go to, for now.
struct Slot {
    /// Index in `SlowPolls::polls`.
    poll: u32,
    state: SlotState,
}

/// Whether a final report came for a slot's poll, and when.
#[derive(Clone, Copy)]
enum SlotState {
    /// No final report yet: the latest time of its reports (`None` while
    /// none could be read).
    Open(Option<SystemTime>),
    /// The latest final report's time.
    Closed(SystemTime),
    /// A final report's time could not be read.
    ClosedUnreadable,
}

impl Slot {
    fn new(poll: usize) -> Slot {
        Slot {
            poll: poll as u32,
            state: SlotState::Open(None),
        }
    }

    /// Whether a report with this poll number, time and duration belongs to
    /// this poll. (A time that can't be read is taken as the same run.)
    fn takes(&self, poll: u64, time: Option<SystemTime>, duration_ms: f64) -> bool {
        match (self.state, time) {
            // The report's poll started after the latest report of this one,
            // which was then still running: this one was left unfinished (its
            // run ended while it was blocked) and a later run reuses the task
            // id and poll number.
            (SlotState::Open(Some(latest)), Some(time)) => {
                let started = Duration::try_from_secs_f64(duration_ms / 1000.0)
                    .ok()
                    .and_then(|d| time.checked_sub(d))
                    .unwrap_or(time);
                started <= latest + SAME_POLL_SLACK
            }
            (SlotState::Open(_), _) => true,
            // Without a poll number, a final report is the poll's last word.
            _ if poll == 0 => false,
            // A report from after the final one is a later run's poll.
            (SlotState::Closed(closed), Some(time)) => time <= closed,
            (SlotState::Closed(_) | SlotState::ClosedUnreadable, _) => true,
        }
    }

    /// Notes a report taken.
    fn note(&mut self, time: Option<SystemTime>, in_progress: bool) {
        self.state = match (self.state, time) {
            (SlotState::Open(latest), time) if in_progress => SlotState::Open(latest.max(time)),
            (SlotState::Open(_), Some(time)) => SlotState::Closed(time),
            (SlotState::Closed(closed), Some(time)) if !in_progress => {
                SlotState::Closed(closed.max(time))
            }
            (state, Some(_)) => state,
            (state, None) if in_progress => state,
            (_, None) => SlotState::ClosedUnreadable,
        };
    }
}

/// The polls of one spawn location.
struct Group {
    /// Interned `spawned_at`, or [`NONE`] for reports without a task.
    location: u32,
    /// Indexes in `SlowPolls::polls`, in the order the polls were first reported.
    polls: Vec<u32>,
    /// Interned names of the tasks.
    names: HashSet<u32>,
    /// Sequence number of the latest report.
    last_report: u64,
}

/// Slow polls by spawn location: takes slow-poll findings one at a time
/// ([`SlowPolls::ingest`]) and gives the figures of each location
/// ([`SlowPolls::groups`]). See the [module docs](self) for the rules.
#[derive(Default)]
pub struct SlowPolls {
    /// Locations, task names, thread names and stack-unavailable reasons.
    strings: Interner<str>,
    stacks: Interner<[StackFrame]>,
    /// The blocking frame of each interned stack, interned in `frames`.
    stack_tops: Vec<u32>,
    frames: Interner<StackFrame>,
    tasks: HashMap<TaskKey, u32>,
    task_list: Vec<TaskKey>,
    polls: Vec<Poll>,
    slots: HashMap<SlotKey, Slot>,
    groups: Vec<Group>,
    /// Interned location (or [`NONE`]) -> index in `groups`.
    group_index: HashMap<u32, u32>,
    /// Slow-poll reports ingested.
    reports: u64,
}

impl fmt::Debug for SlowPolls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlowPolls")
            .field("groups", &self.groups.len())
            .field("polls", &self.polls.len())
            .field("reports", &self.reports)
            .finish_non_exhaustive()
    }
}

impl SlowPolls {
    /// A model that has seen nothing.
    pub fn new() -> SlowPolls {
        SlowPolls::default()
    }

    /// Adds one finding from `source` (the index of the report file it was
    /// read from; any one number for a single stream, such as the live view's).
    /// Returns false, and does nothing, when it is not a slow poll.
    pub fn ingest(&mut self, source: u32, finding: &Finding) -> bool {
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
        self.reports += 1;
        let (task, location, key) = match &finding.task {
            Some(t) => {
                let location = self.intern_str(&t.spawned_at);
                let name = t.name.as_deref().map_or(NONE, |n| self.intern_str(n));
                let task = self.intern_task(TaskKey {
                    id: t.id,
                    name,
                    location,
                });
                let key = SlotKey {
                    source,
                    location,
                    task: t.id,
                    poll: *poll,
                };
                (task, location, Some(key))
            }
            None => (NONE, NONE, None),
        };
        let group = self.group(location);
        if task != NONE {
            let name = self.task_list[task as usize].name;
            if name != NONE {
                self.groups[group].names.insert(name);
            }
        }
        self.groups[group].last_report = self.reports;

        let report = Report {
            duration_ms: *duration_ms,
            thread: self.intern_str(thread),
            stack: self.intern_stack(stack),
        };
        let why = stack_unavailable
            .as_deref()
            .map_or(NONE, |why| self.intern_str(why));
        let new = self.polls.len();
        let index = match key {
            None => new,
            Some(key) => {
                let time = parse_time(&finding.time).ok();
                let slot = match self.slots.entry(key) {
                    Entry::Occupied(slot) if slot.get().takes(*poll, time, *duration_ms) => {
                        slot.into_mut()
                    }
                    Entry::Occupied(mut slot) => {
                        slot.insert(Slot::new(new));
                        slot.into_mut()
                    }
                    Entry::Vacant(slot) => slot.insert(Slot::new(new)),
                };
                slot.note(time, *in_progress);
                slot.poll as usize
            }
        };
        if index == new {
            self.polls
                .push(Poll::new(task, *poll, report, *in_progress, why));
            self.groups[group].polls.push(new as u32);
        } else {
            self.polls[index].add(report, *in_progress, why);
        }
        true
    }

    /// Distinct polls so far, all locations together.
    pub fn poll_count(&self) -> usize {
        self.polls.len()
    }

    /// Number of spawn locations (groups) so far.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Slow-poll reports ingested so far: the sequence number of the latest
    /// (see [`SlowPollGroup::last_report`]).
    pub fn last_report(&self) -> u64 {
        self.reports
    }

    /// Every group's figures, in the order their locations were first reported.
    pub fn groups(&self) -> impl Iterator<Item = SlowPollGroup> + '_ {
        self.groups.iter().map(|g| self.summarize(g))
    }

    /// The figures of the groups that took a report after the report numbered
    /// `report` (every group for 0), each with its index in [`SlowPolls::groups`]'
    /// order. A view keeping a copy of the groups updates it with this after
    /// each batch of findings, recomputing only what changed.
    pub fn changed_since(&self, report: u64) -> impl Iterator<Item = (usize, SlowPollGroup)> + '_ {
        self.groups
            .iter()
            .enumerate()
            .filter(move |(_, g)| g.last_report > report)
            .map(|(i, g)| (i, self.summarize(g)))
    }

    fn intern_str(&mut self, text: &str) -> u32 {
        self.strings.intern(text, || Arc::from(text))
    }

    fn intern_task(&mut self, key: TaskKey) -> u32 {
        *self.tasks.entry(key).or_insert_with(|| {
            self.task_list.push(key);
            (self.task_list.len() - 1) as u32
        })
    }

    /// The stack's id ([`NONE`] when empty), noting its blocking frame when new.
    fn intern_stack(&mut self, stack: &[StackFrame]) -> u32 {
        let Some(top) = blocking_frame(stack) else {
            return NONE;
        };
        let id = self.stacks.intern(stack, || Arc::from(stack));
        if id as usize == self.stack_tops.len() {
            let top = self.frames.intern(top, || Arc::new(top.clone()));
            self.stack_tops.push(top);
        }
        id
    }

    /// The group of a location ([`NONE`]: no task), made when new.
    fn group(&mut self, location: u32) -> usize {
        let groups = &mut self.groups;
        *self.group_index.entry(location).or_insert_with(|| {
            groups.push(Group {
                location,
                polls: Vec::new(),
                names: HashSet::new(),
                last_report: 0,
            });
            (groups.len() - 1) as u32
        }) as usize
    }

    fn task(&self, task: u32) -> Option<TaskRef> {
        let key = self.task_list.get(task as usize)?;
        Some(TaskRef {
            id: key.id,
            name: (key.name != NONE).then(|| self.strings.get(key.name).to_owned()),
            spawned_at: self.strings.get(key.location).to_owned(),
        })
    }

    /// The figures of one group (which has at least one poll), in one pass
    /// over its polls.
    fn summarize(&self, group: &Group) -> SlowPollGroup {
        let mut durations = Vec::with_capacity(group.polls.len());
        let mut total = 0.0;
        let mut unfinished = 0;
        let mut worst = group.polls[0];
        // Blocking frames in the order first seen, with their counts.
        let mut frames: Vec<(u32, u64)> = Vec::new();
        let mut frame_index: HashMap<u32, usize> = HashMap::new();
        for &index in &group.polls {
            let poll = &self.polls[index as usize];
            let duration = poll.shown.duration_ms;
            durations.push(duration);
            total += duration;
            if !poll.finished {
                unfinished += 1;
            }
            if duration > self.polls[worst as usize].shown.duration_ms {
                worst = index;
            }
            let stack = poll.stack();
            if stack != NONE {
                let frame = self.stack_tops[stack as usize];
                let next = frames.len();
                let i = *frame_index.entry(frame).or_insert(next);
                if i == next {
                    frames.push((frame, 0));
                }
                frames[i].1 += 1;
            }
        }
        let mut top: Option<(u32, u64)> = None;
        for (frame, polls) in frames {
            if top.is_none_or(|(_, best)| polls > best) {
                top = Some((frame, polls));
            }
        }
        let mut task_names: Vec<String> = group
            .names
            .iter()
            .map(|&name| self.strings.get(name).to_owned())
            .collect();
        task_names.sort_unstable();

        let poll = &self.polls[worst as usize];
        let stack = poll.stack();
        SlowPollGroup {
            spawned_at: (group.location != NONE)
                .then(|| self.strings.get(group.location).to_owned()),
            count: group.polls.len() as u64,
            unfinished,
            total_ms: (total * 1e6).round() / 1e6,
            max_ms: poll.shown.duration_ms,
            p50_ms: nearest_rank(&mut durations, 50),
            p99_ms: nearest_rank(&mut durations, 99),
            top_frame: top.map(|(frame, _)| self.frames.get(frame).clone()),
            top_frame_polls: top.map_or(0, |(_, polls)| polls),
            worst: WorstPoll {
                duration_ms: poll.shown.duration_ms,
                task: self.task(poll.task),
                poll: poll.number,
                thread: self.strings.get(poll.shown.thread).to_owned(),
                stack: if stack == NONE {
                    Vec::new()
                } else {
                    self.stacks.get(stack).to_vec()
                },
                stack_unavailable: (stack == NONE && poll.why != NONE)
                    .then(|| self.strings.get(poll.why).to_owned()),
                unfinished: !poll.finished,
            },
            task_names,
            last_report: group.last_report,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A slow-poll report timed `second` seconds after 10:00.
    fn slow_at(
        task: Option<TaskRef>,
        poll: u64,
        ms: f64,
        in_progress: bool,
        stack: &[StackFrame],
        second: u32,
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
            time: format!("2026-11-22T10:00:{second:02}.000Z"),
            task,
        }
    }

    fn slow(
        task: Option<TaskRef>,
        poll: u64,
        ms: f64,
        in_progress: bool,
        stack: &[StackFrame],
    ) -> Finding {
        slow_at(task, poll, ms, in_progress, stack, 0)
    }

    /// The groups of `findings`, all from source 0.
    fn groups(findings: &[Finding]) -> Vec<SlowPollGroup> {
        let mut model = SlowPolls::new();
        for finding in findings {
            model.ingest(0, finding);
        }
        model.groups().collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let rank = |values: &[f64], p| nearest_rank(&mut values.to_vec(), p);
        assert_eq!(rank(&[], 50), 0.0);
        assert_eq!(rank(&[7.0], 50), 7.0);
        assert_eq!(rank(&[7.0], 99), 7.0);
        assert_eq!(rank(&[4.0, 1.0, 3.0, 2.0], 50), 2.0);
        assert_eq!(rank(&[5.0, 1.0, 4.0, 2.0, 3.0], 50), 3.0);
        assert_eq!(rank(&[1.0, 2.0, 3.0, 4.0], 99), 4.0);
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(rank(&hundred, 50), 50.0);
        assert_eq!(rank(&hundred, 99), 99.0);
        let two_hundred: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(rank(&two_hundred, 99), 198.0);
        assert_eq!(rank(&two_hundred, 100), 200.0);
    }

    #[test]
    fn groups_by_spawn_location_with_figures() {
        let a = "src/a.rs:1:1";
        let b = "src/b.rs:2:2";
        let sleep = frame("std::thread::sleep", 10);
        let read = frame("std::fs::read", 20);
        let load = frame("app::load", 30);
        let groups = groups(&[
            slow(
                task(1, "one", a),
                1,
                150.0,
                false,
                &[sleep.clone(), load.clone()],
            ),
            slow(
                task(2, "two", b),
                1,
                400.0,
                false,
                std::slice::from_ref(&read),
            ),
            slow(
                task(1, "one", a),
                2,
                120.0,
                false,
                std::slice::from_ref(&sleep),
            ),
            slow(
                task(3, "three", a),
                1,
                300.0,
                false,
                &[read.clone(), load.clone()],
            ),
            slow(task(3, "three", a), 2, 110.0, false, &[]),
        ]);
        assert_eq!(groups.len(), 2);
        let first = &groups[0];
        assert_eq!(first.spawned_at.as_deref(), Some(a));
        assert_eq!((first.count, first.unfinished), (4, 0));
        assert_eq!(first.total_ms, 680.0);
        assert_eq!(first.max_ms, 300.0);
        assert_eq!(first.p50_ms, 120.0);
        assert_eq!(first.p99_ms, 300.0);
        // The innermost frame of the app's own code; all-plumbing stacks count
        // by their innermost frame.
        assert_eq!(first.top_frame.as_ref(), Some(&load));
        assert_eq!(first.top_frame_polls, 2);
        assert_eq!(first.worst.stack, [read.clone(), load.clone()]);
        assert_eq!(first.worst.task.as_ref().unwrap().id, 3);
        assert_eq!(
            (first.worst.poll, first.worst.thread.as_str()),
            (1, "worker-1")
        );
        assert_eq!(first.task_names, ["one", "three"]);
        assert_eq!(first.last_report, 5);
        let second = &groups[1];
        assert_eq!(second.location(), b);
        assert_eq!((second.count, second.total_ms), (1, 400.0));
        assert_eq!(second.top_frame.as_ref(), Some(&read));
        assert_eq!(second.last_report, 2);
    }

    #[test]
    fn in_progress_reports_and_the_final_one_are_one_poll() {
        let at = "src/a.rs:1:1";
        let blocked = [frame("std::thread::sleep", 10), frame("app::handler", 30)];
        let groups = groups(&[
            // Poll 4 of task 1: two warnings while blocked, then the final report
            // (whose stack is empty: the one taken while blocked is used).
            slow(task(1, "h", at), 4, 100.0, true, &blocked),
            slow(task(1, "h", at), 4, 200.0, true, &blocked[1..]),
            slow(task(1, "h", at), 4, 250.5, false, &[]),
            // Poll 5 of task 1 never ended: its longest in-progress report counts.
            slow(task(1, "h", at), 5, 100.0, true, &[]),
            slow(task(1, "h", at), 5, 300.0, true, &[]),
        ]);
        let group = &groups[0];
        assert_eq!((group.count, group.unfinished), (2, 1));
        assert_eq!(group.total_ms, 550.5);
        assert_eq!(group.max_ms, 300.0);
        assert!(group.worst.unfinished);
        assert!(group.worst.stack.is_empty());
        assert_eq!(group.top_frame, Some(frame("app::handler", 30)));
        assert_eq!(group.top_frame_polls, 1);

        // Without the unfinished poll, the worst is poll 4, with the stack of
        // its longest in-progress report.
        let groups = self::groups(&[
            slow(task(1, "h", at), 4, 100.0, true, &blocked),
            slow(task(1, "h", at), 4, 200.0, true, &blocked[1..]),
            slow(task(1, "h", at), 4, 250.5, false, &[]),
        ]);
        let worst = &groups[0].worst;
        assert_eq!(
            (worst.duration_ms, worst.poll, worst.unfinished),
            (250.5, 4, false)
        );
        assert_eq!(worst.stack, &blocked[1..]);
    }

    #[test]
    fn sources_are_apart() {
        // The same task id and poll from another source (file) is another poll.
        let at = "src/a.rs:1:1";
        let mut model = SlowPolls::new();
        model.ingest(0, &slow(task(1, "h", at), 4, 150.0, false, &[]));
        model.ingest(1, &slow(task(1, "h", at), 4, 150.0, false, &[]));
        model.ingest(1, &slow(task(1, "h", at), 4, 150.0, false, &[]));
        assert_eq!(model.groups().next().unwrap().count, 2);
        assert_eq!(model.poll_count(), 2);
    }

    #[test]
    fn unnumbered_polls_pair_in_order_and_taskless_ones_stand_alone() {
        let at = "src/a.rs:1:1";
        // Same times: with no poll number, only the order tells the polls apart.
        let groups = groups(&[
            slow(task(1, "h", at), 0, 100.0, true, &[]),
            slow(task(1, "h", at), 0, 180.0, false, &[]),
            slow(task(1, "h", at), 0, 120.0, false, &[]),
            slow(task(1, "h", at), 0, 100.0, true, &[]),
            slow(None, 0, 500.0, true, &[]),
            slow(None, 0, 600.0, false, &[]),
        ]);
        let [numbered, none] = &groups[..] else {
            panic!("{groups:?}")
        };
        assert_eq!(
            (none.spawned_at.as_deref(), none.location()),
            (None, NO_TASK)
        );
        assert_eq!((none.count, none.total_ms, none.unfinished), (2, 1100.0, 1));
        assert_eq!(none.worst.task, None);
        assert!(none.task_names.is_empty());
        assert_eq!((numbered.count, numbered.total_ms), (3, 400.0));
        assert_eq!(numbered.unfinished, 1);
    }

    #[test]
    fn a_later_run_appended_to_the_file_reuses_ids_but_not_polls() {
        let at = "src/a.rs:1:1";
        let other_at = "src/b.rs:2:2";
        let groups = groups(&[
            // Run 1: task 4, poll 1.
            slow_at(task(4, "h", at), 1, 100.0, true, &[], 1),
            slow_at(task(4, "h", at), 1, 300.0, false, &[], 2),
            // Run 2, same app: task 4, poll 1 again, later.
            slow_at(task(4, "h", at), 1, 100.0, true, &[], 5),
            slow_at(task(4, "h", at), 1, 200.0, false, &[], 6),
            // Run 3, another app: task 4, poll 1, spawned elsewhere.
            slow_at(task(4, "h", other_at), 1, 150.0, false, &[], 4),
        ]);
        let [a, b] = &groups[..] else {
            panic!("{groups:?}")
        };
        assert_eq!(
            (a.spawned_at.as_deref(), a.count, a.total_ms),
            (Some(at), 2, 500.0)
        );
        assert_eq!(
            (b.spawned_at.as_deref(), b.count, b.total_ms),
            (Some(other_at), 1, 150.0)
        );
    }

    #[test]
    fn an_unfinished_poll_of_an_earlier_run_is_not_the_next_runs() {
        let at = "src/a.rs:1:1";
        let groups = groups(&[
            // Run 1 ends while poll 2 of task 3 is blocked.
            slow_at(task(3, "h", at), 2, 900.0, true, &[], 13),
            // Run 2 (same file, later): task 3, poll 2 again, started at 10:00:44.84.
            slow_at(task(3, "h", at), 2, 160.0, false, &[], 45),
            // Poll 4 reported every second while blocked, then ended: one poll.
            slow_at(task(3, "h", at), 4, 100.0, true, &[], 50),
            slow_at(task(3, "h", at), 4, 1100.0, true, &[], 51),
            slow_at(task(3, "h", at), 4, 2100.0, true, &[], 52),
            slow_at(task(3, "h", at), 4, 2150.0, false, &[], 52),
        ]);
        let group = &groups[0];
        assert_eq!((group.count, group.unfinished), (3, 1));
        assert_eq!(group.total_ms, 900.0 + 160.0 + 2150.0);
    }

    #[test]
    fn reports_of_one_poll_pair_in_any_order() {
        let at = "src/a.rs:1:1";
        let groups = groups(&[
            slow_at(task(4, "h", at), 7, 250.0, false, &[], 3),
            slow_at(task(4, "h", at), 7, 120.0, true, &[], 2),
            slow_at(task(4, "h", at), 7, 250.0, false, &[], 3),
        ]);
        let group = &groups[0];
        assert_eq!(
            (group.count, group.unfinished, group.total_ms),
            (1, 0, 250.0)
        );
    }

    #[test]
    fn a_missing_stack_says_why() {
        let at = "src/a.rs:1:1";
        let mut report = slow(task(1, "h", at), 1, 150.0, true, &[]);
        if let FindingKind::SlowPoll {
            stack_unavailable, ..
        } = &mut report.kind
        {
            *stack_unavailable = Some("the thread could not be signalled".into());
        }
        let groups = groups(&[report, slow(task(1, "h", at), 1, 180.0, false, &[])]);
        let worst = &groups[0].worst;
        assert_eq!(
            worst.stack_unavailable.as_deref(),
            Some("the thread could not be signalled")
        );
        assert_eq!(groups[0].top_frame, None);
    }

    #[test]
    fn totals_do_not_show_float_noise() {
        let at = "src/a.rs:1:1";
        let groups = groups(&[
            slow(task(1, "h", at), 1, 153.2, false, &[]),
            slow(task(1, "h", at), 2, 100.1, false, &[]),
        ]);
        assert_eq!(groups[0].total_ms, 253.3);
    }

    #[test]
    fn changed_since_gives_only_the_groups_that_took_a_report() {
        let mut model = SlowPolls::new();
        assert!(!model.ingest(
            0,
            &Finding::new(FindingKind::FindingsDropped { count: 1 }, None)
        ));
        model.ingest(0, &slow(task(1, "a", "src/a.rs:1:1"), 1, 150.0, false, &[]));
        model.ingest(0, &slow(task(2, "b", "src/b.rs:1:1"), 1, 150.0, false, &[]));
        assert_eq!(model.changed_since(0).count(), 2);
        let seen = model.last_report();
        assert_eq!(seen, 2);
        assert_eq!(model.changed_since(seen).count(), 0);
        model.ingest(0, &slow(task(2, "b", "src/b.rs:1:1"), 2, 170.0, false, &[]));
        let changed: Vec<(usize, SlowPollGroup)> = model.changed_since(seen).collect();
        assert_eq!(changed.len(), 1);
        assert_eq!((changed[0].0, changed[0].1.count), (1, 2));
        assert_eq!(model.group_count(), 2);
    }
}
