//! tokio-console's protocol on the viewer server's address: console's
//! `rs.tokio.console.instrument.Instrument` service (`WatchUpdates`,
//! `WatchTaskDetails`, `WatchState`, `Pause`, `Resume`, with console-api's
//! generated code), served from taskscope's own registry next to
//! `taskscope.v1`, so that `tokio-console http://127.0.0.1:6670` shows the
//! app's tasks. [`super::routes`] sends it the calls whose path starts with
//! [`PATH_PREFIX`], after the token check.
//!
//! - [`service`]: the calls, their streams and limits;
//! - [`updates`]: what one `WatchUpdates` stream sends;
//! - [`convert`]: a task record as console's messages.
//!
//! What a task carries: its name, spawn location, kind (`task` or
//! `block_on`), polls, busy time, waker clones and drops, wakes and
//! self-wakes (with `init()`'s tracing capture), created and dropped times,
//! and, in `WatchTaskDetails`, its poll-duration histogram. What it does not:
//! when it was last woken and its scheduled time (not known: see
//! [`convert::stats`]). Resources and async ops are always empty: taskscope
//! does not record them. Finished tasks are sent for as long as the finished
//! history keeps them (tokio-console itself hides them after its own
//! `--retain-for`, 6 s by default).
//!
//! Nothing runs for it until a client calls: no aggregator, no events.

pub(crate) mod convert;
pub(crate) mod service;
pub(crate) mod updates;

use std::sync::Arc;

use console_api::instrument::instrument_server::InstrumentServer;
use tonic::Status;
use tonic::codegen::{BoxFuture, Service, http};

use crate::server::budget::Budget;
use crate::session::Session;

/// The paths of console's calls start with this.
pub(crate) const PATH_PREFIX: &str = "/rs.tokio.console.instrument.Instrument/";

/// The largest console request accepted (every one is a few bytes), as
/// `taskscope.v1`'s.
pub(crate) const MAX_REQUEST: usize = 4 * 1024;

/// What a console call gets when the service is off.
pub(crate) const OFF: &str =
    "tokio-console's protocol is off in this app (TASKSCOPE_CONSOLE=off); taskscope.v1 is served";

/// The service as tonic serves it.
pub(crate) type Server = InstrumentServer<service::Console>;

/// The service for `session`, unless its settings turn it off.
pub(crate) fn server(session: &Arc<Session>, budget: &Arc<Budget>) -> Option<Server> {
    session.settings.console.then(|| {
        InstrumentServer::new(service::Console::new(
            Arc::clone(session),
            Arc::clone(budget),
        ))
        .max_decoding_message_size(MAX_REQUEST)
    })
}

type HttpRequest = http::Request<tonic::body::Body>;
type HttpResponse = http::Response<tonic::body::Body>;

/// Answers a console call (its path starts with [`PATH_PREFIX`]): the
/// generated service, which answers UNIMPLEMENTED to a method it does not
/// know, or UNIMPLEMENTED with [`OFF`] when the service is off.
pub(crate) fn call(
    server: &mut Option<Server>,
    request: HttpRequest,
) -> BoxFuture<HttpResponse, std::convert::Infallible> {
    match server {
        Some(server) => server.call(request),
        None => Box::pin(async { Ok(Status::unimplemented(OFF).into_http()) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_console_apis_service() {
        let service = console_api::instrument::instrument_server::SERVICE_NAME;
        assert_eq!(PATH_PREFIX, format!("/{service}/"));
    }
}
