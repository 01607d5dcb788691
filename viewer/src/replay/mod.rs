//! `taskscope replay FILE`: the live view on a recording (`TASKSCOPE_RECORD`)
//! instead of a running app, under a time cursor.
//!
//! - [`load`](mod@load): finds the recording's segment files, checks and
//!   indexes them ([`load()`], with a progress callback), and says what
//!   cannot be read;
//! - [`player`]: the time cursor, which drives the live view's model
//!   ([`crate::state::Model::apply`]) with the recorded updates at their
//!   recorded times.
//!
//! The terminal loop is [`crate::tui::run_replay`]; the views are the live
//! view's. It reads the recording through `taskscope-api` alone (the format
//! is [`taskscope_api::recording`]).

pub mod load;
pub mod player;
#[cfg(test)]
pub(crate) mod testing;

pub use load::{LoadError, Progress, Recording, load};
pub use player::Player;
