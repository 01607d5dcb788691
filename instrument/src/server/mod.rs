//! The viewer server: gRPC (tonic) on a thread of its own, with its own
//! current-thread Tokio runtime, started by the builder when
//! `TASKSCOPE_ADDR` is not `off` ([`bind`] on the starting thread, then
//! [`serve`] on the server's) or when the app records (`TASKSCOPE_RECORD`:
//! then the publisher runs even with nothing listening).
//!
//! - [`listen`]: binds the address (TCP, loopback unless told otherwise, or a
//!   Unix socket created owner-only), with one clear warning when it cannot;
//! - [`conn`]: accepts connections, at most [`conn::MAX_CONNECTIONS`], and
//!   turns away any that does not open with HTTP/2 (an HTTP/1 request is told
//!   what this port speaks; random bytes, TLS, silence are closed); closes
//!   idle ones; reads within the CPU budget;
//! - [`frames`]: HTTP/2 frames counted by type, floods closed;
//! - [`auth`]: the optional shared token (`TASKSCOPE_TOKEN`), refusals paced;
//! - [`limits`]: what all calls together may hold (answers in flight, their
//!   progress, calls in progress on a connection);
//! - [`routes`]: the `taskscope.v1.Taskscope` calls (Watch, ListTasks,
//!   TaskDetail), after the token check; [`codec`]: their wire format;
//! - [`console`]: tokio-console's protocol on the same address (the
//!   `rs.tokio.console.instrument.Instrument` calls, routed by path after the
//!   same token check and under the same limits; `TASKSCOPE_CONSOLE=off`
//!   turns it off);
//! - [`service`]: what ListTasks and TaskDetail answer; [`listing`]: the
//!   listing, chunk by chunk as the client reads;
//! - [`stacks`]: where the app's tasks wait, when a viewer asks (a bounded
//!   task dump of the app's runtime, reused for a while);
//! - [`publisher`]: one loop that reads the registry every publish interval
//!   and makes one snapshot or delta, encoded once;
//! - [`recorder`]: what the publisher hands the recording (the same encoded
//!   updates, a snapshot at each segment's start and every minute);
//! - [`fanout`]: each viewer's bounded queue of those updates, never waited
//!   for; a viewer that falls behind is dropped with a reason;
//! - [`budget`]: the server's CPU budget (a quarter of one core);
//! - [`delta`]: what changed since the previous publish;
//! - [`chunk`]: splitting big messages in chunks of about 256 KiB;
//! - [`convert`]: taskscope's records as protocol messages;
//! - [`runtime`]: the app's runtime metrics.
//!
//! The server's thread is marked internal: the tasks of its runtime are
//! taskscope's own and never appear among the app's.
//!
//! # What leaves the machine
//!
//! Task names, spawn locations and the stack frames in findings leave the app
//! only through this server, and only to whoever connects to the address the
//! user configured: taskscope opens no outgoing connection of its own, ever.
//! By default that address is `127.0.0.1:6670` (loopback: nothing leaves the
//! machine), or a Unix socket only the app's user may open. Only when the
//! user names a non-loopback address does anything become reachable from
//! elsewhere, and then the server says so on stderr when it starts. With
//! `TASKSCOPE_TOKEN` set, every call must carry the token (the traffic is not
//! encrypted: on a network, tunnel it, e.g. over SSH).
//!
//! # What a viewer can cost the app
//!
//! Nothing on the app's threads: they never touch the server's queues. The
//! server's thread uses at most a quarter of one core ([`budget`]): costly
//! steps wait their turn, and no connection is read while the budget is in
//! debt, whatever it sends (calls, PING, SETTINGS, RST_STREAM floods; a
//! connection that floods is closed, [`frames`]). Its memory is bounded by
//! [`conn::MAX_CONNECTIONS`] connections (64 KiB of receive window each, at
//! most [`STREAMS_PER_CONNECTION`] calls), [`fanout::MAX_VIEWERS`] viewers
//! and [`fanout::CLIENT_QUEUE`] shared updates a viewer, and
//! [`limits::MAX_ANSWERS`] listings and details in flight, each holding a
//! reference a task and a few chunks of [`chunk::CHUNK_BUDGET`] bytes (they
//! are made as the client reads, [`listing`]); an answer not read for
//! [`limits::ANSWER_STALL`] gets its connection closed. Idle connections
//! are closed after [`conn::IDLE_TIMEOUT`], and make room for a new one when
//! all slots are taken.

pub(crate) mod auth;
pub(crate) mod budget;
pub(crate) mod chunk;
pub(crate) mod codec;
pub(crate) mod conn;
pub(crate) mod console;
pub(crate) mod convert;
pub(crate) mod delta;
pub(crate) mod fanout;
pub(crate) mod frames;
pub(crate) mod limits;
pub(crate) mod listen;
pub(crate) mod listing;
pub(crate) mod publisher;
pub(crate) mod recorder;
pub(crate) mod routes;
pub(crate) mod runtime;
pub(crate) mod service;
pub(crate) mod stacks;

