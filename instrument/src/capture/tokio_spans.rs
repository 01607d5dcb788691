//! What Tokio's own `tracing` instrumentation says about tasks, read without
//! allocating: the `runtime.spawn` span a task is created with (id, name,
//! spawn location, kind) and the waker events (`tokio::task::waker`). Shared by
//! the two tracing front ends, [`super::subscriber`] and [`super::layer`].
//! A task name longer than [`MAX_TEXT`] bytes is cut there and marked
//! (`… [truncated, N bytes]`).

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::sync::atomic::Ordering::{Relaxed, Release};

use taskscope_api::format::{Bounded, MAX_TEXT, truncate};
use tracing::field::{Field, Visit};
use tracing::span::Attributes;
use tracing::{Event, Metadata};

use crate::capture::poll;
use crate::clock;
use crate::model::registry::Registry;
use crate::model::task::{SpawnLocation, TaskCell, TaskEnd, poll_histogram_bucket};

/// A final poll and the drop of the task's future closer together than this
/// mean the task completed; a longer gap means it was cancelled while pending.
const COMPLETION_GAP_NS: u64 = 200_000;

/// Tokio's span for a task (not `spawn_blocking`, whose target differs).
pub(crate) fn is_task_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == "tokio::task" && meta.name() == "runtime.spawn"
}

/// Tokio's events for a waker of a task being cloned, dropped or woken.
pub(crate) fn is_waker_event(meta: &Metadata<'_>) -> bool {
    meta.is_event() && meta.target() == "tokio::task::waker"
}

/// A new task as Tokio's span describes it.
pub(crate) struct Spawn {
    /// Tokio's task id.
    pub(crate) id: Option<u64>,
    name: Option<Box<str>>,
    block_on: bool,
    file: Option<&'static str>,
    line: u32,
    col: u32,
}

impl Spawn {
    /// Reads the span's fields; file names are interned in `registry`.
    pub(crate) fn read(attrs: &Attributes<'_>, registry: &Registry) -> Spawn {
        let mut visitor = SpawnVisitor {
            spawn: Spawn {
                id: None,
                name: None,
                block_on: false,
                file: None,
                line: 0,
                col: 0,
            },
            registry,
        };
        attrs.record(&mut visitor);
        visitor.spawn
    }

    /// The task's record; `parent` is the task that spawned it.
    pub(crate) fn into_cell(self, id: u64, parent: Option<u64>) -> TaskCell {
        let spawned_at = match self.file {
            Some(file) => SpawnLocation {
                file,
                line: self.line,
                col: self.col,
            },
            None => SpawnLocation::UNKNOWN,
        };
        let mut cell = TaskCell::new(id, self.name, spawned_at, parent);
        // `#[tokio::main]`'s body and other `block_on` futures: not spawned tasks.
        cell.is_block_on = self.block_on;
        cell
    }
}

struct SpawnVisitor<'r> {
    spawn: Spawn,
    registry: &'r Registry,
}

thread_local! {
    /// The source file interned last on this thread: spawns come in runs from one place.
    static LAST_FILE: Cell<&'static str> = const { Cell::new("") };
}

fn intern(registry: &Registry, file: &str) -> &'static str {
    let last = LAST_FILE.try_with(Cell::get).unwrap_or("");
    if !file.is_empty() && last == file {
        return last;
    }
    let interned = registry.intern_file(file);
    let _ = LAST_FILE.try_with(|l| l.set(interned));
    interned
}

/// A `fmt::Write` that only checks whether what is written equals `expected`.
struct Equals<'a> {
    rest: &'a str,
    equal: bool,
}

impl fmt::Write for Equals<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.rest.strip_prefix(s) {
            Some(rest) if self.equal => self.rest = rest,
            _ => self.equal = false,
        }
        Ok(())
    }
}

fn displays_as(value: &dyn fmt::Debug, expected: &str) -> bool {
    let mut eq = Equals {
        rest: expected,
        equal: true,
    };
    let _ = write!(eq, "{value:?}");
    eq.equal && eq.rest.is_empty()
}

