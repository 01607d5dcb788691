//! A runtime kept in a thread-local, dropped at thread exit *after*
//! taskscope's own thread-local (thread-local destructors run in the reverse
//! order of first use), and polling tasks while it is dropped: taskscope must
//! not touch the worker's watchdog slot once it may have been freed. For
//! `tests/memory_safety.rs`.
//!
//! Freed memory is caught by a quarantining allocator: every freed block of
//! 64 bytes or more is filled with a pattern and kept (not reused) for a
//! while; a block whose pattern changed was written after it was freed. The
//! argument is the capture: `init` (taskscope's subscriber) or `hooks`
//! (`install_on` on the thread's runtime). Prints `polled in drop N` (tasks
//! polled while the thread-local was dropped) and `written after free N`
//! (blocks whose pattern changed; exits 1 when N > 0).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Freed blocks kept before they really go back to the system allocator.
const KEPT: usize = 1 << 16;
const PATTERN: u8 = 0xdb;

struct Ring {
    blocks: [(usize, usize, usize); KEPT],
    next: usize,
}

/// The blocks in quarantine: (address, size, alignment).
static QUARANTINE: Mutex<Ring> = Mutex::new(Ring {
    blocks: [(0, 0, 0); KEPT],
    next: 0,
});
static ON: AtomicBool = AtomicBool::new(false);
static WRITTEN_AFTER_FREE: AtomicUsize = AtomicUsize::new(0);

/// Whether the block still holds the pattern everywhere.
///
/// # Safety
/// `addr..addr + size` is a block in quarantine.
unsafe fn intact(addr: usize, size: usize) -> bool {
    // SAFETY: the caller's contract: we own the block until it is released.
    unsafe { std::slice::from_raw_parts(addr as *const u8, size) }
        .iter()
        .all(|&b| b == PATTERN)
}

struct Quarantining;

// SAFETY: every block comes from and goes back to `System` with its layout;
// a quarantined block is only read or written here, under the lock.
unsafe impl GlobalAlloc for Quarantining {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !ON.load(Ordering::Relaxed) || layout.size() < 64 {
            // SAFETY: forwarded as is.
            return unsafe { System.dealloc(ptr, layout) };
        }
        // SAFETY: the block is ours until released below.
        unsafe { std::ptr::write_bytes(ptr, PATTERN, layout.size()) };
        let mut ring = QUARANTINE.lock().unwrap_or_else(|e| e.into_inner());
        let at = ring.next % KEPT;
        ring.next += 1;
        let (old, size, align) = std::mem::replace(
            &mut ring.blocks[at],
            (ptr as usize, layout.size(), layout.align()),
        );
        if old != 0 {
            // SAFETY: a block in quarantine, released now.
            unsafe {
                if !intact(old, size) {
                    WRITTEN_AFTER_FREE.fetch_add(1, Ordering::Relaxed);
                }
                System.dealloc(
                    old as *mut u8,
                    Layout::from_size_align_unchecked(size, align),
                );
            }
        }
    }
}

#[global_allocator]
static ALLOCATOR: Quarantining = Quarantining;

/// Blocks in quarantine whose pattern changed (plus those found on release).
fn written_after_free() -> usize {
    let ring = QUARANTINE.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = WRITTEN_AFTER_FREE.load(Ordering::Relaxed);
    for &(addr, size, _) in ring.blocks.iter().filter(|b| b.0 != 0) {
        // SAFETY: a block in quarantine.
        if !unsafe { intact(addr, size) } {
            n += 1;
        }
    }
    n
}

static POLLED_IN_DROP: AtomicUsize = AtomicUsize::new(0);

/// A runtime that, when its thread-local is dropped, still runs tasks (as
/// code flushing work at thread exit does) and then drops tasks still pending.
struct ThreadRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ThreadRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            for _ in 0..3 {
                rt.block_on(async {
                    tokio::spawn(async {
                        tokio::task::yield_now().await;
                        POLLED_IN_DROP.fetch_add(1, Ordering::Relaxed);
                    })
                    .await
                    .unwrap();
                });
            }
            drop(rt);
        }
    }
}

/// Sleeps in its destructor, which runs between taskscope's thread-local's
/// and the runtime's: long enough for the watchdog (every 10 ms) to free a
/// slot that its owner let go of.
struct Pause;

impl Drop for Pause {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(150));
    }
}

thread_local! {
    static RUNTIME: RefCell<ThreadRuntime> = const { RefCell::new(ThreadRuntime(None)) };
    static PAUSE: Pause = const { Pause };
}

fn main() {
    let hooks = std::env::args().nth(1).as_deref() == Some("hooks");
    let guard = (!hooks).then(taskscope::init);
    ON.store(true, Ordering::Relaxed);
    let worker = std::thread::Builder::new()
        .name("tls-runtime".into())
        .spawn(move || {
            // First use, in this order: Tokio's own context (it must outlive
            // the runtime's thread-local), the runtime's thread-local, the
            // pause, then (at the first poll) taskscope's own.
            let _ = tokio::runtime::Handle::try_current();
            let mut builder = tokio::runtime::Builder::new_current_thread();
            builder.enable_all();
            let hooks_guard =
                hooks.then(|| taskscope::Builder::from_env().install_on(&mut builder));
            RUNTIME.with(|r| r.borrow_mut().0 = Some(builder.build().unwrap()));
            PAUSE.with(|_| {});
            RUNTIME.with(|r| {
                let r = r.borrow();
                let rt = r.0.as_ref().unwrap();
                rt.block_on(async {
                    for _ in 0..10 {
                        tokio::spawn(async { tokio::task::yield_now().await })
                            .await
                            .unwrap();
                    }
                });
                // Left pending: dropped with the runtime.
                rt.spawn(std::future::pending::<()>());
            });
            std::mem::forget(hooks_guard);
        })
        .unwrap();
    worker.join().unwrap();
    // The watchdog prunes what is left of the thread.
    std::thread::sleep(Duration::from_millis(100));
    let written = written_after_free();
    println!("polled in drop {}", POLLED_IN_DROP.load(Ordering::Relaxed));
    println!("written after free {written}");
    drop(guard);
    if written > 0 {
        std::process::exit(1);
    }
}
