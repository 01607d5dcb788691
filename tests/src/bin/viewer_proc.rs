//! The viewer as a process of its own, for the fault tests
//! (`tests/viewer_faults.rs`):
//!
//! - `viewer_proc dump ADDR [--json] [--stacks] [--tree]`: exactly what
//!   `taskscope dump ADDR [--json] [--stacks] [--tree]` runs after parsing its
//!   command line (`taskscope_viewer::dump::main_with`): the tasks on stdout,
//!   or one line on stderr and exit status 1;
//! - `viewer_proc watch ADDR`: the live view's client (`client::watch`, with
//!   the environment's `TASKSCOPE_TOKEN`), printing one line a message:
//!   `connected`, `snapshot N` (N tasks), `delta`, or the connection state,
//!   until killed — the viewer the tests kill mid-stream;
//! - `viewer_proc reconnect ADDR`: a viewer reconnecting in a tight loop:
//!   connects, starts a Watch, reads its first message (every other time:
//!   hangs up without reading anything), and again; prints the number of
//!   reconnections every 10.

use std::io::Write;
use std::process::ExitCode;

use taskscope::ServerAddr;
use taskscope_viewer::state::model::{Connection, Update};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .get(1)
        .map(|a| ServerAddr::parse(a).expect("an address"))
        .expect("usage: viewer_proc dump|watch ADDR [--json]");
    match args[0].as_str() {
        "dump" => {
            let flag = |name: &str| args.iter().any(|a| a == name);
            taskscope_viewer::dump::main_with(
                &addr,
                taskscope_viewer::dump::Options {
                    json: flag("--json"),
                    stacks: flag("--stacks"),
                    tree: flag("--tree"),
                },
            )
        }
        "watch" => {
            watch(addr);
            ExitCode::SUCCESS
        }
        "reconnect" => {
            reconnect(addr);
            ExitCode::SUCCESS
        }
        other => panic!("unknown mode {other:?}"),
    }
}

fn watch(addr: ServerAddr) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (tx, mut updates) = tokio::sync::mpsc::channel(64);
        let (_requests, requests_rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(taskscope_viewer::client::watch(addr, tx, requests_rx));
        while let Some(update) = updates.recv().await {
            let line = match update {
                Update::Connection(Connection::Connected { .. }) => "connected".to_string(),
                Update::Connection(other) => format!("{other:?}"),
                Update::Snapshot { tasks, .. } => format!("snapshot {}", tasks.len()),
                Update::Delta { .. } => "delta".to_string(),
                Update::Detail(_) => "detail".to_string(),
            };
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return;
            }
        }
    });
}

fn reconnect(addr: ServerAddr) {
    use taskscope::proto::{PROTOCOL_VERSION, WatchRequest};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        for n in 1u64.. {
            let mut client = taskscope_viewer::client::connect::connect(&addr, None)
                .await
                .expect("connect");
            let request = WatchRequest {
                protocol_version: PROTOCOL_VERSION,
            };
            let mut stream = client.watch(request).await.expect("watch").into_inner();
            if n % 2 == 0 {
                stream
                    .message()
                    .await
                    .expect("a message")
                    .expect("an update");
            }
            drop((stream, client));
            if n % 10 == 0 {
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{n}").and_then(|()| out.flush()).is_err() {
                    return;
                }
            }
        }
    });
}
