//! Stack capture: the stack of a blocked thread, taken from another thread.
//!
//! A watchdog thread that sees a worker stuck inside a poll calls [`capture`]
//! with that worker's [`ThreadHandle`]; the worker's stack is taken *while it is
//! still blocked* (in a sleep, a CPU loop, a lock), as raw instruction pointers
//! ([`RawStack`]). The watchdog then turns them into frames with
//! [`super::symbolize`], on its own thread.
//!
//! # How
//!
//! Linux on x86_64 and aarch64 only; elsewhere everything compiles, and
//! [`capture`] returns [`StackError::Unsupported`].
//!
//! * **The signal.** [`install`] (called by the first [`capture`] when not
//!   called before) installs, once per process, a handler for a real-time
//!   signal: the first of `SIGRTMIN+4 ..= SIGRTMAX` whose disposition is still
//!   the default (on glibc with nothing else installed: `SIGRTMIN+4` = 38;
//!   [`install`] returns which). Real-time signals are queued one per
//!   `tgkill` rather than merged, and are not shared with `setitimer`-based
//!   profilers the way `SIGPROF` is. Flags `SA_SIGINFO | SA_RESTART`; while the
//!   handler runs every other asynchronous signal is blocked (so a profiler's
//!   `SIGPROF` cannot start a second unwind on top of ours). No `SA_ONSTACK`:
//!   the handler runs on the thread's own stack and needs a few KiB of it.
//! * **The request.** Captures are serialized by a mutex on the capturer side.
//!   The capturer publishes the target's kernel thread id and a per-thread token
//!   (a thread-local set by [`ThreadHandle::current`]) with a sequence number
//!   in one atomic state word, then sends the signal with `tgkill(pid, tid)`.
//! * **The handler**, on the target thread: one atomic load; it goes on only
//!   if a request is pending for *its* thread id and token, and claims it with a
//!   compare-and-swap (so a late or foreign signal does nothing). It walks its
//!   own stack with `backtrace::trace_unsynchronized` (libgcc's
//!   `_Unwind_Backtrace`, or LLVM libunwind's on musl), which unwinds through the
//!   signal frame into the interrupted code using the DWARF CFI in `.eh_frame`.
//!   std, tokio and glibc have no frame pointers but do have asynchronous unwind
//!   tables, so this is the reliable walk. The instruction pointers go into a
//!   preallocated static buffer of atomics, with the interrupted program counter
//!   read from the `ucontext`; then it marks the request done and wakes the
//!   capturer with `FUTEX_WAKE`. It saves and restores `errno`.
//! * **The capturer** sleeps on that futex, at most `timeout`, checking each
//!   time it wakes (at least every 10 ms) that the thread still exists
//!   (`tgkill(.., 0)`), so a thread that exits meanwhile fails fast. The frames
//!   above the interrupted program counter (handler, unwinder, signal
//!   trampoline) are cut off exactly, by finding that program counter in the walk.
//!
//! # Costs (measured on the 2-core dev machine)
//!
//! * One capture of a sleeping thread: median 6 µs (release) to 8-10 µs
//!   (debug build) over 200 captures in a row; a spinning thread 6-13 µs;
//!   rare outliers of 0.1-4 ms when the machine is busy.
//!
//! # Async-signal-safety, and the caveats
//!
//! The handler allocates nothing and takes no lock of its own: atomics, the
//! `gettid`, `futex` syscalls and a read of a `const`-initialized thread-local
//! that [`ThreadHandle::current`] already touched on that thread. The unwinder
//! itself is the part that is not formally async-signal-safe (the same
//! trade-off pprof-rs and other in-process profilers make):
//!
//! * `_Unwind_Backtrace` finds unwind tables through `dl_iterate_phdr`, which
//!   takes the dynamic loader's lock. That lock is recursive, so a thread
//!   interrupted inside `dlopen`/`dl_iterate_phdr` does not deadlock, but may be
//!   walked while the loader's list (or libgcc's small cache of it) is being
//!   changed. The risky case is a thread interrupted while it is itself
//!   unwinding (a panic, a backtrace): it may hold the unwinder's own lock
//!   (libgcc's registered-frames mutex in older GCCs, LLVM libunwind's FDE cache
//!   lock on musl) and deadlock in the handler. Then [`capture`] returns
//!   [`StackError::Timeout`], that thread stays stuck, and later captures
//!   return [`StackError::Busy`].
//! * The unwinder trusts the CFI: code with wrong unwind info (hand-written
//!   assembly, JIT code without registered frames) can end the walk early or,
//!   in the worst case, make the handler fault.
//! * A thread that blocks the signal (e.g. a dedicated `sigwait` thread) cannot
//!   be captured: [`StackError::Timeout`]; the signal stays pending and is
//!   ignored when it is finally delivered.
//! * The signal interrupts the thread's system call. `SA_RESTART` restarts most
//!   of them; `nanosleep` returns `EINTR` with the time remaining and
//!   `std::thread::sleep` sleeps again for it, so a sleep is not cut short (see
//!   the tests). Calls that are never restarted after a handler (`epoll_wait`,
//!   `poll`, `select`, `sigtimedwait`, socket calls with a timeout) return
//!   `EINTR` to their caller, as with any profiler signal; std's `read_exact`,
//!   `write_all` and Tokio's driver retry on it.
//! * If another library later replaces the handler, [`capture`] notices before
//!   sending (the disposition is checked every time) and returns
//!   [`StackError::Signal`] rather than sending a signal that could kill the
//!   process.
//! * A kernel thread id can be reused after its thread exits; the per-thread
//!   token makes a capture of a reused id time out instead of returning another
//!   thread's stack.
//!
//! # For the integrator
//!
//! * Call [`ThreadHandle::current`] on the worker thread itself (it gives the
//!   thread its token); the handle can then go to any thread.
//! * The handler does not need to be installed before threads start (a
//!   disposition is per process), but call [`install`] when the watchdog
//!   starts, to pay for it and see a conflict up front rather than at the first
//!   slow poll.
//! * Threads must not block the signal (the number [`install`] returns);
//!   Tokio's and std's threads do not.

