//! What a capture returns: the stack ([`RawStack`]), how it was taken
//! ([`Method`], [`SyscallFixup`]), why it failed ([`StackError`]), and its
//! [`Options`].

#![cfg_attr(
    not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )),
    allow(dead_code, reason = "made and read by the capture of Linux")
)]

use std::time::Duration;

/// How many instruction pointers a [`RawStack`] holds, innermost first.
pub(crate) const MAX_FRAMES: usize = 128;

/// Why a stack could not be captured. Each message is what a finding's
/// `stack_unavailable` says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StackError {
    /// Capture is turned off (`TASKSCOPE_STACKS=off`).
    #[error("disabled")]
    Disabled,
    /// Stacks of other threads cannot be captured on this platform (named in the field).
    #[error(
        "stack unavailable on this platform ({0}): taskscope captures other threads' stacks \
         on Linux x86_64 and aarch64 only"
    )]
    #[cfg_attr(
        all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ),
        allow(dead_code, reason = "made by the capture of the other platforms")
    )]
    Unsupported(&'static str),
    /// `/proc/self/task/TID` could not be read (not mounted, hidden, refused).
    #[error("stack unavailable: /proc/self/task cannot be read ({0})")]
    ProcUnavailable(String),
    /// No usable signal (none free at install, the handler was replaced, `tgkill` failed).
    #[error("stack unavailable: capture signal: {0}")]
    Signal(String),
    /// The thread was running its own code with the capture signal blocked
    /// (an app that reads signals through signalfd/sigwait): not signalled,
    /// so nothing is left pending.
    #[error(
        "stack unavailable: the thread was running with the capture signal ({signal}) blocked \
         (an application that reads signals through signalfd/sigwait); it was not signalled"
    )]
    SignalBlocked {
        /// The capture signal.
        signal: i32,
    },
    /// An earlier capture signal is still pending for the thread: not sent
    /// again, so at most one is ever queued.
    #[error(
        "stack unavailable: an earlier capture signal ({signal}) is still pending for the thread; \
         not sent again"
    )]
    SignalPending {
        /// The capture signal.
        signal: i32,
    },
    /// The thread is panicking, or inside an `UnwindGuard` (taking or
    /// printing a backtrace): its unwinder is not re-entered.
    #[error(
        "stack unavailable: the thread is {} (its unwinder is not re-entered)",
        if *panicking { "panicking" } else { "taking a backtrace" }
    )]
    Unwinding {
        /// `std::thread::panicking()` (else the guard).
        panicking: bool,
    },
    /// The thread was running inside another signal handler.
    #[error("stack unavailable: the thread was inside a signal handler")]
    InSignalHandler,
    /// The thread was inside the unwinder's own code (libgcc `_Unwind_*`, `dl_iterate_phdr`).
    #[error("stack unavailable: the thread was inside the unwinder")]
    InUnwinder,
    /// The thread did not answer the signal in time (not scheduled, or stuck).
    #[error("stack unavailable: the thread did not answer in time")]
    Timeout,
    /// The signalled thread stopped waiting before the walk was done (the
    /// capturer was descheduled longer than the pause limit).
    #[error("stack unavailable: the thread resumed before its stack was read")]
    Resumed,
    /// The thread has exited.
    #[error("stack unavailable: the thread has exited")]
    ThreadExited,
    /// The thread kept switching between running and blocking: no
    /// consistent snapshot in a few tries.
    #[error("stack unavailable: the thread kept moving (no consistent snapshot)")]
    Moving,
    /// The walk found no frame.
    #[error("stack unavailable: the unwinder found no frame")]
    NoFrames,
}

/// How a stack was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// Path A: the thread was blocked in system call `syscall` (`None`:
    /// blocked outside one, e.g. a page fault); no signal was sent.
    Blocked {
        /// The system call number, as `/proc` showed it.
        syscall: Option<i64>,
    },
    /// Path B: the thread was running user code and was signalled.
    Signal {
        /// What the handler did about a system call entered just before delivery.
        fixup: SyscallFixup,
    },
    /// The calling thread captured itself.
    Current,
}

