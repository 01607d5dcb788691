//! The replay's time cursor: it drives the live view's model
//! ([`Model::apply`]) with the recorded updates, at their recorded times.
//!
//! - Playing, the cursor moves with the clock (times [`Player::speed`]) and
//!   the updates it passes are applied; a stretch of more than
//!   [`SKIP_GAP`] without any update (the app was not running) is jumped.
//! - Forward, the updates between the cursor and the target are applied.
//! - Backward (and far forward), the model is built again: the runtime's
//!   history (the plots' five minutes, [`HISTORY_WINDOW`]) from the latest
//!   snapshot at least that long before the target, read without the tasks;
//!   the rest from the latest snapshot before the target, then every delta
//!   up to it. So a seek reads at most about a minute of whole updates (the
//!   app records a snapshot a minute) and five of metrics. It shows what a
//!   viewer that attached at that snapshot would show at the target.
//! - Playing on, a snapshot met on the way is skipped when the deltas before
//!   it are all there (they carry the same, and findings beyond the app's
//!   1,000 recent ones too), and applied after a gap (publishes the app
//!   dropped, or a new run of the app).
//!
//! The model's clock (`now`) is the recorded time: ages, idle times and the
//! 10 s that finished tasks stay on screen are counted in recorded time. What
//! the app answers only when asked (a task's detail) is made from the
//! recording: the task's record, parent and children, its slow polls among
//! the last [`RECENT_SLOW_POLLS`]; no poll histogram.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::client::assemble::Assembler;
use crate::client::convert;
use crate::replay::load::{Recording, system_time};
use crate::state::{
    Connection, Finding, FindingKind, HISTORY_WINDOW, KEEP_FINISHED, Model, ReplayStatus,
    TaskDetail, Update, View,
};
use taskscope_api::recording::update_metrics;

/// How far ←/→ move the cursor.
pub const STEP: Duration = Duration::from_secs(10);

/// Playing, a stretch without updates longer than this is jumped.
pub const SKIP_GAP: Duration = Duration::from_secs(5);

/// The fastest playing speed (`+` doubles it, `-` halves it).
pub const MAX_SPEED: u32 = 64;

/// Slow-poll reports kept for the detail view (as the app keeps its recent findings).
pub const RECENT_SLOW_POLLS: usize = 1_000;

/// A move forward over more updates than this (30 s of them), past a
/// snapshot, builds the model again from that snapshot instead of applying
/// every update on the way.
pub const REBUILD_AFTER: usize = 60;

/// The replay's cursor over a [`Recording`].
#[derive(Debug)]
pub struct Player {
    recording: Recording,
    /// The recording as the status line names it.
    label: String,
    /// Updates `[0, applied)` are in the model.
    applied: usize,
    /// `(run, seq)` of the last update applied.
    last_applied: Option<(usize, u64)>,
    /// The recorded time at the cursor (ns since the Unix epoch).
    cursor: u64,
    playing: bool,
    speed: u32,
    /// The instant that stands for the recording's start in the model.
    base: Instant,
    /// When the cursor last moved with the clock.
    last_real: Option<Instant>,
    recent_slow: VecDeque<Finding>,
    /// What could not be read, the loading's first.
    problems: Vec<String>,
}

impl Player {
    /// A player on `recording`, its cursor at the start, playing; `label`
    /// names the recording in the status line. Returns it and the model it
    /// drives (the first update applied).
    pub fn new(recording: Recording, label: impl Into<String>, now: Instant) -> (Player, Model) {
        let label = label.into();
        let problems = recording.problems.clone();
        let mut player = Player {
            cursor: recording.start(),
            recording,
            label: label.clone(),
            applied: 0,
            last_applied: None,
            playing: true,
            speed: 1,
            base: now,
            last_real: None,
            recent_slow: VecDeque::new(),
            problems,
        };
        let mut model = player.fresh_model(&label);
        player.seek(&mut model, player.recording.start());
        (player, model)
    }

    fn fresh_model(&self, label: &str) -> Model {
        let now = self.instant(self.recording.start());
        let mut model = Model::new(label, now);
        model.connection = Connection::Connected {
            addr: label.to_owned(),
        };
        model
    }

