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
    use std::os::unix::net::UnixStream;

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
    // under its new name). No window with the umask's mode. The directory's
    // name is unique beyond the pid (two containers sharing a volume can run
    // the same pid), and the socket is bound through a short name for it, so
    // that any path the system accepts works.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut attempt = 0;
    let staging = loop {
        let staging = parent.join(format!(".taskscope-{}.tmp", unique_name()));
        match std::fs::DirBuilder::new().mode(0o700).create(&staging) {
            Ok(()) => break staging,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
            Err(e) => return Err(io_err(e)),
        }
    };
    let staged = staging.join("s");
    let bound = bind_staged(&staging, &staged).and_then(|listener| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir_all(&staging);
    let listener = bound.map_err(io_err)?;
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(Listener::Unix(listener))
}

/// A name no other process or thread picks at the same time: 64 bits from
/// std's randomly seeded hasher (its keys come from the operating system's
/// random source) over the pid, the clock and a counter.
#[cfg(unix)]
fn unique_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(since.as_nanos());
    }
    format!("{:016x}", h.finish())
}

/// Binds a Unix socket at `staged` (`staging/s`). A path too long for a
/// socket address is bound through `/proc/self/fd/N/s`, N being the staging
/// directory opened (Linux): the final path only has to fit where clients
/// connect, and the system checks that.
#[cfg(unix)]
fn bind_staged(
    staging: &std::path::Path,
    staged: &std::path::Path,
) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::net::UnixListener;
    /// `sun_path`'s size on Linux, the terminating NUL included.
    const SUN_PATH: usize = 108;
    if staged.as_os_str().len() < SUN_PATH || !cfg!(target_os = "linux") {
        return UnixListener::bind(staged);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(staging)?;
        UnixListener::bind(format!("/proc/self/fd/{}/s", dir.as_raw_fd()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = staging;
        UnixListener::bind(staged)
    }
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

    /// A fresh directory under the temp dir.
    #[cfg(unix)]
    fn fresh_dir(test: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tsl-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A socket path of 107 bytes (the most `sun_path` holds) with a
    /// one-letter name: binds, is owner-only, and takes connections.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_socket_path_as_long_as_the_system_takes_works() {
        use std::os::unix::fs::PermissionsExt;
        let dir = fresh_dir("long");
        let used = dir.as_os_str().len() + "/a".len();
        assert!(
            used < 107,
            "temp dir too long for this test: {}",
            dir.display()
        );
        let long = dir.join("d".repeat(107 - used - 1));
        std::fs::create_dir_all(&long).unwrap();
        let path = long.join("a");
        assert_eq!(path.as_os_str().len(), 107);
        let listener = bind(&ServerAddr::Unix(path.clone())).expect("binds at 107 bytes");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let Listener::Unix(listener) = listener else {
            panic!("not a Unix listener")
        };
        std::os::unix::net::UnixStream::connect(&path).expect("connects");
        listener.set_nonblocking(false).unwrap();
        listener.accept().expect("accepts");
        // Nothing is left beside it.
        let left: Vec<_> = std::fs::read_dir(&long).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Binds racing in one directory (as two processes with the same pid in
    /// two containers sharing a volume): every one succeeds.
    #[cfg(unix)]
    #[test]
    fn binds_racing_in_one_directory_do_not_collide() {
        let dir = fresh_dir("race");
        let threads = 6;
        for round in 0..20 {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
            let binds: Vec<_> = (0..threads)
                .map(|t| {
                    let path = dir.join(format!("s{round}-{t}"));
                    let barrier = std::sync::Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        barrier.wait();
                        bind(&ServerAddr::Unix(path.clone())).map(|_| path)
                    })
                })
                .collect();
            for join in binds {
                let path = join.join().unwrap().expect("a racing bind failed");
                assert!(path.exists());
            }
        }
        let staging_left = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".taskscope-"))
            })
            .count();
        assert_eq!(staging_left, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
