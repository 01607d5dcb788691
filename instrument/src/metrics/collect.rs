//! One scrape: the figures read from the session at that moment and
//! encoded with `prometheus-client` (a [`Collector`], called by its
//! registry's encoder).
//!
//! Per spawn location, a scrape adds two things up: the running totals of
//! the tasks that have ended (`model::locations`, read first) and the live
//! tasks' records (a scan of the registry, as the viewer server's publisher
//! makes one). A task that ends between the two reads is in neither for
//! that scrape, never in both; so that a counter never goes down when that
//! happens, each series is never reported lower than in the previous scrape
//! (`Previous`): it catches up at the next one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::buckets::{Layout, PollFigures};
use crate::model::app_runtime;
use crate::model::locations::{SLOW_CLASSES, Slot, TotalsNow};
use crate::model::task::{POLL_HISTOGRAM_BUCKETS, SpawnLocation};
use crate::session::Session;
use crate::sync::lock;

/// The `spawned_at` of the tasks of locations past the limit.
pub(crate) const OTHER: &str = "other";

/// What the tasks of one `spawned_at` add up to at one scrape.
#[derive(Clone, Debug, Default)]
struct Group {
    alive: u64,
    ended: u64,
    busy_ns: u64,
    slow_polls: u64,
    polls: PollFigures,
}

impl Group {
    fn add_totals(&mut self, t: &TotalsNow) {
        self.ended += t.ended;
        self.busy_ns += t.busy_ns;
        self.slow_polls += t.slow_polls;
        self.polls.polls += t.polls;
        for k in 0..POLL_HISTOGRAM_BUCKETS {
            self.polls.histogram[k] += t.histogram[k];
        }
        for c in 0..=SLOW_CLASSES.len() {
            self.polls.slow[c] += t.slow[c];
        }
    }

    fn add(&mut self, other: &Group) {
        self.alive += other.alive;
        let totals = TotalsNow {
            ended: other.ended,
            polls: other.polls.polls,
            busy_ns: other.busy_ns,
            histogram: other.polls.histogram,
            slow_polls: other.slow_polls,
            slow: other.polls.slow,
        };
        self.add_totals(&totals);
    }
}

/// A series' values as last reported (counters and buckets only grow).
#[derive(Clone, Debug, Default)]
struct Previous {
    spawned: u64,
    polls: u64,
    busy_ns: u64,
    slow_polls: u64,
    buckets: Vec<u64>,
}

/// What one `spawned_at` series reports.
#[derive(Clone, Debug, Default, PartialEq)]
struct Reported {
    alive: u64,
    spawned: u64,
    polls: u64,
    busy_ns: u64,
    slow_polls: u64,
    /// Cumulative counts at each finite bound of the layout.
    buckets: Vec<u64>,
}

impl Previous {
    /// `group` as reported: each counter and bucket at least what it was.
    fn report(&mut self, group: &Group, layout: &Layout) -> Reported {
        let mut buckets = layout.cumulative(&group.polls);
        if self.buckets.len() == buckets.len() {
            // The element-wise max of two non-decreasing sequences does not
            // decrease either.
            for (b, p) in buckets.iter_mut().zip(&self.buckets) {
                *b = (*b).max(*p);
            }
        }
        self.spawned = self.spawned.max(group.alive + group.ended);
        self.polls = self
            .polls
            .max(group.polls.polls)
            .max(buckets.last().copied().unwrap_or(0));
        self.busy_ns = self.busy_ns.max(group.busy_ns);
        self.slow_polls = self.slow_polls.max(group.slow_polls);
        self.buckets.clone_from(&buckets);
        Reported {
            alive: group.alive,
            spawned: self.spawned,
            polls: self.polls,
            busy_ns: self.busy_ns,
            slow_polls: self.slow_polls,
            buckets,
        }
    }
}

/// taskscope's metrics for one session.
pub(crate) struct TaskscopeCollector {
    session: Arc<Session>,
    layout: Option<Layout>,
    previous: Mutex<HashMap<String, Previous>>,
}

impl std::fmt::Debug for TaskscopeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskscopeCollector").finish_non_exhaustive()
    }
}

