//! The runtime's recent past, for the runtime view's plots: one [`Sample`]
//! per update from the app (every 500 ms), for the last [`HISTORY_WINDOW`].
//!
//! Each sample holds what changed since the previous one, per second or as a
//! share of the time between them (from the cumulative counters the app
//! sends: each worker's busy time and polls), and the gauges as sent (tasks
//! alive, global queue depth). Times are the app's (`at` of each update), so
//! a replay of recorded updates draws the same plots.
//!
//! Bounded: at most [`MAX_SAMPLES`] samples (5 minutes at 100 ms updates; at
//! the app's 500 ms, 25 minutes), each with at most [`MAX_WORKERS_PLOTTED`]
//! workers' busy ratios; samples older than the window before the time on
//! screen are dropped. About 1 MB at most.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::state::model::{Finding, FindingKind, RuntimeMetrics};

/// How far back the plots go.
pub const HISTORY_WINDOW: Duration = Duration::from_secs(300);

/// The most samples kept.
pub const MAX_SAMPLES: usize = 3_000;

/// The most workers whose busy ratio is kept per sample (the first ones by index).
pub const MAX_WORKERS_PLOTTED: usize = 64;

/// The runtime between the previous update and this one.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The app's time of the update.
    pub at: SystemTime,
    /// Each worker's share of the time since the previous sample spent busy
    /// (0 to 1), by worker index; `None` when not known (the first sample,
    /// after the app restarted, or an app that does not send busy times).
    pub busy: Option<Vec<f32>>,
    /// Polls per second since the previous sample, all workers together
    /// (`None` when not known, as for `busy`).
    pub polls_per_sec: Option<f64>,
    /// Slow polls that ended, per second since the previous sample (`None`
    /// for the first sample). A poll still blocked is not counted until it
    /// ends; meanwhile its worker reads 100 % busy.
    pub slow_per_sec: Option<f64>,
    /// Tasks alive in the runtime.
    pub alive_tasks: u64,
    /// Tasks in the global queue.
    pub global_queue_depth: u64,
}

/// The counters of the previous update, to take differences from.
#[derive(Clone, Debug, PartialEq)]
struct Counters {
    at: SystemTime,
    busy: Vec<Duration>,
    polls: Vec<u64>,
}

/// The samples of the last [`HISTORY_WINDOW`], oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeHistory {
    samples: VecDeque<Sample>,
    previous: Option<Counters>,
    /// Slow polls ended since the last sample (updates with the same time
    /// as the previous one make no sample).
    slow_pending: u64,
}

/// Slow polls that ended in `findings`: their final reports (a poll's
/// in-progress reports come before it, one a second while it is blocked).
pub fn slow_polls_ended(findings: &[Finding]) -> u64 {
    findings
        .iter()
        .filter(|f| {
            matches!(
                f.kind,
                FindingKind::SlowPoll {
                    in_progress: false,
                    ..
                }
            )
        })
        .count() as u64
}

/// `now - before` for each pair, when both lists are as long and none went down.
fn increases<T: Copy + PartialOrd + std::ops::Sub<Output = T>>(
    now: &[T],
    before: &[T],
) -> Option<Vec<T>> {
    if now.is_empty() || now.len() != before.len() {
        return None;
    }
    now.iter()
        .zip(before)
        .map(|(n, b)| (n >= b).then(|| *n - *b))
        .collect()
}

impl RuntimeHistory {
    /// Adds the sample of an update the app sent at `at` with `metrics`, in
    /// which `slow_ended` slow polls ended ([`slow_polls_ended`]).
    ///
    /// An update timed before the previous one (the app's clock was set
    /// back) starts the history anew; one timed the same makes no sample.
    pub fn record(&mut self, at: SystemTime, metrics: &RuntimeMetrics, slow_ended: u64) {
        let counters = Counters {
            at,
            busy: metrics.worker_busy.clone(),
            polls: metrics.worker_polls.clone(),
        };
        let elapsed = match &self.previous {
            Some(previous) => match at.duration_since(previous.at) {
                Ok(d) if d.is_zero() => {
                    self.slow_pending += slow_ended;
                    self.previous = Some(counters);
                    return;
                }
                Ok(d) => Some(d),
                Err(_) => {
                    *self = RuntimeHistory::default();
                    None
                }
            },
            None => None,
        };
        let mut sample = Sample {
            at,
            busy: None,
            polls_per_sec: None,
            slow_per_sec: None,
            alive_tasks: metrics.alive_tasks,
            global_queue_depth: metrics.global_queue_depth,
        };
        if let (Some(elapsed), Some(previous)) = (elapsed, &self.previous) {
            let secs = elapsed.as_secs_f64();
            sample.busy = increases(&counters.busy, &previous.busy).map(|busy| {
                busy.iter()
                    .take(MAX_WORKERS_PLOTTED)
                    .map(|b| (b.as_secs_f64() / secs).clamp(0.0, 1.0) as f32)
                    .collect()
            });
            sample.polls_per_sec = increases(&counters.polls, &previous.polls)
                .map(|polls| polls.iter().sum::<u64>() as f64 / secs);
            sample.slow_per_sec = Some((self.slow_pending + slow_ended) as f64 / secs);
            self.slow_pending = 0;
        }
        self.previous = Some(counters);
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Drops the samples from before `end` less [`HISTORY_WINDOW`]: `end` is
    /// the time on screen (which stays put while the view is paused).
    pub fn prune(&mut self, end: SystemTime) {
        let Some(start) = end.checked_sub(HISTORY_WINDOW) else {
            return;
        };
        while self.samples.front().is_some_and(|s| s.at < start) {
            self.samples.pop_front();
        }
    }

    /// The samples in the window that ends at `end` (later ones, taken while
    /// paused, are left out), oldest first.
    pub fn window(&self, end: SystemTime) -> impl DoubleEndedIterator<Item = &Sample> + Clone {
        let start = end.checked_sub(HISTORY_WINDOW).unwrap_or(end);
        self.samples
            .iter()
            .filter(move |s| s.at >= start && s.at <= end)
    }

    /// Every sample kept, oldest first.
    pub fn samples(&self) -> &VecDeque<Sample> {
        &self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(busy_ms: &[u64], polls: &[u64], alive: u64) -> RuntimeMetrics {
        RuntimeMetrics {
            workers: busy_ms.len() as u64,
            alive_tasks: alive,
            worker_busy: busy_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            worker_polls: polls.to_vec(),
            ..RuntimeMetrics::default()
        }
    }

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms)
    }

