//! What can go wrong talking to an app, in words a person understands, and how
//! a transport error or a gRPC status maps to it.

use std::error::Error as _;
use std::io;

use taskscope_api::format::{MAX_TEXT, printable, truncate};

/// What a server (or the transport) said, as the viewer keeps it: at most
/// [`MAX_TEXT`] bytes, control characters made visible (it is printed to a
/// terminal, and it comes from whatever answered at the address).
fn shown(text: &str) -> String {
    truncate(&printable(text), MAX_TEXT).into_owned()
}

/// Why the viewer could not get (or keep) what it asked the app for. The text
/// names the address and says what to check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Connection refused, or no socket file: no app there.
    #[error(
        "nothing listens on {addr} — is the app running with taskscope, and TASKSCOPE_ADDR set to it?"
    )]
    NotListening {
        /// The address.
        addr: String,
    },
    /// Something answered, but it does not speak HTTP/2 gRPC.
    #[error("{addr} answered, but not with gRPC (HTTP/1? TLS?)")]
    NotGrpc {
        /// The address.
        addr: String,
    },
    /// A gRPC server with neither the taskscope service nor tokio-console's.
    #[error(
        "{addr} is a gRPC server, but speaks neither taskscope's protocol nor tokio-console's \
         (another service?)"
    )]
    NotTaskscope {
        /// The address.
        addr: String,
    },
    /// A taskscope server that speaks another protocol version.
    #[error("{addr}: {reason}")]
    Incompatible {
        /// The address.
        addr: String,
        /// Both versions, as the side that noticed put it.
        reason: String,
    },
    /// No answer in time.
    #[error("{addr} did not answer in time ({what})")]
    TimedOut {
        /// The address.
        addr: String,
        /// What was waited for.
        what: String,
    },
    /// The app dropped this viewer (it could not keep up).
    #[error("the app at {addr} dropped this viewer: {reason}")]
    Dropped {
        /// The address.
        addr: String,
        /// The app's reason.
        reason: String,
    },
    /// The task asked for is gone.
    #[error("{addr}: {reason}")]
    NotFound {
        /// The address.
        addr: String,
        /// The app's words.
        reason: String,
    },
    /// The app requires a token (`TASKSCOPE_TOKEN`), and this viewer sent
    /// none (`wrong: false`) or another one (`wrong: true`).
    #[error("{}", unauthenticated(addr, *wrong))]
    Unauthenticated {
        /// The address.
        addr: String,
        /// Whether a token was sent, but not the app's.
        wrong: bool,
    },
    /// The viewer's own `TASKSCOPE_TOKEN` cannot be sent.
    #[error("{reason}")]
    BadToken {
        /// Why (never the token itself).
        reason: String,
    },
    /// The connection was lost or broke down.
    #[error("lost the connection to {addr}: {detail}")]
    Lost {
        /// The address.
        addr: String,
        /// What happened.
        detail: String,
    },
}

fn unauthenticated(addr: &str, wrong: bool) -> String {
    if wrong {
        format!(
            "the app at {addr} requires TASKSCOPE_TOKEN, and refused this viewer's: \
             it is not the app's token"
        )
    } else {
        format!(
            "the app at {addr} requires TASKSCOPE_TOKEN: set it in the viewer's environment \
             to the app's token"
        )
    }
}

impl ClientError {
    /// Whether trying again later can help. An incompatible server, one
    /// without the taskscope service, or a token problem will not change by
    /// itself.
    pub fn retry(&self) -> bool {
        !matches!(
            self,
            ClientError::Incompatible { .. }
                | ClientError::NotTaskscope { .. }
                | ClientError::Unauthenticated { .. }
                | ClientError::BadToken { .. }
        )
    }

    /// Whether the server is not a taskscope server of this protocol version
    /// (what the live view shows as "incompatible").
    pub fn is_incompatible(&self) -> bool {
        !self.retry()
    }

    /// An error while connecting (or below gRPC).
    pub fn from_transport(addr: &str, err: &(dyn std::error::Error + 'static)) -> ClientError {
        let addr = addr.to_string();
        let mut text = String::new();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                match io.kind() {
                    io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::NotFound
                    | io::ErrorKind::AddrNotAvailable => return ClientError::NotListening { addr },
                    io::ErrorKind::TimedOut => {
                        return ClientError::TimedOut {
                            addr,
                            what: "connecting".into(),
                        };
                    }
                    _ => {}
                }
            }
            let here = e.to_string();
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&here);
            cur = e.source();
        }
        let lower = text.to_ascii_lowercase();
        if lower.contains("timed out") || lower.contains("timeout") {
            return ClientError::TimedOut {
                addr,
                what: "connecting".into(),
            };
        }
        if speaks_something_else(&lower) {
            return ClientError::NotGrpc { addr };
        }
        ClientError::Lost {
            addr,
            detail: shown(&text),
        }
    }

    /// An error status from a call (or from the stream of a call).
    pub fn from_status(addr: &str, status: &tonic::Status) -> ClientError {
        use tonic::Code;
        let message = shown(status.message());
        match status.code() {
            Code::Unimplemented => ClientError::NotTaskscope {
                addr: addr.to_string(),
            },
            Code::FailedPrecondition if message.contains("protocol") => ClientError::Incompatible {
                addr: addr.to_string(),
                reason: message,
            },
            Code::ResourceExhausted => ClientError::Dropped {
                addr: addr.to_string(),
                reason: message,
            },
            Code::NotFound => ClientError::NotFound {
                addr: addr.to_string(),
                reason: message,
            },
            Code::Unauthenticated => ClientError::Unauthenticated {
                addr: addr.to_string(),
                wrong: message.starts_with("wrong token"),
            },
            Code::DeadlineExceeded => ClientError::TimedOut {
                addr: addr.to_string(),
                what: "an answer".into(),
            },
            Code::OutOfRange if message.contains("message length too large") => ClientError::Lost {
                addr: addr.to_string(),
                detail: format!(
                    "the app sent a message bigger than the {} MiB a viewer reads ({message})",
                    crate::client::assemble::MAX_MESSAGE >> 20
                ),
            },
            _ => {
                if let Some(source) = status.source() {
                    let err = ClientError::from_transport(addr, source);
                    if !matches!(err, ClientError::Lost { .. }) {
                        return err;
                    }
                }
                let lower = message.to_ascii_lowercase();
                if speaks_something_else(&lower) {
                    ClientError::NotGrpc {
                        addr: addr.to_string(),
                    }
                } else {
                    let detail = if message.is_empty() {
                        format!("{:?}", status.code())
                    } else {
                        message
                    };
                    ClientError::Lost {
                        addr: addr.to_string(),
                        detail,
                    }
                }
            }
        }
    }
}

