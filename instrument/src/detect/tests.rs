//! Tests of the stack capture and its symbolization together: real threads
//! blocked or spinning, captured from another thread, then symbolized, and
//! the marker function found with its file and line.

use std::time::Duration;

use super::stack_capture::*;
use crate::detect::symbolize::{MAX_SYMBOLIZED, is_capture_machinery, symbolize};
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
use std::{
    sync::{Arc, mpsc},
    time::Instant,
};
use taskscope_api::StackFrame;

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

/// The frame of `marker`, checked to have `detect/tests.rs:line` inside `lines`.
#[track_caller]
fn assert_marker(frames: &[StackFrame], marker: &str, lines: (u32, u32)) {
    let frame = frames
        .iter()
        .find(|f| f.function.contains(marker))
        .unwrap_or_else(|| panic!("no {marker} frame in {frames:#?}"));
    assert!(
        frame.function.starts_with("taskscope::detect::tests::"),
        "name not demangled without hash: {frame:?}"
    );
    let file = frame.file.as_deref().unwrap_or("");
    assert!(file.ends_with("detect/tests.rs"), "file of {frame:?}");
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
/// taken without a signal (the thread is blocked in a system call), and a
/// 2 s sleep that lasts 2 s.
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
            matches!(raw.method(), Method::Blocked { syscall: Some(_) }),
            "{raw:?}"
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
    // A thread stopped at any instruction: now and then at one the line
    // table gives no line (DWARF's line 0); never at a wrong one, and most
    // captures name the line.
    let mut with_line = 0;
    for raw in &raws {
        let frames = symbolize(raw);
        let marker = frames
            .iter()
            .find(|f| f.function.contains("spinning_marker"));
        if marker.is_some_and(|f| f.line.is_none()) {
            continue;
        }
        assert_marker(&frames, "spinning_marker", lines);
        with_line += 1;
    }
    assert!(with_line >= 3, "{with_line} of 5 captures named the line");
}

/// 200 captures in a row of one sleeping thread: all succeed, none cuts
/// the sleep short; prints timings.
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
        "200 captures cut the sleep short: {slept:?}"
    );
    for ips in &stacks {
        let raw = RawStack::from_ips(ips, false);
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

/// Recurses `depth` frames deep, then sleeps `d` at the bottom.
#[inline(never)]
fn deep_then_sleep(depth: u32, d: Duration) -> u32 {
    if depth == 0 {
        blocked_in_sleep_marker(d);
        return 0;
    }
    // The addition after the call keeps it from being a tail call.
    std::hint::black_box(deep_then_sleep(std::hint::black_box(depth - 1), d)) + 1
}

/// A stack deeper than the capture keeps says so: truncated, with the
/// innermost frames (the blocking one among them) kept.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[test]
fn a_stack_deeper_than_the_limit_is_marked_truncated() {
    let (tx, rx) = mpsc::channel();
    let deep = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            tx.send(ThreadHandle::current()).unwrap();
            deep_then_sleep(300, Duration::from_millis(600))
        })
        .unwrap();
    let handle = rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let raw = capture(&handle, TIMEOUT).expect("capture");
    deep.join().unwrap();
    assert!(raw.is_truncated(), "300 frames deep: {raw:?}");
    assert_eq!(raw.ips().len(), MAX_FRAMES);
    let frames = symbolize(&raw);
    assert!(
        frames
            .iter()
            .any(|f| f.function.contains("blocked_in_sleep_marker")),
        "the innermost frames are the ones kept: {frames:#?}"
    );

    // A shallow one is not.
    let (tx, rx) = mpsc::channel();
    let shallow = std::thread::spawn(move || {
        tx.send(ThreadHandle::current()).unwrap();
        deep_then_sleep(3, Duration::from_millis(400))
    });
    let handle = rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let raw = capture(&handle, TIMEOUT).expect("capture");
    shallow.join().unwrap();
    assert!(!raw.is_truncated(), "{raw:?}");
}