    /// The model's instant for recorded time `time`.
    fn instant(&self, time: u64) -> Instant {
        self.base + Duration::from_nanos(time.saturating_sub(self.recording.start()))
    }

    /// The model's clock at the cursor (for the keys the model handles).
    pub fn now(&self) -> Instant {
        self.instant(self.cursor)
    }

    /// The recorded time at the cursor (ns since the Unix epoch).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Whether the cursor moves with the clock.
    pub fn playing(&self) -> bool {
        self.playing
    }

    /// Recorded seconds per second while playing.
    pub fn speed(&self) -> u32 {
        self.speed
    }

    /// What could not be read, each naming its file.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Plays or pauses.
    pub fn set_playing(&mut self, model: &mut Model, playing: bool) {
        self.playing = playing;
        self.last_real = None;
        if playing && self.cursor >= self.recording.end() {
            // Play again from the start.
            self.seek(model, self.recording.start());
        }
        self.show(model);
    }

    /// Handles a replay key: space or `p` (play / pause), ← → (10 s back,
    /// forward), `g` `G` (start, end), `+` `-` (faster, slower). Returns
    /// false for any other key (and while the filter is typed or the help
    /// is shown), which the live view's keys then handle.
    pub fn handle_key(&mut self, key: KeyEvent, model: &mut Model) -> bool {
        if key.kind == KeyEventKind::Release
            || model.ui.filter_typing
            || model.ui.help
            || key.modifiers.contains(KeyModifiers::CONTROL)
        {
            return false;
        }
        match key.code {
            KeyCode::Char(' ' | 'p') => self.set_playing(model, !self.playing),
            KeyCode::Left => self.seek(model, self.cursor.saturating_sub(nanos(STEP))),
            KeyCode::Right => self.seek(model, self.cursor.saturating_add(nanos(STEP))),
            KeyCode::Char('g') => self.seek(model, self.recording.start()),
            KeyCode::Char('G') => self.seek(model, self.recording.end()),
            KeyCode::Char('+' | '=') => {
                self.speed = (self.speed * 2).min(MAX_SPEED);
                self.show(model);
            }
            KeyCode::Char('-') => {
                self.speed = (self.speed / 2).max(1);
                self.show(model);
            }
            _ => return false,
        }
        true
    }

    /// Moves the cursor with the clock (`real_now`) while playing.
    pub fn tick(&mut self, model: &mut Model, real_now: Instant) {
        let last = self.last_real.replace(real_now);
        if !self.playing {
            return;
        }
        let Some(last) = last else {
            return;
        };
        let moved =
            nanos(real_now.saturating_duration_since(last)).saturating_mul(self.speed as u64);
        let mut target = self.cursor.saturating_add(moved);
        if let Some(next) = self.recording.updates.get(self.applied)
            && next.time > self.cursor.saturating_add(nanos(SKIP_GAP))
            && next.time > target
        {
            // Nothing happened for a while (the app was not running): jump.
            target = target.max(next.time.saturating_sub(nanos(Duration::from_millis(500))));
        }
        if target >= self.recording.end() {
            target = self.recording.end();
            self.playing = false;
        }
        self.seek(model, target);
    }

    /// Moves the cursor to recorded time `time` (clamped to the recording)
    /// and brings the model there.
    pub fn seek(&mut self, model: &mut Model, time: u64) {
        let time = time.clamp(self.recording.start(), self.recording.end());
        self.cursor = time;
        let end = self.recording.updates.partition_point(|u| u.time <= time);
        // Far forward past a snapshot, building again reads less than
        // applying every update on the way.
        let far = end - self.applied.min(end) > REBUILD_AFTER
            && self.whole_from(self.start_for(end), end) > self.applied;
        if end < self.applied || far {
            self.rebuild(model, end);
        } else {
            for index in self.applied..end {
                self.apply(model, index);
            }
            self.applied = end;
        }
        model.tick(self.instant(time));
        self.refresh_detail(model);
        self.show(model);
    }