/// The peer answered in some other protocol: HTTP/2 framing errors (an HTTP/1
/// reply or a TLS record read as frames), or an HTTP reply that is not gRPC.
fn speaks_something_else(lower: &str) -> bool {
    [
        "frame with invalid size",
        "frame_size_error",
        "protocol_error",
        "protocol error",
        "invalid frame",
        "http2 error",
        "content-type",
        "invalid compression flag",
        "http status",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_reasons() {
        let addr = "127.0.0.1:6670";
        let e = ClientError::from_status(addr, &tonic::Status::unimplemented(""));
        assert_eq!(
            e.to_string(),
            "127.0.0.1:6670 is a gRPC server, but speaks neither taskscope's protocol nor \
             tokio-console's (another service?)"
        );
        assert!(e.is_incompatible());
        let e = ClientError::from_status(
            addr,
            &tonic::Status::failed_precondition("taskscope protocol mismatch: the app speaks 2"),
        );
        assert!(matches!(e, ClientError::Incompatible { .. }), "{e:?}");
        assert!(!e.retry());
        let e = ClientError::from_status(
            addr,
            &tonic::Status::resource_exhausted("viewer too slow: 16 updates behind"),
        );
        assert!(e.retry());
        assert!(e.to_string().contains("viewer too slow: 16 updates behind"));
    }

    #[test]
    fn unauthenticated_says_the_app_requires_the_token() {
        let addr = "127.0.0.1:6670";
        let missing = ClientError::from_status(
            addr,
            &tonic::Status::unauthenticated("this app requires a token: set TASKSCOPE_TOKEN"),
        );
        assert_eq!(
            missing.to_string(),
            "the app at 127.0.0.1:6670 requires TASKSCOPE_TOKEN: set it in the viewer's \
             environment to the app's token"
        );
        assert!(!missing.retry());
        let wrong = ClientError::from_status(
            addr,
            &tonic::Status::unauthenticated("wrong token: the viewer's TASKSCOPE_TOKEN ..."),
        );
        assert!(
            wrong
                .to_string()
                .starts_with("the app at 127.0.0.1:6670 requires TASKSCOPE_TOKEN, and refused"),
            "{wrong}"
        );
    }

    #[test]
    fn refused_is_nothing_listens() {
        let io = io::Error::from(io::ErrorKind::ConnectionRefused);
        let e = ClientError::from_transport("127.0.0.1:1", &io);
        assert_eq!(
            e.to_string(),
            "nothing listens on 127.0.0.1:1 — is the app running with taskscope, and TASKSCOPE_ADDR set to it?"
        );
    }

    #[test]
    fn what_a_server_says_is_kept_short_and_printable() {
        let addr = "127.0.0.1:6670";
        let hostile = format!(
            "taskscope protocol \u{1b}]52;c;aGk=\u{7}\u{9b}2J{}",
            "x".repeat(100_000)
        );
        for status in [
            tonic::Status::failed_precondition(hostile.clone()),
            tonic::Status::not_found(hostile.clone()),
            tonic::Status::internal(hostile.clone()),
            tonic::Status::resource_exhausted(hostile.clone()),
        ] {
            let text = ClientError::from_status(addr, &status).to_string();
            assert!(!text.chars().any(char::is_control), "{:?}", &text[..80]);
            assert!(
                text.contains("\\x1b]52;c;aGk=\\x07\\u{9b}2J"),
                "{}",
                &text[..80]
            );
            assert!(text.len() < 2 * MAX_TEXT, "{}", text.len());
            let whole = printable(&hostile).len();
            assert!(
                text.ends_with(&format!("[truncated, {whole} bytes]")),
                "{}",
                &text[text.len() - 40..]
            );
        }
        let io = io::Error::other("reset by \u{1b}[2Jpeer");
        let text = ClientError::from_transport(addr, &io).to_string();
        assert!(text.contains("reset by \\x1b[2Jpeer"), "{text}");
    }

    #[test]
    fn a_message_too_big_is_named_as_such() {
        let status = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 5242881 bytes, the limit is: 4194304 bytes",
        );
        let text = ClientError::from_status("127.0.0.1:6670", &status).to_string();
        assert!(
            text.starts_with(
                "lost the connection to 127.0.0.1:6670: the app sent a message bigger than the \
                 4 MiB a viewer reads (Error, decoded message length too large: found 5242881"
            ),
            "{text}"
        );
    }
}
