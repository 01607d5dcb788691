//! Hostile and malformed input to the viewer server of a real app
//! (`load_app`, doing steady request work): each is refused with a clear
//! answer, and after each one the app is still working (its request counter
//! advances) and a real client call still succeeds.
//!
//! - bytes that are not HTTP/2 (random bytes, an HTTP/1 request, a TLS
//!   ClientHello, a valid preface followed by garbage frames), and a
//!   connection that says nothing at all;
//! - gRPC messages that are too big (by their length prefix, and for real) or
//!   that are not the call's message, and calls that do not exist;
//! - an unknown task id, and requests from a newer or an older protocol version;
//! - a missing or wrong `TASKSCOPE_TOKEN` when the app requires one (and the
//!   token is never echoed), through the raw protocol, the client API
//!   (`Connection::Incompatible` in the live view) and `dump` (one line, exit 1);
//! - a brute force of the token: slowed down, its connections closed, while
//!   the right token is served at once;
//! - 128 idle HTTP/2 connections: they do not lock a viewer out, and they
//!   are closed; a viewer's Watch connection is not.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskscope_tests::free_port;

use bytes::Bytes;
use taskscope::ServerAddr;
use taskscope::proto::{self, PROTOCOL_VERSION, taskscope_client::TaskscopeClient};
use taskscope_viewer::client::{self, ClientError, Token};
use taskscope_viewer::state::model::{Connection, Update};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The longest any step may take (debug builds on a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(30);

/// The token of the apps that require one.
const TOKEN: &str = "s3cret-9f2c41d7a0b3";

/// The tests take turns: each app keeps the machine's cores busy.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// `load_app` on a free loopback port.
struct App {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    addr: String,
}

impl App {
    fn start(token: Option<&str>) -> App {
        App::start_on(&format!("127.0.0.1:{}", free_port()), token)
    }

    fn start_on(addr: &str, token: Option<&str>) -> App {
        let mut command = Command::new(env!("CARGO_BIN_EXE_load_app"));
        command
            .env("TASKSCOPE_ADDR", addr)
            .env("LOAD_APP_IDLE", "100")
            // No slow-poll stacks: on a loaded machine a descheduled worker
            // looks blocked, and symbolizing its stack costs ~100 MB of RSS
            // that has nothing to do with viewers.
            .env("TASKSCOPE_SLOW_POLL_MS", "600000")
            .env("LOAD_APP_CONCURRENCY", "2")
            .env_remove("TASKSCOPE_TOKEN")
            .env_remove("TASKSCOPE_REPORT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = token {
            command.env("TASKSCOPE_TOKEN", token);
        }
        let mut child = command.spawn().expect("start load_app");
        let (stderr, _reader) = taskscope_tests::collect_stderr(child.stderr.take().unwrap());
        let mut app = App {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            stderr,
            addr: addr.replace("0.0.0.0", "127.0.0.1"),
        };
        let mut line = String::new();
        app.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "stderr:\n{}", app.stderr());
        app
    }

    fn server(&self) -> ServerAddr {
        ServerAddr::parse(&self.addr).unwrap()
    }

    fn count(&mut self) -> u64 {
        writeln!(self.stdin, "count").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a count: {line:?}; stderr:\n{}", self.stderr()))
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The app still works: its counter advances, and a real client call
    /// (the task listing, with `token`) succeeds.
    async fn still_serves(&mut self, token: Option<&Token>, after: &str) {
        let before = self.count();
        let listing = client::list_tasks_with(&self.server(), token)
            .await
            .unwrap_or_else(|e| panic!("after {after}: {e}; app stderr:\n{}", self.stderr()));
        assert_eq!(listing.app.pid, self.child.id(), "after {after}");
        assert!(
            listing
                .tasks
                .iter()
                .any(|t| t.task.name.as_deref() == Some("idle-7")),
            "after {after}"
        );
        let deadline = Instant::now() + WAIT;
        while self.count() <= before {
            assert!(
                Instant::now() < deadline,
                "after {after}: the app made no progress"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `bytes` on a fresh connection; returns what came back before the
/// server closed it.
async fn send_raw(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut back = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => back.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open; it sent {back:?}"
    );
    back
}

/// A gRPC call's outcome, read off the wire.
#[derive(Debug)]
struct Reply {
    code: i32,
    message: String,
    /// Bytes of response messages before the status.
    data: usize,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(text.get(i + 1..i + 3).unwrap_or(""), 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reply_of(headers: &http::HeaderMap, data: usize) -> Option<Reply> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some(Reply {
        code,
        message,
        data,
    })
}

/// One gRPC call over a raw HTTP/2 connection: `body` is sent as is (gRPC
/// framing included), with `headers` added.
async fn raw_call(addr: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let (response, mut send) = h2.send_request(request.body(()).unwrap(), false).unwrap();
    // The server may answer (and end the stream) before it has the body: a
    // refused token, say. Then there is nothing left to send.
    let _ = send.send_data(Bytes::from(body), true);
    let response = tokio::time::timeout(WAIT, response)
        .await
        .expect("an answer in time")
        .expect("an HTTP/2 response");
    assert_eq!(response.status(), 200);
    let (parts, mut body) = response.into_parts();
    if let Some(reply) = reply_of(&parts.headers, 0) {
        return reply;
    }
    let mut data = 0;
    let read = async {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("response data");
            data += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        body.trailers().await
    };
    let trailers = tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("{path}: no status in {WAIT:?} (a stream that goes on?)"))
        .expect("trailers")
        .expect("a status in the trailers");
    reply_of(&trailers, data).expect("grpc-status")
}

/// `message` in gRPC framing (uncompressed, its true length).
fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

const LIST_TASKS: &str = "/taskscope.v1.Taskscope/ListTasks";
const TASK_DETAIL: &str = "/taskscope.v1.Taskscope/TaskDetail";
const WATCH: &str = "/taskscope.v1.Taskscope/Watch";

const OUT_OF_RANGE: i32 = tonic::Code::OutOfRange as i32;
const INVALID_ARGUMENT: i32 = tonic::Code::InvalidArgument as i32;
const UNIMPLEMENTED: i32 = tonic::Code::Unimplemented as i32;
const UNAUTHENTICATED: i32 = tonic::Code::Unauthenticated as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_http2_are_refused_and_the_server_goes_on() {
    let _turn = serial().await;
    let mut app = App::start(None);
    // A connection that says nothing at all: it does not stop the others, and
    // it is closed after the server's 10 s wait for the HTTP/2 preface.
    let silent = tokio::net::TcpStream::connect(&app.addr).await.unwrap();
    app.still_serves(None, "start with a silent connection")
        .await;

    // Random bytes: closed, nothing said.
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let back = send_raw(&app.addr, &noise).await;
    assert!(back.is_empty(), "{back:?}");
    app.still_serves(None, "random bytes").await;

    // An HTTP/1 request: told what this port speaks.
    let back = send_raw(
        &app.addr,
        b"GET / HTTP/1.1\r\nhost: localhost\r\nuser-agent: curl/8\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&back);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(
        text.contains("taskscope's viewer server: it speaks gRPC over HTTP/2 only"),
        "{text}"
    );
    app.still_serves(None, "an HTTP/1 request").await;

    // A TLS ClientHello: a TLS alert back.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0x31, 0x01, 0x00, 0x00, 0x2d, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[0x5a; 32]);
    hello.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00, 0x00, 0x00]);
    let back = send_raw(&app.addr, &hello).await;
    assert!(
        back.starts_with(&[0x15, 0x03]),
        "a TLS alert record: {back:?}"
    );
    app.still_serves(None, "a TLS ClientHello").await;

    // The HTTP/2 preface, then garbage frames: HTTP/2's own error, then closed.
    let mut bad_frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bad_frames.extend_from_slice(&noise[..512]);
    send_raw(&app.addr, &bad_frames).await;
    app.still_serves(None, "garbage HTTP/2 frames").await;

    let mut silent = silent;
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(WAIT, silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection is closed: {closed:?}"
    );
    app.still_serves(None, "a silent connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_garbage_grpc_messages_get_a_clear_status_and_the_server_goes_on() {
    let _turn = serial().await;
    let mut app = App::start(None);

    // A length prefix of 1 GiB: refused from the prefix, before anything is read.
    let mut huge = vec![0u8];
    huge.extend_from_slice(&(1u32 << 30).to_be_bytes());
    huge.extend_from_slice(b"tail");
    let reply = raw_call(&app.addr, WATCH, &[], huge).await;
    assert_eq!(reply.code, OUT_OF_RANGE, "{reply:?}");
    assert!(
        reply.message.contains("message length too large") && reply.message.contains("1073741824"),
        "{reply:?}"
    );
    app.still_serves(None, "a 1 GiB length prefix").await;

    // A real 100 kB message: over the 4 KiB limit of a request.
    let reply = raw_call(&app.addr, LIST_TASKS, &[], framed(&vec![0x08; 100_000])).await;
    assert_eq!(reply.code, OUT_OF_RANGE, "{reply:?}");
    assert!(reply.message.contains("100000"), "{reply:?}");
    app.still_serves(None, "a 100 kB request").await;

    // Not a protobuf message at all (field 1 with wire type 7).
    for path in [WATCH, LIST_TASKS, TASK_DETAIL] {
        let reply = raw_call(&app.addr, path, &[], framed(b"\x0f\xff\xffgarbage")).await;
        assert_eq!(reply.code, INVALID_ARGUMENT, "{path}: {reply:?}");
        let call = path.rsplit('/').next().unwrap();
        assert!(
            reply.message.starts_with(&format!(
                "the {call} request (10 bytes) is not a taskscope.v1 message"
            )),
            "{path}: {reply:?}"
        );
    }
    app.still_serves(None, "garbage messages").await;

    // A call that does not exist, of this service or another.
    for path in [
        "/taskscope.v1.Taskscope/Nope",
        "/grpc.health.v1.Health/Check",
    ] {
        let reply = raw_call(&app.addr, path, &[], framed(b"")).await;
        assert_eq!(reply.code, UNIMPLEMENTED, "{path}: {reply:?}");
        assert!(reply.message.contains(path), "{reply:?}");
    }
    app.still_serves(None, "unknown calls").await;
}

async fn tonic_client(addr: &str) -> TaskscopeClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    TaskscopeClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_task_or_another_protocol_version_is_a_clear_status() {
    let _turn = serial().await;
    let mut app = App::start(None);
    let mut raw = tonic_client(&app.addr).await;

    let status = raw
        .task_detail(proto::TaskDetailRequest {
            protocol_version: PROTOCOL_VERSION,
            id: 987_654_321,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("task 987654321 is neither alive nor"),
        "{status:?}"
    );
    let err = client::task_detail_with(&app.server(), 987_654_321, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("task 987654321"), "{err}");

    // A viewer newer or older than the app, on every call.
    for viewer in [PROTOCOL_VERSION + 1, 0] {
        let both = |status: tonic::Status| {
            assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
            let want = format!(
                "the app speaks protocol version {PROTOCOL_VERSION}, the viewer version {viewer}"
            );
            assert!(status.message().contains(&want), "{status:?}");
        };
        both(
            raw.watch(proto::WatchRequest {
                protocol_version: viewer,
            })
            .await
            .unwrap_err(),
        );
        both(
            raw.list_tasks(proto::ListTasksRequest {
                protocol_version: viewer,
                include_finished: false,
                ..Default::default()
            })
            .await
            .unwrap_err(),
        );
        both(
            raw.task_detail(proto::TaskDetailRequest {
                protocol_version: viewer,
                id: 1,
                ..Default::default()
            })
            .await
            .unwrap_err(),
        );
    }
    app.still_serves(None, "version mismatches").await;
}

/// Runs `viewer_proc dump ADDR` with `token` as its `TASKSCOPE_TOKEN`.
fn dump(addr: &str, token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_viewer_proc"));
    command.args(["dump", addr]).env_remove("TASKSCOPE_TOKEN");
    if let Some(token) = token {
        command.env("TASKSCOPE_TOKEN", token);
    }
    command.output().expect("run viewer_proc")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_a_token_refuses_calls_without_it_and_never_echoes_it() {
    let _turn = serial().await;
    let mut app = App::start(Some(TOKEN));
    let right = Token::new(TOKEN).unwrap();
    let wrong_text = "s3cret-9f2c41d7a0b4";
    let wrong = Token::new(wrong_text).unwrap();

    // On the wire: UNAUTHENTICATED, saying what is missing, echoing nothing.
    for (header, expect) in [
        (None, "this app requires a token"),
        (Some("Bearer".to_string()), "this app requires a token"),
        (Some(format!("Bearer {wrong_text}")), "wrong token"),
        (Some(format!("Bearer {TOKEN}x")), "wrong token"),
        (Some(TOKEN.to_string()), "this app requires a token"),
    ] {
        for path in [WATCH, LIST_TASKS, TASK_DETAIL] {
            let headers: Vec<(&str, &str)> = header
                .iter()
                .map(|h| ("authorization", h.as_str()))
                .collect();
            let reply = raw_call(&app.addr, path, &headers, framed(b"\x08\x01")).await;
            assert_eq!(reply.code, UNAUTHENTICATED, "{header:?} {path}: {reply:?}");
            assert!(reply.message.starts_with(expect), "{reply:?}");
            assert!(reply.message.contains("TASKSCOPE_TOKEN"), "{reply:?}");
            assert!(!reply.message.contains("s3cret"), "echoed: {reply:?}");
            assert_eq!(reply.data, 0, "nothing of the app before the check");
        }
    }

    // Through the client API.
    let missing = client::list_tasks_with(&app.server(), None)
        .await
        .unwrap_err();
    assert_eq!(
        missing,
        ClientError::Unauthenticated {
            addr: app.addr.clone(),
            wrong: false
        }
    );
    assert!(
        missing
            .to_string()
            .starts_with(&format!("the app at {} requires TASKSCOPE_TOKEN", app.addr)),
        "{missing}"
    );
    let refused = client::list_tasks_with(&app.server(), Some(&wrong))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ClientError::Unauthenticated { wrong: true, .. }),
        "{refused:?}"
    );
    assert!(!refused.to_string().contains("s3cret"), "{refused}");
    let detail = client::task_detail_with(&app.server(), 1, None)
        .await
        .unwrap_err();
    assert!(
        matches!(detail, ClientError::Unauthenticated { .. }),
        "{detail:?}"
    );

    // The live view: an Incompatible state saying so, and no retry.
    for token in [None, Some(wrong.clone())] {
        let (tx, mut updates) = mpsc::channel(64);
        let (_requests, requests_rx) = mpsc::channel(8);
        tokio::spawn(client::watch_with(app.server(), token, tx, requests_rx));
        let mut seen = Vec::new();
        let reason = loop {
            match tokio::time::timeout(WAIT, updates.recv()).await {
                Ok(Some(Update::Connection(Connection::Incompatible { reason, .. }))) => {
                    break reason;
                }
                Ok(Some(other)) => seen.push(format!("{other:?}")),
                other => panic!("no Incompatible state: {other:?} after {seen:?}"),
            }
        };
        assert!(
            reason.starts_with(&format!("the app at {} requires TASKSCOPE_TOKEN", app.addr)),
            "{reason}"
        );
        assert!(!reason.contains("s3cret"), "{reason}");
        let end = tokio::time::timeout(WAIT, updates.recv()).await;
        assert!(
            matches!(end, Ok(None)),
            "the client stops after it: {end:?}"
        );
    }

    // dump: one line naming the cause, exit status 1, nothing on stdout.
    for (token, want) in [
        (
            None,
            "requires TASKSCOPE_TOKEN: set it in the viewer's environment",
        ),
        (
            Some(wrong_text),
            "requires TASKSCOPE_TOKEN, and refused this viewer's",
        ),
        (
            Some("two words"),
            "TASKSCOPE_TOKEN cannot be used: it must be printable",
        ),
    ] {
        let out = dump(&app.addr, token);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{token:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{token:?}");
        assert_eq!(stderr.lines().count(), 1, "{token:?}: {stderr}");
        assert!(stderr.starts_with("taskscope dump: "), "{stderr}");
        assert!(stderr.contains(want), "{token:?}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }

    // With the token: everything works, and the app never printed it.
    app.still_serves(Some(&right), "refused calls").await;
    let out = dump(&app.addr, Some(TOKEN));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("idle-7"));
    let detail = client::task_detail_with(&app.server(), u64::MAX, Some(&right))
        .await
        .unwrap_err();
    assert!(matches!(detail, ClientError::NotFound { .. }), "{detail:?}");
    assert!(!app.stderr().contains("s3cret"), "{}", app.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_warns_and_says_whether_a_token_guards_it() {
    let _turn = serial().await;
    for token in [None, Some(TOKEN)] {
        let mut app = App::start_on(&format!("0.0.0.0:{}", free_port()), token);
        let right = token.map(|t| Token::new(t).unwrap());
        app.still_serves(right.as_ref(), "start").await;
        let stderr = app.stderr();
        let warning: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("which is not a loopback address"))
            .collect();
        assert_eq!(warning.len(), 1, "{stderr}");
        assert!(warning[0].contains("task names and stacks"), "{stderr}");
        let guarded = warning[0].contains("viewers must send TASKSCOPE_TOKEN");
        assert_eq!(guarded, token.is_some(), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
    // On loopback (the default kind of address): no warning.
    let mut app = App::start(None);
    app.still_serves(None, "start").await;
    assert!(!app.stderr().contains("loopback"), "{}", app.stderr());
}

/// An HTTP/2 connection that says nothing after its handshake; `done`
/// finishes when the server closes it.
struct IdleConnection {
    _h2: h2::client::SendRequest<Bytes>,
    done: tokio::task::JoinHandle<()>,
}

async fn idle_connection(addr: &str) -> IdleConnection {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    let done = tokio::spawn(async move {
        let _ = connection.await;
    });
    IdleConnection { _h2: h2, done }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_lock_a_viewer_out_and_are_closed() {
    let _turn = serial().await;
    let mut app = App::start(None);
    // A real viewer watching all along: its connection carries a call.
    let (tx, mut updates) = mpsc::channel(256);
    let (_requests, requests_rx) = mpsc::channel(8);
    tokio::spawn(client::watch_with(app.server(), None, tx, requests_rx));
    loop {
        match tokio::time::timeout(WAIT, updates.recv()).await {
            Ok(Some(Update::Snapshot { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("no snapshot: {other:?}"),
        }
    }

    // Every other slot (128 in all) taken by a connection that never calls.
    let mut idle = Vec::new();
    for _ in 0..127 {
        idle.push(idle_connection(&app.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // A viewer still gets in: the connection idle longest makes room.
    app.still_serves(None, "128 idle connections").await;
    let closed_at_once = idle.iter().filter(|c| c.done.is_finished()).count();
    assert!(closed_at_once >= 1, "one made room");

    // All are closed within two idle periods (5 s each).
    for connection in idle {
        tokio::time::timeout(WAIT, connection.done)
            .await
            .expect("an idle connection is closed")
            .unwrap();
    }
    // The watching viewer was not: it still gets its deltas, on its first connection.
    let mut states = Vec::new();
    let mut deltas = 0;
    while deltas < 3 {
        match tokio::time::timeout(WAIT, updates.recv()).await {
            Ok(Some(Update::Delta { .. })) => deltas += 1,
            Ok(Some(Update::Connection(state))) => states.push(state),
            Ok(Some(_)) => {}
            other => panic!("the viewer stopped: {other:?}"),
        }
    }
    assert!(
        !states
            .iter()
            .any(|s| matches!(s, Connection::Disconnected { .. })),
        "{states:?}"
    );
    app.still_serves(None, "idle connections closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_brute_force_is_slowed_and_closed_and_the_right_token_is_served() {
    let _turn = serial().await;
    let mut app = App::start(Some(TOKEN));
    let right = Token::new(TOKEN).unwrap();

    // One connection guessing: refused three times, then closed.
    let tcp = tokio::net::TcpStream::connect(&app.addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut refused = 0;
    for guess in 0..10 {
        let request = http::Request::post(format!("http://{}{LIST_TASKS}", app.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer guess-{guess:012}"))
            .body(())
            .unwrap();
        h2 = match h2.ready().await {
            Ok(ready) => ready,
            Err(_) => break,
        };
        let Ok((response, mut send)) = h2.send_request(request, false) else {
            break;
        };
        let _ = send.send_data(Bytes::from(framed(b"\x08\x01")), true);
        match tokio::time::timeout(WAIT, response).await {
            Ok(Ok(response)) => {
                let reply = reply_of(response.headers(), 0).expect("a status");
                assert_eq!(reply.code, UNAUTHENTICATED, "{reply:?}");
                refused += 1;
            }
            Ok(Err(_)) => break,
            Err(_) => panic!("no answer to guess {guess}"),
        }
    }
    assert_eq!(
        refused, 3,
        "three guesses on one connection, then it is closed"
    );
    tokio::time::timeout(WAIT, connection)
        .await
        .expect("the guessing connection is closed")
        .unwrap();

    // Guessing on fresh connections: at most 5 refusals a second (after a
    // burst of 10), while the right token is served at once and the app
    // keeps working.
    let addr = app.addr.clone();
    let guesses: u64 = 40;
    let brute = tokio::spawn(async move {
        let started = Instant::now();
        for guess in 0..guesses {
            let header = format!("Bearer guess-{guess:012}");
            let reply = raw_call(
                &addr,
                LIST_TASKS,
                &[("authorization", &header)],
                framed(b""),
            )
            .await;
            assert_eq!(reply.code, UNAUTHENTICATED, "{reply:?}");
        }
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let served = Instant::now();
    app.still_serves(Some(&right), "a brute force of the token")
        .await;
    let served = served.elapsed();
    let took = brute.await.unwrap();
    // 40 guesses with 3 made before: 33 beyond the burst, 200 ms apart.
    assert!(
        took >= Duration::from_millis(200 * (guesses + 3 - 10) * 9 / 10),
        "{guesses} guesses took {took:?}"
    );
    assert!(
        served < took,
        "the right token waited for the guesses: {served:?} (guesses {took:?})"
    );
    println!("{guesses} guesses took {took:?}; the right token was served in {served:?}");
    let stderr = app.stderr();
    assert!(
        stderr.contains("3 calls with a wrong or missing token"),
        "{stderr}"
    );
    assert!(!stderr.contains("guess-"), "{stderr}");
}
