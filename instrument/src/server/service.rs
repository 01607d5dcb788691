//! What the `taskscope.v1.Taskscope` calls answer: the version check, the
//! task listing and a task's detail (the Watch stream is the publisher's; the
//! calls are wired in [`super::routes`]).

use tonic::Status;

use crate::clock;
use crate::model::task::{POLL_HISTOGRAM_BUCKETS, poll_histogram_bucket_limit};
use crate::server::chunk;
use crate::server::convert;
use crate::server::delta;
use crate::session::Session;
use taskscope_api::FindingKind;
use taskscope_api::proto;

/// Why a task has no async stack in this version.
pub(crate) const ASYNC_STACK_UNAVAILABLE: &str =
    "not available: taskscope does not take Tokio task dumps (--cfg tokio_taskdump) yet";

/// Refuses a viewer that speaks another protocol version, naming both.
pub(crate) fn check_version(viewer: u32) -> Result<(), Status> {
    if viewer == proto::PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "taskscope protocol mismatch: the app speaks protocol version {}, the viewer version {viewer}; \
             use a viewer from the same taskscope release as the app",
            proto::PROTOCOL_VERSION
        )))
    }
}

/// Every live task (and the finished history, if asked), as chunks.
pub(crate) fn listing(session: &Session, include_finished: bool) -> Vec<proto::TaskList> {
    let now = clock::now();
    let finished = session.registry.finished();
    let live = delta::alive(session.registry.live_cells(), &finished);
    let tasks = live.iter().map(|c| convert::live(c, now)).collect();
    let finished = if include_finished {
        finished.iter().map(convert::finished).collect()
    } else {
        Vec::new()
    };
    chunk::listing(
        &convert::app_info(session),
        tasks,
        finished,
        convert::unix_ns(clock::to_system_time(now)),
    )
}

/// Everything about task `id`, live or in the finished history.
pub(crate) fn detail(session: &Session, id: u64) -> Result<proto::TaskDetailResponse, Status> {
    let now = clock::now();
    // One walk, without a lock; a reference is taken to the task's record only.
    let mut children = Vec::new();
    let mut found = None;
    session.registry.for_each_live(|_, cell| {
        if cell.parent() == Some(id) {
            children.push(cell.id);
        }
        if cell.id == id && found.is_none() {
            found = Some(std::sync::Arc::clone(cell));
        }
    });
    children.sort_unstable();
    let (task, histogram) = match found {
        Some(cell) => {
            let counts = cell.histogram();
            let histogram = (0..POLL_HISTOGRAM_BUCKETS)
                .map(|k| proto::HistogramBucket {
                    upper_bound_ns: poll_histogram_bucket_limit(k),
                    count: u64::from(counts[k]),
                })
                .collect();
            (convert::live(&cell, now), histogram)
        }
        None => match session
            .registry
            .finished()
            .iter()
            .rev()
            .find(|f| f.task.id == id)
        {
            Some(f) => (convert::finished(f), Vec::new()),
            None => {
                return Err(Status::not_found(format!(
                    "task {id} is neither alive nor in the finished history \
                     (it never existed, or it ended too long ago)"
                )));
            }
        },
    };
    let slow_polls = session
        .pipeline
        .recent()
        .iter()
        .filter(|f| {
            matches!(f.kind, FindingKind::SlowPoll { .. })
                && f.task.as_ref().is_some_and(|t| t.id == id)
        })
        .map(convert::finding)
        .collect();
    Ok(proto::TaskDetailResponse {
        protocol_version: proto::PROTOCOL_VERSION,
        wakes: task.wakes,
        wakers: task.wakers,
        parent: task.parent,
        task: Some(task),
        histogram,
        slow_polls,
        children,
        async_stack: None,
        async_stack_unavailable: ASYNC_STACK_UNAVAILABLE.to_string(),
    })
}
