//! A hostile server at the address the viewer was given: a stand-in
//! taskscope server that misbehaves in one way each. The viewer bounds what
//! it holds and says why it gave up, instead of growing; and nothing the
//! server says reaches the terminal with its control characters:
//!
//! - a snapshot (and a listing) whose chunks never say `last`;
//! - a message larger than the viewer reads;
//! - error messages with escape sequences, printed by `dump`.

use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use taskscope::ServerAddr;
use taskscope::proto::{self, PROTOCOL_VERSION, taskscope_server};
use taskscope_viewer::client::assemble::{MAX_CHUNKS, MAX_MESSAGE};
use taskscope_viewer::client::{self, ClientError};
use taskscope_viewer::state::model::{Connection, Update};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::transport::server::TcpIncoming;

/// The longest any step may take (debug builds on a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(60);

/// OSC 52 (write the clipboard), BEL, CSI (clear the screen), C1 CSI, CR.
const PAYLOAD: &str = "\u{1b}]52;c;aGVsbG8=\u{7}\u{1b}[2J\u{9b}31m\r";

/// How the stand-in misbehaves.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Chunks that never say `last`, as long as the viewer reads.
    Endless,
    /// One message larger than a viewer reads.
    Oversized,
    /// Every call refused with an escape sequence in the message.
    Escapes,
}

struct Hostile {
    how: Misbehaviour,
    /// Chunks the viewer took.
    sent: Arc<AtomicU64>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

fn app() -> proto::AppInfo {
    proto::AppInfo {
        protocol_version: PROTOCOL_VERSION,
        name: "hostile".into(),
        ..Default::default()
    }
}

/// An endless stream of `make(n)`, counting what was taken.
fn endless<T: Send + 'static>(
    sent: &Arc<AtomicU64>,
    make: impl Fn(u32) -> T + Send + 'static,
) -> BoxStream<T> {
    let sent = Arc::clone(sent);
    Box::pin(tokio_stream::iter((0u32..).map(move |n| {
        sent.fetch_add(1, Ordering::Relaxed);
        Ok(make(n))
    })))
}

fn refusal() -> tonic::Status {
    // FAILED_PRECONDITION and "protocol": what a version mismatch looks like.
    tonic::Status::failed_precondition(format!("taskscope protocol {PAYLOAD} mismatch"))
}

#[tonic::async_trait]
impl taskscope_server::Taskscope for Hostile {
    type WatchStream = BoxStream<proto::Update>;
    async fn watch(
        &self,
        _: tonic::Request<proto::WatchRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let snapshot = |chunk, tasks: Vec<proto::Task>| proto::Update {
            kind: Some(proto::update::Kind::Snapshot(proto::Snapshot {
                chunk,
                last: false,
                app: Some(app()),
                tasks,
                total_tasks: u64::MAX,
                ..Default::default()
            })),
        };
        match self.how {
            Misbehaviour::Endless => Ok(tonic::Response::new(endless(&self.sent, move |n| {
                snapshot(n, Vec::new())
            }))),
            Misbehaviour::Oversized => {
                let big = proto::Task {
                    id: 1,
                    name: Some("x".repeat(MAX_MESSAGE + 1)),
                    ..Default::default()
                };
                let update = snapshot(0, vec![big]);
                Ok(tonic::Response::new(Box::pin(tokio_stream::iter([Ok(
                    update,
                )]))))
            }
            Misbehaviour::Escapes => Err(refusal()),
        }
    }

    type ListTasksStream = BoxStream<proto::TaskList>;
    async fn list_tasks(
        &self,
        _: tonic::Request<proto::ListTasksRequest>,
    ) -> Result<tonic::Response<Self::ListTasksStream>, tonic::Status> {
        match self.how {
            Misbehaviour::Escapes => Err(refusal()),
            _ => Ok(tonic::Response::new(endless(&self.sent, |n| {
                proto::TaskList {
                    chunk: n,
                    last: false,
                    protocol_version: PROTOCOL_VERSION,
                    app: Some(app()),
                    total_tasks: u64::MAX,
                    ..Default::default()
                }
            }))),
        }
    }

