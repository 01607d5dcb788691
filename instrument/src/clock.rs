//! The monotonic clock of the hot path.
//!
//! Every timestamp taskscope keeps is a `u64` count of nanoseconds since a
//! process-wide anchor, so a task record can hold it in an `AtomicU64`. Reading
//! it is `Instant::now()`, which on Linux is a vDSO call, not a syscall.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

static ANCHOR: OnceLock<(Instant, SystemTime)> = OnceLock::new();

fn anchor() -> &'static (Instant, SystemTime) {
    ANCHOR.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// Nanoseconds since the anchor. Never returns 0, so 0 can mean "never".
#[inline]
pub(crate) fn now() -> u64 {
    anchor().0.elapsed().as_nanos() as u64 | 1
}

/// The wall-clock time of a timestamp taken with [`now`].
pub(crate) fn to_system_time(ts: u64) -> SystemTime {
    anchor().1 + Duration::from_nanos(ts)
}

/// Nanoseconds between two timestamps, 0 when `later` is not later.
#[inline]
pub(crate) fn since(earlier: u64, later: u64) -> u64 {
    later.saturating_sub(earlier)
}
