//! Prometheus metrics by spawn location: `TASKSCOPE_METRICS_ADDR` (or
//! `Builder::metrics_addr`) serves `GET /metrics` on a thread of taskscope's
//! own; this example scrapes it once and prints the lines to look at.
//!
//! ```text
//! cargo run -p taskscope --example metrics
//! TASKSCOPE_METRICS_ADDR=127.0.0.1:9500 cargo run -p taskscope --example metrics -- 60
//! ```
//!
//! What to look at, on stdout (from `http://127.0.0.1:9464/metrics` unless
//! `TASKSCOPE_METRICS_ADDR` names another address):
//! - `taskscope_slow_polls_total{spawned_at="instrument/examples/metrics.rs:54:5"} 1`:
//!   the line whose tasks block the workers (in Prometheus,
//!   `rate(taskscope_slow_polls_total[5m])` by `spawned_at`);
//! - `taskscope_tasks_alive{spawned_at="instrument/examples/metrics.rs:62:9"} 3`:
//!   the live tasks of one line, a series that only grows being a leak;
//! - `taskscope_poll_duration_seconds_count` (and, not printed here, the
//!   histogram's buckets and `_sum`), `taskscope_tasks_spawned_total`, and the
//!   runtime's figures (`taskscope_runtime_workers 2`, busy time, queues);
//! - with an argument (`-- 60`), the app stays up that many seconds: point
//!   Prometheus at it (see the README, "Watching a fleet") or `curl` it.
//!
//! The endpoint listens on loopback unless told otherwise, and asks for
//! `TASKSCOPE_TOKEN` as a bearer token when that is set.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET /metrics` over plain HTTP/1.1: the exposition text.
fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[tokio::main]
async fn main() {
    let addr: SocketAddr = std::env::var("TASKSCOPE_METRICS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:9464".into())
        .parse()
        .expect("TASKSCOPE_METRICS_ADDR is an address such as 127.0.0.1:9464");
    let _guard = taskscope::Builder::from_env()
        .metrics_addr(Some(addr))
        .init();

    // A task whose poll blocks its worker for 150 ms: one slow poll.
    tokio::spawn(async { std::thread::sleep(Duration::from_millis(150)) }) // a slow poll
        .await
        .expect("the slow task ends");
    // Three tasks that stay alive, waiting for a message.
    let mut senders = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        senders.push(tx);
        tokio::spawn(rx); // three alive
    }
    tokio::task::yield_now().await;

    // A slow poll is counted as it ends, by taskscope's own threads: scrape
    // until it shows (scrapes less than 0.5 s apart get the same figures).
    let mut text = String::new();
    for _ in 0..20 {
        text = tokio::task::spawn_blocking(move || scrape(addr))
            .await
            .expect("the scrape ends")
            .unwrap_or_else(|e| format!("cannot scrape http://{addr}/metrics: {e}"));
        if text.contains("taskscope_slow_polls_total{spawned_at=\"instrument/examples/metrics.rs") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // The figures this example's lines make (the histogram's buckets left out).
    let shown = [
        "taskscope_slow_polls_total{",
        "taskscope_tasks_alive{",
        "taskscope_tasks_spawned_total{",
        "taskscope_poll_duration_seconds_count{",
    ];
    println!("From http://{addr}/metrics, by this example's spawn locations:");
    for line in text.lines().filter(|l| {
        l.contains("instrument/examples/metrics.rs") && shown.iter().any(|m| l.starts_with(m))
    }) {
        println!("  {line}");
    }
    for line in text
        .lines()
        .filter(|l| l.starts_with("taskscope_runtime_workers "))
    {
        println!("  {line}");
    }

    if let Some(seconds) = std::env::args().nth(1).and_then(|s| s.parse().ok()) {
        println!("Up for {seconds} s: curl http://{addr}/metrics");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
    drop(senders);
}
