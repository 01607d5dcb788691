//! Stacks of blocked threads (watchdog): capture on one thread, symbolize on another.
//!
//! A watchdog thread that sees a worker stuck inside a poll calls [`capture`]
//! with that worker's [`ThreadHandle`]; the worker's stack is taken *while it is
//! still blocked* (in a sleep, a CPU loop, a lock), as raw instruction pointers
//! ([`RawStack`]). The watchdog then turns them into [`StackFrame`]s with
//! [`symbolize`], on its own thread.
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
//!   [`signal_number`] tells which). Real-time signals are queued one per
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
//! * **Symbolization** ([`symbolize`]) is `backtrace::resolve` (gimli over the
//!   binary's DWARF) on the caller's thread: demangled names without the hash,
//!   file and line where the debug info has them, inlined frames expanded.
//!   Debug info at `line-tables-only` (this workspace's release profile) names
//!   functions without their path and with their generic arguments
//!   (`poll_future<…hundreds of characters…>`), so the name of the function an
//!   address is in is taken from the ELF symbol table (`.symtab`, read with
//!   `object` through a private mapping of the file), and the generic arguments
//!   of the remaining short names (inlined calls) are dropped. With
//!   `debug = "limited"` or more every frame has its full path.
//!
//! # Costs (measured on the 2-core dev machine)
//!
//! * One capture of a sleeping thread: median 6 µs (release) to 8-10 µs
//!   (debug build) over 200 captures in a row; a spinning thread 6-13 µs;
//!   rare outliers of 0.1-4 ms when the machine is busy.
//! * The first [`symbolize`] in a process reads and caches the debug info and
//!   the symbol table: about 100 ms for a release test binary, 0.7 s for a debug
//!   one (and memory for the cache, kept); later ones take 0.15 ms (release) to
//!   0.9 ms (debug) for a 60-frame Tokio stack.
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
//! * Threads must not block the signal ([`signal_number`]); Tokio's and std's
//!   threads do not.

use std::ffi::c_void;
use std::time::Duration;

use taskscope_api::StackFrame;

/// How many instruction pointers a [`RawStack`] holds, innermost first.
pub(crate) const MAX_FRAMES: usize = 128;

/// How many frames [`symbolize`] returns at most.
pub(crate) const MAX_SYMBOLIZED: usize = 64;

/// Why a stack could not be captured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StackError {
    /// Stacks of other threads cannot be captured on this platform (named in the field).
    #[error(
        "stack unavailable on this platform ({0}): taskscope captures other threads' stacks \
         on Linux x86_64 and aarch64 only"
    )]
    #[allow(dead_code)] // used by tests, or on other platforms
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
    #[allow(dead_code)] // used by tests, or on other platforms
    pub(crate) fn is_truncated(&self) -> bool {
        self.truncated
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

    /// The kernel thread id (`gettid`), for messages; 0 where unsupported.
    #[allow(dead_code)] // used by tests, or on other platforms
    pub(crate) fn os_tid(&self) -> i64 {
        self.os.tid()
    }
}

/// Installs the capture signal's handler now (otherwise the first [`capture`]
/// does) and returns the signal number. Idempotent; the first result, success
/// or failure, is kept for the life of the process.
pub(crate) fn install() -> Result<i32, StackError> {
    imp::install()
}