    /// Where a model of updates `[0, end)` is built from: the latest snapshot
    /// at least the plots' window before the last of them, else the first
    /// snapshot, else the first update.
    fn start_for(&self, end: usize) -> usize {
        let updates = &self.recording.updates;
        let Some(last) = end.checked_sub(1).map(|i| &updates[i]) else {
            return 0;
        };
        let window_start = last.time.saturating_sub(nanos(HISTORY_WINDOW));
        (0..end)
            .rev()
            .find(|&i| updates[i].snapshot && updates[i].time <= window_start)
            .or_else(|| (0..end).find(|&i| updates[i].snapshot))
            .unwrap_or(0)
    }

    /// The latest snapshot in `[start, end)` at least [`KEEP_FINISHED`]
    /// before the last of them (else `start`): from there a model of
    /// updates `[0, end)` is built whole; before it, only the runtime's
    /// history is needed. (So early, the finished tasks it holds have left
    /// the table by the target, as they had when playing on: the model
    /// keeps a finished task for 10 s after it learnt of its end.)
    fn whole_from(&self, start: usize, end: usize) -> usize {
        let updates = &self.recording.updates;
        let Some(last) = end.checked_sub(1).map(|i| &updates[i]) else {
            return start;
        };
        let before = last.time.saturating_sub(nanos(KEEP_FINISHED));
        (start..end)
            .rev()
            .find(|&i| updates[i].snapshot && updates[i].time <= before)
            .unwrap_or(start)
    }

    /// Builds the model again from scratch with updates `[0, end)`,
    /// keeping what the user chose on screen: the runtime's history from
    /// [`Player::start_for`], the rest from the latest snapshot.
    fn rebuild(&mut self, model: &mut Model, end: usize) {
        let start = self.start_for(end);
        let whole = self.whole_from(start, end);
        let mut fresh = self.fresh_model(&self.label);
        fresh.ui = std::mem::take(&mut model.ui);
        *model = fresh;
        self.last_applied = None;
        self.recent_slow.clear();
        for index in start..whole {
            self.apply_history(model, index);
        }
        if whole < end {
            // The delta of the snapshot's publish gives the runtime's sample
            // (with the slow polls that ended in it), as when playing on.
            let next = whole + 1;
            let updates = &self.recording.updates;
            if next < end && updates[next].seq == updates[whole].seq && !updates[next].snapshot {
                self.apply_history(model, next);
            }
            self.last_applied = None;
            self.apply(model, whole);
        }
        for index in whole + 1..end {
            self.apply(model, index);
        }
        self.applied = end;
    }

    /// Whether update `index` says nothing the model does not have.
    fn redundant(&self, index: usize) -> bool {
        let update = &self.recording.updates[index];
        let run = self.recording.segments[update.segment].run;
        match self.last_applied {
            // A snapshot after every delta before it: they said the same.
            Some((r, last)) if r == run && update.snapshot => {
                last + 1 == update.seq && !update.gap_before
            }
            // The delta of a publish whose snapshot was applied.
            Some((r, last)) if r == run => update.seq <= last,
            _ => false,
        }
    }

    /// Applies what update `index` says of the runtime (its metrics, and its
    /// findings for the slow polls per second), without its tasks: read
    /// without decoding them. A snapshot applied later replaces the rest.
    fn apply_history(&mut self, model: &mut Model, index: usize) {
        if self.redundant(index) {
            return;
        }
        let chunks = match self.recording.read_metrics(index) {
            Ok(chunks) => chunks,
            Err(problem) => {
                self.note_problem(problem);
                return;
            }
        };
        let update = &self.recording.updates[index];
        let (run, seq, time) = (
            self.recording.segments[update.segment].run,
            update.seq,
            update.time,
        );
        let mut findings = Vec::new();
        let mut last = None;
        for chunk in chunks {
            let (lines, metrics, dropped, at) = match chunk.kind {
                Some(update_metrics::Kind::Snapshot(s)) => {
                    (s.findings, s.metrics, s.dropped, s.at_unix_ns)
                }
                Some(update_metrics::Kind::Delta(d)) => {
                    (d.findings, d.metrics, d.dropped, d.at_unix_ns)
                }
                None => continue,
            };
            findings.extend(convert::findings(&lines));
            last = Some((metrics, dropped, at));
        }
        let Some((metrics, dropped, at)) = last else {
            return;
        };
        let update = Update::Delta {
            changed: Vec::new(),
            finished: Vec::new(),
            findings,
            metrics: convert::metrics(metrics.as_ref()),
            dropped: convert::dropped(dropped.as_ref()),
            at: convert::time(at),
        };
        model.apply(update, self.instant(time));
        self.last_applied = Some((run, seq));
    }

