//! The Prometheus endpoint: `GET /metrics` in the OpenMetrics (or Prometheus
//! 0.0.4) text format, on a thread of its own (`taskscope-metrics`, with a
//! current-thread runtime of its own), started by the builder when
//! `TASKSCOPE_METRICS_ADDR` is set ([`bind`] on the starting thread, then
//! [`serve`] on the metrics thread). The metrics and how to read them are
//! documented in the crate docs ("Watching a fleet").
//!
//! - [`collect`]: one scrape — the figures read from the session, encoded
//!   with `prometheus-client`;
//! - [`buckets`]: the poll-duration histogram's buckets, derived from
//!   taskscope's own counts;
//! - [`http`]: HTTP/1.1 (hyper), bounded.
//!
//! # What it costs the app
//!
//! Nothing per poll. While the endpoint is on, each task's end adds its
//! figures to its spawn location's running totals (`model::locations`: a
//! lookup in a lock-free table and a few atomic additions), and each slow
//! poll's end one more. A scrape runs on the metrics thread: it reads those
//! totals and scans the live tasks as the viewer server's publisher does,
//! at most twice a second per format however often it is asked.

pub(crate) mod buckets;
pub(crate) mod collect;
pub(crate) mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::session::Session;

/// Binds the metrics address of `session`, if one is set: on the calling
/// thread, so the endpoint listens when `init()` returns and a problem is
/// reported at once. Never fails: a problem is one warning on stderr (`None`:
/// the app goes on without the endpoint).
pub(crate) fn bind(session: &Session) -> Option<(std::net::TcpListener, SocketAddr)> {
    let addr = session.settings.metrics_addr?;
    // `TASKSCOPE_TOKEN` was checked with the settings; `Builder::token` is here.
    if let Some(problem) = session
        .settings
        .token
        .as_deref()
        .and_then(crate::settings::token_problem)
    {
        eprintln!(
            "taskscope: the metrics endpoint's token cannot be used: {problem}; the metrics \
             endpoint is off, rather than serve without it"
        );
        return None;
    }
    let listener = match std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
    {
        Ok(listener) => listener,
        Err(err) => {
            let why = if err.kind() == std::io::ErrorKind::AddrInUse {
                "address in use".to_string()
            } else {
                err.to_string()
            };
            eprintln!(
                "taskscope: cannot listen on {addr} for metrics ({why}); the metrics endpoint is off"
            );
            return None;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    if !addr.ip().is_loopback() {
        let token = if session.settings.token.is_some() {
            "scrapes must send TASKSCOPE_TOKEN as a bearer token, but nothing is encrypted"
        } else {
            "no authentication (set TASKSCOPE_TOKEN to require a bearer token), no encryption"
        };
        eprintln!(
            "taskscope: the metrics endpoint listens on {bound}, which is not a loopback address: \
             anyone who can reach it can read this app's spawn locations (source paths) and task \
             counts ({token})"
        );
    }
    Some((listener, bound))
}

/// Serves `listener` on the calling thread (the metrics thread, started by
/// the builder) until the process ends.
pub(crate) fn serve(session: Arc<Session>, listener: std::net::TcpListener, addr: SocketAddr) {
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
                "taskscope: cannot start the metrics endpoint's runtime ({err}); the metrics endpoint is off"
            );
            return;
        }
    };
    let token = session.settings.token.clone();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(collect::TaskscopeCollector::new(session)));
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!(
                    "taskscope: cannot serve metrics on {addr} ({err}); the metrics endpoint is off"
                );
                return;
            }
        };
        http::run(listener, registry, token).await;
    });
}