use std::time::Duration;

/// How many instruction pointers a [`RawStack`] holds, innermost first.
pub(crate) const MAX_FRAMES: usize = 128;

/// Why a stack could not be captured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StackError {
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
    /// The thread did not answer the signal in time (blocked the signal, or is stuck).
    #[error("the thread did not answer the stack-capture signal in time")]
    Timeout,
    /// The signal handler could not be installed, was replaced, or the signal could not be sent.
    #[error("stack-capture signal: {0}")]
    Signal(String),
    /// The thread has exited.
    #[error("the thread has exited")]
    ThreadExited,
    /// An earlier capture's handler is still walking its thread's stack (that thread is stuck
    /// in the unwinder); no capture can be taken until it finishes.
    #[error("an earlier stack capture has not finished")]
    Busy,
    /// The unwinder found no frame at all.
    #[error("the unwinder found no frame")]
    NoFrames,
}

/// Instruction pointers of one captured stack, innermost first, with the
/// capture machinery (signal handler, unwinder, trampoline) already removed.
#[derive(Clone, Copy)]
pub(crate) struct RawStack {
    /// Instruction pointers, innermost first; the first `len` are set.
    ips: [usize; MAX_FRAMES],
    /// How many of `ips` are set.
    len: usize,
    /// `ips[0]` is the exact interrupted program counter (not a return address).
    exact_top: bool,
    /// The stack had more frames than were kept.
    truncated: bool,
}

impl RawStack {
    /// The instruction pointers, innermost first: the first is the program
    /// counter where the thread was interrupted, the others are return addresses.
    pub(crate) fn ips(&self) -> &[usize] {
        &self.ips[..self.len]
    }

    /// True when the stack was deeper than [`MAX_FRAMES`] (the outermost frames are missing).
    pub(crate) fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// A stack of these instruction pointers (for tests that symbolize one
    /// captured earlier).
    #[cfg(test)]
    pub(crate) fn from_ips(ips: &[usize], exact_top: bool) -> RawStack {
        let mut raw = RawStack {
            ips: [0; MAX_FRAMES],
            len: ips.len().min(MAX_FRAMES),
            exact_top,
            truncated: ips.len() > MAX_FRAMES,
        };
        raw.ips[..raw.len].copy_from_slice(&ips[..raw.len]);
        raw
    }

    /// True when the first instruction pointer is the exact interrupted
    /// program counter, not a return address.
    pub(crate) fn exact_top(&self) -> bool {
        self.exact_top
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
            .finish()
    }
}

