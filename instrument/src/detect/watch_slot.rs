//! Per-thread "poll in progress since T" slots: written by the hot path (three
//! plain stores when an outermost poll starts, one when it ends, on a cache
//! line only that thread writes), read by the watchdog.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use taskscope_api::{Finding, FindingKind, StackFrame};

use crate::detect::stack_capture::ThreadHandle;
use crate::sync::lock;

/// The stack of a slow poll as its findings carry it.
#[derive(Clone, Debug, Default)]
pub(crate) struct PollStack {
    /// Frames, innermost first (empty when none could be taken).
    pub(crate) frames: Vec<StackFrame>,
    /// Why there are no frames.
    pub(crate) unavailable: Option<String>,
    /// The thread's stack was deeper than what was kept.
    pub(crate) truncated: bool,
}

impl PollStack {
    /// No stack, for this reason.
    pub(crate) fn missing(why: impl Into<String>) -> PollStack {
        PollStack {
            unavailable: Some(why.into()),
            ..PollStack::default()
        }
    }
}

/// The watchdog's stack of one poll (`seq`), shared with that poll's final report.
///
/// The watchdog sets `Capturing` before it signals the thread, then `Ready`
/// once the stack is symbolized. A poll that ends in between leaves its final
/// finding in `pending_final`; the watchdog completes it with the stack and
/// submits it. Both sides act under the slot's mutex, so the `in_progress`
/// report always precedes the final one.
pub(crate) struct TakenStack {
    pub(crate) seq: u64,
    pub(crate) ready: Option<PollStack>,
    pub(crate) pending_final: Option<Finding>,
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
    /// The thread's id, to match a Tokio worker (`worker_thread_id`).
    pub(crate) thread_id: std::thread::ThreadId,
    pub(crate) dead: AtomicBool,
    pub(crate) stack: Mutex<Option<TakenStack>>,
}

/// Every thread's slot. The list owns them: a slot is freed only once its
/// thread has let go of it (`dead`) and the watchdog pruned it.
static SLOTS: Mutex<Vec<Arc<WatchSlot>>> = Mutex::new(Vec::new());

/// Marks this thread's slot dead when the thread's thread-locals are
/// destroyed, and first forgets the thread's pointer to it.
struct Owner(Arc<WatchSlot>);

impl Drop for Owner {
    fn drop(&mut self) {
        // Thread-local destructors run in the reverse order of first use: a
        // runtime or a LocalSet kept in a thread-local first used before this
        // one is dropped after it, and can still poll (and so reach
        // `current`). From now on `current` gives `None`, so nothing can use
        // the slot once the watchdog has pruned (freed) it.
        let _ = CACHED.try_with(|c| c.set(std::ptr::null()));
        self.0.dead.store(true, Ordering::Release);
    }
}

thread_local! {
    static OWNER: Owner = Owner(register());
    /// This thread's slot, while its [`Owner`] lives: the hot path's one
    /// lookup. `const` and without destructor, so readable during any other
    /// thread-local's destructor; null before the first poll and after the
    /// owner's destructor ran.
    static CACHED: Cell<*const WatchSlot> = const { Cell::new(std::ptr::null()) };
}

fn register() -> Arc<WatchSlot> {
    // Once per thread, at its first poll: the app's runtime, for the viewer's
    // metrics (with `install_on` it did not exist when taskscope started).
    crate::model::app_runtime::note_current();
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
        thread_id: std::thread::current().id(),
        dead: AtomicBool::new(false),
        stack: Mutex::new(None),
    });
    lock(&SLOTS).push(Arc::clone(&slot));
    slot
}

/// This thread's slot (registered on first use). `None` once the thread's
/// thread-locals are being torn down (its [`Owner`] is gone or going).
///
/// The reference is valid while the caller does not return to a point where
/// the thread could run its thread-local destructors: the slot is freed only
/// after its owner's destructor has run (and cleared this thread's pointer).
#[inline]
pub(crate) fn current() -> Option<&'static WatchSlot> {
    let cached = CACHED.try_with(Cell::get).ok()?;
    let ptr = if cached.is_null() {
        register_current()?
    } else {
        cached
    };
    // SAFETY: a non-null pointer here was set by `register_current` from the
    // `Arc` this thread's `Owner` holds, and is cleared by the owner's
    // destructor before it lets go of that `Arc`; the list in `SLOTS` frees
    // a slot only after that (`dead`). So the slot is alive.
    Some(unsafe { &*ptr })
}

/// The slow path of [`current`]: registers this thread's slot and caches it.
#[cold]
fn register_current() -> Option<*const WatchSlot> {
    let ptr = OWNER.try_with(|o| Arc::as_ptr(&o.0)).ok()?;
    CACHED.with(|c| c.set(ptr));
    Some(ptr)
}

