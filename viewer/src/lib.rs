//! The `taskscope` viewer as a library: the model of the remote app
//! ([`state`]), the views that draw it ([`ui`]) and the terminal loop
//! ([`tui`]). The binary (`src/main.rs`) parses the command line and wires
//! the client to [`tui::run`], or a recording ([`replay`]) to
//! [`tui::run_replay`].

#![warn(missing_docs)]

pub mod client;
#[cfg(feature = "demo")]
pub mod demo;
pub mod dump;
pub mod json;
pub mod progress;
pub mod replay;
pub mod state;
pub mod tree;
pub mod tui;
pub mod ui;
