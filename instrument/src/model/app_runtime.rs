//! The app's Tokio runtime, for its metrics. The handle is taken where an app
//! thread is inside the runtime: `init()` and `Builder::layer()` (when called
//! inside the runtime), and else lazily at the first poll on each thread (the
//! once-per-thread registration of its watchdog slot, off the per-poll path).
//! With `install_on` the runtime does not exist yet when taskscope starts, so
//! the lazy path is the one that finds it. The first runtime seen is kept.

use std::sync::OnceLock;

use tokio::runtime::Handle;

static RUNTIME: OnceLock<Handle> = OnceLock::new();

/// Keeps the runtime the calling thread is in, if none is kept yet.
/// Cheap when one is (one atomic load); never keeps taskscope's own runtime.
pub(crate) fn note_current() {
    if RUNTIME.get().is_some() || crate::internal::is_internal_thread() {
        return;
    }
    if let Ok(handle) = Handle::try_current() {
        let _ = RUNTIME.set(handle);
    }
}

/// The app's runtime, once seen.
pub(crate) fn handle() -> Option<&'static Handle> {
    RUNTIME.get()
}
