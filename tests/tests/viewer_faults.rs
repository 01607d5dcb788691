//! Faults on the viewer side must never harm the app. Each test runs
//! `load_app` (a real instrumented process doing steady request work and
//! reporting its request counter), measures its throughput and memory with no
//! viewer, injects one fault, and measures again:
//!
//! - a viewer process killed mid-stream;
//! - a viewer that connects and never reads (dropped with RESOURCE_EXHAUSTED
//!   and the reason, then disconnected if it still does not read);
//! - 20 viewers at once;
//! - a viewer reconnecting in a loop.
//!
//! And the viewer pointed at what is not a taskscope app (a TCP server writing
//! garbage, an HTTP/1 server, a gRPC server with neither taskscope's service
//! nor tokio-console's): `dump` says why in one line and exits 1; the live
//! view's client shows it as its connection state. A console-subscriber app
//! is read through tokio-console's protocol, and `dump` says so.
//!
//! What is compared with a baseline measured in the same test (the best of
//! a few one-second windows on each side, by the app's own clock):
//!
//! - progress: the app's request counter advances in every window;
//! - efficiency: requests per CPU-second of the app's own threads (all but
//!   taskscope's server thread) stays at least half the baseline's. Unlike raw
//!   throughput, this does not move when something else on the machine (the
//!   test's own viewers, another build) takes a core away from the app, so it
//!   measures what the server does *to* the app: locks, contention, stalls.
//!   Raw throughput is printed alongside;
//! - blocking: the app's runtime workers (which always have work) spend
//!   hardly more time blocked — neither running nor waiting for a core, from
//!   /proc's schedstat — than in the baseline: the server never makes them
//!   wait;
//! - the server's own thread stays within its CPU budget (a quarter of one
//!   core, with slack);
//! - memory: the app's VmRSS (/proc) stays within a bound of the baseline.
//!
//! The tests take turns (one lock): each app saturates the machine's cores,
//! and two at once would measure each other.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskscope_tests::free_port;

use bytes::Bytes;
use taskscope::ServerAddr;
use taskscope::proto::PROTOCOL_VERSION;
use taskscope_viewer::client::{self, ClientError};
use taskscope_viewer::state::model::{Connection, Update};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The longest any step may take (debug builds on a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(60);

/// One throughput window.
const WINDOW: Duration = Duration::from_millis(1_000);

/// Windows measured on each side; the best counts.
const WINDOWS: usize = 3;

/// The app keeps at least this share of its baseline efficiency under a fault.
const MIN_SHARE: f64 = 0.5;

/// How much more of the time the app's workers may be blocked under a fault
/// (waiting on something, not for a core) than without it.
const MAX_MORE_BLOCKED: f64 = 0.25;

/// The most of one core taskscope's server thread may use under a fault: its
/// budget is a quarter; the rest is slack for the work it cannot postpone
/// (taking and refusing connections).
const MAX_SERVER_SHARE: f64 = 0.4;

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// `load_app`, running.
struct LoadApp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    addr: String,
}

impl LoadApp {
    fn start(idle: usize) -> LoadApp {
        LoadApp::start_with(idle, &[])
    }

    fn start_with(idle: usize, env: &[(&str, &str)]) -> LoadApp {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_load_app"))
            .env("TASKSCOPE_ADDR", &addr)
            .env("LOAD_APP_IDLE", idle.to_string())
            // No slow-poll stacks: on a loaded machine a descheduled worker
            // looks blocked, and symbolizing its stack costs ~100 MB of RSS
            // that has nothing to do with viewers.
            .env("TASKSCOPE_SLOW_POLL_MS", "600000")
            .env_remove("TASKSCOPE_TOKEN")
            .env_remove("TASKSCOPE_REPORT")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start load_app");
        let (stderr, _reader) = taskscope_tests::collect_stderr(child.stderr.take().unwrap());
        let mut app = LoadApp {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            stderr,
            addr,
        };
        let line = app.line();
        assert_eq!(line, "ready", "stderr:\n{}", app.stderr());
        app
    }

