//! The Linux implementation: handles, the capturer's state, the two paths.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::altstack::{self, AltStack};
use super::mem::MemReader;
use super::procfs::{self, SyscallState};
use super::raw_stack::{MAX_FRAMES, Method, Options, RawStack, StackError, SyscallFixup};
use super::signal::{
    self, ABANDONED, CLAIMED, IDLE, PAUSED, REFUSED, RELEASED, REQUESTED, Refusal, pack, phase,
};
use super::walk::{Regs, WalkEnd, Walker};

/// Source of per-thread tokens.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// A thread, as [`super::ThreadHandle`] holds it.
#[derive(Debug)]
pub(crate) struct Inner {
    /// Process id when the handle was made (a forked child cannot use it).
    pub(crate) pid: libc::pid_t,
    /// Kernel thread id.
    pub(crate) tid: libc::pid_t,
    /// The thread's token (never 0): the handler serves only requests carrying it.
    pub(crate) token: u64,
    /// `/proc/self/task/TID` opened on the thread itself, or why it could not be.
    dir: Result<OwnedFd, String>,
    /// What was done about its alternate signal stack.
    #[cfg_attr(not(test), allow(dead_code, reason = "for the tests"))]
    pub(crate) altstack: AltStack,
    /// Its usual blocked-signal mask (first 64 signals).
    pub(crate) normal_mask: u64,
}

/// `gettid()`.
fn gettid() -> libc::pid_t {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

/// `getpid()`.
fn getpid() -> libc::pid_t {
    // SAFETY: no preconditions.
    unsafe { libc::getpid() }
}

impl Inner {
    /// The calling thread; see [`super::ThreadHandle::current`].
    pub(crate) fn current(force_own_altstack: bool) -> Inner {
        let tid = gettid();
        let token = signal::TOKEN.with(|t| {
            if t.get() == 0 {
                t.set(NEXT_TOKEN.fetch_add(1, Relaxed));
            }
            t.get()
        });
        // SAFETY: a zeroed sigset_t is a valid out-parameter; query only.
        let mask = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
            (&raw const set).cast::<u64>().read_unaligned()
        };
        signal::NORMAL_MASK.with(|m| m.set(mask));
        let altstack = altstack::ensure(force_own_altstack);
        let path = format!("/proc/self/task/{tid}\0");
        // SAFETY: open with a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                path.as_ptr().cast(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        let dir = if fd < 0 {
            Err(format!(
                "{}: {}",
                path.trim_end_matches('\0'),
                std::io::Error::last_os_error()
            ))
        } else {
            // SAFETY: `fd` was just opened and is owned by nobody else.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        Inner {
            pid: getpid(),
            tid,
            token,
            dir,
            altstack,
            normal_mask: mask,
        }
    }
}

/// The capturer's state: unwind tables, memory reader, output buffer.
struct Capturer {
    walker: Walker,
    mem: MemReader,
    /// Preallocated walk output (capacity MAX_FRAMES + 1: one more to see truncation).
    out: Vec<usize>,
    seq: u32,
}

/// The capturer, once warmed up; captures are serialized by this lock.
static CAPTURER: Mutex<Option<Capturer>> = Mutex::new(None);
/// The signal, or why there is none; the capturer's own setup error.
static INSTALLED: OnceLock<(Result<i32, StackError>, Result<(), StackError>)> = OnceLock::new();

/// Installs and warms up once; see [`super::install`].
pub(crate) fn install() -> Result<i32, StackError> {
    let (sig, setup) = INSTALLED.get_or_init(|| {
        let sig = signal::install_handler().map_err(StackError::Signal);
        signal::set_helpers(&super::modules::unwinder_ranges());
        let setup = MemReader::new()
            .map_err(|e| StackError::ProcUnavailable(e.to_string()))
            .map(|mem| {
                let mut cap = Capturer {
                    walker: Walker::new(super::modules::snapshot()),
                    mem,
                    out: Vec::with_capacity(MAX_FRAMES + 1),
                    seq: 0,
                };
                // Warm-up: one walk (touches the tables, the cache, the reader).
                let _ = capture_current(&mut cap);
                *CAPTURER.lock().unwrap_or_else(PoisonError::into_inner) = Some(cap);
            });
        (sig, setup)
    });
    setup.clone()?;
    sig.clone()
}

