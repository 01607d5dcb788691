//! The per-task poll-duration histogram: 20 power-of-two buckets. The app
//! counts every poll into one of them (one relaxed store per poll), the
//! `taskscope.v1` protocol carries them (`HistogramBucket`), and the
//! viewer draws them; [`crate::console`] turns them into tokio-console's form
//! and back.
//!
//! ```
//! use taskscope_api::histogram::{poll_histogram_bucket, poll_histogram_bucket_limit};
//! // A 250 ms poll falls in bucket 18: [134, 268) ms.
//! assert_eq!(poll_histogram_bucket(250_000_000), 18);
//! assert_eq!(poll_histogram_bucket_limit(18), Some(268_435_456));
//! assert_eq!(poll_histogram_bucket_limit(19), None);
//! ```

/// Buckets of the per-task poll-duration histogram: bucket 0 counts polls
/// under 1.024 µs, bucket `k` those in `[2^(k-1), 2^k) × 1.024 µs`, the last one
/// everything from 268 ms up.
pub const POLL_HISTOGRAM_BUCKETS: usize = 20;

/// The upper bound of histogram bucket `k`, in nanoseconds (`None` for the last one).
pub fn poll_histogram_bucket_limit(k: usize) -> Option<u64> {
    (k + 1 < POLL_HISTOGRAM_BUCKETS).then(|| 1024u64 << k)
}

/// The lowest duration of histogram bucket `k`, in nanoseconds.
pub fn poll_histogram_bucket_low(k: usize) -> u64 {
    if k == 0 { 0 } else { 1024u64 << (k - 1) }
}

/// The bucket of a poll of `took_ns` nanoseconds.
#[inline]
pub fn poll_histogram_bucket(took_ns: u64) -> usize {
    ((64 - (took_ns >> 10).leading_zeros()) as usize).min(POLL_HISTOGRAM_BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_their_bounds_agree() {
        assert_eq!(poll_histogram_bucket(0), 0);
        assert_eq!(poll_histogram_bucket(1023), 0);
        assert_eq!(poll_histogram_bucket(1024), 1);
        assert_eq!(poll_histogram_bucket(2047), 1);
        assert_eq!(poll_histogram_bucket(2048), 2);
        assert_eq!(poll_histogram_bucket(268_435_456), 19);
        assert_eq!(poll_histogram_bucket(u64::MAX), 19);
        for k in 0..POLL_HISTOGRAM_BUCKETS {
            let low = poll_histogram_bucket_low(k);
            assert_eq!(poll_histogram_bucket(low), k);
            if let Some(limit) = poll_histogram_bucket_limit(k) {
                assert_eq!(poll_histogram_bucket(limit - 1), k);
                assert_eq!(poll_histogram_bucket(limit), k + 1);
                assert_eq!(poll_histogram_bucket_low(k + 1), limit);
            }
        }
    }
}