    fn server(&self) -> ServerAddr {
        ServerAddr::parse(&self.addr).unwrap()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "load_app ended; stderr:\n{}", self.stderr());
        line.trim_end().to_string()
    }

    /// Requests done, and the app's clock (µs) when it read the counter.
    fn count(&mut self) -> (u64, u64) {
        writeln!(self.stdin, "count").unwrap();
        self.stdin.flush().unwrap();
        let line = self.line();
        let mut words = line.split_whitespace().skip(1);
        let n = words.next().and_then(|w| w.parse().ok());
        let at = words.next().and_then(|w| w.parse().ok());
        match (n, at) {
            (Some(n), Some(at)) => (n, at),
            _ => panic!("not a count: {line:?}"),
        }
    }

    /// One window: throughput, efficiency, how long the workers were blocked.
    async fn window(&mut self) -> Window {
        let (n0, t0) = self.count();
        let (app0, _) = self.cpu();
        let (runnable0, _) = self.workers_runnable();
        let wall = Instant::now();
        tokio::time::sleep(WINDOW).await;
        let (n1, t1) = self.count();
        let (app1, _) = self.cpu();
        let (runnable1, workers) = self.workers_runnable();
        let wall = wall.elapsed().as_secs_f64() * f64::from(workers.max(1));
        assert!(n1 > n0, "the app made no progress in {WINDOW:?}");
        let done = (n1 - n0) as f64;
        Window {
            rate: done / ((t1 - t0).max(1) as f64 / 1e6),
            efficiency: done / (app1 - app0).as_secs_f64().max(0.01),
            server_share: 0.0,
            blocked: (1.0 - (runnable1 - runnable0).as_secs_f64() / wall).max(0.0),
        }
    }

    /// The best throughput and efficiency of a few windows, and the server's
    /// share over all of them.
    async fn measure(&mut self) -> Window {
        let mut best = Window::default();
        let (_, server0) = self.cpu();
        let wall = Instant::now();
        best.blocked = 1.0;
        for _ in 0..WINDOWS {
            let w = self.window().await;
            best.rate = best.rate.max(w.rate);
            best.efficiency = best.efficiency.max(w.efficiency);
            best.blocked = best.blocked.min(w.blocked);
        }
        let (_, server1) = self.cpu();
        best.server_share = (server1 - server0).as_secs_f64() / wall.elapsed().as_secs_f64();
        best
    }

    /// Time the app's runtime workers spent running or waiting for a core
    /// (from /proc's schedstat), summed, and how many workers there are.
    fn workers_runnable(&self) -> (Duration, u32) {
        let tasks = format!("/proc/{}/task", self.child.id());
        let mut runnable = Duration::ZERO;
        let mut workers = 0u32;
        for entry in std::fs::read_dir(&tasks).expect("read /proc/PID/task") {
            let dir = entry.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.starts_with("tokio-rt-worker") && !comm.starts_with("tokio-runtime-w") {
                continue;
            }
            // run_ns wait_ns timeslices
            let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            let ns: u64 = stat
                .split_whitespace()
                .take(2)
                .filter_map(|n| n.parse::<u64>().ok())
                .sum();
            runnable += Duration::from_nanos(ns);
            workers += 1;
        }
        (runnable, workers)
    }

    /// CPU time of the app's threads but taskscope's server thread, and of
    /// the server thread.
    fn cpu(&self) -> (Duration, Duration) {
        let tasks = format!("/proc/{}/task", self.child.id());
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let (mut app, mut server) = (0u64, 0u64);
        for entry in std::fs::read_dir(&tasks).expect("read /proc/PID/task") {
            let dir = entry.unwrap().path();
            let (Ok(comm), Ok(stat)) = (
                std::fs::read_to_string(dir.join("comm")),
                std::fs::read_to_string(dir.join("stat")),
            ) else {
                continue; // A thread that just ended.
            };
            // After the parenthesized name: utime and stime are the 12th and 13th fields.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
            if comm.trim() == "taskscope-serve" {
                server += ticks;
            } else {
                app += ticks;
            }
        }
        let time = |ticks: u64| Duration::from_nanos(ticks * 1_000_000_000 / hz);
        (time(app), time(server))
    }

    /// Resident memory, KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for LoadApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A viewer on the client API that reads everything, counting updates.
fn reading_viewer(addr: ServerAddr) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let (tx, mut updates) = mpsc::channel(64);
    let (_requests, requests_rx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        let _requests = _requests;
        let watch = tokio::spawn(client::watch(addr, tx, requests_rx));
        while let Some(update) = updates.recv().await {
            let what = match update {
                Update::Snapshot { .. } => "snapshot".to_string(),
                Update::Delta { .. } => "delta".to_string(),
                Update::Detail(_) => "detail".to_string(),
                Update::Connection(c) => format!("{c:?}"),
            };
            log.lock().unwrap().push(what);
        }
        watch.abort();
    });
    (task, seen)
}