/// Maps an I/O error of a `/proc` read of the target.
fn proc_error(e: std::io::Error) -> StackError {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => StackError::ThreadExited,
        _ => StackError::ProcUnavailable(e.to_string()),
    }
}

/// Captures `h`; see [`super::capture_with`].
pub(crate) fn capture(h: &Inner, o: &Options) -> Result<RawStack, StackError> {
    let sig = install();
    if let Err(e @ StackError::ProcUnavailable(_)) = &sig {
        return Err(e.clone());
    }
    let mut guard = CAPTURER.lock().unwrap_or_else(PoisonError::into_inner);
    let cap = guard
        .as_mut()
        .ok_or(StackError::ProcUnavailable("capturer not set up".into()))?;
    if h.pid != getpid() {
        return Err(StackError::ThreadExited); // a handle from before a fork
    }
    if h.tid == gettid() {
        return capture_current(cap);
    }
    let dir = h
        .dir
        .as_ref()
        .map_err(|e| StackError::ProcUnavailable(e.clone()))?
        .as_fd();
    // New or unloaded libraries since the last capture: take their tables now,
    // never while a target is paused.
    if super::modules::generation() != cap.walker.generation {
        cap.walker = Walker::new(super::modules::snapshot());
    }
    for _ in 0..o.attempts.max(1) {
        let before = procfs::status(dir).map_err(proc_error)?;
        let state = procfs::syscall(dir).map_err(proc_error)?;
        let (regs, exact_top, syscall) = match state {
            _ if o.force_signal => match by_signal(cap, h, dir, &before, o, &sig)? {
                Some(stack) => return Ok(stack),
                None => continue,
            },
            SyscallState::Running => match by_signal(cap, h, dir, &before, o, &sig)? {
                Some(stack) => return Ok(stack),
                None => continue, // it blocked meanwhile: path A
            },
            SyscallState::InSyscall { nr, sp, pc, .. } => (
                Regs {
                    pc,
                    sp,
                    fp: None,
                    lr: None,
                },
                false,
                Some(nr),
            ),
            SyscallState::Blocked { sp, pc } => (
                Regs {
                    pc,
                    sp,
                    fp: None,
                    lr: None,
                },
                true,
                None,
            ),
        };
        cap.mem.reset();
        let (end, recovered) = cap.walker.walk(regs, &mut cap.mem, &mut cap.out);
        let state_after = procfs::syscall(dir).map_err(proc_error)?;
        let after = procfs::status(dir).map_err(proc_error)?;
        if state_after != state || after.switches != before.switches {
            continue; // it ran meanwhile: the walk may mix two stacks
        }
        return finish(cap, end, recovered, exact_top, Method::Blocked { syscall });
    }
    Err(StackError::Moving)
}

/// Builds the result from the walk in `cap.out`.
fn finish(
    cap: &Capturer,
    end: WalkEnd,
    fp_recovered: bool,
    exact_top: bool,
    method: Method,
) -> Result<RawStack, StackError> {
    let mut ips: &[usize] = &cap.out[..cap.out.len().min(MAX_FRAMES)];
    // The outermost frame can end with a null return address.
    while let [rest @ .., 0] = ips {
        ips = rest;
    }
    if ips.is_empty() {
        return Err(StackError::NoFrames);
    }
    let mut raw = RawStack::new(ips, exact_top, method);
    raw.truncated = end == WalkEnd::Limit || cap.out.len() > MAX_FRAMES;
    raw.complete = end == WalkEnd::Root;
    raw.fp_recovered = fp_recovered;
    Ok(raw)
}

/// The calling thread's own stack, walked from its current registers.
#[inline(never)]
fn capture_current(cap: &mut Capturer) -> Result<RawStack, StackError> {
    let regs = current_regs();
    cap.mem.reset();
    let (end, recovered) = cap.walker.walk(regs, &mut cap.mem, &mut cap.out);
    finish(cap, end, recovered, true, Method::Current)
}

