//! Aggregation: slow polls by spawn location, the other findings by kind and
//! location.
//!
//! A poll that stays blocked is reported while it runs (`in_progress: true`, maybe
//! several times) and once more when it ends; all those reports are one poll. They
//! are paired by file, task (id and spawn location) and `poll` number, in any
//! order, except that a report timed after the poll's final report starts a new
//! poll: report files are appended to, so the next run of the same app reuses
//! the same task ids and poll numbers. Reports with `poll: 0` (an unknown
//! number) are paired by order: in-progress reports of a task belong to its next
//! final report in the same file.
//!
//! Findings are added one at a time as they are read ([`Aggregator`]), and only
//! what the summary needs is kept: per poll a few numbers, with tasks, threads and
//! stacks stored once however many reports share them. A report of a few hundred
//! MB fits in a small fraction of its size.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::SystemTime;

use taskscope_api::{Finding, FindingKind, LeakReason, StackFrame, TaskRef};

use super::parse::Entry;
use super::window::parse_time;

/// Everything the report shows.
#[derive(Debug, Default)]
pub struct Summary {
    /// Slow polls by spawn location, longest total first.
    pub slow_polls: Vec<SlowPollGroup>,
    /// The other findings by kind and location.
    pub other: Vec<OtherGroup>,
}

/// The slow polls of the tasks spawned at one location.
#[derive(Clone, Debug, PartialEq)]
pub struct SlowPollGroup {
    /// The tasks' `spawned_at`; `None` for slow polls reported without a task.
    pub spawned_at: Option<String>,
    /// Distinct polls (the reports of one poll count once).
    pub count: u64,
    /// Polls reported only while still running (no final report was read).
    pub unfinished: u64,
    /// Sum of the polls' durations, in milliseconds.
    pub total_ms: f64,
    /// The longest poll, in milliseconds.
    pub max_ms: f64,
    /// Median duration (nearest rank), in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile duration (nearest rank), in milliseconds.
    pub p99_ms: f64,
    /// The most frequent innermost frame, as `function (file:line)`.
    pub top_frame: Option<String>,
    /// How many polls were blocked in `top_frame`.
    pub top_frame_polls: u64,
    /// The longest poll.
    pub worst: WorstPoll,
    /// The names of the tasks, sorted, without repeats; unnamed tasks are left out.
    pub task_names: Vec<String>,
}

/// The longest poll of a group, with its stack.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorstPoll {
    /// Its duration, in milliseconds.
    pub duration_ms: f64,
    /// The task, if the report named one.
    pub task: Option<TaskRef>,
    /// The worker thread.
    pub thread: String,
    /// Where it was blocked, innermost frame first (may be empty).
    pub stack: Vec<StackFrame>,
    /// Why there is no stack, when the report says.
    pub stack_unavailable: Option<String>,
    /// True when no final report was read for it.
    pub unfinished: bool,
}

/// The findings of one kind at one location.
#[derive(Clone, Debug, PartialEq)]
pub struct OtherGroup {
    /// The finding kind, one of [`FindingKind::NAMES`].
    pub kind: &'static str,
    /// `created_at` (never awaited), the task's `spawned_at` (leaked), the panic's
    /// location or else the task's `spawned_at` (panicked); `None` when unknown and
    /// for dropped findings.
    pub location: Option<String>,
    /// Why the tasks leaked (leaked tasks only).
    pub reason: Option<LeakReason>,
    /// How many findings; for dropped findings, how many findings were dropped.
    pub count: u64,
    /// The task of the first finding that names one.
    pub example_task: Option<TaskRef>,
    /// A detail of the first finding: the future's name (never awaited) or the
    /// panic message (panicked).
    pub example: Option<String>,
}

/// Each distinct value once; ids are indexes.
struct Interner<T> {
    ids: HashMap<Rc<T>, u32>,
    values: Vec<Rc<T>>,
}

impl<T: Eq + Hash> Interner<T> {
    fn new() -> Self {
        Interner {
            ids: HashMap::new(),
            values: Vec::new(),
        }
    }

    fn intern(&mut self, value: T) -> u32 {
        if let Some(&id) = self.ids.get(&value) {
            return id;
        }
        let id = self.values.len() as u32;
        let value = Rc::new(value);
        self.values.push(Rc::clone(&value));
        self.ids.insert(value, id);
        id
    }

    fn get(&self, id: u32) -> &T {
        &self.values[id as usize]
    }
}

/// `TaskRef` and `StackFrame` don't derive `Hash`; this key does it for them.
#[derive(PartialEq, Eq)]
struct Key<T>(T);

