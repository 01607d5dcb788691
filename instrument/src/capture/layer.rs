//! Capture through Tokio's tracing instrumentation (`--cfg tokio_unstable` and
//! Tokio's `tracing` feature) as a layer, for apps that build their own
//! `tracing_subscriber::registry()`: the `runtime.spawn` span of each task is
//! entered for every poll, and waker events (target `tokio::task::waker`) tell
//! wakes and the number of live wakers. [`crate::init`] reads the same spans and
//! events with [`super::subscriber`] instead, which skips the registry's
//! per-span bookkeeping and costs a fraction of this per poll.
//!
//! The layer is wrapped in a per-layer filter that enables only those
//! callsites, so it never turns on any other span or event in the app.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tracing::span::{Attributes, Id};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::capture::poll;
use crate::capture::tokio_spans::{Spawn, end_of, is_task_span, is_waker_event, read_waker_event};
use crate::detect::events;
use crate::model::record_pool;
use crate::model::task::TaskCell;
use crate::session::Session;

/// The taskscope layer: the capture of Tokio tasks for a `tracing` subscriber.
/// Get it from [`crate::Builder::layer`].
pub struct TaskLayer {
    session: Arc<Session>,
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
    pub(crate) fn new(session: Arc<Session>) -> Self {
        session.wakes_known.store(true, Relaxed);
        TaskLayer { session }
    }
}

impl<S> Layer<S> for TaskLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !is_task_span(attrs.metadata()) || crate::internal::is_internal_thread() {
            return;
        }
        let spawn = Spawn::read(attrs, &self.session.registry);
        let Some(task_id) = spawn.id else { return };
        let cell = record_pool::new_cell(spawn.into_cell(task_id, poll::current_task_id()));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Arc::clone(&cell));
        }
        self.session.registry.add_shared(id.into_u64(), cell);
    }

    #[inline]
    fn on_enter(&self, id: &Id, _: Context<'_, S>) {
        let key = id.into_u64();
        // SAFETY: Tokio enters a task's span for its poll; the span (and so
        // the task's record) is closed only after that, never during the enter.
        unsafe {
            self.session
                .registry
                .with(key, |cell| poll::begin_span(key, cell))
        };
    }

    #[inline]
    fn on_exit(&self, id: &Id, _: Context<'_, S>) {
        poll::end(&self.session, id.into_u64());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !is_waker_event(event.metadata()) {
            return;
        }
        let Some((op, span)) = read_waker_event(event) else {
            return;
        };
        // The registry's span reference keeps the record alive while it is used.
        if let Some(span) = ctx.span(&Id::from_u64(span))
            && let Some(cell) = span.extensions().get::<Arc<TaskCell>>()
        {
            op.apply(cell, poll::current_key() == Some(span.id().into_u64()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let key = id.into_u64();
        let Some(span) = ctx.span(&id) else { return };
        let extensions = span.extensions();
        let Some(cell) = extensions.get::<Arc<TaskCell>>() else {
            return;
        };
        let end = end_of(cell);
        drop(extensions);
        events::task_ended(&self.session, key, end, false);
    }
}
