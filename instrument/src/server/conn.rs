//! Accepting connections, before gRPC sees them.
//!
//! - At most [`MAX_CONNECTIONS`] at once. Past that, the connection idle
//!   longest (no authenticated call in progress for at least [`EVICT_AFTER`])
//!   is closed to make room; when none is idle, the new one is closed at once
//!   (so a flood of connections costs the app file descriptors and memory up
//!   to a bound, never more, and idle ones cannot lock a viewer out).
//! - Each must open with the HTTP/2 client preface within [`PREFACE_TIMEOUT`].
//!   One that says something else is answered in its own terms and closed: an
//!   HTTP/1 request gets `400 Bad Request` with a sentence saying what this
//!   port speaks, a TLS ClientHello gets a TLS alert, anything else is just
//!   closed. None of it reaches tonic, and none of it holds a slot for long.
//! - A connection with no authenticated call in progress for [`IDLE_TIMEOUT`]
//!   is closed (checked each [`IDLE_TIMEOUT`]: closed between one and two
//!   [`IDLE_TIMEOUT`]s after its last call ended, or after it opened).
//! - What a client sends is read no faster than the server's CPU budget
//!   allows ([`Budget::debt`]), and its frames are counted by type
//!   ([`super::frames`]): a connection that floods is closed, with one line on
//!   stderr (at most one such line each [`NOTICE_INTERVAL`]).
//! - Each connection carries a [`ConnControl`] (in the request extensions, as
//!   [`ConnInfo`]): the calls in progress on it, its failed token attempts,
//!   and the switch through which the server closes it (a dropped viewer that
//!   does not read its reason, an answer not read in time, too many wrong
//!   tokens, an eviction).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use crate::server::budget::Budget;
use crate::server::frames::FrameCounter;
use crate::server::listen::Listener;
use crate::sync::lock;

/// Connections open at once, at most.
pub(crate) const MAX_CONNECTIONS: usize = 128;

/// Connections being closed to make room that may still hold a slot, at most
/// (an evicted connection lets go of its slot as soon as the server sees it
/// closed).
const EVICTING: usize = 16;

/// How long a connection must have been idle to be closed for a new one.
pub(crate) const EVICT_AFTER: Duration = Duration::from_secs(1);

/// How long a connection may go without an authenticated call in progress.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a new connection may take to send the HTTP/2 preface.
pub(crate) const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most one line on stderr about floods in this long.
pub(crate) const NOTICE_INTERVAL: Duration = Duration::from_secs(10);

/// What every HTTP/2 connection starts with (RFC 9113, 3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What an HTTP/1 client is told (the body of a `400 Bad Request`).
pub(crate) const HTTP1_MESSAGE: &str = "This is taskscope's viewer server: it speaks gRPC over \
     HTTP/2 only. Use `taskscope attach HOST:PORT` or `taskscope dump HOST:PORT`.\n";

/// The answer to an HTTP/1 request.
pub(crate) fn http1_reply() -> String {
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{HTTP1_MESSAGE}",
        HTTP1_MESSAGE.len()
    )
}

/// A fatal TLS alert (`handshake_failure`) in a TLS 1.0 record: this port
/// speaks no TLS.
const TLS_ALERT: &[u8] = &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28];

/// One connection's state as the server sees it, and the switch that closes
/// it from outside.
#[derive(Debug)]
pub(crate) struct ConnControl {
    closed: AtomicBool,
    waker: Mutex<Option<Waker>>,
    /// Wakes the check of the connection's opening when it is closed.
    closing: Notify,
    activity: Mutex<Activity>,
}

#[derive(Debug)]
struct Activity {
    /// Authenticated calls in progress.
    calls: usize,
    /// When the last one ended (or the connection opened).
    idle_since: Instant,
    /// Calls refused for a wrong or missing token.
    failed_tokens: u32,
}

impl Default for ConnControl {
    fn default() -> ConnControl {
        ConnControl {
            closed: AtomicBool::new(false),
            waker: Mutex::new(None),
            closing: Notify::new(),
            activity: Mutex::new(Activity {
                calls: 0,
                idle_since: Instant::now(),
                failed_tokens: 0,
            }),
        }
    }
}

impl ConnControl {
    /// Closes the connection: its next read or write fails, and a pending
    /// read is woken for that.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
        self.closing.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// An authenticated call started on this connection.
    pub(crate) fn call_started(&self) {
        lock(&self.activity).calls += 1;
    }