    fn note_problem(&mut self, problem: String) {
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    /// Applies update `index`, unless what it says is in the model already.
    fn apply(&mut self, model: &mut Model, index: usize) {
        if self.redundant(index) {
            return;
        }
        let update = &self.recording.updates[index];
        let run = self.recording.segments[update.segment].run;
        let (seq, time) = (update.seq, update.time);
        let chunks = match self.recording.read(index) {
            Ok(chunks) => chunks,
            Err(problem) => {
                self.note_problem(problem);
                return;
            }
        };
        let mut assembler = Assembler::default();
        let mut whole = None;
        for chunk in chunks {
            match assembler.push(chunk) {
                Ok(Some((update, _app))) => whole = Some(update),
                Ok(None) => {}
                Err(err) => {
                    let segment = &self.recording.segments[self.recording.updates[index].segment];
                    self.problems.push(format!(
                        "{}: the update at byte {} is not whole: {}",
                        segment.path.display(),
                        self.recording.updates[index].offset,
                        err.0
                    ));
                    return;
                }
            }
        }
        let Some(whole) = whole else {
            return;
        };
        self.note_slow_polls(&whole);
        model.apply(whole, self.instant(time));
        self.last_applied = Some((run, seq));
    }

    /// Keeps the slow-poll reports of `update`, for the detail view.
    fn note_slow_polls(&mut self, update: &Update) {
        let findings = match update {
            Update::Snapshot { findings, .. } => {
                self.recent_slow.clear();
                findings
            }
            Update::Delta { findings, .. } => findings,
            _ => return,
        };
        for finding in findings {
            if matches!(finding.kind, FindingKind::SlowPoll { .. }) {
                if self.recent_slow.len() == RECENT_SLOW_POLLS {
                    self.recent_slow.pop_front();
                }
                self.recent_slow.push_back(finding.clone());
            }
        }
    }

    /// The detail of task `id` as the recording knows it (what the live view
    /// asks the app for).
    pub fn detail(&self, model: &Model, id: u64) -> TaskDetail {
        let task = model.tasks.get(&id).map(|e| &e.task);
        let mut children: Vec<u64> = model
            .tasks
            .values()
            .filter(|e| e.ended_at.is_none() && e.task.parent == Some(id))
            .map(|e| e.task.id)
            .collect();
        children.sort_unstable();
        TaskDetail {
            id,
            histogram: Vec::new(),
            slow_polls: self
                .recent_slow
                .iter()
                .filter(|f| f.task.as_ref().is_some_and(|t| t.id == id))
                .cloned()
                .collect(),
            wakes: task.map_or(0, |t| t.wakes),
            wakers: task.map_or(0, |t| t.wakers),
            parent: task.and_then(|t| t.parent),
            children,
            async_stack: None,
        }
    }

    /// Answers the live view's request for a task's detail.
    pub fn request_detail(&self, model: &mut Model, id: u64) {
        let detail = self.detail(model, id);
        let now = self.now();
        model.apply(Update::Detail(detail), now);
    }

    /// The detail on screen follows the cursor.
    fn refresh_detail(&self, model: &mut Model) {
        if model.ui.view == View::Detail
            && let Some(id) = model.ui.detail_id
        {
            self.request_detail(model, id);
        }
    }

    /// Puts the cursor in the status line.
    fn show(&self, model: &mut Model) {
        let start = self.recording.start();
        model.replay = Some(ReplayStatus {
            file: self.label.clone(),
            at: system_time(self.cursor),
            elapsed: Duration::from_nanos(self.cursor - start),
            length: Duration::from_nanos(self.recording.end() - start),
            playing: self.playing,
            speed: self.speed,
            at_end: self.cursor >= self.recording.end(),
            missing: self.recording.missing,
            problems: self.problems.len(),
        });
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::load;
    use crate::replay::testing::{
        Rec, T0, at, delta, dir, never_awaited, rec, slow_poll, snapshot, snapshot_with_finished,
        task, write_segment,
    };
    use crate::state::keys::press;
    use std::path::Path;

    /// 30 s of an app: tasks 1 and 2 (a child of 1) live throughout until
    /// task 2 ends at 20.5 s, in a publish that is missing (41, with 40);
    /// task 3 (a child of 1) lives from 0.5 s to 1 s with a slow poll; a
    /// never-awaited future at 0 s, 1 s and 10 s; a snapshot at 10 s and
    /// one after the gap, with the app's finished history and recent
    /// findings — `trimmed`: the one at 10 s holds only the last two
    /// findings and no finished task, as when the app's lists have moved on.
    fn app_recording(test: &str) -> load::Recording {
        recording_of(test, false)
    }

    fn recording_of(test: &str, trimmed: bool) -> load::Recording {
        let dir = dir(test);
        let path = dir.join("app.rec");
        let one = || task(1, "main", None, false);
        let two = || task(2, "worker", Some(1), false);
        let mut records: Vec<Rec> = vec![
            rec(
                0,
                snapshot(at(0.0), vec![one(), two()], vec![never_awaited(1)]),
            ),
            rec(
                0,
                delta(at(0.0), vec![one(), two()], vec![], vec![never_awaited(1)]),
            ),
            rec(
                1,
                delta(
                    at(0.5),
                    vec![task(3, "req", Some(1), false)],
                    vec![],
                    vec![slow_poll(3, 0.5)],
                ),
            ),
            rec(
                2,
                delta(
                    at(1.0),
                    vec![],
                    vec![task(3, "req", Some(1), true)],
                    vec![never_awaited(2)],
                ),
            ),
        ];
        for seq in 3..=60u64 {
            let time = at(seq as f64 / 2.0);
            let all = || {
                vec![
                    never_awaited(1),
                    slow_poll(3, 0.5),
                    never_awaited(2),
                    never_awaited(3),
                ]
            };
            let three = || task(3, "req", Some(1), true);
            match seq {
                20 => {
                    let snap = if trimmed {
                        snapshot(
                            time,
                            vec![one(), two()],
                            vec![never_awaited(2), never_awaited(3)],
                        )
                    } else {
                        snapshot_with_finished(time, vec![one(), two()], vec![three()], all())
                    };
                    records.push(rec(seq, snap));
                    records.push(rec(
                        seq,
                        delta(time, vec![], vec![], vec![never_awaited(3)]),
                    ));
                }
                40 | 41 => {}
                42 => {
                    let finished = vec![three(), task(2, "worker", Some(1), true)];
                    records.push(rec(
                        seq,
                        snapshot_with_finished(time, vec![one()], finished, all()),
                    ));
                    records.push(rec(seq, delta(time, vec![], vec![], vec![])));
                }
                _ => records.push(rec(seq, delta(time, vec![], vec![], vec![]))),
            }
        }
        write_segment(&path, 1, 0, &records);
        load::load(&path, &mut |_| {}).unwrap()
    }

    fn secs(s: f64) -> u64 {
        at(s)
    }

    /// What a person sees that the cursor decides: live and finished tasks,
    /// problems, slow polls, the runtime's samples, the time on screen.
    fn picture(model: &mut Model) -> (Vec<(u64, bool)>, usize, usize, usize, Option<SystemTimeNs>) {
        let mut tasks: Vec<(u64, bool)> = model
            .tasks
            .values()
            .map(|e| (e.task.id, e.ended_at.is_some()))
            .collect();
        tasks.sort();
        (
            tasks,
            model.problems.len(),
            model.slow.total(),
            model.history.samples().len(),
            model
                .last_update_at
                .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64),
        )
    }
    type SystemTimeNs = u64;

    #[test]
    fn playing_on_skips_the_snapshots_and_applies_the_one_after_a_gap() {
        let (mut player, mut model) =
            Player::new(recording_of("play", true), "app.rec", Instant::now());
        assert_eq!(player.cursor(), T0);
        // Forward, update by update.
        player.seek(&mut model, secs(0.6));
        assert_eq!(picture(&mut model).0, [(1, false), (2, false), (3, false)]);
        assert_eq!(model.slow.total(), 1);
        player.seek(&mut model, secs(15.0));
        // The snapshot at 10 s holds two findings; playing on, all three stay.
        assert_eq!(model.problems.len(), 3);
        // Task 3 ended at 1 s and left the table 10 s later.
        assert_eq!(picture(&mut model).0, [(1, false), (2, false)]);
        // Task 2 ended in a publish the recording misses: the snapshot after
        // the gap says so.
        player.seek(&mut model, secs(20.2));
        assert!(model.tasks[&2].ended_at.is_none());
        player.seek(&mut model, secs(21.0));
        assert!(
            model.tasks[&2].ended_at.is_some(),
            "the snapshot after the gap is applied: task 2 ended"
        );
        let status = model.replay.clone().unwrap();
        assert_eq!(status.missing, 2);
        assert_eq!(status.elapsed, Duration::from_secs(21));
        assert_eq!(status.length, Duration::from_secs(30));
        assert_eq!(status.file, "app.rec");
    }

    #[test]
    fn seeking_back_shows_what_playing_to_that_time_showed() {
        for target in [0.0, 0.6, 5.0, 10.0, 12.0, 20.2, 20.7, 21.0, 25.0, 30.0] {
            let (mut player, mut played) =
                Player::new(app_recording("back-play"), "app.rec", Instant::now());
            let mut t = 0.0;
            while t < target {
                t = (t + 0.25f64).min(target);
                player.seek(&mut played, secs(t));
            }
            let (mut back, mut model) =
                Player::new(app_recording("back-seek"), "app.rec", Instant::now());
            back.seek(&mut model, secs(30.0));
            back.seek(&mut model, secs(target));
            assert_eq!(picture(&mut model), picture(&mut played), "at {target} s");
            assert_eq!(back.cursor(), secs(target));
        }
    }

    #[test]
    fn replay_keys_move_the_cursor_and_the_others_go_to_the_view() {
        let (mut player, mut model) = Player::new(app_recording("keys"), "app.rec", Instant::now());
        assert!(player.playing());
        assert!(player.handle_key(press(KeyCode::Char(' ')), &mut model));
        assert!(!player.playing());
        assert!(!model.replay.as_ref().unwrap().playing);
        assert!(player.handle_key(press(KeyCode::Char('G')), &mut model));
        assert_eq!(player.cursor(), secs(30.0));
        assert!(model.replay.as_ref().unwrap().at_end);
        assert!(player.handle_key(press(KeyCode::Left), &mut model));
        assert_eq!(player.cursor(), secs(20.0));
        assert!(model.tasks.contains_key(&2), "task 2 is back");
        assert!(player.handle_key(press(KeyCode::Left), &mut model));
        assert!(player.handle_key(press(KeyCode::Left), &mut model));
        assert_eq!(player.cursor(), secs(0.0), "not before the start");
        assert!(player.handle_key(press(KeyCode::Right), &mut model));
        assert_eq!(player.cursor(), secs(10.0));
        assert!(player.handle_key(press(KeyCode::Char('g')), &mut model));
        assert_eq!(player.cursor(), secs(0.0));
        assert!(player.handle_key(press(KeyCode::Char('+')), &mut model));
        assert!(player.handle_key(press(KeyCode::Char('+')), &mut model));
        assert_eq!(player.speed(), 4);
        assert!(player.handle_key(press(KeyCode::Char('-')), &mut model));
        assert_eq!(player.speed(), 2);
        // Other keys are the view's; so is everything while the filter is typed.
        assert!(!player.handle_key(press(KeyCode::Char('3')), &mut model));
        model.ui.filter_typing = true;
        assert!(!player.handle_key(press(KeyCode::Char('g')), &mut model));
        assert_eq!(player.cursor(), secs(0.0));
    }

    #[test]
    fn playing_follows_the_clock_at_its_speed_and_stops_at_the_end() {
        let (mut player, mut model) = Player::new(app_recording("tick"), "app.rec", Instant::now());
        let real = Instant::now();
        player.tick(&mut model, real);
        assert_eq!(player.cursor(), secs(0.0));
        player.tick(&mut model, real + Duration::from_secs(2));
        assert_eq!(player.cursor(), secs(2.0));
        player.handle_key(press(KeyCode::Char('+')), &mut model);
        player.handle_key(press(KeyCode::Char('+')), &mut model);
        player.tick(&mut model, real + Duration::from_secs(3));
        player.tick(&mut model, real + Duration::from_secs(5));
        assert_eq!(player.cursor(), secs(14.0), "2 s, then 3 s at 4×");
        player.tick(&mut model, real + Duration::from_secs(50));
        assert_eq!(player.cursor(), secs(30.0));
        assert!(!player.playing());
        // Paused, the clock does not move it; playing at the end starts over.
        player.tick(&mut model, real + Duration::from_secs(60));
        assert_eq!(player.cursor(), secs(30.0));
        player.handle_key(press(KeyCode::Char(' ')), &mut model);
        assert_eq!(player.cursor(), secs(0.0));
        assert!(player.playing());
    }

    #[test]
    fn a_stretch_without_updates_is_jumped_while_playing() {
        let dir = dir("jump");
        let path: &Path = &dir.join("app.rec");
        let mut records = vec![rec(
            0,
            snapshot(at(0.0), vec![task(1, "a", None, false)], vec![]),
        )];
        records.push(rec(0, delta(at(0.0), vec![], vec![], vec![])));
        records.push(rec(1, delta(at(0.5), vec![], vec![], vec![])));
        write_segment(&crate::replay::testing::numbered(path, 1), 1, 0, &records);
        // The app again, an hour later: another run.
        write_segment(
            path,
            2,
            0,
            &[
                rec(
                    0,
                    snapshot(at(3600.0), vec![task(9, "b", None, false)], vec![]),
                ),
                rec(0, delta(at(3600.0), vec![], vec![], vec![])),
                rec(1, delta(at(3600.5), vec![], vec![], vec![])),
            ],
        );
        let recording = load::load(path, &mut |_| {}).unwrap();
        assert_eq!(recording.runs.len(), 2);
        let (mut player, mut model) = Player::new(recording, "app.rec", Instant::now());
        let real = Instant::now();
        player.tick(&mut model, real);
        player.tick(&mut model, real + Duration::from_secs(1));
        assert_eq!(player.cursor(), secs(1.0));
        player.tick(&mut model, real + Duration::from_secs(2));
        assert!(player.cursor() >= secs(3599.0), "jumped to the next run");
        player.tick(&mut model, real + Duration::from_secs(3));
        assert_eq!(
            picture(&mut model).0,
            [(9, false)],
            "the next run's snapshot"
        );
    }

    #[test]
    fn a_tasks_detail_is_made_from_the_recording() {
        let (mut player, mut model) =
            Player::new(app_recording("detail"), "app.rec", Instant::now());
        player.seek(&mut model, secs(0.6));
        let detail = player.detail(&model, 3);
        assert_eq!(detail.parent, Some(1));
        assert_eq!(detail.slow_polls.len(), 1);
        assert!(detail.histogram.is_empty());
        assert_eq!(player.detail(&model, 1).children, [2, 3]);
        // The detail on screen follows the cursor.
        model.ui.view = View::Detail;
        model.ui.detail_id = Some(1);
        player.seek(&mut model, secs(5.0));
        assert_eq!(model.detail.as_ref().unwrap().children, [2]);
    }
}
