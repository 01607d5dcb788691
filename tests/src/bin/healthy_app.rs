//! A healthy instrumented app: 1,000 tasks that yield, sleep briefly, time out
//! and get cancelled by `select!`. taskscope must find nothing wrong with it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

async fn request(i: u64, tx: mpsc::Sender<u64>) {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(i % 5)).await;
    // A timeout that fires: the inner future is cancelled after a poll.
    let _ = tokio::time::timeout(Duration::from_millis(2), std::future::pending::<()>()).await;
    // A select! whose losing branch is cancelled.
    let (_keep, never) = oneshot::channel::<()>();
    tokio::select! {
        _ = never => unreachable!(),
        _ = tokio::time::sleep(Duration::from_millis(1)) => {}
    }
    let _ = tx.send(i).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _guard = taskscope::init();
    let (tx, mut rx) = mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut n = 0u64;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1_000 {
        tasks.spawn(request(i, tx.clone()));
    }
    drop(tx);
    while let Some(done) = tasks.join_next().await {
        done.expect("request task");
    }
    assert_eq!(collector.await.expect("collector"), 1_000);
    println!("served 1000");
    // Proof that taskscope saw the tasks it found nothing wrong with.
    println!("finished tasks seen: {}", taskscope::finished_tasks().len());
}
