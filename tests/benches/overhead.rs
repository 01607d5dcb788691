//! The overhead benchmark: the same workloads on a bare Tokio runtime, under
//! taskscope (each way of embedding it) and under console-subscriber, in
//! interleaved rounds, each run in a fresh child process.
//!
//! ```sh
//! cargo bench -p taskscope-tests --bench overhead -- [--rounds N] [--workloads spawn,yield,...] [--variants bare,init,...] [--idle 0,100000,1000000]
//! ```
//!
//! `--variants clock-hooks` adds a reference that is not taskscope: Tokio's task
//! hooks only reading the TSC before and after each poll (the floor of any
//! capture built on the hooks). The peers: `console` (console-subscriber's
//! `init()` with its defaults), `tokio-metrics` (a `TaskMonitor` instrumenting
//! every task the workload spawns) and `dial9` (dial9's recorder, writing its
//! trace to a temporary directory with the defaults of `recorder_from_env`:
//! a 1 GiB disk budget, 60 s rotation; attached to the runtime with the
//! default options).
//!
//! `--idle N,...` runs each workload once per N with N idle tasks parked on a
//! `Notify` (spawned from a worker task and all parked before the clock
//! starts): a service holding one task per connection. Workloads `spawn`
//! (spawns from `block_on`, so every task goes through the runtime's global
//! queue) and `spawn-worker` (the same loop inside a spawned task: tasks go to
//! the spawning worker's local queue, as in a server's handlers).
//!
//! `--variants clock-tracing` is the same kind of reference for `init()`: a
//! `tracing` subscriber that is not taskscope, asking for what `init()` asks
//! for (Tokio's task spans and waker events), numbering the spans, reading
//! the TSC on each enter and exit and ignoring the events: the floor of any
//! capture built on Tokio's `tracing` instrumentation. `noop-tracing` and
//! `noop-hooks` are the two without reading the clock: the cost of the
//! instrumentation alone, before any capture's work.
//!
//! `--variants init-every,hooks-every` are `init` and `hooks` timing every
//! poll (`TASKSCOPE_POLL_TIMING=every`), against the default `sampled`.
//!
//! `--variants init,init+metrics,hooks,hooks+metrics`
//! compares taskscope with its Prometheus endpoint on (`TASKSCOPE_METRICS_ADDR`)
//! and scraped every second by a thread of the child, to the same without.
//!
//! `--variants init-console,console-attached` run the app with one
//! tokio-console client attached for the whole run: console-api's generated
//! client in the child, on a thread of its own (outside what is measured as
//! the app: taskscope's internal thread, or untraced for console-subscriber),
//! reading `WatchUpdates` as tokio-console does; `init-console` is
//! `taskscope::init()` serving console's protocol, `console-attached` is
//! console-subscriber. The child's CPU time includes the client's; the
//! report adds the bytes per second the client received and the CPU time of
//! the client's thread.
//!
//! For every variant with a server, the report also gives the CPU time of
//! the thread that serves (`taskscope-server`; console-subscriber's
//! `console_subscriber`, where its aggregator runs), read from /proc.
//!
//! Prints per workload and variant: median wall time (or requests/s for http),
//! min–max, the ratio to `bare`, peak RSS (from the child's start to the end of
//! the workload: the runtime's teardown is left out) and CPU time of the child
//! process.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const VARIANTS: [&str; 4] = ["bare", "init", "hooks", "console"];
const WORKLOADS: [&str; 6] = [
    "spawn",
    "spawn-worker",
    "yield",
    "pingpong",
    "mixed",
    "http",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let idle = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(0);
        child(&args[1], &args[2], idle);
        return;
    }
    let mut rounds = 5;
    let mut workloads: Vec<String> = WORKLOADS.iter().map(|s| s.to_string()).collect();
    let mut variants: Vec<String> = VARIANTS.iter().map(|s| s.to_string()).collect();
    let mut idle: Vec<usize> = vec![0];
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--rounds" => {
                rounds = args[i + 1].parse().expect("--rounds N");
                i += 1;
            }
            "--workloads" => {
                workloads = args[i + 1].split(',').map(str::to_owned).collect();
                i += 1;
            }
            "--variants" => {
                variants = args[i + 1].split(',').map(str::to_owned).collect();
                i += 1;
            }
            "--idle" => {
                idle = args[i + 1]
                    .split(',')
                    .map(|n| n.parse().expect("--idle N,N,..."))
                    .collect();
                i += 1;
            }
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
        i += 1;
    }
    let exe = std::env::current_exe().expect("own path");
    println!(
        "taskscope overhead: {rounds} interleaved rounds, {} CPUs, tokio 2 workers",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for workload in &workloads {
        for &idle in &idle {
            let mut results: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
            for _ in 0..rounds {
                for variant in &variants {
                    if let Some(s) = run_child(&exe, variant, workload, idle) {
                        results.entry(variant.clone()).or_default().push(s);
                    }
                }
            }
            let name = if idle == 0 {
                workload.clone()
            } else {
                format!("{workload} +{}k idle", idle / 1000)
            };
            report(&name, &variants, &results);
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Wall seconds, or for http: requests per second.
    value: f64,
    /// p99 latency in ms (http only).
    p99_ms: f64,
    cpu: Duration,
    /// Peak RSS up to the end of the workload (not the teardown).
    max_rss_kib: i64,
    /// Bytes per second a tokio-console client received (attached variants).
    console_bps: f64,
    /// CPU seconds of the thread that serves the protocol (0: none).
    server_cpu: f64,
    /// CPU seconds of the tokio-console client's thread (0: none).
    client_cpu: f64,
}

fn run_child(exe: &std::path::Path, variant: &str, workload: &str, idle: usize) -> Option<Sample> {
    let child = Command::new(exe)
        .args(["--child", variant, workload, &idle.to_string()])
        .env("TASKSCOPE_ADDR", "127.0.0.1:0")
        .env_remove("TASKSCOPE_REPORT")
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; `usage` is a valid out-pointer.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let mut out = String::new();
    use std::io::Read;
    child.stdout?.read_to_string(&mut out).ok()?;
    if r != pid || status != 0 {
        eprintln!("{variant}/{workload}: child failed (status {status})");
        return None;
    }
    let mut fields = out.split_whitespace();
    let value: f64 = fields.next()?.parse().ok()?;
    let p99_ms: f64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0.0);
    let mut next = || -> f64 { fields.next().and_then(|f| f.parse().ok()).unwrap_or(0.0) };
    let console_bps = next();
    let server_cpu = next();
    let client_cpu = next();
    // The child's peak RSS when the workload ended (before the runtime's
    // teardown); the whole run's if the child did not say.
    let workload_rss_kib = next() as i64;
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    Some(Sample {
        value,
        p99_ms,
        cpu,
        max_rss_kib: if workload_rss_kib > 0 {
            workload_rss_kib
        } else {
            usage.ru_maxrss
        },
        console_bps,
        server_cpu,
        client_cpu,
    })
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn report(workload: &str, variants: &[String], results: &BTreeMap<String, Vec<Sample>>) {
    let http = workload.starts_with("http");
    let base = results
        .get("bare")
        .map(|s| median(s.iter().map(|x| x.value).collect()));
    println!();
    println!(
        "{workload:<9}\n{:<9} {:<16} {:>12} {:>22} {:>7} {:>10} {:>9}{}",
        "",
        "variant",
        if http { "req/s" } else { "median" },
        "min-max",
        "ratio",
        "peak RSS",
        "CPU",
        if http { "   p99 ms" } else { "" }
    );
    for variant in variants {
        let Some(samples) = results.get(variant) else {
            println!("{:<9} {variant:<16} (no successful run)", "");
            continue;
        };
        let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
        let med = median(values.clone());
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // Ratio: slowdown (time / bare time), or for http throughput / bare throughput.
        let ratio = base.map_or(f64::NAN, |b| med / b);
        let rss = median(samples.iter().map(|s| s.max_rss_kib as f64).collect()) / 1024.0;
        let cpu = median(samples.iter().map(|s| s.cpu.as_secs_f64()).collect());
        let (med_s, range) = if http {
            (format!("{med:.0}"), format!("{min:.0}-{max:.0}"))
        } else {
            (format!("{med:.3}s"), format!("{min:.3}-{max:.3}s"))
        };
        let p99 = if http {
            format!(
                " {:>8.2}",
                median(samples.iter().map(|s| s.p99_ms).collect())
            )
        } else {
            String::new()
        };
        let bps = median(samples.iter().map(|s| s.console_bps).collect());
        let server = median(samples.iter().map(|s| s.server_cpu).collect());
        let client = median(samples.iter().map(|s| s.client_cpu).collect());
        let mut attached = String::new();
        if server > 0.0 {
            attached.push_str(&format!("  server thread {server:.3}s CPU"));
        }
        if bps > 0.0 {
            attached.push_str(&format!(
                "; tokio-console client: {:.1} KB/s, {client:.3}s CPU",
                bps / 1e3
            ));
        }
        println!(
            "{:<9} {variant:<16} {med_s:>12} {range:>22} {ratio:>6.2}x {rss:>8.1}MiB {cpu:>8.2}s{p99}{attached}",
            ""
        );
    }
}

// ---------------------------------------------------------------- child side

fn child(variant: &str, workload: &str, idle: usize) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let mut received = None;
    let rt = match variant {
        "bare" => builder.build(),
        "init" => {
            keep.push(Box::new(taskscope::init()));
            builder.build()
        }
        "hooks" => {
            keep.push(Box::new(
                taskscope::Builder::from_env().install_on(&mut builder),
            ));
            builder.build()
        }
        // The same, timing every poll (`TASKSCOPE_POLL_TIMING=every`).
        "init-every" => {
            keep.push(Box::new(
                taskscope::Builder::from_env()
                    .poll_timing(taskscope::PollTiming::Every)
                    .init(),
            ));
            builder.build()
        }
        "hooks-every" => {
            keep.push(Box::new(
                taskscope::Builder::from_env()
                    .poll_timing(taskscope::PollTiming::Every)
                    .install_on(&mut builder),
            ));
            builder.build()
        }
        "init+metrics" => {
            let addr = scraped_every_second();
            keep.push(Box::new(
                taskscope::Builder::from_env()
                    .metrics_addr(Some(addr))
                    .init(),
            ));
            builder.build()
        }
        "hooks+metrics" => {
            let addr = scraped_every_second();
            keep.push(Box::new(
                taskscope::Builder::from_env()
                    .metrics_addr(Some(addr))
                    .install_on(&mut builder),
            ));
            builder.build()
        }
        "console" => {
            console_subscriber::init();
            builder.build()
        }
        // taskscope serving tokio-console's protocol, one client attached.
        "init-console" => {
            let addr = free_addr();
            keep.push(Box::new(
                taskscope::Builder::from_env()
                    .server_addr(taskscope::ServerAddr::Tcp(addr))
                    .init(),
            ));
            received = Some(attach_console(addr, Reader::TaskscopeInternal));
            builder.build()
        }
        // console-subscriber, one client attached.
        "console-attached" => {
            let addr = free_addr();
            console_subscriber::ConsoleLayer::builder()
                .server_addr(addr)
                .init();
            received = Some(attach_console(addr, Reader::Untraced));
            builder.build()
        }
        "tokio-metrics" => {
            peers::monitor_every_task();
            builder.build()
        }
        "dial9" => {
            let (recorder, rt) = peers::dial9(builder);
            keep.push(recorder);
            Ok(rt)
        }
        // Reference, not taskscope: the floor of any hook-based capture.
        "clock-hooks" => {
            taskscope_tests::variants::install_clock_hooks(&mut builder);
            builder.build()
        }
        // Reference, not taskscope: the floor of any capture built on
        // Tokio's `tracing` instrumentation (what `init()` is).
        "clock-tracing" => {
            assert!(taskscope_tests::variants::install_clock_tracing());
            builder.build()
        }
        // The same without the clock, and Tokio's hooks doing nothing: what
        // the instrumentation itself costs, before any capture's work.
        "noop-tracing" => {
            assert!(taskscope_tests::variants::install_noop_tracing());
            builder.build()
        }
        "noop-hooks" => {
            taskscope_tests::variants::install_noop_hooks(&mut builder);
            builder.build()
        }
        other => panic!("unknown variant {other}"),
    }
    .expect("runtime");
    let attached = Instant::now();
    let (out, hwm_kib) = rt.block_on(async {
        // Kept until the runtime is dropped: releasing them all at once
        // (`notify_waiters`) is one long poll that taskscope reports as
        // slow, with a stack capture and symbolization (~100 MB of debug
        // info), which is not the workload.
        let _parked = park_idle(idle).await;
        let started = Instant::now();
        match workload {
            "spawn" => spawn_many().await,
            "spawn-worker" => spawn(spawn_many()).await.unwrap(),
            "yield" => yield_many().await,
            "pingpong" => pingpong().await,
            "mixed" => mixed().await,
            "http" => return (http::run().await, peak_rss_kib()),
            other => panic!("unknown workload {other}"),
        }
        let out = format!("{} 0", started.elapsed().as_secs_f64());
        (out, peak_rss_kib())
    });
    let server = match variant {
        "init" | "hooks" | "init-every" | "hooks-every" | "init-console" => {
            thread_cpu("taskscope-server")
        }
        "console" | "console-attached" => thread_cpu("console_subscriber"),
        _ => 0.0,
    };
    let bps = received.map_or(0.0, |bytes| {
        bytes.load(Ordering::Relaxed) as f64 / attached.elapsed().as_secs_f64()
    });
    println!(
        "{out} {bps} {server} {} {hwm_kib}",
        thread_cpu("console-client")
    );
    drop(rt);
    drop(keep);
}

/// Spawns `n` tasks (from a worker task, in batches) that wait on one
/// `Notify`, and returns once all of them are parked on it.
async fn park_idle(n: usize) -> Arc<tokio::sync::Notify> {
    let notify = Arc::new(tokio::sync::Notify::new());
    let parked = Arc::new(AtomicUsize::new(0));
    if n == 0 {
        return notify;
    }
    let (notify2, parked2) = (Arc::clone(&notify), Arc::clone(&parked));
    spawn(async move {
        for i in 0..n {
            // In batches: one poll spawning a million tasks would be a slow
            // poll, whose stack capture and symbolization (the binary's
            // debug info: ~100 MB) would then be measured with the workload.
            if i % 1_000 == 999 {
                tokio::task::yield_now().await;
            }
            let (notify, parked) = (Arc::clone(&notify2), Arc::clone(&parked2));
            spawn(async move {
                let waiting = notify.notified();
                tokio::pin!(waiting);
                waiting.as_mut().enable();
                parked.fetch_add(1, Ordering::Release);
                waiting.await;
            });
        }
    })
    .await
    .unwrap();
    while parked.load(Ordering::Acquire) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    notify
}

/// `tokio::spawn`, through the `TaskMonitor` when the variant is `tokio-metrics`.
fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match peers::MONITOR.get() {
        Some(monitor) => tokio::spawn(monitor.instrument(future)),
        None => tokio::spawn(future),
    }
}