impl TaskscopeCollector {
    pub(crate) fn new(session: Arc<Session>) -> TaskscopeCollector {
        let layout = session
            .locations
            .as_ref()
            .map(|l| Layout::new(session.slow_poll_ns, l.slow_limits_ns()));
        TaskscopeCollector {
            session,
            layout,
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// Every `spawned_at` with its figures now, sorted by `spawned_at`.
    fn gather(&self) -> BTreeMap<String, Group> {
        let mut by_slot: HashMap<Slot, (String, Group)> = HashMap::new();
        let Some(locations) = &self.session.locations else {
            return BTreeMap::new();
        };
        let label = |slot: Slot, location: &SpawnLocation| match slot {
            Slot::Named(_) => location.to_string(),
            Slot::Other => OTHER.to_string(),
        };
        // The ended tasks' totals first, then the live tasks: see the module docs.
        for (slot, location) in locations.named() {
            let (_, group) = by_slot
                .entry(slot)
                .or_insert_with(|| (label(slot, &location), Group::default()));
            group.add_totals(&locations.totals(slot).now());
        }
        let other = locations.totals(Slot::Other).now();
        if other != TotalsNow::default() {
            let (_, group) = by_slot
                .entry(Slot::Other)
                .or_insert_with(|| (OTHER.to_string(), Group::default()));
            group.add_totals(&other);
        }
        for cell in self.session.registry.live_cells() {
            let slot = locations.slot(&cell.spawned_at);
            let (_, group) = by_slot
                .entry(slot)
                .or_insert_with(|| (label(slot, &cell.spawned_at), Group::default()));
            group.alive += 1;
            group.polls.polls += cell.polls.load(Relaxed);
            group.busy_ns += cell.busy_ns.load(Relaxed);
            for (k, n) in cell.histogram().into_iter().enumerate() {
                group.polls.histogram[k] += u64::from(n);
            }
        }
        // A location may have more than one entry (see `Locations::slot`):
        // one series per text.
        let mut by_text: BTreeMap<String, Group> = BTreeMap::new();
        for (text, group) in by_slot.into_values() {
            by_text.entry(text).or_default().add(&group);
        }
        by_text
    }

    fn encode_locations(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(layout) = &self.layout else {
            return Ok(());
        };
        let groups = self.gather();
        let reported: Vec<(String, Reported)> = {
            let mut previous = lock(&self.previous);
            groups
                .iter()
                .map(|(text, group)| {
                    let p = previous.entry(text.clone()).or_default();
                    (text.clone(), p.report(group, layout))
                })
                .collect()
        };
        let labels = |text: &String| [("spawned_at", text.clone())];

        let mut family = encoder.encode_descriptor(
            "taskscope_tasks_alive",
            "Tasks alive now, by where they were spawned.",
            None,
            MetricType::Gauge,
        )?;
        for (text, r) in &reported {
            ConstGauge::new(r.alive as i64).encode(family.encode_family(&labels(text))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "taskscope_tasks_spawned",
            "Tasks spawned since taskscope started, by where they were spawned.",
            None,
            MetricType::Counter,
        )?;
        for (text, r) in &reported {
            ConstCounter::new(r.spawned).encode(family.encode_family(&labels(text))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "taskscope_polls",
            "Polls that ended, by where the polled task was spawned.",
            None,
            MetricType::Counter,
        )?;
        for (text, r) in &reported {
            ConstCounter::new(r.polls).encode(family.encode_family(&labels(text))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "taskscope_poll_duration",
            "How long each poll took, by where the polled task was spawned; buckets dense \
             around the slow-poll threshold, exact from the threshold up (see the docs).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let bounds = layout.bounds_seconds();
        for (text, r) in &reported {
            // Per-bucket counts, as the encoder wants them (it sums them up again).
            let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(bounds.len() + 1);
            let mut below = 0;
            for (bound, &cumulative) in bounds.iter().zip(&r.buckets) {
                buckets.push((*bound, cumulative - below));
                below = cumulative;
            }
            buckets.push((f64::INFINITY, r.polls - below));
            family
                .encode_family(&labels(text))?
                .encode_histogram::<NoLabelSet>(r.busy_ns as f64 / 1e9, r.polls, &buckets, None)?;
        }
        let mut family = encoder.encode_descriptor(
            "taskscope_slow_polls",
            "Polls that took the slow-poll threshold or longer, counted once each as they \
             end, by where the polled task was spawned.",
            None,
            MetricType::Counter,
        )?;
        for (text, r) in &reported {
            ConstCounter::new(r.slow_polls).encode(family.encode_family(&labels(text))?)?;
        }
        Ok(())
    }

    fn encode_findings(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pipeline = &self.session.pipeline;
        let mut family = encoder.encode_descriptor(
            "taskscope_findings",
            "Findings that went through the log, the report file and the viewer, by kind \
             and reason.",
            None,
            MetricType::Counter,
        )?;
        for (kind, reason, count) in pipeline.finding_counts() {
            ConstCounter::new(count)
                .encode(family.encode_family(&[("kind", kind), ("reason", reason)])?)?;
        }
        let dropped = pipeline.stats().dropped;
        ConstCounter::new(dropped).encode(encoder.encode_descriptor(
            "taskscope_findings_dropped",
            "Findings dropped because the queue to the findings thread was full (the app is \
             never made to wait).",
            None,
            MetricType::Counter,
        )?)
    }

    fn encode_settings(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        ConstGauge::new(self.session.slow_poll_ns as f64 / 1e9).encode(
            encoder.encode_descriptor(
                "taskscope_slow_poll_threshold",
                "The slow-poll threshold in force (TASKSCOPE_SLOW_POLL_MS).",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?,
        )?;
        if let Some(locations) = &self.session.locations {
            // Locations, not entries: two threads meeting a new location at
            // once may give it two entries (`Locations::slot`), summed into
            // one series.
            let distinct: HashSet<SpawnLocation> = locations
                .named()
                .into_iter()
                .map(|(_, location)| location)
                .collect();
            ConstGauge::new(distinct.len() as i64).encode(encoder.encode_descriptor(
                "taskscope_spawn_locations",
                "Spawn locations with series of their own (at most \
                 TASKSCOPE_METRICS_MAX_LOCATIONS; the rest are spawned_at=\"other\").",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }

    fn encode_runtime(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(handle) = app_runtime::handle() else {
            return Ok(());
        };
        let f = app_runtime::figures(handle);
        let gauge = |encoder: &mut DescriptorEncoder, name, help, value: u64| {
            ConstGauge::new(value as i64).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)
        };
        gauge(
            encoder,
            "taskscope_runtime_workers",
            "Worker threads of the app's Tokio runtime.",
            f.workers,
        )?;
        gauge(
            encoder,
            "taskscope_runtime_alive_tasks",
            "Tasks alive on the app's runtime, as Tokio counts them.",
            f.alive_tasks,
        )?;
        gauge(
            encoder,
            "taskscope_runtime_global_queue_depth",
            "Tasks waiting in the runtime's global (injection) queue.",
            f.global_queue_depth,
        )?;
        let worker = |w: usize| [("worker", w.to_string())];
        let mut family = encoder.encode_descriptor(
            "taskscope_runtime_worker_busy",
            "Time each worker thread spent running tasks since the runtime started; its rate \
             is the worker's busy ratio.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for (w, busy) in f.worker_busy.iter().enumerate() {
            ConstCounter::new(busy.as_secs_f64()).encode(family.encode_family(&worker(w))?)?;
        }
        if cfg!(tokio_unstable) {
            let mut family = encoder.encode_descriptor(
                "taskscope_runtime_worker_local_queue_depth",
                "Tasks waiting in each worker's local queue.",
                None,
                MetricType::Gauge,
            )?;
            for (w, depth) in f.local_queue_depths.iter().enumerate() {
                ConstGauge::new(*depth as i64).encode(family.encode_family(&worker(w))?)?;
            }
            gauge(
                encoder,
                "taskscope_runtime_blocking_threads",
                "Threads of the runtime's blocking pool (spawn_blocking).",
                f.blocking_threads,
            )?;
            gauge(
                encoder,
                "taskscope_runtime_blocking_queue_depth",
                "Tasks waiting for a thread of the blocking pool.",
                f.blocking_queue_depth,
            )?;
        }
        Ok(())
    }
}

impl Collector for TaskscopeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_locations(&mut encoder)?;
        self.encode_findings(&mut encoder)?;
        self.encode_settings(&mut encoder)?;
        self.encode_runtime(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::registry::Registry;

    use super::*;
    use crate::detect::events;
    use crate::model::task::{TaskCell, TaskEnd, poll_histogram_bucket};
    use crate::settings::Settings;

    const A: SpawnLocation = SpawnLocation {
        file: "src/a.rs",
        line: 1,
        col: 5,
    };
    const B: SpawnLocation = SpawnLocation {
        file: "src/b.rs",
        line: 2,
        col: 9,
    };

    fn session(max_locations: usize) -> Arc<Session> {
        let (session, _sinks) = Session::new(Settings {
            metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
            metrics_max_locations: max_locations,
            slow_poll_threshold: Duration::from_millis(100),
            ..Settings::default()
        });
        Arc::new(session)
    }

    /// A task at `at` whose polls took `durations_ns`.
    fn task(session: &Session, key: u64, at: SpawnLocation, durations_ns: &[u64]) {
        let cell = TaskCell::new(key, None, at, None);
        for &d in durations_ns {
            TaskCell::bump(&cell.polls, 1);
            TaskCell::bump(&cell.busy_ns, d);
            cell.histogram[poll_histogram_bucket(d)].fetch_add(1, Relaxed);
            if d >= session.slow_poll_ns {
                session.locations.as_ref().unwrap().slow_poll(&at, d);
            }
        }
        session.registry.add(key, cell);
    }

    struct Scraper {
        registry: Registry,
    }

    impl Scraper {
        fn new(session: &Arc<Session>) -> Scraper {
            let mut registry = Registry::default();
            registry.register_collector(Box::new(TaskscopeCollector::new(Arc::clone(session))));
            Scraper { registry }
        }

        /// The value of the sample `series` (name and labels, as written).
        fn value(&self, series: &str) -> f64 {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
                .unwrap_or_else(|| panic!("no {series} in\n{text}"));
            line[series.len() + 1..].parse().unwrap()
        }
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn ended_and_live_tasks_add_up_by_location() {
        let session = session(10);
        task(&session, 1, A, &[MS, 250 * MS]);
        task(&session, 2, A, &[2 * MS]);
        task(&session, 3, A, &[]);
        task(&session, 4, B, &[120 * MS, 30 * MS, 40 * MS]);
        events::task_ended(&session, 1, TaskEnd::Completed, false);
        let s = Scraper::new(&session);
        let a = r#"{spawned_at="src/a.rs:1:5"}"#;
        let b = r#"{spawned_at="src/b.rs:2:9"}"#;
        assert_eq!(s.value(&format!("taskscope_tasks_alive{a}")), 2.0);
        assert_eq!(s.value(&format!("taskscope_tasks_spawned_total{a}")), 3.0);
        assert_eq!(s.value(&format!("taskscope_polls_total{a}")), 3.0);
        assert_eq!(s.value(&format!("taskscope_slow_polls_total{a}")), 1.0);
        assert_eq!(s.value(&format!("taskscope_slow_polls_total{b}")), 1.0);
        assert_eq!(s.value(&format!("taskscope_tasks_alive{b}")), 1.0);
        assert_eq!(
            s.value(&format!("taskscope_poll_duration_seconds_count{b}")),
            3.0
        );
        assert_eq!(
            s.value(&format!("taskscope_poll_duration_seconds_sum{b}")),
            0.19
        );
        let bucket = |le: &str| {
            s.value(&format!(
                r#"taskscope_poll_duration_seconds_bucket{{le="{le}",spawned_at="src/b.rs:2:9"}}"#
            ))
        };
        assert_eq!(bucket("0.1"), 2.0);
        assert_eq!(bucket("0.15"), 3.0);
        assert_eq!(bucket("+Inf"), 3.0);
        assert_eq!(
            s.value(
                r#"taskscope_poll_duration_seconds_bucket{le="0.25",spawned_at="src/a.rs:1:5"}"#
            ),
            3.0
        );
        assert_eq!(s.value("taskscope_spawn_locations"), 2.0);
        assert_eq!(s.value("taskscope_slow_poll_threshold_seconds"), 0.1);
        assert_eq!(
            s.value(r#"taskscope_findings_total{kind="task_panicked",reason=""}"#),
            0.0
        );
        assert_eq!(s.value("taskscope_findings_dropped_total"), 0.0);
    }

    #[test]
    fn counters_never_go_down_while_a_task_is_between_the_live_table_and_the_totals() {
        let session = session(10);
        task(&session, 1, A, &[MS, 2 * MS]);
        task(&session, 2, A, &[MS]);
        let s = Scraper::new(&session);
        let spawned = r#"taskscope_tasks_spawned_total{spawned_at="src/a.rs:1:5"}"#;
        let polls = r#"taskscope_polls_total{spawned_at="src/a.rs:1:5"}"#;
        let le = r#"taskscope_poll_duration_seconds_bucket{le="0.01",spawned_at="src/a.rs:1:5"}"#;
        assert_eq!(
            (s.value(spawned), s.value(polls), s.value(le)),
            (2.0, 3.0, 3.0)
        );
        // Task 1 has left the live table, and its totals are not added yet.
        let cell = session.registry.remove(1).unwrap();
        assert_eq!(
            s.value(r#"taskscope_tasks_alive{spawned_at="src/a.rs:1:5"}"#),
            1.0
        );
        assert_eq!(
            (s.value(spawned), s.value(polls), s.value(le)),
            (2.0, 3.0, 3.0)
        );
        session.locations.as_ref().unwrap().task_ended(&cell);
        task(&session, 3, A, &[MS]);
        assert_eq!(
            (s.value(spawned), s.value(polls), s.value(le)),
            (3.0, 4.0, 4.0)
        );
    }

    #[test]
    fn locations_past_the_limit_are_other_and_nothing_is_lost() {
        let session = session(1);
        task(&session, 1, A, &[150 * MS]);
        task(&session, 2, B, &[150 * MS]);
        let c = SpawnLocation {
            file: "src/c.rs",
            line: 3,
            col: 1,
        };
        task(&session, 3, c, &[MS]);
        events::task_ended(&session, 3, TaskEnd::Cancelled, false);
        let s = Scraper::new(&session);
        assert_eq!(
            s.value(r#"taskscope_slow_polls_total{spawned_at="src/a.rs:1:5"}"#),
            1.0
        );
        assert_eq!(
            s.value(r#"taskscope_slow_polls_total{spawned_at="other"}"#),
            1.0
        );
        assert_eq!(
            s.value(r#"taskscope_tasks_spawned_total{spawned_at="other"}"#),
            2.0
        );
        assert_eq!(s.value(r#"taskscope_tasks_alive{spawned_at="other"}"#), 1.0);
        assert_eq!(s.value("taskscope_spawn_locations"), 1.0);
    }

    /// Two threads meeting a new location at once may each claim an entry
    /// for it: one series, summed, and one location in the gauge (it
    /// counted entries, and a scrape of the metrics test app once said 6
    /// locations for 5 series).
    #[test]
    fn a_location_with_two_entries_is_one_series_and_one_location() {
        let session = session(10);
        let locations = session.locations.as_ref().unwrap();
        task(&session, 1, A, &[MS]);
        events::task_ended(&session, 1, TaskEnd::Completed, false);
        locations.claim_another_entry(&A);
        assert_eq!(locations.named().len(), 2, "two entries");
        task(&session, 2, B, &[MS]);
        let s = Scraper::new(&session);
        assert_eq!(
            s.value(r#"taskscope_tasks_spawned_total{spawned_at="src/a.rs:1:5"}"#),
            1.0
        );
        assert_eq!(s.value("taskscope_spawn_locations"), 2.0);
    }
}