    /// An authenticated call ended (its answer was sent, or dropped).
    pub(crate) fn call_ended(&self) {
        let mut activity = lock(&self.activity);
        activity.calls = activity.calls.saturating_sub(1);
        if activity.calls == 0 {
            activity.idle_since = Instant::now();
        }
    }

    /// Since when the connection has had no authenticated call in progress;
    /// `None` while it has one.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let activity = lock(&self.activity);
        (activity.calls == 0).then_some(activity.idle_since)
    }

    /// Counts a call refused for its token; returns how many were, so far.
    pub(crate) fn token_failed(&self) -> u32 {
        let mut activity = lock(&self.activity);
        activity.failed_tokens += 1;
        activity.failed_tokens
    }

    fn register(&self, cx: &Context<'_>) {
        let mut waker = lock(&self.waker);
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
    }
}

/// What a request knows of its connection (a request extension).
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    /// The peer, for TCP.
    pub(crate) peer: Option<SocketAddr>,
    /// The connection's control.
    pub(crate) control: Arc<ConnControl>,
}

impl ConnInfo {
    /// The peer as text for a log line: ` 127.0.0.1:51234`, or nothing.
    pub(crate) fn peer_text(&self) -> String {
        self.peer.map(|p| format!(" {p}")).unwrap_or_default()
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Stream {
    fn io(self: Pin<&mut Self>) -> Pin<&mut (dyn AsyncReadWrite + '_)> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s),
        }
    }
}

impl Stream {
    /// Reads what is there (0 at the end).
    async fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| {
            let mut read = ReadBuf::new(&mut *buf);
            match Pin::new(&mut *self).io().poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Writes all of `bytes`, then shuts the writing side down.
    async fn write_and_close(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n =
                std::future::poll_fn(|cx| Pin::new(&mut *self).io().poll_write(cx, bytes)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
        }
        std::future::poll_fn(|cx| Pin::new(&mut *self).io().poll_shutdown(cx)).await
    }
}

trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> AsyncReadWrite for T {}

/// Frees a connection slot when dropped, and marks its connection closed
/// (so it is never chosen to make room again).
struct Slot {
    open: Arc<AtomicUsize>,
    control: Arc<ConnControl>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.control.closed.store(true, Ordering::Release);
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection that opened with the HTTP/2 preface: the preface is replayed
/// to the HTTP/2 server, then the bytes of the socket follow, read within the
/// server's budget and counted frame by frame.
pub(crate) struct Conn {
    stream: Stream,
    replayed: usize,
    info: ConnInfo,
    budget: Arc<Budget>,
    frames: FrameCounter,
    /// While the budget is in debt: the end of the wait before the next read.
    throttle: Option<Pin<Box<Sleep>>>,
    /// When to look whether the connection idles.
    idle_check: Pin<Box<Sleep>>,
    _slot: Slot,
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed by taskscope (a viewer that did not read, an idle connection, a flood, \
         too many wrong tokens)",
    )
}

/// One line on stderr, unless one was printed less than [`NOTICE_INTERVAL`]
/// ago (then it is counted, and the count said with the next line).
pub(crate) fn notice(line: impl FnOnce() -> String) {
    static LAST: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));
    let mut last = lock(&LAST);
    let now = Instant::now();
    if last
        .0
        .is_some_and(|at| now.duration_since(at) < NOTICE_INTERVAL)
    {
        last.1 += 1;
        return;
    }
    let skipped = std::mem::take(&mut last.1);
    last.0 = Some(now);
    drop(last);
    if skipped > 0 {
        eprintln!(
            "{} ({skipped} more like it in the last {} s not shown)",
            line(),
            NOTICE_INTERVAL.as_secs()
        );
    } else {
        eprintln!("{}", line());
    }
}

