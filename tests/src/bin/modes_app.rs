//! An app that installs two of taskscope's captures, for the tests of their
//! refusal (`tests/capture_modes.rs`). The first argument names the two, in
//! order: `layer,install_on`, `install_on,layer`, `init,install_on`,
//! `install_on,init`, `init,layer`, `layer,layer`, `install_on,install_on`.
//! The second one is asked for twice (it must be refused, and said, once).
//! Prints `second active: BOOL` (whether the second gave an active guard),
//! `second error: TEXT` for the ones that return an error, then runs a task
//! named `probe` on the runtime and prints `probe seen: BOOL` (whether the
//! capture that stayed saw it end).

use std::time::Duration;

use taskscope::{Builder, Guard, ServerAddr};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn builder() -> Builder {
    Builder::new().server_addr(ServerAddr::Off)
}

/// Installs `how`; the runtime builder gets the hooks for `install_on`.
/// The result: the guard, or the error.
fn install(how: &str, runtime: &mut tokio::runtime::Builder) -> Result<Guard, String> {
    match how {
        "init" => {
            let guard = builder().init();
            // init() says a refusal on stderr and returns an inert guard; try_init returns it.
            if !guard.is_active() {
                return builder().try_init().map_err(|e| e.to_string());
            }
            Ok(guard)
        }
        "layer" => {
            let (layer, guard) = builder().layer().map_err(|e| e.to_string())?;
            // The first layer goes on a global subscriber; a second one would
            // go on another subscriber (it is refused before).
            let _ = tracing_subscriber::registry().with(layer).try_init();
            Ok(guard)
        }
        "install_on" => Ok(builder().install_on(runtime)),
        other => panic!("unknown capture {other}"),
    }
}

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_default();
    let (first, second) = arg.split_once(',').expect("FIRST,SECOND");
    let mut runtime_builder = tokio::runtime::Builder::new_multi_thread();
    runtime_builder.worker_threads(2).enable_all();
    let first_guard = install(first, &mut runtime_builder).expect("the first capture");
    assert!(first_guard.is_active());
    let mut second_guard = None;
    for _ in 0..2 {
        match install(second, &mut runtime_builder) {
            Ok(guard) => {
                println!("second active: {}", guard.is_active());
                second_guard = Some(guard);
            }
            Err(err) => {
                println!("second active: false");
                println!("second error: {err}");
            }
        }
    }
    let runtime = runtime_builder.build().expect("runtime");
    runtime.block_on(async {
        tokio::task::Builder::new()
            .name("probe")
            .spawn(async { tokio::time::sleep(Duration::from_millis(5)).await })
            .unwrap()
            .await
            .unwrap();
    });
    // By name (tracing captures) or by spawn location (hooks: no names). The
    // join handle can wake before the worker has recorded the end: wait a little.
    let seen = || {
        taskscope::finished_tasks().iter().any(|f| {
            f.task.name.as_deref() == Some("probe")
                || f.task.spawned_at.to_string().contains("modes_app.rs")
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !seen() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("probe seen: {}", seen());
    drop(runtime);
    drop(second_guard);
    drop(first_guard);
}