impl Hash for Key<TaskRef> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0.id, &self.0.name, &self.0.spawned_at).hash(state);
    }
}

impl Hash for Key<Vec<StackFrame>> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for frame in &self.0 {
            (&frame.function, &frame.file, frame.line).hash(state);
        }
    }
}

/// Marks "none" in the id fields of [`Report`].
const NONE: u32 = u32::MAX;

/// One slow-poll report, its strings and stack interned.
#[derive(Clone, Copy)]
struct Report {
    duration_ms: f64,
    /// Interned `TaskRef`, or [`NONE`].
    task: u32,
    thread: u32,
    /// Interned stack (possibly empty).
    stack: u32,
    /// Interned reason, or [`NONE`].
    stack_unavailable: u32,
    has_stack: bool,
}

/// The reports of one poll: the final one and the longest in-progress ones.
#[derive(Default)]
struct Poll {
    last: Option<Report>,
    running: Option<Report>,
    running_with_stack: Option<Report>,
}

impl Poll {
    fn add(&mut self, report: Report, in_progress: bool) {
        let keep_longest = |slot: &mut Option<Report>| {
            if slot.is_none_or(|r| report.duration_ms > r.duration_ms) {
                *slot = Some(report);
            }
        };
        if !in_progress {
            keep_longest(&mut self.last);
        } else {
            keep_longest(&mut self.running);
            if report.has_stack {
                keep_longest(&mut self.running_with_stack);
            }
        }
    }

    /// Duration and details of the final report, else of the longest in-progress
    /// one; the stack from the first of these that has one, else from the longest
    /// in-progress report that has one (taken while the thread was blocked).
    /// Also whether the poll is unfinished (no final report).
    fn resolve(&self) -> Option<(Report, bool)> {
        let mut report = self.last.or(self.running)?;
        if !report.has_stack
            && let Some(with_stack) = self.running_with_stack
        {
            report.stack = with_stack.stack;
            report.has_stack = true;
            report.stack_unavailable = NONE;
        }
        Some((report, self.last.is_none()))
    }
}

/// The poll that the reports of one (file, task, poll number) go to.
struct Slot {
    /// Index in `Aggregator::polls`.
    index: usize,
    /// `Some` once a final report came: the latest final report's time (`None`
    /// inside when a time can't be read).
    closed: Option<Option<SystemTime>>,
}

impl Slot {
    /// Whether a report with this poll number and time belongs to this poll.
    fn takes(&self, poll: u64, time: &str) -> bool {
        match self.closed {
            None => true,
            // Without a poll number, a final report is the poll's last word.
            Some(_) if poll == 0 => false,
            // A report from after the final one is a later run's poll.
            // (A time that can't be read is taken as the same run.)
            Some(Some(closed)) => parse_time(time).map_or(true, |t| t <= closed),
            Some(None) => true,
        }
    }

    /// Notes a final report.
    fn close(&mut self, time: &str) {
        let time = parse_time(time).ok();
        self.closed = Some(match self.closed {
            None => time,
            Some(closed) => closed.zip(time).map(|(a, b)| a.max(b)),
        });
    }
}

/// Takes findings one at a time, then gives the [`Summary`].
pub struct Aggregator {
    tasks: Interner<Key<TaskRef>>,
    /// Thread names and stack-unavailable reasons.
    strings: Interner<String>,
    stacks: Interner<Key<Vec<StackFrame>>>,
    polls: Vec<Poll>,
    /// (file, interned task, poll number) -> the poll its reports go to.
    slots: HashMap<(usize, u32, u64), Slot>,
    other: Vec<OtherGroup>,
    other_index: HashMap<(&'static str, Option<String>, Option<LeakReason>), usize>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator::new()
    }
}

impl Aggregator {
    /// An aggregator that has seen nothing.
    pub fn new() -> Aggregator {
        Aggregator {
            tasks: Interner::new(),
            strings: Interner::new(),
            stacks: Interner::new(),
            polls: Vec::new(),
            slots: HashMap::new(),
            other: Vec::new(),
            other_index: HashMap::new(),
        }
    }

    /// Counts one finding.
    pub fn add(&mut self, entry: Entry) {
        let Entry { finding, file, .. } = entry;
        let Finding {
            kind, task, time, ..
        } = finding;
        match kind {
            FindingKind::SlowPoll {
                duration_ms,
                thread,
                stack,
                stack_unavailable,
                in_progress,
                poll,
                ..
            } => {
                let task = task.map_or(NONE, |t| self.tasks.intern(Key(t)));
                let index = self.poll_index((file, task, poll), in_progress, &time);
                let report = Report {
                    duration_ms,
                    task,
                    thread: self.strings.intern(thread),
                    has_stack: !stack.is_empty(),
                    stack: self.stacks.intern(Key(stack)),
                    stack_unavailable: stack_unavailable.map_or(NONE, |s| self.strings.intern(s)),
                };
                self.polls[index].add(report, in_progress);
            }
            kind => self.add_other(kind, task),
        }
    }

