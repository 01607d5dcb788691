//! `taskscope::track` (and `.tracked()`) for futures that must not be dropped
//! unawaited: asyncio's "coroutine ... was never awaited", for Rust futures
//! (which do nothing until polled). Works on stable Tokio too: the wrapper does
//! not need `--cfg tokio_unstable`.
//!
//! ```text
//! cargo run -p taskscope --example track
//! ```
//!
//! What to look at:
//! - stderr: `WARN taskscope: future send_receipt (created at
//!   instrument/examples/track.rs:41:19) was never awaited` — the `track`
//!   call whose future was dropped without a single poll;
//! - nothing for `fetch_user`: awaited, so fine; nothing for the `timeout` that
//!   cut `slow_lookup` short: polled, then cancelled, which is not this finding.

use std::time::Duration;

use taskscope::TrackExt;

async fn fetch_user(id: u32) -> String {
    format!("user-{id}")
}

async fn send_receipt(to: &str) {
    println!("receipt sent to {to}");
}

async fn slow_lookup() {
    tokio::time::sleep(Duration::from_secs(10)).await;
}

#[tokio::main]
async fn main() {
    let _guard = taskscope::init();

    let user = fetch_user(7).tracked().await; // awaited: fine
    println!("fetched {user}");

    // Built, then forgotten: the receipt is never sent.
    let receipt = taskscope::track(send_receipt(&user)); // reported: never awaited
    drop(receipt);

    // Polled, then cut short by a timeout: a cancellation, not a finding.
    let _ = tokio::time::timeout(Duration::from_millis(10), slow_lookup().tracked()).await;

    taskscope::flush(Duration::from_secs(1));
    for finding in taskscope::findings() {
        println!("finding: {}: {}", finding.kind.name(), finding.message());
    }
}
