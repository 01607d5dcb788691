//! What answers at an address, when a gRPC call failed without saying why (a
//! server that speaks something else usually just closes the connection, and
//! the HTTP/2 client reports a broken pipe). Sends the HTTP/2 connection
//! preface and an empty SETTINGS frame, and looks at the first bytes back.

use std::time::Duration;

use taskscope_api::ServerAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::error::ClientError;

/// How long the probe may take in all.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP/2 client preface, then a SETTINGS frame with no settings.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// What the probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Connection refused, or no socket file.
    NotListening,
    /// An HTTP/1 server (it answered `HTTP/1.x ...`).
    Http1,
    /// A TLS server (it answered with a TLS record).
    Tls,
    /// An HTTP/2 server (it answered with a SETTINGS frame): gRPC may work.
    Http2,
    /// A server that answered something else (garbage, another protocol).
    Other,
    /// Something that said nothing, or nothing in time.
    Unknown,
}

/// Classifies the first bytes a server sent back to the preface.
pub fn classify(first: &[u8]) -> Peer {
    if first.is_empty() {
        Peer::Unknown
    } else if first.starts_with(b"HTTP/") {
        Peer::Http1
    } else if first.len() >= 2 && matches!(first[0], 0x15 | 0x16) && first[1] == 0x03 {
        Peer::Tls
    } else if first.len() >= 9 && first[3] == 0x04 && first[5..9] == [0, 0, 0, 0] {
        // A SETTINGS frame (type 4) on stream 0: what an HTTP/2 server sends first.
        Peer::Http2
    } else if first.len() < 9 && b"HTTP/".starts_with(first) {
        Peer::Unknown
    } else {
        Peer::Other
    }
}

/// Probes `addr`.
pub async fn probe(addr: &ServerAddr) -> Peer {
    tokio::time::timeout(PROBE_TIMEOUT, probe_inner(addr))
        .await
        .unwrap_or(Peer::Unknown)
}

async fn probe_inner(addr: &ServerAddr) -> Peer {
    match addr {
        ServerAddr::Tcp(socket) => match tokio::net::TcpStream::connect(socket).await {
            Ok(stream) => exchange(stream).await,
            Err(e) => refused(&e),
        },
        #[cfg(unix)]
        ServerAddr::Unix(path) => match tokio::net::UnixStream::connect(path).await {
            Ok(stream) => exchange(stream).await,
            Err(e) => refused(&e),
        },
        _ => Peer::Unknown,
    }
}

fn refused(err: &std::io::Error) -> Peer {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => Peer::NotListening,
        _ => Peer::Unknown,
    }
}

async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin) -> Peer {
    if stream.write_all(PREFACE).await.is_err() {
        return Peer::Unknown;
    }
    let mut first = Vec::with_capacity(16);
    let mut buf = [0u8; 16];
    while first.len() < 9 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => first.extend_from_slice(&buf[..n]),
        }
        if first.starts_with(b"HTTP/") || classify(&first) == Peer::Tls {
            break;
        }
    }
    classify(&first)
}

/// A failure before the app answered anything: when it says no more than
/// "lost", ask the address what it speaks (an HTTP/1 or TLS server usually
/// just closes an HTTP/2 connection).
pub(crate) async fn diagnose(addr: &ServerAddr, err: ClientError) -> ClientError {
    if !matches!(err, ClientError::Lost { .. }) {
        return err;
    }
    match probe(addr).await {
        Peer::Http1 | Peer::Tls | Peer::Other => ClientError::NotGrpc {
            addr: addr.to_string(),
        },
        Peer::NotListening => ClientError::NotListening {
            addr: addr.to_string(),
        },
        Peer::Http2 | Peer::Unknown => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_the_protocol() {
        assert_eq!(classify(b"HTTP/1.1 400 Bad Request\r\n"), Peer::Http1);
        assert_eq!(
            classify(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]),
            Peer::Tls
        );
        assert_eq!(classify(&[0, 0, 6, 4, 0, 0, 0, 0, 0]), Peer::Http2);
        assert_eq!(classify(b""), Peer::Unknown);
        assert_eq!(classify(b"HTT"), Peer::Unknown, "too short to tell");
        assert_eq!(classify(&[0xa3; 16]), Peer::Other);
        assert_eq!(classify(b"SSH-2.0-OpenSSH_9.6\r\n"), Peer::Other);
        assert_eq!(
            classify(&[0, 0, 6, 4, 0, 0, 0, 0, 1]),
            Peer::Other,
            "not on stream 0"
        );
    }
}
