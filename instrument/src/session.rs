//! The session: the state one running taskscope shares between its parts —
//! the settings in force, the registry of tasks and the findings pipeline.
//!
//! It starts nothing and imports none of its readers: the builder makes it
//! (and starts the threads that read it), the capture writes into its
//! registry, the detectors and the server read it. A value one of them needs
//! from another is passed in as an argument, never looked up here.
//!
//! One session is the process's ([`global`]), installed by the builder; tests
//! make their own with [`Session::new`].

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use taskscope_api::Finding;

use crate::clock;
use crate::model::locations::Locations;
use crate::model::registry::Registry;
use crate::pipeline::record_queue::RecordControl;
use crate::pipeline::report_file::ReportFile;
use crate::pipeline::{Pipeline, Sinks};
use crate::settings::{PollTiming, SAMPLED_ONE_IN, Settings};

/// The state of one running taskscope.
pub(crate) struct Session {
    /// The settings it was started with.
    pub(crate) settings: Settings,
    /// The slow-poll threshold in nanoseconds (the hot path compares against it).
    pub(crate) slow_poll_ns: u64,
    /// Short polls are timed when a random number's low bits under this mask
    /// are 0: `SAMPLED_ONE_IN - 1`, or 0 when every poll is timed.
    pub(crate) sample_mask: u32,
    /// A [`clock::coarse`] older than this (in clock ticks) at the start of a
    /// poll means the watchdog is held up: the poll is timed.
    pub(crate) coarse_stale_ticks: u64,
    /// Live tasks and the finished history.
    pub(crate) registry: Registry,
    /// Where findings go.
    pub(crate) pipeline: Pipeline,
    /// A tracing capture is installed: wakes and wakers are known.
    pub(crate) wakes_known: AtomicBool,
    /// The recording (`TASKSCOPE_RECORD`), once the builder started it: the
    /// guard asks it for the app's last moments at shutdown.
    pub(crate) recording: OnceLock<RecordControl>,
    /// Running totals by spawn location, kept only for the metrics endpoint
    /// (`None` when `TASKSCOPE_METRICS_ADDR` is off: nothing is added up).
    pub(crate) locations: Option<Locations>,
}

impl Session {
    /// A session with `settings`, and the sink side of its findings pipeline,
    /// which the caller runs on a thread of its own ([`Sinks::run`]).
    pub(crate) fn new(settings: Settings) -> (Session, Sinks) {
        let report = settings.report_path.clone().map(ReportFile::new);
        let (pipeline, sinks) = Pipeline::new(report);
        let sample_mask = match settings.poll_timing {
            // Only a tick passing during a poll shows it may be long: a
            // threshold within two ticks could fall between them.
            PollTiming::Sampled if settings.slow_poll_threshold >= 2 * clock::TICK => {
                SAMPLED_ONE_IN - 1
            }
            _ => 0,
        };
        let session = Session {
            sample_mask,
            coarse_stale_ticks: clock::ticks_for(3 * clock::TICK.as_nanos() as u64),
            slow_poll_ns: settings
                .slow_poll_threshold
                .as_nanos()
                .min(u64::MAX as u128) as u64,
            registry: Registry::new(settings.finished_capacity, settings.finished_max_age),
            pipeline,
            wakes_known: AtomicBool::new(false),
            recording: OnceLock::new(),
            locations: settings.metrics_addr.map(|_| {
                Locations::new(
                    settings.metrics_max_locations,
                    settings
                        .slow_poll_threshold
                        .as_nanos()
                        .min(u64::MAX as u128) as u64,
                )
            }),
            settings,
        };
        (session, sinks)
    }

    /// Hands a finding to the pipeline (never waits).
    pub(crate) fn submit(&self, finding: Finding) {
        self.pipeline.submit(finding);
    }

    /// Waits (at most `timeout`) until every finding accepted so far has
    /// reached the sinks. False on timeout.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.pipeline.flush(timeout)
    }
}

static GLOBAL: OnceLock<Arc<Session>> = OnceLock::new();

/// The process's session, if taskscope was started.
pub(crate) fn global() -> Option<&'static Arc<Session>> {
    GLOBAL.get()
}

/// The process's session: the running one, or the one `make` returns if none
/// runs yet. Returns whether it is the new one (then the caller starts what
/// reads it).
pub(crate) fn global_or_install(make: impl FnOnce() -> Session) -> (Arc<Session>, bool) {
    let mut created = false;
    let session = GLOBAL.get_or_init(|| {
        created = true;
        Arc::new(make())
    });
    (Arc::clone(session), created)
}
