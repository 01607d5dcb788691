//! The `taskscope.v1.Taskscope` service: Watch, ListTasks, TaskDetail.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::clock;
use crate::core::Core;
use crate::findings::FindingKind;
use crate::proto;
use crate::proto::taskscope_server::Taskscope;
use crate::server::chunk;
use crate::server::convert;
use crate::server::delta;
use crate::server::publisher::{Hub, UpdateStream};
use crate::task::{POLL_HISTOGRAM_BUCKETS, poll_histogram_bucket_limit};

/// Why a task has no async stack in this version.
pub(crate) const ASYNC_STACK_UNAVAILABLE: &str =
    "not available: taskscope does not take Tokio task dumps (--cfg tokio_taskdump) yet";

/// The service, on the server's runtime.
pub(crate) struct Service {
    core: Arc<Core>,
    hub: Arc<Hub>,
}

impl Service {
    pub(crate) fn new(core: Arc<Core>, hub: Arc<Hub>) -> Service {
        Service { core, hub }
    }
}

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

type ListStream = tokio_stream::Iter<std::vec::IntoIter<Result<proto::TaskList, Status>>>;

#[tonic::async_trait]
impl Taskscope for Service {
    type WatchStream = UpdateStream;

    async fn watch(
        &self,
        request: Request<proto::WatchRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        check_version(request.get_ref().protocol_version)?;
        Ok(Response::new(self.hub.subscribe()))
    }

    type ListTasksStream = ListStream;

    async fn list_tasks(
        &self,
        request: Request<proto::ListTasksRequest>,
    ) -> Result<Response<ListStream>, Status> {
        let request = request.into_inner();
        check_version(request.protocol_version)?;
        let chunks = listing(&self.core, request.include_finished);
        Ok(Response::new(tokio_stream::iter(
            chunks.into_iter().map(Ok).collect::<Vec<_>>(),
        )))
    }

    async fn task_detail(
        &self,
        request: Request<proto::TaskDetailRequest>,
    ) -> Result<Response<proto::TaskDetailResponse>, Status> {
        let request = request.into_inner();
        check_version(request.protocol_version)?;
        detail(&self.core, request.id).map(Response::new)
    }
}

/// Every live task (and the finished history, if asked), as chunks.
pub(crate) fn listing(core: &Core, include_finished: bool) -> Vec<proto::TaskList> {
    let now = clock::now();
    let finished = core.registry.finished();
    let live = delta::alive(core.registry.live_cells(), &finished);
    let tasks = live.iter().map(|c| convert::live(c, now)).collect();
    let finished = if include_finished {
        finished.iter().map(convert::finished).collect()
    } else {
        Vec::new()
    };
    chunk::listing(
        &convert::app_info(core),
        tasks,
        finished,
        convert::unix_ns(clock::to_system_time(now)),
    )
}

/// Everything about task `id`, live or in the finished history.
pub(crate) fn detail(core: &Core, id: u64) -> Result<proto::TaskDetailResponse, Status> {
    let now = clock::now();
    let cells = core.registry.live_cells();
    let children = {
        let mut c: Vec<u64> = cells
            .iter()
            .filter(|c| c.parent == Some(id))
            .map(|c| c.id)
            .collect();
        c.sort_unstable();
        c
    };
    let (task, histogram) = match cells.iter().find(|c| c.id == id) {
        Some(cell) => {
            let counts = cell.histogram();
            let histogram = (0..POLL_HISTOGRAM_BUCKETS)
                .map(|k| proto::HistogramBucket {
                    upper_bound_ns: poll_histogram_bucket_limit(k),
                    count: u64::from(counts[k]),
                })
                .collect();
            (convert::live(cell, now), histogram)
        }
        None => match core
            .registry
            .finished()
            .iter()
            .rev()
            .find(|f| f.task.id == id)
        {
            Some(f) => (convert::finished(f), Vec::new()),
            None => {
                return Err(Status::not_found(format!(
                    "task {id} is neither alive nor in the finished history"
                )));
            }
        },
    };
    let slow_polls = core
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
