//! One-shot calls: [`list_tasks`] and [`task_detail`] (the live stream is
//! [`super::watch()`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use taskscope_api::ServerAddr;
use taskscope_api::proto::{self, PROTOCOL_VERSION};

use prost::Message;

use crate::client::assemble::{ChunkError, Tally};
use crate::client::auth::{Token, env_token};
use crate::client::connect;
use crate::client::console;
use crate::client::convert::{self, TaskKind};
use crate::client::error::ClientError;
use crate::client::probe::diagnose;
use crate::client::stacks::{AsyncStack, Stacks};
use crate::client::watch;
use crate::state::model::{AppInfo, Task, TaskDetail};

/// How long a one-shot call ([`list_tasks`], [`task_detail`]) may take in all.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A task of a listing, with its kind.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedTask {
    /// The task.
    pub task: Task,
    /// Spawned task, or a runtime's `block_on` future.
    pub kind: TaskKind,
}

/// Every live task of an app, once.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    /// The app.
    pub app: AppInfo,
    /// Its live tasks, by id (taskscope's own are never among them).
    pub tasks: Vec<ListedTask>,
    /// When the app took the listing.
    pub at: SystemTime,
    /// Where each task waits, when asked for ([`list_tasks_and_stacks`]).
    pub stacks: Option<Stacks>,
}

/// Lists the live tasks of the app at `addr`.
///
/// ```no_run
/// # async fn f() -> Result<(), taskscope_viewer::client::ClientError> {
/// let addr = taskscope_api::ServerAddr::parse("127.0.0.1:6670").unwrap();
/// for t in taskscope_viewer::client::list_tasks(&addr).await?.tasks {
///     println!("{} {:?} {}", t.task.id, t.task.name, t.task.spawned_at);
/// }
/// # Ok(()) }
/// ```
pub async fn list_tasks(addr: &ServerAddr) -> Result<Listing, ClientError> {
    list_tasks_with(addr, env_token()?.as_ref()).await
}

/// Like [`list_tasks`], sending `token` instead of the environment's.
pub async fn list_tasks_with(
    addr: &ServerAddr,
    token: Option<&Token>,
) -> Result<Listing, ClientError> {
    list(addr, token, false).await
}

/// Like [`list_tasks`], and where each task waits ([`Listing::stacks`]): the
/// app takes a Tokio task dump for it, which pauses its runtime while it
/// traces the tasks (see the README, "Where each task waits").
pub async fn list_tasks_and_stacks(addr: &ServerAddr) -> Result<Listing, ClientError> {
    list(addr, env_token()?.as_ref(), true).await
}

