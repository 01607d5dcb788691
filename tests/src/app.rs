//! What the scripted test apps (`grpc_app`, `load_app`, `sink_app`) share:
//! running under `taskscope::init()` on a two-worker runtime, commands read
//! from stdin, answers written to stdout.

use std::future::Future;
use std::io::{BufRead, Write};

use tokio::sync::mpsc;

/// Installs taskscope with `init()`, runs `app` on a two-worker runtime, then
/// drops the runtime and, last, taskscope's guard (which reports what is left).
pub fn run_instrumented<F: Future>(app: F) -> F::Output {
    let guard = taskscope::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let out = runtime.block_on(app);
    drop(runtime);
    drop(guard);
    out
}

/// Like [`run_instrumented`], and how long dropping taskscope's guard took
/// (what it reports and flushes at shutdown, bounded by `FLUSH_TIMEOUT`).
pub fn run_instrumented_timed<F: Future>(app: F) -> (F::Output, std::time::Duration) {
    let guard = taskscope::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let out = runtime.block_on(app);
    drop(runtime);
    let started = std::time::Instant::now();
    drop(guard);
    (out, started.elapsed())
}

/// The lines of stdin, read on a thread of their own; `quit` when stdin ends.
pub fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (lines_tx, lines) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
        let _ = lines_tx.send("quit".into());
    });
    lines
}

/// One line on stdout, flushed at once (the test is waiting for it).
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
