//! Addresses: where the app's viewer server listens and where the viewer
//! connects, in the forms both accept.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Default address of the viewer server.
pub const DEFAULT_ADDR: &str = "127.0.0.1:6670";

/// Where the viewer server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAddr {
    /// No server (`TASKSCOPE_ADDR=off`).
    Off,
    /// A TCP address, loopback unless the user names another one.
    Tcp(SocketAddr),
    /// A Unix domain socket path (`unix:/path`).
    Unix(PathBuf),
}

impl ServerAddr {
    /// Parses the forms taskscope accepts everywhere an address is taken:
    /// `host:port`, `http://host:port`, `unix:/path`, and `off`.
    ///
    /// ```
    /// use taskscope_api::ServerAddr;
    /// assert_eq!(ServerAddr::parse("off").unwrap(), ServerAddr::Off);
    /// assert!(matches!(ServerAddr::parse("http://127.0.0.1:7000").unwrap(), ServerAddr::Tcp(_)));
    /// assert!(matches!(ServerAddr::parse("unix:/tmp/app.sock").unwrap(), ServerAddr::Unix(_)));
    /// assert!(ServerAddr::parse("no-port").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<ServerAddr, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(ServerAddr::Off);
        }
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a socket path, as in unix:/tmp/app.sock".into());
            }
            return Ok(ServerAddr::Unix(PathBuf::from(path)));
        }
        let hostport = text
            .strip_prefix("http://")
            .unwrap_or(text)
            .trim_end_matches('/');
        if let Ok(addr) = hostport.parse::<SocketAddr>() {
            return Ok(ServerAddr::Tcp(addr));
        }
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| "expected host:port, http://host:port, unix:/path or off".to_string())?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{port}` is not a port number (0-65535)"))?;
        if host.eq_ignore_ascii_case("localhost") {
            return Ok(ServerAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .map(ServerAddr::Tcp)
            .ok_or_else(|| format!("cannot resolve host `{host}`"))
    }

    /// True for the addresses that stay on this machine: loopback TCP and Unix sockets.
    pub fn is_local(&self) -> bool {
        match self {
            ServerAddr::Off | ServerAddr::Unix(_) => true,
            ServerAddr::Tcp(addr) => addr.ip().is_loopback(),
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Off => f.write_str("off"),
            ServerAddr::Tcp(addr) => write!(f, "{addr}"),
            ServerAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}
