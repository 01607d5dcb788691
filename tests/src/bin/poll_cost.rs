//! Per-poll cost of each capture, for instruction counting under callgrind
//! (stable on a noisy machine, unlike wall time):
//!
//! ```sh
//! cargo build --release -p taskscope-tests --bin poll_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/poll_cost hooks 200000
//! ```
//!
//! `poll_cost VARIANT POLLS [yield|spawn] [IDLE]` runs one task that yields
//! POLLS times (or, with `spawn`, POLLS tasks that yield once, in batches of
//! 1,000) on a current-thread runtime, after IDLE tasks (0 unless told) were
//! spawned and parked on a `Notify`; VARIANT is `bare`, `hooks` or `init`
//! (taskscope's two ways in), or `noop-hooks` / `clock-hooks` (Tokio's hooks
//! doing nothing / only reading the TSC: the floor of the hook path). Compare
//! the instruction totals of two runs (2N and N) and divide by N.
//!
//! Without the default feature (`--no-default-features`: no `init`, and a
//! Tokio built without its `tracing` feature) it measures the hooks path as
//! an app that leaves the tracing capture out gets it.

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "bare".into());
    let polls: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let spawn = args.next().is_some_and(|w| w == "spawn");
    let idle: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    let Some(_guard) = taskscope_tests::variants::install(&variant, &mut builder) else {
        panic!("unknown variant {variant}");
    };
    let rt = builder.build().expect("runtime");
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let parked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    rt.block_on(async {
        for _ in 0..idle {
            let (notify, parked) = (notify.clone(), parked.clone());
            tokio::spawn(async move {
                parked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                notify.notified().await
            });
        }
        // Every idle task polled once and parked.
        while parked.load(std::sync::atomic::Ordering::Relaxed) < idle {
            tokio::task::yield_now().await;
        }
    });
    if spawn {
        rt.block_on(async move {
            for _ in 0..polls / 1_000 {
                let batch: Vec<_> = (0..1_000)
                    .map(|_| tokio::spawn(tokio::task::yield_now()))
                    .collect();
                for task in batch {
                    task.await.unwrap();
                }
            }
        });
        return;
    }
    rt.block_on(async move {
        tokio::spawn(async move {
            for _ in 0..polls {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    });
}
