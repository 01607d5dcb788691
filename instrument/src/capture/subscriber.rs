//! The capture [`crate::init`] installs: a `tracing` subscriber that handles
//! Tokio's task spans and waker events itself and hands everything else to an
//! inner subscriber (the stderr log).
//!
//! Why not a layer: a layer on `tracing_subscriber`'s registry pays for the
//! registry's span slab, its per-thread span stack, the per-layer filter
//! bookkeeping and an extensions lock for every poll and every wake: about
//! 2,500 instructions per poll, measured, against ~1,500 for the poll itself.
//! Here a poll is a table lookup and the [`poll`] hot path, and a wake a field
//! read and one update of the task's record.
//!
//! Span ids: a task span's id is Tokio's task id with bit [`TAG_BIT`] set.
//! `tracing_subscriber`'s registry never makes such an id (its ids are a slab
//! index plus one: bit 50 is the top bit of a thread index below 4,096), so an
//! id tells which side it belongs to without a lookup. Task spans never reach
//! the inner subscriber (Tokio creates them with no parent and nothing nests
//! in them), so the log's span context and `Span::current()` are the app's own.

use std::any::TypeId;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_core::span::Current;

use crate::capture::poll;
use crate::capture::tokio_spans::{Spawn, end_of, is_task_span, is_waker_event, read_waker_event};
use crate::detect::events;
use crate::session::Session;

/// The bit that marks a span id as a task span of taskscope's.
const TAG_BIT: u32 = 50;
const LOW: u64 = (1 << TAG_BIT) - 1;

/// The span id of Tokio task `task_id`: the tag bit inserted at [`TAG_BIT`].
#[inline]
fn span_id(task_id: u64) -> Option<Id> {
    let bits = ((task_id & !LOW) << 1) | (1 << TAG_BIT) | (task_id & LOW);
    // Task ids below 2^63: Tokio counts them from 1.
    (task_id >> 63 == 0).then(|| Id::from_u64(bits))
}

/// The task id of a task span id, or `None` for an id of the inner subscriber.
#[inline]
fn task_key(id: u64) -> Option<u64> {
    (id & (1 << TAG_BIT) != 0).then_some(((id >> (TAG_BIT + 1)) << TAG_BIT) | (id & LOW))
}

/// A subscriber that captures Tokio's tasks and forwards the rest to `S`.
pub(crate) struct TaskSubscriber<S> {
    session: Arc<Session>,
    inner: S,
    /// The inner subscriber made an id with the tag bit (never seen): said once.
    collision_reported: AtomicBool,
}

impl<S> TaskSubscriber<S> {
    pub(crate) fn new(session: Arc<Session>, inner: S) -> Self {
        session.wakes_known.store(true, Relaxed);
        TaskSubscriber {
            session,
            inner,
            collision_reported: AtomicBool::new(false),
        }
    }

    fn spawned(&self, attrs: &Attributes<'_>) -> Id {
        let spawn = Spawn::read(attrs, &self.session.registry);
        // A span without Tokio's task id (another Tokio version?): an id that
        // matches no task, so its polls are not recorded.
        let task_id = spawn.id.unwrap_or(0);
        let Some(id) = span_id(task_id) else {
            return span_id(0).expect("0 has an id");
        };
        if task_id != 0 && !crate::internal::is_internal_thread() {
            let cell = spawn.into_cell(task_id, poll::current_task_id());
            self.session.registry.add(task_id, cell);
        }
        id
    }

    fn closed(&self, key: u64) -> bool {
        // Pinned: clones of the span may be closed on several threads at
        // once, and the last close ends the task while another may still
        // be reading the record here.
        let end = self.session.registry.with_pinned(key, |cell| {
            // A clone closed (clones may be made and closed on any thread), or the last.
            let clone_closed = cell
                .span_clones
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok();
            (!clone_closed).then(|| end_of(cell))
        });
        match end {
            Some(Some(end)) => {
                events::task_ended(&self.session, key, end, false);
                true
            }
            Some(None) => false,
            None => true,
        }
    }

