//! taskscope's task records as console's messages: a task's static part
//! ([`task`](fn@task), sent once), its [`stats`] (sent whenever they change), the one
//! span [`metadata`] every task refers to, and its poll histogram
//! ([`details`]).
//!
//! What tokio-console 0.1.14 needs of them, or it drops the task or panics:
//! - `Task.metadata` names a `Metadata` it already has (sent in this or an
//!   earlier `Update.new_metadata`), else it skips the task;
//! - a new task's `Stats` come in the same `Update`, else it drops the task;
//! - `Stats.created_at` and `Stats.poll_stats` are set, and no duration is
//!   negative.
//!
//! What it shows: `task.name` (the Name column), `task.id` (the ID column:
//! Tokio's task id, which is also the protocol's task id here), `kind` (the
//! Kind column), `Task.location` (`file:line:col`); the Fields column gets
//! every other field plus `target=` the metadata's target. A task's state is
//! derived from the timestamps: done once `dropped_at` is set, running
//! while `last_poll_started` is after `last_poll_ended`, else idle.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use console_api as api;
use console_api::tasks::{Stats, Task, TaskDetails, task, task_details::PollTimesHistogram};
use prost_types::Timestamp;

use crate::clock;
use crate::model::task::{SpawnLocation, TaskCell};
use crate::server::convert::kind_of;
use taskscope_api::console::{
    FIELD_KIND, FIELD_NAME, FIELD_TASK_ID, KIND_BLOCK_ON, KIND_TASK, to_console,
};
use taskscope_api::proto;

/// The id of the one metadata every task refers to.
pub(crate) const TASK_META_ID: u64 = 1;

/// The field a task carries when the capture sees no waker events (the
/// runtime hooks of `#[taskscope::main]`): its wakes and wakers are not known.
pub(crate) const FIELD_WAKERS: &str = "wakers";

/// The span metadata of every task, as Tokio's spawn span's (tokio-console
/// shows its target as `target=tokio::task`).
pub(crate) fn metadata() -> api::register_metadata::NewMetadata {
    api::register_metadata::NewMetadata {
        id: Some(api::MetaId { id: TASK_META_ID }),
        metadata: Some(api::Metadata {
            name: "runtime.spawn".into(),
            target: "tokio::task".into(),
            module_path: String::new(),
            location: None,
            kind: api::metadata::Kind::Span as i32,
            level: api::metadata::Level::Trace as i32,
            field_names: vec![
                FIELD_KIND.into(),
                FIELD_NAME.into(),
                FIELD_TASK_ID.into(),
                FIELD_WAKERS.into(),
            ],
        }),
    }
}

fn field(name: &str, value: api::field::Value) -> api::Field {
    api::Field {
        name: Some(api::field::Name::StrName(name.into())),
        value: Some(value),
        metadata_id: Some(api::MetaId { id: TASK_META_ID }),
    }
}

/// The location of a spawn, when it is known.
fn location(at: &SpawnLocation) -> Option<api::Location> {
    (*at != SpawnLocation::UNKNOWN).then(|| api::Location {
        file: Some(at.file.into()),
        module_path: None,
        line: Some(at.line),
        column: Some(at.col),
    })
}

/// A task's static part; `wakes_known`: the capture sees waker events.
pub(crate) fn task(cell: &TaskCell, wakes_known: bool) -> Task {
    let kind = match kind_of(cell) {
        proto::TaskKind::BlockOn => KIND_BLOCK_ON,
        _ => KIND_TASK,
    };
    // Tokio records `kind` and `task.name` with `%`: debug values.
    let mut fields = vec![
        field(FIELD_KIND, api::field::Value::DebugVal(kind.into())),
        field(FIELD_TASK_ID, api::field::Value::U64Val(cell.id)),
    ];
    if let Some(name) = &cell.name {
        fields.push(field(
            FIELD_NAME,
            api::field::Value::DebugVal(name.to_string()),
        ));
    }
    if !wakes_known {
        fields.push(field(
            FIELD_WAKERS,
            api::field::Value::DebugVal("unknown".into()),
        ));
    }
    Task {
        id: Some(api::Id { id: cell.id }),
        metadata: Some(api::MetaId { id: TASK_META_ID }),
        kind: task::Kind::Spawn as i32,
        fields,
        parents: Vec::new(),
        location: location(&cell.spawned_at),
    }
}

/// A clock time as a timestamp (`None` for 0, "never").
fn timestamp(ticks: u64) -> Option<Timestamp> {
    (ticks != 0).then(|| clock::to_system_time(ticks).into())
}