impl Conn {
    /// Whether the connection may read now: not while the budget is in
    /// debt (then `cx` is woken when it is repaid).
    fn budget_allows(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if let Some(wait) = &mut self.throttle {
                if wait.as_mut().poll(cx).is_pending() {
                    return false;
                }
                self.throttle = None;
            }
            match self.budget.debt() {
                None => return true,
                Some(debt) => self.throttle = Some(Box::pin(tokio::time::sleep(debt))),
            }
        }
    }

    /// Whether the connection has idled past [`IDLE_TIMEOUT`]; otherwise the
    /// next check is set (and `cx` woken for it).
    fn idled(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle_check.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let next = match self.info.control.idle_since() {
                Some(since) if now.duration_since(since) >= IDLE_TIMEOUT => return true,
                Some(since) => since + IDLE_TIMEOUT,
                None => now + IDLE_TIMEOUT,
            };
            self.idle_check.as_mut().reset(next);
        }
        false
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.info.control.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        if this.replayed < PREFACE.len() {
            let rest = &PREFACE[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        if this.idled(cx) {
            this.info.control.close();
            return Poll::Ready(Err(closed_error()));
        }
        if !this.budget_allows(cx) {
            this.info.control.register(cx);
            // Closed between the check and the registration: say so now.
            if this.info.control.is_closed() {
                return Poll::Ready(Err(closed_error()));
            }
            return Poll::Pending;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).io().poll_read(cx, buf) {
            Poll::Pending => {
                this.info.control.register(cx);
                // Closed between the check and the registration: say so now.
                if this.info.control.is_closed() {
                    return Poll::Ready(Err(closed_error()));
                }
                Poll::Pending
            }
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if let Err(flood) = this.frames.received(read, Instant::now()) {
                    let peer = this.info.peer_text();
                    notice(|| format!("taskscope: closed the connection of{peer}: {flood}"));
                    this.info.control.close();
                    return Poll::Ready(Err(closed_error()));
                }
                Poll::Ready(Ok(()))
            }
            ready => ready,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.info.control.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        let written = Pin::new(&mut this.stream).io().poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.frames.sent(&buf[..n]);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.info.control.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        let written = Pin::new(&mut this.stream)
            .io()
            .poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = written {
            for buf in bufs {
                let part = n.min(buf.len());
                this.frames.sent(&buf[..part]);
                n -= part;
                if n == 0 {
                    break;
                }
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Tcp(s) => s.is_write_vectored(),
            #[cfg(unix)]
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).io().poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// How the first bytes of a connection compare with the preface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// All of the preface.
    Http2,
    /// A prefix of it so far: read on.
    Partial,
    /// An HTTP/1 request line (a method, a space).
    Http1,
    /// A TLS handshake record.
    Tls,
    /// Anything else.
    Other,
}

/// Classifies the bytes a connection opened with (as many as came so far:
/// `Partial` asks for more).
pub(crate) fn classify(first: &[u8]) -> Opening {
    let n = first.len().min(PREFACE.len());
    if first[..n] == PREFACE[..n] {
        return if n == PREFACE.len() {
            Opening::Http2
        } else {
            Opening::Partial
        };
    }
    if first[0] == 0x16 {
        return match first.get(1) {
            None => Opening::Partial,
            Some(0x03) => Opening::Tls,
            Some(_) => Opening::Other,
        };
    }
    let method_len = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if method_len == first.len() && method_len <= 7 {
        return Opening::Partial; // Still in what may be a method name.
    }
    if (3..=7).contains(&method_len) && first[method_len] == b' ' {
        return Opening::Http1;
    }
    Opening::Other
}

/// Reads the opening of `stream`; answers and closes one that is not HTTP/2
/// (or that `control` closes meanwhile, to make room).
async fn check(mut stream: Stream, control: &ConnControl) -> Option<Stream> {
    let mut first = Vec::with_capacity(PREFACE.len());
    let read = tokio::time::timeout(PREFACE_TIMEOUT, async {
        let mut buf = [0u8; PREFACE.len()];
        loop {
            let want = PREFACE.len() - first.len();
            let n = match stream.read_some(&mut buf[..want]).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            first.extend_from_slice(&buf[..n]);
            match classify(&first) {
                Opening::Partial => continue,
                other => return Some(other),
            }
        }
    });
    let opening = tokio::select! {
        opening = read => opening.ok().flatten()?,
        () = control.closing.notified() => return None,
    };
    let answer: Vec<u8> = match opening {
        Opening::Http2 => return Some(stream),
        Opening::Partial => unreachable!("read on until decided"),
        Opening::Http1 => http1_reply().into_bytes(),
        Opening::Tls => TLS_ALERT.to_vec(),
        Opening::Other => Vec::new(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_and_close(&answer)).await;
    None
}

/// The stream of checked connections tonic serves.
pub(crate) type Incoming = tokio_stream::wrappers::ReceiverStream<io::Result<Conn>>;

/// Starts accepting on `listener` (on the current runtime): connections that
/// open with the HTTP/2 preface come out of the returned stream. A new
/// connection waits for the server's CPU budget (so a client reconnecting in
/// a tight loop is slowed down, not served at the app's expense).
pub(crate) fn accept(listener: Listener, budget: Arc<Budget>) -> io::Result<Incoming> {
    let (tx, rx) = mpsc::channel(16);
    let mut acceptor = Acceptor {
        open: Arc::new(AtomicUsize::new(0)),
        conns: Vec::new(),
        budget,
        tx,
    };
    match listener {
        Listener::Tcp(listener) => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tokio::spawn(async move {
                loop {
                    let (stream, peer) = match listener.accept().await {
                        Ok(accepted) => accepted,
                        Err(_) => {
                            // Out of file descriptors, say: wait a little, never spin.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    acceptor.budget.wait().await;
                    if !acceptor.admit(Stream::Tcp(stream), Some(peer)) {
                        return;
                    }
                }
            });
        }
        #[cfg(unix)]
        Listener::Unix(listener) => {
            let listener = tokio::net::UnixListener::from_std(listener)?;
            tokio::spawn(async move {
                loop {
                    let stream = match listener.accept().await {
                        Ok((stream, _)) => stream,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    acceptor.budget.wait().await;
                    if !acceptor.admit(Stream::Unix(stream), None) {
                        return;
                    }
                }
            });
        }
    }
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// The accepting side: the slots, and the connections holding them.
struct Acceptor {
    /// Slots taken.
    open: Arc<AtomicUsize>,
    /// The connections that took them (and some that let go since).
    conns: Vec<Weak<ConnControl>>,
    budget: Arc<Budget>,
    tx: mpsc::Sender<io::Result<Conn>>,
}

impl Acceptor {
    /// Takes a slot for a new connection (making room if all are taken) and
    /// checks it on a task of its own. False when the server is gone.
    fn admit(&mut self, stream: Stream, peer: Option<SocketAddr>) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        let open = self.open.load(Ordering::Acquire);
        if open >= MAX_CONNECTIONS
            && (open >= MAX_CONNECTIONS + EVICTING || !self.make_room(Instant::now()))
        {
            drop(stream); // Over the limit, and none idle: closed at once.
            return true;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        let control = Arc::new(ConnControl::default());
        self.conns
            .retain(|c| c.upgrade().is_some_and(|c| !c.is_closed()));
        self.conns.push(Arc::downgrade(&control));
        let slot = Slot {
            open: Arc::clone(&self.open),
            control: Arc::clone(&control),
        };
        let tx = self.tx.clone();
        let budget = Arc::clone(&self.budget);
        tokio::spawn(async move {
            if let Some(stream) = check(stream, &control).await {
                let now = Instant::now();
                let conn = Conn {
                    stream,
                    replayed: 0,
                    info: ConnInfo { peer, control },
                    budget,
                    frames: FrameCounter::new(now),
                    throttle: None,
                    idle_check: Box::pin(tokio::time::sleep_until(now + IDLE_TIMEOUT)),
                    _slot: slot,
                };
                let _ = tx.send(Ok(conn)).await;
            }
        });
        true
    }

    /// Closes the connection idle longest, if one has been for
    /// [`EVICT_AFTER`] at least: its slot is free once the server sees it
    /// closed. False when none is.
    fn make_room(&mut self, now: Instant) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| !c.is_closed())
            .filter_map(|c| c.idle_since().map(|since| (since, c)))
            .filter(|(since, _)| now.duration_since(*since) >= EVICT_AFTER)
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, control)) => {
                control.close();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openings_are_told_apart() {
        assert_eq!(classify(PREFACE), Opening::Http2);
        assert_eq!(classify(&PREFACE[..5]), Opening::Partial);
        assert_eq!(classify(b""), Opening::Partial);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Opening::Http1);
        assert_eq!(classify(b"OPTIONS * HTTP/1.1"), Opening::Http1);
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00]), Opening::Tls);
        assert_eq!(classify(b"PRX"), Opening::Partial, "a method, maybe");
        assert_eq!(classify(b"PRX "), Opening::Http1);
        assert_eq!(classify(b"PO"), Opening::Partial);
        assert_eq!(classify(&[0x16]), Opening::Partial);
        assert_eq!(classify(&[0x16, 0x17]), Opening::Other);
        assert_eq!(classify(b"ABCDEFGHIJ"), Opening::Other);
        assert_eq!(classify(b"GET\0"), Opening::Other);
        assert_eq!(classify(&[0xde, 0xad, 0xbe, 0xef]), Opening::Other);
    }

    #[test]
    fn the_http1_reply_has_the_length_it_says() {
        let reply = http1_reply();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        assert_eq!(body, HTTP1_MESSAGE);
    }
}
