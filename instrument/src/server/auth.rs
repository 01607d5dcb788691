//! The optional shared token (`TASKSCOPE_TOKEN`): when the app has one, every
//! call must carry it as `authorization: Bearer <token>` gRPC metadata, or it
//! is refused with UNAUTHENTICATED before any of the app's data is read.
//!
//! The comparison takes the same time whatever bytes differ (it looks at
//! every byte of the token). It does leak the token's *length* (a token of
//! another length is refused at once): use a long random token — its length
//! is then no help to a guesser. The token is never echoed: not in a status,
//! not in a log line.

use tonic::Status;
use tonic::codegen::http::HeaderMap;

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

/// The app's token, if it requires one.
#[derive(Clone, Default)]
pub(crate) struct Auth {
    token: Option<Vec<u8>>,
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
        }
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
        let (settings, errors) = read("s3cret-token");
        assert!(errors.is_empty());
        assert_eq!(settings.token.as_deref(), Some("s3cret-token"));
        assert!(
            !format!("{settings:?}").contains("s3cret"),
            "Debug hides it"
        );
        assert_eq!(Settings::default().token, None);

        for bad in ["", "has space", "tab\there", "caf\u{e9}"] {
            let (settings, errors) = read(bad);
            assert_eq!(settings.token, None, "{bad:?}");
            assert_eq!(
                settings.server_addr,
                ServerAddr::Off,
                "{bad:?}: fail closed"
            );
            let text = errors[0].to_string();
            assert!(text.starts_with("TASKSCOPE_TOKEN="), "{text}");
            assert!(text.contains("viewer server off"), "{text}");
            if !bad.is_empty() {
                assert!(!text.contains(bad), "never echoed: {text}");
            }
        }
    }
}
