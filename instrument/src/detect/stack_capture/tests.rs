//! The capture's two paths on real threads (Linux x86_64).
//!
//! Path A: threads blocked 400 ms in system calls that Linux never restarts
//! after a signal handler (`poll`, `nanosleep`, a socket read with a timeout,
//! `epoll_wait`), each captured several times during the block: the call
//! returns what it returns without taskscope, and every stack names the
//! function that made the call, taken without a signal. Path B: threads
//! running user code are signalled; system calls entered in the race window
//! are restarted, never returned as EINTR; threads that block the signal, run
//! another signal handler or are inside the unwinder are refused, not
//! signalled or not captured. The tests that change process-wide state (the
//! panic hook; signal masks and handlers before `install`) run in a child
//! process of their own (`process_wide`).

use std::hint::black_box;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;
use crate::detect::symbolize::symbolize;

const BLOCK: Duration = Duration::from_millis(400);
/// Generous: the machine may be busy running other tests.
const TIMEOUT: Duration = Duration::from_secs(1);

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The function names of `raw`, innermost first (symbolized as the watchdog does).
fn names(raw: &RawStack) -> Vec<String> {
    symbolize(raw).into_iter().map(|f| f.function).collect()
}

/// The names of `raw`, checked to include `marker`.
#[track_caller]
fn assert_names(raw: &RawStack, marker: &str) -> Vec<String> {
    let names = names(raw);
    assert!(
        names.iter().any(|n| n.contains(marker)),
        "no {marker} in {raw:?}:\n{}",
        names.join("\n")
    );
    names
}

/// Spawns `f` on a thread that first sends its handle; returns both.
fn spawn_with_handle<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> (ThreadHandle, JoinHandle<T>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let join = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            tx.send(ThreadHandle::current()).unwrap();
            f()
        })
        .unwrap();
    (rx.recv().unwrap(), join)
}

/// The thread's pending signals (SigPnd | ShdPnd) from /proc.
fn pending_signals(tid: i32) -> u64 {
    let text = std::fs::read(format!("/proc/self/task/{tid}/status")).unwrap();
    let s = procfs::parse_status(&text).unwrap();
    s.sig_pnd | s.shd_pnd
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: a valid out array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn median_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

// ---- path A: blocked in a system call, no signal ----

#[inline(never)]
fn blocked_in_poll_marker(fd: i32) -> (i32, i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, BLOCK.as_millis() as i32) };
    black_box((r, if r < 0 { errno() } else { 0 }))
}

#[inline(never)]
fn blocked_in_nanosleep_marker() -> (i32, i32) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: BLOCK.as_nanos() as i64,
    };
    // SAFETY: a valid timespec, no remainder asked for.
    let r = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
    black_box((r, if r < 0 { errno() } else { 0 }))
}

#[inline(never)]
fn blocked_in_read_marker(s: &mut TcpStream) -> std::io::Result<usize> {
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    black_box(r)
}

#[inline(never)]
fn blocked_in_epoll_marker(ep: i32) -> (i32, i32) {
    let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // SAFETY: a valid epoll descriptor and event buffer.
    let r = unsafe { libc::epoll_wait(ep, ev.as_mut_ptr(), 4, BLOCK.as_millis() as i32) };
    black_box((r, if r < 0 { errno() } else { 0 }))
}

/// Runs `block` on a thread, captures it 4 times while it is blocked, checks
/// that every stack names `marker` and was taken without a signal (path A,
/// in system call `nr`); returns the thread's result and how long it took.
fn capture_while_blocked<T: Send + 'static>(
    name: &str,
    marker: &str,
    nr: i64,
    block: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let start = Instant::now();
    let (handle, join) = spawn_with_handle(name, block);
    std::thread::sleep(Duration::from_millis(80));
    let mut stacks = Vec::new();
    for _ in 0..4 {
        stacks.push(capture(&handle, TIMEOUT).unwrap_or_else(|e| panic!("{name}: {e}")));
        std::thread::sleep(Duration::from_millis(40));
    }
    let result = join.join().unwrap();
    let elapsed = start.elapsed();
    for raw in &stacks {
        assert_eq!(
            raw.method(),
            Method::Blocked { syscall: Some(nr) },
            "{name}"
        );
        assert!(!raw.exact_top());
        assert_names(raw, marker);
    }
    (result, elapsed)
}

