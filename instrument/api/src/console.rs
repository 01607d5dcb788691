//! tokio-console's protocol (`console-api`, package `rs.tokio.console`) as
//! taskscope speaks it on both sides: the app serves console's `Instrument`
//! service next to `taskscope.v1`, and the viewer reads apps that embed
//! console-subscriber. What both sides must agree on lives here: the field
//! names of a task ([`FIELD_NAME`], [`FIELD_TASK_ID`], [`FIELD_KIND`]) and the
//! poll-duration histogram in console's serialized form ([`to_console`],
//! [`longest_poll`], [`to_buckets`]).
//!
//! # The histogram
//!
//! Console's `DurationHistogram.raw_histogram` is an HdrHistogram of
//! nanoseconds (the `hdrhistogram` crate) in the V2 serialization without
//! deflate, as console-subscriber writes it (tokio-console reads V2 with or
//! without deflate). console-subscriber keeps 2 significant figures and a
//! highest value of 1 s, clamps longer polls to it and counts them in
//! `high_outliers` / `highest_outlier`. tokio-console draws the histogram
//! from its min to its max and prints its percentiles; it ignores
//! `max_value`.
//!
//! taskscope keeps 20 power-of-two buckets per task
//! ([`crate::histogram`]), the exact longest poll and the exact sum of the
//! polls. [`to_console`] records one poll at exactly the longest poll (so the
//! histogram's max, which both viewers show as the longest poll, is right to
//! 2 significant figures), and every other poll of bucket `k` at one value in
//! the bucket's range `[low_k, min(high_k, longest)]`, at the same fraction
//! of the range for every bucket, chosen so that the polls add up to their
//! real sum. Counts, the mean and the max are right; a percentile is right to
//! within its bucket (a factor of 2); polls that all fall in one bucket are
//! recorded at their exact mean. The histogram is sized to hold the longest
//! poll, so it has no outliers.
//!
//! ```
//! use taskscope_api::console::{longest_poll, to_buckets, to_console};
//! use taskscope_api::histogram::{POLL_HISTOGRAM_BUCKETS, poll_histogram_bucket};
//!
//! let mut buckets = [0u32; POLL_HISTOGRAM_BUCKETS];
//! buckets[poll_histogram_bucket(50_000)] = 99; // 99 polls of about 50 µs
//! buckets[poll_histogram_bucket(250_000_000)] += 1; // and one of 250 ms
//! let h = to_console(&buckets, 250_000_000, 99 * 50_000 + 250_000_000);
//! let longest = longest_poll(&h).unwrap();
//! assert!(longest.as_millis() == 250 || longest.as_millis() == 251);
//! assert_eq!(to_buckets(&h).unwrap(), buckets);
//! ```

use std::io::Cursor;
use std::time::Duration;

use console_api::tasks::DurationHistogram;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use crate::histogram::{POLL_HISTOGRAM_BUCKETS, poll_histogram_bucket, poll_histogram_bucket_low};

/// The field with the task's name (Tokio records it with `%`: a debug value;
/// `""` for a task without a name). tokio-console's Name column.
pub const FIELD_NAME: &str = "task.name";
/// The field with Tokio's task id (a `u64`). tokio-console's ID column.
pub const FIELD_TASK_ID: &str = "task.id";
/// The field with the task's kind (a debug value: `task`, `local`,
/// `blocking`, `block_on`). tokio-console's Kind column.
pub const FIELD_KIND: &str = "kind";
/// The kind of a task run by `spawn_blocking`: a thread, not a future. A
/// multi-thread runtime's worker threads show up as such tasks under
/// console-subscriber, each with one poll as long as the app's life: never
/// a slow poll.
pub const KIND_BLOCKING: &str = "blocking";
/// The kind of the future a runtime's `block_on` runs.
pub const KIND_BLOCK_ON: &str = "block_on";
/// The kind of a spawned task.
pub const KIND_TASK: &str = "task";

/// The highest value of the histogram [`to_console`] makes when the longest
/// poll is shorter (console-subscriber's default `poll_duration_max`).
pub const DEFAULT_HIGHEST_NS: u64 = 1_000_000_000;

/// Significant figures of the histogram, as console-subscriber.
pub const SIGNIFICANT_FIGURES: u8 = 2;