/// Memory the app may gain under a fault, over its baseline (KiB): the
/// server's bounded queues and buffers, and the allocator keeping freed
/// pages. A leak per connection or per update goes far past it.
const RSS_SLACK_KIB: u64 = 48 * 1024;

/// What one or more windows measured.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    /// Requests per second (by the app's clock).
    rate: f64,
    /// Requests per CPU-second of the app's threads (the server's excluded).
    efficiency: f64,
    /// CPU of taskscope's server thread, in cores.
    server_share: f64,
    /// Share of the time the app's workers were blocked (neither running
    /// nor waiting for a core): near 0 for this app, which always has work.
    blocked: f64,
}

/// The app's figures before a fault.
struct Baseline {
    window: Window,
    rss: u64,
}

impl LoadApp {
    async fn baseline(&mut self) -> Baseline {
        // Let the app warm up: its registry and history reach their size.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let window = self.measure().await;
        Baseline {
            window,
            rss: self.rss_kib(),
        }
    }

    /// Asserts the app keeps working under a fault: it makes progress, keeps
    /// at least [`MIN_SHARE`] of its baseline efficiency, and the server's
    /// thread stays within its budget.
    async fn keeps_working(&mut self, base: &Baseline, during: &str) {
        let now = self.measure().await;
        let b = base.window;
        println!(
            "{during}: {:.0} requests/s (baseline {:.0}, ratio {:.2}); {:.0} requests per \
             CPU-second (baseline {:.0}, ratio {:.2}); workers blocked {:.0}% of the time \
             (baseline {:.0}%); server thread {:.0}% of a core",
            now.rate,
            b.rate,
            now.rate / b.rate,
            now.efficiency,
            b.efficiency,
            now.efficiency / b.efficiency,
            now.blocked * 100.0,
            b.blocked * 100.0,
            now.server_share * 100.0
        );
        assert!(
            now.blocked <= b.blocked + MAX_MORE_BLOCKED,
            "{during}: the app's workers were blocked {:.0}% of the time, against {:.0}% \
             without it",
            now.blocked * 100.0,
            b.blocked * 100.0
        );
        assert!(
            now.server_share <= MAX_SERVER_SHARE,
            "{during}: the server's thread used {:.0}% of a core",
            now.server_share * 100.0
        );
        assert!(
            now.efficiency >= b.efficiency * MIN_SHARE,
            "{during}: {:.0} requests per CPU-second against {:.0} without it",
            now.efficiency,
            b.efficiency
        );
    }

    /// Asserts the app's memory stayed within [`RSS_SLACK_KIB`] of the baseline.
    fn keeps_its_memory(&self, base: &Baseline, after: &str) {
        let rss = self.rss_kib();
        println!("{after}: RSS {rss} KiB, baseline {} KiB", base.rss);
        assert!(
            rss <= base.rss + RSS_SLACK_KIB,
            "{after}: RSS {rss} KiB against {} KiB before",
            base.rss
        );
    }

    /// A real client call succeeds.
    async fn still_serves(&self, after: &str) {
        self.still_serves_with(None, after).await;
    }

    /// A real client call, sending `token`, succeeds.
    async fn still_serves_with(&self, token: Option<&client::Token>, after: &str) {
        let listing = client::list_tasks_with(&self.server(), token)
            .await
            .unwrap_or_else(|e| panic!("after {after}: {e}; app stderr:\n{}", self.stderr()));
        assert_eq!(listing.app.pid, self.child.id());
    }