#[test]
fn poll_on_a_silent_pipe_returns_0() {
    let (rfd, _wfd) = pipe();
    let ((r, e), took) = capture_while_blocked(
        "poll",
        "blocked_in_poll_marker",
        libc::SYS_poll,
        move || blocked_in_poll_marker(rfd),
    );
    assert_eq!((r, e), (0, 0), "poll must time out with 0, not EINTR");
    assert!(took >= BLOCK);
}

#[test]
fn nanosleep_returns_0() {
    // glibc implements nanosleep with clock_nanosleep.
    let ((r, e), _) = capture_while_blocked(
        "nanosleep",
        "blocked_in_nanosleep_marker",
        libc::SYS_clock_nanosleep,
        blocked_in_nanosleep_marker,
    );
    assert_eq!((r, e), (0, 0), "nanosleep must sleep to the end");
}

#[test]
fn tcp_read_with_a_timeout_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let conn = listener.accept().unwrap();
        std::thread::sleep(BLOCK + Duration::from_millis(300));
        drop(conn);
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(BLOCK)).unwrap();
    let (r, took) = capture_while_blocked(
        "tcp-read",
        "blocked_in_read_marker",
        libc::SYS_recvfrom,
        move || blocked_in_read_marker(&mut stream).map_err(|e| e.kind()),
    );
    assert!(
        matches!(
            r,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "read must time out, got {r:?}"
    );
    assert!(took >= BLOCK);
    peer.join().unwrap();
}

#[test]
fn epoll_wait_returns_0() {
    // SAFETY: a plain system call.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let ((r, e), _) = capture_while_blocked(
        "epoll",
        "blocked_in_epoll_marker",
        libc::SYS_epoll_wait,
        move || blocked_in_epoll_marker(ep),
    );
    assert_eq!((r, e), (0, 0), "epoll_wait must time out with 0");
    // SAFETY: closes our own descriptor.
    unsafe { libc::close(ep) };
}

/// A Tokio worker blocked in a task: the remote walk (sp and pc only) goes
/// through the marker into Tokio's frames, down to the thread's start.
#[test]
fn tokio_worker_blocked_in_a_task_is_walked_to_the_thread_start() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (rfd, _wfd) = pipe();
    let task = rt.spawn(async move {
        tx.send(ThreadHandle::current()).unwrap();
        blocked_in_poll_marker(rfd)
    });
    let handle = rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let raw = capture(&handle, TIMEOUT).expect("capture");
    assert_eq!(rt.block_on(task).unwrap(), (0, 0));
    let names = assert_names(&raw, "blocked_in_poll_marker");
    let marker = names
        .iter()
        .position(|n| n.contains("blocked_in_poll_marker"))
        .unwrap();
    assert!(
        names[marker..].iter().any(|n| n.contains("tokio::runtime")),
        "{}",
        names.join("\n")
    );
    assert!(raw.is_complete(), "{raw:?}");
}

#[inline(never)]
fn recurse_then_poll(depth: u32, fd: i32) -> (i32, i32) {
    if depth == 0 {
        return blocked_in_poll_marker(fd);
    }
    let r = recurse_then_poll(black_box(depth - 1), fd);
    black_box(r)
}

/// A stack deeper than MAX_FRAMES says it was cut, and keeps the innermost frames.
#[test]
fn a_deep_stack_is_marked_truncated() {
    let (rfd, _wfd) = pipe();
    let (h, join) = spawn_with_handle("deep", move || recurse_then_poll(300, rfd));
    std::thread::sleep(Duration::from_millis(100));
    let raw = capture(&h, TIMEOUT).unwrap();
    assert_eq!(join.join().unwrap(), (0, 0));
    assert!(raw.is_truncated(), "{raw:?}");
    assert!(!raw.is_complete());
    assert_eq!(raw.ips().len(), MAX_FRAMES);
    assert_names(&raw, "blocked_in_poll_marker");
    let (h, join) = spawn_with_handle("shallow", move || recurse_then_poll(3, rfd));
    std::thread::sleep(Duration::from_millis(100));
    let raw = capture(&h, TIMEOUT).unwrap();
    join.join().unwrap();
    assert!(!raw.is_truncated() && raw.is_complete(), "{raw:?}");
}

