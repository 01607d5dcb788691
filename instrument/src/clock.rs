//! The clock of the hot path.
//!
//! Timestamps are raw counter values (`u64`) so a task record can hold them in
//! an `AtomicU64`: the CPU's time-stamp counter where it is invariant and
//! reliable (read with one `rdtsc`, a few nanoseconds, no syscall, no vDSO), the
//! monotonic clock otherwise — [`quanta`] decides and calibrates. Durations are
//! converted to nanoseconds with one multiplication ([`to_nanos`], [`since`]).

#[cfg(not(miri))]
use std::sync::OnceLock;
#[cfg(not(miri))]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
#[cfg(not(miri))]
use std::time::{Duration, SystemTime};

/// `quanta` reads the TSC: read it here directly, inlined (no call, no match).
#[cfg(not(miri))]
static DIRECT_TSC: AtomicBool = AtomicBool::new(false);
/// `Clock::scale` once calibrated, 0 before.
#[cfg(not(miri))]
static SCALE: AtomicU64 = AtomicU64::new(0);

#[cfg(not(miri))]
struct Clock {
    source: quanta::Clock,
    /// Nanoseconds per tick, as a 32.32 fixed-point number.
    scale: u64,
    anchor_ticks: u64,
    anchor_wall: SystemTime,
}

#[cfg(not(miri))]
static CLOCK: OnceLock<Clock> = OnceLock::new();

#[cfg(not(miri))]
fn clock() -> &'static Clock {
    CLOCK.get_or_init(|| {
        let source = quanta::Clock::new();
        let ticks: u64 = 1 << 32;
        let nanos = source.delta_as_nanos(0, ticks);
        let anchor_ticks = source.raw();
        Clock {
            scale: nanos.max(1),
            anchor_ticks,
            anchor_wall: SystemTime::now(),
            source,
        }
    })
}

/// Starts the clock (calibration) off the hot path.
#[cfg(not(miri))]
pub(crate) fn init() {
    let c = clock();
    SCALE.store(c.scale, Relaxed);
    #[cfg(target_arch = "x86_64")]
    {
        // quanta's raw reading is the TSC when one `rdtsc` lands between two of them.
        let before = c.source.raw();
        // SAFETY: `rdtsc` exists on every x86_64 CPU.
        let tsc = unsafe { std::arch::x86_64::_rdtsc() };
        let after = c.source.raw();
        DIRECT_TSC.store(before <= tsc && tsc <= after, Relaxed);
    }
}

/// A timestamp. Never returns 0, so 0 can mean "never".
#[cfg(not(miri))]
#[inline]
pub(crate) fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if DIRECT_TSC.load(Relaxed) {
        // SAFETY: as in `init`.
        return unsafe { std::arch::x86_64::_rdtsc() } | 1;
    }
    clock().source.raw() | 1
}

/// A number of ticks in nanoseconds.
#[cfg(not(miri))]
#[inline]
pub(crate) fn to_nanos(ticks: u64) -> u64 {
    let mut scale = SCALE.load(Relaxed);
    if scale == 0 {
        scale = clock().scale;
    }
    ((u128::from(ticks) * u128::from(scale)) >> 32) as u64
}

/// Nanoseconds from `earlier` to `later`, 0 when `later` is not later.
#[inline]
pub(crate) fn since(earlier: u64, later: u64) -> u64 {
    to_nanos(later.saturating_sub(earlier))
}

/// The wall-clock time of a timestamp taken with [`now`].
#[cfg(not(miri))]
pub(crate) fn to_system_time(ts: u64) -> SystemTime {
    let c = clock();
    if ts >= c.anchor_ticks {
        c.anchor_wall + Duration::from_nanos(since(c.anchor_ticks, ts))
    } else {
        c.anchor_wall - Duration::from_nanos(since(ts, c.anchor_ticks))
    }
}