    fn waker_event(&self, event: &Event<'_>) {
        let Some((op, span)) = read_waker_event(event) else {
            return;
        };
        let Some(key) = task_key(span) else { return };
        // Its own waker, inside its own poll (a yield, a waker registered with
        // a channel): the record is the poll's. Otherwise another thread may be
        // ending the task right now: read the record pinned.
        if poll::with_current(|current, cell| {
            if current == key {
                op.apply(cell, true);
                true
            } else {
                false
            }
        }) != Some(true)
        {
            self.session
                .registry
                .with_pinned(key, |cell| op.apply(cell, false));
        }
    }

    #[cold]
    fn report_collision(&self, id: &Id) {
        if !self.collision_reported.swap(true, Relaxed) {
            tracing::warn!(
                target: "taskscope",
                "the tracing registry made span id {:#x}, which looks like a task span to taskscope; that span's enter and exit are not logged",
                id.into_u64()
            );
        }
    }
}

impl<S: Subscriber> Subscriber for TaskSubscriber<S> {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_task_span(meta) || is_waker_event(meta) {
            Interest::always()
        } else {
            self.inner.register_callsite(meta)
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        is_task_span(meta) || is_waker_event(meta) || self.inner.enabled(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // Tokio's task spans and waker events are TRACE.
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        if is_task_span(attrs.metadata()) {
            return self.spawned(attrs);
        }
        let id = self.inner.new_span(attrs);
        if task_key(id.into_u64()).is_some() {
            self.report_collision(&id);
        }
        id
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if task_key(span.into_u64()).is_none() {
            self.inner.record(span, values);
        }
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        if task_key(span.into_u64()).is_none() && task_key(follows.into_u64()).is_none() {
            self.inner.record_follows_from(span, follows);
        }
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        is_waker_event(event.metadata()) || self.inner.event_enabled(event)
    }

    fn event(&self, event: &Event<'_>) {
        if is_waker_event(event.metadata()) {
            self.waker_event(event);
        } else {
            self.inner.event(event);
        }
    }

    #[inline]
    fn enter(&self, span: &Id) {
        match task_key(span.into_u64()) {
            Some(key) => {
                // SAFETY: Tokio enters a task's span for its poll, and closes
                // it only after: the task cannot end during this lookup.
                unsafe {
                    self.session
                        .registry
                        .with(key, |cell| poll::begin_span(key, cell))
                };
            }
            None => self.inner.enter(span),
        }
    }

    #[inline]
    fn exit(&self, span: &Id) {
        match task_key(span.into_u64()) {
            Some(key) => poll::end(&self.session, key),
            None => self.inner.exit(span),
        }
    }

    fn clone_span(&self, id: &Id) -> Id {
        match task_key(id.into_u64()) {
            Some(key) => {
                self.session.registry.with_pinned(key, |cell| {
                    cell.span_clones.fetch_add(1, Relaxed);
                });
                id.clone()
            }
            None => self.inner.clone_span(id),
        }
    }

    fn try_close(&self, id: Id) -> bool {
        match task_key(id.into_u64()) {
            Some(key) => self.closed(key),
            None => self.inner.try_close(id),
        }
    }

    fn current_span(&self) -> Current {
        self.inner.current_span()
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: forwarded as is; the inner subscriber upholds the contract.
        unsafe { self.inner.downcast_raw(id) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_round_trip_through_span_ids() {
        for task_id in [1, 2, 41, LOW, LOW + 1, 1 << 55, (1 << 63) - 1] {
            let id = span_id(task_id).unwrap().into_u64();
            assert_ne!(id & (1 << TAG_BIT), 0);
            assert_eq!(task_key(id), Some(task_id), "{task_id:#x}");
        }
        assert!(span_id(1 << 63).is_none());
    }

    #[test]
    fn registry_span_ids_are_never_tagged() {
        use tracing_subscriber::registry::Registry;
        let registry = Registry::default();
        // Many spans from many threads: the ids cover slab pages and thread indices.
        let dispatch = Dispatch::new(registry);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    tracing::dispatcher::with_default(&dispatch, || {
                        let spans: Vec<_> =
                            (0..5_000).map(|i| tracing::info_span!("s", i)).collect();
                        for span in &spans {
                            let id = span.id().expect("enabled").into_u64();
                            assert_eq!(task_key(id), None, "{id:#x}");
                        }
                    });
                });
            }
        });
    }
}
