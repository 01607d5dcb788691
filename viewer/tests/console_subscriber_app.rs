//! taskscope's viewer against an app that embeds console-subscriber: this
//! test process is that app (console-subscriber's layer as the global
//! subscriber, its server on a free loopback port; taskscope is not
//! installed). The real `taskscope dump` (`CARGO_BIN_EXE_taskscope`) lists
//! its tasks in text and JSON, and the live client feeds the model the Tasks
//! and Detail views draw (`TestBackend`): names, spawn locations, polls, the
//! task whose 250 ms poll blocked its worker marked slow from console's poll
//! histogram, and nothing else (not the runtime's worker threads, which
//! console-subscriber shows as `blocking` tasks polled once for ever); the
//! status line says it is a console-subscriber app and what it lacks.
//!
//! Needs `--cfg tokio_unstable` (the workspace's `.cargo/config.toml`) and
//! tokio's `tracing` feature, as any console-subscriber app.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::Value;
use taskscope_api::ServerAddr;
use taskscope_viewer::client;
use taskscope_viewer::state::{AppSource, Model, Request, Update, View};
use taskscope_viewer::ui;
use tracing_subscriber::prelude::*;

/// The longest any step may take (debug builds on a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(30);

/// The app: its address, and the lines its tasks were spawned at.
struct App {
    addr: String,
    slow_line: u32,
    waiter_line: u32,
    _runtime: tokio::runtime::Runtime,
}

/// Spawns a named task; returns the line it was spawned at (the caller's).
#[track_caller]
fn spawn_named<F>(name: &str, future: F) -> u32
where
    F: Future<Output = ()> + Send + 'static,
{
    let line = std::panic::Location::caller().line();
    tokio::task::Builder::new()
        .name(name)
        .spawn(future)
        .expect("spawn");
    line
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (layer, server) = console_subscriber::ConsoleLayer::builder()
            .publish_interval(Duration::from_millis(100))
            .build();
        tracing_subscriber::registry().with(layer).init();
        // Its server and aggregator on a thread of their own, untraced (what
        // `ConsoleLayer::builder().spawn()` does), serving the listener
        // bound above (no port race).
        std::thread::spawn(move || {
            let _untraced =
                tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let parts = server.into_parts();
                tokio::spawn(parts.aggregator.run());
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tonic::transport::Server::builder()
                    .serve_with_incoming(
                        parts.instrument_server,
                        tonic::transport::server::TcpIncoming::from(listener),
                    )
                    .await
                    .unwrap();
            });
        });

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let slow_line = spawn_named("slow-250ms", async {
            // The bug to see: a blocking call inside a task.
            std::thread::sleep(Duration::from_millis(250));
            std::future::pending::<()>().await;
        });
        let waiter_line = spawn_named("waiter", std::future::pending::<()>());
        spawn_named("yielder", async {
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            std::future::pending::<()>().await;
        });
        spawn_named("done", async {});
        // The 250 ms poll over, and published.
        std::thread::sleep(Duration::from_millis(800));
        App {
            addr,
            slow_line,
            waiter_line,
            _runtime: runtime,
        }
    })
}

fn location(line: u32) -> String {
    format!("viewer/tests/console_subscriber_app.rs:{line}:")
}

fn dump(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_taskscope"))
        .arg("dump")
        .arg(&app().addr)
        .args(args)
        .env_remove("TASKSCOPE_TOKEN")
        .output()
        .expect("run taskscope dump")
}

