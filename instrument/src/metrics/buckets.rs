//! The buckets of `taskscope_poll_duration_seconds`, dense around the
//! slow-poll threshold `T`: `T` × 1/100, 1/10, 1/4, 1/2, 3/4, 1, 1.5, 2.5,
//! 5, 10, 25, 50, 100 — at the default threshold of 100 ms: 1, 10, 25, 50,
//! 75, 100, 150, 250, 500 ms, 1, 2.5, 5, 10 s — and `+Inf`.
//!
//! How exact they are:
//! - `_count` (every poll that ended) is exact, and so is `_sum` (the time
//!   inside them) when every poll is timed (`TASKSCOPE_POLL_TIMING=every`;
//!   sampled, the default, it is an estimate);
//! - the buckets from `T` up are exact: every slow poll's duration is known
//!   (taskscope counts each one by class as it ends, `model::locations`),
//!   and the polls under `T` are all polls less the slow ones;
//! - the buckets under `T` come from taskscope's per-task histogram, which
//!   counts polls in power-of-two buckets (bucket `k` holds `[2^(k-1), 2^k)`
//!   × 1.024 µs): a bound's count is exact up to the one power-of-two bucket
//!   the bound falls in, whose polls are split in proportion to where the
//!   bound lies in it (linear interpolation, as `histogram_quantile` does in
//!   a Prometheus bucket). For the default threshold, the 50 ms bound falls
//!   in [33.6, 67.1) ms, so at most the polls of that bucket are placed on
//!   the wrong side of it. With `TASKSCOPE_POLL_TIMING=sampled` (the
//!   default) that histogram is itself an estimate from one short poll in 8
//!   (see `capture::poll`), and so are these buckets (kept at most the
//!   exact count at `T`, so the buckets stay cumulative).

use crate::model::locations::SLOW_CLASSES;
use crate::model::task::{POLL_HISTOGRAM_BUCKETS, poll_histogram_bucket_limit};

/// Bounds under the threshold, as fractions of it (`numerator / denominator`).
const UNDER: [(u64, u64); 5] = [(1, 100), (1, 10), (1, 4), (1, 2), (3, 4)];

/// Where a bucket's count comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Under the threshold: interpolated in the power-of-two histogram.
    Under,
    /// Slow-poll class `i` and the ones under it: exact.
    Slow(usize),
}

/// The finite bucket bounds for one threshold.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    threshold_ns: u64,
    /// Strictly increasing bounds, in nanoseconds, with their source.
    bounds: Vec<(u64, Source)>,
}

/// What one location's polls add up to, as the histogram needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PollFigures {
    /// Polls that ended.
    pub(crate) polls: u64,
    /// Those polls by power-of-two bucket.
    pub(crate) histogram: [u64; POLL_HISTOGRAM_BUCKETS],
    /// Slow polls (at or over the threshold) by class ([`SLOW_CLASSES`],
    /// then the unbounded one).
    pub(crate) slow: [u64; SLOW_CLASSES.len() + 1],
}

impl PollFigures {
    /// Polls under the threshold.
    fn fast(&self) -> u64 {
        self.polls.saturating_sub(self.slow.iter().sum())
    }
}

/// The lower bound of power-of-two bucket `k`, in nanoseconds.
fn lower(k: usize) -> u64 {
    if k == 0 {
        0
    } else {
        poll_histogram_bucket_limit(k - 1).unwrap_or(u64::MAX)
    }
}

/// `count × part / whole`, rounded down (`whole` > 0).
fn share(count: u64, part: u64, whole: u64) -> u64 {
    (u128::from(count) * u128::from(part) / u128::from(whole)) as u64
}

impl Layout {
    /// The bounds for `threshold_ns`, whose slow-poll classes end at
    /// `slow_limits_ns` (`model::locations::Locations::slow_limits_ns`).
    pub(crate) fn new(threshold_ns: u64, slow_limits_ns: [u64; SLOW_CLASSES.len()]) -> Layout {
        let mut bounds: Vec<(u64, Source)> = UNDER
            .iter()
            .map(|&(num, den)| {
                let ns = u128::from(threshold_ns) * u128::from(num) / u128::from(den);
                (ns as u64, Source::Under)
            })
            .chain(
                slow_limits_ns
                    .iter()
                    .enumerate()
                    .map(|(i, &ns)| (ns, Source::Slow(i))),
            )
            .collect();
        // A tiny threshold makes some bounds equal: keep one of each, the
        // exact one where there is a choice (the later one).
        bounds.reverse();
        bounds.dedup_by_key(|(ns, _)| *ns);
        bounds.reverse();
        Layout {
            threshold_ns,
            bounds,
        }
    }

    /// The finite bounds, in seconds.
    pub(crate) fn bounds_seconds(&self) -> Vec<f64> {
        self.bounds.iter().map(|&(ns, _)| ns as f64 / 1e9).collect()
    }

    /// The polls at or under each finite bound (cumulative counts).
    pub(crate) fn cumulative(&self, f: &PollFigures) -> Vec<u64> {
        let fast = f.fast();
        self.bounds
            .iter()
            .map(|&(ns, source)| match source {
                Source::Slow(i) => fast + f.slow[..=i].iter().sum::<u64>(),
                Source::Under => self.under(f, ns).min(fast),
            })
            .collect()
    }

