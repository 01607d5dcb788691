//! `taskscope::Builder::layer()` in a `tracing_subscriber::registry()` of your
//! own, for an app that already sets up its logging: taskscope sees every task
//! as with `init()`, and its warnings go through your layers like your own events.
//!
//! ```text
//! cargo run -p taskscope --example layer
//! ```
//!
//! What to look at:
//! - stderr: `INFO layer: app started` — the app's own event, printed by the
//!   app's own `fmt` layer;
//! - stderr: `WARN taskscope: Executing task N "handler" (spawned at
//!   instrument/examples/layer.rs:44:10) took 0.150 seconds` — taskscope's
//!   finding, through that same layer (it comes a moment later: a slow poll
//!   is reported once its stack is named).
//!
//! The `fmt` layer has a filter of its own (INFO here): without one it would
//! also print Tokio's TRACE-level task spans and waker events that taskscope reads.

use std::io::IsTerminal;
use std::time::Duration;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() {
    let (taskscope_layer, _guard) = taskscope::Builder::from_env()
        .layer()
        .expect("start taskscope");
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(LevelFilter::INFO),
        )
        .with(taskscope_layer)
        .init();

    tracing::info!("app started");
    let handler = tokio::task::Builder::new()
        .name("handler")
        .spawn(async { std::thread::sleep(Duration::from_millis(150)) }) // the warning names this line
        .expect("spawn handler");
    handler.await.expect("handler ends");
    // The slow poll's warning comes once its stack is named (the first time,
    // taskscope reads the binary's debug info): at the latest when the guard
    // is dropped at the end of main, which waits for it (3 s at most).
}