    /// Waits until the app's stderr has `count` lines containing `text`.
    async fn stderr_lines(&self, text: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines: Vec<String> = self
                .stderr()
                .lines()
                .filter(|l| l.contains(text))
                .map(str::to_owned)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "no {count} lines with {text:?} in the app's stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `viewer_proc MODE ADDR`: a viewer in a process of its own.
struct ViewerProc {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl ViewerProc {
    /// The live view's client (`viewer_proc watch`).
    fn start(addr: &str) -> ViewerProc {
        ViewerProc::spawn(
            &mut Command::new(env!("CARGO_BIN_EXE_viewer_proc")),
            &["watch", addr],
        )
    }

    /// `flooder MODE ADDR [N]` (a raw HTTP/2 attacker, `src/bin/flooder.rs`)
    /// under `nice -n 10`, like the other faults that are load.
    fn flooder(mode: &str, addr: &str, count: Option<usize>) -> ViewerProc {
        let mut nice = Command::new("nice");
        nice.args(["-n", "10", env!("CARGO_BIN_EXE_flooder")]);
        let count = count.map(|n| n.to_string());
        let mut args = vec![mode, addr];
        args.extend(count.as_deref());
        ViewerProc::spawn(&mut nice, &args)
    }

    /// `viewer_proc MODE ADDR` under `nice -n 10`: the faults that are load
    /// (20 viewers, a reconnection loop) run at a lower priority than the
    /// app, so that what the test measures is what taskscope's server costs
    /// the app, not what the test's own clients cost the machine (its two
    /// cores are shared).
    fn start_nice(mode: &str, addr: &str) -> ViewerProc {
        let mut nice = Command::new("nice");
        nice.args(["-n", "10", env!("CARGO_BIN_EXE_viewer_proc")]);
        ViewerProc::spawn(&mut nice, &[mode, addr])
    }

    fn spawn(command: &mut Command, args: &[&str]) -> ViewerProc {
        let mut child = command
            .args(args)
            .env_remove("TASKSCOPE_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start viewer_proc");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        ViewerProc { child, lines }
    }

    /// Waits for a line starting with `prefix`; returns the lines before it.
    async fn line_starting(&mut self, prefix: &str) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.starts_with(prefix) => return before,
                Ok(Some(line)) => before.push(line),
                other => panic!("viewer_proc: no {prefix:?} line after {before:?}: {other:?}"),
            }
        }
    }

    /// The lines printed so far and not read yet.
    fn lines_so_far(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.lines.try_recv().ok()).collect()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_killed_mid_stream_cost_the_app_nothing() {
    let _turn = serial().await;
    // 20,000 waiting tasks: a snapshot of about 2 MB, so a kill soon after
    // connecting lands in the middle of it.
    let mut app = LoadApp::start(20_000);
    let base = app.baseline().await;
    for round in 0..6u64 {
        let mut viewer = ViewerProc::start(&app.addr);
        match round % 3 {
            // During the connection or the snapshot.
            0 => tokio::time::sleep(Duration::from_millis(30 * round)).await,
            // As the first snapshot arrives.
            1 => drop(viewer.line_starting("connected").await),
            // Between deltas.
            _ => drop(viewer.line_starting("delta").await),
        }
        viewer.kill();
    }
    app.keeps_working(&base, "after 6 viewers were killed")
        .await;
    app.keeps_its_memory(&base, "after 6 viewers were killed");
    // The server goes on: a new viewer gets its snapshot and deltas.
    let mut viewer = ViewerProc::start(&app.addr);
    viewer.line_starting("snapshot 20").await;
    viewer.line_starting("delta").await;
    viewer.kill();
    app.still_serves("killed viewers").await;
}

/// A Watch call over a raw HTTP/2 connection that grants the server 1 KiB of
/// flow-control window and then never reads: the viewer that is stuck.
struct StuckViewer {
    body: h2::RecvStream,
    connection: tokio::task::JoinHandle<()>,
}

impl StuckViewer {
    async fn start(addr: &str) -> StuckViewer {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut h2, connection) = h2::client::Builder::new()
            .initial_window_size(1024)
            .handshake::<_, Bytes>(tcp)
            .await
            .unwrap();
        // The connection itself keeps running (it answers pings): only the
        // stream is never read.
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = http::Request::post(format!("http://{addr}/taskscope.v1.Taskscope/Watch"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = h2.send_request(request, false).unwrap();
        // A WatchRequest { protocol_version: 1 }, gRPC-framed.
        let message = [0u8, 0, 0, 0, 2, 0x08, PROTOCOL_VERSION as u8];
        send.send_data(Bytes::copy_from_slice(&message), true)
            .unwrap();
        let response = tokio::time::timeout(WAIT, response)
            .await
            .expect("response headers in time")
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("grpc-status").is_none());
        StuckViewer {
            body: response.into_body(),
            connection,
        }
    }

