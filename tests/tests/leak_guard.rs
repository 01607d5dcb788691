//! The leak guard fails a test that leaks and passes one that does not.

use std::sync::Once;
use std::time::Duration;

use taskscope::LeakGuard;
use taskscope_tests::marker_line;

fn start_taskscope() {
    static START: Once = Once::new();
    START.call_once(|| {
        let guard = taskscope::Builder::new()
            .server_addr(taskscope::ServerAddr::Off)
            .try_init()
            .expect("taskscope starts");
        std::mem::forget(guard);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaking_test_fails_with_a_readable_list() {
    start_taskscope();
    let guard = LeakGuard::new().grace(Duration::from_millis(200));
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    let leaked = tokio::task::Builder::new()
        .name("forgotten-worker")
        .spawn(async move { rx.await.ok() }) // SPAWN-LEAKED-WORKER
        .unwrap();
    let finishes = tokio::spawn(async { tokio::time::sleep(Duration::from_millis(20)).await });

    let leaks = guard
        .check()
        .await
        .expect_err("the guard must fail this test");
    assert_eq!(leaks.tasks.len(), 1, "{leaks}");
    let message = leaks.to_string();
    let line = marker_line("tests/leak_guard.rs", concat!("SPAWN-LEAKED-", "WORKER"));
    assert!(
        message.starts_with("1 task(s) spawned during the test still alive after waiting"),
        "{message}"
    );
    assert!(message.contains("\"forgotten-worker\""), "{message}");
    assert!(
        message.contains(&format!("spawned at tests/tests/leak_guard.rs:{line}:")),
        "{message}"
    );
    assert!(message.contains(": idle, idle for "), "{message}");
    assert!(
        message.contains(&format!("task {} ", leaked.id())),
        "{message}"
    );
    assert!(finishes.is_finished());
    leaked.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_test_passes_after_waiting_for_slow_finishers() {
    start_taskscope();
    let guard = LeakGuard::new();
    // Still running when the check starts; done well within the grace period.
    tokio::spawn(async { tokio::time::sleep(Duration::from_millis(100)).await });
    guard.check().await.expect("nothing leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_names_and_locations_do_not_count() {
    start_taskscope();
    let guard = LeakGuard::new()
        .grace(Duration::from_millis(50))
        .ignore_name("background-metrics")
        .ignore_location("tests/tests/leak_guard.rs");
    let a = tokio::task::Builder::new()
        .name("background-metrics")
        .spawn(std::future::pending::<()>())
        .unwrap();
    let b = tokio::spawn(std::future::pending::<()>());
    guard.check().await.expect("both leaks are ignored");
    a.abort();
    b.abort();
}
