//! Memory of one live task: the bytes allocated (and not freed, counted by
//! the allocator: what was asked for) and the resident memory (`VmRSS`: what
//! the allocator's chunks and the task table's pages take) while N pending
//! tasks are alive (10,000 unless told), under each capture; taskscope's
//! share is the difference with `bare`.
//!
//! ```sh
//! cargo run --release -p taskscope-tests --bin mem_per_task -- hooks [N]
//! ```
//! (`bare`, `hooks` or `init`). Prints the bytes per live task, counted and resident.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Resident memory of this process, in bytes.
fn resident() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let variant = std::env::args().nth(1).unwrap_or_else(|| "bare".into());
    let tasks: usize = std::env::args()
        .nth(2)
        .map(|n| n.parse().expect("a number of tasks"))
        .unwrap_or(10_000);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let Some(_guard) = taskscope_tests::variants::install(&variant, &mut builder) else {
        panic!("unknown variant {variant}");
    };
    let rt = builder.build().expect("runtime");
    let (per_task, resident_per_task) = rt.block_on(async {
        // Warm up: one task of each kind, so one-time allocations are not counted.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let warm = tokio::spawn(async move { rx.await.ok() });
        tokio::task::yield_now().await;
        let _ = tx.send(());
        warm.await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;

        let mut senders = Vec::with_capacity(tasks);
        let mut handles = Vec::with_capacity(tasks);
        let baseline_vecs = LIVE.load(Ordering::Relaxed);
        let baseline_rss = resident();
        // The two vectors' pages count once filled: count them as not the tasks'.
        let vectors = (tasks
            * (size_of::<tokio::sync::oneshot::Sender<()>>()
                + size_of::<tokio::task::JoinHandle<Option<()>>>())) as i64;
        for i in 0..tasks {
            // In batches: one poll spawning every task would be a slow poll,
            // whose stack capture and symbolization (the binary's debug info,
            // ~100 MB, kept once loaded) would be counted as the tasks'.
            if i % 1_000 == 999 {
                tokio::task::yield_now().await;
            }
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            senders.push(tx);
            handles.push(tokio::spawn(async move { rx.await.ok() }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let after = LIVE.load(Ordering::Relaxed);
        let per_task = (after - baseline_vecs) as f64 / tasks as f64;
        let resident_per_task = (resident() - baseline_rss - vectors) as f64 / tasks as f64;
        drop(senders);
        for h in handles {
            let _ = h.await;
        }
        (per_task, resident_per_task)
    });
    println!(
        "{variant}: bytes per live task (with its oneshot and JoinHandle), {tasks} tasks: \
         {per_task:.0} allocated, {resident_per_task:.0} resident"
    );
}
