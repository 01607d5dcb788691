//! `all_tasks()` and the finished history, in process (one test per file:
//! taskscope installs one global subscriber per process).

use std::sync::Arc;
use std::time::Duration;

use taskscope::{TaskEnd, TaskState};
use taskscope_tests::marker_line;
use tokio::sync::Notify;

#[test]
fn fifty_named_waiting_tasks_are_listed_then_move_to_history() {
    let _guard = taskscope::Builder::new()
        .server_addr(taskscope::ServerAddr::Off)
        .try_init()
        .expect("init");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let spawn_line = marker_line("tests/all_tasks.rs", concat!("SPAWN-", "WAITER"));
    rt.block_on(async move {
        let notify = Arc::new(Notify::new());
        let mut handles = Vec::new();
        for i in 0..50 {
            let n = Arc::clone(&notify);
            let h = tokio::task::Builder::new()
                .name(&format!("waiter-{i}"))
                .spawn(async move { n.notified().await }) // SPAWN-WAITER
                .unwrap();
            handles.push(h);
        }
        let aborted = tokio::task::Builder::new()
            .name("to-abort")
            .spawn(std::future::pending::<()>())
            .unwrap();
        let panicking = tokio::task::Builder::new()
            .name("to-panic")
            .spawn(async {
                tokio::task::yield_now().await;
                panic!("boom");
            })
            .unwrap();
        // Let every waiter reach its first await.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let tasks = taskscope::all_tasks();
        let waiters: Vec<_> = tasks
            .iter()
            .filter(|t| t.name.as_deref().is_some_and(|n| n.starts_with("waiter-")))
            .collect();
        assert_eq!(waiters.len(), 50, "{tasks:#?}");
        for i in 0..50 {
            let name = format!("waiter-{i}");
            let t = waiters
                .iter()
                .find(|t| t.name.as_deref() == Some(&name))
                .unwrap();
            assert_eq!(t.state, TaskState::Idle, "{t:?}");
            assert_eq!(t.spawned_at.file, "tests/tests/all_tasks.rs");
            assert_eq!(t.spawned_at.line, spawn_line);
            assert!(t.polls >= 1, "{t:?}");
            assert!(t.parent.is_some(), "spawned from inside block_on: {t:?}");
            assert!(t.since_last_poll.is_some());
            assert!(t.age >= t.busy);
        }
        let table = taskscope::format_tasks(&tasks);
        assert!(
            table.contains("waiter-49") && table.contains(&format!("all_tasks.rs:{spawn_line}:"))
        );

        notify.notify_waiters();
        for h in handles {
            h.await.unwrap();
        }
        aborted.abort();
        assert!(aborted.await.unwrap_err().is_cancelled());
        assert!(panicking.await.unwrap_err().is_panic());
        tokio::time::sleep(Duration::from_millis(50)).await;

        let live = taskscope::all_tasks();
        assert!(
            !live
                .iter()
                .any(|t| t.name.as_deref().is_some_and(|n| n.starts_with("waiter-"))),
            "{live:#?}"
        );
        let history = taskscope::finished_tasks();
        let ended = |name: &str| {
            history
                .iter()
                .find(|f| f.task.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("{name} in history: {history:#?}"))
                .end
        };
        for i in 0..50 {
            assert_eq!(ended(&format!("waiter-{i}")), TaskEnd::Completed);
        }
        assert_eq!(ended("to-abort"), TaskEnd::Cancelled);
        assert_eq!(ended("to-panic"), TaskEnd::Panicked);
    });
}