mod peers {
    //! The peers measured side by side with taskscope.

    use std::sync::OnceLock;

    /// tokio-metrics: one `TaskMonitor` for every task the workload spawns.
    pub static MONITOR: OnceLock<tokio_metrics::TaskMonitor> = OnceLock::new();

    pub fn monitor_every_task() {
        let _ = MONITOR.set(tokio_metrics::TaskMonitor::new());
    }

    /// dial9's recorder writing its trace to a fresh temporary directory
    /// (the `DiskBuffer` defaults), attached to the runtime `builder` makes
    /// with the default options; the recorder is returned to be kept.
    pub fn dial9(
        builder: tokio::runtime::Builder,
    ) -> (Box<dyn std::any::Any>, tokio::runtime::Runtime) {
        use dial9::Dial9HandleTokioExt;
        let dir =
            std::env::temp_dir().join(format!("taskscope-bench-dial9-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dial9's trace directory");
        // The disk budget of dial9's own environment defaults
        // (`DIAL9_MAX_DISK_USAGE_MB` = 1024); the rest its builder's defaults.
        let writer = dial9::DiskBuffer::builder()
            .base_path(&dir)
            .max_total_size(1024 * 1024 * 1024)
            .build();
        let recorder = dial9::recorder(writer.expect("dial9's trace writer")).build();
        let runtime = recorder
            .handle()
            .attach_tokio_runtime(builder, dial9::TokioAttachOptions::default())
            .expect("dial9 attached to the runtime");
        (Box::new(TempTrace(recorder, dir)), runtime)
    }

    /// The recorder, and its directory removed once it is dropped.
    struct TempTrace<R>(R, std::path::PathBuf);

    impl<R> Drop for TempTrace<R> {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
}

/// A free loopback address for the metrics endpoint, and a thread that
/// scrapes it every second (as Prometheus would) until the process ends.
fn scraped_every_second() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
                continue;
            };
            let request = "GET /metrics HTTP/1.1\r\nHost: bench\r\n\
                           Accept: application/openmetrics-text\r\nConnection: close\r\n\r\n";
            let mut body = Vec::new();
            let _ = stream.write_all(request.as_bytes());
            let _ = stream.read_to_end(&mut body);
            assert!(body.starts_with(b"HTTP/1.1 200"), "the endpoint answers");
        }
    });
    addr
}

