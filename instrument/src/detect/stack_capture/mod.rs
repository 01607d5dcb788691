//! Stack capture: the stack of a blocked thread, taken from another thread,
//! without ever changing what the thread's own calls return.
//!
//! A watchdog thread that sees a worker stuck inside a poll calls [`capture`]
//! with that worker's [`ThreadHandle`]; the worker's stack is taken *while it
//! is still blocked*, as raw instruction pointers ([`RawStack`]). The watchdog
//! then turns them into frames with [`super::symbolize`], on its own thread.
//!
//! # How
//!
//! Linux on x86_64 (aarch64: designed, compiled, not run; see the limits);
//! elsewhere everything compiles and [`capture`] returns
//! [`StackError::Unsupported`]. Two paths, chosen for each capture from what
//! `/proc/self/task/TID/syscall` says about the thread:
//!
//! * **Path A — the thread is blocked** in a system call (a sleep, `poll`,
//!   `epoll_wait`, a socket read, a futex wait for a lock) or in a page fault:
//!   **no signal at all**. That file gives the thread's user stack pointer and
//!   program counter; its user stack does not move while it is blocked, so the
//!   capturer unwinds it *remotely* ([`walk`]: DWARF CFI from `.eh_frame`
//!   through `framehop`), reading the stack with `process_vm_readv` on our own
//!   pid ([`mem`]: an address that is not mapped gives an error, never a
//!   fault). Then it checks the thread did not move: the `syscall` line and
//!   the context-switch count are read before and after the walk, and the walk
//!   is retried (4 times, then [`StackError::Moving`]) if either changed.
//!   Only `sp` and `pc` are known there, not the frame pointer: where a
//!   frame-pointer function of Rust's std (`thread::sleep`, std's futex
//!   waits) called a libc wrapper that did not save `rbp`, the walker finds
//!   the saved `(rbp, return address)` pair by scanning the stack for a
//!   return address right after a `call` ([`RawStack::fp_recovered`]), and
//!   takes the first pair from which the walk goes on soundly (stale pairs of
//!   earlier calls lie in the frame below the real one).
//! * **Path B — the thread is running user code** (a CPU loop): a real-time
//!   signal. Its handler ([`signal`]) does *not* unwind: it publishes the
//!   registers from its `ucontext` and waits, paused on the alternate signal
//!   stack, while the capturer walks the stack remotely the same way (at most
//!   20 ms; then the capture fails with [`StackError::Resumed`]). No system
//!   call of the thread is in progress to interrupt. If it entered one in the
//!   microseconds between the last check and the delivery, the handler
//!   restarts it (x86_64: `rax = nr`, `rip -= 2`, the number recovered from
//!   the code before the `syscall` instruction by [`sysno`]), so `EINTR`
//!   never reaches the application. It does this on every delivery, a late
//!   one included.
//!
//! Before sending the signal the capturer checks, in the thread's
//! `/proc/.../status`, that the thread does not block the signal (an app that
//! blocks signals and reads them through `signalfd`/`sigwait`:
//! [`StackError::SignalBlocked`], and nothing is sent, so nothing piles up)
//! and has none of ours pending ([`StackError::SignalPending`]: at most one is
//! ever queued). The handler refuses, and says why, a thread that is
//! panicking or inside an [`UnwindGuard`] ([`StackError::Unwinding`]: the
//! panic hook is marked), one running inside another signal handler
//! ([`StackError::InSignalHandler`]), or one inside libgcc's unwinder or
//! `dl_iterate_phdr` ([`StackError::InUnwinder`]). No unwinder ever runs on
//! the target thread, so none can be re-entered.
//!
//! * **The signal**: [`install`] takes the first of `SIGRTMIN+4 ..= SIGRTMAX`
//!   that has the default disposition and that no thread of the process
//!   blocks or has pending (checked in every `/proc/self/task/*/status`): a
//!   signal the app handles or keeps blocked to read through `signalfd` is
//!   never taken. Flags `SA_SIGINFO | SA_RESTART | SA_ONSTACK`. A handler the
//!   app installs on that number later is respected: the capture fails with
//!   [`StackError::Signal`] and the signal is not taken back.
//! * **Warm-up**: [`install`] (called when the watchdog starts) copies the
//!   loaded objects' unwind tables (`.eh_frame_hdr` and `.eh_frame`, so a
//!   later `dlclose` cannot leave the walker reading unmapped memory), probes
//!   the memory reader and walks the calling thread once, so the first real
//!   capture touches no cold path. New libraries are picked up before a
//!   capture, never while a target is paused.
//! * **Alternate signal stack** ([`altstack`]): an existing one of at least
//!   `AT_MINSIGSTKSZ + 4 KiB` is reused (std's, 8 KiB on most machines);
//!   otherwise the thread gets one of 64 KiB plus a guard page, unmapped when
//!   it exits. A thread near its stack's guard page cannot die of our signal.
//!
//! # Costs (2-core dev machine, loaded)
//!
//! * Path A: 38 µs (release) to 85 µs (debug) per capture: four `/proc`
//!   reads and the walk. Path B: 47-55 µs (release), 116 µs (debug), of which
//!   the target waits paused for about 40-50 µs. The watchdog captures a
//!   blocked poll once, at most one capture per slow poll.
//! * The copied unwind tables: 0.4-0.6 MB; a page cache of 256 KiB for the
//!   memory reader, allocated once. One `/proc/self/task/TID` descriptor
//!   (`O_PATH`) per worker thread.
//!
//! # Async-signal-safety
//!
//! The handler allocates nothing and takes no lock. Its system calls are
//! `futex`, `clock_gettime`, `process_vm_readv` and `getpid`; it reads
//! `const` thread-locals without destructors, and saves and restores `errno`.
//! While the target is paused the capturer also allocates nothing and takes
//! no lock the target could hold: `framehop` runs with
//! `MustNotAllocateDuringUnwind` on a preallocated output.
//!
//! # Limits
//!
//! * An `EINTR` can still reach the app on x86_64 only when a thread enters a
//!   system call within 1-2 µs of the last check *and* its number cannot be
//!   proven from the code before the `syscall` instruction, or the call is not
//!   one that can be re-issued (`connect`); the handler counts these
//!   ([`stats`]). None were seen in 45,000 racing calls. A restarted call
//!   starts its relative timeout again (by the microseconds it had run).
//! * aarch64: the handler cannot restart a call (the kernel overwrites `x0`),
//!   and path A has no `lr`: expect short walks there. Not run on a machine.
//! * A thread blocked on path A is captured even while it panics (nothing runs
//!   on it: its memory is read from the watchdog's thread).
//! * `/proc` must be mounted ([`StackError::ProcUnavailable`] otherwise).
//!
//! # For the integrator
//!
//! * Call [`ThreadHandle::current`] on the worker thread itself (it records
//!   the thread's id, mask and `/proc` directory, and sets up its alternate
//!   signal stack); the handle can then go to any thread.
//! * Call [`install`] when the watchdog starts; [`set_enabled`]`(false)`
//!   before any worker's first poll turns all of this off (`TASKSCOPE_STACKS=off`).

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) mod altstack;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) mod mem;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) mod modules;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) mod procfs;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) mod signal;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod sysno;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) mod walk;

