//! The optional shared token (`TASKSCOPE_TOKEN`): when the app has one, every
//! call must carry it as `authorization: Bearer <token>` gRPC metadata, or it
//! is refused with UNAUTHENTICATED before any of the app's data is read.
//!
//! The comparison takes the same time whatever bytes differ (it looks at
//! every byte of the token). It does leak the token's *length* (a token of
//! another length is refused at once): tokens are at least
//! [`crate::settings::MIN_TOKEN_LEN`] characters, so the length is no help to
//! a guesser. The token is never echoed: not in a status, not in a log line.
//!
//! Guessing is slowed down:
//!
//! - globally, refusals go out at most [`FAILURES_PER_SECOND`] a second
//!   (after a burst of [`FAILURE_BURST`]): a refused call waits for its turn
//!   before it gets its answer, and when that turn is more than
//!   [`MAX_FAILURE_DELAY`] away its connection is closed instead. A call with
//!   the right token never waits;
//! - a connection that sent [`MAX_FAILURES_PER_CONNECTION`] wrong or missing
//!   tokens is closed just after its last refusal, with one line on stderr.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tonic::Status;
use tonic::codegen::http::HeaderMap;

use crate::server::conn::{ConnInfo, notice};
use crate::sync::lock;

/// Refused calls answered a second, at most, across all connections.
pub(crate) const FAILURES_PER_SECOND: u32 = 5;

/// Refused calls answered at once after a quiet period.
pub(crate) const FAILURE_BURST: u32 = 10;

/// The longest a refused call waits for its answer; past that its
/// connection is closed instead.
pub(crate) const MAX_FAILURE_DELAY: Duration = Duration::from_secs(5);

/// Refused calls one connection may make; it is closed after the last.
pub(crate) const MAX_FAILURES_PER_CONNECTION: u32 = 3;

/// How long after its last refusal a connection with too many is closed
/// (time for the refusal to reach the client).
const CLOSE_AFTER: Duration = Duration::from_millis(200);

/// The metadata key the viewer sends the token in.
pub(crate) const HEADER: &str = "authorization";

/// The scheme before the token in [`HEADER`].
pub(crate) const SCHEME: &str = "Bearer ";

/// The message of a call without a token to an app that requires one.
pub(crate) const MISSING: &str = "this app requires a token: set TASKSCOPE_TOKEN in the viewer's \
     environment to the app's TASKSCOPE_TOKEN";

/// The message of a call with a token that is not the app's.
pub(crate) const WRONG: &str = "wrong token: the viewer's TASKSCOPE_TOKEN is not the app's \
     TASKSCOPE_TOKEN";

/// The app's token, if it requires one, and the pace of refusals.
#[derive(Default)]
pub(crate) struct Auth {
    token: Option<Vec<u8>>,
    /// When the next refusal may go out, less the burst (GCRA's theoretical
    /// arrival time).
    next_refusal: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

impl Auth {
    /// Requires `token` when it is `Some`.
    pub(crate) fn new(token: Option<&str>) -> Auth {
        Auth {
            token: token.map(|t| t.as_bytes().to_vec()),
            next_refusal: Mutex::new(None),
        }
    }

    /// The answer to a call on `conn` that [`Auth::check`] refused with
    /// `status`: after its turn among the refusals (see the module docs), and
    /// with the connection closed when it made too many.
    pub(crate) async fn refuse(&self, status: Status, conn: Option<ConnInfo>) -> Status {
        let now = Instant::now();
        let Some(delay) = self.refusal_delay(now) else {
            if let Some(conn) = &conn {
                let peer = conn.peer_text();
                notice(|| {
                    format!(
                        "taskscope: closed the connection of{peer}: too many calls with a wrong \
                         or missing token (refused at most {FAILURES_PER_SECOND} a second)"
                    )
                });
                conn.control.close();
            }
            return status;
        };
        let failed = conn.as_ref().map_or(0, |c| c.control.token_failed());
        if let Some(conn) = &conn
            && failed > MAX_FAILURES_PER_CONNECTION
        {
            // Past its last refusal, before it is closed: not answered at all.
            conn.control.close();
            return status;
        }
        if let Some(conn) = conn
            && failed == MAX_FAILURES_PER_CONNECTION
        {
            let peer = conn.peer_text();
            notice(|| {
                format!(
                    "taskscope: closed the connection of{peer}: \
                     {MAX_FAILURES_PER_CONNECTION} calls with a wrong or missing token"
                )
            });
            tokio::spawn(async move {
                tokio::time::sleep(delay + CLOSE_AFTER).await;
                conn.control.close();
            });
        }
        tokio::time::sleep(delay).await;
        status
    }

    /// How long a refusal at `now` waits for its turn; `None` when that is
    /// more than [`MAX_FAILURE_DELAY`] (then it does not take a turn).
    fn refusal_delay(&self, now: Instant) -> Option<Duration> {
        let interval = Duration::from_secs(1) / FAILURES_PER_SECOND;
        let burst = interval * (FAILURE_BURST - 1);
        let mut next = lock(&self.next_refusal);
        let tat = next.map_or(now, |t| t.max(now));
        let at = (tat.checked_sub(burst)).map_or(now, |t| t.max(now));
        let delay = at - now;
        if delay > MAX_FAILURE_DELAY {
            return None;
        }
        *next = Some(tat + interval);
        Some(delay)
    }

    /// Lets a call through, or says why not (without echoing anything sent).
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), Status> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let sent = headers
            .get(HEADER)
            .map(|v| v.as_bytes())
            .and_then(|v| v.strip_prefix(SCHEME.as_bytes()));
        match sent {
            None => Err(Status::unauthenticated(MISSING)),
            Some(sent) if constant_time_eq(sent, expected) => Ok(()),
            Some(_) => Err(Status::unauthenticated(WRONG)),
        }
    }
}

