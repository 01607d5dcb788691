//! The viewer server: gRPC (tonic) on a thread of its own, with its own
//! current-thread Tokio runtime, started by the core when
//! `TASKSCOPE_ADDR` is not `off`.
//!
//! - [`listen`]: binds the address (TCP, loopback unless told otherwise, or a
//!   Unix socket with mode 0600), with one clear warning when it cannot;
//! - [`service`]: the `taskscope.v1.Taskscope` service (Watch, ListTasks, TaskDetail);
//! - [`publisher`]: one loop that reads the registry every publish interval and
//!   hands each viewer's bounded queue a snapshot or a delta, never waiting;
//! - [`delta`]: what changed since the previous publish;
//! - [`chunk`]: splitting big messages under tonic's 4 MiB limit;
//! - [`convert`]: taskscope's records as protocol messages;
//! - [`runtime`]: the app's Tokio runtime handle and its metrics.
//!
//! The server's thread is marked internal: the tasks of its runtime are
//! taskscope's own and never appear among the app's.

pub(crate) mod chunk;
pub(crate) mod convert;
pub(crate) mod delta;
pub(crate) mod listen;
pub(crate) mod publisher;
pub(crate) mod runtime;
pub(crate) mod service;

use std::sync::Arc;
use std::time::Duration;

use crate::core::Core;
use crate::proto::taskscope_server::TaskscopeServer;
use crate::settings::ServerAddr;

pub(crate) use runtime::note_current_runtime;

/// How often the publisher sends each viewer a delta.
pub(crate) const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

/// HTTP/2 pings to each viewer, so a viewer that vanished is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Starts the viewer server for `core` unless its address is `off`. Binds on
/// the calling thread (so the server listens when `init()` returns, and a bind
/// failure is reported at once) and serves on a thread of its own. Never
/// fails: a problem is one warning on stderr, and the app goes on without server.
pub(crate) fn start(core: &Arc<Core>) {
    let addr = core.settings.server_addr.clone();
    if addr == ServerAddr::Off {
        return;
    }
    let listener = match listen::bind(&addr) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("taskscope: {err}; the viewer server is off");
            return;
        }
    };
    if !addr.is_local() {
        eprintln!(
            "taskscope: the viewer server listens on {addr}, which is not a loopback address: \
             anyone who can reach it can see this app's tasks (no authentication, no TLS)"
        );
    }
    let core = Arc::clone(core);
    let spawned = std::thread::Builder::new()
        .name("taskscope-server".into())
        .spawn(move || run(core, listener, addr));
    if let Err(err) = spawned {
        eprintln!(
            "taskscope: cannot start the viewer server thread ({err}); the viewer server is off"
        );
    }
}

fn run(core: Arc<Core>, listener: listen::Listener, addr: ServerAddr) {
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
        let hub = Arc::new(publisher::Hub::new());
        tokio::spawn(publisher::run(Arc::clone(&core), Arc::clone(&hub)));
        let service = TaskscopeServer::new(service::Service::new(core, hub));
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE))
            .http2_keepalive_timeout(Some(KEEPALIVE));
        let served = match listener.into_incoming() {
            Ok(listen::Incoming::Tcp(incoming)) => {
                server.serve_with_incoming(service, incoming).await
            }
            #[cfg(unix)]
            Ok(listen::Incoming::Unix(incoming)) => {
                server.serve_with_incoming(service, incoming).await
            }
            Err(err) => {
                eprintln!("taskscope: cannot serve on {addr} ({err}); the viewer server is off");
                return;
            }
        };
        if let Err(err) = served {
            eprintln!("taskscope: the viewer server on {addr} stopped: {err}");
        }
    });
}