/// This function's registers (its frame stays put while the walk, called from
/// it, reads the frames above it).
#[inline(always)]
fn current_regs() -> Regs {
    let (pc, sp, fp): (u64, u64, u64);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads rip, rsp and rbp into registers; no memory, no stack change.
    unsafe {
        std::arch::asm!("lea {pc}, [rip]", "mov {sp}, rsp", "mov {fp}, rbp",
            pc = out(reg) pc, sp = out(reg) sp, fp = out(reg) fp,
            options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    let lr: u64;
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads pc, sp, x29 and x30; no memory, no stack change.
    unsafe {
        std::arch::asm!("adr {pc}, .", "mov {sp}, sp", "mov {fp}, x29", "mov {lr}, x30",
            pc = out(reg) pc, sp = out(reg) sp, fp = out(reg) fp, lr = out(reg) lr,
            options(nomem, nostack, preserves_flags));
    }
    Regs {
        pc,
        sp,
        fp: Some(fp),
        #[cfg(target_arch = "x86_64")]
        lr: None,
        #[cfg(target_arch = "aarch64")]
        lr: Some(lr),
    }
}

/// `tgkill(pid, tid, sig)`: Ok or the errno.
fn tgkill(pid: libc::pid_t, tid: libc::pid_t, sig: i32) -> Result<(), i32> {
    // SAFETY: plain system call on integers.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    }
}

/// Resolves what an earlier request left in STATE, so a new one can start.
fn settle_previous(timeout: Duration) -> Result<(), StackError> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = signal::STATE.load(Acquire);
        match phase(s) {
            REQUESTED => {
                let _ = signal::STATE.compare_exchange(s, pack(s >> 3, IDLE), AcqRel, Acquire);
            }
            PAUSED => {
                // A handler still waiting for a capturer that gave up: let it go.
                if signal::STATE
                    .compare_exchange(s, pack(s >> 3, RELEASED), AcqRel, Acquire)
                    .is_ok()
                {
                    signal::wake();
                }
            }
            CLAIMED => {
                if Instant::now() >= deadline {
                    signal::LAST_TIMEOUT.store(3, Relaxed);
                    return Err(StackError::Timeout);
                }
                signal::wait(s, 1_000_000);
            }
            _ => return Ok(()),
        }
    }
}