/// The wall time of clock time `ticks`, for `Update.now` and `TaskDetails.now`
/// (the same clock as every timestamp of the stats, so tokio-console's
/// differences never mix two clocks).
pub(crate) fn now(ticks: u64) -> Timestamp {
    Timestamp::from(clock::to_system_time(ticks))
}

fn duration(ns: u64) -> Option<prost_types::Duration> {
    // Fails only past 292 years.
    prost_types::Duration::try_from(Duration::from_nanos(ns)).ok()
}

/// A task's stats, read from its record now (`ended` is 0 for a live task).
///
/// - `busy_time` is that of completed polls: tokio-console adds the poll in
///   progress itself.
/// - Waker clones and drops come from Tokio's waker events; where the capture
///   sees none (`wakes_known` false), one clone and no drop stand for "not
///   known" (0 and 0 would make tokio-console warn of a lost waker on every
///   idle task); the task's `wakers` field says so.
/// - When it was last woken and how long it waited to be polled are not
///   known: taskscope does not read the clock on a wake (it would cost every
///   wake a clock read). tokio-console then never shows a task as scheduled
///   and counts that time as idle.
pub(crate) fn stats(cell: &TaskCell, wakes_known: bool) -> Stats {
    let ended = cell.ended();
    let (waker_clones, waker_drops) = if wakes_known {
        // The live count is exact; the totals are the 32-bit counters'
        // (they wrap, see TaskCell).
        let (drops, live) = cell.waker_counts();
        (u64::from(drops) + u64::from(live), u64::from(drops))
    } else {
        (1, 0)
    };
    let started = cell.last_poll_start.load(Relaxed);
    let mut last_end = cell.last_poll_end.load(Relaxed);
    if ended != 0 && started > last_end {
        // Ended inside its poll (the runtime hooks end a task in its last poll).
        last_end = started.max(ended);
    }
    Stats {
        created_at: timestamp(cell.created),
        dropped_at: timestamp(ended),
        wakes: cell.wakes.load(Relaxed),
        waker_clones,
        waker_drops,
        last_wake: None,
        poll_stats: Some(api::PollStats {
            polls: cell.polls.load(Relaxed),
            first_poll: None,
            last_poll_started: timestamp(started),
            last_poll_ended: timestamp(last_end),
            busy_time: duration(cell.busy_ns.load(Relaxed)),
        }),
        self_wakes: u64::from(cell.self_wakes.load(Relaxed)),
        scheduled_time: None,
    }
}

