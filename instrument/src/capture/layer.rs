//! Capture through Tokio's tracing instrumentation (`--cfg tokio_unstable` and
//! Tokio's `tracing` feature): the `runtime.spawn` span of each task is entered
//! for every poll, and waker events (target `tokio::task::waker`) tell wakes
//! and the number of live wakers. This is what works with `#[tokio::main]`.
//!
//! The layer is wrapped in a per-layer filter that enables only those
//! callsites, so it never turns on any other span or event in the app.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::capture::poll;
use crate::core::Core;
use crate::task::{SpawnLocation, TaskCell, TaskEnd};

/// A final poll and the drop of the task's future closer together than this
/// mean the task completed; a longer gap means it was cancelled while pending.
const COMPLETION_GAP_NS: u64 = 200_000;

/// The taskscope layer: the capture of Tokio tasks for a `tracing` subscriber.
/// Get it from [`crate::Builder::layer`].
pub struct TaskLayer {
    core: Arc<Core>,
}

/// The per-layer filter of [`TaskLayer`]: Tokio's task spans and waker events only.
pub struct TaskFilter<S> {
    _subscriber: PhantomData<fn(S)>,
}

impl<S> fmt::Debug for TaskFilter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaskFilter")
    }
}

impl fmt::Debug for TaskLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaskLayer")
    }
}

fn is_task_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == "tokio::task" && meta.name() == "runtime.spawn"
}

fn is_waker_event(meta: &Metadata<'_>) -> bool {
    meta.is_event() && meta.target() == "tokio::task::waker"
}

impl<S> TaskFilter<S> {
    pub(crate) fn new() -> Self {
        TaskFilter {
            _subscriber: PhantomData,
        }
    }
}

impl<S: Subscriber> Filter<S> for TaskFilter<S> {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        is_task_span(meta) || is_waker_event(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_task_span(meta) || is_waker_event(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
}

impl TaskLayer {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        core.wakes_known.store(true, Relaxed);
        TaskLayer { core }
    }
}

#[derive(Default)]
struct SpawnFields {
    id: Option<u64>,
    name: Option<String>,
    kind: Option<String>,
    file: Option<String>,
    line: u32,
    col: u32,
}

impl Visit for SpawnFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "task.id" => self.id = Some(value),
            "loc.line" => self.line = value as u32,
            "loc.col" => self.col = value as u32,
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if value >= 0 {
            self.record_u64(field, value as u64);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "loc.file" => self.file = Some(value.to_owned()),
            "task.name" => self.name = Some(value.to_owned()),
            "kind" => self.kind = Some(value.to_owned()),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "task.name" => self.name = Some(format!("{value:?}")),
            "kind" => self.kind = Some(format!("{value:?}")),
            "loc.file" => self.file = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

#[derive(Default)]
struct WakerFields {
    op: Option<&'static str>,
    span: Option<u64>,
}

impl Visit for WakerFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "task.id" {
            self.span = Some(value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "op" {
            self.op = match value {
                "waker.clone" => Some("clone"),
                "waker.drop" => Some("drop"),
                "waker.wake" => Some("wake"),
                "waker.wake_by_ref" => Some("wake_by_ref"),
                _ => None,
            };
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

impl<S> Layer<S> for TaskLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !is_task_span(attrs.metadata()) || crate::internal::is_internal_thread() {
            return;
        }
        let mut fields = SpawnFields::default();
        attrs.record(&mut fields);
        let Some(task_id) = fields.id else { return };
        let spawned_at = match &fields.file {
            Some(file) => SpawnLocation {
                file: self.core.registry.intern_file(file),
                line: fields.line,
                col: fields.col,
            },
            None => SpawnLocation::UNKNOWN,
        };
        let name = fields.name.filter(|n| !n.is_empty());
        let mut cell = TaskCell::new(
            task_id,
            name.map(String::into_boxed_str),
            spawned_at,
            Core::current_task_id(),
        );
        // `#[tokio::main]`'s body and other `block_on` futures: not spawned tasks.
        cell.is_block_on = fields.kind.as_deref() == Some("block_on");
        let cell = Arc::new(cell);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Arc::clone(&cell));
        }
        self.core.registry.add(id.into_u64(), cell);
    }

    #[inline]
    fn on_enter(&self, id: &Id, _: Context<'_, S>) {
        let key = id.into_u64();
        self.core
            .registry
            .table
            .with(key, |cell| poll::begin(key, cell));
    }

    #[inline]
    fn on_exit(&self, id: &Id, _: Context<'_, S>) {
        poll::end(&self.core, id.into_u64());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !is_waker_event(event.metadata()) {
            return;
        }
        let mut fields = WakerFields::default();
        event.record(&mut fields);
        let (Some(op), Some(span)) = (fields.op, fields.span) else {
            return;
        };
        let Some(span) = ctx.span(&Id::from_u64(span)) else {
            return;
        };
        let extensions = span.extensions();
        let Some(cell) = extensions.get::<Arc<TaskCell>>() else {
            return;
        };
        match op {
            "clone" => {
                cell.wakers.fetch_add(1, Relaxed);
            }
            "drop" => {
                let _ = cell
                    .wakers
                    .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
            }
            "wake" => {
                let _ = cell
                    .wakers
                    .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
                poll::woken(cell);
            }
            _ => poll::woken(cell),
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let key = id.into_u64();
        let Some(span) = ctx.span(&id) else { return };
        let extensions = span.extensions();
        let Some(cell) = extensions.get::<Arc<TaskCell>>() else {
            return;
        };
        // Tokio enters the span once more to drop the future: that was not a poll.
        let polls = cell.polls.load(Relaxed);
        if polls > 0 {
            cell.polls.store(polls - 1, Relaxed);
        }
        let end = if polls > 1 && cell.last_gap_ns.load(Relaxed) < COMPLETION_GAP_NS {
            TaskEnd::Completed
        } else {
            TaskEnd::Cancelled
        };
        drop(extensions);
        self.core.task_ended(key, end, false);
    }
}
