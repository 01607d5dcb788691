//! The viewer protocol end to end, over real loopback TCP: an instrumented app
//! (`grpc_app`, a real process serving taskscope's viewer server on a free
//! port) and the viewer's client (`taskscope_viewer::client`): the snapshot,
//! then deltas with new, finished and slow tasks; two viewers at once; the app
//! restarting under a connected viewer; and what the client says when the
//! address holds something else.

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskscope::proto::{self, PROTOCOL_VERSION, taskscope_server};
use taskscope::{ServerAddr, TaskEnd};
use taskscope_tests::free_port;
use taskscope_tests::location_prefix;
use taskscope_viewer::client::{self, ClientError, TaskKind};
use taskscope_viewer::state::model::{AppInfo, AppSource, Connection, Request, Task, Update};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::server::TcpIncoming;

/// The longest any step may take (debug builds on a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(20);

/// `grpc_app` running on a port, driven through its stdin.
struct App {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl App {
    fn start(port: u16) -> App {
        App::start_at(&format!("127.0.0.1:{port}"))
    }

    /// Starts the app with `TASKSCOPE_ADDR` set to `addr`.
    fn start_at(addr: &str) -> App {
        App::start_with(addr, 50)
    }

    /// Starts the app on `addr` with `tasks` named waiting tasks.
    fn start_with(addr: &str, tasks: usize) -> App {
        let mut child = Command::new(env!("CARGO_BIN_EXE_grpc_app"))
            .env("TASKSCOPE_ADDR", addr)
            .env("GRPC_APP_TASKS", tasks.to_string())
            .env("TASKSCOPE_SLOW_POLL_MS", "100")
            .env_remove("TASKSCOPE_REPORT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start grpc_app");
        let (stderr, reader) = taskscope_tests::collect_stderr(child.stderr.take().unwrap());
        let mut app = App {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            stderr,
            reader: Some(reader),
        };
        app.expect_line("ready");
        app
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn expect_line(&mut self, want: &str) {
        let stderr = Arc::clone(&self.stderr);
        taskscope_tests::next_line_where(
            &mut self.stdout,
            &format!("grpc_app (waiting for {want:?})"),
            || stderr.lock().unwrap().clone(),
            |line| (line == want).then_some(()),
        );
    }

    /// Sends a command and waits until the app has carried it out.
    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.expect_line(&format!("ok {command}"));
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Kills the app; then its whole stderr is in [`App::stderr`].
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The viewer's client running `watch`, and what it sent so far.
struct Viewer {
    updates: mpsc::Receiver<Update>,
    requests: mpsc::Sender<Request>,
    seen: Vec<String>,
}

fn summary(update: &Update) -> String {
    match update {
        Update::Snapshot { tasks, .. } => format!("Snapshot({} tasks)", tasks.len()),
        Update::Delta {
            changed,
            finished,
            findings,
            ..
        } => format!(
            "Delta(changed {:?}, finished {:?}, findings {:?})",
            changed.iter().map(|t| t.id).collect::<Vec<_>>(),
            finished.iter().map(|t| t.id).collect::<Vec<_>>(),
            findings.iter().map(|f| f.kind.name()).collect::<Vec<_>>()
        ),
        Update::Detail(d) => format!("Detail({})", d.id),
        Update::Connection(c) => format!("{c:?}"),
    }
}

impl Viewer {
    fn start(addr: &str) -> Viewer {
        let addr = ServerAddr::parse(addr).unwrap();
        let (tx, updates) = mpsc::channel(256);
        let (requests, requests_rx) = mpsc::channel(8);
        tokio::spawn(client::watch(addr, tx, requests_rx));
        Viewer {
            updates,
            requests,
            seen: Vec::new(),
        }
    }

    /// The first coming update for which `pick` says something.
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&Update) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.updates.recv()).await {
                Err(_) => panic!(
                    "no {what} within {WAIT:?}; the client sent: {:#?}",
                    self.seen
                ),
                Ok(None) => panic!(
                    "the client stopped before {what}; it sent: {:#?}",
                    self.seen
                ),
                Ok(Some(update)) => {
                    self.seen.push(summary(&update));
                    if let Some(found) = pick(&update) {
                        return found;
                    }
                }
            }
        }
    }

    async fn connected(&mut self) {
        self.wait_for("Connection::Connected", |u| {
            matches!(u, Update::Connection(Connection::Connected { .. })).then_some(())
        })
        .await
    }

    async fn snapshot(&mut self) -> (AppInfo, Vec<Task>) {
        self.wait_for("a snapshot", |u| match u {
            Update::Snapshot { app, tasks, .. } => Some((app.clone(), tasks.clone())),
            _ => None,
        })
        .await
    }

    async fn changed_named(&mut self, name: &str) -> Task {
        self.wait_for(&format!("task {name:?} in a delta"), |u| match u {
            Update::Delta { changed, .. } => changed
                .iter()
                .find(|t| t.name.as_deref() == Some(name))
                .cloned(),
            _ => None,
        })
        .await
    }
}

