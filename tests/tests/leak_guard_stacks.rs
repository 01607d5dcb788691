//! The leak guard's message says where each leaked task waits (the
//! `taskdump` feature), or how to get that. A test binary of its own: the
//! guards of `leak_guard.rs`'s tests, made before taskscope started, count
//! every task of the process, and this test's task lives for the dump.

use std::time::Duration;

use taskscope::LeakGuard;
use taskscope_tests::marker_line;

fn start_taskscope() {
    let guard = taskscope::Builder::new()
        .server_addr(taskscope::ServerAddr::Off)
        .try_init()
        .expect("taskscope starts");
    std::mem::forget(guard);
}

#[tokio::test]
async fn a_leaking_tests_message_says_where_each_task_waits() {
    start_taskscope();
    let guard = LeakGuard::new().grace(Duration::from_millis(100));
    let (_tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
    let leaked = tokio::spawn(async move {
        rx.recv().await // LEAK-GUARD-RECV
    });
    let leaks = guard
        .check()
        .await
        .expect_err("the guard must fail this test");
    let message = leaks.to_string();
    assert_eq!(leaks.stacks.len(), 1, "{message}");
    if cfg!(feature = "taskdump") {
        // A #[tokio::test] runtime is a current-thread one: taskscope dumps it.
        let line = marker_line("tests/leak_guard_stacks.rs", concat!("LEAK-GUARD-", "RECV"));
        assert!(
            message.contains(&format!(
                "\n    waiting at tests/tests/leak_guard_stacks.rs:{line}:\n      tokio::sync::mpsc::bounded::Receiver::recv ("
            )),
            "{message}"
        );
        assert!(
            leaks.stacks[0]
                .waiting_at
                .iter()
                .any(|f| f.line == Some(line)
                    && f.file.as_deref() == Some("tests/tests/leak_guard_stacks.rs")),
            "{message}"
        );
    } else {
        assert!(
            message.ends_with(
                "\n  (where each waits: taskscope was built without its `taskdump` feature: add \
                 `features = [\"taskdump\"]` to the taskscope dependency (Linux x86_64 or aarch64, \
                 with --cfg tokio_unstable) to see where each task waits)"
            ),
            "{message}"
        );
    }
    leaked.abort();
}