/// A thread blocked in a page fault (userfaultfd) shows `-1 sp pc` in /proc:
/// also captured without a signal, with an exact pc.
#[test]
fn a_thread_blocked_in_a_page_fault_is_captured_without_a_signal() {
    #[repr(C)]
    struct Api {
        api: u64,
        features: u64,
        ioctls: u64,
    }
    #[repr(C)]
    struct Register {
        start: u64,
        len: u64,
        mode: u64,
        ioctls: u64,
    }
    #[repr(C)]
    struct Zero {
        start: u64,
        len: u64,
        mode: u64,
        zeropage: i64,
    }
    #[inline(never)]
    fn blocked_in_fault_marker(addr: usize) -> u64 {
        // SAFETY: a registered userfaultfd page: the load waits until it is filled.
        black_box(unsafe { std::ptr::read_volatile(addr as *const u64) })
    }
    // SAFETY: userfaultfd set up on a fresh private page; the ioctl structs
    // match the kernel's ABI.
    let (uffd, page) = unsafe {
        let uffd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) as i32;
        if uffd < 0 {
            eprintln!(
                "userfaultfd unavailable here ({}): page-fault path not tested",
                std::io::Error::last_os_error()
            );
            return;
        }
        let mut api = Api {
            api: 0xAA,
            features: 0,
            ioctls: 0,
        };
        assert_eq!(libc::ioctl(uffd, 0xc018aa3f, &mut api), 0);
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        let mut reg = Register {
            start: page as u64,
            len: 4096,
            mode: 1,
            ioctls: 0,
        };
        assert_eq!(libc::ioctl(uffd, 0xc020aa00, &mut reg), 0);
        (uffd, page as usize)
    };
    let (h, join) = spawn_with_handle("fault", move || blocked_in_fault_marker(page));
    std::thread::sleep(Duration::from_millis(100));
    let raw = capture(&h, TIMEOUT).unwrap();
    let mut z = Zero {
        start: page as u64,
        len: 4096,
        mode: 0,
        zeropage: 0,
    };
    // SAFETY: resolves the fault with a zero page.
    assert_eq!(unsafe { libc::ioctl(uffd, 0xc020aa04, &mut z) }, 0);
    assert_eq!(join.join().unwrap(), 0);
    assert_eq!(raw.method(), Method::Blocked { syscall: None });
    assert!(raw.exact_top());
    assert_names(&raw, "blocked_in_fault_marker");
}

#[inline(never)]
fn blocked_in_std_sleep_marker() {
    std::thread::sleep(BLOCK);
    black_box(());
}

/// 100 ms after `h`'s thread started blocking: its stack taken from `/proc`
/// (path A, without `rbp`), then by the signal (with it).
fn from_proc_then_by_signal(h: &ThreadHandle) -> (RawStack, RawStack) {
    std::thread::sleep(Duration::from_millis(100));
    let a = capture(h, TIMEOUT).unwrap();
    let forced = Options {
        force_signal: true,
        timeout: TIMEOUT,
        ..Options::default()
    };
    (a, capture_with(h, &forced).unwrap())
}

/// std is built with frame pointers and glibc's clock_nanosleep does not
/// save `rbp`: the walk recovers it, and the same blocked thread walked by
/// path A and by the signal (with the real `rbp`; the handler restarts the
/// interrupted clock_nanosleep) gives the same return addresses.
#[test]
fn the_recovered_frame_pointer_matches_the_real_one() {
    let (h, join) = spawn_with_handle("std-sleep", blocked_in_std_sleep_marker);
    let (a, b) = from_proc_then_by_signal(&h);
    let c = capture(&h, TIMEOUT).unwrap();
    join.join().unwrap();
    assert_names(&a, "blocked_in_std_sleep_marker");
    assert!(matches!(a.method(), Method::Blocked { .. }) && a.fp_recovered());
    assert!(a.is_complete(), "{a:?}");
    assert!(
        matches!(
            b.method(),
            Method::Signal {
                fixup: SyscallFixup::Restarted(230)
            }
        ),
        "{:?}",
        b.method()
    );
    assert!(!b.fp_recovered());
    // pc: after the syscall (A), on it once restarted (B); return addresses identical.
    assert_eq!(a.ips()[0], b.ips()[0] + 2);
    assert_eq!(a.ips()[1..], b.ips()[1..], "A {a:?}\nB {b:?}");
    assert_eq!(a.ips(), c.ips());
}

#[inline(never)]
fn blocked_in_sleep_after_reading_the_clock_marker() {
    black_box(Instant::now());
    std::thread::sleep(BLOCK);
    black_box(());
}

