//! Per-poll cost of each capture, for instruction counting under callgrind
//! (stable on a noisy machine, unlike wall time):
//!
//! ```sh
//! cargo build --release -p taskscope-tests --bin poll_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/poll_cost hooks 200000
//! ```
//!
//! `poll_cost VARIANT POLLS [spawn]` runs one task that yields POLLS times (or,
//! with `spawn`, POLLS tasks that yield once, in batches of 1,000) on a
//! current-thread runtime; VARIANT is `bare`, `hooks` or `init` (taskscope's two
//! ways in), or `noop-hooks` / `clock-hooks` (Tokio's hooks doing nothing / only
//! reading the TSC: the floor of the hook path). Compare the
//! instruction totals of two variants and divide by POLLS.

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "bare".into());
    let polls: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let spawn = args.next().is_some_and(|w| w == "spawn");
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    let Some(_guard) = taskscope_tests::variants::install(&variant, &mut builder) else {
        panic!("unknown variant {variant}");
    };
    let rt = builder.build().expect("runtime");
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