impl Visit for SpawnVisitor<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "task.id" => self.spawn.id = Some(value),
            "loc.line" => self.spawn.line = u32::try_from(value).unwrap_or(u32::MAX),
            "loc.col" => self.spawn.col = u32::try_from(value).unwrap_or(u32::MAX),
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Ok(value) = u64::try_from(value) {
            self.record_u64(field, value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "loc.file" => self.spawn.file = Some(intern(self.registry, value)),
            "task.name" if !value.is_empty() => {
                self.spawn.name = Some(truncate(value, MAX_TEXT).into());
            }
            "kind" => self.spawn.block_on = value == "block_on",
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            // `%name`: empty for unnamed tasks, then nothing is allocated.
            "task.name" => {
                // At most MAX_TEXT bytes are kept of a long name (marked).
                let mut name = Bounded::new(MAX_TEXT);
                let _ = write!(name, "{value:?}");
                let name = name.finish();
                if !name.is_empty() {
                    self.spawn.name = Some(name.into_boxed_str());
                }
            }
            "kind" => self.spawn.block_on = displays_as(value, "block_on"),
            "loc.file" => {
                let file = format!("{value:?}");
                self.spawn.file = Some(intern(self.registry, &file));
            }
            _ => {}
        }
    }
}

/// What a waker event did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum WakerOp {
    Clone,
    Drop,
    /// Wake by value: also drops the waker.
    Wake,
    WakeByRef,
}

impl WakerOp {
    fn parse(op: &str) -> Option<WakerOp> {
        // By length first: this runs for every wake.
        let op = match op.len() {
            10 if op == "waker.drop" => WakerOp::Drop,
            10 if op == "waker.wake" => WakerOp::Wake,
            11 if op == "waker.clone" => WakerOp::Clone,
            17 if op == "waker.wake_by_ref" => WakerOp::WakeByRef,
            _ => return None,
        };
        Some(op)
    }

    /// Applies the event to the task's record (any thread); `own_poll`: it
    /// happens inside the task's own poll, on the thread polling it (a
    /// wake there is a self-wake).
    #[inline]
    pub(crate) fn apply(self, cell: &TaskCell, own_poll: bool) {
        match self {
            WakerOp::Clone => {
                cell.waker_clones.fetch_add(1, Relaxed);
            }
            WakerOp::Drop => drop_waker(cell),
            WakerOp::Wake => {
                drop_waker(cell);
                wake(cell, own_poll);
            }
            WakerOp::WakeByRef => wake(cell, own_poll),
        }
    }
}

#[inline]
fn wake(cell: &TaskCell, own_poll: bool) {
    if own_poll {
        poll::self_woken(cell);
    } else {
        poll::woken(cell);
    }
}

#[inline]
fn drop_waker(cell: &TaskCell) {
    // Release: whoever reads this drop also sees the clone it undoes (see
    // `TaskCell::wakers`).
    cell.waker_drops.fetch_add(1, Release);
}