    /// Which poll a report belongs to (file, interned task, poll number), making
    /// a new one when the report starts one.
    fn poll_index(&mut self, key: (usize, u32, u64), in_progress: bool, time: &str) -> usize {
        let new = self.polls.len();
        let index = match self.slots.get_mut(&key) {
            _ if key.1 == NONE => new,
            Some(slot) if slot.takes(key.2, time) => {
                if !in_progress {
                    slot.close(time);
                }
                slot.index
            }
            _ => {
                let mut slot = Slot {
                    index: new,
                    closed: None,
                };
                if !in_progress {
                    slot.close(time);
                }
                self.slots.insert(key, slot);
                new
            }
        };
        if index == new {
            self.polls.push(Poll::default());
        }
        index
    }

    fn add_other(&mut self, kind: FindingKind, task: Option<TaskRef>) {
        let name = kind.name();
        let spawned_at = || task.as_ref().map(|t| t.spawned_at.clone());
        let (location, reason, example, count) = match kind {
            FindingKind::NeverAwaited { name, created_at } => {
                (Some(created_at), None, Some(name), 1)
            }
            FindingKind::LeakedTask { reason, .. } => (spawned_at(), Some(reason), None, 1),
            FindingKind::TaskPanicked {
                message,
                panicked_at,
                ..
            } => (panicked_at.or_else(spawned_at), None, Some(message), 1),
            FindingKind::FindingsDropped { count } => (None, None, None, count),
            FindingKind::SlowPoll { .. } => return,
        };
        let key = (name, location, reason);
        let index = match self.other_index.get(&key) {
            Some(&index) => index,
            None => {
                self.other.push(OtherGroup {
                    kind: name,
                    location: key.1.clone(),
                    reason,
                    count: 0,
                    example_task: None,
                    example,
                });
                self.other_index.insert(key, self.other.len() - 1);
                self.other.len() - 1
            }
        };
        let group = &mut self.other[index];
        group.count = group.count.saturating_add(count);
        if group.example_task.is_none() {
            group.example_task = task;
        }
    }

    /// The summary of everything added.
    pub fn finish(self) -> Summary {
        let mut groups: Vec<Vec<(Report, bool)>> = Vec::new();
        let mut by_location: HashMap<Option<&str>, usize> = HashMap::new();
        for poll in &self.polls {
            let Some((report, unfinished)) = poll.resolve() else {
                continue;
            };
            let location = self.task(report.task).map(|t| t.spawned_at.as_str());
            let index = *by_location.entry(location).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[index].push((report, unfinished));
        }
        let mut slow_polls: Vec<SlowPollGroup> = groups
            .iter()
            .map(|polls| self.slow_poll_group(polls))
            .collect();
        slow_polls.sort_by(|a, b| {
            b.total_ms
                .total_cmp(&a.total_ms)
                .then_with(|| a.spawned_at.cmp(&b.spawned_at))
        });

        let mut other = self.other;
        let rank = |kind: &str| FindingKind::NAMES.iter().position(|k| *k == kind);
        other.sort_by(|a, b| {
            rank(a.kind)
                .cmp(&rank(b.kind))
                .then(b.count.cmp(&a.count))
                .then_with(|| a.location.cmp(&b.location))
        });
        Summary { slow_polls, other }
    }

    fn task(&self, id: u32) -> Option<&TaskRef> {
        (id != NONE).then(|| &self.tasks.get(id).0)
    }