/// Path B. `Ok(None)`: the thread was no longer running at the last check (use path A).
fn by_signal(
    cap: &mut Capturer,
    h: &Inner,
    dir: BorrowedFd<'_>,
    status: &procfs::Status,
    o: &Options,
    sig: &Result<i32, StackError>,
) -> Result<Option<RawStack>, StackError> {
    let sig = sig.clone()?;
    let installed = signal::disposition(sig).map_err(StackError::Signal)?;
    if installed.sa_sigaction != signal::handler_address() {
        return Err(StackError::Signal(format!(
            "the handler of signal {sig} was replaced by the application or another library; it is not taken back"
        )));
    }
    let bit = procfs::sig_bit(sig);
    if h.normal_mask & bit != 0 {
        // The thread blocked the signal before its first poll (an app that
        // blocks every signal and reads them through signalfd): its choice.
        return Err(StackError::SignalBlocked { signal: sig });
    }
    let mut status = *status;
    // A thread still leaving our handler (released microseconds ago by the
    // previous capture, maybe preempted before its sigreturn) shows exactly
    // our handler's mask: wait for it, up to the timeout. Any other mask that
    // blocks the signal is looked at again briefly (a short handler of the
    // app's), then reported as blocked.
    let in_our_handler = h.normal_mask | signal::HANDLER_BLOCKS.load(Relaxed) | bit;
    let started = Instant::now();
    let mut wait = Duration::from_micros(50);
    while status.sig_blk & bit != 0 {
        if status.sig_blk == in_our_handler {
            if started.elapsed() > o.timeout {
                signal::LAST_TIMEOUT.store(2, Relaxed);
                return Err(StackError::Timeout);
            }
            std::thread::sleep(Duration::from_micros(100));
        } else {
            if wait > Duration::from_micros(800) {
                return Err(StackError::SignalBlocked { signal: sig });
            }
            std::thread::sleep(wait);
            wait *= 2;
        }
        status = procfs::status(dir).map_err(proc_error)?;
    }
    if (status.sig_pnd | status.shd_pnd) & bit != 0 {
        return Err(StackError::SignalPending { signal: sig });
    }
    settle_previous(o.timeout)?;
    // Last look, right before sending: shrinks the window in which the thread
    // can enter a system call that the signal would interrupt.
    if !o.force_signal && procfs::syscall(dir).map_err(proc_error)? != SyscallState::Running {
        return Ok(None);
    }
    cap.seq = cap.seq.wrapping_add(1) & (u32::MAX >> 3);
    let seq = cap.seq;
    signal::PAUSE_LIMIT_NS.store(o.pause_limit.as_nanos() as u64, Relaxed);
    signal::REQ_TOKEN.store(h.token, Relaxed);
    signal::STATE.store(pack(seq, REQUESTED), Release);
    if let Err(errno) = tgkill(h.pid, h.tid, sig) {
        let _ =
            signal::STATE.compare_exchange(pack(seq, REQUESTED), pack(seq, IDLE), AcqRel, Acquire);
        return Err(if errno == libc::ESRCH {
            StackError::ThreadExited
        } else {
            StackError::Signal(format!(
                "tgkill: {}",
                std::io::Error::from_raw_os_error(errno)
            ))
        });
    }
    let answered = |s: u32| s >> 3 == seq && matches!(phase(s), PAUSED | REFUSED);
    let mut exited = false;
    let mut s = signal::wait_until(Instant::now() + o.timeout, answered, || {
        exited = phase(signal::STATE.load(Acquire)) == REQUESTED
            && tgkill(h.pid, h.tid, 0) == Err(libc::ESRCH);
        !exited
    });
    if !answered(s) {
        match signal::STATE.compare_exchange(pack(seq, REQUESTED), pack(seq, IDLE), AcqRel, Acquire)
        {
            Ok(_) => {
                signal::LAST_TIMEOUT.store(1, Relaxed);
                return Err(if exited {
                    StackError::ThreadExited
                } else {
                    StackError::Timeout
                });
            }
            Err(_) => {
                // Claimed just now: the handler answers within microseconds.
                s = signal::wait_until(
                    Instant::now() + Duration::from_millis(100),
                    answered,
                    || true,
                );
                if !answered(s) {
                    signal::LAST_TIMEOUT.store(4, Relaxed);
                    return Err(StackError::Timeout);
                }
            }
        }
    }
    let fixup = match signal::Fixup::decode(signal::FIXUP.load(Relaxed)) {
        signal::Fixup::None => SyscallFixup::None,
        signal::Fixup::Restarted(nr) => SyscallFixup::Restarted(nr),
        signal::Fixup::Unfixable(nr) => SyscallFixup::Unfixable(nr),
    };
    if phase(s) == REFUSED {
        let reason = Refusal::from_u32(signal::REFUSAL.load(Relaxed));
        signal::STATE.store(pack(seq, IDLE), Release);
        return Err(match reason {
            Some(Refusal::Unwinding) => StackError::Unwinding { panicking: false },
            Some(Refusal::Panicking) => StackError::Unwinding { panicking: true },
            Some(Refusal::InSignalHandler | Refusal::OnAltStack) => StackError::InSignalHandler,
            Some(Refusal::InUnwinder) => StackError::InUnwinder,
            None => StackError::Timeout,
        });
    }
    let regs = Regs {
        pc: signal::REG_PC.load(Relaxed),
        sp: signal::REG_SP.load(Relaxed),
        fp: (!o.ignore_frame_pointer).then(|| signal::REG_FP.load(Relaxed)),
        lr: Some(signal::REG_LR.load(Relaxed)),
    };
    cap.mem.reset();
    let (end, recovered) = cap.walker.walk(regs, &mut cap.mem, &mut cap.out);
    let released = signal::STATE
        .compare_exchange(pack(seq, PAUSED), pack(seq, RELEASED), AcqRel, Acquire)
        .is_ok();
    signal::wake();
    if !released {
        debug_assert_eq!(phase(signal::STATE.load(Acquire)), ABANDONED);
        return Err(StackError::Resumed);
    }
    finish(cap, end, recovered, true, Method::Signal { fixup }).map(Some)
}

/// See [`super::unwind_tables`].
pub(crate) fn unwind_tables() -> Option<(usize, usize)> {
    let guard = CAPTURER.lock().unwrap_or_else(PoisonError::into_inner);
    guard
        .as_ref()
        .map(|c| (c.walker.modules, c.walker.table_bytes))
}
