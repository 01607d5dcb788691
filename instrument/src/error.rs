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
    /// Another of taskscope's captures is already installed in this process
    /// (for example `Builder::layer()` and then `install_on()`, or
    /// `#[taskscope::main]` and then `init()`): one per process, the first
    /// one stays.
    #[error(
        "taskscope: {refused} refused: {installed} already captures this process's tasks; \
         use one of them per process (the first one keeps running)"
    )]
    CaptureConflict {
        /// The capture already installed.
        installed: &'static str,
        /// The capture that was refused.
        refused: &'static str,
    },
}