use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::record_queue::Recording;
use crate::session::Session;
use crate::settings::{ServerAddr, token_problem};

/// HTTP/2 pings to each viewer, so a viewer that vanished is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// HTTP/2 flow-control window for what a viewer sends (requests are a few
/// bytes; this bounds what a connection can make the server buffer).
const RECEIVE_WINDOW: u32 = 64 * 1024;

/// Calls open at once on one connection, at most.
const STREAMS_PER_CONNECTION: u32 = 16;

/// Size of the request headers, at most.
const MAX_HEADERS: u32 = 16 * 1024;

/// Binds the server's address for `session`, unless it is `off`: on the
/// calling thread, so the server listens when `init()` returns and a bind
/// failure is reported at once. Never fails: a problem is one warning on
/// stderr (`None`: the app goes on without server).
pub(crate) fn bind(session: &Session) -> Option<(listen::Listener, ServerAddr)> {
    let addr = session.settings.server_addr.clone();
    if addr == ServerAddr::Off {
        return None;
    }
    // `TASKSCOPE_TOKEN` was checked with the settings; `Builder::token` is here.
    if let Some(problem) = session.settings.token.as_deref().and_then(token_problem) {
        eprintln!(
            "taskscope: the viewer server's token cannot be used: {problem}; the viewer server \
             is off, rather than serve without it"
        );
        return None;
    }
    let listener = match listen::bind(&addr) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("taskscope: {err}; the viewer server is off");
            return None;
        }
    };
    if !addr.is_local() {
        let token = if session.settings.token.is_some() {
            "viewers must send TASKSCOPE_TOKEN, but nothing is encrypted"
        } else {
            "no authentication (set TASKSCOPE_TOKEN to require a token), no encryption"
        };
        eprintln!(
            "taskscope: the viewer server listens on {addr}, which is not a loopback address: \
             anyone who can reach it can see this app's tasks, task names and stacks ({token})"
        );
    }
    Some((listener, addr))
}

/// Serves `listener` on the calling thread (the server's own, started by the
/// builder) until the server stops; its tasks run on a runtime of its own
/// and are never counted among the app's. With `recording`, the publisher
/// also feeds the recording, for as long as the app runs, listener or not.
pub(crate) fn serve(
    session: Arc<Session>,
    listener: Option<(listen::Listener, ServerAddr)>,
    recording: Option<Recording>,
) {
    // Before the runtime exists: every task it runs is taskscope's, not the app's.
    crate::internal::mark_internal_thread();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!(
                "taskscope: cannot start the viewer server's runtime ({err}); the viewer server is off"
            );
            return;
        }
    };
    runtime.block_on(async move {
        let hub = Arc::new(fanout::Hub::new());
        let budget = Arc::new(budget::Budget::new());
        let recording = recording.map(|sink| {
            let started = convert::unix_ns(std::time::SystemTime::now());
            recorder::Recorder::new(sink, started)
        });
        let recorded = recording.is_some();
        let publisher = tokio::spawn(publisher::run(
            Arc::clone(&session),
            Arc::clone(&hub),
            Arc::clone(&budget),
            recording,
        ));
        let Some((listener, addr)) = listener else {
            // Recording only (TASKSCOPE_ADDR=off): nothing listens.
            let _ = publisher.await;
            return;
        };
        let auth = auth::Auth::new(session.settings.token.as_deref());
        let routes = routes::Routes::new(session, hub, auth, Arc::clone(&budget));
        let incoming = match conn::accept(listener, budget) {
            Ok(incoming) => incoming,
            Err(err) => {
                eprintln!("taskscope: cannot serve on {addr} ({err}); the viewer server is off");
                if recorded {
                    let _ = publisher.await;
                }
                return;
            }
        };
        let served = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE))
            .http2_keepalive_timeout(Some(KEEPALIVE))
            .initial_stream_window_size(RECEIVE_WINDOW)
            .initial_connection_window_size(RECEIVE_WINDOW)
            .max_concurrent_streams(STREAMS_PER_CONNECTION)
            .http2_max_header_list_size(MAX_HEADERS)
            .http2_max_pending_accept_reset_streams(Some(frames::MAX_PENDING_RESETS))
            .http2_max_local_error_reset_streams(Some(frames::MAX_ERROR_RESETS))
            .serve_with_incoming(routes, incoming)
            .await;
        if let Err(err) = served {
            eprintln!("taskscope: the viewer server on {addr} stopped: {err}");
        }
        if recorded {
            // The recording goes on without the listener.
            let _ = publisher.await;
        }
    });
}