/// Under Miri, which cannot run `rdtsc` or quanta's `cpuid`: ticks are
/// nanoseconds of `Instant` since the first reading (the unit tests of the
/// model run there).
#[cfg(miri)]
mod miri {
    use std::sync::OnceLock;
    use std::time::{Instant, SystemTime};

    static START: OnceLock<(Instant, SystemTime)> = OnceLock::new();

    /// The first reading; the wall clock is not readable under Miri's
    /// isolation, so it is a fixed time.
    fn start() -> &'static (Instant, SystemTime) {
        START.get_or_init(|| {
            let wall = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
            (Instant::now(), wall)
        })
    }

    pub(crate) fn init() {
        start();
    }

    pub(crate) fn now() -> u64 {
        (start().0.elapsed().as_nanos() as u64) | 1
    }

    pub(crate) fn to_nanos(ticks: u64) -> u64 {
        ticks
    }

    pub(crate) fn to_system_time(ts: u64) -> SystemTime {
        start().1 + std::time::Duration::from_nanos(ts)
    }
}
#[cfg(miri)]
pub(crate) use miri::{init, now, to_nanos, to_system_time};

/// How often the watchdog ticks (and publishes [`coarse`]'s time).
pub(crate) const TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// The watchdog's last reading of [`now`] (0 before its first tick): the
/// hot path's clock that costs no `rdtsc`. Written every tick (10 ms), on a
/// cache line of its own so that the write does not evict what [`now`] reads.
#[repr(align(64))]
struct Coarse(std::sync::atomic::AtomicU64);

static COARSE: Coarse = Coarse(std::sync::atomic::AtomicU64::new(0));

/// The time of the watchdog's last tick ([`tick`]), or 0 before the first
/// and while the watchdog works ([`hold`]): at most a tick old while the
/// watchdog sleeps, older only when the system does not wake it (a poll that
/// sees it stale times itself, see `capture::poll`).
#[inline]
pub(crate) fn coarse() -> u64 {
    COARSE.0.load(std::sync::atomic::Ordering::Relaxed)
}

/// Publishes the time now as [`coarse`]'s (the watchdog's tick, as it goes
/// back to sleep).
pub(crate) fn tick() {
    COARSE.0.store(now(), std::sync::atomic::Ordering::Relaxed);
}

/// Sets [`coarse`] to 0 (the watchdog is busy, or gone): every poll that
/// ends until the next [`tick`] is timed.
pub(crate) fn hold() {
    COARSE.0.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// `nanos` as a number of clock ticks (for thresholds compared with raw timestamps).
pub(crate) fn ticks_for(nanos: u64) -> u64 {
    let per_ns = to_nanos(1 << 32).max(1);
    ((u128::from(nanos) << 32) / u128::from(per_ns)).min(u128::from(u64::MAX)) as u64
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn measures_a_sleep_in_nanoseconds() {
        // Both before and after `init` (which may switch to reading the TSC directly).
        for _ in 0..2 {
            measure_a_sleep();
            init();
        }
    }

    #[test]
    fn direct_readings_agree_with_quanta() {
        init();
        let before = clock().source.raw();
        let direct = now();
        let after = clock().source.raw();
        assert!(
            before <= direct && direct <= (after | 1),
            "{before} {direct} {after}"
        );
    }

    fn measure_a_sleep() {
        let a = now();
        std::thread::sleep(Duration::from_millis(20));
        let b = now();
        let ns = since(a, b);
        assert!(ns >= 19_000_000, "{ns}");
        assert!(ns < 5_000_000_000, "{ns}");
        assert_eq!(since(b, a), 0);
        let ticks = ticks_for(20_000_000);
        let back = to_nanos(ticks);
        assert!(
            back.abs_diff(20_000_000) < 1_000,
            "{ticks} ticks, {back} ns"
        );
        let wall = to_system_time(b).duration_since(to_system_time(a)).unwrap();
        assert!(wall >= Duration::from_millis(19));
    }
}