mod raw_stack;
#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod tests;

#[cfg(test)]
pub(crate) use raw_stack::{MAX_FRAMES, Method, SyscallFixup};
pub(crate) use raw_stack::{Options, RawStack, StackError};

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether captures are on for this process (`TASKSCOPE_STACKS`).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns stack capture on or off for the process. Off: [`ThreadHandle::current`]
/// makes handles that open nothing and touch no signal stack, [`capture`]
/// returns [`StackError::Disabled`], and nothing is installed.
pub(crate) fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether stack capture is on ([`set_enabled`]).
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Identifies a thread so another thread can [`capture`] its stack. Create it
/// on the thread itself; then send it anywhere. Compare handles by [`ThreadHandle::tid`].
#[derive(Clone, Debug)]
pub(crate) struct ThreadHandle {
    /// The thread's state for the capturer; `None` when capture is off.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    inner: Option<std::sync::Arc<imp::Inner>>,
    /// The thread's std id (nothing can be captured on this platform).
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    _thread: std::thread::ThreadId,
}

impl ThreadHandle {
    /// The handle of the calling thread. With capture on (Linux), it records
    /// the thread's id, token and usual signal mask, opens its
    /// `/proc/self/task/TID` directory and makes sure it has a big enough
    /// alternate signal stack.
    pub(crate) fn current() -> ThreadHandle {
        #[cfg(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        return ThreadHandle {
            inner: enabled().then(|| std::sync::Arc::new(imp::Inner::current(false))),
        };
        #[cfg(not(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )))]
        ThreadHandle {
            _thread: std::thread::current().id(),
        }
    }

    /// Like [`ThreadHandle::current`], but always with taskscope's own
    /// alternate signal stack (tests measure the handler's use of it).
    #[cfg(all(
        test,
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    pub(crate) fn current_with_own_altstack() -> ThreadHandle {
        ThreadHandle {
            inner: Some(std::sync::Arc::new(imp::Inner::current(true))),
        }
    }

    /// The kernel thread id (0 where unsupported or off).
    #[cfg_attr(not(test), allow(dead_code, reason = "for the tests"))]
    pub(crate) fn tid(&self) -> i32 {
        #[cfg(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        return self.inner.as_ref().map_or(0, |i| i.tid);
        #[cfg(not(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )))]
        0
    }

    /// What was done about the thread's alternate signal stack.
    #[cfg(all(
        test,
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    pub(crate) fn altstack(&self) -> Option<altstack::AltStack> {
        self.inner.as_ref().map(|i| i.altstack)
    }
}

