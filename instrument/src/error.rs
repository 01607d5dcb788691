//! The errors taskscope's fallible API returns.

use crate::settings::SettingError;

/// Why taskscope could not be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `TASKSCOPE_*` variable (or `RUST_LOG`) had a value that cannot be used.
    #[error("taskscope: {0}")]
    Setting(#[from] SettingError),
    /// Another global `tracing` subscriber was installed first.
    #[error(
        "taskscope: a global tracing subscriber is already installed ({0}); \
         add taskscope::Builder::layer() to it instead of calling init()"
    )]
    SubscriberAlreadySet(String),
}
