//! The wire protocol between the app and the viewer: the code generated from
//! `proto/taskscope.proto` (package `taskscope.v1`) at build time, with a
//! vendored protoc (no system protoc needed).
//!
//! The server half runs inside the app: unless `TASKSCOPE_ADDR` is `off`,
//! taskscope serves it on a thread of its own with its own current-thread
//! runtime (default `127.0.0.1:6670`; `unix:/path` for a Unix socket with mode
//! 0600). Its Watch stream sends a snapshot, then a delta every 500 ms, each
//! split into chunks under 4 MiB; a viewer that falls 16 updates behind is
//! dropped with a reason, and the app never waits for a viewer. The client
//! half is what the `taskscope` viewer uses, over a `Channel` from tonic's
//! `channel` feature (which this crate does not enable itself):
//!
//! ```ignore
//! use taskscope_api::proto::{PROTOCOL_VERSION, TaskDetailRequest, taskscope_client::TaskscopeClient};
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:6670").connect().await?;
//! let mut client = TaskscopeClient::new(channel);
//! let detail = client
//!     .task_detail(TaskDetailRequest { protocol_version: PROTOCOL_VERSION, id: 17 })
//!     .await?
//!     .into_inner();
//! println!("{} slow polls", detail.slow_polls.len());
//! ```
//!
//! Every message and field is documented in the `.proto` file (the comments
//! are copied onto the generated items).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("taskscope.v1");

/// The protocol version this crate speaks, sent in every request and response.
/// A peer speaking another version is refused with a message naming both.
pub const PROTOCOL_VERSION: u32 = 1;