    /// The polls at or under `x_ns` (< the threshold), interpolated within
    /// the power-of-two bucket `x_ns` falls in.
    fn under(&self, f: &PollFigures, x_ns: u64) -> u64 {
        let k = if x_ns == 0 {
            0
        } else {
            crate::model::task::poll_histogram_bucket(x_ns)
        };
        let below: u64 = f.histogram[..k].iter().sum();
        let (low, high) = (lower(k), poll_histogram_bucket_limit(k).unwrap_or(u64::MAX));
        if high > self.threshold_ns {
            // The threshold's own bucket: only its polls under the threshold
            // (all the fast ones less those of the lower buckets) are spread
            // over [low, threshold).
            let in_bucket = f.fast().saturating_sub(below);
            below + share(in_bucket, x_ns - low, self.threshold_ns - low)
        } else {
            below + share(f.histogram[k], x_ns - low, high - low)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::poll_histogram_bucket;

    const MS: u64 = 1_000_000;

    fn slow_limits(threshold_ns: u64) -> [u64; SLOW_CLASSES.len()] {
        SLOW_CLASSES.map(|(n, d)| threshold_ns * n / d)
    }

    /// Figures of polls with these durations, as taskscope counts them.
    fn figures(threshold_ns: u64, durations_ns: &[u64]) -> PollFigures {
        let mut f = PollFigures::default();
        let limits = slow_limits(threshold_ns);
        for &d in durations_ns {
            f.polls += 1;
            f.histogram[poll_histogram_bucket(d)] += 1;
            if d >= threshold_ns {
                let class = limits
                    .iter()
                    .position(|&l| d <= l)
                    .unwrap_or(SLOW_CLASSES.len());
                f.slow[class] += 1;
            }
        }
        f
    }

    fn exact(bounds_ns: &[u64], durations_ns: &[u64]) -> Vec<u64> {
        bounds_ns
            .iter()
            .map(|&b| durations_ns.iter().filter(|&&d| d <= b).count() as u64)
            .collect()
    }

    #[test]
    fn default_threshold_gives_the_documented_bounds() {
        let layout = Layout::new(100 * MS, slow_limits(100 * MS));
        assert_eq!(
            layout.bounds_seconds(),
            [
                0.001, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
            ]
        );
    }

    #[test]
    fn buckets_from_the_threshold_up_are_exact() {
        let t = 100 * MS;
        let durations: Vec<u64> = [
            0.3, 2.0, 9.0, 40.0, 60.0, 99.0, 100.0, 120.0, 149.0, 200.0, 260.0, 300.0, 700.0,
            1_500.0, 4_000.0, 30_000.0,
        ]
        .iter()
        .map(|ms: &f64| (ms * MS as f64) as u64)
        .collect();
        let layout = Layout::new(t, slow_limits(t));
        let got = layout.cumulative(&figures(t, &durations));
        let bounds: Vec<u64> = layout.bounds.iter().map(|b| b.0).collect();
        let want = exact(&bounds, &durations);
        assert_eq!(got[5..], want[5..], "from T up: {bounds:?}");
        // Under T: within the power-of-two bucket of each bound, and never
        // more than the polls under T.
        for (i, &b) in bounds[..5].iter().enumerate() {
            let k = poll_histogram_bucket(b);
            let slack = durations
                .iter()
                .filter(|&&d| poll_histogram_bucket(d) == k)
                .count() as u64;
            assert!(
                got[i].abs_diff(want[i]) <= slack,
                "bound {b}: {got:?} vs {want:?}"
            );
            assert!(got[i] <= 6);
        }
        // Cumulative: never decreasing.
        assert!(got.windows(2).all(|w| w[0] <= w[1]), "{got:?}");
    }

    #[test]
    fn a_bound_on_a_power_of_two_limit_is_exact() {
        // A threshold of 4 × 1.024 ms: T/4 is the limit of bucket 10 exactly.
        let t = 4 * 1_024 * 1_024;
        let durations = [1_000, 500_000, 1_048_575, 1_048_577, 2_000_000, 4_000_000];
        let layout = Layout::new(t, slow_limits(t));
        let got = layout.cumulative(&figures(t, &durations));
        // Bucket 10 holds [0.524288, 1.048576) ms: the bound is its limit,
        // so its count is the polls of buckets 0 to 10, exactly.
        assert_eq!(layout.bounds[2].0, 1_048_576);
        assert_eq!(got[2], 3);
    }

    #[test]
    fn polls_over_the_largest_power_of_two_bucket_are_placed_by_the_slow_counts() {
        // A threshold of 1 s: 0.5 s and 0.75 s fall in the last
        // power-of-two bucket (268 ms and up), bounded by the threshold.
        let t = 1_000 * MS;
        let durations = [300 * MS, 400 * MS, 900 * MS, 1_200 * MS, 5_000 * MS];
        let layout = Layout::new(t, slow_limits(t));
        let got = layout.cumulative(&figures(t, &durations));
        assert_eq!(got.len(), 13);
        assert!(got[3] <= 3 && got[4] <= 3, "{got:?}"); // 0.5 s, 0.75 s
        assert_eq!(got[5], 3); // T
        assert_eq!(got[6], 4); // 1.5 T
        assert_eq!(got[8], 5); // 5 T
    }

    #[test]
    fn a_tiny_threshold_keeps_bounds_strictly_increasing() {
        let layout = Layout::new(1, slow_limits(1));
        let bounds: Vec<u64> = layout.bounds.iter().map(|b| b.0).collect();
        assert_eq!(bounds, [0, 1, 2, 5, 10, 25, 50, 100]);
        assert!(matches!(layout.bounds[1].1, Source::Slow(1)));
        // The 0 bound sits at the very start of its power-of-two bucket:
        // interpolation gives it none of that bucket's polls.
        let got = layout.cumulative(&figures(1, &[0, 1, 2, 3, 400]));
        assert_eq!(got, [0, 2, 3, 4, 4, 4, 4, 4]);
    }
}
