//! An instrumented app that shows what its `TASKSCOPE_*` settings did, for the
//! tests of malformed settings (`tests/fuzz_settings.rs`). `init()` in a
//! `#[tokio::main]` app; one scenario per run, named by the first argument:
//!
//! - `finished N WAIT_MS`: N short tasks named `short-…` end; after WAIT_MS it
//!   prints `finished K`, K being how many of them the history keeps;
//! - `idle WAIT_MS`: a task named `sleeper` idles for WAIT_MS; prints `idle K`,
//!   K being the `idle_too_long` findings about it;
//! - `log`: an info and a debug event of the app's own, and a task blocking its
//!   worker for 150 ms; prints `done` once its slow poll (if over the
//!   threshold) has been reported;
//! - `serve`: prints `ready`, then waits for a line on stdin;
//! - `serve-task`: the same, waiting inside a spawned task (one live task to
//!   see in the metrics).
//!
//! Every scenario ends with `settings_app: peak_rss N kB` on stderr (where
//! `/proc` has it).

use std::time::Duration;

use taskscope::{FindingKind, LeakReason};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _guard = taskscope::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> u64 { args.get(i).and_then(|a| a.parse().ok()).unwrap_or(0) };
    match args.first().map(String::as_str) {
        Some("finished") => {
            let mut handles = Vec::new();
            for i in 0..arg(1) {
                handles.push(
                    tokio::task::Builder::new()
                        .name(&format!("short-{i}"))
                        .spawn(async {})
                        .unwrap(),
                );
            }
            for handle in handles {
                handle.await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(arg(2))).await;
            let kept = taskscope::finished_tasks()
                .iter()
                .filter(|f| {
                    f.task
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("short-"))
                })
                .count();
            println!("finished {kept}");
        }
        Some("idle") => {
            let wait = Duration::from_millis(arg(1));
            tokio::task::Builder::new()
                .name("sleeper")
                .spawn(tokio::time::sleep(wait))
                .unwrap()
                .await
                .unwrap();
            taskscope::flush(Duration::from_secs(5));
            let reported = taskscope::findings()
                .iter()
                .filter(|f| {
                    matches!(
                        f.kind,
                        FindingKind::LeakedTask {
                            reason: LeakReason::IdleTooLong,
                            ..
                        }
                    ) && f.task.as_ref().and_then(|t| t.name.as_deref()) == Some("sleeper")
                })
                .count();
            println!("idle {reported}");
        }
        Some("log") => {
            tracing::info!("settings_app info line");
            tracing::debug!("settings_app debug line");
            let blocked = Duration::from_millis(150);
            tokio::spawn(async move { std::thread::sleep(blocked) })
                .await
                .unwrap();
            // Over the threshold in force, the final report waits for the
            // watchdog's stack (the first one loads the debug info, slow in a
            // debug build on a busy machine): wait for it here, not at exit.
            let threshold = taskscope::Builder::from_env()
                .settings()
                .slow_poll_threshold;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while blocked > threshold && std::time::Instant::now() < deadline {
                taskscope::flush(Duration::from_secs(1));
                let reported = taskscope::findings().iter().any(|f| {
                    matches!(
                        f.kind,
                        FindingKind::SlowPoll {
                            in_progress: false,
                            ..
                        }
                    )
                });
                if reported {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            println!("done");
        }
        Some("serve") => {
            println!("ready");
            let mut line = String::new();
            let _ =
                tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
        }
        Some("serve-task") => {
            let waiter = tokio::spawn(async {
                let mut line = String::new();
                let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line))
                    .await;
            });
            println!("ready");
            let _ = waiter.await;
        }
        other => eprintln!("settings_app: unknown scenario {other:?}"),
    }
    // The peak resident set so far (for the tests of the size bounds).
    if let Some(kb) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(str::to_owned))
        })
    {
        eprintln!("settings_app: peak_rss {}", kb.trim());
    }
}
