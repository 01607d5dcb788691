//! `#[taskscope::main]`: the one-line embed on the runtime-hooks capture.
//! One task blocks its worker for 250 ms; another is left pending at exit.

use std::time::Duration;

async fn load_config() {
    std::thread::sleep(Duration::from_millis(250));
}

#[taskscope::main(worker_threads = 2)]
async fn main() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // The sender outlives the runtime: the task is still pending at shutdown.
    std::mem::forget(tx);
    tokio::spawn(async move { rx.await.ok() }); // SPAWN-PENDING
    tokio::task::yield_now().await;
    tokio::spawn(load_config()).await.unwrap(); // SPAWN-MACRO-SLOW
    println!("tasks seen: {}", taskscope::all_tasks().len());
}
