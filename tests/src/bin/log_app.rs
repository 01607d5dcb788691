//! An app that logs through `tracing` under `taskscope::init()`: its own spans
//! and events must reach the stderr log as they would without taskscope, while
//! taskscope sees its tasks.

use tracing::{Instrument, info, info_span};

#[tokio::main]
async fn main() {
    let _guard = taskscope::init();
    let handled = tokio::spawn(
        async {
            tokio::task::yield_now().await;
            // The app's span is the current one inside the task, not Tokio's.
            let current = tracing::Span::current()
                .metadata()
                .map(|m| m.name())
                .unwrap_or("none");
            info!(current, "handled");
            let nested = info_span!("db", table = "users");
            let _entered = nested.enter();
            info!("query done");
        }
        .instrument(info_span!("request", id = 7)),
    );
    handled.await.unwrap();
    tracing::debug!("hidden at the default level");
    let (done, wait) = tokio::sync::oneshot::channel::<()>();
    let named = tokio::task::Builder::new()
        .name("log-worker")
        .spawn(async move {
            let _ = wait.await;
        })
        .unwrap();
    let tasks = taskscope::all_tasks();
    let _ = done.send(());
    named.await.unwrap();
    println!(
        "named task seen: {}",
        tasks
            .iter()
            .any(|t| t.name.as_deref() == Some("log-worker"))
    );
}
