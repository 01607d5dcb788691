//! The live view's connection to a console-subscriber app: console's
//! `WatchUpdates` stream folded into a [`ConsoleState`] and handed to the
//! model as snapshots and deltas, like taskscope's own stream; the histograms
//! of tasks that may have had a slow poll read as they become candidates
//! (at most [`READS_PER_UPDATE`] an update); task details from
//! `WatchTaskDetails`.

use std::time::Duration;

use console_api::instrument::InstrumentRequest;
use taskscope_api::ServerAddr;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::auth::Token;
use crate::client::console::{self, ConsoleClient, ConsoleState};
use crate::client::error::ClientError;
use crate::state::model::{Connection, Dropped, RuntimeMetrics, Task, Update};

/// With no update from the app for this long (console-subscriber publishes
/// every second by default), the connection counts as lost.
pub const STALL: Duration = Duration::from_secs(10);

/// Histograms read after one update, at most (the others wait for the next).
pub const READS_PER_UPDATE: usize = 32;

/// How long the reads after one update may take in all.
const READS_TIME: Duration = Duration::from_secs(2);

fn dropped(state: &ConsoleState) -> Dropped {
    Dropped {
        findings: 0,
        updates: 0,
        app_events: state.dropped_events,
    }
}

/// One connection to a console-subscriber app, from its first update to its
/// end; `connected` is set once an update came. `None`: the viewer is gone.
pub(crate) async fn session(
    addr: &ServerAddr,
    token: Option<&Token>,
    shown: &str,
    updates: &mpsc::Sender<Update>,
    requests: &mut mpsc::Receiver<crate::state::model::Request>,
    connected: &mut bool,
) -> Option<ClientError> {
    let mut client = match console::connect(addr, token).await {
        Ok(client) => client,
        Err(err) => return Some(err),
    };
    let mut stream = match client.watch_updates(InstrumentRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Some(console::from_status(shown, &status)),
    };
    let mut state = ConsoleState::default();
    let mut requests_open = true;
    let mut deadline = Instant::now() + STALL;
    loop {
        tokio::select! {
            message = tokio::time::timeout_at(deadline, stream.message()) => {
                let update = match message {
                    Err(_) => {
                        return Some(ClientError::Lost {
                            addr: shown.to_string(),
                            detail: format!("no update for {} s", STALL.as_secs()),
                        });
                    }
                    Ok(Err(status)) => return Some(console::from_status(shown, &status)),
                    Ok(Ok(None)) => {
                        return Some(ClientError::Lost {
                            addr: shown.to_string(),
                            detail: "the app ended the stream".into(),
                        });
                    }
                    Ok(Ok(Some(update))) => update,
                };
                deadline = Instant::now() + STALL;
                let was_finished: std::collections::HashSet<u64> = state
                    .tasks()
                    .into_iter()
                    .filter(|(t, _)| t.ended.is_some())
                    .map(|(t, _)| t.id)
                    .collect();
                let mut changed = state.apply(&update).ids;
                match tokio::time::timeout(
                    READS_TIME,
                    console::read_longest(&mut client, shown, &mut state, READS_PER_UPDATE),
                )
                .await
                {
                    Ok(Ok(read)) => changed.extend(read),
                    Ok(Err(err)) => return Some(err),
                    // Slow to answer: the rest at the next update.
                    Err(_) => {}
                }
                let out = if !*connected {
                    *connected = true;
                    let state_now = Connection::Connected { addr: shown.to_string() };
                    if updates.send(Update::Connection(state_now)).await.is_err() {
                        return None;
                    }
                    let (finished, tasks): (Vec<Task>, Vec<Task>) = state
                        .tasks()
                        .into_iter()
                        .map(|(t, _)| t)
                        .partition(|t| t.ended.is_some());
                    Update::Snapshot {
                        app: console::app_info(),
                        tasks,
                        finished,
                        findings: Vec::new(),
                        metrics: RuntimeMetrics::default(),
                        dropped: dropped(&state),
                        at: state.now,
                    }
                } else {
                    let mut changed_tasks = Vec::new();
                    let mut finished = Vec::new();
                    for (task, _) in state.tasks() {
                        let id = state.console_id(task.id);
                        let is_changed = id.is_some_and(|id| changed.contains(&id));
                        // A poll in progress grows with the clock alone: sent every time.
                        let running = task.state == crate::state::model::TaskState::Running;
                        if task.ended.is_some() {
                            if !was_finished.contains(&task.id) {
                                finished.push(task);
                            }
                        } else if is_changed || running {
                            changed_tasks.push(task);
                        }
                    }
                    changed.clear();
                    Update::Delta {
                        changed: changed_tasks,
                        finished,
                        findings: Vec::new(),
                        metrics: RuntimeMetrics::default(),
                        dropped: dropped(&state),
                        at: state.now,
                    }
                };
                if updates.send(out).await.is_err() {
                    return None;
                }
            }
            request = requests.recv(), if requests_open => match request {
                None => requests_open = false,
                Some(crate::state::model::Request::Detail(shown_id)) => {
                    if let Some(detail) = detail(&mut client, shown, &state, shown_id).await
                        && updates.send(Update::Detail(detail)).await.is_err()
                    {
                        return None;
                    }
                }
            },
            _ = updates.closed() => return None,
        }
    }
}

/// The detail of the task shown as `shown_id`, from its `TaskDetails`
/// (`None` when it is gone or does not answer in time: nothing to show).
async fn detail(
    client: &mut ConsoleClient,
    shown: &str,
    state: &ConsoleState,
    shown_id: u64,
) -> Option<crate::state::model::TaskDetail> {
    let id = state.console_id(shown_id)?;
    let details = tokio::time::timeout(READS_TIME, console::details(client, shown, id))
        .await
        .ok()?
        .ok()?;
    state.detail(id, details.as_ref().and_then(console::poll_histogram))
}
