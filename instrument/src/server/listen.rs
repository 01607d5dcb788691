//! Binding the server's address: TCP, or a Unix socket (mode 0600, a stale
//! socket file from a previous run replaced). Binding happens on the thread
//! that starts taskscope; accepting happens on the server's runtime
//! ([`crate::server::conn`]).

use std::io;

use crate::settings::ServerAddr;

/// A bound listener, not yet attached to a runtime.
#[derive(Debug)]
pub(crate) enum Listener {
    /// A TCP listener (non-blocking).
    Tcp(std::net::TcpListener),
    /// A Unix socket listener (non-blocking).
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixListener),
}

/// Why the server cannot listen; the text names the address.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BindError {
    /// Someone else listens there.
    #[error("cannot listen on {addr}: address in use")]
    InUse {
        /// The address, as the user wrote it.
        addr: String,
    },
    /// A file that is not a socket sits at the socket path.
    #[error("cannot listen on {addr}: the file exists and is not a socket (not replacing it)")]
    NotASocket {
        /// The address, as the user wrote it.
        addr: String,
    },
    /// Any other problem.
    #[error("cannot listen on {addr}: {source}")]
    Io {
        /// The address, as the user wrote it.
        addr: String,
        /// The system's error.
        source: io::Error,
    },
}

impl BindError {
    fn from_io(addr: &ServerAddr, source: io::Error) -> BindError {
        let addr = addr.to_string();
        if source.kind() == io::ErrorKind::AddrInUse {
            BindError::InUse { addr }
        } else {
            BindError::Io { addr, source }
        }
    }
}

/// Binds `addr` (which must not be `off`).
pub(crate) fn bind(addr: &ServerAddr) -> Result<Listener, BindError> {
    let io_err = |e| BindError::from_io(addr, e);
    match addr {
        ServerAddr::Off => Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "`off` is not an address",
        ))),
        ServerAddr::Tcp(socket) => {
            // std sets SO_REUSEADDR on Unix: a restarted app gets its port back at once.
            let listener = std::net::TcpListener::bind(socket).map_err(io_err)?;
            listener.set_nonblocking(true).map_err(io_err)?;
            Ok(Listener::Tcp(listener))
        }
        #[cfg(unix)]
        ServerAddr::Unix(path) => bind_unix(addr, path),
        #[cfg(not(unix))]
        ServerAddr::Unix(_) => Err(io_err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Unix sockets are not supported on this platform",
        ))),
    }
}

#[cfg(unix)]
fn bind_unix(addr: &ServerAddr, path: &std::path::Path) -> Result<Listener, BindError> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    use std::os::unix::net::{UnixListener, UnixStream};

    let io_err = |e| BindError::from_io(addr, e);
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(BindError::NotASocket {
                addr: addr.to_string(),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse {
                addr: addr.to_string(),
            });
        }
        // Nobody answers: a socket file left by a previous run. Replace it.
        std::fs::remove_file(path).map_err(io_err)?;
    }
    // Only this user may connect, from the first moment: the socket is bound
    // inside a fresh directory only this user can enter, made owner-only
    // there, and only then renamed into place (a bound socket keeps working
    // under its new name). No window with the umask's mode.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let staging = parent.join(format!(".taskscope-{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(io_err)?;
    let staged = staging.join("s");
    let bound = UnixListener::bind(&staged).and_then(|listener| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir_all(&staging);
    let listener = bound.map_err(io_err)?;
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(Listener::Unix(listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_reported_as_address_in_use_naming_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = ServerAddr::Tcp(taken.local_addr().unwrap());
        let err = bind(&addr).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot listen on {addr}: address in use")
        );
    }

    #[cfg(unix)]
    #[test]
    fn unix_socket_is_private_and_a_stale_one_is_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("taskscope-listen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.sock");
        let addr = ServerAddr::Unix(path.clone());

        // A stale socket file: bound once, then its listener dropped.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = bind(&addr).expect("replaces the stale socket");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // A live one is not replaced.
        let err = bind(&addr).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err}");
        drop(listener);

        // Nor is a file that is not a socket.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "data").unwrap();
        let err = bind(&addr).unwrap_err();
        assert!(matches!(err, BindError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