/// taskscope's poll histogram of one task (`buckets`, the exact longest poll
/// `max_poll_ns` and the sum of its polls `busy_ns`) as an HdrHistogram; see
/// the module docs for how the polls are placed.
pub fn to_hdr(
    buckets: &[u32; POLL_HISTOGRAM_BUCKETS],
    max_poll_ns: u64,
    busy_ns: u64,
) -> Histogram<u64> {
    let highest = max_poll_ns.max(DEFAULT_HIGHEST_NS);
    let mut h = Histogram::<u64>::new_with_bounds(1, highest, SIGNIFICANT_FIGURES)
        .expect("1 ≤ 1 s ≤ highest with 2 significant figures are valid bounds");
    let mut counts: [u64; POLL_HISTOGRAM_BUCKETS] = std::array::from_fn(|k| u64::from(buckets[k]));
    let mut target = busy_ns as f64;
    if max_poll_ns > 0 {
        let k = poll_histogram_bucket(max_poll_ns);
        if counts[k] > 0 && h.record(max_poll_ns).is_ok() {
            counts[k] -= 1;
            target -= max_poll_ns as f64;
        }
    }
    // Each bucket's range, capped by the longest poll.
    let cap = if max_poll_ns > 0 {
        max_poll_ns
    } else {
        highest
    };
    let range = |k: usize| {
        let low = poll_histogram_bucket_low(k).min(cap);
        let high = if k + 1 < POLL_HISTOGRAM_BUCKETS {
            (poll_histogram_bucket_low(k + 1) - 1).min(cap)
        } else {
            cap
        };
        (low, high.max(low))
    };
    let (mut base, mut room) = (0f64, 0f64);
    for (k, &c) in counts.iter().enumerate() {
        let (low, high) = range(k);
        base += c as f64 * low as f64;
        room += c as f64 * (high - low) as f64;
    }
    // The same fraction of every bucket's range, so the polls add up to
    // `busy_ns`; clamped, so counters read at slightly different instants
    // never move a poll out of its bucket.
    let f = if room > 0.0 {
        ((target - base) / room).clamp(0.0, 1.0)
    } else {
        0.0
    };
    for (k, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let (low, high) = range(k);
        let at = low + ((high - low) as f64 * f).round() as u64;
        // 1 is the lowest value the histogram discerns; within bounds by construction.
        let _ = h.record_n(at.clamp(1, highest), c);
    }
    h
}

/// The `DurationHistogram` of console's `TaskDetails.poll_times_histogram`
/// for taskscope's histogram of one task (see [`to_hdr`]).
pub fn to_console(
    buckets: &[u32; POLL_HISTOGRAM_BUCKETS],
    max_poll_ns: u64,
    busy_ns: u64,
) -> DurationHistogram {
    let h = to_hdr(buckets, max_poll_ns, busy_ns);
    let mut raw_histogram = Vec::with_capacity(64);
    // Writing into a Vec cannot fail; on the impossible error the histogram is empty.
    if V2Serializer::new()
        .serialize(&h, &mut raw_histogram)
        .is_err()
    {
        raw_histogram.clear();
    }
    DurationHistogram {
        raw_histogram,
        max_value: h.high(),
        high_outliers: 0,
        highest_outlier: None,
    }
}

/// Reads a serialized histogram (V2, deflated or not); `None` when it is not one.
pub fn decode(raw: &[u8]) -> Option<Histogram<u64>> {
    Deserializer::new().deserialize(&mut Cursor::new(raw)).ok()
}

/// The longest poll a console histogram records: its max, or the highest
/// outlier when the app clamped longer polls to its `max_value`. Right to
/// 2 significant figures: a histogram's max is the top of its sub-bucket, up
/// to ~0.8 % above the real value (a 250.0 ms poll reads 250.6 ms).
/// `None` when the histogram cannot be read.
pub fn longest_poll(h: &DurationHistogram) -> Option<Duration> {
    let hist = decode(&h.raw_histogram)?;
    let max = if hist.is_empty() { 0 } else { hist.max() };
    Some(Duration::from_nanos(
        h.highest_outlier.unwrap_or(0).max(max),
    ))
}