fn named<'a>(tasks: &'a [Task], name: &str) -> &'a Task {
    tasks
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no task {name:?} in {tasks:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_deltas_show_new_finished_and_slow_tasks() {
    let port = free_port();
    let mut app = App::start(port);
    let addr = format!("127.0.0.1:{port}");
    let named_at = location_prefix("src/bin/grpc_app.rs", concat!("SPAWN-", "NAMED"));
    let blocker_at = location_prefix("src/bin/grpc_app.rs", concat!("SPAWN-", "BLOCKER"));

    let mut viewer = Viewer::start(&addr);
    viewer.connected().await;
    let (info, tasks, metrics) = viewer
        .wait_for("a snapshot", |u| match u {
            Update::Snapshot {
                app,
                tasks,
                metrics,
                ..
            } => Some((app.clone(), tasks.clone(), metrics.clone())),
            _ => None,
        })
        .await;
    assert_eq!(info.pid, app.pid());
    assert_eq!(info.protocol, PROTOCOL_VERSION);
    // The runtime was found at the first poll (taskscope started before it).
    assert_eq!(metrics.workers, 2, "{metrics:?}");
    assert_eq!(metrics.local_queue_depths.len(), 2, "{metrics:?}");
    assert!(metrics.alive_tasks >= 53, "{metrics:?}");
    // Each worker's busy time and polls so far, for the runtime view's plots.
    assert_eq!(metrics.worker_busy.len(), 2, "{metrics:?}");
    assert_eq!(metrics.worker_polls.len(), 2, "{metrics:?}");
    assert!(metrics.worker_polls.iter().sum::<u64>() > 0, "{metrics:?}");
    assert_eq!(info.slow_poll_threshold, Duration::from_millis(100));
    let workers: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.name.as_deref().is_some_and(|n| n.starts_with("worker-")))
        .collect();
    assert_eq!(workers.len(), 50, "{tasks:#?}");
    for w in &workers {
        assert!(w.spawned_at.starts_with(&named_at), "{w:?}");
        assert_eq!(w.ended, None);
        assert_eq!(w.polls, 1, "{w:?}");
    }
    // Only the app's tasks: nothing of taskscope's server (tonic, hyper, its publisher).
    for t in &tasks {
        assert!(t.spawned_at.starts_with("tests/"), "not the app's: {t:?}");
    }

    // Deltas follow at the publish interval, even when nothing changes.
    viewer
        .wait_for("a delta", |u| {
            matches!(u, Update::Delta { .. }).then_some(())
        })
        .await;

    // A new task appears.
    app.send("spawn fresh-1");
    let fresh = viewer.changed_named("fresh-1").await;
    assert!(fresh.spawned_at.starts_with(&named_at), "{fresh:?}");

    // A finished one is marked.
    let worker3 = named(&tasks, "worker-3").id;
    app.send("finish worker-3");
    let ended = viewer
        .wait_for("worker-3 finished", |u| match u {
            Update::Delta { finished, .. } => finished.iter().find(|t| t.id == worker3).cloned(),
            _ => None,
        })
        .await;
    assert_eq!(ended.ended, Some(TaskEnd::Completed));

    // A slow poll shows up, with the location that spawned its task.
    app.send("block 300");
    let slow = viewer
        .wait_for("the slow poll", |u| match u {
            Update::Delta { findings, .. } => findings
                .iter()
                .find(|f| {
                    f.kind.name() == "slow_poll"
                        && f.task
                            .as_ref()
                            .is_some_and(|t| t.spawned_at.starts_with(&blocker_at))
                })
                .cloned(),
            _ => None,
        })
        .await;
    let blocker = slow.task.unwrap().id;

    // Its detail, asked through the live connection: the slow poll is in it.
    viewer
        .requests
        .send(Request::Detail(blocker))
        .await
        .unwrap();
    let detail = viewer
        .wait_for("the blocker's detail", |u| match u {
            Update::Detail(d) if d.id == blocker => Some(d.clone()),
            _ => None,
        })
        .await;
    assert!(!detail.slow_polls.is_empty(), "{detail:?}");
    assert!(
        detail
            .slow_polls
            .iter()
            .all(|f| f.task.as_ref().is_some_and(|t| t.id == blocker))
    );
    assert_eq!(detail.async_stack, None);

    // One-shot calls on the same server: a live task's detail and the listing.
    let server = ServerAddr::parse(&addr).unwrap();
    let w0 = named(&tasks, "worker-0");
    let detail = client::task_detail(&server, w0.id).await.unwrap();
    assert_eq!(detail.histogram.len(), taskscope::POLL_HISTOGRAM_BUCKETS);
    assert_eq!(
        detail.histogram.iter().map(|(_, n)| n).sum::<u64>(),
        1,
        "{detail:?}"
    );
    assert_eq!(detail.histogram.last().unwrap().0, None);
    let main_id = w0.parent.expect("spawned from the runtime's block_on");
    let main_detail = client::task_detail(&server, main_id).await.unwrap();
    assert!(main_detail.children.contains(&w0.id), "{main_detail:?}");
    let parent = named(&tasks, "parent");
    let family = client::task_detail(&server, parent.id).await.unwrap();
    let children = [named(&tasks, "child-0").id, named(&tasks, "child-1").id];
    assert_eq!(family.children, children, "{family:?}");
    assert_eq!(family.parent, Some(main_id));
    let missing = client::task_detail(&server, u64::MAX).await.unwrap_err();
    assert!(
        matches!(missing, ClientError::NotFound { .. }),
        "{missing:?}"
    );

    let listing = client::list_tasks(&server).await.unwrap();
    assert_eq!(listing.app.pid, app.pid());
    let names: Vec<_> = listing
        .tasks
        .iter()
        .filter_map(|t| t.task.name.clone())
        .collect();
    assert!(names.contains(&"fresh-1".to_string()), "{names:?}");
    assert!(!names.contains(&"worker-3".to_string()), "{names:?}");
    let main_task = listing.tasks.iter().find(|t| t.task.id == main_id).unwrap();
    assert_eq!(main_task.kind, TaskKind::BlockOn, "{main_task:?}");
    assert!(!app.stderr().contains("cannot listen"), "{}", app.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_viewers_at_once_see_the_same_app() {
    let port = free_port();
    let mut app = App::start(port);
    let addr = format!("127.0.0.1:{port}");
    let mut first = Viewer::start(&addr);
    let mut second = Viewer::start(&addr);
    for viewer in [&mut first, &mut second] {
        viewer.connected().await;
        let (_, tasks) = viewer.snapshot().await;
        named(&tasks, "worker-49");
    }
    app.send("spawn seen-by-both");
    let a = first.changed_named("seen-by-both").await;
    let b = second.changed_named("seen-by-both").await;
    assert_eq!(a.id, b.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_when_the_app_restarts() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut app = App::start(port);
    let first_pid = app.pid();
    let mut viewer = Viewer::start(&addr);
    viewer.connected().await;
    let (info, _) = viewer.snapshot().await;
    assert_eq!(info.pid, first_pid);

    app.kill();
    viewer
        .wait_for("Disconnected after the kill", |u| {
            matches!(u, Update::Connection(Connection::Disconnected { .. })).then_some(())
        })
        .await;
    // While nothing listens, the client says so, and retries with growing delays.
    let reason = viewer
        .wait_for("a 'nothing listens' reason", |u| match u {
            Update::Connection(Connection::Disconnected { reason, .. })
                if reason.contains("nothing listens") =>
            {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
    assert!(reason.contains(&addr), "{reason}");
    assert!(reason.contains("TASKSCOPE_ADDR"), "{reason}");

    let app = App::start(port);
    viewer.connected().await;
    let (info, tasks) = viewer.snapshot().await;
    assert_eq!(info.pid, app.pid(), "a new snapshot, of the new process");
    assert_ne!(info.pid, first_pid);
    named(&tasks, "worker-0");
}

/// A stand-in taskscope server that speaks protocol version 2.
struct FutureServer;

type ListStream = tokio_stream::Iter<std::vec::IntoIter<Result<proto::TaskList, tonic::Status>>>;
type WatchStream = tokio_stream::Iter<std::vec::IntoIter<Result<proto::Update, tonic::Status>>>;

#[tonic::async_trait]
impl taskscope_server::Taskscope for FutureServer {
    type WatchStream = WatchStream;
    async fn watch(
        &self,
        _: tonic::Request<proto::WatchRequest>,
    ) -> Result<tonic::Response<WatchStream>, tonic::Status> {
        let snapshot = proto::Update {
            kind: Some(proto::update::Kind::Snapshot(proto::Snapshot {
                last: true,
                app: Some(proto::AppInfo {
                    protocol_version: 2,
                    ..Default::default()
                }),
                ..Default::default()
            })),
        };
        Ok(tonic::Response::new(tokio_stream::iter(vec![Ok(snapshot)])))
    }
    type ListTasksStream = ListStream;
    async fn list_tasks(
        &self,
        _: tonic::Request<proto::ListTasksRequest>,
    ) -> Result<tonic::Response<ListStream>, tonic::Status> {
        Err(tonic::Status::failed_precondition(
            "taskscope protocol mismatch: the app speaks protocol version 2, the viewer version 1",
        ))
    }
    async fn task_detail(
        &self,
        _: tonic::Request<proto::TaskDetailRequest>,
    ) -> Result<tonic::Response<proto::TaskDetailResponse>, tonic::Status> {
        Err(tonic::Status::unavailable("not in this test"))
    }
}

/// A gRPC server with neither taskscope's service nor tokio-console's:
/// every call is UNIMPLEMENTED.
#[derive(Clone)]
struct NoService;

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for NoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        std::future::ready(Ok(tonic::Status::unimplemented("").into_http()))
    }
}

async fn local_listener() -> (tokio::net::TcpListener, ServerAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ServerAddr::Tcp(listener.local_addr().unwrap());
    (listener, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_says_what_is_at_the_address_instead() {
    // Nothing.
    let closed = ServerAddr::parse(&format!("127.0.0.1:{}", free_port())).unwrap();
    let err = client::list_tasks(&closed).await.unwrap_err();
    assert!(matches!(err, ClientError::NotListening { .. }), "{err:?}");
    assert!(err.to_string().contains(&closed.to_string()), "{err}");

    // An HTTP/1 server.
    let (listener, http1) = local_listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    let err = client::list_tasks(&http1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{http1} answered, but not with gRPC (HTTP/1? TLS?)")
    );

    // A gRPC server without the taskscope service, but with tokio-console's
    // (console-subscriber, with no task of its own here): read through that.
    let (listener, console) = local_listener().await;
    let (_layer, server) = console_subscriber::ConsoleLayer::builder().build();
    let parts = server.into_parts();
    tokio::spawn(parts.aggregator.run());
    tokio::spawn(
        tonic::transport::Server::builder()
            .serve_with_incoming(parts.instrument_server, TcpIncoming::from(listener)),
    );
    let listing = client::list_tasks(&console)
        .await
        .expect("listed through console's protocol");
    assert_eq!(listing.app.source, AppSource::ConsoleSubscriber);
    let mut viewer = Viewer::start(&console.to_string());
    viewer.connected().await;
    let app = viewer
        .wait_for("a snapshot", |u| match u {
            Update::Snapshot { app, .. } => Some(app.clone()),
            _ => None,
        })
        .await;
    assert_eq!(app.source, AppSource::ConsoleSubscriber);

    // A gRPC server with neither service.
    let (listener, neither) = local_listener().await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .serve_with_incoming(NoService, TcpIncoming::from(listener)),
    );
    let err = client::list_tasks(&neither).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{neither} is a gRPC server, but speaks neither taskscope's protocol nor \
             tokio-console's (another service?)"
        )
    );
    let mut viewer = Viewer::start(&neither.to_string());
    let reason = viewer
        .wait_for("Incompatible", |u| match u {
            Update::Connection(Connection::Incompatible { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("speaks neither"), "{reason}");

    // A taskscope server of another protocol version: refused by either side.
    let (listener, future) = local_listener().await;
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(
        taskscope_server::TaskscopeServer::new(FutureServer),
        TcpIncoming::from(listener),
    ));
    let err = client::list_tasks(&future).await.unwrap_err();
    assert!(matches!(err, ClientError::Incompatible { .. }), "{err:?}");
    let mut viewer = Viewer::start(&future.to_string());
    let reason = viewer
        .wait_for("Incompatible", |u| match u {
            Update::Connection(Connection::Incompatible { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(
        reason.contains("protocol version 2") && reason.contains("viewer version 1"),
        "{reason}"
    );
    // And no retry after that: the client stops.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), viewer.updates.recv())
            .await
            .is_ok_and(|u| u.is_none()),
        "the client stops after an incompatible server"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_serves_too_and_only_its_owner_may_connect() {
    use std::os::unix::fs::PermissionsExt;
    let dir = taskscope_tests::temp_dir("grpc-unix");
    let path = dir.join("app.sock");
    // A stale socket file from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let addr = format!("unix:{}", path.display());
    let app = App::start_at(&addr);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let listing = client::list_tasks(&ServerAddr::parse(&addr).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{e}; app stderr:\n{}", app.stderr()));
    assert_eq!(listing.app.pid, app.pid());
    let mut viewer = Viewer::start(&addr);
    viewer.connected().await;
    let (_, tasks) = viewer.snapshot().await;
    named(&tasks, "worker-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_address_is_one_clear_warning_and_the_app_goes_on() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut app = App::start(port);
    app.send("spawn still-working");
    app.kill();
    let stderr = app.stderr();
    let warning = format!(
        "taskscope: cannot listen on 127.0.0.1:{port}: address in use; the viewer server is off"
    );
    assert_eq!(stderr.matches(&warning).count(), 1, "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("cannot listen"))
            .count(),
        1,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_is_served_with_one_warning() {
    let port = free_port();
    let mut app = App::start_at(&format!("0.0.0.0:{port}"));
    let listing = client::list_tasks(&ServerAddr::parse(&format!("127.0.0.1:{port}")).unwrap())
        .await
        .unwrap();
    assert_eq!(listing.app.pid, app.pid());
    app.kill();
    let stderr = app.stderr();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("not a loopback address"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains(&format!("0.0.0.0:{port}")), "{stderr}");
}

/// 100,000 tasks make a snapshot of about 8.6 MB: it must come in chunks, each
/// under tonic's default 4 MiB decode limit (which the viewer's client keeps),
/// with no task lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_100_000_tasks_arrives_whole_under_the_decode_limit() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _app = App::start_with(&addr, 100_000);
    let mut viewer = Viewer::start(&addr);
    viewer.connected().await;
    let (_, tasks) = viewer.snapshot().await;
    let workers = tasks
        .iter()
        .filter(|t| t.name.as_deref().is_some_and(|n| n.starts_with("worker-")))
        .count();
    assert_eq!(workers, 100_000);
    let listing = client::list_tasks(&ServerAddr::parse(&addr).unwrap())
        .await
        .unwrap();
    assert!(listing.tasks.len() >= 100_000, "{}", listing.tasks.len());
}