/// The clock read just before the sleep leaves return addresses (into
/// `clock_gettime`) where `thread::sleep`'s frame then lies: the walk must not
/// take one of those stale pairs for the saved frame pointer. Path A gives the
/// return addresses the signal (with the real `rbp`) gives.
#[test]
fn a_stale_return_address_in_the_frame_is_not_taken_for_its_caller() {
    let (h, join) = spawn_with_handle(
        "clock-then-sleep",
        blocked_in_sleep_after_reading_the_clock_marker,
    );
    let (a, b) = from_proc_then_by_signal(&h);
    join.join().unwrap();
    let names = assert_names(&a, "blocked_in_sleep_after_reading_the_clock_marker");
    assert!(
        !names.iter().any(|n| n.contains("clock_gettime")),
        "a stale frame in the stack:\n{}",
        names.join("\n")
    );
    assert!(a.fp_recovered() && a.is_complete(), "{a:?}");
    assert!(!b.fp_recovered());
    assert_eq!(a.ips()[1..], b.ips()[1..], "A {a:?}\nB {b:?}");
}

/// A thread that has exited: ThreadExited at once.
#[test]
fn an_exited_thread_fails_fast() {
    let h = std::thread::spawn(ThreadHandle::current).join().unwrap();
    let t = Instant::now();
    assert_eq!(
        capture(&h, Duration::from_secs(5)).unwrap_err(),
        StackError::ThreadExited
    );
    assert!(t.elapsed() < Duration::from_millis(900));
}

/// The calling thread can capture itself.
#[test]
fn captures_the_calling_thread() {
    let raw = capture(&ThreadHandle::current(), TIMEOUT).unwrap();
    assert_eq!(raw.method(), Method::Current);
    assert_names(&raw, "captures_the_calling_thread");
}

// ---- path B: running user code, signalled ----

#[inline(never)]
fn spinning_marker(stop: &AtomicBool) -> u64 {
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        x = black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    black_box(x)
}