    #[test]
    fn busy_ratios_and_rates_come_from_the_counters_differences() {
        let mut h = RuntimeHistory::default();
        h.record(t(0), &metrics(&[0, 0], &[0, 0], 4), 0);
        h.record(t(500), &metrics(&[500, 100], &[40, 60], 5), 2);
        // Tokio counted a long poll late: more than the time between, shown as 100 %.
        h.record(t(1000), &metrics(&[1500, 100], &[40, 160], 6), 0);
        let s: Vec<&Sample> = h.samples().iter().collect();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].busy.as_ref(), s[0].polls_per_sec, s[0].slow_per_sec),
            (None, None, None)
        );
        assert_eq!(s[1].busy, Some(vec![1.0, 0.2]));
        assert_eq!(s[1].polls_per_sec, Some(200.0));
        assert_eq!(s[1].slow_per_sec, Some(4.0));
        assert_eq!(s[1].alive_tasks, 5);
        assert_eq!(s[2].busy, Some(vec![1.0, 0.0]));
        assert_eq!(s[2].polls_per_sec, Some(200.0));
        assert_eq!(s[2].slow_per_sec, Some(0.0));
    }

    #[test]
    fn a_restarted_app_or_a_clock_set_back_leaves_a_gap_not_a_spike() {
        let mut h = RuntimeHistory::default();
        h.record(t(0), &metrics(&[900], &[90], 1), 0);
        // Counters went down: another run of the app.
        h.record(t(500), &metrics(&[10], &[1], 1), 0);
        assert_eq!(h.samples()[1].busy, None);
        assert_eq!(h.samples()[1].polls_per_sec, None);
        h.record(t(1000), &metrics(&[260], &[51], 1), 1);
        assert_eq!(h.samples()[2].busy, Some(vec![0.5]));
        // The same time again: no sample; its slow polls count in the next.
        h.record(t(1000), &metrics(&[260], &[51], 1), 1);
        assert_eq!(h.samples().len(), 3);
        h.record(t(2000), &metrics(&[260], &[51], 1), 0);
        assert_eq!(h.samples()[3].slow_per_sec, Some(1.0));
        // Back in time: a new history.
        h.record(t(100), &metrics(&[0], &[0], 1), 0);
        assert_eq!(h.samples().len(), 1);
    }

    #[test]
    fn history_is_bounded_by_the_window_and_by_count() {
        // Updates every 10 ms: the count bounds it.
        let mut h = RuntimeHistory::default();
        for i in 0..(MAX_SAMPLES as u64 + 10) {
            h.record(t(i * 10), &metrics(&[i], &[i], 1), 0);
        }
        assert_eq!(h.samples().len(), MAX_SAMPLES);
        assert_eq!(h.samples()[0].at, t(100));

        // Every 500 ms for 500 s: the window shows the last 5 minutes.
        let mut h = RuntimeHistory::default();
        for i in 0..1000 {
            h.record(t(i * 500), &metrics(&[i], &[i], 1), 0);
        }
        let end = t(999 * 500);
        assert_eq!(h.window(end).count(), 601);
        // Paused 10 s ago: the window ends there, later samples are left out.
        let paused = end - Duration::from_secs(10);
        let shown: Vec<&Sample> = h.window(paused).collect();
        assert_eq!(shown.len(), 601);
        assert_eq!(shown.last().unwrap().at, paused);
        assert_eq!(shown.first().unwrap().at, paused - HISTORY_WINDOW);
        h.prune(paused);
        assert_eq!(h.samples()[0].at, paused - HISTORY_WINDOW);
        assert_eq!(h.samples().len(), 621);

        let workers: Vec<u64> = (0..100).collect();
        h.record(
            end + Duration::from_secs(1),
            &metrics(&workers, &workers, 1),
            0,
        );
        h.record(
            end + Duration::from_secs(2),
            &metrics(&workers, &workers, 1),
            0,
        );
        let last = h.samples().back().unwrap();
        assert_eq!(last.busy.as_ref().map(Vec::len), Some(MAX_WORKERS_PLOTTED));
    }

    #[test]
    fn only_final_slow_poll_reports_count_as_ended() {
        let slow = |in_progress| {
            Finding::new(
                FindingKind::SlowPoll {
                    duration_ms: 150.0,
                    threshold_ms: 100,
                    thread: "w".into(),
                    stack: vec![],
                    stack_unavailable: None,
                    stack_truncated: false,
                    in_progress,
                    poll: 1,
                },
                None,
            )
        };
        let dropped = Finding::new(FindingKind::FindingsDropped { count: 3 }, None);
        assert_eq!(
            slow_polls_ended(&[slow(true), slow(false), dropped, slow(false)]),
            2
        );
    }
}