/// The peak resident memory of this process so far (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) of this process's threads named `name`, from /proc.
fn thread_cpu(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0.0;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... : comm may hold spaces, so split after its ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        // The kernel keeps 15 bytes of a thread's name.
        if stat[open + 1..close] != name[..name.len().min(15)] {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // Fields 14 and 15 of the line (utime, stime) are 11 and 12 after the comm.
        let cpu: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
            .sum();
        total += cpu / ticks;
    }
    total
}

/// A loopback address nobody listens on right now.
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// How the tokio-console client's thread keeps out of what is measured.
#[derive(Clone, Copy)]
enum Reader {
    /// Marked as taskscope's own: its tasks are not the app's.
    TaskscopeInternal,
    /// With no tracing subscriber: console-subscriber does not see it.
    Untraced,
}

/// Starts a tokio-console client of the app at `addr` on a thread of its
/// own, reading `WatchUpdates` for the rest of the run (as tokio-console
/// does); returns once the first update came, with the count of bytes it
/// receives.
fn attach_console(addr: std::net::SocketAddr, reader: Reader) -> Arc<AtomicU64> {
    use console_api::instrument::InstrumentRequest;
    use console_api::instrument::instrument_client::InstrumentClient;
    use prost::Message;
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&bytes);
    let (attached_tx, attached) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("console-client".into())
        .spawn(move || {
            let _untraced = match reader {
                Reader::TaskscopeInternal => {
                    taskscope::__private::mark_internal_thread();
                    None
                }
                Reader::Untraced => Some(tracing::subscriber::set_default(
                    tracing::subscriber::NoSubscriber::default(),
                )),
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("client runtime");
            rt.block_on(async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut client = loop {
                    match InstrumentClient::connect(format!("http://{addr}")).await {
                        Ok(c) => break c.max_decoding_message_size(64 * 1024 * 1024),
                        Err(e) if Instant::now() > deadline => panic!("tokio-console client: {e}"),
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                };
                let mut updates = client
                    .watch_updates(InstrumentRequest {})
                    .await
                    .expect("WatchUpdates")
                    .into_inner();
                let mut first = true;
                while let Ok(Some(update)) = updates.message().await {
                    counted.fetch_add(update.encoded_len() as u64, Ordering::Relaxed);
                    if first {
                        first = false;
                        let _ = attached_tx.send(());
                    }
                }
            });
        })
        .expect("the client's thread");
    attached
        .recv_timeout(Duration::from_secs(20))
        .expect("the tokio-console client attached");
    bytes
}