/// The signal number used for captures, once installed.
#[allow(dead_code)] // used by tests, or on other platforms
pub(crate) fn signal_number() -> Option<i32> {
    imp::installed_signal()
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

/// Turns a [`RawStack`] into frames, innermost first, at most [`MAX_SYMBOLIZED`].
///
/// Function names are demangled without the hash; file and line are set where
/// the debug info has them (unknown functions are named by address, `0x…`);
/// inlined calls are expanded into frames of their own. Removed: any capture
/// machinery left at the top (signal handler, unwinder, trampoline), and
/// taskscope's own frames (functions whose name starts with `taskscope::` or
/// `<taskscope::`), except those of test modules (`::tests::`), which stand for
/// application code. Frames outside the task (Tokio's worker loop, the thread's
/// start) are kept as context.
pub(crate) fn symbolize(raw: &RawStack) -> Vec<StackFrame> {
    let mut frames = Vec::new();
    for (i, &ip) in raw.ips().iter().enumerate() {
        // `resolve` looks up `addr - 1`, right for return addresses; the
        // interrupted program counter itself is exact, so ask for one past it.
        let addr = if i == 0 && raw.exact_top {
            ip.wrapping_add(1)
        } else {
            ip
        };
        let before = frames.len();
        backtrace::resolve(addr as *mut c_void, |symbol| {
            frames.push(StackFrame {
                function: symbol
                    .name()
                    .map(|name| format!("{name:#}"))
                    .unwrap_or_else(|| format!("{ip:#x}")),
                file: symbol.filename().map(|p| p.display().to_string()),
                line: symbol.lineno(),
            });
        });
        match frames.get_mut(before..) {
            Some([inlined @ .., outermost]) => {
                // Debug info at `line-tables-only` names functions without their
                // path and with their generic arguments (`poll`, `{closure#0}`,
                // `call_once<…>`, often hundreds of characters). The symbol table
                // has the full name of the function the address is in; inlined
                // calls keep the short name, without the generic arguments.
                if is_short_name(&outermost.function)
                    && let Some(full) = symtab::function_name(addr.wrapping_sub(1))
                {
                    outermost.function = full;
                }
                for frame in inlined.iter_mut().chain([outermost]) {
                    if is_short_name(&frame.function)
                        && let Some(cut) = frame.function.find('<').filter(|&i| i > 0)
                    {
                        frame.function.truncate(cut);
                    }
                }
            }
            Some([]) | None => frames.push(StackFrame {
                function: symtab::function_name(addr.wrapping_sub(1))
                    .unwrap_or_else(|| format!("{ip:#x}")),
                file: None,
                line: None,
            }),
        }
    }
    if !raw.exact_top {
        // The interrupted pc was not found in the walk: cut by name instead.
        let top = frames.len().min(32);
        if let Some(last) = frames[..top]
            .iter()
            .rposition(|f| is_capture_machinery(&f.function))
        {
            frames.drain(..=last);
        }
    }
    frames.retain(|f| !is_own_frame(&f.function));
    frames.truncate(MAX_SYMBOLIZED);
    frames
}

/// A function name without its path, as `line-tables-only` debug info gives them
/// (`spinning_marker`, `{closure#0}`, `call_once<F, ()>`; also C names).
fn is_short_name(function: &str) -> bool {
    !function.starts_with('<') && !function.split('<').next().unwrap_or("").contains("::")
}

/// Full function names from the ELF symbol tables (`.symtab`, else `.dynsym`)
/// of the loaded objects, read on first use and kept.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod symtab {
    use std::ffi::{CStr, c_int, c_void};
    use std::path::PathBuf;
    use std::sync::{Mutex, PoisonError};

    use object::{Object, ObjectSymbol, SymbolKind};

    /// One loaded object (the executable, a shared library).
    struct Module {
        /// Its file; `None` when it has none (the vDSO) or it cannot be read.
        path: Option<PathBuf>,
        /// Load bias: runtime address minus file address.
        bias: usize,
        /// Runtime address ranges of its `PT_LOAD` segments.
        ranges: Vec<(usize, usize)>,
        /// Function symbols sorted by file address, loaded on first lookup.
        symbols: Option<Vec<Symbol>>,
    }

    /// One function symbol.
    struct Symbol {
        /// File (link-time) address of the function.
        addr: u64,
        /// Its size in bytes (0 when the table does not say).
        size: u64,
        /// Its mangled name.
        name: Box<str>,
    }

    /// The loaded objects seen so far, with their symbols once read.
    static MODULES: Mutex<Vec<Module>> = Mutex::new(Vec::new());

    /// The demangled (hash-less) name of the function containing `addr`, when
    /// the symbol table has it and it is a Rust path.
    pub(super) fn function_name(addr: usize) -> Option<String> {
        let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        let contains = |m: &Module| m.ranges.iter().any(|&(lo, hi)| (lo..hi).contains(&addr));
        if !modules.iter().any(contains) {
            *modules = loaded_modules(); // a library loaded since: scan again
        }
        let module = modules.iter_mut().find(|m| contains(m))?;
        let bias = module.bias;
        let symbols = module
            .symbols
            .get_or_insert_with(|| module.path.as_ref().map(read_symbols).unwrap_or_default());
        let file_addr = addr.wrapping_sub(bias) as u64;
        let i = symbols
            .partition_point(|s| s.addr <= file_addr)
            .checked_sub(1)?;
        let symbol = symbols.get(i)?;
        if file_addr - symbol.addr >= symbol.size.max(1) {
            return None;
        }
        let name = match rustc_demangle::try_demangle(&symbol.name) {
            Ok(demangled) => format!("{demangled:#}"),
            Err(_) => return None,
        };
        name.contains("::").then_some(name)
    }

    /// The objects loaded now, from `dl_iterate_phdr`.
    fn loaded_modules() -> Vec<Module> {
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut c_void,
        ) -> c_int {
            // SAFETY: `data` is the `Vec` passed below; `info` and its program
            // headers are valid for the duration of the callback.
            unsafe {
                let modules = &mut *data.cast::<Vec<Module>>();
                let info = &*info;
                let name = if info.dlpi_name.is_null() {
                    &[][..]
                } else {
                    CStr::from_ptr(info.dlpi_name).to_bytes()
                };
                let path = if name.is_empty() && modules.is_empty() {
                    Some(PathBuf::from("/proc/self/exe")) // the executable comes first
                } else if name.starts_with(b"/") {
                    Some(PathBuf::from(String::from_utf8_lossy(name).into_owned()))
                } else {
                    None // the vDSO, or a name that is not a path
                };
                let bias = info.dlpi_addr as usize;
                let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
                    &[]
                } else {
                    std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum))
                };
                let ranges = headers
                    .iter()
                    .filter(|h| h.p_type == libc::PT_LOAD)
                    .map(|h| {
                        let lo = bias.wrapping_add(h.p_vaddr as usize);
                        (lo, lo.wrapping_add(h.p_memsz as usize))
                    })
                    .collect();
                modules.push(Module {
                    path,
                    bias,
                    ranges,
                    symbols: None,
                });
            }
            0
        }
        let mut modules: Vec<Module> = Vec::new();
        // SAFETY: the callback only reads `info` and pushes to `modules`.
        unsafe {
            libc::dl_iterate_phdr(Some(each), (&raw mut modules).cast());
        }
        modules
    }

    /// The function symbols of the ELF file at `path`, sorted by address (empty on error).
    fn read_symbols(path: &PathBuf) -> Vec<Symbol> {
        let Ok(file) = std::fs::File::open(path) else {
            return Vec::new();
        };
        let Some(map) = Mapping::new(&file) else {
            return Vec::new();
        };
        let Ok(elf) = object::File::parse(map.bytes()) else {
            return Vec::new();
        };
        let mut symbols: Vec<Symbol> = elf
            .symbols()
            .chain(elf.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| {
                Some(Symbol {
                    addr: s.address(),
                    size: s.size(),
                    name: s.name().ok()?.into(),
                })
            })
            .collect();
        symbols.sort_by_key(|s| (s.addr, std::cmp::Reverse(s.size)));
        symbols.dedup_by_key(|s| s.addr);
        symbols
    }

    /// A read-only private mapping of a whole file.
    struct Mapping {
        /// Start of the mapping.
        ptr: *mut c_void,
        /// Its length: the file's size.
        len: usize,
    }

    impl Mapping {
        /// Maps all of `file`; `None` if it is empty or cannot be mapped.
        fn new(file: &std::fs::File) -> Option<Mapping> {
            use std::os::fd::AsRawFd;
            let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
            if len == 0 {
                return None;
            }
            // SAFETY: maps `len` bytes of an open file read-only; unmapped in Drop.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                )
            };
            (ptr != libc::MAP_FAILED).then_some(Mapping { ptr, len })
        }

        /// The mapped bytes.
        fn bytes(&self) -> &[u8] {
            // SAFETY: a live mapping of `len` readable bytes.
            unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: unmaps what `new` mapped.
            unsafe {
                libc::munmap(self.ptr, self.len);
            }
        }
    }
}

