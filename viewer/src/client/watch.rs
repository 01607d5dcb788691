//! The live view's connection: the Watch stream, reassembled into
//! [`Update`]s, with reconnection (capped exponential backoff) and the
//! connection state reported as [`Update::Connection`] all along.

use std::time::Duration;

use taskscope_api::ServerAddr;
use taskscope_api::proto::{self, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::assemble::{Assembler, ChunkError};
use crate::client::auth::{Token, env_token};
use crate::client::backoff::Backoff;
use crate::client::connect;
use crate::client::connect::Client;
use crate::client::console_watch;
use crate::client::convert;
use crate::client::error::ClientError;
use crate::client::probe::diagnose;
use crate::state::model::{Connection, Request, Update};

/// With no message from the app for this long (it publishes every 500 ms),
/// the connection counts as lost.
pub const STALL: Duration = Duration::from_secs(10);

/// How a session ended.
enum Ended {
    /// The receiver of the updates is gone: stop.
    ViewerGone,
    /// The connection failed or broke.
    Failed(ClientError),
}

/// Watches the app at `addr` until `updates` is closed: sends
/// `Connection::Connecting`, then `Connection::Connected` and a snapshot, then
/// deltas; when the connection fails or breaks, `Connection::Disconnected`
/// with the reason and the delay before the next attempt (100 ms, doubling up
/// to 5 s, back to 100 ms after a connection that worked). A server that is
/// not taskscope, speaks another protocol version, or requires a token this
/// viewer does not have (its `TASKSCOPE_TOKEN`, sent with every call) ends it
/// with `Connection::Incompatible` and the reason (no retry). `requests` for
/// task details are answered with [`Update::Detail`] while connected.
///
/// ```no_run
/// # async fn f() {
/// use taskscope_viewer::client;
/// let (updates_tx, mut updates) = tokio::sync::mpsc::channel(64);
/// let (requests, requests_rx) = tokio::sync::mpsc::channel(8);
/// let addr = taskscope_api::ServerAddr::parse("127.0.0.1:6670").unwrap();
/// tokio::spawn(client::watch(addr, updates_tx, requests_rx));
/// while let Some(update) = updates.recv().await {
///     println!("{update:?}");
/// }
/// # drop(requests);
/// # }
/// ```
pub async fn watch(
    addr: ServerAddr,
    updates: mpsc::Sender<Update>,
    requests: mpsc::Receiver<Request>,
) {
    match env_token() {
        Ok(token) => watch_with(addr, token, updates, requests).await,
        Err(err) => {
            let incompatible = Connection::Incompatible {
                addr: addr.to_string(),
                reason: err.to_string(),
            };
            let _ = updates.send(Update::Connection(incompatible)).await;
        }
    }
}

/// Like [`watch`], sending `token` instead of the viewer's `TASKSCOPE_TOKEN`.
/// An app that requires another token (or one when `token` is `None`) ends it
/// with `Connection::Incompatible`, saying so.
pub async fn watch_with(
    addr: ServerAddr,
    token: Option<Token>,
    updates: mpsc::Sender<Update>,
    mut requests: mpsc::Receiver<Request>,
) {
    let shown = addr.to_string();
    let mut backoff = Backoff::default();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let connecting = Connection::Connecting {
            addr: shown.clone(),
            attempt,
        };
        if updates.send(Update::Connection(connecting)).await.is_err() {
            return;
        }
        let mut connected = false;
        let err = match session(
            &addr,
            token.as_ref(),
            &shown,
            &updates,
            &mut requests,
            &mut connected,
        )
        .await
        {
            Ended::ViewerGone => return,
            Ended::Failed(err) => err,
        };
        if connected {
            backoff.reset();
            attempt = 0;
        }
        if !err.retry() {
            let incompatible = Connection::Incompatible {
                addr: shown.clone(),
                reason: err.to_string(),
            };
            let _ = updates.send(Update::Connection(incompatible)).await;
            return;
        }
        let delay = backoff.next_delay();
        let disconnected = Connection::Disconnected {
            addr: shown.clone(),
            reason: err.to_string(),
            retry_in: delay,
        };
        if updates
            .send(Update::Connection(disconnected))
            .await
            .is_err()
        {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = updates.closed() => return,
        }
        // Details asked while disconnected are stale: the view asks again.
        while requests.try_recv().is_ok() {}
    }
}

