//! The `taskscope.v1.Taskscope` service as one tower service: the token
//! check first (nothing of the app is read for a call without the token),
//! then the three calls, each decoding a request of at most [`MAX_REQUEST`]
//! bytes. Written out rather than generated so that the Watch stream can send
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
use crate::server::fanout::{Hub, UpdateStream};
use crate::server::service::{check_version, detail, listing};
use crate::server::stacks;
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

/// The service, on the server's runtime.
#[derive(Clone)]
pub(crate) struct Routes {
    session: Arc<Session>,
    hub: Arc<Hub>,
    auth: Arc<Auth>,
    budget: Arc<Budget>,
}

impl Routes {
    pub(crate) fn new(
        session: Arc<Session>,
        hub: Arc<Hub>,
        auth: Auth,
        budget: Arc<Budget>,
    ) -> Routes {
        Routes {
            session,
            hub,
            auth: Arc::new(auth),
            budget,
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
        if let Err(status) = self.auth.check(request.headers()) {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let routes = self.clone();
        match request.uri().path() {
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
        }
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

type ListStream = tokio_stream::Iter<std::vec::IntoIter<Result<Bytes, Status>>>;

struct ListCall(Routes);

impl ServerStreamingService<proto::ListTasksRequest> for ListCall {
    type Response = Bytes;
    type ResponseStream = ListStream;
    type Future = BoxFuture<Response<ListStream>, Status>;

    fn call(&mut self, request: Request<proto::ListTasksRequest>) -> Self::Future {
        let routes = self.0.clone();
        Box::pin(async move {
            let request = request.into_inner();
            check_version(request.protocol_version)?;
            routes.budget.wait().await;
            let mut chunks = routes
                .budget
                .spend(|| listing(&routes.session, request.include_finished));
            if request.include_stacks {
                stacks::add_to_listing(&routes.session, &routes.budget, &mut chunks).await;
            }
            let chunks: Vec<_> = chunks.iter().map(|c| Ok(codec::encode(c))).collect();
            Ok(Response::new(tokio_stream::iter(chunks)))
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
            routes.budget.wait().await;
            let mut found = routes
                .budget
                .spend(|| detail(&routes.session, request.id))?;
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