    async fn task_detail(
        &self,
        _: tonic::Request<proto::TaskDetailRequest>,
    ) -> Result<tonic::Response<proto::TaskDetailResponse>, tonic::Status> {
        Err(refusal())
    }
}

/// The stand-in, on a free loopback port.
async fn hostile(how: Misbehaviour) -> (ServerAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ServerAddr::Tcp(listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let server = taskscope_server::TaskscopeServer::new(Hostile {
        how,
        sent: Arc::clone(&sent),
    })
    .max_encoding_message_size(usize::MAX);
    tokio::spawn(
        tonic::transport::Server::builder()
            .serve_with_incoming(server, TcpIncoming::from(listener)),
    );
    (addr, sent)
}

/// The first connection state of the live view's client other than
/// `Connecting`.
async fn first_state(addr: &ServerAddr) -> Connection {
    let (tx, mut updates) = mpsc::channel(64);
    let (_requests, requests_rx) = mpsc::channel(8);
    let watch = tokio::spawn(client::watch_with(addr.clone(), None, tx, requests_rx));
    let state = loop {
        match tokio::time::timeout(WAIT, updates.recv()).await {
            Ok(Some(Update::Connection(Connection::Connecting { .. }))) => {}
            Ok(Some(Update::Connection(state))) => break state,
            other => panic!("no connection state: {other:?}"),
        }
    };
    watch.abort();
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_that_never_end_are_cut_off_at_the_bound_saying_so() {
    let (addr, sent) = hostile(Misbehaviour::Endless).await;
    let Connection::Disconnected { reason, .. } = first_state(&addr).await else {
        panic!("a stream that never ends: Disconnected, and a retry")
    };
    assert!(
        reason.contains(
            "the app sent a snapshot of more than 16384 chunks or 256 MiB without \
             its last chunk"
        ),
        "{reason}"
    );
    // It read that many, then stopped (the server would go on forever).
    assert!(sent.load(Ordering::Relaxed) >= u64::from(MAX_CHUNKS));

    let err = client::list_tasks_with(&addr, None).await.unwrap_err();
    assert!(matches!(err, ClientError::Lost { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the app sent a listing of more than 16384 chunks"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_bigger_than_a_viewer_reads_is_refused_saying_so() {
    let (addr, _) = hostile(Misbehaviour::Oversized).await;
    let Connection::Disconnected { reason, .. } = first_state(&addr).await else {
        panic!("an oversized message: Disconnected")
    };
    assert!(
        reason.contains("the app sent a message bigger than the 4 MiB a viewer reads"),
        "{reason}"
    );
}

/// Whether `bytes` hold a control character other than a line break.
fn has_control(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes)
        .chars()
        .any(|c| c.is_control() && c != '\n')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_escape_sequences_never_reach_the_terminal() {
    let (addr, _) = hostile(Misbehaviour::Escapes).await;
    // `dump` prints the server's refusal on stderr: made visible.
    let out = Command::new(env!("CARGO_BIN_EXE_viewer_proc"))
        .args(["dump", &addr.to_string()])
        .env_remove("TASKSCOPE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!has_control(&out.stderr), "{:?}", out.stderr);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "taskscope protocol \\x1b]52;c;aGVsbG8=\\x07\\x1b[2J\\u{9b}31m\\x0d mismatch"
        ),
        "{stderr}"
    );
    // The live view's client: the reason it shows holds none either.
    let Connection::Incompatible { reason, .. } = first_state(&addr).await else {
        panic!("a protocol refusal: Incompatible")
    };
    assert!(!reason.chars().any(char::is_control), "{reason:?}");
    // And a task's detail.
    let err = client::task_detail_with(&addr, 1, None).await.unwrap_err();
    assert!(!err.to_string().chars().any(char::is_control), "{err:?}");
}
