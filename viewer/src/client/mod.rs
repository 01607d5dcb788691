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
//! - `calls`: the one-shot calls;
//! - [`stacks`]: where the app's tasks wait, when asked for;
//! - [`connect`]: channel and endpoint;
//! - [`auth`]: the token;
//! - `watch`: the Watch stream, reconnecting, feeding the model;
//! - [`assemble`]: chunks of a snapshot or delta back into one update;
//! - [`convert`]: protocol messages as the model's types;
//! - [`backoff`]: delays between attempts;
//! - [`probe`]: what answers at an address that does not speak gRPC;
//! - [`console`]: apps that embed console-subscriber (tokio-console's
//!   protocol), read into the same model; `console_watch`: their live stream;
//! - [`error`]: what went wrong.

pub mod assemble;
pub mod auth;
pub mod backoff;
mod calls;
pub mod connect;
pub mod console;
mod console_watch;
pub mod convert;
pub mod error;
pub mod probe;
pub mod stacks;
mod watch;

pub use auth::{TOKEN_VAR, Token, TokenError, env_token};
pub use calls::{
    CALL_TIMEOUT, ListedTask, Listing, list_tasks, list_tasks_and_stacks, list_tasks_with,
    task_detail, task_detail_with,
};
pub use convert::TaskKind;
pub use error::ClientError;
pub use stacks::{AsyncStack, Stacks};
pub use watch::{STALL, watch, watch_with};
