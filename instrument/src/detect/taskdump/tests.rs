//! Task dumps of real runtimes (only with task dumps compiled in): where a
//! task waits, as the findings, the leak guard and the viewer get it.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use taskscope_api::waiting::NO_TOKIO_PRIMITIVE;
use tokio::runtime::Handle;

use crate::detect::taskdump::collect::stacks;
use crate::detect::taskdump::dump::{dump_async, dump_blocking};
use crate::detect::taskdump::error::TaskDumpError;
use crate::detect::taskdump::frames::PathTrim;
use crate::detect::taskdump::request::{Gate, Options};
use crate::detect::taskdump::stack::AsyncStack;
use crate::session::Session;
use crate::settings::{Settings, TaskDumps};

/// Dumps run one at a time in the whole process: tests that take one wait
/// for each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by every test that takes a dump.
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn session() -> Session {
    Session::new(Settings::default()).0
}

/// Returns `Pending` and forgets its waker: a lost waker.
struct ForgetsWaker;

impl Future for ForgetsWaker {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// Spawns a task waiting in `recv` (returns its id and the line of the
/// `.await`) and one that lost its waker (returns its id).
fn spawn_waiters() -> (u64, u32, u64) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
    std::mem::forget(tx);
    let receiver = tokio::spawn(async move {
        while let Some(_v) = rx.recv().await {} // RECV-AWAIT
    });
    let lost = tokio::spawn(ForgetsWaker);
    let id = |h: &tokio::task::JoinHandle<()>| h.id().to_string().parse::<u64>().unwrap();
    (
        id(&receiver),
        marker_line(concat!("RECV-", "AWAIT")),
        id(&lost),
    )
}

/// The line of this file holding `marker`.
fn marker_line(marker: &str) -> u32 {
    let lines: Vec<usize> = include_str!("tests.rs")
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 1, "{marker} on one line");
    lines[0] as u32
}

fn paths() -> PathTrim {
    PathTrim::new([file!()])
}

fn check_stacks(
    by_task: &std::collections::HashMap<u64, AsyncStack>,
    receiver: u64,
    line: u32,
    lost: u64,
) {
    let at = &by_task[&receiver];
    assert_eq!(
        at.warning_suffix(),
        format!("; waiting at {}:{line}", file!()),
        "{at:#?}"
    );
    assert_eq!(
        at.waiting_at[0].function, "tokio::sync::mpsc::bounded::Receiver::recv",
        "{at:#?}"
    );
    let lost = &by_task[&lost];
    assert!(lost.waiting_at.is_empty(), "{lost:#?}");
    assert_eq!(lost.note.as_deref(), Some(NO_TOKIO_PRIMITIVE));
    assert_eq!(
        lost.warning_suffix(),
        "; waiting in a non-Tokio future (no Tokio primitive on its stack)"
    );
}

#[test]
fn a_current_thread_runtime_is_dumped_from_its_own_thread_at_once() {
    let _serial = serial();
    let session = session();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (receiver, line, lost) = spawn_waiters();
        tokio::task::yield_now().await;
        let gate = Gate {
            session: &session,
            caller_key: None,
            asked: true,
        };
        // From the block_on future, as the guard's drop at the end of main.
        let dumped = dump_blocking(
            &Handle::current(),
            TaskDumps::CurrentThread,
            &Options::default(),
            &gate,
        )
        .expect("dumped");
        assert_eq!(dumped.task_ids().len(), 2);
        assert_eq!(dumped.partial, None);
        let want = HashSet::from([receiver, lost]);
        check_stacks(
            &stacks(&dumped, Some(&want), &mut paths(), None),
            receiver,
            line,
            lost,
        );
    });
}