#[test]
fn a_spinning_thread_is_captured_by_signal_without_machinery_in_its_stack() {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (h, join) = spawn_with_handle("spin", move || spinning_marker(&s));
    std::thread::sleep(Duration::from_millis(50));
    let stacks: Vec<RawStack> = (0..5)
        .map(|_| capture(&h, TIMEOUT).expect("capture"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    join.join().unwrap();
    for raw in &stacks {
        assert!(
            matches!(
                raw.method(),
                Method::Signal {
                    fixup: SyscallFixup::None
                }
            ),
            "{:?}",
            raw.method()
        );
        assert!(raw.exact_top());
        assert!(raw.is_complete(), "{raw:?}");
        let names = assert_names(raw, "spinning_marker");
        assert!(
            names
                .iter()
                .all(|n| !crate::detect::symbolize::is_capture_machinery(n)),
            "machinery in the stack:\n{}",
            names.join("\n")
        );
    }
}

/// Short system calls that Linux never restarts, between bursts of CPU,
/// counting every EINTR, while the test captures the threads as fast as it can.
#[derive(Default)]
struct RaceCounts {
    calls: AtomicU64,
    eintr: AtomicU64,
}

#[inline(never)]
fn racing_marker(kind: u32, fd: i32, ep: i32, stop: &AtomicBool, counts: &RaceCounts) {
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..2000 {
            x = black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 20_000,
        };
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 1];
        // SAFETY: valid arguments for each call.
        let r = unsafe {
            match kind {
                0 => libc::poll(&mut p, 1, 1) as i64,
                1 => libc::syscall(libc::SYS_poll, &mut p as *mut libc::pollfd, 1, 1),
                2 => libc::nanosleep(&ts, std::ptr::null_mut()) as i64,
                _ => libc::epoll_wait(ep, ev.as_mut_ptr(), 1, 1) as i64,
            }
        };
        counts.calls.fetch_add(1, Ordering::Relaxed);
        if r < 0 && errno() == libc::EINTR {
            counts.eintr.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn short_system_calls_racing_the_signal_never_see_eintr() {
    let (rfd, _wfd) = pipe();
    // SAFETY: a plain system call.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for kind in 0..4u32 {
        let counts = Arc::new(RaceCounts::default());
        let (s, c) = (stop.clone(), counts.clone());
        let (h, join) = spawn_with_handle("racer", move || racing_marker(kind, rfd, ep, &s, &c));
        threads.push((kind, h, counts, join));
    }
    // The calls' rate without captures, then with the fastest captures.
    let quiet = Duration::from_secs(1);
    std::thread::sleep(quiet);
    let before: Vec<u64> = threads
        .iter()
        .map(|t| t.2.calls.load(Ordering::Relaxed))
        .collect();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(3);
    let (mut by_signal, mut restarted, mut blocked, mut failed) = (0, 0, 0, 0);
    let mut rounds = 0u32;
    while Instant::now() < deadline {
        for (kind, h, _, _) in &threads {
            match capture(h, TIMEOUT) {
                Ok(raw) => {
                    match raw.method() {
                        Method::Signal {
                            fixup: SyscallFixup::None,
                        } => by_signal += 1,
                        Method::Signal {
                            fixup: SyscallFixup::Restarted(_),
                        } => restarted += 1,
                        Method::Signal {
                            fixup: SyscallFixup::Unfixable(nr),
                        } => panic!("kind {kind}: EINTR left for {nr:?}"),
                        Method::Blocked { .. } => blocked += 1,
                        Method::Current => unreachable!(),
                    }
                    if rounds.is_multiple_of(50) {
                        assert_names(&raw, "racing_marker");
                    }
                }
                Err(_) => failed += 1,
            }
        }
        rounds += 1;
    }
    let captured_for = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for ((kind, _, counts, join), before) in threads.into_iter().zip(before) {
        join.join().unwrap();
        let (calls, eintr) = (
            counts.calls.load(Ordering::Relaxed),
            counts.eintr.load(Ordering::Relaxed),
        );
        eprintln!(
            "kind {kind}: {calls} calls, {eintr} EINTR; {:.0} calls/s without captures, \
             {:.0} calls/s while captured as fast as possible",
            before as f64 / quiet.as_secs_f64(),
            (calls - before) as f64 / captured_for.as_secs_f64()
        );
        assert!(calls > 0);
        assert_eq!(eintr, 0, "kind {kind}: a system call returned EINTR");
    }
    eprintln!(
        "race: {rounds} rounds; by signal {by_signal}, by signal with a restart {restarted}, \
         without signal {blocked}, failed {failed}; {:?}",
        stats()
    );
    assert!(by_signal + restarted > 0 && blocked > 0);
}

/// The handler's use of the alternate stack, measured on a painted one of ours.
#[test]
fn the_handler_needs_little_alternate_stack() {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let (used_tx, used_rx) = std::sync::mpsc::channel();
    let join = std::thread::spawn(move || {
        let h = ThreadHandle::current_with_own_altstack();
        let Some(altstack::AltStack::Own { base, size, .. }) = h.altstack() else {
            panic!("no alternate stack of ours: {:?}", h.altstack());
        };
        // SAFETY: this thread's alternate stack, not in use right now.
        unsafe { std::ptr::write_bytes(base as *mut u8, 0xa5, size) };
        tx.send(h).unwrap();
        spinning_marker(&s);
        // SAFETY: reads this thread's own alternate stack after the captures.
        let bytes = unsafe { std::slice::from_raw_parts(base as *const u8, size) };
        let untouched = bytes.iter().take_while(|&&b| b == 0xa5).count();
        used_tx.send(size - untouched).unwrap();
    });
    let h = rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    // Counted: the captures made by the signal handler (the spinning thread
    // is running user code). On a loaded machine a capture can find it
    // in the kernel instead (a page fault, a preemption that `/proc` shows as
    // blocked) and read its stack without a signal: not the handler, not
    // counted, and allowed a few times.
    let (mut captured, mut without_signal) = (0, 0);
    for _ in 0..50 {
        match capture(&h, TIMEOUT) {
            Ok(raw) if matches!(raw.method(), Method::Signal { .. }) => captured += 1,
            Ok(_) => without_signal += 1,
            Err(StackError::Timeout) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        captured >= 45,
        "{captured} of 50 by signal ({without_signal} without)"
    );
    stop.store(true, Ordering::Relaxed);
    let used = used_rx.recv().unwrap();
    join.join().unwrap();
    eprintln!(
        "alternate stack used by the kernel's frame and the handler: {used} bytes (AT_MINSIGSTKSZ {})",
        altstack::kernel_min()
    );
    assert!(used > 0 && used <= altstack::needed(), "{used}");
}

/// A thread running with the capture signal blocked (signalfd/sigwait apps)
/// is never signalled and nothing is left pending; the same thread blocked in
/// a system call is still captured, without a signal.
#[test]
fn a_thread_that_blocks_the_signal_is_never_signalled() {
    let sig = install().expect("install");
    let stop = Arc::new(AtomicBool::new(false));
    let go_block = Arc::new(AtomicBool::new(false));
    let (s, g) = (stop.clone(), go_block.clone());
    #[inline(never)]
    fn sigblocked_sleep_marker(s: &AtomicBool) {
        while !s.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (h, join) = spawn_with_handle("sigblocked", move || {
        // SAFETY: blocks one signal in this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let mut x = 0u64;
        while !g.load(Ordering::Relaxed) {
            x = black_box(x.wrapping_add(1));
        }
        sigblocked_sleep_marker(&s);
        x
    });
    std::thread::sleep(Duration::from_millis(30));
    let bit = procfs::sig_bit(sig);
    for _ in 0..20 {
        let err = capture(&h, TIMEOUT).unwrap_err();
        assert_eq!(err, StackError::SignalBlocked { signal: sig });
        assert!(err.to_string().contains("signalfd"), "{err}");
        assert_eq!(
            pending_signals(h.tid()) & bit,
            0,
            "a signal was left pending"
        );
    }
    go_block.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(30));
    let mut ok = 0;
    for _ in 0..10 {
        assert_eq!(
            pending_signals(h.tid()) & bit,
            0,
            "a signal was left pending"
        );
        match capture(&h, TIMEOUT) {
            Ok(raw) => {
                assert!(matches!(raw.method(), Method::Blocked { .. }));
                assert_names(&raw, "sigblocked_sleep_marker");
                ok += 1;
            }
            Err(e) => assert_eq!(e, StackError::SignalBlocked { signal: sig }),
        }
        std::thread::sleep(Duration::from_millis(7));
    }
    stop.store(true, Ordering::Relaxed);
    join.join().unwrap();
    assert!(ok >= 5, "{ok} of 10 captured while asleep");
}

/// A thread running inside another signal handler is not captured.
#[test]
fn a_thread_inside_another_signal_handler_is_refused() {
    static IN_HANDLER: AtomicBool = AtomicBool::new(false);
    static LEAVE: AtomicBool = AtomicBool::new(false);
    extern "C" fn usr2(_: i32) {
        IN_HANDLER.store(true, Ordering::SeqCst);
        while !LEAVE.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    }
    // SAFETY: a plain handler for SIGUSR2, used by this test only.
    unsafe {
        let mut a: libc::sigaction = std::mem::zeroed();
        a.sa_sigaction = usr2 as extern "C" fn(i32) as libc::sighandler_t;
        assert_eq!(libc::sigaction(libc::SIGUSR2, &a, std::ptr::null_mut()), 0);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (h, join) = spawn_with_handle("in-handler", move || spinning_marker(&s));
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: signals our own thread.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), h.tid(), libc::SIGUSR2) };
    while !IN_HANDLER.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..5 {
        assert_eq!(
            capture(&h, TIMEOUT).unwrap_err(),
            StackError::InSignalHandler
        );
    }
    LEAVE.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(20));
    let raw = capture(&h, TIMEOUT).expect("after the handler");
    assert_names(&raw, "spinning_marker");
    stop.store(true, Ordering::Relaxed);
    join.join().unwrap();
}