/// The live slots; prunes those of exited threads, but not while a final
/// report of theirs still waits for the watchdog.
pub(crate) fn all() -> Vec<Arc<WatchSlot>> {
    let mut slots = lock(&SLOTS);
    slots.retain(|s| !s.dead.load(Ordering::Acquire) || s.has_pending_final());
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

    fn has_pending_final(&self) -> bool {
        lock(&self.stack)
            .as_ref()
            .is_some_and(|t| t.pending_final.is_some())
    }

    /// The final report of poll `seq` (stack still empty): submitted now with
    /// the watchdog's stack, handed to the watchdog if it is still taking it, or
    /// submitted without a stack if the watchdog never saw this poll.
    pub(crate) fn finish_slow_poll(
        &self,
        seq: u64,
        mut finding: Finding,
        submit: impl FnOnce(Finding),
    ) {
        let mut state = lock(&self.stack);
        match state.as_mut() {
            Some(taken) if taken.seq == seq => match &taken.ready {
                Some(stack) => {
                    set_stack(&mut finding, stack);
                    submit(finding);
                }
                None => taken.pending_final = Some(finding),
            },
            _ => {
                set_stack(
                    &mut finding,
                    &PollStack::missing("the poll ended before the watchdog sampled its stack"),
                );
                submit(finding);
            }
        }
    }
}

/// Whether some poll's final report is waiting for the watchdog's stack.
pub(crate) fn any_pending_final() -> bool {
    all().iter().any(|slot| slot.has_pending_final())
}

/// Takes the final reports still waiting for the watchdog, with a stack
/// marked unavailable (the app is shutting down).
pub(crate) fn take_pending_finals() -> Vec<Finding> {
    let mut finals = Vec::new();
    for slot in all() {
        if let Some(mut finding) = lock(&slot.stack)
            .as_mut()
            .and_then(|t| t.pending_final.take())
        {
            set_stack(
                &mut finding,
                &PollStack::missing("the app shut down before the stack was symbolized"),
            );
            finals.push(finding);
        }
    }
    finals
}

/// Fills the stack of a `slow_poll` finding.
pub(crate) fn set_stack(finding: &mut Finding, with: &PollStack) {
    if let FindingKind::SlowPoll {
        stack,
        stack_unavailable,
        stack_truncated,
        ..
    } = &mut finding.kind
    {
        stack.clone_from(&with.frames);
        stack_unavailable.clone_from(&with.unavailable);
        *stack_truncated = with.truncated;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope_api::FindingKind;

    /// A thread-local first used before the slot's owner is dropped after
    /// it, and may still poll: it must find no slot, or a live one, even
    /// when the watchdog pruned (freed) the slot in between. (Under Miri, a
    /// use of the freed slot is reported as undefined behaviour.)
    #[test]
    fn a_slot_is_never_used_after_its_owner_let_go() {
        use std::cell::RefCell;
        use std::sync::mpsc;
        if cfg!(miri) {
            // No /proc, signals or thread ids under Miri: handles open nothing.
            crate::detect::stack_capture::set_enabled(false);
        }
        struct Late(mpsc::Sender<(bool, bool)>);
        impl Drop for Late {
            fn drop(&mut self) {
                // What the watchdog does every 10 ms: frees dead slots.
                drop(all());
                let found = current();
                if let Some(slot) = found {
                    slot.begin(1, 1, 1);
                    slot.end();
                }
                let owner_gone = OWNER.try_with(|_| ()).is_err();
                let _ = self.0.send((found.is_some(), owner_gone));
            }
        }
        thread_local! {
            static LATE: RefCell<Option<Late>> = const { RefCell::new(None) };
        }
        let (tx, rx) = mpsc::channel();
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            LATE.with(|l| *l.borrow_mut() = Some(Late(tx)));
            let slot = current().expect("a slot at the first poll");
            slot.begin(7, 1, 1);
            slot.end();
            addr_tx.send(slot as *const WatchSlot as usize).unwrap();
        })
        .join()
        .unwrap();
        let (found, owner_gone) = rx.recv().unwrap();
        // Dropped after the owner (the order of first use, reversed): no slot.
        assert!(owner_gone, "the test needs the owner dropped first");
        assert!(!found, "a slot handed out after its owner let go");
        let addr = addr_rx.recv().unwrap();
        assert!(
            all().iter().all(|s| Arc::as_ptr(s) as usize != addr),
            "the dead slot is pruned"
        );
    }

    fn slow_poll() -> Finding {
        Finding::new(
            FindingKind::SlowPoll {
                duration_ms: 150.0,
                threshold_ms: 100,
                thread: "w".into(),
                stack: Vec::new(),
                stack_unavailable: None,
                stack_truncated: false,
                in_progress: true,
                poll: 1,
            },
            None,
        )
    }

    #[test]
    fn a_truncated_stack_is_said_in_the_finding_and_its_json() {
        let mut finding = slow_poll();
        let stack = PollStack {
            frames: vec![StackFrame {
                function: "app::f".into(),
                file: None,
                line: None,
            }],
            unavailable: None,
            truncated: true,
        };
        set_stack(&mut finding, &stack);
        let line = serde_json::to_string(&finding).unwrap();
        assert!(line.contains(r#""stack_truncated":true"#), "{line}");
        let back: Finding = serde_json::from_str(&line).unwrap();
        assert!(matches!(
            back.kind,
            FindingKind::SlowPoll {
                stack_truncated: true,
                ..
            }
        ));

        // Not truncated: the field is left out, and reads back as false.
        set_stack(&mut finding, &PollStack::missing("gone"));
        let line = serde_json::to_string(&finding).unwrap();
        assert!(!line.contains("stack_truncated"), "{line}");
        assert!(line.contains(r#""stack_unavailable":"gone""#), "{line}");
    }
}
