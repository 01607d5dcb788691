//! Accepting connections, before gRPC sees them.
//!
//! - At most [`MAX_CONNECTIONS`] at once: past that, a new one is closed at
//!   once (so a flood of connections costs the app file descriptors and
//!   memory up to a bound, never more).
//! - Each must open with the HTTP/2 client preface within [`PREFACE_TIMEOUT`].
//!   One that says something else is answered in its own terms and closed: an
//!   HTTP/1 request gets `400 Bad Request` with a sentence saying what this
//!   port speaks, a TLS ClientHello gets a TLS alert, anything else is just
//!   closed. None of it reaches tonic, and none of it holds a slot for long.
//! - Each connection carries a [`ConnControl`] (in the request extensions, as
//!   [`ConnInfo`]) through which the publisher closes the connection of a
//!   viewer it dropped and that does not read its reason.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tonic::transport::server::Connected;

use crate::server::budget::Budget;
use crate::server::listen::Listener;
use crate::sync::lock;

/// Connections open at once, at most.
pub(crate) const MAX_CONNECTIONS: usize = 128;

/// How long a new connection may take to send the HTTP/2 preface.
pub(crate) const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Lets the server close one connection from outside.
#[derive(Debug, Default)]
pub(crate) struct ConnControl {
    closed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl ConnControl {
    /// Closes the connection: its next read or write fails, and a pending
    /// read is woken for that.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
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

/// Frees a connection slot when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection that opened with the HTTP/2 preface: the preface is replayed
/// to the HTTP/2 server, then the bytes of the socket follow.
pub(crate) struct Conn {
    stream: Stream,
    replayed: usize,
    info: ConnInfo,
    _slot: Slot,
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed by taskscope: a dropped viewer that did not read",
    )
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
        match Pin::new(&mut this.stream).io().poll_read(cx, buf) {
            Poll::Pending => {
                let mut waker = lock(&this.info.control.waker);
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                drop(waker);
                // Closed between the check and the registration: say so now.
                if this.info.control.is_closed() {
                    return Poll::Ready(Err(closed_error()));
                }
                Poll::Pending
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
        Pin::new(&mut this.stream).io().poll_write(cx, buf)
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
        Pin::new(&mut this.stream)
            .io()
            .poll_write_vectored(cx, bufs)
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

/// Reads the opening of `stream`; answers and closes one that is not HTTP/2.
async fn check(mut stream: Stream) -> Option<Stream> {
    let mut first = Vec::with_capacity(PREFACE.len());
    let opening = tokio::time::timeout(PREFACE_TIMEOUT, async {
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
    })
    .await
    .ok()
    .flatten()?;
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
    let open = Arc::new(AtomicUsize::new(0));
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
                    budget.wait().await;
                    if !admit(Stream::Tcp(stream), Some(peer), &open, &tx) {
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
                    budget.wait().await;
                    if !admit(Stream::Unix(stream), None, &open, &tx) {
                        return;
                    }
                }
            });
        }
    }
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Takes a slot for a new connection and checks it on a task of its own.
/// False when the server is gone.
fn admit(
    stream: Stream,
    peer: Option<SocketAddr>,
    open: &Arc<AtomicUsize>,
    tx: &mpsc::Sender<io::Result<Conn>>,
) -> bool {
    if tx.is_closed() {
        return false;
    }
    if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        open.fetch_sub(1, Ordering::AcqRel);
        drop(stream); // Over the limit: closed at once.
        return true;
    }
    let slot = Slot(Arc::clone(open));
    let tx = tx.clone();
    tokio::spawn(async move {
        if let Some(stream) = check(stream).await {
            let conn = Conn {
                stream,
                replayed: 0,
                info: ConnInfo {
                    peer,
                    control: Arc::default(),
                },
                _slot: slot,
            };
            let _ = tx.send(Ok(conn)).await;
        }
    });
    true
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