/// A console histogram in taskscope's buckets (what taskscope's viewer draws
/// for an app that embeds console-subscriber): each HdrHistogram sub-bucket's
/// count goes to the bucket of its lowest value, outliers to the bucket of
/// the highest outlier. `None` when the histogram cannot be read.
pub fn to_buckets(h: &DurationHistogram) -> Option<[u32; POLL_HISTOGRAM_BUCKETS]> {
    let hist = decode(&h.raw_histogram)?;
    let mut out = [0u32; POLL_HISTOGRAM_BUCKETS];
    for v in hist.iter_recorded() {
        let k = poll_histogram_bucket(hist.lowest_equivalent(v.value_iterated_to()));
        out[k] = out[k].saturating_add(u32::try_from(v.count_at_value()).unwrap_or(u32::MAX));
    }
    if h.high_outliers > 0 {
        // console-subscriber recorded each outlier at `max_value` as well: move them.
        let clamped = poll_histogram_bucket(h.max_value);
        let outlier = poll_histogram_bucket(h.highest_outlier.unwrap_or(h.max_value));
        let n = u32::try_from(h.high_outliers)
            .unwrap_or(u32::MAX)
            .min(out[clamped]);
        out[clamped] -= n;
        out[outlier] = out[outlier].saturating_add(n);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(ns: u64) -> usize {
        poll_histogram_bucket(ns)
    }

    #[test]
    fn max_count_and_percentiles_survive() {
        let mut b = [0u32; POLL_HISTOGRAM_BUCKETS];
        // 1000 polls of ~50 µs (bucket 6: 32.8..65.5 µs), one of 250 ms.
        b[bucket(50_000)] = 1000;
        b[bucket(250_000_000)] = 1;
        let c = to_console(&b, 250_000_000, 1000 * 50_000 + 250_000_000);
        let h = decode(&c.raw_histogram).unwrap();
        assert_eq!(h.len(), 1001);
        // The mean matches busy / polls, so the 1000 polls sit at ~50 µs.
        let p50 = h.value_at_quantile(0.5) as f64;
        assert!((p50 / 50_000.0 - 1.0).abs() < 0.01, "{p50}");
        let max = longest_poll(&c).unwrap();
        assert!(
            max >= Duration::from_millis(250) && max < Duration::from_millis(253),
            "{max:?}"
        );
        assert_eq!(to_buckets(&c).unwrap(), b);
        assert_eq!(c.high_outliers, 0);
        assert_eq!(c.highest_outlier, None);
    }

    #[test]
    fn a_poll_past_a_second_is_the_max_not_an_outlier() {
        let mut b = [0u32; POLL_HISTOGRAM_BUCKETS];
        b[19] = 3;
        let c = to_console(&b, 5_000_000_000, 5_600_000_000);
        assert_eq!(c.high_outliers, 0);
        let h = decode(&c.raw_histogram).unwrap();
        assert_eq!(h.len(), 3);
        let max = longest_poll(&c).unwrap().as_nanos() as f64;
        assert!((max / 5e9 - 1.0).abs() < 0.01, "{max}");
        // The two others: 300 ms each (what the sum leaves them).
        let min = h.min() as f64;
        assert!((min / 3e8 - 1.0).abs() < 0.01, "{min}");
    }

    #[test]
    fn polls_of_one_bucket_are_their_mean() {
        let mut b = [0u32; POLL_HISTOGRAM_BUCKETS];
        b[18] = 8; // 8 polls of ~250 ms: the bucket is 134..268 ms
        let c = to_console(&b, 250_600_000, 8 * 250_100_000);
        let h = decode(&c.raw_histogram).unwrap();
        for q in [0.1, 0.5, 0.99] {
            let v = h.value_at_quantile(q) as f64;
            assert!((v / 250e6 - 1.0).abs() < 0.01, "p{q}: {v}");
        }
    }

    #[test]
    fn counters_read_apart_stay_in_their_buckets() {
        let mut b = [0u32; POLL_HISTOGRAM_BUCKETS];
        b[3] = 10;
        b[10] = 1;
        // The sum read lower than the buckets allow, then higher.
        for busy in [0, u64::MAX / 4] {
            let c = to_console(&b, 600_000, busy);
            assert_eq!(to_buckets(&c).unwrap(), b, "busy {busy}");
        }
        // A longest poll read before its bucket's count (0 polls there yet).
        let c = to_console(&b, 300_000_000, 1_000_000);
        assert_eq!(to_buckets(&c).unwrap(), b);
    }

    #[test]
    fn empty_histogram() {
        let c = to_console(&[0; POLL_HISTOGRAM_BUCKETS], 0, 0);
        assert_eq!(longest_poll(&c), Some(Duration::ZERO));
        assert_eq!(to_buckets(&c).unwrap(), [0; POLL_HISTOGRAM_BUCKETS]);
    }

    #[test]
    fn console_subscriber_outliers_are_read() {
        // As console-subscriber records a 3 s poll with its 1 s max.
        let mut h = Histogram::<u64>::new_with_max(1_000_000_000, 2).unwrap();
        h.record(1_000_000_000).unwrap();
        h.record(10_000).unwrap();
        let mut raw = Vec::new();
        V2Serializer::new().serialize(&h, &mut raw).unwrap();
        let c = DurationHistogram {
            raw_histogram: raw,
            max_value: 1_000_000_000,
            high_outliers: 1,
            highest_outlier: Some(3_000_000_000),
        };
        assert_eq!(longest_poll(&c), Some(Duration::from_secs(3)));
        let b = to_buckets(&c).unwrap();
        assert_eq!(b[19], 1);
        assert_eq!(b[bucket(10_000)], 1);
        assert_eq!(b.iter().sum::<u32>(), 2);
    }

    #[test]
    fn garbage_is_not_a_histogram() {
        let c = DurationHistogram {
            raw_histogram: b"not a histogram".to_vec(),
            max_value: 0,
            high_outliers: 0,
            highest_outlier: None,
        };
        assert_eq!(longest_poll(&c), None);
        assert_eq!(to_buckets(&c), None);
    }
}
