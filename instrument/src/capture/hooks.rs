//! Capture through Tokio's runtime task hooks (`on_task_spawn`,
//! `on_before_task_poll`, `on_after_task_poll`, `on_task_terminate`).
//!
//! The cheapest way to see every task: no span, no event, one lock-free table
//! lookup per poll. Tokio gives the hooks no task name and no wake-ups, so on
//! this path names are null, wakes are 0, and a task between polls is `idle`.

use std::sync::Arc;

use tokio::runtime::TaskMeta;

use crate::capture::poll;
use crate::detect::events;
use crate::model::task::{TaskCell, TaskEnd, tokio_task_id};
use crate::session::Session;

/// Installs the hooks on `builder`.
pub(crate) fn install(session: &Arc<Session>, builder: &mut tokio::runtime::Builder) {
    let on_spawn = Arc::clone(session);
    let on_before = Arc::clone(session);
    let on_after = Arc::clone(session);
    let on_end = Arc::clone(session);
    builder
        .on_task_spawn(move |meta| spawned(&on_spawn, meta))
        .on_before_task_poll(move |meta| {
            let key = task_id(meta.id());
            // SAFETY: Tokio calls this hook inside the task's poll, before its
            // end (`on_task_terminate` comes later, on this thread or after
            // the poll): the task cannot end during the lookup.
            unsafe { on_before.registry.with(key, |cell| poll::begin(key, cell)) };
        })
        .on_after_task_poll(move |meta| poll::end(&on_after, task_id(meta.id())))
        .on_task_terminate(move |meta| {
            let key = task_id(meta.id());
            // Inside its own poll: the task finishes when that poll's frame ends
            // (the hook runs before `on_after_task_poll`). Outside: dropped by shutdown.
            if !poll::mark_ended_in_poll(key) {
                events::task_ended(&on_end, key, TaskEnd::Cancelled, true);
            }
        });
}

fn spawned(session: &Session, meta: &TaskMeta<'_>) {
    // Spawned by taskscope's own threads (its server asking the app's
    // runtime for a task dump): not the app's task.
    if crate::internal::is_internal_thread() {
        return;
    }
    let id = task_id(meta.id());
    let cell = TaskCell::new(id, None, meta.spawned_at().into(), poll::current_task_id());
    session.registry.add(id, cell);
}

/// Tokio's task id as a number, without formatting it (see [`tokio_task_id`]).
pub(crate) fn task_id(id: tokio::task::Id) -> u64 {
    tokio_task_id(id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_id_matches_tokio_display() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = rt.spawn(async {});
        let id = handle.id();
        assert_eq!(super::task_id(id).to_string(), id.to_string());
        rt.block_on(handle).unwrap();
    }
}