#[test]
fn a_current_thread_runtime_is_dumped_from_another_thread_by_a_task() {
    let _serial = serial();
    let session = session();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    let (ids_tx, ids_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = std::thread::spawn(move || {
        rt.block_on(async {
            ids_tx.send(spawn_waiters()).unwrap();
            let _ = stop_rx.await;
        })
    });
    let (receiver, line, lost) = ids_rx.recv().unwrap();
    let gate = Gate {
        session: &session,
        caller_key: None,
        asked: true,
    };
    // As taskscope's server does: its own runtime, the app's handle.
    let server = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dumped = server
        .block_on(dump_async(
            &handle,
            TaskDumps::CurrentThread,
            &Options::default(),
            &gate,
        ))
        .expect("dumped");
    assert_eq!(dumped.task_ids().len(), 2, "{:?}", dumped.partial);
    let want = HashSet::from([receiver, lost]);
    check_stacks(
        &stacks(&dumped, Some(&want), &mut paths(), None),
        receiver,
        line,
        lost,
    );
    // And blocking, as the watchdog does.
    let dumped = dump_blocking(
        &handle,
        TaskDumps::CurrentThread,
        &Options::default(),
        &gate,
    )
    .expect("dumped");
    assert_eq!(dumped.task_ids().len(), 2, "{:?}", dumped.partial);
    stop_tx.send(()).unwrap();
    app.join().unwrap();
}

#[test]
fn a_multi_thread_runtime_is_dumped_only_when_the_policy_says_so() {
    let _serial = serial();
    let session = session();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (receiver, line, lost) = rt.block_on(async { spawn_waiters() });
    std::thread::sleep(Duration::from_millis(20));
    let gate = Gate {
        session: &session,
        caller_key: None,
        asked: true,
    };
    let handle = rt.handle().clone();
    let refused = dump_blocking(
        &handle,
        TaskDumps::CurrentThread,
        &Options::default(),
        &gate,
    );
    assert_eq!(refused.err(), Some(TaskDumpError::MultiThreadNotAllowed));
    let refused = dump_blocking(&handle, TaskDumps::Off, &Options::default(), &gate);
    assert_eq!(refused.err(), Some(TaskDumpError::Off));

    let dumped = dump_blocking(
        &handle,
        TaskDumps::AlsoMultiThread,
        &Options::default(),
        &gate,
    )
    .expect("dumped");
    let want = HashSet::from([receiver, lost]);
    check_stacks(
        &stacks(&dumped, Some(&want), &mut paths(), None),
        receiver,
        line,
        lost,
    );
    // Tokio 1.54 may leave a worker waiting after a dump: never wait for it.
    rt.shutdown_background();
}

#[test]
fn a_second_dump_while_one_runs_is_refused_at_once_and_a_runtime_nobody_drives_holds_none() {
    let _serial = serial();
    let session = session();
    // A current-thread runtime whose thread is stuck: a dump asked from
    // outside waits for it, and a second one meanwhile is refused.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let app = std::thread::spawn(move || {
        rt.block_on(async {
            started_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            tokio::task::yield_now().await;
        });
    });
    started_rx.recv().unwrap();
    let first = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            let session = crate::session::Session::new(Settings::default()).0;
            let gate = Gate {
                session: &session,
                caller_key: None,
                asked: true,
            };
            let opts = Options {
                timeout: Duration::from_millis(500),
                ..Options::default()
            };
            let t = Instant::now();
            let first = dump_blocking(&handle, TaskDumps::CurrentThread, &opts, &gate);
            (first.err(), t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let gate = Gate {
        session: &session,
        caller_key: None,
        asked: true,
    };
    let opts = Options {
        timeout: Duration::from_millis(100),
        ..Options::default()
    };
    let second = dump_blocking(&handle, TaskDumps::CurrentThread, &opts, &gate);
    assert!(
        matches!(second, Err(TaskDumpError::AlreadyRunning { .. })),
        "{:?}",
        second.err()
    );
    let (first, took) = first.join().unwrap();
    assert!(
        matches!(first, Some(TaskDumpError::TimedOut { .. })),
        "{first:?}"
    );
    assert!(took < Duration::from_millis(1000), "{took:?}");
    // The runtime's thread is still stuck: its dump task never started, and
    // holds nothing; the next dump is not refused as "already running".
    let third = dump_blocking(&handle, TaskDumps::CurrentThread, &opts, &gate);
    assert!(
        matches!(third, Err(TaskDumpError::TimedOut { .. })),
        "{:?}",
        third.err()
    );
    app.join().unwrap();
}