async fn spawn_many() {
    for _ in 0..2_000 {
        let handles: Vec<_> = (0..1_000)
            .map(|_| spawn(async { tokio::task::yield_now().await }))
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    }
}

async fn yield_many() {
    let handles: Vec<_> = (0..1_000)
        .map(|_| {
            spawn(async {
                for _ in 0..20_000 {
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
}

async fn pingpong() {
    let mut handles = Vec::new();
    for _ in 0..100 {
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u32>(1);
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u32>(1);
        handles.push(spawn(async move {
            while let Some(v) = ping_rx.recv().await {
                if pong_tx.send(v).await.is_err() {
                    break;
                }
            }
        }));
        handles.push(spawn(async move {
            for i in 0..30_000 {
                ping_tx.send(i).await.unwrap();
                pong_rx.recv().await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

async fn mixed() {
    let (collect_tx, mut collect_rx) = tokio::sync::mpsc::channel::<u64>(1024);
    let collector = spawn(async move {
        let mut n = 0u64;
        while collect_rx.recv().await.is_some() {
            n += 1;
        }
        n
    });
    for _wave in 0..200 {
        let requests: Vec<_> = (0..1_000u64)
            .map(|i| {
                let collect_tx = collect_tx.clone();
                spawn(async move {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let a = spawn(async move {
                        tokio::task::yield_now().await;
                        let _ = tx.send(i * 2);
                    });
                    let b = spawn(async move {
                        let _ = collect_tx.send(i).await;
                    });
                    let v = rx.await.unwrap();
                    a.await.unwrap();
                    b.await.unwrap();
                    v
                })
            })
            .collect();
        for r in requests {
            r.await.unwrap();
        }
    }
    drop(collect_tx);
    assert_eq!(collector.await.unwrap(), 200_000);
}

mod http {
    //! A small hyper service on loopback and a closed-loop load generator
    //! (64 keep-alive connections, in this process on its own runtime).

    use std::time::{Duration, Instant};

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CONNECTIONS: usize = 64;
    const DURATION: Duration = Duration::from_secs(4);

    pub async fn run() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        super::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                super::spawn(async move {
                    let service = service_fn(|_req| async {
                        tokio::task::yield_now().await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"hello from taskscope bench\n"),
                        )))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        // The load generator runs on its own runtime and threads, like an external
        // tool; awaited, not joined (a join would block this poll for the whole run,
        // which taskscope rightly reports as a blocked poll).
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let _ = done.send(rt.block_on(load(addr)));
        });
        let (total, mut latencies) = result.await.expect("load generator");
        latencies.sort_unstable();
        let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
        format!(
            "{} {}",
            total as f64 / DURATION.as_secs_f64(),
            p99.as_secs_f64() * 1000.0
        )
    }

    async fn load(addr: std::net::SocketAddr) -> (u64, Vec<Duration>) {
        let deadline = Instant::now() + DURATION;
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            tasks.push(tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
                let mut buf = vec![0u8; 4096];
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    stream.write_all(request).await.unwrap();
                    let mut got = 0;
                    // The response is small and fixed: read until its body is in.
                    loop {
                        let n = stream.read(&mut buf[got..]).await.unwrap();
                        assert!(n > 0, "server closed");
                        got += n;
                        if buf[..got].ends_with(b"bench\n") {
                            break;
                        }
                    }
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (all.len() as u64, all)
    }
}
