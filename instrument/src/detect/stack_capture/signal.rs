//! Path B: the signal, for a thread that is running user code.
//!
//! The handler does *not* unwind. It runs on an alternate signal stack, and:
//!
//! 1. undoes the signal's effect on a system call it may have interrupted
//!    (the race where the thread entered a system call between the capturer's
//!    check and the delivery): on x86_64, `rax == -EINTR` right after a
//!    `syscall` instruction means the kernel turned the call into `EINTR`
//!    because of a handler; the handler finds the call's number
//!    ([`super::sysno`]) and restarts it (`rip -= 2`, `rax = nr`). It does
//!    this for *every* delivery, a late or foreign one too;
//! 2. if a capture request is pending for its thread (token match), checks
//!    that the thread may be captured (not panicking or marked as unwinding,
//!    not inside another signal handler, not inside the unwinder);
//! 3. publishes `pc`, `sp` and the frame pointer from the `ucontext`, and
//!    waits (futex, bounded by the pause limit) while the capturer walks the
//!    stack remotely. The interrupted frames cannot change meanwhile.
//!
//! It allocates nothing, takes no lock, and saves and restores `errno`. Its
//! system calls (`futex`, `clock_gettime`, `process_vm_readv`, `getpid`) are
//! async-signal-safe.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use super::walk::Regs;

// Phases of a request, low 3 bits of STATE; the request's sequence number above.
/// No request.
pub(crate) const IDLE: u32 = 0;
/// Published and signalled; no handler has claimed it.
pub(crate) const REQUESTED: u32 = 1;
/// The target's handler claimed it and is checking.
pub(crate) const CLAIMED: u32 = 2;
/// Registers published; the handler waits for the capturer.
pub(crate) const PAUSED: u32 = 3;
/// The capturer finished walking; the handler may return.
pub(crate) const RELEASED: u32 = 4;
/// The handler refused (reason in REFUSAL).
pub(crate) const REFUSED: u32 = 5;
/// The handler stopped waiting (pause limit) before the capturer released it.
pub(crate) const ABANDONED: u32 = 6;

/// `(seq << 3) | phase`; a futex word both sides sleep on.
pub(crate) static STATE: AtomicU32 = AtomicU32::new(0);
/// Token of the thread the pending request is for.
pub(crate) static REQ_TOKEN: AtomicU64 = AtomicU64::new(0);
/// Registers published by the handler.
pub(crate) static REG_PC: AtomicU64 = AtomicU64::new(0);
/// Stack pointer published by the handler.
pub(crate) static REG_SP: AtomicU64 = AtomicU64::new(0);
/// Frame pointer published by the handler.
pub(crate) static REG_FP: AtomicU64 = AtomicU64::new(0);
/// Link register (aarch64) published by the handler.
pub(crate) static REG_LR: AtomicU64 = AtomicU64::new(0);
/// What the claiming handler did to an interrupted system call ([`Fixup::encode`]).
pub(crate) static FIXUP: AtomicU64 = AtomicU64::new(0);
/// Why the claiming handler refused ([`Refusal`] as u32).
pub(crate) static REFUSAL: AtomicU32 = AtomicU32::new(0);
/// How long a handler waits for the capturer, in nanoseconds.
pub(crate) static PAUSE_LIMIT_NS: AtomicU64 = AtomicU64::new(20_000_000);
/// Why the last Timeout happened (diagnostics): 1 no answer to the signal,
/// 2 still inside our handler from the previous capture, 3 a handler stuck
/// between claim and answer before this capture, 4 claimed but no answer.
pub(crate) static LAST_TIMEOUT: AtomicU32 = AtomicU32::new(0);
/// Signals our handler blocks while it runs (first word of its sa_mask).
pub(crate) static HANDLER_BLOCKS: AtomicU64 = AtomicU64::new(0);
/// The installed signal number (0: none).
pub(crate) static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Unwinder code ranges (start, end), set once at install.
static UNWINDER: [(AtomicUsize, AtomicUsize); 8] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; 8];
/// Address right after the `syscall` instruction inside libc's `syscall(3)`.
#[cfg(target_arch = "x86_64")]
static SYSCALL_FN_AFTER: AtomicUsize = AtomicUsize::new(0);

