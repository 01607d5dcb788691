//! The client of the server inside an instrumented app: the live [`watch()`]
//! (with reconnection), a one-shot [`list_tasks`], and [`task_detail`].
//!
//! Addresses come in the forms `host:port`, `http://host:port` and
//! `unix:/path` (see [`taskscope_api::ServerAddr::parse`]). Errors say, in a
//! person's words, what is at the address ([`ClientError`]).
//!
//! When the app requires a token, the viewer sends its own `TASKSCOPE_TOKEN`
//! ([`list_tasks`], [`task_detail`] and [`watch()`] read it from the
//! environment; the `_with` forms take it as an argument).
//!
//! - [`connect`]: channel and endpoint;
//! - [`auth`]: the token;
//! - `watch`: the Watch stream, reconnecting, feeding the model;
//! - [`assemble`]: chunks of a snapshot or delta back into one update;
//! - [`convert`]: protocol messages as the model's types;
//! - [`backoff`]: delays between attempts;
//! - [`probe`]: what answers at an address that does not speak gRPC;
//! - [`error`]: what went wrong.

pub mod assemble;
pub mod auth;
pub mod backoff;
pub mod connect;
pub mod convert;
pub mod error;
pub mod probe;
mod watch;

use std::time::{Duration, SystemTime};

use taskscope_api::ServerAddr;
use taskscope_api::proto::{self, PROTOCOL_VERSION};

pub use auth::{TOKEN_VAR, Token, TokenError};
pub use convert::TaskKind;
pub use error::ClientError;
pub use watch::{STALL, watch, watch_with};

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

/// The viewer's `TASKSCOPE_TOKEN`, as a [`ClientError`] when it cannot be sent.
pub fn env_token() -> Result<Option<Token>, ClientError> {
    Token::from_env().map_err(|e| ClientError::BadToken {
        reason: e.to_string(),
    })
}

/// Like [`list_tasks`], sending `token` instead of the environment's.
pub async fn list_tasks_with(
    addr: &ServerAddr,
    token: Option<&Token>,
) -> Result<Listing, ClientError> {
    let shown = addr.to_string();
    let call = async {
        let mut client = connect::connect(addr, token).await?;
        let request = proto::ListTasksRequest {
            protocol_version: PROTOCOL_VERSION,
            include_finished: false,
        };
        let mut stream = client
            .list_tasks(request)
            .await
            .map_err(|s| ClientError::from_status(&shown, &s))?
            .into_inner();
        let mut listing: Option<(proto::TaskList, Vec<ListedTask>)> = None;
        loop {
            let Some(chunk) = stream
                .message()
                .await
                .map_err(|s| ClientError::from_status(&shown, &s))?
            else {
                return Err(ClientError::Lost {
                    addr: shown.clone(),
                    detail: "the listing ended before its last part".into(),
                });
            };
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
            let tasks = chunk.tasks.iter().map(|t| ListedTask {
                task: convert::task(t),
                kind: convert::kind(t),
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
        Ok(Listing {
            app: head.app.as_ref().map(convert::app).unwrap_or_default(),
            tasks,
            at: convert::time(head.at_unix_ns),
        })
    };
    match with_timeout(&shown, "the task listing", call).await {
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
        watch::detail(client, &shown, id).await
    };
    match with_timeout(&shown, "the task detail", call).await {
        Ok(detail) => Ok(detail),
        Err(err) => Err(diagnose(addr, err).await),
    }
}

/// A failure before the app answered anything: when it says no more than
/// "lost", ask the address what it speaks (an HTTP/1 or TLS server usually
/// just closes an HTTP/2 connection).
pub(crate) async fn diagnose(addr: &ServerAddr, err: ClientError) -> ClientError {
    if !matches!(err, ClientError::Lost { .. }) {
        return err;
    }
    match probe::probe(addr).await {
        probe::Peer::Http1 | probe::Peer::Tls | probe::Peer::Other => ClientError::NotGrpc {
            addr: addr.to_string(),
        },
        probe::Peer::NotListening => ClientError::NotListening {
            addr: addr.to_string(),
        },
        probe::Peer::Http2 | probe::Peer::Unknown => err,
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