    /// The statistics of one location's polls (at least one).
    fn slow_poll_group(&self, polls: &[(Report, bool)]) -> SlowPollGroup {
        let mut durations: Vec<f64> = polls.iter().map(|(r, _)| r.duration_ms).collect();
        durations.sort_by(f64::total_cmp);
        let total: f64 = durations.iter().sum();

        let (mut worst, mut worst_unfinished) = polls[0];
        for &(report, unfinished) in &polls[1..] {
            if report.duration_ms > worst.duration_ms {
                (worst, worst_unfinished) = (report, unfinished);
            }
        }

        // The most frequent innermost frame; on a tie, the one seen first.
        let mut frames: Vec<(String, u64)> = Vec::new();
        let mut frame_index: HashMap<String, usize> = HashMap::new();
        for (report, _) in polls {
            if let Some(frame) = self.stacks.get(report.stack).0.first() {
                let text = frame_text(frame);
                match frame_index.get(&text) {
                    Some(&i) => frames[i].1 += 1,
                    None => {
                        frame_index.insert(text.clone(), frames.len());
                        frames.push((text, 1));
                    }
                }
            }
        }
        let mut top: Option<(String, u64)> = None;
        for (text, n) in frames {
            if top.as_ref().is_none_or(|(_, best)| n > *best) {
                top = Some((text, n));
            }
        }

        let names: BTreeSet<&str> = polls
            .iter()
            .filter_map(|(r, _)| self.task(r.task).and_then(|t| t.name.as_deref()))
            .collect();

        let worst_task = self.task(worst.task);
        SlowPollGroup {
            spawned_at: worst_task.map(|t| t.spawned_at.clone()),
            count: polls.len() as u64,
            unfinished: polls.iter().filter(|(_, unfinished)| *unfinished).count() as u64,
            // Rounded to the nanosecond, so 153.2 + 100.1 shows as 253.3.
            total_ms: (total * 1e6).round() / 1e6,
            max_ms: durations[durations.len() - 1],
            p50_ms: nearest_rank(&durations, 50),
            p99_ms: nearest_rank(&durations, 99),
            top_frame_polls: top.as_ref().map_or(0, |(_, n)| *n),
            top_frame: top.map(|(text, _)| text),
            worst: WorstPoll {
                duration_ms: worst.duration_ms,
                task: worst_task.cloned(),
                thread: self.strings.get(worst.thread).clone(),
                stack: self.stacks.get(worst.stack).0.clone(),
                stack_unavailable: (worst.stack_unavailable != NONE)
                    .then(|| self.strings.get(worst.stack_unavailable).clone()),
                unfinished: worst_unfinished,
            },
            task_names: names.into_iter().map(str::to_owned).collect(),
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

/// The nearest-rank percentile `p` (0-100) of `sorted` (ascending): the smallest
/// value with at least `p`% of the values at or below it. 0 for no values.
pub fn nearest_rank(sorted: &[f64], p: u32) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let n = sorted.len();
    let rank = (p as usize * n).div_ceil(100).clamp(1, n);
    sorted[rank - 1]
}

/// A frame as `function (file:line)`, or less when the debug info had less.
pub fn frame_text(frame: &StackFrame) -> String {
    match (&frame.file, frame.line) {
        (Some(file), Some(line)) => format!("{} ({file}:{line})", frame.function),
        (Some(file), None) => format!("{} ({file})", frame.function),
        _ => frame.function.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope_api::Finding;

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
        slow_at(task, poll, ms, in_progress, stack, 0)
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

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(&[], 50), 0.0);
        assert_eq!(nearest_rank(&[7.0], 50), 7.0);
        assert_eq!(nearest_rank(&[7.0], 99), 7.0);
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0, 4.0], 50), 2.0);
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0, 4.0, 5.0], 50), 3.0);
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0, 4.0], 99), 4.0);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&hundred, 50), 50.0);
        assert_eq!(nearest_rank(&hundred, 99), 99.0);
        let two_hundred: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(nearest_rank(&two_hundred, 99), 198.0);
    }

    #[test]
    fn groups_by_spawn_location_with_stats_sorted_by_total() {
        let a = "src/a.rs:1:1";
        let b = "src/b.rs:2:2";
        let sleep = frame("std::thread::sleep", 10);
        let read = frame("std::fs::read", 20);
        let summary = summarize(entries(vec![
            slow(
                task(1, "one", a),
                1,
                150.0,
                false,
                std::slice::from_ref(&sleep),
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
                &[read.clone(), sleep.clone()],
            ),
            slow(task(3, "three", a), 2, 110.0, false, &[]),
        ]));
        let groups = &summary.slow_polls;
        assert_eq!(groups.len(), 2);
        let first = &groups[0];
        assert_eq!(first.spawned_at.as_deref(), Some(a));
        assert_eq!(first.count, 4);
        assert_eq!(first.total_ms, 680.0);
        assert_eq!(first.max_ms, 300.0);
        assert_eq!(first.p50_ms, 120.0);
        assert_eq!(first.p99_ms, 300.0);
        assert_eq!(
            first.top_frame.as_deref(),
            Some("std::thread::sleep (src/app.rs:10)")
        );
        assert_eq!(first.top_frame_polls, 2);
        assert_eq!(first.worst.stack, [read.clone(), sleep.clone()]);
        assert_eq!(first.worst.task.as_ref().unwrap().id, 3);
        assert_eq!(first.task_names, ["one", "three"]);
        assert_eq!(groups[1].spawned_at.as_deref(), Some(b));
        assert_eq!((groups[1].count, groups[1].total_ms), (1, 400.0));
        assert!(summary.other.is_empty());
    }

    #[test]
    fn in_progress_reports_and_the_final_one_are_one_poll() {
        let at = "src/a.rs:1:1";
        let blocked = [frame("std::thread::sleep", 10), frame("app::handler", 30)];
        let summary = summarize(entries(vec![
            // Poll 4 of task 1: two warnings while blocked, then the final report
            // (whose stack is empty: the in-progress one is used).
            slow(task(1, "h", at), 4, 100.0, true, &blocked),
            slow(task(1, "h", at), 4, 200.0, true, &blocked),
            slow(task(1, "h", at), 4, 250.5, false, &[]),
            // Poll 5 of task 1 never ended: its largest in-progress duration counts.
            slow(task(1, "h", at), 5, 100.0, true, &[]),
            slow(task(1, "h", at), 5, 300.0, true, &[]),
        ]));
        let group = &summary.slow_polls[0];
        assert_eq!(group.count, 2);
        assert_eq!(group.unfinished, 1);
        assert_eq!(group.total_ms, 550.5);
        assert_eq!(group.max_ms, 300.0);
        assert!(group.worst.unfinished);
        assert_eq!(
            group.top_frame.as_deref(),
            Some("std::thread::sleep (src/app.rs:10)")
        );

        // The same task id and poll in another file (another run) is another poll.
        let mut two_files = entries(vec![
            slow(task(1, "h", at), 4, 150.0, false, &[]),
            slow(task(1, "h", at), 4, 150.0, false, &[]),
        ]);
        two_files[1].file = 1;
        assert_eq!(summarize(two_files).slow_polls[0].count, 2);
    }

    #[test]
    fn unnumbered_polls_pair_in_order_and_taskless_ones_stand_alone() {
        let at = "src/a.rs:1:1";
        // Same times: with no poll number, only the order tells the polls apart.
        let summary = summarize(entries(vec![
            slow(task(1, "h", at), 0, 100.0, true, &[]),
            slow(task(1, "h", at), 0, 180.0, false, &[]),
            slow(task(1, "h", at), 0, 120.0, false, &[]),
            slow(task(1, "h", at), 0, 100.0, true, &[]),
            slow(None, 0, 500.0, true, &[]),
            slow(None, 0, 600.0, false, &[]),
        ]));
        let [none, numbered] = &summary.slow_polls[..] else {
            panic!("{summary:?}")
        };
        assert_eq!(none.spawned_at, None);
        assert_eq!((none.count, none.total_ms), (2, 1100.0));
        assert_eq!(numbered.count, 3);
        assert_eq!(numbered.total_ms, 400.0);
        assert_eq!(numbered.unfinished, 1);
    }

    #[test]
    fn a_later_run_appended_to_the_file_reuses_ids_but_not_polls() {
        let at = "src/a.rs:1:1";
        let other_at = "src/b.rs:2:2";
        let summary = summarize(entries(vec![
            // Run 1: task 4, poll 1.
            slow_at(task(4, "h", at), 1, 100.0, true, &[], 1),
            slow_at(task(4, "h", at), 1, 300.0, false, &[], 2),
            // Run 2, same app: task 4, poll 1 again, later.
            slow_at(task(4, "h", at), 1, 100.0, true, &[], 5),
            slow_at(task(4, "h", at), 1, 200.0, false, &[], 6),
            // Run 3, another app: task 4, poll 1, spawned elsewhere.
            slow_at(task(4, "h", other_at), 1, 150.0, false, &[], 4),
        ]));
        let [a, b] = &summary.slow_polls[..] else {
            panic!("{summary:?}")
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
    fn reports_of_one_poll_pair_in_any_order() {
        let at = "src/a.rs:1:1";
        let summary = summarize(entries(vec![
            slow_at(task(4, "h", at), 7, 250.0, false, &[], 3),
            slow_at(task(4, "h", at), 7, 120.0, true, &[], 2),
            slow_at(task(4, "h", at), 7, 250.0, false, &[], 3),
        ]));
        let group = &summary.slow_polls[0];
        assert_eq!(
            (group.count, group.unfinished, group.total_ms),
            (1, 0, 250.0)
        );
    }

    #[test]
    fn totals_do_not_show_float_noise() {
        let at = "src/a.rs:1:1";
        let summary = summarize(entries(vec![
            slow(task(1, "h", at), 1, 153.2, false, &[]),
            slow(task(1, "h", at), 2, 100.1, false, &[]),
        ]));
        assert_eq!(summary.slow_polls[0].total_ms, 253.3);
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
