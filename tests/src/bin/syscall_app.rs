//! An instrumented app whose tasks block their worker thread in system calls
//! that Linux never restarts after a signal handler, for the tests of the
//! stack capture (`tests/stack_capture.rs`). `taskscope::init()` with the
//! default threshold, a two-worker runtime. One scenario per run, named by
//! the first argument:
//!
//! - `syscalls`: four tasks, one after the other, each blocked 400 ms in one
//!   call: `libc::poll` on a pipe nobody writes (returns 0), `libc::nanosleep`
//!   (returns 0), `TcpStream::read` with a 400 ms read timeout on a peer that
//!   sends nothing (`WouldBlock`/`TimedOut`), `libc::epoll_wait` (returns 0);
//!   then one that reads the clock and sleeps 400 ms in `std::thread::sleep`
//!   (ok when it slept all of it: the clock read leaves stale return
//!   addresses where `sleep`'s frame then lies, which the walk must not take).
//!   (First a task named `warm-up` sleeps 400 ms: the first stack of a
//!   process loads the debug info, for seconds in a debug build.)
//!   Prints one line per call: `call NAME ok` when the call returned what it
//!   returns without taskscope, else `call NAME WRONG: what it returned`.
//! - `signalfd`: like an app that reads its signals through `signalfd`: every
//!   signal is blocked in the main thread before taskscope and the runtime
//!   start (so in every thread they start), and a signalfd reads the
//!   real-time ones. Then a task spins 400 ms in user code (a capture would
//!   need the signal) and another blocks 400 ms in `poll`. Prints `call poll
//!   ok|WRONG`, then `pending N` (real-time signals pending in the process,
//!   from every `/proc/self/task/*/status` SigPnd and ShdPnd) and `signalfd N`
//!   (real-time signals the app's signalfd could read).
//!
//! Every scenario ends with `sigcgt HEX`: the real-time signals the process
//! has a handler for (none when `TASKSCOPE_STACKS=off`).

use std::hint::black_box;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const BLOCK: Duration = Duration::from_millis(400);

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

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
fn blocked_in_read_marker(stream: &mut TcpStream) -> std::io::Result<usize> {
    let mut buf = [0u8; 16];
    black_box(stream.read(&mut buf))
}

#[inline(never)]
fn blocked_in_epoll_marker(ep: i32) -> (i32, i32) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // SAFETY: a valid epoll descriptor and event buffer.
    let r = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 4, BLOCK.as_millis() as i32) };
    black_box((r, if r < 0 { errno() } else { 0 }))
}

#[inline(never)]
fn timed_sleep_marker() -> Duration {
    let start = Instant::now();
    std::thread::sleep(BLOCK);
    black_box(start.elapsed())
}

#[inline(never)]
fn spinning_marker() -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < BLOCK {
        for _ in 0..1000 {
            x = black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }
    x
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: a valid out array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn report(name: &str, ok: bool, got: impl std::fmt::Debug) {
    if ok {
        println!("call {name} ok");
    } else {
        println!("call {name} WRONG: {got:?}");
    }
}

/// Final `slow_poll` findings about tasks named `name` so far.
fn final_slow_polls(name: &str) -> usize {
    taskscope::findings()
        .iter()
        .filter(|f| {
            matches!(
                f.kind,
                taskscope::FindingKind::SlowPoll {
                    in_progress: false,
                    ..
                }
            ) && f.task.as_ref().and_then(|t| t.name.as_deref()) == Some(name)
        })
        .count()
}

/// Runs `f` in a task named `name`, waits for it, then for its final slow
/// poll report (which waits for the watchdog's stack: the first stack of a
/// process loads the debug info, a second or more in a debug build, and the
/// watchdog samples no other poll meanwhile).
async fn in_task<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let out = tokio::task::Builder::new()
        .name(name)
        .spawn(async move { f() })
        .unwrap()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while final_slow_polls(name) == 0 && Instant::now() < deadline {
        taskscope::flush(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out
}

async fn syscalls() {
    // The first stack loads the debug info: done here, not during the calls.
    in_task("warm-up", || std::thread::sleep(BLOCK)).await;
    let (rfd, _wfd) = pipe();
    let got = in_task("poll", move || blocked_in_poll_marker(rfd)).await;
    report("poll", got == (0, 0), got);

    let got = in_task("nanosleep", blocked_in_nanosleep_marker).await;
    report("nanosleep", got == (0, 0), got);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        std::thread::sleep(BLOCK * 3);
        drop(conn);
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(BLOCK)).unwrap();
    let got = in_task("tcp_read", move || {
        blocked_in_read_marker(&mut stream).map_err(|e| e.kind())
    })
    .await;
    report(
        "tcp_read",
        matches!(
            got,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        got,
    );

    // SAFETY: a plain system call.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let got = in_task("epoll_wait", move || blocked_in_epoll_marker(ep)).await;
    report("epoll_wait", got == (0, 0), got);

    let got = in_task("timed_sleep", timed_sleep_marker).await;
    report("timed_sleep", got >= BLOCK, got);
}

/// The real-time signals (bits of `SIGRTMIN..=SIGRTMAX` in a /proc mask).
fn rt_bits() -> u64 {
    (libc::SIGRTMIN()..=libc::SIGRTMAX()).fold(0, |m, s| m | 1u64 << (s - 1))
}

/// A hex mask field of a /proc status file.
fn mask(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// Real-time signals pending anywhere in this process.
fn pending_rt() -> u32 {
    let mut bits = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(status) = std::fs::read_to_string(entry.path().join("status")) {
            bits |= mask(&status, "SigPnd:") | mask(&status, "ShdPnd:");
        }
    }
    (bits & rt_bits()).count_ones()
}

async fn signalfd(sfd: i32) {
    in_task("warm-up", || std::thread::sleep(BLOCK)).await;
    in_task("spinner", spinning_marker).await;
    let (rfd, _wfd) = pipe();
    let got = in_task("poll", move || blocked_in_poll_marker(rfd)).await;
    report("poll", got == (0, 0), got);
    println!("pending {}", pending_rt());
    let mut read = 0;
    let mut info = [0u8; 128];
    // SAFETY: non-blocking reads of signalfd_siginfo records into a local buffer.
    while unsafe { libc::read(sfd, info.as_mut_ptr().cast(), info.len()) } > 0 {
        read += 1;
    }
    println!("signalfd {read}");
}

/// Blocks every signal in this thread (the threads it starts inherit the
/// mask) and opens a signalfd for the real-time ones.
fn block_all_signals() -> i32 {
    // SAFETY: plain signal-mask calls on valid sets.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()),
            0
        );
        let mut rt: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut rt);
        for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
            libc::sigaddset(&mut rt, sig);
        }
        let sfd = libc::signalfd(-1, &rt, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        assert!(sfd >= 0, "signalfd");
        sfd
    }
}

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    let sfd = (scenario == "signalfd").then(block_all_signals);
    let guard = taskscope::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match (scenario.as_str(), sfd) {
        ("syscalls", _) => runtime.block_on(syscalls()),
        ("signalfd", Some(sfd)) => runtime.block_on(signalfd(sfd)),
        _ => eprintln!("syscall_app: unknown scenario {scenario:?}"),
    }
    drop(runtime);
    drop(guard);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    println!("sigcgt {:x}", mask(&status, "SigCgt:") & rt_bits());
}
