//! Memory of one live task, measured with a counting allocator: the bytes
//! allocated (and not freed) while 10,000 pending tasks are alive, under each
//! capture, minus the same without taskscope.
//!
//! ```sh
//! cargo run --release -p taskscope-tests --bin mem_per_task -- hooks
//! ```
//! (`bare`, `hooks` or `init`). Prints `bytes per live task: N`.

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

const TASKS: usize = 10_000;

fn main() {
    let variant = std::env::args().nth(1).unwrap_or_else(|| "bare".into());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let Some(_guard) = taskscope_tests::variants::install(&variant, &mut builder) else {
        panic!("unknown variant {variant}");
    };
    let rt = builder.build().expect("runtime");
    let per_task = rt.block_on(async {
        // Warm up: one task of each kind, so one-time allocations are not counted.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let warm = tokio::spawn(async move { rx.await.ok() });
        tokio::task::yield_now().await;
        let _ = tx.send(());
        warm.await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;

        let mut senders = Vec::with_capacity(TASKS);
        let mut handles = Vec::with_capacity(TASKS);
        let baseline_vecs = LIVE.load(Ordering::Relaxed);
        for _ in 0..TASKS {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            senders.push(tx);
            handles.push(tokio::spawn(async move { rx.await.ok() }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let after = LIVE.load(Ordering::Relaxed);
        let per_task = (after - baseline_vecs) as f64 / TASKS as f64;
        drop(senders);
        for h in handles {
            let _ = h.await;
        }
        per_task
    });
    println!("{variant}: bytes per live task (with its oneshot and JoinHandle): {per_task:.0}");
}