/// What the handler did about a system call the signal interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyscallFixup {
    /// No system call was interrupted (or the kernel restarted it itself).
    None,
    /// System call `nr` returned EINTR because of the signal and was restarted: invisible.
    Restarted(u32),
    /// It returned EINTR and could not be restarted (number unknown, or not
    /// restartable): the application saw EINTR. Counted in `stats()`.
    Unfixable(Option<u32>),
}

/// Instruction pointers of one captured stack, innermost first. No capture
/// machinery is in it: nothing of taskscope's ran on the target's stack.
#[derive(Clone, Copy)]
pub(crate) struct RawStack {
    /// Instruction pointers, innermost first; the first `len` are set.
    pub(super) ips: [usize; MAX_FRAMES],
    /// How many of `ips` are set.
    pub(super) len: usize,
    /// `ips[0]` is the exact interrupted program counter (not a return address).
    pub(super) exact_top: bool,
    /// The stack had more frames than were kept.
    pub(super) truncated: bool,
    /// The walk reached the thread's outermost frame.
    pub(super) complete: bool,
    /// A frame pointer was recovered by scanning the stack (path A).
    pub(super) fp_recovered: bool,
    /// How it was taken.
    pub(super) method: Method,
}

#[cfg_attr(
    not(test),
    allow(dead_code, reason = "complete, fp_recovered, method: for the tests")
)]
impl RawStack {
    /// A stack of these instruction pointers (at most [`MAX_FRAMES`] kept).
    pub(crate) fn new(ips: &[usize], exact_top: bool, method: Method) -> RawStack {
        let mut raw = RawStack {
            ips: [0; MAX_FRAMES],
            len: ips.len().min(MAX_FRAMES),
            exact_top,
            truncated: ips.len() > MAX_FRAMES,
            complete: false,
            fp_recovered: false,
            method,
        };
        raw.ips[..raw.len].copy_from_slice(&ips[..raw.len]);
        raw
    }

    /// The instruction pointers, innermost first: the first is the program
    /// counter, the others are return addresses.
    pub(crate) fn ips(&self) -> &[usize] {
        &self.ips[..self.len]
    }

    /// True when the stack was deeper than [`MAX_FRAMES`] (the outermost frames are missing).
    pub(crate) fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// True when the first instruction pointer is the exact interrupted
    /// instruction; false when it is the address after a `syscall`
    /// instruction (path A), to be symbolized like a return address.
    pub(crate) fn exact_top(&self) -> bool {
        self.exact_top
    }

    /// True when the walk reached the thread's outermost frame.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// True when a frame pointer had to be recovered by scanning the stack.
    pub(crate) fn fp_recovered(&self) -> bool {
        self.fp_recovered
    }

    /// How the stack was taken.
    pub(crate) fn method(&self) -> Method {
        self.method
    }

    /// A stack of these instruction pointers (for tests that symbolize one
    /// captured earlier).
    #[cfg(test)]
    pub(crate) fn from_ips(ips: &[usize], exact_top: bool) -> RawStack {
        RawStack::new(ips, exact_top, Method::Current)
    }
}

impl std::fmt::Debug for RawStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Hex<'a>(&'a [usize]);
        impl std::fmt::Debug for Hex<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut list = f.debug_list();
                for ip in self.0 {
                    list.entry(&format_args!("{ip:#x}"));
                }
                list.finish()
            }
        }
        f.debug_struct("RawStack")
            .field("ips", &Hex(self.ips()))
            .field("exact_top", &self.exact_top)
            .field("truncated", &self.truncated)
            .field("complete", &self.complete)
            .field("fp_recovered", &self.fp_recovered)
            .field("method", &self.method)
            .finish()
    }
}

/// Options of a capture.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// How long to wait for a signalled thread to answer.
    pub(crate) timeout: Duration,
    /// How long a signalled thread waits, paused, for the capturer to finish walking.
    pub(crate) pause_limit: Duration,
    /// Path A attempts before giving up on a thread that keeps moving.
    pub(crate) attempts: u32,
    /// Tests only: walk a signalled thread without its frame pointer, as path A must.
    pub(crate) ignore_frame_pointer: bool,
    /// Tests only: use the signal even for a blocked thread (to compare path
    /// A's walk with the signal's, which has the real frame pointer).
    pub(crate) force_signal: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_millis(100),
            pause_limit: Duration::from_millis(20),
            attempts: 4,
            ignore_frame_pointer: false,
            force_signal: false,
        }
    }
}