/// Identifies a thread so another thread can [`capture`] its stack. Cheap to
/// create (one `gettid` syscall); create it once on each worker thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ThreadHandle {
    /// How this platform reaches the thread.
    os: imp::OsThread,
}

impl ThreadHandle {
    /// The handle of the calling thread.
    pub(crate) fn current() -> ThreadHandle {
        ThreadHandle {
            os: imp::OsThread::current(),
        }
    }
}

/// Installs the capture signal's handler now (otherwise the first [`capture`]
/// does) and returns the signal number. Idempotent; the first result, success
/// or failure, is kept for the life of the process.
pub(crate) fn install() -> Result<i32, StackError> {
    imp::install()
}

/// Captures the instruction pointers of `thread`'s stack, innermost first,
/// while it is interrupted. Called from another thread (the watchdog).
///
/// Waits for the thread at most `timeout` (about 100 ms is right for a
/// watchdog); a capture usually takes under 20 µs. Captures are serialized: a
/// second caller waits for the first one to end.
pub(crate) fn capture(thread: &ThreadHandle, timeout: Duration) -> Result<RawStack, StackError> {
    imp::capture(&thread.os, timeout)
}

/// The Linux implementation: signal handler, request slot, capturer.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp {
    use std::cell::Cell;
    use std::ffi::{c_int, c_void};
    use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize};
    use std::sync::{Mutex, OnceLock, PoisonError};
    use std::time::{Duration, Instant};

    use super::{MAX_FRAMES, RawStack, StackError};

    /// Room in the handler's buffer: the kept frames plus the handler's own
    /// (handler, unwinder, trampoline) above the interrupted one.
    const BUF_FRAMES: usize = MAX_FRAMES + 32;
    /// How far down the walk the interrupted pc is looked for.
    const MAX_MACHINERY: usize = 32;
    /// How often a waiting capturer checks that the target thread still exists.
    const LIVENESS_SLICE: Duration = Duration::from_millis(10);

    // Phases of the request, in the low two bits of `STATE`; the sequence number
    // of the request is in the other 30 bits.
    /// No request pending.
    const IDLE: u32 = 0;
    /// A request is published and the signal sent; no handler has claimed it.
    const REQUESTED: u32 = 1;
    /// The target's handler claimed the request and is walking its stack.
    const WALKING: u32 = 2;
    /// The walk is in the buffer, for the capturer to collect.
    const DONE: u32 = 3;

    /// `(seq << 2) | phase`; a futex word, so the capturer can sleep on it.
    static STATE: AtomicU32 = AtomicU32::new(0);
    /// Kernel thread id the pending request is for.
    static REQ_TID: AtomicI32 = AtomicI32::new(0);
    /// Token of the thread the pending request is for.
    static REQ_TOKEN: AtomicU64 = AtomicU64::new(0);
    /// The handler's walk: instruction pointers, innermost first.
    static BUF: [AtomicUsize; BUF_FRAMES] = [const { AtomicUsize::new(0) }; BUF_FRAMES];
    /// How many of `BUF` are set.
    static BUF_LEN: AtomicUsize = AtomicUsize::new(0);
    /// The interrupted program counter, from the handler's `ucontext`.
    static BUF_PC: AtomicUsize = AtomicUsize::new(0);
    /// The walk did not fit in `BUF`.
    static BUF_TRUNCATED: AtomicBool = AtomicBool::new(false);
    /// Serializes captures (capturer side only; never taken in the handler).
    static CAPTURE: Mutex<u32> = Mutex::new(0);
    /// The installed signal, or why it could not be installed.
    static INSTALLED: OnceLock<Result<c_int, String>> = OnceLock::new();
    /// Source of per-thread tokens.
    static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

    thread_local! {
        /// This thread's token, 0 until [`thread_token`] gives it one. `const`
        /// and without destructor: a plain TLS read, usable in the handler.
        static TOKEN: Cell<u64> = const { Cell::new(0) };
    }

    /// The state word of request `seq` in `phase`.
    fn pack(seq: u32, phase: u32) -> u32 {
        (seq << 2) | phase
    }

    /// How a capturer reaches a thread: `tgkill(pid, tid)`, and the token its
    /// handler checks.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(super) struct OsThread {
        /// Process id (`getpid`): `tgkill` fails with `ESRCH` after a `fork`.
        pid: libc::pid_t,
        /// Kernel thread id (`gettid`).
        tid: libc::pid_t,
        /// The thread's token (never 0), against thread id reuse.
        token: u64,
    }

    impl OsThread {
        /// The calling thread.
        pub(super) fn current() -> OsThread {
            OsThread {
                pid: getpid(),
                tid: gettid(),
                token: thread_token(),
            }
        }
    }

    /// The calling thread's token, given on first use.
    fn thread_token() -> u64 {
        TOKEN
            .try_with(|t| {
                if t.get() == 0 {
                    t.set(NEXT_TOKEN.fetch_add(1, Relaxed));
                }
                t.get()
            })
            .unwrap_or(0)
    }

    /// `getpid()`.
    fn getpid() -> libc::pid_t {
        // SAFETY: no preconditions.
        unsafe { libc::getpid() }
    }

    /// The kernel thread id of the calling thread (async-signal-safe).
    fn gettid() -> libc::pid_t {
        // SAFETY: gettid has no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
    }

    /// `tgkill(pid, tid, sig)`: `Ok` or the errno.
    fn tgkill(pid: libc::pid_t, tid: libc::pid_t, sig: c_int) -> Result<(), c_int> {
        // SAFETY: plain syscall on integers.
        let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL))
        }
    }

    /// The signal handler. Runs on the target thread; see the module docs for
    /// what it may and may not do.
    extern "C" fn handler(_sig: c_int, _info: *mut libc::siginfo_t, ucontext: *mut c_void) {
        // SAFETY: __errno_location returns this thread's errno slot.
        let errno = unsafe { *libc::__errno_location() };
        serve(ucontext);
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }

    /// The handler's work: claim a request for this thread, walk, publish.
    #[inline(always)]
    fn serve(ucontext: *mut c_void) {
        let state = STATE.load(Acquire);
        if state & 3 != REQUESTED || REQ_TID.load(Relaxed) != gettid() {
            return; // a late or foreign signal
        }
        let token = TOKEN.try_with(Cell::get).unwrap_or(0);
        if token == 0 || REQ_TOKEN.load(Relaxed) != token {
            return; // a reused thread id
        }
        let walking = (state & !3) | WALKING;
        if STATE
            .compare_exchange(state, walking, Acquire, Relaxed)
            .is_err()
        {
            return; // cancelled, or a newer request in the meantime
        }
        BUF_PC.store(interrupted_pc(ucontext), Relaxed);
        let mut len = 0usize;
        let mut truncated = false;
        // SAFETY: `trace_unsynchronized` only requires that no other thread runs
        // it concurrently with thread-unsafe unwinders; libgcc's and LLVM
        // libunwind's `_Unwind_Backtrace` are thread-safe. The closure does not
        // panic, allocate or lock.
        unsafe {
            backtrace::trace_unsynchronized(|frame| match BUF.get(len) {
                Some(slot) => {
                    slot.store(frame.ip() as usize, Relaxed);
                    len += 1;
                    true
                }
                None => {
                    truncated = true;
                    false
                }
            });
        }
        BUF_LEN.store(len, Relaxed);
        BUF_TRUNCATED.store(truncated, Relaxed);
        STATE.store((state & !3) | DONE, Release);
        // SAFETY: FUTEX_WAKE on a live static word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                STATE.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            );
        }
    }

    /// The program counter the signal interrupted, from the handler's `ucontext`.
    #[inline(always)]
    fn interrupted_pc(ucontext: *mut c_void) -> usize {
        if ucontext.is_null() {
            return 0;
        }
        let uc = ucontext.cast::<libc::ucontext_t>();
        // SAFETY: with SA_SIGINFO the third argument is the kernel's ucontext_t.
        #[cfg(target_arch = "x86_64")]
        let pc = unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] as usize };
        // SAFETY: as above.
        #[cfg(target_arch = "aarch64")]
        let pc = unsafe { (*uc).uc_mcontext.pc as usize };
        pc
    }

    /// Installs the handler once; see [`super::install`].
    pub(super) fn install() -> Result<c_int, StackError> {
        INSTALLED
            .get_or_init(install_handler)
            .clone()
            .map_err(StackError::Signal)
    }

    /// This handler's address, as `sigaction` holds it.
    fn handler_address() -> libc::sighandler_t {
        handler as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as libc::sighandler_t
    }

    /// The current disposition of `sig`.
    fn disposition(sig: c_int) -> Result<libc::sigaction, String> {
        // SAFETY: a zeroed sigaction is a valid out-parameter; query only.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                return Err(format!(
                    "sigaction({sig}): {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(old)
        }
    }

    /// Picks a free real-time signal and installs [`handler`] for it.
    fn install_handler() -> Result<c_int, String> {
        let (lo, hi) = (libc::SIGRTMIN() + 4, libc::SIGRTMAX());
        for sig in lo..=hi {
            if disposition(sig)?.sa_sigaction != libc::SIG_DFL {
                continue; // somebody else's
            }
            // SAFETY: a fully initialized sigaction for a real-time signal; the
            // handler is an `extern "C"` fn with the SA_SIGINFO signature.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler_address();
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                // Block the other asynchronous signals while walking; leave the
                // synchronous ones (a fault must not be blocked, or the kernel kills).
                libc::sigfillset(&mut action.sa_mask);
                for sync in [
                    libc::SIGSEGV,
                    libc::SIGBUS,
                    libc::SIGILL,
                    libc::SIGFPE,
                    libc::SIGTRAP,
                    libc::SIGABRT,
                ] {
                    libc::sigdelset(&mut action.sa_mask, sync);
                }
                let mut previous: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &action, &mut previous) != 0 {
                    return Err(format!(
                        "sigaction({sig}): {}",
                        std::io::Error::last_os_error()
                    ));
                }
                if previous.sa_sigaction != libc::SIG_DFL {
                    // Lost a race with another installer: give it back, try the next.
                    libc::sigaction(sig, &previous, std::ptr::null_mut());
                    continue;
                }
            }
            return Ok(sig);
        }
        Err(format!(
            "no free real-time signal between SIGRTMIN+4 ({lo}) and SIGRTMAX ({hi})"
        ))
    }

    /// Sleeps until `STATE` is no longer `seen`, at most `max` (spurious wakes are fine).
    fn futex_wait(seen: u32, max: Duration) {
        let ts = libc::timespec {
            tv_sec: max.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: max.subsec_nanos() as _,
        };
        // SAFETY: FUTEX_WAIT on a live static word with a valid relative timeout.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                STATE.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                &ts as *const libc::timespec,
            );
        }
    }

    /// Waits until `STATE` satisfies `done` or `deadline` passes; returns the last state seen.
    fn wait_for(
        deadline: Instant,
        done: impl Fn(u32) -> bool,
        mut check: impl FnMut() -> bool,
    ) -> u32 {
        loop {
            let state = STATE.load(Acquire);
            if done(state) {
                return state;
            }
            let now = Instant::now();
            if now >= deadline || !check() {
                return state;
            }
            futex_wait(state, (deadline - now).min(LIVENESS_SLICE));
        }
    }

    /// Captures `thread`'s stack; see [`super::capture`].
    pub(super) fn capture(thread: &OsThread, timeout: Duration) -> Result<RawStack, StackError> {
        let sig = install()?;
        let mut seq_guard = CAPTURE.lock().unwrap_or_else(PoisonError::into_inner);
        let start = Instant::now();
        let deadline = start + timeout;

        if disposition(sig).map_err(StackError::Signal)?.sa_sigaction != handler_address() {
            return Err(StackError::Signal(format!(
                "the handler of signal {sig} was replaced by another library"
            )));
        }

        // What the previous capture left: DONE (finished after its capturer gave
        // up) or WALKING (still walking, maybe stuck in the unwinder).
        let state = wait_for(deadline, |s| s & 3 != WALKING, || true);
        match state & 3 {
            WALKING => return Err(StackError::Busy),
            DONE | REQUESTED => STATE.store(state & !3, Release),
            _ => {}
        }

        let seq = seq_guard.wrapping_add(1) & (u32::MAX >> 2);
        *seq_guard = seq;
        REQ_TID.store(thread.tid, Relaxed);
        REQ_TOKEN.store(thread.token, Relaxed);
        STATE.store(pack(seq, REQUESTED), Release);

        let done = pack(seq, DONE);
        match tgkill(thread.pid, thread.tid, sig) {
            Ok(()) => {}
            Err(errno) => {
                return match cancel(seq) {
                    Some(raw) => raw,
                    None if errno == libc::ESRCH => Err(StackError::ThreadExited),
                    None => Err(StackError::Signal(format!(
                        "tgkill({}, {}, {sig}): {}",
                        thread.pid,
                        thread.tid,
                        std::io::Error::from_raw_os_error(errno)
                    ))),
                };
            }
        }

        let mut exited = false;
        wait_for(
            deadline,
            |s| s == done,
            || {
                // Only while the handler has not claimed the request: a thread
                // that exits now will never answer.
                exited = STATE.load(Acquire) == pack(seq, REQUESTED)
                    && tgkill(thread.pid, thread.tid, 0) == Err(libc::ESRCH);
                !exited
            },
        );
        match cancel(seq) {
            Some(raw) => raw,
            None if exited => Err(StackError::ThreadExited),
            None => Err(StackError::Timeout),
        }
    }

    /// Ends request `seq`: its stack if the handler finished it (waiting a
    /// little more if it is still walking), or `None` if it was withdrawn unanswered.
    fn cancel(seq: u32) -> Option<Result<RawStack, StackError>> {
        let done = pack(seq, DONE);
        let state =
            match STATE.compare_exchange(pack(seq, REQUESTED), pack(seq, IDLE), AcqRel, Acquire) {
                Ok(_) => return None,
                Err(state) => state,
            };
        let state = if state == pack(seq, WALKING) {
            // Claimed: the walk takes microseconds unless the unwinder is stuck.
            wait_for(
                Instant::now() + Duration::from_millis(100),
                |s| s == done,
                || true,
            )
        } else {
            state
        };
        if state != done {
            // Still walking: leave it WALKING; the next capture waits for it.
            return Some(Err(StackError::Timeout));
        }
        let raw = collect();
        STATE.store(pack(seq, IDLE), Release);
        Some(raw)
    }

    /// Copies the handler's walk (after it marked it DONE) into a [`RawStack`],
    /// cutting the frames above the interrupted program counter.
    fn collect() -> Result<RawStack, StackError> {
        let len = BUF_LEN.load(Relaxed).min(BUF_FRAMES);
        let pc = BUF_PC.load(Relaxed);
        let walk = &BUF[..len];
        let found = (pc != 0)
            .then(|| {
                walk.iter()
                    .take(MAX_MACHINERY)
                    .position(|ip| ip.load(Relaxed) == pc)
            })
            .flatten();
        let first = found.unwrap_or(0);
        let mut kept = &walk[first..];
        // The outermost frame (the thread's start) can end the walk with a null return address.
        while let Some((last, rest)) = kept.split_last() {
            if last.load(Relaxed) != 0 {
                break;
            }
            kept = rest;
        }
        if kept.is_empty() {
            return Err(StackError::NoFrames);
        }
        let mut raw = RawStack {
            ips: [0; MAX_FRAMES],
            len: kept.len().min(MAX_FRAMES),
            exact_top: found.is_some(),
            truncated: BUF_TRUNCATED.load(Relaxed) || kept.len() > MAX_FRAMES,
        };
        for (dst, src) in raw.ips.iter_mut().zip(kept) {
            *dst = src.load(Relaxed);
        }
        Ok(raw)
    }
}

/// Other platforms: handles exist, captures fail with [`StackError::Unsupported`].
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod imp {
    use std::sync::OnceLock;
    use std::time::Duration;

    use super::{RawStack, StackError};

    /// A thread, by its std id; nothing can be captured from it here.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(super) struct OsThread {
        /// The thread's std id.
        thread: std::thread::ThreadId,
    }

    impl OsThread {
        /// The calling thread.
        pub(super) fn current() -> OsThread {
            OsThread {
                thread: std::thread::current().id(),
            }
        }
    }

    /// `os-arch` of this build, for [`StackError::Unsupported`].
    fn platform() -> &'static str {
        static PLATFORM: OnceLock<&'static str> = OnceLock::new();
        PLATFORM.get_or_init(|| {
            Box::leak(
                format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH).into_boxed_str(),
            )
        })
    }

    /// Always [`StackError::Unsupported`].
    pub(super) fn install() -> Result<i32, StackError> {
        Err(StackError::Unsupported(platform()))
    }

    /// Always [`StackError::Unsupported`].
    pub(super) fn capture(_thread: &OsThread, _timeout: Duration) -> Result<RawStack, StackError> {
        Err(StackError::Unsupported(platform()))
    }
}
