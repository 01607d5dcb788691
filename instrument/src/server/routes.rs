//! The `taskscope.v1.Taskscope` service as one tower service: the token
//! check first (nothing of the app is read for a call without the token;
//! refusals are paced, [`super::auth`]), then the limits every call is under
//! ([`super::limits`]: [`kind_of`] says which), then the three calls, each
//! decoding a request of at most [`MAX_REQUEST`] bytes. Written out rather than generated so that the Watch stream can send
//! updates the publisher encoded once for all viewers, and so that a request
//! that is not the expected message is INVALID_ARGUMENT, naming the call.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};

use crate::server::auth::Auth;
use crate::server::budget::Budget;
use crate::server::codec::{self, Raw};
use crate::server::conn::ConnInfo;
use crate::server::console;
use crate::server::fanout::{Hub, UpdateStream};
use crate::server::limits::{CallKind, Limits};
use crate::server::listing::ListingStream;
use crate::server::service::{check_version, detail};
use crate::server::stacks::{self, ListingStacks};
use crate::session::Session;
use taskscope_api::proto;

/// The path of the Watch call.
pub(crate) const WATCH: &str = "/taskscope.v1.Taskscope/Watch";
/// The path of the ListTasks call.
pub(crate) const LIST_TASKS: &str = "/taskscope.v1.Taskscope/ListTasks";
/// The path of the TaskDetail call.
pub(crate) const TASK_DETAIL: &str = "/taskscope.v1.Taskscope/TaskDetail";

/// The largest request message accepted (every request is a few bytes).
/// A bigger one is refused from its length prefix, before it is read
/// (OUT_OF_RANGE, "decoded message length too large").
pub(crate) const MAX_REQUEST: usize = 4 * 1024;

/// What limits a call is under, by its path: a call that builds one answer
/// for its caller is an [`CallKind::Answer`]; a long-lived stream (whose
/// number is bounded by its own service) is a [`CallKind::Stream`].
pub(crate) fn kind_of(path: &str) -> CallKind {
    match path {
        LIST_TASKS | TASK_DETAIL => CallKind::Answer,
        _ => CallKind::Stream,
    }
}

/// The service, on the server's runtime.
#[derive(Clone)]
pub(crate) struct Routes {
    session: Arc<Session>,
    hub: Arc<Hub>,
    auth: Arc<Auth>,
    budget: Arc<Budget>,
    limits: Arc<Limits>,
    /// tokio-console's protocol (`None`: TASKSCOPE_CONSOLE=off).
    console: Option<console::Server>,
}

impl Routes {
    pub(crate) fn new(
        session: Arc<Session>,
        hub: Arc<Hub>,
        auth: Auth,
        budget: Arc<Budget>,
    ) -> Routes {
        Routes {
            console: console::server(&session, &budget),
            session,
            hub,
            auth: Arc::new(auth),
            budget,
            limits: Arc::default(),
        }
    }
}

type HttpRequest = http::Request<tonic::body::Body>;
type HttpResponse = http::Response<tonic::body::Body>;

impl Service<HttpRequest> for Routes {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<HttpResponse, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let conn = request.extensions().get::<ConnInfo>().cloned();
        if let Err(status) = self.auth.check(request.headers()) {
            let auth = Arc::clone(&self.auth);
            return Box::pin(async move { Ok(auth.refuse(status, conn).await.into_http()) });
        }
        let guard = match self
            .limits
            .admit(kind_of(request.uri().path()), conn.as_ref())
        {
            Ok(guard) => guard,
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
        };
        let routes = self.clone();
        let answer: Self::Future = match request.uri().path() {
            // tokio-console's calls, under the same token and limits.
            path if path.starts_with(console::PATH_PREFIX) => {
                console::call(&mut self.console, request)
            }
            WATCH => Box::pin(async move {
                let mut grpc = Grpc::new(Raw::<proto::WatchRequest>::new("Watch"))
                    .max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.server_streaming(WatchCall(routes), request).await)
            }),
            LIST_TASKS => Box::pin(async move {
                let mut grpc = Grpc::new(Raw::<proto::ListTasksRequest>::new("ListTasks"))
                    .max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.server_streaming(ListCall(routes), request).await)
            }),
            TASK_DETAIL => Box::pin(async move {
                let mut grpc = Grpc::new(Raw::<proto::TaskDetailRequest>::new("TaskDetail"))
                    .max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.unary(DetailCall(routes), request).await)
            }),
            path => {
                let status = Status::unimplemented(format!(
                    "{path} is not a call of this server: it serves taskscope.v1.Taskscope \
                     (Watch, ListTasks, TaskDetail)"
                ));
                Box::pin(async move { Ok(status.into_http()) })
            }
        };
        // The call holds its limits until its answer is sent or dropped.
        Box::pin(async move { Ok(guard.attach(answer.await?)) })
    }
}

struct WatchCall(Routes);

impl ServerStreamingService<proto::WatchRequest> for WatchCall {
    type Response = Bytes;
    type ResponseStream = UpdateStream;
    type Future = BoxFuture<Response<UpdateStream>, Status>;

    fn call(&mut self, request: Request<proto::WatchRequest>) -> Self::Future {
        let conn = request.extensions().get::<ConnInfo>().cloned();
        let subscribed = check_version(request.get_ref().protocol_version)
            .and_then(|()| self.0.hub.subscribe(conn))
            .map(Response::new);
        Box::pin(std::future::ready(subscribed))
    }
}

struct ListCall(Routes);

impl ServerStreamingService<proto::ListTasksRequest> for ListCall {
    type Response = Bytes;
    type ResponseStream = ListingStream;
    type Future = BoxFuture<Response<ListingStream>, Status>;

    fn call(&mut self, request: Request<proto::ListTasksRequest>) -> Self::Future {
        let routes = self.0.clone();
        Box::pin(async move {
            let request = request.into_inner();
            check_version(request.protocol_version)?;
            let stacks = match request.include_stacks {
                true => Some(ListingStacks::take(&routes.session, &routes.budget).await),
                false => None,
            };
            // Made chunk by chunk, as the client reads.
            Ok(Response::new(ListingStream::new(
                routes.session,
                routes.budget,
                request.include_finished,
                stacks,
            )))
        })
    }
}

struct DetailCall(Routes);

impl UnaryService<proto::TaskDetailRequest> for DetailCall {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<proto::TaskDetailRequest>) -> Self::Future {
        let routes = self.0.clone();
        Box::pin(async move {
            let request = request.into_inner();
            check_version(request.protocol_version)?;
            let mut found = routes
                .budget
                .run_first(|| detail(&routes.session, request.id))
                .await?;
            if request.include_async_stack {
                stacks::add_to_detail(&routes.session, &routes.budget, &mut found).await;
            }
            Ok(Response::new(codec::encode(&found)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paths_are_those_of_the_protocol() {
        let service = proto::taskscope_server::SERVICE_NAME;
        assert_eq!(WATCH, format!("/{service}/Watch"));
        assert_eq!(LIST_TASKS, format!("/{service}/ListTasks"));
        assert_eq!(TASK_DETAIL, format!("/{service}/TaskDetail"));
    }
}