    /// Reads everything now; returns the final grpc-status and grpc-message.
    async fn read_to_the_end(mut self) -> (String, String) {
        let read = async {
            while let Some(chunk) = self.body.data().await {
                let chunk = chunk.expect("data");
                let _ = self.body.flow_control().release_capacity(chunk.len());
            }
            self.body
                .trailers()
                .await
                .expect("trailers")
                .expect("a status")
        };
        let trailers = tokio::time::timeout(WAIT, read)
            .await
            .expect("the end in time");
        let text = |k: &str| {
            trailers
                .get(k)
                .map(|v| v.to_str().unwrap().replace("%20", " "))
                .unwrap_or_default()
        };
        (text("grpc-status"), text("grpc-message"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_is_dropped_with_the_reason_and_the_app_goes_on() {
    let _turn = serial().await;
    let mut app = LoadApp::start(1_000);
    let base = app.baseline().await;

    let late = StuckViewer::start(&app.addr).await;
    let never = StuckViewer::start(&app.addr).await;
    // While their queues fill up (8 s of updates), the app works as before,
    // and so do other viewers.
    app.keeps_working(&base, "with 2 stuck viewers").await;
    app.still_serves("stuck viewers").await;

    // Both are dropped, with the reason on the app's stderr.
    let drops = app
        .stderr_lines("taskscope: dropped viewer 127.0.0.1:", 2)
        .await;
    for line in &drops {
        assert!(
            line.contains(": viewer too slow: 16 updates behind"),
            "{line}"
        );
    }
    // One reads now: it gets the reason as its final status.
    let (code, message) = late.read_to_the_end().await;
    assert_eq!(
        code,
        (tonic::Code::ResourceExhausted as i32).to_string(),
        "{message}"
    );
    assert!(
        message.starts_with("viewer too slow: 16 updates behind"),
        "{message}"
    );
    // The other never reads: its connection is closed after the grace.
    app.stderr_lines("taskscope: closed the connection of viewer 127.0.0.1:", 1)
        .await;
    tokio::time::timeout(WAIT, never.connection)
        .await
        .expect("the server closed the stuck viewer's connection")
        .unwrap();
    drop(never.body);
    app.keeps_its_memory(&base, "after 2 stuck viewers");
    app.keeps_working(&base, "after 2 stuck viewers").await;
    app.still_serves("stuck viewers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_viewers_at_once_cost_the_app_little() {
    let _turn = serial().await;
    let mut app = LoadApp::start(1_000);
    let base = app.baseline().await;
    let mut viewers: Vec<_> = (0..20)
        .map(|_| ViewerProc::start_nice("watch", &app.addr))
        .collect();
    for viewer in &mut viewers {
        viewer.line_starting("snapshot").await;
    }
    app.keeps_working(&base, "with 20 viewers").await;
    app.keeps_its_memory(&base, "with 20 viewers");
    for mut viewer in viewers {
        let seen = viewer.lines_so_far();
        viewer.kill();
        let deltas = seen.iter().filter(|s| *s == "delta").count();
        assert!(deltas >= 2, "every viewer keeps getting deltas: {seen:?}");
        assert!(
            !seen.iter().any(|s| s.starts_with("Disconnected")),
            "no viewer is dropped: {seen:?}"
        );
    }
    app.still_serves("20 viewers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reconnecting_in_a_loop_costs_the_app_little() {
    let _turn = serial().await;
    let mut app = LoadApp::start(5_000);
    let base = app.baseline().await;
    let mut looping = ViewerProc::start_nice("reconnect", &app.addr);
    looping.line_starting("10").await;
    app.keeps_working(&base, "with a viewer reconnecting in a loop")
        .await;
    // The loop went on all along (the server slows it down, never stops it).
    looping.line_starting("20").await;
    looping.kill();
    // Let the server notice the last ones are gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.keeps_its_memory(&base, "after the reconnection loop");
    app.still_serves("the reconnection loop").await;
}

/// One flood of HTTP/2 control frames (`flooder MODE`, reconnecting each
/// time it is closed) against an app doing steady work: the server closes
/// the flooding connections, saying so on stderr, and the app keeps its
/// throughput, its memory, and its server's CPU budget; a real client is
/// served during the flood.
async fn a_flood_is_closed_and_costs_the_app_little(mode: &str, frames: &str) {
    let _turn = serial().await;
    let mut app = LoadApp::start(1_000);
    let base = app.baseline().await;
    let mut flood = ViewerProc::flooder(mode, &app.addr, None);
    flood.line_starting("connected").await;
    // The server closes the flooding connection (it reconnects at once).
    flood.line_starting("closed 2").await;
    let during = format!("under a {frames} flood");
    app.keeps_working(&base, &during).await;
    app.keeps_its_memory(&base, &during);
    app.still_serves(&during).await;
    let closes = flood
        .lines_so_far()
        .iter()
        .filter(|l| l.starts_with("closed"))
        .count();
    flood.kill();
    println!(
        "{during}: {} more connections closed while measured",
        closes
    );
    let lines = app
        .stderr_lines("taskscope: closed the connection of 127.0.0.1:", 1)
        .await;
    assert!(
        lines[0].ends_with(&format!(
            "it sent more than {} {frames} frames at once (a flood: the limit is {} a second)",
            match mode {
                "ping" => 40,
                "settings" => 20,
                _ => 64,
            },
            match mode {
                "ping" => 10,
                "settings" => 5,
                _ => 50,
            }
        )),
        "{lines:?}"
    );
    // Nothing from the HTTP/2 stack reaches the app's logs.
    assert!(!app.stderr().contains("h2::"), "{}", app.stderr());
    app.still_serves(&format!("a {frames} flood")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_closed_and_costs_the_app_little() {
    a_flood_is_closed_and_costs_the_app_little("ping", "PING").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_is_closed_and_costs_the_app_little() {
    a_flood_is_closed_and_costs_the_app_little("settings", "SETTINGS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_flood_is_closed_and_costs_the_app_little() {
    a_flood_is_closed_and_costs_the_app_little("reset", "RST_STREAM").await;
}

/// 128 connections that never make a call, opened again as soon as the
/// server closes them: the app keeps its throughput and memory, and a
/// viewer still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_reopened_in_a_loop_cost_the_app_little() {
    let _turn = serial().await;
    let mut app = LoadApp::start(1_000);
    let base = app.baseline().await;
    let mut idle = ViewerProc::flooder("idle", &app.addr, Some(128));
    idle.line_starting("connected 128").await;
    // The server closes them (idle 5 s), they come back.
    idle.line_starting("closed 1").await;
    let during = "with 128 idle connections";
    app.keeps_working(&base, during).await;
    app.keeps_its_memory(&base, during);
    app.still_serves(during).await;
    idle.kill();
}

/// Wrong tokens, 4 a connection, connection after connection: the app
/// keeps its throughput and memory, and the right token is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_brute_force_costs_the_app_little() {
    let _turn = serial().await;
    let token = "s3cret-7d1e2f9a4b6c";
    let mut app = LoadApp::start_with(1_000, &[("TASKSCOPE_TOKEN", token)]);
    let base = app.baseline().await;
    let mut guess = ViewerProc::flooder("guess", &app.addr, None);
    guess.line_starting("closed 3").await;
    let during = "under a token brute force";
    app.keeps_working(&base, during).await;
    app.keeps_its_memory(&base, during);
    let right = client::Token::new(token).unwrap();
    app.still_serves_with(Some(&right), during).await;
    let connections = guess
        .lines_so_far()
        .iter()
        .filter(|l| l.starts_with("closed"))
        .count();
    guess.kill();
    println!("{during}: {connections} guessing connections closed while measured");
    assert!(!app.stderr().contains("guess-"), "{}", app.stderr());
}

/// 2,000 ListTasks calls of an app with 100,000 tasks, none read past the
/// first 64 KiB (the attack the server once paid about 10 MB a call for):
/// the app's memory stays within [`RSS_SLACK_KIB`] of its baseline all
/// along (watched while the calls come in, and the app stopped at once past
/// it), the app keeps working, and once they are gone a listing is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_unread_listings_keep_the_app_within_its_memory_bound() {
    let _turn = serial().await;
    let mut app = LoadApp::start(100_000);
    let base = app.baseline().await;
    let bound = base.rss + RSS_SLACK_KIB;
    let mut hoard = ViewerProc::flooder("hoard", &app.addr, Some(2_000));
    let started = Instant::now();
    let mut sent_at = None;
    let mut most = 0;
    // Until all are sent, and 20 s more: the answers in flight made their
    // chunks, and a server that built every listing whole (as taskscope once
    // did, 2 MB each here) would have gone far past the bound.
    while sent_at.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(20)) {
        let rss = app.rss_kib();
        most = most.max(rss);
        if rss > bound {
            let _ = app.child.kill();
            panic!(
                "RSS {rss} KiB with unread listings, against {} KiB before (bound {bound} KiB)",
                base.rss
            );
        }
        if sent_at.is_none() && hoard.lines_so_far().iter().any(|l| l.starts_with("sent")) {
            sent_at = Some(Instant::now());
        }
        assert!(
            started.elapsed() < WAIT,
            "the 2,000 calls were not sent in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "2,000 unread listings of 100,000 tasks: RSS at most {most} KiB, baseline {} KiB \
         (+{} KiB)",
        base.rss,
        most - base.rss
    );
    app.keeps_working(&base, "with 2,000 unread listings").await;
    app.keeps_its_memory(&base, "with 2,000 unread listings");
    hoard.kill();
    // The server answers again. (A call that lists 100,000 tasks can take
    // longer than the client's 10 s in a debug build on a busy machine: a
    // task's detail says as much.)
    let deadline = Instant::now() + WAIT;
    loop {
        match client::task_detail_with(&app.server(), u64::MAX, None).await {
            Err(ClientError::NotFound { reason, .. }) => {
                assert!(reason.contains("neither alive nor"), "{reason}");
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "no answer after the unread listings: {other:?}; app stderr:\n{}",
                app.stderr()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `viewer_proc dump ADDR` (what `taskscope dump ADDR` runs).
fn dump(addr: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_viewer_proc"))
        .args(["dump", addr])
        .env_remove("TASKSCOPE_TOKEN")
        .output()
        .expect("run viewer_proc")
}

/// `dump` fails with one line containing `want`, and exit status 1.
fn dump_fails_saying(addr: &str, want: &str) {
    let out = dump(addr);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("taskscope dump: "), "{stderr}");
    assert!(stderr.contains(want), "{stderr}");
}

/// The first connection state the live view's client reports other than
/// `Connecting`.
async fn first_state(addr: &ServerAddr) -> Connection {
    let (tx, mut updates) = mpsc::channel(64);
    let (_requests, requests_rx) = mpsc::channel(8);
    let watch = tokio::spawn(client::watch_with(addr.clone(), None, tx, requests_rx));
    let state = loop {
        match tokio::time::timeout(WAIT, updates.recv()).await {
            Ok(Some(Update::Connection(Connection::Connecting { .. }))) => {}
            Ok(Some(Update::Connection(state))) => break state,
            other => panic!("no connection state: {other:?}"),
        }
    };
    watch.abort();
    state
}

/// A loopback TCP server running `serve` on each connection.
async fn tcp_server<F, Fut>(serve: F) -> ServerAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ServerAddr::Tcp(listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_says_what_is_at_the_address_instead_of_an_app() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _turn = serial().await;

    // A TCP server that writes garbage.
    let garbage = tcp_server(|mut socket| async move {
        let noise: Vec<u8> = (0..2048u32)
            .map(|i| (i * 7919 % 251) as u8 | 0x80)
            .collect();
        let _ = socket.write_all(&noise).await;
        let mut buf = [0u8; 1024];
        while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    let err = client::list_tasks_with(&garbage, None).await.unwrap_err();
    println!("garbage: {err:?}");
    assert!(
        matches!(err, ClientError::NotGrpc { .. } | ClientError::Lost { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&garbage.to_string()), "{err}");
    let Connection::Disconnected { reason, .. } = first_state(&garbage).await else {
        panic!("garbage is worth retrying (it may be an app starting)")
    };
    assert_eq!(reason, err.to_string());
    dump_fails_saying(&garbage.to_string(), &err.to_string());

    // An HTTP/1 server.
    let http1 = tcp_server(|mut socket| async move {
        let mut buf = [0u8; 1024];
        let _ = socket.read(&mut buf).await;
        let _ = socket
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await;
    })
    .await;
    let want = format!("{http1} answered, but not with gRPC (HTTP/1? TLS?)");
    let Connection::Disconnected { reason, .. } = first_state(&http1).await else {
        panic!("an HTTP/1 server: Disconnected")
    };
    assert_eq!(reason, want);
    dump_fails_saying(&http1.to_string(), &want);

    // A gRPC server with neither taskscope's service nor tokio-console's.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let neither = ServerAddr::Tcp(listener.local_addr().unwrap());
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(
        NoService,
        tonic::transport::server::TcpIncoming::from(listener),
    ));
    dump_fails_saying(
        &neither.to_string(),
        &format!(
            "{neither} is a gRPC server, but speaks neither taskscope's protocol nor tokio-console's"
        ),
    );
    let Connection::Incompatible { reason, .. } = first_state(&neither).await else {
        panic!("neither service: Incompatible")
    };
    assert!(reason.contains("speaks neither"), "{reason}");

    // A console-subscriber app: read through tokio-console's protocol.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console = ServerAddr::Tcp(listener.local_addr().unwrap());
    let (_layer, server) = console_subscriber::ConsoleLayer::builder().build();
    let parts = server.into_parts();
    tokio::spawn(parts.aggregator.run());
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(
        parts.instrument_server,
        tonic::transport::server::TcpIncoming::from(listener),
    ));
    let out = dump(&console.to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{console} is a console-subscriber app")),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ID  NAME"),
        "the table"
    );
    let Connection::Connected { .. } = first_state(&console).await else {
        panic!("console-subscriber: Connected")
    };
}

/// A gRPC server with neither taskscope's service nor tokio-console's:
/// every call is UNIMPLEMENTED.
#[derive(Clone)]
struct NoService;

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for NoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        std::future::ready(Ok(tonic::Status::unimplemented("").into_http()))
    }
}

/// The figure for the README: the app's throughput with 20 live viewers
/// attached (the viewer's own client, in this process, at normal priority:
/// everything they cost the machine counts) against none, in rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run with --release -- --ignored --nocapture"]
async fn measure_throughput_with_twenty_viewers() {
    let _turn = serial().await;
    let idle: usize = std::env::var("MEASURE_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let mut app = LoadApp::start(idle);
    let base = app.baseline().await;
    let (mut none, mut twenty, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let quiet = app.measure().await;
        let viewers: Vec<_> = (0..20).map(|_| reading_viewer(app.server())).collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let busy = app.measure().await;
        rss.push(app.rss_kib());
        for (task, seen) in &viewers {
            let seen = seen.lock().unwrap();
            assert!(seen.iter().any(|s| s == "snapshot"), "{seen:?}");
            task.abort();
        }
        println!(
            "round {round}: none {:.0}/s, 20 viewers {:.0}/s (ratio {:.3}; per CPU-second {:.3}); \
             server thread {:.0}% of a core; RSS {} KiB -> {} KiB",
            quiet.rate,
            busy.rate,
            busy.rate / quiet.rate,
            busy.efficiency / quiet.efficiency,
            busy.server_share * 100.0,
            base.rss,
            rss[round]
        );
        none.push(quiet.rate);
        twenty.push(busy.rate);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    println!(
        "{idle} idle tasks: mean none {:.0}/s, 20 viewers {:.0}/s, ratio {:.3}; RSS {} KiB \
         without viewers, at most {} KiB with them",
        sum(&none) / 3.0,
        sum(&twenty) / 3.0,
        sum(&twenty) / sum(&none),
        base.rss,
        rss.iter().max().unwrap()
    );
}

/// The figures for BENCHMARKS.md (issue 15): a viewer attaching to an app
/// with a million live idle tasks (`MEASURE_IDLE`, default 1,000,000): how
/// long its snapshot takes to arrive, the viewer's peak memory, the app's
/// memory before and after, and its throughput while the viewer watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run with --release -- --ignored --nocapture"]
async fn measure_a_viewer_attaching_to_a_million_tasks() {
    let _turn = serial().await;
    let idle: usize = std::env::var("MEASURE_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut app = LoadApp::start(idle);
    // The idle tasks are spawned before `ready`; give them their first poll.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quiet = app.measure().await;
    let rss_before = app.rss_kib();
    let attached = Instant::now();
    let mut viewer = ViewerProc::start(&app.addr);
    let before = viewer.line_starting("snapshot").await;
    let took = attached.elapsed();
    let busy = app.measure().await;
    viewer.line_starting("delta").await;
    let peak = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    println!(
        "{idle} idle tasks: snapshot after {:.2} s (lines before: {before:?}); viewer peak RSS \
         {} MiB; app RSS {} MiB before, {} MiB after, peak {} MiB; app {:.0} req/s quiet, \
         {:.0} req/s watched (ratio {:.3}), server thread {:.0}% of a core",
        took.as_secs_f64(),
        peak(viewer.child.id()) / 1024,
        rss_before / 1024,
        app.rss_kib() / 1024,
        peak(app.child.id()) / 1024,
        quiet.rate,
        busy.rate,
        busy.rate / quiet.rate,
        busy.server_share * 100.0,
    );
    let _ = viewer.child.kill();
}
