//! `taskscope demo`: a misbehaving app, instrumented with taskscope, run in
//! this process on a free loopback port, and the live view attached to it.
//!
//! Within seconds every view has something to show: healthy request traffic;
//! `config_reloader`, which blocks its worker in `std::thread::sleep`; `cpu_hog`,
//! a CPU loop; `stuck_poll`, a poll that does not return for 30 s; a task left
//! waiting forever; a future that can never be woken; a tracked future
//! dropped without being awaited; a task that panics.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use taskscope::{ServerAddr, TrackExt};
use tracing_subscriber::layer::SubscriberExt;

/// A free loopback TCP address (the port is released just before the app binds it).
fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?)
}

/// Starts the demo app on its own threads; returns the address its server listens on.
pub fn start_app() -> anyhow::Result<ServerAddr> {
    if !cfg!(tokio_unstable) {
        anyhow::bail!(
            "this taskscope was built without `--cfg tokio_unstable`, so its demo app's tasks \
             cannot be seen (attach, dump and report work as usual); reinstall it with \
             RUSTFLAGS=\"--cfg tokio_unstable\" cargo install taskscope-viewer"
        );
    }
    let addr = ServerAddr::Tcp(free_loopback_addr()?);
    let report = std::env::temp_dir().join(format!("taskscope-demo-{}.jsonl", std::process::id()));
    // Panics of the demo's tasks must not print over the live view.
    std::panic::set_hook(Box::new(|_| {}));
    let (layer, guard) = taskscope::Builder::new()
        .server_addr(addr.clone())
        .report_path(&report)
        .layer()
        .context("cannot start taskscope for the demo app")?;
    // Only the taskscope layer: no stderr output under the live view.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .context("cannot install the demo app's subscriber")?;
    std::mem::forget(guard);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .thread_name("demo-worker")
        .enable_all()
        .build()
        .context("cannot build the demo app's runtime")?;
    std::thread::Builder::new()
        .name("demo-app".into())
        .spawn(move || runtime.block_on(app()))
        .context("cannot start the demo app's thread")?;
    Ok(addr)
}

#[track_caller]
#[cfg(tokio_unstable)]
fn named<F>(name: &str, future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::task::Builder::new()
        .name(name)
        .spawn(future)
        .expect("spawn a demo task")
}

/// Without `--cfg tokio_unstable` Tokio cannot name tasks (and `start_app`
/// refuses to run the demo); this only keeps such a build compiling.
#[track_caller]
#[cfg(not(tokio_unstable))]
fn named<F>(_name: &str, future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future)
}

async fn app() {
    // Healthy traffic: short requests, each with a child that answers on a oneshot.
    named("traffic", async {
        let mut n = 0u64;
        loop {
            n += 1;
            named("request", handle_request(n));
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    // A task left waiting forever on a channel whose sender lives on.
    let (keep, mut never) = tokio::sync::mpsc::channel::<()>(1);
    std::mem::forget(keep);
    named("orphaned_listener", async move {
        while never.recv().await.is_some() {}
    });
    // A future that drops its waker: it can never be woken again.
    named("lost_waker", ForgetsWaker);

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut stuck_started = false;
    loop {
        tick.tick().await;
        let t = started.elapsed().as_secs_f64();
        let every = |period: f64, offset: f64| {
            let phase = (t - offset).rem_euclid(period);
            t >= offset && phase < 0.5
        };
        if every(3.0, 0.5) {
            named("config_reloader", config_reloader());
        }
        if every(5.0, 1.0) {
            named("cpu_hog", async { cpu_hog() });
        }
        if every(4.0, 1.5) {
            let forgotten = fetch_user(7).tracked();
            drop(forgotten);
        }
        if every(6.0, 2.0) {
            drop(named("payment_worker", payment_worker()));
        }
        if !stuck_started && t >= 1.0 {
            stuck_started = true;
            named("stuck_poll", async { stuck_poll() });
        }
    }
}

async fn handle_request(n: u64) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        tokio::task::yield_now().await;
        let _ = tx.send(n * 2);
    });
    tokio::time::sleep(Duration::from_millis(5 + n % 20)).await;
    let _ = rx.await;
}

async fn config_reloader() {
    load_config_blocking();
}

#[inline(never)]
fn load_config_blocking() {
    // The bug: a blocking call inside async code.
    std::thread::sleep(Duration::from_millis(250));
}

#[inline(never)]
fn cpu_hog() -> u64 {
    let until = Instant::now() + Duration::from_millis(300);
    let mut x = 1u64;
    while Instant::now() < until {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

#[inline(never)]
fn stuck_poll() {
    std::thread::sleep(Duration::from_secs(30));
}

async fn fetch_user(id: u32) -> u32 {
    tokio::task::yield_now().await;
    id
}

async fn payment_worker() {
    tokio::task::yield_now().await;
    panic!("payment provider returned 503");
}

struct ForgetsWaker;

impl Future for ForgetsWaker {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}
