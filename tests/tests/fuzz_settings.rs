//! Settings from the environment. Every `TASKSCOPE_*` variable and `RUST_LOG`
//! with a malformed value, through a real process (`settings_app`): the
//! warning names the variable and the value, and the default is what the app
//! then does. And the parser fuzzed: arbitrary strings for every variable into
//! `Settings::from_lookup` never panic, and either parse or yield a
//! `SettingError` naming the variable.
//!
//! The fuzz cases run with `cargo test` (256 cases each); for a long run:
//! `PROPTEST_CASES=100000 cargo test -p taskscope-tests --test fuzz_settings fuzz`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use proptest::prelude::*;
use taskscope::{ServerAddr, Settings};
use taskscope_tests::temp_dir;

const APP: &str = env!("CARGO_BIN_EXE_settings_app");

/// The variables with a test through a real process below.
const PROCESS_TESTED: [&str; 15] = [
    "TASKSCOPE_SLOW_POLL_MS",
    "TASKSCOPE_REPORT",
    "TASKSCOPE_ADDR",
    "TASKSCOPE_FINISHED_MAX",
    "TASKSCOPE_FINISHED_TTL_S",
    "TASKSCOPE_IDLE_LIMIT_S",
    "TASKSCOPE_TOKEN",
    "TASKSCOPE_STACKS",
    "TASKSCOPE_METRICS_ADDR",
    "TASKSCOPE_METRICS_MAX_LOCATIONS",
    "TASKSCOPE_CONSOLE",
    "TASKSCOPE_TASKDUMP",
    "TASKSCOPE_POLL_TIMING",
    "TASKSCOPE_RECORD",
    "TASKSCOPE_RECORD_MAX_MB",
];

/// The variables whose value is a secret: a warning shows this instead.
const HIDDEN: &str = "(hidden)";

/// Every variable `Settings::from_lookup` reads, in the order it reads them.
fn variables() -> Vec<String> {
    let asked = RefCell::new(Vec::new());
    let _ = Settings::from_lookup(|name| {
        asked.borrow_mut().push(name.to_string());
        None
    });
    asked.into_inner()
}

/// Runs `settings_app args` in `dir` with `env` (and no other taskscope setting).
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(APP);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("TASKSCOPE_ADDR", "off")
        .stdin(Stdio::null());
    for var in variables() {
        if var != "TASKSCOPE_ADDR" {
            cmd.env_remove(var);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("run settings_app");
    assert!(
        output.status.success(),
        "settings_app {args:?} with {env:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_in(&temp_dir("settings"), args, env)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// stderr names `var` and `value` once, and says which default is used.
fn assert_named(output: &Output, var: &str, value: &str, default: &str) {
    let stderr = stderr(output);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("is not valid"))
        .collect();
    assert_eq!(lines.len(), 1, "one warning:\n{stderr}");
    let line = lines[0];
    assert!(
        line.starts_with(&format!("taskscope: {var}={value:?} is not valid: ")),
        "{line}"
    );
    assert!(
        line.ends_with(&format!("; using the default ({default})")),
        "{line}"
    );
}

fn slow_poll_warnings(output: &Output) -> usize {
    stderr(output)
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("Executing task") && l.contains(" took "))
        .count()
}

#[test]
fn every_variable_has_a_test_through_a_real_process() {
    let vars = variables();
    assert!(vars.len() >= PROCESS_TESTED.len(), "{vars:?}");
    for var in &vars {
        assert!(var.starts_with("TASKSCOPE_"), "{var}");
        assert!(
            PROCESS_TESTED.contains(&var.as_str()),
            "{var} is read by Settings::from_lookup but has no malformed-value test \
             through a real process in tests/tests/fuzz_settings.rs: add one"
        );
    }
}

#[test]
fn malformed_slow_poll_threshold_uses_100_ms() {
    let bad = run(&["log"], &[("TASKSCOPE_SLOW_POLL_MS", "0")]);
    assert_named(&bad, "TASKSCOPE_SLOW_POLL_MS", "0", "100 ms");
    assert_eq!(
        slow_poll_warnings(&bad),
        1,
        "150 ms > 100 ms:\n{}",
        stderr(&bad)
    );
    let good = run(&["log"], &[("TASKSCOPE_SLOW_POLL_MS", "1000")]);
    assert_eq!(slow_poll_warnings(&good), 0, "{}", stderr(&good));
}

#[test]
fn malformed_report_path_writes_no_file() {
    let dir = temp_dir("settings-report");
    let bad = run_in(&dir, &["log"], &[("TASKSCOPE_REPORT", "  ")]);
    assert_named(&bad, "TASKSCOPE_REPORT", "  ", "no report file");
    assert_eq!(slow_poll_warnings(&bad), 1, "{}", stderr(&bad));
    let left: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "no report file: {left:?}");
    // The same run with a usable (relative) path writes the finding.
    let good = run_in(&dir, &["log"], &[("TASKSCOPE_REPORT", "r.jsonl")]);
    assert!(!stderr(&good).contains("is not valid"));
    let text = std::fs::read_to_string(dir.join("r.jsonl")).unwrap();
    assert!(text.contains("\"kind\":\"slow_poll\""), "{text}");
}

