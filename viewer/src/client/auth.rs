//! The shared token: when the app was started with `TASKSCOPE_TOKEN`, the
//! viewer must send the same one. It reads its own `TASKSCOPE_TOKEN` and adds
//! it to every call as `authorization: Bearer <token>` metadata. The token
//! never appears in anything the viewer prints (its `Debug` hides it).

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::client::error::ClientError;

/// The environment variable the token is read from (by the app and the viewer).
pub const TOKEN_VAR: &str = "TASKSCOPE_TOKEN";

/// The metadata key the token travels in.
const HEADER: &str = "authorization";

/// A token that can be sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    header: MetadataValue<Ascii>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(hidden)")
    }
}

/// Why `TASKSCOPE_TOKEN` cannot be sent (the text never contains the token).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TASKSCOPE_TOKEN cannot be used: {0}")]
pub struct TokenError(pub String);

impl Token {
    /// A token: printable ASCII, no spaces (what the app accepts too).
    ///
    /// ```
    /// use taskscope_viewer::client::Token;
    /// assert!(Token::new("s3cret-9f2c").is_ok());
    /// assert!(Token::new("two words").is_err());
    /// assert_eq!(format!("{:?}", Token::new("s3cret").unwrap()), "Token(hidden)");
    /// ```
    pub fn new(token: &str) -> Result<Token, TokenError> {
        if token.is_empty() {
            return Err(TokenError("it is empty".into()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError(
                "it must be printable ASCII characters without spaces".into(),
            ));
        }
        let mut header: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| TokenError("it cannot be sent as gRPC metadata".into()))?;
        header.set_sensitive(true);
        Ok(Token { header })
    }

    /// The viewer's `TASKSCOPE_TOKEN`: `None` when it is not set.
    pub fn from_env() -> Result<Option<Token>, TokenError> {
        match std::env::var_os(TOKEN_VAR) {
            None => Ok(None),
            Some(value) => match value.to_str() {
                Some(text) => Token::new(text).map(Some),
                None => Err(TokenError("it is not valid Unicode".into())),
            },
        }
    }
}

/// Adds the token (if any) to every call.
#[derive(Clone, Debug, Default)]
pub struct AddToken(pub Option<Token>);

impl Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert(HEADER, token.header.clone());
        }
        Ok(request)
    }
}

/// The viewer's `TASKSCOPE_TOKEN`, as a [`ClientError`] when it cannot be sent.
pub fn env_token() -> Result<Option<Token>, ClientError> {
    Token::from_env().map_err(|e| ClientError::BadToken {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_out_as_a_bearer_header() {
        let mut add = AddToken(Some(Token::new("s3cret").unwrap()));
        let request = add.call(Request::new(())).unwrap();
        let sent = request.metadata().get(HEADER).unwrap();
        assert_eq!(sent.to_str().unwrap(), "Bearer s3cret");
        let mut none = AddToken(None);
        assert!(
            none.call(Request::new(()))
                .unwrap()
                .metadata()
                .get(HEADER)
                .is_none()
        );
    }

    #[test]
    fn an_unusable_token_is_refused_without_echo() {
        for bad in ["", "two words", "tab\there", "caf\u{e9}"] {
            let err = Token::new(bad).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("TASKSCOPE_TOKEN cannot be used")
            );
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
    }
}
