//! Per-thread "poll in progress since T" slots: written by the hot path (three
//! plain stores when an outermost poll starts, one when it ends, on a cache
//! line only that thread writes), read by the watchdog.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::findings::StackFrame;
use crate::stack_facade::ThreadHandle;
use crate::table::lock;

/// The stack the watchdog took for one poll (`seq`), kept for its final report.
pub(crate) struct TakenStack {
    pub(crate) seq: u64,
    pub(crate) frames: Vec<StackFrame>,
    pub(crate) unavailable: Option<String>,
}

#[repr(align(128))]
pub(crate) struct WatchSlot {
    /// Start of the outermost poll in progress, 0 when none.
    pub(crate) start: AtomicU64,
    /// Registry key of the task being polled.
    pub(crate) key: AtomicU64,
    /// Increments with every outermost poll on this thread.
    pub(crate) seq: AtomicU64,
    /// The task's poll number (1 = first) of the poll in progress.
    pub(crate) poll_no: AtomicU64,
    pub(crate) thread: ThreadHandle,
    pub(crate) thread_name: String,
    pub(crate) dead: AtomicBool,
    pub(crate) stack: Mutex<Option<TakenStack>>,
}

static SLOTS: Mutex<Vec<Arc<WatchSlot>>> = Mutex::new(Vec::new());

struct Owner(Arc<WatchSlot>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.dead.store(true, Ordering::Relaxed);
    }
}

thread_local! {
    static OWNER: Owner = Owner(register());
}

fn register() -> Arc<WatchSlot> {
    let slot = Arc::new(WatchSlot {
        start: AtomicU64::new(0),
        key: AtomicU64::new(0),
        seq: AtomicU64::new(0),
        poll_no: AtomicU64::new(0),
        thread: ThreadHandle::current(),
        thread_name: std::thread::current()
            .name()
            .unwrap_or("<unnamed>")
            .to_string(),
        dead: AtomicBool::new(false),
        stack: Mutex::new(None),
    });
    lock(&SLOTS).push(Arc::clone(&slot));
    slot
}

/// This thread's slot (registered on first use). `None` while the thread is being torn down.
#[cold]
pub(crate) fn current() -> Option<*const WatchSlot> {
    OWNER.try_with(|o| Arc::as_ptr(&o.0)).ok()
}

/// The live slots; prunes those of exited threads.
pub(crate) fn all() -> Vec<Arc<WatchSlot>> {
    let mut slots = lock(&SLOTS);
    slots.retain(|s| !s.dead.load(Ordering::Relaxed));
    slots.clone()
}

impl WatchSlot {
    #[inline]
    pub(crate) fn begin(&self, key: u64, poll_no: u64, now: u64) {
        self.key.store(key, Ordering::Relaxed);
        self.poll_no.store(poll_no, Ordering::Relaxed);
        self.seq.store(
            self.seq.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        self.start.store(now, Ordering::Release);
    }

    #[inline]
    pub(crate) fn end(&self) {
        self.start.store(0, Ordering::Release);
    }

    /// The stack taken for poll `seq`, if the watchdog took one.
    pub(crate) fn take_stack(&self, seq: u64) -> Option<TakenStack> {
        let mut stack = lock(&self.stack);
        match stack.take() {
            Some(s) if s.seq == seq => Some(s),
            other => {
                *stack = other;
                None
            }
        }
    }
}