#[test]
fn malformed_server_address_listens_on_the_default() {
    use std::io::{BufRead, BufReader, Write};
    let bad = "127.0.0.1:99999";
    let mut child = Command::new(APP)
        .arg("serve")
        .env_remove("RUST_LOG")
        .env_remove("TASKSCOPE_REPORT")
        .env("TASKSCOPE_ADDR", bad)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let default = ServerAddr::parse(taskscope::DEFAULT_ADDR).unwrap();
    let listing = runtime.block_on(async {
        for _ in 0..100 {
            if let Ok(listing) = taskscope_viewer::client::list_tasks(&default).await {
                return Some(listing);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    });
    let pid = child.id();
    let _ = writeln!(child.stdin.take().unwrap());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_named(&output, "TASKSCOPE_ADDR", bad, taskscope::DEFAULT_ADDR);
    let listing = listing.unwrap_or_else(|| {
        panic!(
            "nothing answered on {}: {}",
            taskscope::DEFAULT_ADDR,
            stderr(&output)
        )
    });
    assert_eq!(
        listing.app.pid,
        pid,
        "{} is the app's server (not another process holding the port)",
        taskscope::DEFAULT_ADDR
    );
}

/// Starts `settings_app serve` on a Unix socket in `dir` with `token`; returns
/// its output, and whether the socket appeared within `within` of `ready`.
fn serve_with_token(dir: &Path, token: &str, within: Duration) -> (Output, bool) {
    use std::io::{BufRead, BufReader, Write};
    let sock = dir.join("app.sock");
    let mut child = Command::new(APP)
        .arg("serve")
        .env_remove("RUST_LOG")
        .env_remove("TASKSCOPE_REPORT")
        .env("TASKSCOPE_ADDR", format!("unix:{}", sock.display()))
        .env("TASKSCOPE_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let deadline = std::time::Instant::now() + within;
    while !sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let listening = sock.exists();
    let _ = writeln!(child.stdin.take().unwrap());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    (output, listening)
}

#[test]
fn malformed_token_is_never_shown_and_turns_the_server_off() {
    let dir = temp_dir("settings-token");
    let secret = "not a token";
    let (bad, listening) = serve_with_token(&dir, secret, Duration::from_secs(1));
    assert_named(
        &bad,
        "TASKSCOPE_TOKEN",
        HIDDEN,
        "the viewer server and the metrics endpoint off, rather than serve without the token",
    );
    assert!(!stderr(&bad).contains(secret), "{}", stderr(&bad));
    assert!(!listening, "no server without the token");
    // Too short to resist guessing: refused the same way, saying why.
    let short = "s3cret-token-01";
    let (bad, listening) = serve_with_token(&dir, short, Duration::from_secs(1));
    assert_named(
        &bad,
        "TASKSCOPE_TOKEN",
        HIDDEN,
        "the viewer server and the metrics endpoint off, rather than serve without the token",
    );
    assert!(
        stderr(&bad).contains("expected a token of at least 16 characters (this one has 15"),
        "{}",
        stderr(&bad)
    );
    assert!(!stderr(&bad).contains(short), "{}", stderr(&bad));
    assert!(!listening, "no server without the token");
    let (good, listening) = serve_with_token(&dir, "s3cret-token-0123", Duration::from_secs(20));
    assert!(!stderr(&good).contains("is not valid"), "{}", stderr(&good));
    assert!(!stderr(&good).contains("s3cret-token"), "{}", stderr(&good));
    assert!(listening, "{}", stderr(&good));
}

/// Starts `settings_app serve-task` with `env` (and no other taskscope
/// setting but `TASKSCOPE_ADDR=off`), runs `during` with its pid once it is
/// ready, then lets it end; returns its output and what `during` returned.
fn serve_with<R>(env: &[(&str, &str)], during: impl FnOnce(u32) -> R) -> (Output, R) {
    use std::io::{BufRead, BufReader, Write};
    let mut cmd = Command::new(APP);
    cmd.arg("serve-task").env_remove("RUST_LOG");
    for var in variables() {
        cmd.env_remove(var);
    }
    cmd.env("TASKSCOPE_ADDR", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let result = during(child.id());
    let _ = writeln!(child.stdin.take().unwrap());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    (output, result)
}

/// The names of a process's threads (Linux; empty elsewhere).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn malformed_metrics_address_leaves_the_endpoint_off() {
    for bad in ["9464", "unix:/tmp/taskscope-metrics.sock"] {
        let (output, threads) = serve_with(&[("TASKSCOPE_METRICS_ADDR", bad)], thread_names);
        assert_named(&output, "TASKSCOPE_METRICS_ADDR", bad, "off");
        assert!(
            !threads.iter().any(|t| t.starts_with("taskscope-metr")),
            "{threads:?}"
        );
    }
    let good = format!("127.0.0.1:{}", taskscope_tests::free_port());
    // A thread takes its name once it runs: until then /proc shows the
    // process's name. Look again for a while.
    let named_soon = |pid| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let threads = thread_names(pid);
            if threads.iter().any(|t| t == "taskscope-metri")
                || std::time::Instant::now() > deadline
            {
                return threads;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (output, threads) = serve_with(&[("TASKSCOPE_METRICS_ADDR", &good)], named_soon);
    assert!(
        !stderr(&output).contains("is not valid"),
        "{}",
        stderr(&output)
    );
    if cfg!(target_os = "linux") {
        assert!(
            threads.iter().any(|t| t == "taskscope-metri"),
            "{threads:?}"
        );
    }
}

#[test]
fn malformed_metrics_location_limit_keeps_1000() {
    let addr = format!("127.0.0.1:{}", taskscope_tests::free_port());
    let scrape = |_pid| {
        // The endpoint starts with the app's session, on a thread of its own:
        // on a loaded machine it may answer a moment after the app said
        // `ready`. Ask again until it counts the waiting task (10 s at most).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let samples = taskscope_tests::metrics::get(&addr, "/metrics", "")
                .map(|r| taskscope_tests::metrics::parse(&r.body))
                .unwrap_or_default();
            if samples.iter().any(|s| s.name == "taskscope_tasks_alive")
                || std::time::Instant::now() >= deadline
            {
                return samples;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for (bad, limit) in [("10001", None), ("-1", None), ("0", Some(0))] {
        let (output, samples) = serve_with(
            &[
                ("TASKSCOPE_METRICS_ADDR", &addr),
                ("TASKSCOPE_METRICS_MAX_LOCATIONS", bad),
            ],
            scrape,
        );
        // The waiting task: named with the default limit, "other" with 0.
        let alive: Vec<&str> = samples
            .iter()
            .filter(|s| s.name == "taskscope_tasks_alive")
            .map(|s| s.labels["spawned_at"].as_str())
            .collect();
        match limit {
            None => {
                assert_named(&output, "TASKSCOPE_METRICS_MAX_LOCATIONS", bad, "1000");
                assert!(
                    !alive.is_empty() && alive.iter().all(|l| l.starts_with("tests/src/bin/")),
                    "{alive:?}"
                );
            }
            Some(_) => {
                assert!(
                    !stderr(&output).contains("is not valid"),
                    "{}",
                    stderr(&output)
                );
                assert_eq!(alive, ["other"]);
            }
        }
    }
}

/// Whether the app at `addr` answers tokio-console's `WatchState`.
fn serves_console(addr: &str) -> Result<(), tonic::Status> {
    use console_api::instrument::StateRequest;
    use console_api::instrument::instrument_client::InstrumentClient;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = None;
        for _ in 0..200 {
            if let Ok(c) = InstrumentClient::connect(format!("http://{addr}")).await {
                client = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut client = client.unwrap_or_else(|| panic!("nothing listens on {addr}"));
        client.watch_state(StateRequest {}).await.map(|_| ())
    })
}

/// `settings_app` serving on a free address with `TASKSCOPE_CONSOLE=value`,
/// and whether it answered tokio-console's `WatchState` ([`serve_with`]).
fn serve_with_console(value: &str) -> (Output, Result<(), tonic::Status>) {
    let addr = format!("127.0.0.1:{}", taskscope_tests::free_port());
    serve_with(
        &[("TASKSCOPE_ADDR", &addr), ("TASKSCOPE_CONSOLE", value)],
        |_| serves_console(&addr),
    )
}

#[test]
fn malformed_console_setting_keeps_the_console_protocol_on() {
    let (bad, served) = serve_with_console("maybe");
    assert_named(&bad, "TASKSCOPE_CONSOLE", "maybe", "on");
    assert!(served.is_ok(), "{served:?}");
    let (off, served) = serve_with_console("off");
    assert!(!stderr(&off).contains("is not valid"), "{}", stderr(&off));
    let refused = served.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    assert!(
        refused.message().contains("TASKSCOPE_CONSOLE=off"),
        "{refused:?}"
    );
}

/// The `poll_timing_one_in` the app at `addr` announces in its first snapshot.
fn announced_poll_timing(addr: &str) -> u32 {
    use taskscope::proto::{self, taskscope_client::TaskscopeClient, update::Kind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for _ in 0..200 {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"));
            if let Ok(channel) = endpoint.expect("an address").connect().await {
                let mut client = TaskscopeClient::new(channel);
                let mut updates = client
                    .watch(proto::WatchRequest {
                        protocol_version: proto::PROTOCOL_VERSION,
                    })
                    .await
                    .expect("watch")
                    .into_inner();
                let first = updates
                    .message()
                    .await
                    .expect("an update")
                    .expect("a first");
                let Some(Kind::Snapshot(snapshot)) = first.kind else {
                    panic!("the first update is a snapshot: {first:?}");
                };
                return snapshot.app.expect("the app's info").poll_timing_one_in;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nothing listens on {addr}")
    })
}

/// `TASKSCOPE_POLL_TIMING`: `every` times every poll (the app says 1 in 1),
/// `sampled` and the default one short poll in 8; a bad value is named once
/// and the default kept.
#[test]
fn poll_timing_is_announced_and_a_malformed_value_keeps_sampling() {
    for (value, one_in) in [("every", 1), ("sampled", 8), ("", 8), ("always", 8)] {
        let addr = format!("127.0.0.1:{}", taskscope_tests::free_port());
        let mut env = vec![("TASKSCOPE_ADDR", addr.as_str())];
        if !value.is_empty() {
            env.push(("TASKSCOPE_POLL_TIMING", value));
        }
        let (output, announced) = serve_with(&env, |_| announced_poll_timing(&addr));
        assert_eq!(announced, one_in, "TASKSCOPE_POLL_TIMING={value:?}");
        if value == "always" {
            assert_named(&output, "TASKSCOPE_POLL_TIMING", value, "sampled");
        } else {
            assert!(
                !stderr(&output).contains("is not valid"),
                "{}",
                stderr(&output)
            );
        }
    }
}

#[test]
fn malformed_history_size_keeps_1000() {
    let bad = run(
        &["finished", "1100", "0"],
        &[("TASKSCOPE_FINISHED_MAX", "lots")],
    );
    assert_named(&bad, "TASKSCOPE_FINISHED_MAX", "lots", "1000");
    assert_eq!(stdout(&bad), "finished 1000");
    let good = run(
        &["finished", "1100", "0"],
        &[("TASKSCOPE_FINISHED_MAX", "5")],
    );
    assert_eq!(stdout(&good), "finished 5");
}

/// The peak resident set the app reported on stderr, in kB.
fn peak_rss_kb(output: &Output) -> u64 {
    stderr(output)
        .lines()
        .find_map(|l| l.strip_prefix("settings_app: peak_rss "))
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak_rss line:\n{}", stderr(output)))
}

/// A history size above the stated maximum (1,000,000) is refused like a
/// malformed one: no panic (u64::MAX made `init()` panic with "capacity
/// overflow"), no allocation of its size (100,000,000 took 6.1 GiB), the
/// default is used.
#[test]
fn history_size_above_the_maximum_keeps_1000_in_bounded_memory() {
    for too_big in ["18446744073709551615", "100000000", "1000001"] {
        let bad = run(
            &["finished", "1100", "0"],
            &[("TASKSCOPE_FINISHED_MAX", too_big)],
        );
        assert_named(&bad, "TASKSCOPE_FINISHED_MAX", too_big, "1000");
        assert!(
            stderr(&bad).contains("from 0 (keeps none) to 1000000"),
            "{}",
            stderr(&bad)
        );
        assert_eq!(stdout(&bad), "finished 1000");
        let peak = peak_rss_kb(&bad);
        assert!(peak < 200_000, "{too_big}: peak RSS {peak} kB");
    }
    // The maximum itself is taken: its ring is allocated (64 bytes a task).
    let max = run(
        &["finished", "1100", "0"],
        &[("TASKSCOPE_FINISHED_MAX", "1000000")],
    );
    assert!(!stderr(&max).contains("is not valid"), "{}", stderr(&max));
    assert_eq!(stdout(&max), "finished 1100");
    eprintln!(
        "peak RSS with TASKSCOPE_FINISHED_MAX=1000000: {} kB",
        peak_rss_kb(&max)
    );
}

/// The largest values the time settings take do not overflow anything.
#[test]
fn the_largest_time_settings_run() {
    let max = u64::MAX.to_string();
    for var in [
        "TASKSCOPE_SLOW_POLL_MS",
        "TASKSCOPE_FINISHED_TTL_S",
        "TASKSCOPE_IDLE_LIMIT_S",
    ] {
        let out = run(&["idle", "300"], &[(var, &max)]);
        assert!(
            !stderr(&out).contains("is not valid"),
            "{var}: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "idle 0", "{var}");
    }
}

#[test]
fn malformed_stacks_setting_keeps_them_on() {
    let bad = run(&["log"], &[("TASKSCOPE_STACKS", "maybe")]);
    assert_named(&bad, "TASKSCOPE_STACKS", "maybe", "on");
    let text = stderr(&bad);
    let warning = text
        .lines()
        .find(|l| l.contains("Executing task") && l.contains(" took "))
        .unwrap_or_else(|| panic!("a slow poll:\n{text}"));
    assert!(
        warning.contains("; blocked in "),
        "with its stack: {warning}"
    );
    let off = run(&["log"], &[("TASKSCOPE_STACKS", "off")]);
    let text = stderr(&off);
    assert!(!text.contains("is not valid"), "{text}");
    let warning = text
        .lines()
        .find(|l| l.contains("Executing task") && l.contains(" took "))
        .unwrap_or_else(|| panic!("a slow poll:\n{text}"));
    assert!(
        !warning.contains("; blocked in "),
        "without a stack: {warning}"
    );
}

#[test]
fn malformed_history_age_keeps_60_s() {
    let bad = run(
        &["finished", "3", "1500"],
        &[("TASKSCOPE_FINISHED_TTL_S", "-5")],
    );
    assert_named(&bad, "TASKSCOPE_FINISHED_TTL_S", "-5", "60 s");
    assert_eq!(stdout(&bad), "finished 3");
    let good = run(
        &["finished", "3", "1500"],
        &[("TASKSCOPE_FINISHED_TTL_S", "1")],
    );
    assert_eq!(stdout(&good), "finished 0");
}

#[test]
fn malformed_idle_limit_leaves_it_off() {
    let bad = run(&["idle", "1600"], &[("TASKSCOPE_IDLE_LIMIT_S", "soon")]);
    assert_named(&bad, "TASKSCOPE_IDLE_LIMIT_S", "soon", "off");
    assert_eq!(stdout(&bad), "idle 0");
    let good = run(&["idle", "1600"], &[("TASKSCOPE_IDLE_LIMIT_S", "1")]);
    assert_ne!(stdout(&good), "idle 0", "{}", stderr(&good));
}

#[test]
fn malformed_rust_log_uses_info() {
    let bad = run(&["log"], &[("RUST_LOG", "=[[[")]);
    assert!(
        stderr(&bad).contains("a tracing filter such as"),
        "{}",
        stderr(&bad)
    );
    assert_named(&bad, "RUST_LOG", "=[[[", "info");
    let text = stderr(&bad);
    assert!(text.contains("settings_app info line"), "{text}");
    assert!(!text.contains("settings_app debug line"), "{text}");
    assert_eq!(slow_poll_warnings(&bad), 1, "{text}");
    // A valid filter is obeyed: no info lines, taskscope's warnings still on.
    let good = run(&["log"], &[("RUST_LOG", "warn")]);
    assert!(!stderr(&good).contains("settings_app info line"));
    assert_eq!(slow_poll_warnings(&good), 1, "{}", stderr(&good));
}

// ---- the parser, fuzzed ----

/// Values worth trying: anything at all, and strings near what each variable takes.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ \t]{0,2}[+-]?[0-9]{0,22}[ \t\n]{0,2}",
        "(?i)(off|on|none|0|00|-0|1e3|0x10|[0-9]+\\.[0-9]*|[٠-٩]{1,3})",
        "(unix:|http://|https://)?(\\[::1\\]|127\\.0\\.0\\.1|0\\.0\\.0\\.0|localhost|[0-9.]{1,15})?(:[0-9]{0,6})?/{0,2}",
        "unix:.{0,20}",
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_string()),
        Just(String::new()),
    ]
}

/// One variable set to `value`: no panic; at most one error, naming the
/// variable and the value, with the defaults kept; otherwise, for the
/// variables whose syntax is known here, the value as parsed.
fn check_one(var: &str, value: &str) -> Result<(), TestCaseError> {
    let (settings, errors) = Settings::from_lookup(|n| (n == var).then(|| value.to_string()));
    prop_assert!(errors.len() <= 1, "{:?}", errors);
    let secret = var == "TASKSCOPE_TOKEN";
    if let Some(error) = errors.first() {
        prop_assert_eq!(error.variable, var);
        let shown = if secret { HIDDEN } else { value };
        prop_assert_eq!(&error.value, shown, "the value, or (hidden) for a secret");
        prop_assert!(!error.expected.is_empty() && !error.default.is_empty());
        let text = error.to_string();
        let head = format!("{var}={shown:?} is not valid: ");
        prop_assert!(text.starts_with(&head), "{}", text);
        let tail = format!("; using the default ({})", error.default);
        prop_assert!(text.ends_with(&tail), "{}", text);
        let mut expected = Settings::default();
        if secret {
            // No server rather than a server without the token.
            expected.server_addr = ServerAddr::Off;
        }
        prop_assert_eq!(
            format!("{settings:?}"),
            format!("{expected:?}"),
            "a bad value leaves the defaults in place"
        );
    }
    let parsed = errors.is_empty();
    let positive = value.trim().parse::<u64>().ok().filter(|&n| n > 0);
    match var {
        "TASKSCOPE_SLOW_POLL_MS" => {
            prop_assert_eq!(parsed, positive.is_some());
            if let Some(ms) = positive {
                prop_assert_eq!(settings.slow_poll_threshold, Duration::from_millis(ms));
            }
        }
        "TASKSCOPE_REPORT" => {
            prop_assert_eq!(parsed, !value.trim().is_empty());
            if parsed {
                prop_assert_eq!(settings.report_path, Some(PathBuf::from(value)));
            }
        }
        "TASKSCOPE_ADDR" => {
            let addr = ServerAddr::parse(value);
            prop_assert_eq!(parsed, addr.is_ok());
            if let Ok(addr) = addr {
                prop_assert_eq!(settings.server_addr, addr);
            }
        }
        "TASKSCOPE_FINISHED_MAX" => {
            let count = value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= taskscope::MAX_FINISHED_CAPACITY);
            prop_assert_eq!(parsed, count.is_some());
            if let Some(count) = count {
                prop_assert_eq!(settings.finished_capacity, count);
            }
        }
        "TASKSCOPE_FINISHED_TTL_S" => {
            prop_assert_eq!(parsed, positive.is_some());
            if let Some(s) = positive {
                prop_assert_eq!(settings.finished_max_age, Duration::from_secs(s));
            }
        }
        "TASKSCOPE_IDLE_LIMIT_S" => {
            let off = value.trim().eq_ignore_ascii_case("off");
            prop_assert_eq!(parsed, off || positive.is_some());
            if parsed {
                prop_assert_eq!(settings.idle_limit, positive.map(Duration::from_secs));
            }
        }
        "TASKSCOPE_TOKEN" => {
            let usable = value.len() >= taskscope::MIN_TOKEN_LEN
                && value.bytes().all(|b| b.is_ascii_graphic());
            prop_assert_eq!(parsed, usable);
            prop_assert_eq!(settings.token.as_deref(), usable.then_some(value));
            if usable {
                let shown = format!("{settings:?}");
                prop_assert!(shown.contains("token: Some(\"(hidden)\")"), "{}", shown);
            }
        }
        "TASKSCOPE_STACKS" => {
            let word = value.trim().to_ascii_lowercase();
            prop_assert_eq!(parsed, word == "on" || word == "off");
            prop_assert_eq!(settings.capture_stacks, word != "off");
        }
        "TASKSCOPE_CONSOLE" => {
            let word = value.trim().to_ascii_lowercase();
            prop_assert_eq!(parsed, word == "on" || word == "off");
            prop_assert_eq!(settings.console, word != "off");
        }
        "TASKSCOPE_POLL_TIMING" => {
            let word = value.trim().to_ascii_lowercase();
            let known = ["sampled", "every"].contains(&word.as_str());
            prop_assert_eq!(parsed, known);
            let every = known && word == "every";
            prop_assert_eq!(settings.poll_timing == taskscope::PollTiming::Every, every);
        }
        "TASKSCOPE_TASKDUMP" => {
            let word = value.trim().to_ascii_lowercase();
            let known = ["off", "on", "multi_thread"].contains(&word.as_str());
            prop_assert_eq!(parsed, known);
            if !known {
                prop_assert_eq!(settings.task_dumps, taskscope::TaskDumps::CurrentThread);
            }
        }
        // A variable added later: the general rules above hold for it too.
        _ => {}
    }
    Ok(())
}

proptest! {
    #[test]
    fn fuzz_every_variable_parses_or_names_itself(index in any::<prop::sample::Index>(), value in value()) {
        let vars = variables();
        let var = &vars[index.index(vars.len())];
        check_one(var, &value)?;
    }

    #[test]
    fn fuzz_all_variables_at_once(values in prop::collection::vec(prop::option::of(value()), 8)) {
        let vars = variables();
        let set = |name: &str| {
            let i = vars.iter().position(|v| v == name)?;
            values.get(i % values.len()).cloned().flatten()
        };
        let (_, errors) = Settings::from_lookup(set);
        let mut named: Vec<&str> = errors.iter().map(|e| e.variable).collect();
        for error in &errors {
            let given = set(error.variable);
            prop_assert!(given.is_some(), "{} was not set", error.variable);
            prop_assert!(Some(&error.value) == given.as_ref() || error.value == HIDDEN);
        }
        named.sort_unstable();
        let before = named.len();
        named.dedup();
        prop_assert_eq!(before, named.len(), "one error per variable at most");
    }

    #[test]
    fn fuzz_mutated_valid_values(var_index in any::<prop::sample::Index>(), base in prop::sample::select(vec![
        "100", "off", "127.0.0.1:6670", "http://[::1]:7000/", "unix:/tmp/app.sock", "report.jsonl", "1000", "60",
    ]), at in any::<prop::sample::Index>(), insert in any::<char>(), delete in any::<bool>()) {
        let vars = variables();
        let var = &vars[var_index.index(vars.len())];
        let mut chars: Vec<char> = base.chars().collect();
        let i = at.index(chars.len() + 1);
        if delete && i < chars.len() {
            chars.remove(i);
        } else {
            chars.insert(i, insert);
        }
        check_one(var, &chars.into_iter().collect::<String>())?;
    }
}

/// A malformed task-dump policy: named on stderr once, the default (`on`:
/// current-thread runtimes only) kept, and the app runs on.
#[test]
fn malformed_task_dump_policy_keeps_current_thread_dumps() {
    for bad in ["multi", "yes", ""] {
        let (output, ()) = serve_with(&[("TASKSCOPE_TASKDUMP", bad)], |_| ());
        assert_named(&output, "TASKSCOPE_TASKDUMP", bad, "on");
    }
    let (output, ()) = serve_with(&[("TASKSCOPE_TASKDUMP", "multi_thread")], |_| ());
    assert!(
        !stderr(&output).contains("is not valid"),
        "{}",
        stderr(&output)
    );
}

/// A malformed recording setting: named once on stderr, its default used (no
/// recording for an empty path; 256 MiB for a bad bound), the app runs on.
#[test]
fn malformed_recording_settings_keep_their_defaults() {
    let (output, threads) = serve_with(&[("TASKSCOPE_RECORD", "  ")], thread_names);
    assert_named(&output, "TASKSCOPE_RECORD", "  ", "no recording");
    assert!(
        !threads.iter().any(|t| t.starts_with("taskscope-reco")),
        "{threads:?}"
    );
    let dir = temp_dir("settings-record");
    let path = dir.join("app.rec");
    for bad in ["0", "lots", "1048577"] {
        let (output, ()) = serve_with(
            &[
                ("TASKSCOPE_RECORD", path.to_str().unwrap()),
                ("TASKSCOPE_RECORD_MAX_MB", bad),
            ],
            |_| (),
        );
        assert_named(&output, "TASKSCOPE_RECORD_MAX_MB", bad, "256 MiB");
    }
    assert!(
        path.exists(),
        "the recording is made with the default bound"
    );
}