/// What changes a task's stats: when any of it differs from what a client was
/// sent, the stats are sent again. (Nothing in it grows with the clock alone:
/// tokio-console ages tasks by itself.)
pub(crate) fn signature(cell: &TaskCell) -> u64 {
    let parts = [
        cell.polls.load(Relaxed),
        cell.busy_ns.load(Relaxed),
        cell.last_poll_start.load(Relaxed),
        cell.last_poll_end.load(Relaxed),
        cell.wakes.load(Relaxed),
        u64::from(cell.waker_clones.load(Relaxed)),
        u64::from(cell.waker_drops.load(Relaxed)),
        u64::from(cell.self_wakes.load(Relaxed)),
        cell.ended(),
    ];
    // FNV-1a over the words: equal records give equal signatures, and a
    // change is missed only on a 64-bit collision.
    parts.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, &x| {
        (h ^ x).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The details of a task at clock time `at`: its poll-time histogram (no
/// scheduled-time histogram: not known, see [`stats`]).
pub(crate) fn details(cell: &TaskCell, at: u64) -> TaskDetails {
    TaskDetails {
        task_id: Some(api::Id { id: cell.id }),
        now: Some(now(at)),
        poll_times_histogram: Some(PollTimesHistogram::Histogram(to_console(
            &cell.histogram(),
            cell.max_poll_ns.load(Relaxed),
            cell.busy_ns.load(Relaxed),
        ))),
        scheduled_times_histogram: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::TaskEnd;
    use taskscope_api::console::{decode, longest_poll};
    use taskscope_api::histogram::poll_histogram_bucket;

    fn wall(at: &Timestamp) -> std::time::SystemTime {
        std::time::SystemTime::try_from(*at).unwrap()
    }

    fn cell() -> TaskCell {
        TaskCell::new(
            42,
            Some("handler".into()),
            SpawnLocation {
                file: "src/main.rs",
                line: 7,
                col: 5,
            },
            None,
        )
    }

    fn value<'a>(task: &'a Task, name: &str) -> Option<&'a api::field::Value> {
        task.fields
            .iter()
            .find(|f| f.name == Some(api::field::Name::StrName(name.into())))
            .and_then(|f| f.value.as_ref())
    }

    #[test]
    fn a_task_as_tokio_console_reads_it() {
        let cell = cell();
        let t = task(&cell, true);
        assert_eq!(t.id, Some(api::Id { id: 42 }));
        assert_eq!(t.metadata, Some(api::MetaId { id: TASK_META_ID }));
        assert_eq!(metadata().id, t.metadata);
        let loc = t.location.clone().unwrap();
        assert_eq!(
            (loc.file.as_deref(), loc.line, loc.column),
            (Some("src/main.rs"), Some(7), Some(5))
        );
        assert_eq!(
            value(&t, FIELD_NAME),
            Some(&api::field::Value::DebugVal("handler".into()))
        );
        assert_eq!(
            value(&t, FIELD_TASK_ID),
            Some(&api::field::Value::U64Val(42))
        );
        assert_eq!(
            value(&t, FIELD_KIND),
            Some(&api::field::Value::DebugVal("task".into()))
        );
        assert_eq!(value(&t, FIELD_WAKERS), None);
        // Every field is named by the metadata.
        let names = metadata().metadata.unwrap().field_names;
        for f in &t.fields {
            let Some(api::field::Name::StrName(name)) = &f.name else {
                panic!("named by string")
            };
            assert!(names.contains(name), "{name}");
        }

        let unnamed = TaskCell::new(1, None, SpawnLocation::UNKNOWN, None);
        let t = task(&unnamed, false);
        assert_eq!(value(&t, FIELD_NAME), None);
        assert_eq!(t.location, None);
        assert_eq!(
            value(&t, FIELD_WAKERS),
            Some(&api::field::Value::DebugVal("unknown".into()))
        );
    }

    #[test]
    fn stats_of_a_live_then_finished_task() {
        let cell = cell();
        let s = stats(&cell, true);
        assert!(s.created_at.is_some());
        assert_eq!(s.dropped_at, None);
        let p = s.poll_stats.unwrap();
        assert_eq!(
            (p.polls, p.last_poll_started, p.last_poll_ended),
            (0, None, None)
        );
        assert_eq!((s.waker_clones, s.waker_drops), (0, 0));
        assert_eq!(stats(&cell, false).waker_clones, 1, "unknown is not 0/0");

        // One poll of 3 ms that ended; a second one running.
        let t0 = cell.created + 1;
        let ms = 1_000_000u64;
        let t1 = t0 + clock_ticks(3 * ms);
        cell.polls.store(1, Relaxed);
        cell.busy_ns.store(3 * ms, Relaxed);
        cell.last_poll_start.store(t1 + 10, Relaxed);
        cell.last_poll_end.store(t1, Relaxed);
        cell.waker_clones.store(3, Relaxed);
        cell.waker_drops.store(2, Relaxed);
        cell.self_wakes.store(1, Relaxed);
        cell.wakes.store(2, Relaxed);
        let s = stats(&cell, true);
        let p = s.poll_stats.unwrap();
        assert_eq!(p.polls, 1);
        assert_eq!(p.busy_time, duration(3 * ms));
        // Running: started after the last end.
        assert!(wall(&p.last_poll_started.unwrap()) > wall(&p.last_poll_ended.unwrap()));
        assert_eq!(
            (s.waker_clones, s.waker_drops, s.self_wakes, s.wakes),
            (3, 2, 1, 2)
        );
        let before = signature(&cell);

        cell.set_end(TaskEnd::Completed, t1 + 20);
        assert_ne!(signature(&cell), before);
        let s = stats(&cell, true);
        assert!(s.dropped_at.is_some());
        let p = s.poll_stats.unwrap();
        assert!(
            wall(&p.last_poll_ended.unwrap()) >= wall(&p.last_poll_started.unwrap()),
            "a task that ended in its poll is not running"
        );
    }

    fn clock_ticks(ns: u64) -> u64 {
        // Ticks per nanosecond from the clock's own conversion.
        let per = clock::to_nanos(1 << 20).max(1);
        ns.saturating_mul(1 << 20) / per
    }

    #[test]
    fn details_carry_the_histogram() {
        let cell = cell();
        cell.histogram[poll_histogram_bucket(50_000)].store(9, Relaxed);
        cell.histogram[poll_histogram_bucket(250_000_000)].store(1, Relaxed);
        cell.max_poll_ns.store(250_000_000, Relaxed);
        cell.busy_ns.store(9 * 50_000 + 250_000_000, Relaxed);
        let d = details(&cell, clock::now());
        assert_eq!(d.task_id, Some(api::Id { id: 42 }));
        let Some(PollTimesHistogram::Histogram(h)) = d.poll_times_histogram else {
            panic!("a histogram")
        };
        assert_eq!(decode(&h.raw_histogram).unwrap().len(), 10);
        let longest = longest_poll(&h).unwrap();
        assert!(longest >= Duration::from_millis(250) && longest < Duration::from_millis(253));
    }
}
