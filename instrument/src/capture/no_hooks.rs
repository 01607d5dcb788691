//! `capture::hooks` when the app is built without `--cfg tokio_unstable`:
//! Tokio compiles no task hooks then, so there is nothing to install. The app
//! runs as it would without taskscope; `start_threads` in the builder has
//! already said on stderr that no task will be seen.

use std::sync::Arc;

use crate::session::Session;

/// Installs nothing: Tokio has no task hooks without `--cfg tokio_unstable`.
pub(crate) fn install(_session: &Arc<Session>, _builder: &mut tokio::runtime::Builder) {}