/// No symbol tables to read on other platforms.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod symtab {
    /// Always `None` here.
    pub(super) fn function_name(_addr: usize) -> Option<String> {
        None
    }
}

/// A function of taskscope itself (test modules excepted: they stand for the application).
fn is_own_frame(function: &str) -> bool {
    (function.starts_with("taskscope::") || function.starts_with("<taskscope::"))
        && !function.contains("::tests::")
}

/// A frame of the capture itself: handler, unwinder, signal trampoline.
fn is_capture_machinery(function: &str) -> bool {
    (function.starts_with("taskscope::stack::") && !function.contains("::tests::"))
        || function.starts_with("backtrace::")
        || function.starts_with("<backtrace::")
        || function.starts_with("_Unwind_")
        || function.starts_with("uw_")
        || function.starts_with("unw_")
        || function.starts_with("libunwind::")
        || function == "__restore_rt"
        || function == "__kernel_rt_sigreturn"
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

        /// The kernel thread id.
        #[allow(dead_code)] // used by tests, or on other platforms
        pub(super) fn tid(&self) -> i64 {
            i64::from(self.tid)
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

    /// The signal number, once installed.
    #[allow(dead_code)] // used by tests, or on other platforms
    pub(super) fn installed_signal() -> Option<c_int> {
        INSTALLED.get().and_then(|r| r.as_ref().ok().copied())
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

        /// No kernel thread id here: 0.
        pub(super) fn tid(&self) -> i64 {
            0
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

    /// Never installed.
    pub(super) fn installed_signal() -> Option<i32> {
        None
    }

    /// Always [`StackError::Unsupported`].
    pub(super) fn capture(_thread: &OsThread, _timeout: Duration) -> Result<RawStack, StackError> {
        Err(StackError::Unsupported(platform()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    use std::{
        sync::{Arc, mpsc},
        time::Instant,
    };

    /// Generous: the machine may be busy running other tests.
    const TIMEOUT: Duration = Duration::from_secs(1);

    /// Sleeps `d` in one `std::thread::sleep`; returns the first and last line
    /// numbers of its body.
    #[inline(never)]
    fn blocked_in_sleep_marker(d: Duration) -> (u32, u32) {
        let first = line!();
        std::thread::sleep(std::hint::black_box(d));
        (first, line!())
    }

    /// Spins until `stop`; returns the first and last line numbers of its body.
    #[inline(never)]
    fn spinning_marker(stop: &AtomicBool) -> (u32, u32) {
        let first = line!();
        let mut x = 0u64;
        while !stop.load(Ordering::Relaxed) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        std::hint::black_box(x);
        (first, line!())
    }

    /// The frame of `marker`, checked to have `stack.rs:line` inside `lines`.
    #[track_caller]
    fn assert_marker(frames: &[StackFrame], marker: &str, lines: (u32, u32)) {
        let frame = frames
            .iter()
            .find(|f| f.function.contains(marker))
            .unwrap_or_else(|| panic!("no {marker} frame in {frames:#?}"));
        assert!(
            frame.function.starts_with("taskscope::stack::tests::"),
            "name not demangled without hash: {frame:?}"
        );
        let file = frame.file.as_deref().unwrap_or("");
        assert!(file.ends_with("stack.rs"), "file of {frame:?}");
        let line = frame.line.unwrap_or(0);
        assert!(
            line > lines.0 && line < lines.1,
            "line of {frame:?} not in the body {lines:?}"
        );
        for f in frames {
            assert!(
                !is_capture_machinery(&f.function) && !f.function.contains("__restore_rt"),
                "capture machinery left in {frames:#?}"
            );
        }
    }

    /// A thread in `std::thread::sleep`: its marker frame with file and line,
    /// and a 2 s sleep that lasts 2 s despite 5 signals.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn captures_a_thread_blocked_in_sleep_without_cutting_the_sleep_short() {
        let (tx, rx) = mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            tx.send(ThreadHandle::current()).unwrap();
            let start = Instant::now();
            let lines = blocked_in_sleep_marker(Duration::from_secs(2));
            (start.elapsed(), lines)
        });
        let handle = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut stacks = Vec::new();
        for _ in 0..5 {
            stacks.push(capture(&handle, TIMEOUT).expect("capture"));
            std::thread::sleep(Duration::from_millis(100));
        }
        let (slept, lines) = sleeper.join().unwrap();
        assert!(
            slept >= Duration::from_secs(2),
            "the sleep was cut short: {slept:?}"
        );
        for raw in &stacks {
            assert!(
                raw.exact_top,
                "interrupted pc not found in the walk: {raw:?}"
            );
            let frames = symbolize(raw);
            assert_marker(&frames, "blocked_in_sleep_marker", lines);
            let marker = frames
                .iter()
                .position(|f| f.function.contains("blocked_in_sleep_marker"))
                .unwrap();
            assert!(
                frames[..marker]
                    .iter()
                    .any(|f| f.function.contains("std::thread") && f.function.contains("sleep")),
                "std::thread::sleep not above the marker: {frames:#?}"
            );
            assert!(frames.len() <= MAX_SYMBOLIZED);
        }
    }

    /// A thread burning CPU in a loop: the marker frame is found.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn captures_a_spinning_thread() {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let spinner = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                tx.send(ThreadHandle::current()).unwrap();
                spinning_marker(&stop)
            }
        });
        let handle = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let raws: Vec<_> = (0..5)
            .map(|_| capture(&handle, TIMEOUT).expect("capture"))
            .collect();
        stop.store(true, Ordering::Relaxed);
        let lines = spinner.join().unwrap();
        for raw in &raws {
            assert_marker(&symbolize(raw), "spinning_marker", lines);
        }
    }

    /// A thread that has exited: `ThreadExited` at once, not a wait for the timeout.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn capture_of_an_exited_thread_fails_fast() {
        let handle = std::thread::spawn(ThreadHandle::current).join().unwrap();
        let start = Instant::now();
        // A long timeout: failing fast must not come from waiting it out. (The
        // bound below leaves room for waiting on another test's capture.)
        let result = capture(&handle, Duration::from_secs(5));
        let took = start.elapsed();
        assert!(
            matches!(result, Err(StackError::ThreadExited)),
            "{result:?}"
        );
        assert!(took < Duration::from_millis(900), "took {took:?}");
    }

    /// 200 captures in a row of one sleeping thread: no lost signal, no
    /// deadlock; prints timings.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn many_captures_in_a_row_all_succeed() {
        let (tx, rx) = mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            tx.send(ThreadHandle::current()).unwrap();
            let start = Instant::now();
            let lines = blocked_in_sleep_marker(Duration::from_secs(2));
            (start.elapsed(), lines)
        });
        let handle = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut took = Vec::new();
        let mut stacks = std::collections::HashSet::new();
        for i in 0..200 {
            let start = Instant::now();
            let raw = capture(&handle, TIMEOUT).unwrap_or_else(|e| panic!("capture {i}: {e}"));
            took.push(start.elapsed());
            stacks.insert(raw.ips().to_vec());
        }
        let (slept, lines) = sleeper.join().unwrap();
        assert!(
            slept >= Duration::from_secs(2),
            "200 signals cut the sleep short: {slept:?}"
        );
        for ips in &stacks {
            let mut raw = RawStack {
                ips: [0; MAX_FRAMES],
                len: ips.len(),
                exact_top: true,
                truncated: false,
            };
            raw.ips[..ips.len()].copy_from_slice(ips);
            assert_marker(&symbolize(&raw), "blocked_in_sleep_marker", lines);
        }
        took.sort();
        eprintln!(
            "200 captures of a sleeping thread: median {:?}, p90 {:?}, max {:?}; {} distinct stacks",
            took[100],
            took[180],
            took[199],
            stacks.len()
        );
    }

    /// A thread that blocks the signal: `Timeout` after the timeout; the signal,
    /// delivered late, is ignored, and the next capture works.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn a_thread_that_blocks_the_signal_times_out_and_the_late_signal_is_harmless() {
        let sig = install().expect("install");
        let (tx, rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let blocked = std::thread::spawn(move || {
            // SAFETY: plain sigset manipulation of this thread's mask.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                tx.send(ThreadHandle::current()).unwrap();
                go_rx.recv().unwrap();
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            }
            blocked_in_sleep_marker(Duration::from_secs(1))
        });
        let handle = rx.recv().unwrap();
        let start = Instant::now();
        let result = capture(&handle, Duration::from_millis(200));
        let took = start.elapsed();
        assert!(matches!(result, Err(StackError::Timeout)), "{result:?}");
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(900),
            "took {took:?}"
        );
        // The pending signal is delivered now, to no request: ignored.
        go_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let raw = capture(&handle, TIMEOUT).expect("capture after unblocking");
        let lines = blocked.join().unwrap();
        assert_marker(&symbolize(&raw), "blocked_in_sleep_marker", lines);
    }

    /// A capture of the calling thread itself works (the signal arrives before
    /// `tgkill` returns).
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn captures_the_calling_thread() {
        // The signal is delivered to this thread before `tgkill` returns.
        let raw = capture(&ThreadHandle::current(), TIMEOUT).expect("self capture");
        let frames = symbolize(&raw);
        assert!(
            frames
                .iter()
                .any(|f| f.function.contains("captures_the_calling_thread")),
            "{frames:#?}"
        );
    }

    /// Elsewhere than Linux x86_64/aarch64: an error that says so.
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    #[test]
    fn capture_is_unsupported_here() {
        let result = capture(&ThreadHandle::current(), TIMEOUT);
        let err = result.expect_err("unsupported");
        assert!(matches!(err, StackError::Unsupported(_)));
        assert!(err.to_string().contains("unavailable on this platform"));
    }

    /// A Tokio worker blocked inside a task: marker frame, Tokio frames below
    /// it, at most 64 frames.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn captures_a_tokio_worker_blocked_in_a_task() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let task = runtime.spawn(async move {
            tx.send(ThreadHandle::current()).unwrap();
            blocked_in_sleep_marker(Duration::from_millis(800))
        });
        let handle = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let raw = capture(&handle, TIMEOUT).expect("capture");
        let lines = runtime.block_on(task).unwrap();
        let frames = symbolize(&raw);
        assert_marker(&frames, "blocked_in_sleep_marker", lines);
        assert!(frames.len() <= MAX_SYMBOLIZED, "{} frames", frames.len());
        let marker = frames
            .iter()
            .position(|f| f.function.contains("blocked_in_sleep_marker"))
            .unwrap();
        assert!(
            frames[marker..]
                .iter()
                .any(|f| f.function.contains("tokio::runtime")),
            "no Tokio frame below the marker: {frames:#?}"
        );
    }

    /// Which frames count as taskscope's own.
    #[test]
    fn own_frames_are_recognized() {
        assert!(is_own_frame("taskscope::capture::poll::begin"));
        assert!(is_own_frame(
            "<taskscope::Tracked<F> as core::future::Future>::poll"
        ));
        assert!(!is_own_frame("taskscope::stack::tests::spinning_marker"));
        assert!(!is_own_frame("tokio::runtime::task::harness::poll"));
    }
}