/// `a == b`, in a time that depends only on the lengths: every byte pair is
/// looked at, and the differences are folded together without branching.
/// Inputs of different lengths are unequal at once (the length is not secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codegen::http::HeaderValue;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn equal_only_when_every_byte_is() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"s3cret-token", b"s3cret-token"));
        assert!(!constant_time_eq(b"s3cret-token", b"s3cret-tokem"));
        assert!(!constant_time_eq(b"s3cret-token", b"X3cret-token"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret-token"));
    }

    #[test]
    fn without_a_token_every_call_passes() {
        let auth = Auth::new(None);
        assert!(auth.check(&headers(None)).is_ok());
        assert!(auth.check(&headers(Some("Bearer anything"))).is_ok());
    }

    #[test]
    fn with_a_token_a_missing_or_wrong_one_is_unauthenticated_without_echo() {
        let auth = Auth::new(Some("s3cret-token"));
        assert!(auth.check(&headers(Some("Bearer s3cret-token"))).is_ok());

        let missing = auth.check(&headers(None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(
            missing.message().contains("requires a token"),
            "{missing:?}"
        );
        // Not the Bearer scheme: as good as none.
        let other = auth.check(&headers(Some("s3cret-token"))).unwrap_err();
        assert_eq!(other.message(), MISSING);

        for sent in [
            "Bearer s3cret-tokem",
            "Bearer ",
            "Bearer s3cret-token-and-more",
        ] {
            let wrong = auth.check(&headers(Some(sent))).unwrap_err();
            assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
            assert!(wrong.message().starts_with("wrong token"), "{wrong:?}");
            assert!(!wrong.message().contains("s3cret"), "{wrong:?}");
        }
        assert!(!format!("{auth:?}").contains("s3cret"));
    }

    #[test]
    fn the_token_comes_from_taskscope_token_and_a_bad_one_turns_the_server_off() {
        use crate::settings::{ServerAddr, Settings};
        let read = |token: &'static str| {
            Settings::from_lookup(move |name| (name == "TASKSCOPE_TOKEN").then(|| token.into()))
        };
        let (settings, errors) = read("s3cret-token-0123");
        assert!(errors.is_empty());
        assert_eq!(settings.token.as_deref(), Some("s3cret-token-0123"));
        assert!(
            !format!("{settings:?}").contains("s3cret"),
            "Debug hides it"
        );
        assert_eq!(Settings::default().token, None);

        for bad in ["", "has space", "tab\there", "caf\u{e9}", "s3cret-token-01"] {
            let (settings, errors) = read(bad);
            assert_eq!(settings.token, None, "{bad:?}");
            assert_eq!(
                settings.server_addr,
                ServerAddr::Off,
                "{bad:?}: fail closed"
            );
            let text = errors[0].to_string();
            assert!(text.starts_with("TASKSCOPE_TOKEN="), "{text}");
            if bad.len() == 15 {
                assert!(
                    text.contains("at least 16 characters (this one has 15"),
                    "{text}"
                );
            }
            assert!(
                text.contains("the viewer server and the metrics endpoint off"),
                "{text}"
            );
            if !bad.is_empty() {
                assert!(!text.contains(bad), "never echoed: {text}");
            }
        }
    }

    fn conn() -> ConnInfo {
        ConnInfo {
            peer: None,
            control: std::sync::Arc::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_go_out_at_the_pace_and_past_the_queue_connections_close() {
        let auth = Auth::new(Some("s3cret-token-0123"));
        let status = || Status::unauthenticated(WRONG);
        let start = Instant::now();
        // The burst: at once.
        for _ in 0..FAILURE_BURST {
            auth.refuse(status(), None).await;
        }
        assert_eq!(Instant::now(), start);
        // Then one each 200 ms.
        auth.refuse(status(), None).await;
        auth.refuse(status(), None).await;
        let paced = Instant::now() - start;
        assert_eq!(paced, Duration::from_millis(400), "{paced:?}");

        // Refusals queued up to 5 s ahead wait their turn; the next one has
        // its connection closed at once instead.
        let queued: Vec<_> = (0..25)
            .map(|_| auth.refusal_delay(Instant::now()))
            .collect();
        assert!(queued.iter().all(Option::is_some), "{queued:?}");
        assert_eq!(queued[24], Some(MAX_FAILURE_DELAY));
        let c = conn();
        let answer = auth.refuse(status(), Some(c.clone())).await;
        assert_eq!(answer.code(), tonic::Code::Unauthenticated);
        assert!(c.control.is_closed(), "past the queue: closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_closed_after_its_third_refusal() {
        let auth = Auth::new(Some("s3cret-token-0123"));
        let c = conn();
        for _ in 1..MAX_FAILURES_PER_CONNECTION {
            auth.refuse(Status::unauthenticated(WRONG), Some(c.clone()))
                .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(!c.control.is_closed());
        }
        let last = auth
            .refuse(Status::unauthenticated(MISSING), Some(c.clone()))
            .await;
        assert_eq!(last.message(), MISSING, "the refusal is answered");
        assert!(!c.control.is_closed(), "not before it is sent");
        tokio::time::sleep(CLOSE_AFTER + Duration::from_millis(1)).await;
        assert!(c.control.is_closed());

        // One more guess before the close comes: the connection is closed at once.
        let quick = conn();
        for _ in 0..=MAX_FAILURES_PER_CONNECTION {
            auth.refuse(Status::unauthenticated(WRONG), Some(quick.clone()))
                .await;
        }
        assert!(quick.control.is_closed(), "closed without waiting");
    }
}