#[test]
fn dump_lists_a_console_subscriber_apps_tasks_and_its_slow_poll() {
    let app = app();
    let out = dump(&["--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is a console-subscriber app (tokio-console's protocol)")
            && stderr.contains("no stacks, no findings"),
        "{stderr}"
    );
    let tasks: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    let named = |name: &str| -> &Value {
        let found: Vec<&Value> = tasks.iter().filter(|t| t["name"] == name).collect();
        assert_eq!(found.len(), 1, "{name} in {tasks:#?}");
        found[0]
    };
    let slow = named("slow-250ms");
    assert_eq!(slow["kind"], "task");
    assert_eq!(slow["source"], "console-subscriber");
    assert_eq!(slow["slow"], true, "{slow}");
    assert_eq!(slow["polls"], 1);
    let longest = slow["max_poll_ms"].as_f64().unwrap();
    assert!((250.0..2_000.0).contains(&longest), "{slow}");
    assert!(
        slow["spawned_at"]
            .as_str()
            .unwrap()
            .starts_with(&location(app.slow_line)),
        "{slow}"
    );
    assert!(
        slow["id"].as_u64().unwrap() < 1_000,
        "Tokio's task id: {slow}"
    );
    let waiter = named("waiter");
    assert_eq!(waiter["slow"], false);
    assert_eq!(waiter["polls"], 1);
    assert!(
        waiter["spawned_at"]
            .as_str()
            .unwrap()
            .starts_with(&location(app.waiter_line))
    );
    assert_eq!(named("yielder")["polls"], 21);
    assert!(
        tasks.iter().all(|t| t["name"] != "done"),
        "dump lists live tasks only"
    );
    let slow_ones: Vec<&Value> = tasks.iter().filter(|t| t["slow"] == true).collect();
    assert_eq!(slow_ones.len(), 1, "only the 250 ms poll: {slow_ones:#?}");
    let workers: Vec<&Value> = tasks.iter().filter(|t| t["kind"] == "blocking").collect();
    assert!(
        !workers.is_empty(),
        "the runtime's worker threads, as console-subscriber shows them"
    );

    // The table, and the slow polls under it.
    let out = dump(&[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    eprintln!(
        "DEBUGDUMP\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines[0].starts_with("ID  NAME"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("waiter") && l.contains(&location(app.waiter_line))),
        "{text}"
    );
    let slow_header = lines
        .iter()
        .position(|l| l.starts_with("Slow polls: tasks with a poll of 100.0ms or more"))
        .unwrap_or_else(|| panic!("no slow polls section:\n{text}"));
    let slow_rows: Vec<&&str> = lines[slow_header + 2..]
        .iter()
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(slow_rows.len(), 1, "{text}");
    assert!(
        slow_rows[0].contains("slow-250ms") && slow_rows[0].contains(&location(app.slow_line)),
        "{text}"
    );
}

/// Draws the model into a 200×50 screen and returns its lines.
fn screen(model: &mut Model) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
    terminal.draw(|f| ui::draw(f, model)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

#[test]
fn the_live_view_shows_a_console_subscriber_apps_tasks_and_says_what_it_lacks() {
    let app = app();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut model = Model::new(app.addr.clone(), Instant::now());
    runtime.block_on(async {
        let (updates_tx, mut updates) = tokio::sync::mpsc::channel(64);
        let (requests, requests_rx) = tokio::sync::mpsc::channel(8);
        let addr = ServerAddr::parse(&app.addr).unwrap();
        tokio::spawn(client::watch_with(addr, None, updates_tx, requests_rx));
        let deadline = tokio::time::Instant::now() + WAIT;
        let slow_id = loop {
            let update = tokio::time::timeout_at(deadline, updates.recv())
                .await
                .expect("the slow task marked in time")
                .expect("the client goes on");
            model.apply(update, Instant::now());
            let slow = model.tasks.values().find(|e| {
                e.task.name.as_deref() == Some("slow-250ms") && !model.marks_of(e).is_empty()
            });
            if let Some(entry) = slow {
                break entry.task.id;
            }
        };
        assert_eq!(
            model.app.as_ref().map(|a| a.source),
            Some(AppSource::ConsoleSubscriber)
        );

        // The Tasks view: the rows, the slow mark, the status line.
        let lines = screen(&mut model);
        let text = lines.join("\n");
        let row = |name: &str| {
            lines
                .iter()
                .find(|l| l.contains(name))
                .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
                .clone()
        };
        eprintln!("DEBUGSCREEN\n{text}");
        let slow = row("slow-250ms");
        assert!(slow.contains('⚠'), "marked slow: {slow}");
        assert!(slow.contains(&location(app.slow_line)), "{slow}");
        let waiter = row("waiter");
        assert!(!waiter.contains('⚠'), "{waiter}");
        assert!(waiter.contains(&location(app.waiter_line)), "{waiter}");
        let status = lines.last().unwrap();
        assert!(
            status.contains("Connected to")
                && status.contains("console-subscriber app (tokio-console's protocol)")
                && status.contains("no stacks, no findings"),
            "{status}"
        );
        assert_eq!(
            text.matches('⚠').count(),
            1,
            "only the 250 ms poll is slow:\n{text}"
        );

        // The Detail view: the histogram holds the 250 ms poll; no stacks there.
        requests.send(Request::Detail(slow_id)).await.unwrap();
        loop {
            let update = tokio::time::timeout_at(deadline, updates.recv())
                .await
                .expect("the detail in time")
                .expect("the client goes on");
            let is_detail = matches!(&update, Update::Detail(d) if d.id == slow_id);
            model.apply(update, Instant::now());
            if is_detail {
                break;
            }
        }
        let detail = model.detail.clone().unwrap();
        let polls: u64 = detail.histogram.iter().map(|(_, n)| n).sum();
        assert_eq!(polls, 1, "{detail:?}");
        let (bound, _) = detail.histogram.iter().find(|(_, n)| *n > 0).unwrap();
        assert!(
            bound.is_none_or(|b| b > Duration::from_millis(250)),
            "the 250 ms poll's bucket: {bound:?}"
        );
        model.ui.detail_id = Some(slow_id);
        model.ui.view = View::Detail;
        let text = screen(&mut model).join("\n");
        assert!(text.contains("slow-250ms"), "{text}");
        assert!(
            text.contains("not reported by console-subscriber (no stacks)"),
            "{text}"
        );
    });
}
