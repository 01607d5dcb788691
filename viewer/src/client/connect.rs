//! Opening a channel to an app's server, from any address form taskscope takes.

use std::time::Duration;

use taskscope_api::ServerAddr;
use taskscope_api::proto::taskscope_client::TaskscopeClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::client::auth::{AddToken, Token};
use crate::client::error::ClientError;

/// A client of the taskscope service, sending the token (if any) with every call.
pub type Client = TaskscopeClient<InterceptedService<Channel, AddToken>>;

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// HTTP/2 pings, so a vanished app is noticed even when no update is due.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// The endpoint for `addr` (`host:port`, `http://host:port` or `unix:/path`,
/// parsed with [`ServerAddr::parse`]).
pub fn endpoint(addr: &ServerAddr) -> Result<Endpoint, ClientError> {
    let uri = match addr {
        ServerAddr::Tcp(socket) => format!("http://{socket}"),
        ServerAddr::Unix(path) => format!("unix:{}", path.display()),
        ServerAddr::Off => {
            return Err(ClientError::NotListening {
                addr: addr.to_string(),
            });
        }
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| ClientError::Lost {
        addr: addr.to_string(),
        detail: format!("not a usable address ({e})"),
    })?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true))
}

/// A client of the app's taskscope service at `addr`, sending `token` with
/// every call when there is one.
pub async fn connect(addr: &ServerAddr, token: Option<&Token>) -> Result<Client, ClientError> {
    let channel = endpoint(addr)?
        .connect()
        .await
        .map_err(|e| ClientError::from_transport(&addr.to_string(), &e))?;
    // Never more than this in one message, whatever the server sends (gRPC
    // checks the length before reading the message).
    Ok(
        TaskscopeClient::with_interceptor(channel, AddToken(token.cloned()))
            .max_decoding_message_size(crate::client::assemble::MAX_MESSAGE),
    )
}