/// Counters, for tests and diagnostics.
pub(crate) struct Counters {
    /// Handler runs.
    pub(crate) deliveries: AtomicU64,
    /// Interrupted system calls restarted by the handler.
    pub(crate) restarted: AtomicU64,
    /// Interrupted system calls that had to be left returning EINTR (number unknown or not restartable).
    pub(crate) unfixable: AtomicU64,
    /// Deliveries that found no request for their thread (late or foreign).
    pub(crate) unclaimed: AtomicU64,
}

/// The process's counters.
pub(crate) static COUNTERS: Counters = Counters {
    deliveries: AtomicU64::new(0),
    restarted: AtomicU64::new(0),
    unfixable: AtomicU64::new(0),
    unclaimed: AtomicU64::new(0),
};

thread_local! {
    /// This thread's token (0: none yet). `const`, no destructor: a plain TLS load in the handler.
    pub(crate) static TOKEN: Cell<u64> = const { Cell::new(0) };
    /// The thread's usual blocked-signal mask (first 64 signals), recorded by ThreadHandle::current.
    pub(crate) static NORMAL_MASK: Cell<u64> = const { Cell::new(0) };
    /// > 0 while the thread is inside an `UnwindGuard` (a backtrace being taken or printed).
    pub(crate) static UNWINDING: Cell<u32> = const { Cell::new(0) };
}

/// Why a handler did not let its thread be captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Refusal {
    /// Inside an UnwindGuard.
    Unwinding = 1,
    /// `std::thread::panicking()`.
    Panicking = 2,
    /// The interrupted mask blocks signals the thread normally does not.
    InSignalHandler = 3,
    /// The interrupted stack pointer was on the alternate signal stack.
    OnAltStack = 4,
    /// The interrupted pc is in unwinder code.
    InUnwinder = 5,
}

impl Refusal {
    /// From its number.
    pub(crate) fn from_u32(n: u32) -> Option<Refusal> {
        Some(match n {
            1 => Refusal::Unwinding,
            2 => Refusal::Panicking,
            3 => Refusal::InSignalHandler,
            4 => Refusal::OnAltStack,
            5 => Refusal::InUnwinder,
            _ => return None,
        })
    }
}

/// What the handler did about a system call the signal interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fixup {
    /// The signal interrupted no system call (or one the kernel restarts itself).
    None,
    /// The call (this number) returned EINTR because of the signal and was restarted: invisible.
    Restarted(u32),
    /// The call returned EINTR and could not be restarted (number unknown: `None`,
    /// or not on the restartable list): the application sees EINTR.
    Unfixable(Option<u32>),
}

impl Fixup {
    /// Packs into a u64 for an atomic.
    pub(crate) fn encode(self) -> u64 {
        match self {
            Fixup::None => 0,
            Fixup::Restarted(nr) => 1 << 32 | u64::from(nr),
            Fixup::Unfixable(None) => 2 << 32,
            Fixup::Unfixable(Some(nr)) => 3 << 32 | u64::from(nr),
        }
    }
    /// Unpacks [`Fixup::encode`].
    pub(crate) fn decode(v: u64) -> Fixup {
        let nr = v as u32;
        match v >> 32 {
            1 => Fixup::Restarted(nr),
            2 => Fixup::Unfixable(None),
            3 => Fixup::Unfixable(Some(nr)),
            _ => Fixup::None,
        }
    }
}

/// The state word of request `seq` in `phase`.
pub(crate) fn pack(seq: u32, phase: u32) -> u32 {
    (seq << 3) | phase
}

/// The phase of a state word.
pub(crate) fn phase(state: u32) -> u32 {
    state & 7
}