/// A waker event's operation and the span id of its task.
///
/// Tokio's waker events have two fields, `op` (a string) and `task.id` (a
/// number): for an event of that shape the one string is the operation and
/// the one number the id, read without comparing field names (which cost
/// ~4 % of `init()` on a yield loop: two name lookups in the callsite's
/// metadata for every event). An event of another shape (another Tokio
/// version) has its fields read by name.
pub(crate) fn read_waker_event(event: &Event<'_>) -> Option<(WakerOp, u64)> {
    struct Fields {
        op: Option<WakerOp>,
        span: Option<u64>,
        /// Not Tokio's two-field shape: match the fields by name.
        by_name: bool,
    }
    impl Visit for Fields {
        fn record_u64(&mut self, field: &Field, value: u64) {
            if !self.by_name || field.name() == "task.id" {
                self.span = Some(value);
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if !self.by_name || field.name() == "op" {
                self.op = WakerOp::parse(value);
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
    }
    let mut fields = Fields {
        op: None,
        span: None,
        by_name: event.metadata().fields().len() != 2,
    };
    event.record(&mut fields);
    Some((fields.op?, fields.span?))
}

/// How a task whose span just closed ended. Tokio enters the span once more
/// to drop the future: that was not a poll, and is taken back from the count,
/// the busy time and the poll histogram (on the thread that just dropped it),
/// as many times as it counted there (`last_weight`: 0 when it was not timed,
/// more than 1 when it was a sample, see `capture::poll`).
pub(crate) fn end_of(cell: &TaskCell) -> TaskEnd {
    let polls = cell.polls.load(Relaxed);
    if polls > 0 {
        cell.polls.store(polls - 1, Relaxed);
        let weight = cell.last_weight.load(Relaxed);
        if weight > 0 {
            let took = clock::since(
                cell.last_poll_start.load(Relaxed),
                cell.last_poll_end.load(Relaxed),
            );
            let busy = cell.busy_ns.load(Relaxed);
            cell.busy_ns
                .store(busy.saturating_sub(took * u64::from(weight)), Relaxed);
            let bucket = &cell.histogram[poll_histogram_bucket(took)];
            bucket.store(
                bucket.load(Relaxed).saturating_sub(u32::from(weight)),
                Relaxed,
            );
        }
    }
    let prev_end = cell.prev_poll_end.load(Relaxed);
    let gap = if prev_end == 0 {
        u64::MAX
    } else {
        clock::since(prev_end, cell.last_poll_start.load(Relaxed))
    };
    if polls > 1 && gap < COMPLETION_GAP_NS {
        TaskEnd::Completed
    } else {
        TaskEnd::Cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes its text in pieces, as `Display` implementations may.
    struct Pieces(&'static [&'static str]);
    impl fmt::Debug for Pieces {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.iter().try_for_each(|p| f.write_str(p))
        }
    }

    #[test]
    fn displays_as_compares_piece_by_piece() {
        assert!(displays_as(&Pieces(&["block_on"]), "block_on"));
        assert!(displays_as(&Pieces(&["block", "_", "on"]), "block_on"));
        assert!(!displays_as(&Pieces(&["task"]), "block_on"));
        assert!(!displays_as(&Pieces(&["block_on", "_x"]), "block_on"));
        assert!(!displays_as(&Pieces(&["block"]), "block_on"));
        assert!(!displays_as(&Pieces(&["x", "block_on"]), "block_on"));
    }

    #[test]
    fn waker_ops_count_clones_drops_and_self_wakes() {
        let cell = TaskCell::new(1, None, crate::model::task::SpawnLocation::UNKNOWN, None);
        WakerOp::Clone.apply(&cell, false);
        WakerOp::Clone.apply(&cell, true);
        assert_eq!(cell.wakers(), 2);
        WakerOp::Wake.apply(&cell, false); // consumes its waker
        WakerOp::WakeByRef.apply(&cell, true); // inside its own poll
        WakerOp::Wake.apply(&cell, true);
        assert_eq!(cell.waker_clones.load(Relaxed), 2);
        assert_eq!(cell.waker_drops.load(Relaxed), 2);
        assert_eq!(cell.wakers(), 0);
        assert_eq!(cell.wakes.load(Relaxed), 3);
        assert_eq!(cell.self_wakes.load(Relaxed), 2);
        // A drop whose clone was never seen does not make the count negative.
        WakerOp::Drop.apply(&cell, false);
        assert_eq!(cell.wakers(), 0);
    }

    #[test]
    fn waker_ops_parse() {
        assert_eq!(WakerOp::parse("waker.clone"), Some(WakerOp::Clone));
        assert_eq!(
            WakerOp::parse("waker.wake_by_ref"),
            Some(WakerOp::WakeByRef)
        );
        assert_eq!(WakerOp::parse("waker.drop"), Some(WakerOp::Drop));
        assert_eq!(WakerOp::parse("waker.wake"), Some(WakerOp::Wake));
        assert_eq!(WakerOp::parse("waker.other"), None);
        assert_eq!(WakerOp::parse("waker.wakeX"), None);
    }

    /// What `read_waker_event` makes of the events `emit` sends, in order.
    fn read_events(emit: impl FnOnce()) -> Vec<Option<(WakerOp, u64)>> {
        use std::sync::{Arc, Mutex};
        type Seen = Arc<Mutex<Vec<Option<(WakerOp, u64)>>>>;
        struct Reader(Seen);
        impl tracing::Subscriber for Reader {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, event: &Event<'_>) {
                self.0.lock().unwrap().push(read_waker_event(event));
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::with_default(Reader(Arc::clone(&seen)), emit);
        seen.lock().unwrap().clone()
    }

    #[test]
    fn a_waker_event_of_tokios_shape_is_read_by_type() {
        let seen = read_events(|| {
            // Tokio's form (`runtime/task/waker.rs`): the op, then the task's span id.
            tracing::trace!(target: "tokio::task::waker", op = "waker.clone", task.id = 42u64);
            // Two fields, the number first and named otherwise: still by type.
            tracing::trace!(target: "tokio::task::waker", id = 7u64, op = "waker.wake");
            // Not a waker operation: ignored.
            tracing::trace!(target: "tokio::task::waker", op = "waker.other", task.id = 3u64);
        });
        assert_eq!(
            seen,
            [Some((WakerOp::Clone, 42)), Some((WakerOp::Wake, 7)), None]
        );
    }

    #[test]
    fn a_waker_event_of_another_shape_is_read_by_name() {
        let seen = read_events(|| {
            // Another number and another string after the two that count
            // (read by type, the last of each would win: `(Drop, 5)`).
            tracing::trace!(
                target: "tokio::task::waker",
                op = "waker.wake_by_ref",
                task.id = 9u64,
                poll = 5u64,
                task.name = "waker.drop"
            );
            // Neither field named as Tokio names them.
            tracing::trace!(target: "tokio::task::waker", what = "waker.drop");
        });
        assert_eq!(seen, [Some((WakerOp::WakeByRef, 9)), None]);
    }

    #[cfg(not(miri))]
    mod weights {
        //! With sampled poll timing (see `capture::poll`).
        use super::super::end_of;
        use crate::capture::poll::testing::{poll_many, session, timed};
        use crate::capture::poll::{begin_span as begin, end};
        use crate::clock;
        use crate::settings::PollTiming;
        use std::sync::atomic::Ordering::Relaxed;

        /// The tracing capture takes back the span's last entry (the future's
        /// drop) as many times as it counted: once when timed exactly, not at
        /// all when it was not timed.
        #[test]
        fn the_last_entry_is_taken_back_as_many_times_as_it_counted() {
            // Every poll timed: 3 polls and the drop, which is taken back once.
            let cell = poll_many(&session(PollTiming::Every), 4, || {});
            assert_eq!(timed(&cell), 4);
            end_of(&cell);
            assert_eq!((cell.polls.load(Relaxed), timed(&cell)), (3, 3));

            // Sampled, the drop not timed (a tick from another test could time
            // it: try again until it is not): nothing taken from the histogram.
            let mut s = session(PollTiming::Sampled);
            s.sample_mask = u32::MAX; // never a sample
            // Short polls timed once each (a tick passes in each): mostly in the
            // histogram's first bucket, where an untimed drop (0 ns) would be
            // taken from.
            let cell = poll_many(&s, 20, clock::tick);
            let before = cell.histogram();
            assert_eq!(timed(&cell), 20);
            assert!(before[0] > 0, "{before:?}");
            for _ in 0..100 {
                clock::tick();
                begin(1, &cell);
                end(&s, 1);
                if cell.last_weight.load(Relaxed) == 0 {
                    break;
                }
                // Timed after all: take it back as the capture would.
                end_of(&cell);
            }
            assert_eq!(cell.last_weight.load(Relaxed), 0);
            end_of(&cell);
            assert_eq!(cell.polls.load(Relaxed), 20);
            assert_eq!(cell.histogram(), before);
        }
    }
}
