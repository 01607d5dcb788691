//! What the status line says during `taskscope replay`: that it is a
//! replay, of which file, the recorded time at the cursor and where that is
//! in the recording. The replay (`crate::replay`) keeps it up to date; the
//! views only draw it.

use std::time::{Duration, SystemTime};

/// The replay's cursor, as the status line shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayStatus {
    /// The recording, as given on the command line.
    pub file: String,
    /// The recorded time at the cursor.
    pub at: SystemTime,
    /// How far the cursor is from the recording's start.
    pub elapsed: Duration,
    /// How long the recording is.
    pub length: Duration,
    /// Playing (else paused).
    pub playing: bool,
    /// Playing speed: recorded seconds per second.
    pub speed: u32,
    /// The cursor is at the end of the recording.
    pub at_end: bool,
    /// Updates missing from the recording (the app dropped them).
    pub missing: u64,
    /// Things that could not be read (listed when the replay ends).
    pub problems: usize,
}