#[inline(never)]
fn unwinding_in_a_loop_marker(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: counts frames only.
        unsafe {
            backtrace::trace_unsynchronized(|_| {
                n += 1;
                true
            })
        };
    }
    n
}

/// A thread taking backtraces all the time: refused while inside the
/// unwinder (or its guard), captured otherwise; never re-entered.
#[test]
fn a_thread_inside_the_unwinder_is_refused() {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (h, join) = spawn_with_handle("unwinding", move || unwinding_in_a_loop_marker(&s));
    std::thread::sleep(Duration::from_millis(20));
    let (mut refused, mut captured) = (0, 0);
    for _ in 0..200 {
        match capture(&h, TIMEOUT) {
            Err(StackError::InUnwinder) => refused += 1,
            Ok(raw) => {
                captured += 1;
                assert_names(&raw, "unwinding_in_a_loop_marker");
            }
            Err(StackError::Moving | StackError::Timeout) => {}
            Err(e) => panic!("{e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    join.join().unwrap();
    eprintln!("a thread looping backtrace::trace: {refused} refused, {captured} captured");
    assert!(refused > 0);
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (h, join) = spawn_with_handle("guarded", move || {
        let _g = UnwindGuard::new();
        unwinding_in_a_loop_marker(&s)
    });
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..20 {
        match capture(&h, TIMEOUT) {
            Err(StackError::Unwinding { panicking: false }) => {}
            // Blocked in a system call (the unwinder's loader lock): read
            // from here, nothing of the thread's runs.
            Ok(raw) if matches!(raw.method(), Method::Blocked { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    join.join().unwrap();
}

/// Turned off: handles open nothing, and captures say "disabled".
#[test]
fn off_means_disabled_and_nothing_opened() {
    // Only the handle is made while off: other tests' captures go on.
    let off = {
        // Not through set_enabled: that is process-wide and other tests run
        // meanwhile; a handle made while off is what matters here.
        ThreadHandle { inner: None }
    };
    assert_eq!(capture(&off, TIMEOUT).unwrap_err().to_string(), "disabled");
    assert_eq!(off.tid(), 0);
}

/// Median capture times of each path (printed).
#[test]
fn timing() {
    let (rfd, _wfd) = pipe();
    let (h, join) = spawn_with_handle("timing-blocked", move || {
        let mut p = libc::pollfd {
            fd: rfd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 1500) }
    });
    std::thread::sleep(Duration::from_millis(50));
    let mut a = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let raw = capture(&h, TIMEOUT).unwrap();
        a.push(t.elapsed());
        assert!(matches!(raw.method(), Method::Blocked { .. }));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (h2, join2) = spawn_with_handle("timing-spin", move || spinning_marker(&s));
    std::thread::sleep(Duration::from_millis(20));
    let mut b = Vec::new();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(2));
        let t = Instant::now();
        if capture(&h2, TIMEOUT).is_ok() {
            b.push(t.elapsed());
        }
    }
    stop.store(true, Ordering::Relaxed);
    join2.join().unwrap();
    assert_eq!(join.join().unwrap(), 0);
    eprintln!(
        "median capture: blocked (path A) {:.1} us, running (path B) {:.1} us; unwind tables {:?}",
        median_us(a),
        median_us(b),
        unwind_tables()
    );
}

/// The tests that change process-wide state, each in a child process.
mod process_wide {
    use super::*;

    /// Runs the ignored test `name` of this binary alone in a child process.
    fn in_child(name: &str) {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                name,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TASKSCOPE_CHILD_TEST", name)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{name} in a child process:\n{stdout}\n{stderr}"
        );
        eprintln!("{stderr}");
    }

    /// True in the child process started for `name`.
    fn is_child(name: &str) -> bool {
        std::env::var("TASKSCOPE_CHILD_TEST").is_ok_and(|n| name.ends_with(&n) || n.ends_with(name))
    }

    #[test]
    fn panic_hook_in_a_process_of_its_own() {
        in_child("detect::stack_capture::tests::process_wide::panic_hook_child");
    }

    /// A thread inside a panic hook that takes and prints a backtrace (what
    /// the default hook does with RUST_BACKTRACE=1) is never captured by
    /// signal: the hook's unwinder is not re-entered, its output is intact.
    #[test]
    #[ignore = "run in a child process by panic_hook_in_a_process_of_its_own"]
    fn panic_hook_child() {
        if !is_child("panic_hook_child") {
            eprintln!("skipped: it changes the panic hook of the whole process");
            return;
        }
        install().expect("install");
        let in_hook = Arc::new(AtomicBool::new(false));
        let printed = Arc::new(std::sync::Mutex::new(String::new()));
        let (flag, out) = (in_hook.clone(), printed.clone());
        std::panic::set_hook(Box::new(move |info| {
            flag.store(true, Ordering::SeqCst);
            let start = Instant::now();
            let mut text = String::new();
            while start.elapsed() < Duration::from_millis(600) {
                text = format!("{info}\n{}", std::backtrace::Backtrace::force_capture());
            }
            *out.lock().unwrap() = text;
            flag.store(false, Ordering::SeqCst);
        }));
        // As taskscope's own hook does: marks the thread while the previous one runs.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _unwinding = UnwindGuard::new();
            previous(info);
        }));
        let (h, join) = spawn_with_handle("panicker", || {
            std::thread::sleep(Duration::from_millis(50));
            #[inline(never)]
            fn panicking_marker() {
                panic!("boom");
            }
            assert!(std::panic::catch_unwind(panicking_marker).is_err());
        });
        while !in_hook.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (mut refused, mut blocked_ok, mut other) = (0, 0, Vec::new());
        while in_hook.load(Ordering::SeqCst) {
            match capture(&h, TIMEOUT) {
                Err(StackError::Unwinding { .. }) => refused += 1,
                // Blocked in a system call: walked from here, nothing runs on it.
                Ok(raw) if matches!(raw.method(), Method::Blocked { .. }) => blocked_ok += 1,
                Err(StackError::Moving) => {}
                // Taken by signal: a failure only if the hook was still
                // running once the capture was done (it may have returned
                // between the look at `in_hook` and the signal).
                r if in_hook.load(Ordering::SeqCst) => other.push(format!("{r:?}")),
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        join.join().unwrap();
        let _ = std::panic::take_hook();
        let text = printed.lock().unwrap().clone();
        eprintln!("panic hook: {refused} refused (unwinding), {blocked_ok} taken without signal");
        assert!(
            other.is_empty(),
            "captured by signal while panicking: {other:?}"
        );
        assert!(refused > 0);
        assert!(
            text.contains("boom") && text.contains("panicking_marker"),
            "{text}"
        );
    }

    #[test]
    fn signal_choice_in_a_process_of_its_own() {
        in_child("detect::stack_capture::tests::process_wide::signal_choice_child");
    }

    extern "C" fn app_handler(_: i32) {}

    /// The signal taken is never one the app handles or keeps blocked (to
    /// read it through signalfd), and a handler the app installs later is
    /// not taken over: nothing is sent any more.
    #[test]
    #[ignore = "run in a child process by signal_choice_in_a_process_of_its_own"]
    fn signal_choice_child() {
        if !is_child("signal_choice_child") {
            eprintln!("skipped: it changes the signal mask and handlers of the whole process");
            return;
        }
        let rtmin = libc::SIGRTMIN();
        let signalfd_sig = rtmin + 4; // what the first design would have taken
        let handled_sig = rtmin + 5;
        // SAFETY: the app's own setup: one signal blocked in this thread
        // (inherited by the threads it starts) and read with signalfd; a
        // handler for another.
        let sfd = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signalfd_sig);
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
                0
            );
            let mut a: libc::sigaction = std::mem::zeroed();
            a.sa_sigaction = app_handler as extern "C" fn(i32) as libc::sighandler_t;
            assert_eq!(libc::sigaction(handled_sig, &a, std::ptr::null_mut()), 0);
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
        };
        assert!(sfd >= 0);
        let sig = install().expect("install");
        assert_eq!(sig, rtmin + 6, "took {sig}");

        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (h, join) = spawn_with_handle("spin", move || spinning_marker(&s));
        std::thread::sleep(Duration::from_millis(20));
        let raw = capture(&h, TIMEOUT).expect("capture");
        assert!(matches!(raw.method(), Method::Signal { .. }));

        // SAFETY: the app's own handler for the same number, installed later.
        unsafe {
            let mut a: libc::sigaction = std::mem::zeroed();
            a.sa_sigaction = app_handler as extern "C" fn(i32) as libc::sighandler_t;
            assert_eq!(libc::sigaction(sig, &a, std::ptr::null_mut()), 0);
        }
        let before = stats().deliveries;
        let r = capture(&h, TIMEOUT);
        assert!(
            matches!(r, Err(StackError::Signal(ref m)) if m.contains("replaced")),
            "{r:?}"
        );
        // SAFETY: a query only.
        let now = unsafe {
            let mut cur: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut cur);
            cur.sa_sigaction
        };
        assert_eq!(
            now, app_handler as extern "C" fn(i32) as libc::sighandler_t,
            "the app's handler was replaced"
        );
        assert_eq!(
            stats().deliveries,
            before,
            "a signal was sent after the app took it"
        );
        stop.store(true, Ordering::Relaxed);
        join.join().unwrap();
        let mut buf = [0u8; 128];
        // SAFETY: a non-blocking read into a local buffer.
        let n = unsafe { libc::read(sfd, buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n < 0, "a signal of ours reached the app's signalfd");
    }
}
