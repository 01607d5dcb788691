//! Turns on Tokio's `taskdump` feature on Linux x86_64 and aarch64, the
//! targets where Tokio has task dumps, and nowhere else: taskscope's
//! `taskdump` feature depends on this crate. It has no code.
//!
//! Tokio's `taskdump` feature is a compile error on other targets (under
//! `--cfg tokio_unstable`), and Cargo can neither turn on a dependency's
//! feature for some targets only nor let one crate name Tokio twice; a
//! target-specific dependency of a crate of its own can.

#![no_std]