/// Chooses the signal, installs the handler and warms the capturer up (the
/// loaded objects' unwind tables copied, one walk done), once per process;
/// returns the signal number. The first result is kept. The watchdog calls it
/// when it starts; [`capture`] calls it otherwise.
pub(crate) fn install() -> Result<i32, StackError> {
    if !enabled() {
        return Err(StackError::Disabled);
    }
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    return imp::install();
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    Err(StackError::Unsupported(platform()))
}

/// Captures `thread`'s stack (from any thread, itself included), waiting at
/// most `timeout` for a signalled thread to answer. Captures are serialized.
pub(crate) fn capture(thread: &ThreadHandle, timeout: Duration) -> Result<RawStack, StackError> {
    capture_with(
        thread,
        &Options {
            timeout,
            ..Options::default()
        },
    )
}

/// [`capture`] with all options.
pub(crate) fn capture_with(
    thread: &ThreadHandle,
    options: &Options,
) -> Result<RawStack, StackError> {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    return match &thread.inner {
        Some(inner) if enabled() => imp::capture(inner, options),
        _ => Err(StackError::Disabled),
    };
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        let _ = (thread, options);
        if !enabled() {
            return Err(StackError::Disabled);
        }
        Err(StackError::Unsupported(platform()))
    }
}

/// `os-arch` of this build, for [`StackError::Unsupported`].
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn platform() -> &'static str {
    static PLATFORM: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    PLATFORM.get_or_init(|| {
        Box::leak(format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH).into_boxed_str())
    })
}

/// Marks the current thread as unwinding while alive: a capture of it by
/// signal is refused ([`StackError::Unwinding`]). The panic hook holds one
/// while the app's previous hook runs (which may take and print a backtrace).
pub(crate) struct UnwindGuard(());

impl UnwindGuard {
    /// Marks the thread until the guard is dropped.
    pub(crate) fn new() -> UnwindGuard {
        #[cfg(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        let _ = signal::UNWINDING.try_with(|u| u.set(u.get() + 1));
        UnwindGuard(())
    }
}

impl Drop for UnwindGuard {
    fn drop(&mut self) {
        #[cfg(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        let _ = signal::UNWINDING.try_with(|u| u.set(u.get().saturating_sub(1)));
    }
}

/// Process-wide counters of the signal path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code, reason = "for the tests"))]
pub(crate) struct Stats {
    /// Times the handler ran.
    pub(crate) deliveries: u64,
    /// System calls the handler restarted (EINTR hidden).
    pub(crate) restarted: u64,
    /// System calls left returning EINTR (stays 0 on x86_64 in every test).
    pub(crate) unfixable: u64,
    /// Deliveries that found no request for their thread (late).
    pub(crate) unclaimed: u64,
}

/// The counters so far.
#[cfg_attr(not(test), allow(dead_code, reason = "for the tests"))]
pub(crate) fn stats() -> Stats {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &signal::COUNTERS;
        Stats {
            deliveries: c.deliveries.load(Relaxed),
            restarted: c.restarted.load(Relaxed),
            unfixable: c.unfixable.load(Relaxed),
            unclaimed: c.unclaimed.load(Relaxed),
        }
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    Stats::default()
}

/// How many loaded objects the capturer knows and how many bytes of unwind
/// tables it copied, once installed.
#[cfg_attr(not(test), allow(dead_code, reason = "for the tests"))]
pub(crate) fn unwind_tables() -> Option<(usize, usize)> {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    return imp::unwind_tables();
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    None
}
