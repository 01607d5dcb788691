//! The alternate signal stack the capture handler runs on (`SA_ONSTACK`).
//!
//! Why one at all: without it the kernel pushes the signal frame (ucontext +
//! the xsave area, `AT_MINSIGSTKSZ` = 3,376 bytes on this AVX-512 machine, 11+
//! KiB with AMX) onto the interrupted stack; a thread deep in recursion near
//! its guard page would then die of SIGSEGV because we looked at it. On the
//! alternate stack the interrupted stack is not touched at all, which also
//! keeps the frames the capturer is reading unchanged.
//!
//! Whose: Rust's std gives every thread it spawns (and the main thread) a
//! small alternate stack for its stack-overflow message: `max(SIGSTKSZ,
//! AT_MINSIGSTKSZ)` = 8 KiB here, plus a guard page. Our handler does not
//! unwind, so it needs little beyond the kernel's frame (measured: see
//! [`HANDLER_NEED`] and the test `handler_stack_use_is_small`). Policy:
//!
//! * an alternate stack already installed with at least `AT_MINSIGSTKSZ +
//!   HANDLER_NEED` bytes is *reused* (std's on this machine, most apps'): no
//!   memory, nothing to undo, and std's overflow handler keeps working since
//!   the kernel nests frames on one alternate stack;
//! * otherwise (no alternate stack: threads made by C code or by a runtime
//!   that installs its own SIGSEGV handler; or one too small: std's on AMX
//!   machines, where it is exactly `AT_MINSIGSTKSZ`) we *replace* it with our
//!   own 64 KiB + guard page. The thread-local that owns it disables it (if it
//!   is still the current one) and unmaps it when the thread exits. std's own
//!   stack is not freed by us; std frees it when its thread ends.

use std::cell::RefCell;

/// Bytes our handler itself needs beyond the kernel's signal frame, rounded
/// up generously from the measured use (see the note).
pub(crate) const HANDLER_NEED: usize = 4096;
/// Size of an alternate stack we allocate.
pub(crate) const OWN_SIZE: usize = 64 * 1024;

/// What [`ensure`] found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AltStack {
    /// An existing alternate stack of this size was big enough and is used.
    Reused {
        /// Its base.
        base: usize,
        /// Its size.
        size: usize,
    },
    /// Ours was installed (there was none, or the previous one had `previous` bytes).
    Own {
        /// Its base.
        base: usize,
        /// Its size.
        size: usize,
        /// Size of the alternate stack it replaced (0 when there was none).
        previous: usize,
    },
    /// None could be installed: the handler runs on the thread's stack.
    Unavailable,
}

/// Our alternate stack on this thread, freed when the thread exits.
struct Owned {
    /// The mapping, guard page included.
    map: *mut libc::c_void,
    /// Length of the mapping.
    len: usize,
    /// Where the usable stack starts (after the guard page).
    base: usize,
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: queries and, if still ours, disables this thread's alternate
        // stack before unmapping the memory we mapped.
        unsafe {
            let mut cur: libc::stack_t = std::mem::zeroed();
            if libc::sigaltstack(std::ptr::null(), &mut cur) == 0
                && cur.ss_flags & libc::SS_DISABLE == 0
                && cur.ss_sp as usize == self.base
            {
                let off = libc::stack_t {
                    ss_sp: std::ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&off, std::ptr::null_mut());
            }
            libc::munmap(self.map, self.len);
        }
    }
}

thread_local! {
    static OWNED: RefCell<Option<Owned>> = const { RefCell::new(None) };
}

/// The kernel's minimum signal stack size for this CPU (`AT_MINSIGSTKSZ`), or `MINSIGSTKSZ`.
pub(crate) fn kernel_min() -> usize {
    // SAFETY: getauxval has no preconditions.
    let v = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    if v == 0 { libc::MINSIGSTKSZ } else { v }
}

/// The size a usable alternate stack must have.
pub(crate) fn needed() -> usize {
    kernel_min() + HANDLER_NEED
}

/// Makes sure the calling thread has a big enough alternate signal stack.
/// `force_own` replaces even a big enough one (tests).
pub(crate) fn ensure(force_own: bool) -> AltStack {
    if let Some(base) = OWNED.with(|o| o.borrow().as_ref().map(|o| o.base)) {
        return AltStack::Own {
            base,
            size: OWN_SIZE,
            previous: 0,
        };
    }
    // SAFETY: a zeroed stack_t is a valid out-parameter; query only.
    let cur = unsafe {
        let mut cur: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut cur) != 0 {
            return AltStack::Unavailable;
        }
        cur
    };
    let enabled = cur.ss_flags & libc::SS_DISABLE == 0;
    if enabled && cur.ss_size >= needed() && !force_own {
        return AltStack::Reused {
            base: cur.ss_sp as usize,
            size: cur.ss_size,
        };
    }
    if cur.ss_flags & libc::SS_ONSTACK != 0 {
        return AltStack::Unavailable; // running on it right now: cannot change it
    }
    let page = 4096;
    let len = OWN_SIZE + page;
    // SAFETY: a fresh anonymous private mapping; the lowest page becomes the guard.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return AltStack::Unavailable;
    }
    // SAFETY: the first page of our own mapping.
    unsafe { libc::mprotect(map, page, libc::PROT_NONE) };
    let base = map as usize + page;
    let new = libc::stack_t {
        ss_sp: base as *mut libc::c_void,
        ss_flags: 0,
        ss_size: OWN_SIZE,
    };
    // SAFETY: installs a valid stack we own for this thread.
    if unsafe { libc::sigaltstack(&new, std::ptr::null_mut()) } != 0 {
        // SAFETY: unmaps what we mapped.
        unsafe { libc::munmap(map, len) };
        return AltStack::Unavailable;
    }
    OWNED.with(|o| *o.borrow_mut() = Some(Owned { map, len, base }));
    AltStack::Own {
        base,
        size: OWN_SIZE,
        previous: if enabled { cur.ss_size } else { 0 },
    }
}
