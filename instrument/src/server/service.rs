//! What the `taskscope.v1.Taskscope` calls answer: the version check and a
//! task's detail (the task listing is [`super::listing`]'s, the Watch stream
//! the publisher's; the calls are wired in [`super::routes`]).

use tonic::Status;

use crate::clock;
use crate::model::task::{POLL_HISTOGRAM_BUCKETS, poll_histogram_bucket_limit};
use crate::server::convert;
use crate::session::Session;
use taskscope_api::FindingKind;
use taskscope_api::proto;

/// Bytes of slow-poll findings a task's detail carries at most (the newest
/// ones; about a hundred with 64-frame stacks), well under the 4 MiB a
/// viewer reads.
pub(crate) const DETAIL_FINDINGS: usize = 1024 * 1024;

/// Why a task detail has no async stack when none was asked for.
pub(crate) const ASYNC_STACK_NOT_ASKED: &str =
    "not asked for: a task dump pauses the app's runtime, so it is taken only on request";

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
    // The newest slow polls of the task that fit in DETAIL_FINDINGS bytes, in
    // the order they came: a task with hundreds of deep stacks among the
    // recent findings would otherwise make a message no viewer reads.
    let mut slow_polls: Vec<String> = Vec::new();
    let mut room = DETAIL_FINDINGS;
    for finding in session.pipeline.recent().iter().rev().filter(|f| {
        matches!(f.kind, FindingKind::SlowPoll { .. })
            && f.task.as_ref().is_some_and(|t| t.id == id)
    }) {
        let json = convert::finding(finding);
        if json.len() > room {
            break;
        }
        room -= json.len();
        slow_polls.push(json);
    }
    slow_polls.reverse();
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
        async_stack_unavailable: ASYNC_STACK_NOT_ASKED.to_string(),
        async_stack_frames: None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use prost::Message;
    use taskscope_api::{Finding, StackFrame};

    use super::*;
    use crate::model::task::{SpawnLocation, TaskCell};
    use crate::settings::{ServerAddr, Settings};

    #[test]
    fn a_detail_carries_the_newest_slow_polls_that_fit() {
        let (session, sinks) = Session::new(Settings {
            server_addr: ServerAddr::Off,
            ..Settings::default()
        });
        std::thread::spawn(move || sinks.run());
        let session = Arc::new(session);
        let loc = SpawnLocation {
            file: "src/detail_test.rs",
            line: 1,
            col: 1,
        };
        session
            .registry
            .add(7, TaskCell::new(7, Some("slow".into()), loc, None));
        let task = session.registry.get(7).unwrap().task_ref();
        // The whole recent list: slow polls of this task with 64 long frames each.
        let frame = StackFrame {
            function: format!("app::{}::handler", "deeply::nested::module".repeat(4)),
            file: Some("src/server/connections/handler.rs".into()),
            line: Some(123),
        };
        // (The recent list keeps the last 1,000.)
        for poll in 0..1_000u64 {
            session.submit(Finding::new(
                FindingKind::SlowPoll {
                    duration_ms: 150.0,
                    threshold_ms: 100,
                    thread: "worker".into(),
                    stack: vec![frame.clone(); 64],
                    stack_unavailable: None,
                    stack_truncated: false,
                    in_progress: false,
                    poll,
                },
                Some(task.clone()),
            ));
        }
        assert!(session.flush(Duration::from_secs(10)));
        let all: usize = session
            .pipeline
            .recent()
            .iter()
            .map(|f| convert::finding(f).len())
            .sum();
        assert!(all > 4 * 1024 * 1024, "{all} bytes: more than a message");

        let detail = detail(&session, 7).unwrap();
        assert!(detail.encoded_len() <= DETAIL_FINDINGS + 64 * 1024);
        assert!(detail.slow_polls.len() > 10, "{}", detail.slow_polls.len());
        // The newest, in order.
        let last: Finding = serde_json::from_str(detail.slow_polls.last().unwrap()).unwrap();
        assert!(matches!(last.kind, FindingKind::SlowPoll { poll, .. } if poll == 999));
        crate::detect::events::task_ended(
            &session,
            7,
            crate::model::task::TaskEnd::Completed,
            false,
        );
    }
}
