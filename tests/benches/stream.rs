//! Two measurements of the live side, printed (not asserted):
//!
//! - **stream**: the bytes per second on the Watch stream with 10,000 live
//!   tasks of which 1% change every publish interval, and the size of the
//!   first snapshot (also at 100,000 tasks);
//! - **watchdog**: how long after the threshold a stuck poll is reported
//!   (`in_progress`, with its stack), over many trials: median and max.
//!
//! ```sh
//! cargo bench -p taskscope-tests --bench stream
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use taskscope::proto::{PROTOCOL_VERSION, WatchRequest, taskscope_client::TaskscopeClient, update};
use tokio::sync::Notify;
use tracing_subscriber::layer::SubscriberExt;

const THRESHOLD: Duration = Duration::from_millis(100);

fn main() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (layer, _guard) = taskscope::Builder::new()
        .server_addr(taskscope::ServerAddr::parse(&addr).unwrap())
        .slow_poll_threshold(THRESHOLD)
        .layer()
        .expect("taskscope");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        watchdog_latency().await;
        for n in [10_000usize, 100_000] {
            stream(&addr, n).await;
        }
    });
}

async fn stream(addr: &str, n: usize) {
    // n tasks, each waiting on its own Notify; 1% are woken every 500 ms.
    let notifies: Vec<Arc<Notify>> = (0..n).map(|_| Arc::new(Notify::new())).collect();
    let tasks: Vec<_> = notifies
        .iter()
        .map(|notify| {
            let notify = Arc::clone(notify);
            tokio::spawn(async move {
                loop {
                    notify.notified().await;
                }
            })
        })
        .collect();
    let stop = Arc::new(Notify::new());
    let driver = {
        let notifies = notifies.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut round = 0usize;
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.notified() => return,
                }
                for i in 0..n / 100 {
                    notifies[(round * 7919 + i * 101) % n].notify_one();
                }
                round += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut client = TaskscopeClient::new(channel).max_decoding_message_size(4 << 20);
    let started = Instant::now();
    let mut stream = client
        .watch(WatchRequest {
            protocol_version: PROTOCOL_VERSION,
        })
        .await
        .expect("watch")
        .into_inner();
    let (mut snapshot_bytes, mut snapshot_chunks, mut snapshot_done) = (0usize, 0usize, None);
    let (mut delta_bytes, mut deltas) = (0usize, 0usize);
    let mut delta_started = None;
    let measure = Duration::from_secs(20);
    while let Some(update) = stream.message().await.expect("stream") {
        let len = update.encoded_len();
        match update.kind {
            Some(update::Kind::Snapshot(s)) => {
                snapshot_bytes += len;
                snapshot_chunks += 1;
                if s.last {
                    snapshot_done = Some(started.elapsed());
                    delta_started = Some(Instant::now());
                }
            }
            Some(update::Kind::Delta(_)) => {
                delta_bytes += len;
                deltas += 1;
            }
            None => {}
        }
        if delta_started.is_some_and(|t| t.elapsed() >= measure) {
            break;
        }
    }
    let secs = delta_started.map_or(1.0, |t| t.elapsed().as_secs_f64());
    println!(
        "stream {n} tasks, 1% changing every 500 ms: snapshot {snapshot_bytes} bytes in {snapshot_chunks} chunk(s) ({:.0} ms); \
         {deltas} deltas, {:.0} bytes/s ({:.0} bytes per delta)",
        snapshot_done.unwrap_or_default().as_secs_f64() * 1000.0,
        delta_bytes as f64 / secs,
        delta_bytes as f64 / deltas.max(1) as f64,
    );
    stop.notify_one();
    driver.await.unwrap();
    for t in tasks {
        t.abort();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[inline(never)]
fn blocked_for(d: Duration) {
    std::thread::sleep(d);
}

async fn watchdog_latency() {
    const TRIALS: usize = 40;
    let mut latencies = Vec::new();
    for trial in 0..TRIALS {
        tokio::spawn(async { blocked_for(Duration::from_millis(250)) })
            .await
            .unwrap();
        // The in_progress report's duration is how long the poll had run when
        // the watchdog reported it, stack taken and symbolized.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let findings = taskscope::findings();
        let mut reported = findings.iter().rev().filter_map(|f| match &f.kind {
            taskscope::FindingKind::SlowPoll {
                in_progress: true,
                duration_ms,
                ..
            } => Some(*duration_ms),
            _ => None,
        });
        match reported.next() {
            Some(ms) => latencies.push((trial, ms - THRESHOLD.as_secs_f64() * 1000.0)),
            None => println!("watchdog trial {trial}: no in_progress report"),
        }
    }
    let first = latencies.first().map(|(_, l)| *l).unwrap_or(f64::NAN);
    let mut rest: Vec<f64> = latencies.iter().skip(1).map(|(_, l)| *l).collect();
    rest.sort_by(|a, b| a.total_cmp(b));
    let median = rest.get(rest.len() / 2).copied().unwrap_or(f64::NAN);
    let max = rest.last().copied().unwrap_or(f64::NAN);
    println!(
        "watchdog: stuck poll reported {median:.1} ms after the {} ms threshold (median of {} trials), max {max:.1} ms; \
         first report of the process {first:.1} ms (loads the debug info for symbolization)",
        THRESHOLD.as_millis(),
        rest.len()
    );
}