/// Wakes every waiter on STATE.
pub(crate) fn wake() {
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

/// Sleeps while STATE is `seen`, at most `ns` nanoseconds (spurious wakes are fine).
pub(crate) fn wait(seen: u32, ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as _,
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

/// Waits until `done(STATE)` or `deadline`; returns the last state seen.
pub(crate) fn wait_until(
    deadline: Instant,
    done: impl Fn(u32) -> bool,
    mut alive: impl FnMut() -> bool,
) -> u32 {
    loop {
        let s = STATE.load(Acquire);
        if done(s) {
            return s;
        }
        let now = Instant::now();
        if now >= deadline || !alive() {
            return s;
        }
        let left = (deadline - now).min(Duration::from_millis(10));
        wait(s, left.as_nanos() as u64);
    }
}

/// Monotonic clock in nanoseconds (async-signal-safe).
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes `ts`; async-signal-safe per POSIX.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Our handler's address as sigaction stores it.
pub(crate) fn handler_address() -> libc::sighandler_t {
    handler as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as libc::sighandler_t
}

/// The signal handler.
extern "C" fn handler(_sig: c_int, _info: *mut libc::siginfo_t, ucontext: *mut c_void) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    COUNTERS.deliveries.fetch_add(1, Relaxed);
    let uc = ucontext.cast::<libc::ucontext_t>();
    if !uc.is_null() {
        // SAFETY: with SA_SIGINFO the third argument is the kernel's ucontext,
        // writable: what we change in it is what the thread resumes with.
        let fixup = unsafe { fix_interrupted_syscall(uc) };
        // SAFETY: as above.
        unsafe { serve(uc, fixup) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Claims a pending request for this thread, checks, publishes, pauses.
///
/// # Safety
/// `uc` is the handler's ucontext.
unsafe fn serve(uc: *mut libc::ucontext_t, fixup: Fixup) {
    let state = STATE.load(Acquire);
    let token = TOKEN.try_with(Cell::get).unwrap_or(0);
    if phase(state) != REQUESTED || token == 0 || REQ_TOKEN.load(Relaxed) != token {
        COUNTERS.unclaimed.fetch_add(1, Relaxed);
        return;
    }
    let seq = state >> 3;
    if STATE
        .compare_exchange(state, pack(seq, CLAIMED), Acquire, Relaxed)
        .is_err()
    {
        COUNTERS.unclaimed.fetch_add(1, Relaxed);
        return;
    }
    FIXUP.store(fixup.encode(), Relaxed);
    // SAFETY: caller's contract.
    let regs = unsafe { interrupted_regs(uc) };
    // SAFETY: caller's contract.
    let refusal = unsafe { refusal(uc, regs.pc) };
    if let Some(r) = refusal {
        REFUSAL.store(r as u32, Relaxed);
        STATE.store(pack(seq, REFUSED), Release);
        wake();
        return;
    }
    REG_PC.store(regs.pc, Relaxed);
    REG_SP.store(regs.sp, Relaxed);
    REG_FP.store(regs.fp.unwrap_or(0), Relaxed);
    REG_LR.store(regs.lr.unwrap_or(0), Relaxed);
    let paused = pack(seq, PAUSED);
    STATE.store(paused, Release);
    wake();
    let deadline = now_ns() + PAUSE_LIMIT_NS.load(Relaxed);
    loop {
        if STATE.load(Acquire) != paused {
            return; // released (or a newer capture took over)
        }
        let now = now_ns();
        if now >= deadline {
            if STATE
                .compare_exchange(paused, pack(seq, ABANDONED), AcqRel, Acquire)
                .is_ok()
            {
                wake();
                return;
            }
            continue;
        }
        wait(paused, deadline - now);
    }
}

/// Why this thread must not be captured now, if it must not.
///
/// # Safety
/// `uc` is the handler's ucontext.
unsafe fn refusal(uc: *mut libc::ucontext_t, pc: u64) -> Option<Refusal> {
    if UNWINDING.try_with(Cell::get).unwrap_or(0) > 0 {
        return Some(Refusal::Unwinding);
    }
    // std's panic count: an atomic, then a const thread-local without destructor.
    if std::thread::panicking() {
        return Some(Refusal::Panicking);
    }
    // SAFETY: the kernel filled uc_stack: ss_flags says whether the interrupted sp was on the alt stack.
    if unsafe { (*uc).uc_stack.ss_flags } & libc::SS_ONSTACK != 0 {
        return Some(Refusal::OnAltStack);
    }
    // SAFETY: uc_sigmask starts with the kernel's 64-bit mask of the interrupted context.
    let mask = unsafe { (&raw const (*uc).uc_sigmask).cast::<u64>().read_unaligned() };
    let normal = NORMAL_MASK.try_with(Cell::get).unwrap_or(0);
    if mask & !normal != 0 {
        return Some(Refusal::InSignalHandler);
    }
    let pc = pc as usize;
    for (lo, hi) in &UNWINDER {
        let (lo, hi) = (lo.load(Relaxed), hi.load(Relaxed));
        if lo <= pc && pc < hi {
            return Some(Refusal::InUnwinder);
        }
    }
    None
}

/// `pc`, `sp` and the frame pointer of the interrupted context.
///
/// # Safety
/// `uc` is the handler's ucontext.
#[cfg(target_arch = "x86_64")]
unsafe fn interrupted_regs(uc: *mut libc::ucontext_t) -> Regs {
    // SAFETY: caller's contract; gregs is the saved register file.
    let g = unsafe { &(*uc).uc_mcontext.gregs };
    Regs {
        pc: g[libc::REG_RIP as usize] as u64,
        sp: g[libc::REG_RSP as usize] as u64,
        fp: Some(g[libc::REG_RBP as usize] as u64),
        lr: None,
    }
}

/// `pc`, `sp`, `x29` and `x30` of the interrupted context.
///
/// # Safety
/// `uc` is the handler's ucontext.
#[cfg(target_arch = "aarch64")]
unsafe fn interrupted_regs(uc: *mut libc::ucontext_t) -> Regs {
    // SAFETY: caller's contract.
    let m = unsafe { &(*uc).uc_mcontext };
    Regs {
        pc: m.pc,
        sp: m.sp,
        fp: Some(m.regs[29]),
        lr: Some(m.regs[30]),
    }
}

/// Undoes EINTR on a system call the signal interrupted (x86_64).
///
/// # Safety
/// `uc` is the handler's ucontext.
#[cfg(target_arch = "x86_64")]
unsafe fn fix_interrupted_syscall(uc: *mut libc::ucontext_t) -> Fixup {
    // SAFETY: caller's contract; we write back registers the thread resumes with.
    let g = unsafe { &mut (*uc).uc_mcontext.gregs };
    let rax = g[libc::REG_RAX as usize];
    let rip = g[libc::REG_RIP as usize] as usize;
    if rax != -(libc::EINTR as i64) || rip < 2 {
        return Fixup::None;
    }
    let mut insn = [0u8; 2];
    if !super::mem::read_in_handler(rip - 2, &mut insn) || insn != [0x0f, 0x05] {
        return Fixup::None;
    }
    let mut nr = syscall_number_before(rip - 2, super::sysno::EAX);
    if nr.is_none() && rip == SYSCALL_FN_AFTER.load(Relaxed) {
        // libc's syscall(3): the number was the caller's first argument.
        let mut ret = [0u8; 8];
        let rsp = g[libc::REG_RSP as usize] as usize;
        if super::mem::read_in_handler(rsp, &mut ret) {
            let ret = usize::from_ne_bytes(ret);
            nr = call_site_start(ret)
                .and_then(|call| syscall_number_before(call, super::sysno::EDI));
        }
    }
    match nr {
        Some(nr) if super::sysno::restartable(nr) => {
            g[libc::REG_RAX as usize] = i64::from(nr);
            g[libc::REG_RIP as usize] = (rip - 2) as i64;
            COUNTERS.restarted.fetch_add(1, Relaxed);
            Fixup::Restarted(nr)
        }
        other => {
            COUNTERS.unfixable.fetch_add(1, Relaxed);
            Fixup::Unfixable(other)
        }
    }
}

/// On aarch64 the kernel keeps the number in `x8` but overwrites `x0`, the
/// first argument, with `-EINTR`; `orig_x0` is not in the ucontext. A restart
/// would need `x0` back, which the code before `svc` does not generally keep,
/// so the interruption is only detected and counted.
///
/// # Safety
/// `uc` is the handler's ucontext.
#[cfg(target_arch = "aarch64")]
unsafe fn fix_interrupted_syscall(uc: *mut libc::ucontext_t) -> Fixup {
    // SAFETY: caller's contract.
    let m = unsafe { &(*uc).uc_mcontext };
    if m.regs[0] as i64 != -(libc::EINTR as i64) || m.pc < 4 {
        return Fixup::None;
    }
    let mut insn = [0u8; 4];
    if !super::mem::read_in_handler(m.pc as usize - 4, &mut insn)
        || u32::from_le_bytes(insn) != 0xd400_0001
    {
        return Fixup::None;
    }
    COUNTERS.unfixable.fetch_add(1, Relaxed);
    Fixup::Unfixable(Some(m.regs[8] as u32))
}

/// The constant in register `reg` at the instruction at `end`, from up to 64 bytes of code before it.
#[cfg(target_arch = "x86_64")]
fn syscall_number_before(end: usize, reg: u8) -> Option<u32> {
    const WINDOW: usize = 64;
    let mut buf = [0u8; WINDOW];
    let start = end.checked_sub(WINDOW)?;
    // The page holding `end` is mapped (code runs there); the one before may not be.
    let page = end & !4095;
    let first = if start < page && !super::mem::read_in_handler(start, &mut buf[..page - start]) {
        page - start
    } else {
        0
    };
    if first < WINDOW && !super::mem::read_in_handler(start + first, &mut buf[first..]) {
        return None;
    }
    super::sysno::constant_in_register(&buf[first..], reg)
}

/// Where the call instruction that returns to `ret` starts (`call rel32` or `call *disp32(%rip)`).
#[cfg(target_arch = "x86_64")]
fn call_site_start(ret: usize) -> Option<usize> {
    let mut b = [0u8; 6];
    if !super::mem::read_in_handler(ret.checked_sub(6)?, &mut b) {
        return None;
    }
    if b[1] == 0xe8 {
        Some(ret - 5)
    } else if b[0] == 0xff && b[1] == 0x15 {
        Some(ret - 6)
    } else {
        None
    }
}

/// Sets up the handler's helpers: unwinder ranges, the address in `syscall(3)`.
pub(crate) fn set_helpers(unwinder: &[(usize, usize)]) {
    for (slot, &(lo, hi)) in UNWINDER.iter().zip(unwinder) {
        slot.0.store(lo, Relaxed);
        slot.1.store(hi, Relaxed);
    }
    #[cfg(target_arch = "x86_64")]
    if let Some((addr, size)) = super::modules::symbol(c"syscall") {
        let mut code = [0u8; 64];
        let len = size.clamp(2, 64);
        if super::mem::read_in_handler(addr, &mut code[..len])
            && let Some(i) = code[..len].windows(2).position(|w| w == [0x0f, 0x05])
        {
            SYSCALL_FN_AFTER.store(addr + i + 2, Relaxed);
        }
    }
}

/// The current disposition of `sig`.
pub(crate) fn disposition(sig: c_int) -> Result<libc::sigaction, String> {
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

/// Signals that some thread of the process blocks or has pending, from every
/// `/proc/self/task/*/status` (a bit per signal). A mask that blocks every
/// candidate signal says nothing about the application's choice and is
/// skipped: glibc's pthread_create blocks all signals in the creating thread
/// (and the new one) for a moment, and so do handlers installed with a full
/// sa_mask while they run.
fn blocked_or_pending_anywhere(candidates: u64) -> u64 {
    let mut bits = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for entry in dir.flatten() {
        if let Ok(text) = std::fs::read(entry.path().join("status"))
            && let Some(s) = super::procfs::parse_status(&text)
        {
            if s.sig_blk & candidates != candidates {
                bits |= s.sig_blk;
            }
            bits |= s.sig_pnd | s.shd_pnd;
        }
    }
    bits
}

/// Picks a real-time signal that has no handler and that no thread blocks or
/// has pending, and installs the handler for it.
pub(crate) fn install_handler() -> Result<c_int, String> {
    let (lo, hi) = (libc::SIGRTMIN() + 4, libc::SIGRTMAX());
    let candidates = (lo..=hi).fold(0u64, |m, s| m | super::procfs::sig_bit(s));
    let busy = blocked_or_pending_anywhere(candidates);
    for sig in lo..=hi {
        if busy & super::procfs::sig_bit(sig) != 0 {
            continue; // blocked somewhere: maybe read through signalfd/sigwait
        }
        let old = disposition(sig)?;
        if old.sa_sigaction != libc::SIG_DFL {
            continue; // somebody's handler (or SIG_IGN)
        }
        // SAFETY: a fully initialized sigaction; the handler has the SA_SIGINFO signature.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler_address();
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
            // Block asynchronous signals while the handler runs; never the synchronous ones.
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
                libc::sigaction(sig, &previous, std::ptr::null_mut());
                continue; // lost a race with another installer
            }
        }
        // SAFETY: a zeroed sigaction is a valid out-parameter; query only.
        let blocks = unsafe {
            let mut now: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut now);
            (&raw const now.sa_mask).cast::<u64>().read_unaligned()
        };
        HANDLER_BLOCKS.store(blocks, Relaxed);
        SIGNAL.store(sig, Relaxed);
        return Ok(sig);
    }
    Err(format!(
        "no real-time signal between SIGRTMIN+4 ({lo}) and SIGRTMAX ({hi}) is free \
         (all have handlers or are blocked by some thread)"
    ))
}