async fn list(
    addr: &ServerAddr,
    token: Option<&Token>,
    include_stacks: bool,
) -> Result<Listing, ClientError> {
    let shown = addr.to_string();
    let call = async {
        let mut client = connect::connect(addr, token).await?;
        let request = proto::ListTasksRequest {
            protocol_version: PROTOCOL_VERSION,
            include_finished: false,
            include_stacks,
        };
        let mut stream = client
            .list_tasks(request)
            .await
            .map_err(|s| ClientError::from_status(&shown, &s))?
            .into_inner();
        let mut listing: Option<(proto::TaskList, Vec<ListedTask>)> = None;
        let mut stacks: HashMap<u64, AsyncStack> = HashMap::new();
        // What the listing holds is bounded like an update of the live view.
        let mut tally = Tally::default();
        loop {
            let Some(mut chunk) = stream
                .message()
                .await
                .map_err(|s| ClientError::from_status(&shown, &s))?
            else {
                return Err(ClientError::Lost {
                    addr: shown.clone(),
                    detail: "the listing ended before its last part".into(),
                });
            };
            if let Err(ChunkError(detail)) = tally.add("listing", chunk.encoded_len()) {
                return Err(ClientError::Lost {
                    addr: shown.clone(),
                    detail,
                });
            }
            if chunk.protocol_version != PROTOCOL_VERSION {
                return Err(ClientError::Incompatible {
                    addr: shown.clone(),
                    reason: watch::mismatch(chunk.protocol_version),
                });
            }
            let expected = listing.as_ref().map_or(0, |(head, _)| head.chunk + 1);
            if chunk.chunk != expected {
                return Err(ClientError::Lost {
                    addr: shown.clone(),
                    detail: format!("listing part {} came instead of {expected}", chunk.chunk),
                });
            }
            stacks.extend(chunk.stacks.iter().map(|s| (s.id, convert::async_stack(s))));
            // Converted as each part comes, by value: its strings move.
            let tasks = std::mem::take(&mut chunk.tasks).into_iter().map(|t| {
                let kind = convert::kind(&t);
                ListedTask {
                    task: convert::task(t),
                    kind,
                }
            });
            match &mut listing {
                None => {
                    let collected = tasks.collect();
                    listing = Some((chunk, collected));
                }
                Some((head, all)) => {
                    all.extend(tasks);
                    head.chunk = chunk.chunk;
                    head.last = chunk.last;
                }
            }
            let (head, all) = listing.as_ref().expect("set above");
            if head.last {
                if all.len() as u64 != head.total_tasks {
                    return Err(ClientError::Lost {
                        addr: shown.clone(),
                        detail: format!(
                            "listing incomplete: {} of {} tasks",
                            all.len(),
                            head.total_tasks
                        ),
                    });
                }
                break;
            }
        }
        let (head, tasks) = listing.expect("at least one part");
        let stacks = include_stacks.then(|| {
            let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
            Stacks {
                by_task: stacks,
                unavailable: text(&head.stacks_unavailable),
                partial: text(&head.stacks_partial),
                pause: Duration::from_nanos(head.dump_pause_ns),
                at: (head.dump_at_unix_ns > 0).then(|| convert::time(head.dump_at_unix_ns)),
            }
        });
        Ok(Listing {
            app: head.app.as_ref().map(convert::app).unwrap_or_default(),
            tasks,
            at: convert::time(head.at_unix_ns),
            stacks,
        })
    };
    let listed = match with_timeout(&shown, "the task listing", call).await {
        // Not taskscope's service: perhaps tokio-console's (console-subscriber).
        Err(ClientError::NotTaskscope { .. }) => {
            let live = console::live_tasks(addr, token);
            with_timeout(&shown, "the task listing", live)
                .await
                .map(|(tasks, at)| Listing {
                    app: console::app_info(),
                    tasks: tasks
                        .into_iter()
                        .map(|(task, kind)| ListedTask { task, kind })
                        .collect(),
                    at,
                    stacks: include_stacks.then(|| Stacks {
                        unavailable: Some(
                            "a console-subscriber app: tokio-console's protocol has no task dumps"
                                .into(),
                        ),
                        ..Stacks::default()
                    }),
                })
        }
        listed => listed,
    };
    match listed {
        Ok(listing) => Ok(listing),
        Err(err) => Err(diagnose(addr, err).await),
    }
}

/// Everything about task `id` of the app at `addr`.
pub async fn task_detail(addr: &ServerAddr, id: u64) -> Result<TaskDetail, ClientError> {
    task_detail_with(addr, id, env_token()?.as_ref()).await
}

/// Like [`task_detail`], sending `token` instead of the environment's.
pub async fn task_detail_with(
    addr: &ServerAddr,
    id: u64,
    token: Option<&Token>,
) -> Result<TaskDetail, ClientError> {
    let shown = addr.to_string();
    let call = async {
        let client = connect::connect(addr, token).await?;
        watch::detail(client, &shown, id, false).await
    };
    match with_timeout(&shown, "the task detail", call).await {
        Ok(detail) => Ok(detail),
        Err(err) => Err(diagnose(addr, err).await),
    }
}

async fn with_timeout<T>(
    shown: &str,
    what: &str,
    call: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::TimedOut {
                addr: shown.to_string(),
                what: what.to_string(),
            })
        })
}