/// One connection: from connecting to its end.
async fn session(
    addr: &ServerAddr,
    token: Option<&Token>,
    shown: &str,
    updates: &mpsc::Sender<Update>,
    requests: &mut mpsc::Receiver<Request>,
    connected: &mut bool,
) -> Ended {
    let mut client = match connect::connect(addr, token).await {
        Ok(client) => client,
        Err(err) => return Ended::Failed(diagnose(addr, err).await),
    };
    let request = proto::WatchRequest {
        protocol_version: PROTOCOL_VERSION,
    };
    let mut stream = match client.watch(request).await {
        Ok(response) => response.into_inner(),
        // Not taskscope's service: perhaps tokio-console's (console-subscriber).
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            return match console_watch::session(addr, token, shown, updates, requests, connected)
                .await
            {
                None => Ended::ViewerGone,
                Some(err) => Ended::Failed(err),
            };
        }
        Err(status) => {
            let err = ClientError::from_status(shown, &status);
            return Ended::Failed(diagnose(addr, err).await);
        }
    };
    let mut assembler = Assembler::default();
    let mut requests_open = true;
    let mut deadline = Instant::now() + STALL;
    loop {
        tokio::select! {
            message = tokio::time::timeout_at(deadline, stream.message()) => {
                let update = match message {
                    Err(_) => {
                        return Ended::Failed(ClientError::Lost {
                            addr: shown.to_string(),
                            detail: format!("no update for {} s", STALL.as_secs()),
                        });
                    }
                    Ok(Err(status)) => {
                        let err = ClientError::from_status(shown, &status);
                        if *connected {
                            return Ended::Failed(err);
                        }
                        return Ended::Failed(diagnose(addr, err).await);
                    }
                    Ok(Ok(None)) => {
                        return Ended::Failed(ClientError::Lost {
                            addr: shown.to_string(),
                            detail: "the app ended the stream".into(),
                        });
                    }
                    Ok(Ok(Some(update))) => update,
                };
                deadline = Instant::now() + STALL;
                let (update, app) = match assembler.push(update) {
                    Err(ChunkError(why)) => {
                        return Ended::Failed(ClientError::Lost {
                            addr: shown.to_string(),
                            detail: why,
                        });
                    }
                    Ok(None) => continue,
                    Ok(Some(done)) => done,
                };
                if let Some(app) = app {
                    if app.protocol != PROTOCOL_VERSION {
                        return Ended::Failed(ClientError::Incompatible {
                            addr: shown.to_string(),
                            reason: mismatch(app.protocol),
                        });
                    }
                    if !*connected {
                        *connected = true;
                        let state = Connection::Connected { addr: shown.to_string() };
                        if updates.send(Update::Connection(state)).await.is_err() {
                            return Ended::ViewerGone;
                        }
                    }
                }
                if updates.send(update).await.is_err() {
                    return Ended::ViewerGone;
                }
            }
            request = requests.recv(), if requests_open => match request {
                None => requests_open = false,
                Some(Request::Detail(id)) => {
                    let client = client.clone();
                    let updates = updates.clone();
                    let shown = shown.to_string();
                    tokio::spawn(async move {
                        // A task that is gone has no detail: nothing to show.
                        if let Ok(detail) = detail(client, &shown, id).await {
                            let _ = updates.send(Update::Detail(detail)).await;
                        }
                    });
                }
            },
            _ = updates.closed() => return Ended::ViewerGone,
        }
    }
}

/// The words for a protocol version mismatch noticed by the viewer.
pub(crate) fn mismatch(app: u32) -> String {
    format!(
        "taskscope protocol mismatch: the app speaks protocol version {app}, the viewer version \
         {PROTOCOL_VERSION}; use a viewer from the same taskscope release as the app"
    )
}

/// The TaskDetail call on an open channel.
pub(crate) async fn detail(
    mut client: Client,
    shown: &str,
    id: u64,
) -> Result<crate::state::model::TaskDetail, ClientError> {
    let request = proto::TaskDetailRequest {
        protocol_version: PROTOCOL_VERSION,
        id,
        include_async_stack: false,
    };
    let response = client
        .task_detail(request)
        .await
        .map_err(|status| ClientError::from_status(shown, &status))?
        .into_inner();
    if response.protocol_version != PROTOCOL_VERSION {
        return Err(ClientError::Incompatible {
            addr: shown.to_string(),
            reason: mismatch(response.protocol_version),
        });
    }
    Ok(convert::detail(&response, id))
}
