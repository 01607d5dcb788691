//! Embedding: [`init`], [`try_init`], [`Builder`] and the [`Guard`] that flushes on drop.
//!
//! The builder is the one place that starts anything: it makes the
//! [`Session`], installs the panic hook, and starts taskscope's threads (the
//! findings pipeline's sinks, the watchdog, the viewer server), each given
//! the session it reads.

#[cfg(feature = "tracing-capture")]
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tracing-capture")]
use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
#[cfg(feature = "tracing-capture")]
use tracing_subscriber::layer::{Layer, SubscriberExt};
#[cfg(feature = "tracing-capture")]
use tracing_subscriber::registry::LookupSpan;

#[cfg(feature = "tracing-capture")]
use crate::capture::layer::{TaskFilter, TaskLayer};
use crate::capture::mode::Mode;
#[cfg(feature = "tracing-capture")]
use crate::capture::subscriber::TaskSubscriber;
use crate::capture::{self, poll};
use crate::detect::{events, watchdog};
#[cfg(feature = "tracing-capture")]
use crate::error::Error;
use crate::metrics;
use crate::model::app_runtime;
use crate::pipeline::{record_file, record_queue};
use crate::server;
use crate::session::{self, Session};
use crate::settings::{ServerAddr, SettingError, Settings};

/// How long dropping the [`Guard`] may take in all: reporting what is left
/// behind and waiting for accepted findings to reach the sinks.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// The part of [`FLUSH_TIMEOUT`] kept for the flush itself at shutdown.
const FLUSH_RESERVE: Duration = Duration::from_millis(500);

/// The part of [`FLUSH_TIMEOUT`] the task dump of the tasks left behind and
/// the resolution of their stacks may take (with the `taskdump` feature).
const SHUTDOWN_STACKS: Duration = Duration::from_millis(1500);

/// Starts taskscope for a `#[tokio::main]` app: reads the `TASKSCOPE_*`
/// variables, installs a global `tracing` subscriber made of the taskscope layer
/// and a stderr `fmt` layer (taskscope's warnings, plus `RUST_LOG` for the rest).
///
/// Never panics: a bad setting is reported on stderr, naming the variable and
/// the value, and its default is used. Keep the guard for the whole of `main`:
/// dropping it flushes every finding already accepted.
///
/// ```no_run
/// #[tokio::main]
/// async fn main() {
///     let _guard = taskscope::init();
///     // ... the app
/// }
/// ```
#[cfg(feature = "tracing-capture")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing-capture")))]
pub fn init() -> Guard {
    Builder::from_env().init()
}

/// Like [`init`], but returns the first problem instead of reporting it and
/// going on: a malformed setting, a global subscriber already installed, or
/// another of taskscope's captures already installed
/// ([`Error::CaptureConflict`]).
///
/// ```no_run
/// # fn main() -> Result<(), taskscope::Error> {
/// let _guard = taskscope::try_init()?;
/// # Ok(()) }
/// ```
#[cfg(feature = "tracing-capture")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing-capture")))]
pub fn try_init() -> Result<Guard, Error> {
    Builder::from_env().try_init()
}

/// Keeps taskscope's findings flowing; dropping it flushes every finding
/// already accepted to the log and the report file (waiting at most
/// [`FLUSH_TIMEOUT`]).
#[must_use = "dropping the guard at once flushes and ends the session early; keep it for the whole of main"]
pub struct Guard {
    session: Option<Arc<Session>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("active", &self.session.is_some())
            .finish()
    }
}

impl Guard {
    /// A guard that does nothing (what [`init`] returns when it could not start).
    pub fn inert() -> Guard {
        Guard { session: None }
    }

    /// Whether taskscope is running behind this guard.
    pub fn is_active(&self) -> bool {
        self.session.is_some()
    }

    /// Takes a task dump of `runtime` so the tasks it is about to drop can be
    /// reported with where they wait (`alive_at_shutdown` findings'
    /// `waiting_at`). Call it after the runtime's `block_on` returned and
    /// right before dropping the runtime, when taskscope's capture is
    /// installed on it with [`Builder::install_on`] (`#[taskscope::main]`
    /// does it for you). Takes at most 3 s; without the `taskdump` feature
    /// it does nothing, and the findings say how to get it.
    ///
    /// ```
    /// let mut builder = tokio::runtime::Builder::new_current_thread();
    /// builder.enable_all();
    /// let guard = taskscope::Builder::new()
    ///     .server_addr(taskscope::ServerAddr::Off)
    ///     .install_on(&mut builder);
    /// let runtime = builder.build().unwrap();
    /// runtime.block_on(async {
    ///     tokio::spawn(std::future::pending::<()>()); // left behind
    /// });
    /// guard.before_runtime_drop(&runtime);
    /// drop(runtime); // reports the task, with where it waits
    /// drop(guard);
    /// ```
    pub fn before_runtime_drop(&self, runtime: &tokio::runtime::Runtime) {
        if let Some(session) = &self.session {
            crate::detect::taskdump::shutdown::before_runtime_drop(session, runtime);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        // One deadline for the whole shutdown: the findings left behind, the
        // stacks still being symbolized (at most until FLUSH_RESERVE before
        // the end: a final report is then sent without its stack rather than
        // lost), and the flush.
        let start = std::time::Instant::now();
        let deadline = start + FLUSH_TIMEOUT;
        events::shutting_down(
            &session,
            poll::current_key(),
            start + SHUTDOWN_STACKS,
            deadline - FLUSH_RESERVE,
        );
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !session.flush(left) {
            eprintln!(
                "taskscope: some findings had not reached the report file after {FLUSH_TIMEOUT:?}"
            );
        }
        // The recording's last publish: the app's last moments, the findings just flushed.
        if let Some(recording) = session.recording.get() {
            if !recording.finish(deadline) {
                eprintln!(
                    "taskscope: the recording's last update had not been written after {FLUSH_TIMEOUT:?}"
                );
            }
            let stats = recording.stats();
            let missed = stats.dropped + stats.unwritten;
            if missed > 0 {
                eprintln!(
                    "taskscope: the recording misses {missed} of {} updates (the disk did not keep up, or the file could not be written)",
                    stats.queued + stats.dropped
                );
            }
        }
    }
}

/// taskscope's settings in code, and the ways to install it.
///
/// ```
/// use std::time::Duration;
/// use tracing_subscriber::prelude::*;
///
/// let (layer, _guard) = taskscope::Builder::new()
///     .slow_poll_threshold(Duration::from_millis(50))
///     .report_path("target/slow-polls.jsonl")
///     .layer()
///     .unwrap();
/// let _ = tracing_subscriber::registry().with(layer).try_init();
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    settings: Settings,
    problems: Vec<SettingError>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder with the defaults, ignoring the environment.
    pub fn new() -> Builder {
        Builder {
            settings: Settings::default(),
            problems: Vec::new(),
        }
    }

    /// A builder starting from the `TASKSCOPE_*` environment variables;
    /// problems with them are reported when taskscope starts.
    pub fn from_env() -> Builder {
        let (settings, problems) = Settings::from_env();
        Builder { settings, problems }
    }

    /// The settings as they stand.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A poll longer than this is a slow poll (default 100 ms).
    pub fn slow_poll_threshold(mut self, threshold: Duration) -> Builder {
        self.settings.slow_poll_threshold = threshold.max(Duration::from_nanos(1));
        self
    }

    /// Appends findings to this JSON-lines file.
    pub fn report_path(mut self, path: impl Into<PathBuf>) -> Builder {
        self.settings.report_path = Some(path.into());
        self
    }

    /// Writes no report file.
    pub fn no_report(mut self) -> Builder {
        self.settings.report_path = None;
        self
    }

    /// Where the viewer server listens ([`ServerAddr::Off`] for none).
    pub fn server_addr(mut self, addr: ServerAddr) -> Builder {
        self.settings.server_addr = addr;
        self
    }

    /// Requires viewers to send this shared token (as `TASKSCOPE_TOKEN` does);
    /// compared in constant time by the server. It must be printable ASCII
    /// without spaces and at least [`crate::MIN_TOKEN_LEN`] characters long:
    /// otherwise the viewer server is off (one line on stderr says why),
    /// rather than serve without it.
    pub fn token(mut self, token: impl Into<String>) -> Builder {
        self.settings.token = Some(token.into());
        self
    }

    /// Serves tokio-console's protocol next to taskscope's own on the viewer
    /// server's address (`true`, the default), or not (as
    /// `TASKSCOPE_CONSOLE=off`).
    ///
    /// ```
    /// let builder = taskscope::Builder::new().console(false);
    /// assert!(!builder.settings().console);
    /// ```
    pub fn console(mut self, on: bool) -> Builder {
        self.settings.console = on;
        self
    }

    /// Which polls are timed (as `TASKSCOPE_POLL_TIMING`): long ones always and
    /// one short poll in eight ([`PollTiming::Sampled`](crate::PollTiming), the
    /// default), or every poll ([`PollTiming::Every`](crate::PollTiming): exact
    /// busy times and poll histograms, for a few nanoseconds more a poll).
    ///
    /// ```
    /// use taskscope::PollTiming;
    /// let builder = taskscope::Builder::new().poll_timing(PollTiming::Every);
    /// assert_eq!(builder.settings().poll_timing, PollTiming::Every);
    /// ```
    pub fn poll_timing(mut self, timing: crate::PollTiming) -> Builder {
        self.settings.poll_timing = timing;
        self
    }

    /// How many finished tasks the history keeps, and for how long. A count
    /// above [`MAX_FINISHED_CAPACITY`](crate::MAX_FINISHED_CAPACITY)
    /// (1,000,000) is lowered to it, with a warning on stderr.
    pub fn finished_retention(mut self, count: usize, max_age: Duration) -> Builder {
        if count > crate::settings::MAX_FINISHED_CAPACITY {
            eprintln!(
                "taskscope: Builder::finished_retention({count}, ..) is more than the {} finished \
                 tasks the history can keep; keeping {}",
                crate::settings::MAX_FINISHED_CAPACITY,
                crate::settings::MAX_FINISHED_CAPACITY
            );
        }
        self.settings.finished_capacity = count.min(crate::settings::MAX_FINISHED_CAPACITY);
        self.settings.finished_max_age = max_age;
        self
    }

    /// Whether the stacks of blocked polls are captured (on by default; as
    /// `TASKSCOPE_STACKS`). Off: no signal handler, no thread signalled, and
    /// `slow_poll` findings say `stack_unavailable: "disabled"`.
    pub fn capture_stacks(mut self, on: bool) -> Builder {
        self.settings.capture_stacks = on;
        self
    }

    /// Reports a task idle for longer than `limit` as leaked (off by default).
    pub fn idle_limit(mut self, limit: Option<Duration>) -> Builder {
        self.settings.idle_limit = limit;
        self
    }

    /// Records what a viewer receives to `path` (and older segments beside
    /// it), for `taskscope replay`, as `TASKSCOPE_RECORD` does.
    ///
    /// ```no_run
    /// let _guard = taskscope::Builder::from_env()
    ///     .record_path("/var/tmp/app.rec")
    ///     .record_max_mb(64)
    ///     .init();
    /// ```
    pub fn record_path(mut self, path: impl Into<PathBuf>) -> Builder {
        self.settings.record_path = Some(path.into());
        self
    }

    /// Keeps a recording's files under `mb` MiB together (default 256, as
    /// `TASKSCOPE_RECORD_MAX_MB`); the oldest segment goes first. At least 1.
    pub fn record_max_mb(mut self, mb: u64) -> Builder {
        self.settings.record_max_bytes = mb.clamp(1, crate::settings::MAX_RECORD_MAX_MB) << 20;
        self
    }

    /// Serves Prometheus metrics at `http://ADDR/metrics` (as
    /// `TASKSCOPE_METRICS_ADDR` does; `None`, the default: no endpoint).
    /// See the crate docs, "Watching a fleet".
    pub fn metrics_addr(mut self, addr: Option<std::net::SocketAddr>) -> Builder {
        self.settings.metrics_addr = addr;
        self
    }

    /// How many distinct `spawned_at` values the metrics name (as
    /// `TASKSCOPE_METRICS_MAX_LOCATIONS` does; at most
    /// [`crate::MAX_METRICS_LOCATIONS`], more is taken as that); the tasks of
    /// further locations are counted as `spawned_at="other"`.
    pub fn metrics_max_locations(mut self, max: usize) -> Builder {
        self.settings.metrics_max_locations = max.min(crate::settings::MAX_METRICS_LOCATIONS);
        self
    }

    fn report_problems(&mut self) {
        for problem in self.problems.drain(..) {
            eprintln!("taskscope: {problem}");
        }
    }

    /// The process's session: started now with these settings, or the one
    /// already running (its settings win).
    fn start(&self) -> Arc<Session> {
        // For the viewer's runtime metrics: the app's runtime, when called inside it.
        app_runtime::note_current();
        let mut sinks = None;
        let (session, created) = session::global_or_install(|| {
            crate::clock::init();
            let (session, pipeline_sinks) = Session::new(self.settings.clone());
            sinks = Some(pipeline_sinks);
            session
        });
        if created {
            start_threads(&session, sinks);
        } else {
            tracing::debug!(target: "taskscope", "taskscope already started; keeping its settings");
        }
        session
    }

    /// The taskscope layer, to add to your own `tracing_subscriber::registry()`,
    /// and its guard. Needs `--cfg tokio_unstable` (see the crate docs).
    ///
    /// Refused with [`Error::CaptureConflict`] when another of taskscope's
    /// captures (or another layer) is already installed in the process.
    #[cfg(feature = "tracing-capture")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing-capture")))]
    pub fn layer<S>(mut self) -> Result<(impl Layer<S> + Send + Sync + 'static, Guard), Error>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let claim = capture::mode::claim(Mode::Layer)?;
        self.report_problems();
        let session = self.start();
        claim.installed();
        let layer = TaskLayer::new(Arc::clone(&session)).with_filter(TaskFilter::new());
        Ok((
            layer,
            Guard {
                session: Some(session),
            },
        ))
    }

    /// Installs taskscope's capture on a runtime you build yourself, through
    /// Tokio's task hooks: the cheapest capture (no task names or wakes, see the
    /// crate docs). Needs `--cfg tokio_unstable`.
    ///
    /// ```
    /// let mut builder = tokio::runtime::Builder::new_multi_thread();
    /// builder.enable_all();
    /// let guard = taskscope::Builder::from_env().install_on(&mut builder);
    /// let runtime = builder.build().unwrap();
    /// runtime.block_on(async { tokio::spawn(async {}).await.unwrap() });
    /// drop(guard);
    /// ```
    ///
    /// When another of taskscope's captures (`init()`, `layer()`) is already
    /// installed in the process, nothing is installed on `runtime`: the
    /// refusal is printed on stderr (once) and the guard is inert.
    pub fn install_on(mut self, runtime: &mut tokio::runtime::Builder) -> Guard {
        let claim = match capture::mode::claim(Mode::Hooks) {
            Ok(claim) => claim,
            Err(err) => {
                capture::mode::say_once(Mode::Hooks, &err);
                return Guard::inert();
            }
        };
        self.report_problems();
        let session = self.start();
        capture::hooks::install(&session, runtime);
        claim.installed();
        Guard {
            session: Some(session),
        }
    }

    /// Like [`init`], with these settings.
    #[cfg(feature = "tracing-capture")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing-capture")))]
    pub fn init(mut self) -> Guard {
        self.report_problems();
        match self.install_global(true) {
            Ok(guard) => guard,
            Err(err @ Error::CaptureConflict { .. }) => {
                capture::mode::say_once(Mode::Init, &err);
                Guard::inert()
            }
            Err(err) => {
                eprintln!("{err}");
                Guard::inert()
            }
        }
    }

    /// Like [`try_init`], with these settings.
    #[cfg(feature = "tracing-capture")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing-capture")))]
    pub fn try_init(mut self) -> Result<Guard, Error> {
        if let Some(problem) = self.problems.drain(..).next() {
            return Err(Error::Setting(problem));
        }
        self.install_global(false)
    }

    #[cfg(feature = "tracing-capture")]
    fn install_global(self, report: bool) -> Result<Guard, Error> {
        let claim = capture::mode::claim(Mode::Init)?;
        let fmt_filter = match fmt_filter(std::env::var("RUST_LOG").ok()) {
            Ok(filter) => filter,
            Err(problem) if report => {
                eprintln!("taskscope: {problem}");
                fmt_filter(None).expect("default filter parses")
            }
            Err(problem) => return Err(Error::Setting(problem)),
        };
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(fmt_filter);
        let session = self.start();
        let subscriber = TaskSubscriber::new(
            Arc::clone(&session),
            tracing_subscriber::registry().with(fmt),
        );
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|e| Error::SubscriberAlreadySet(e.to_string()))?;
        claim.installed();
        Ok(Guard {
            session: Some(session),
        })
    }
}

/// Starts what reads a new session: the panic hook, the findings thread,
/// the watchdog and the viewer server. Each failure to start is one warning
/// on stderr; the app goes on.
fn start_threads(session: &Arc<Session>, sinks: Option<crate::pipeline::Sinks>) {
    #[cfg(not(tokio_unstable))]
    eprintln!(
        "taskscope: this program was built without `--cfg tokio_unstable`, so Tokio has neither \
         task hooks nor task spans and taskscope sees no task (only futures wrapped with \
         taskscope::track); build with RUSTFLAGS=\"--cfg tokio_unstable\" (README: \"Why --cfg tokio_unstable\")"
    );
    capture::panics::install();
    if let Some(sinks) = sinks {
        let spawned = std::thread::Builder::new()
            .name("taskscope-findings".into())
            .spawn(move || sinks.run());
        if let Err(err) = spawned {
            session.pipeline.sinks_failed();
            eprintln!(
                "taskscope: cannot start the findings thread ({err}); findings are not written anywhere"
            );
        }
    }
    watchdog::prepare(session);
    let weak = Arc::downgrade(session);
    let spawned = std::thread::Builder::new()
        .name("taskscope-watchdog".into())
        .spawn(move || {
            // A task dump it asks of a current-thread runtime is a task
            // spawned from here: taskscope's, not the app's.
            crate::internal::mark_internal_thread();
            watchdog::run(weak)
        });
    if let Err(err) = spawned {
        eprintln!(
            "taskscope: cannot start the watchdog thread ({err}); slow polls are reported when they end, without stacks"
        );
    }
    let recording = start_recording(session);
    let listener = server::bind(session);
    if listener.is_some() || recording.is_some() {
        let session = Arc::clone(session);
        let spawned = std::thread::Builder::new()
            .name("taskscope-server".into())
            .spawn(move || server::serve(session, listener, recording));
        if let Err(err) = spawned {
            eprintln!(
                "taskscope: cannot start the viewer server thread ({err}); the viewer server and \
                 the recording are off"
            );
        }
    }
    if let Some((listener, addr)) = metrics::bind(session) {
        let session = Arc::clone(session);
        let spawned = std::thread::Builder::new()
            .name("taskscope-metrics".into())
            .spawn(move || metrics::serve(session, listener, addr));
        if let Err(err) = spawned {
            eprintln!(
                "taskscope: cannot start the metrics thread ({err}); the metrics endpoint is off"
            );
        }
    }
}

/// With `TASKSCOPE_RECORD`: starts the recording's thread (the writer),
/// gives the session the guard's control, and returns the publisher's side
/// (for the server's thread). A failure to start is one warning.
fn start_recording(session: &Arc<Session>) -> Option<record_queue::Recording> {
    let path = session.settings.record_path.clone()?;
    let (recording, writer, control) =
        record_file::channel(path.clone(), session.settings.record_max_bytes);
    let spawned = std::thread::Builder::new()
        .name("taskscope-recorder".into())
        .spawn(move || writer.run());
    if let Err(err) = spawned {
        eprintln!(
            "taskscope: cannot start the recording's thread ({err}); {} is not recorded",
            path.display()
        );
        return None;
    }
    let _ = session.recording.set(control);
    Some(recording)
}

/// The stderr filter: `RUST_LOG` (default `info`), with taskscope's warnings on
/// unless `RUST_LOG` says something about `taskscope` itself.
fn fmt_filter(rust_log: Option<String>) -> Result<EnvFilter, SettingError> {
    let builder = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into());
    let text = rust_log.unwrap_or_default();
    let filter = builder.parse(&text).map_err(|err| SettingError {
        variable: "RUST_LOG",
        value: text.clone(),
        expected: format!("expected a tracing filter such as `info,my_app=debug` ({err})"),
        default: "info".into(),
    })?;
    if text.contains("taskscope") {
        Ok(filter)
    } else {
        Ok(filter.add_directive("taskscope=warn".parse().expect("static directive parses")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_retention_is_bounded() {
        let b = Builder::new().finished_retention(usize::MAX, Duration::from_secs(1));
        assert_eq!(
            b.settings().finished_capacity,
            crate::settings::MAX_FINISHED_CAPACITY
        );
        let b = Builder::new().finished_retention(7, Duration::from_secs(1));
        assert_eq!(b.settings().finished_capacity, 7);
    }

    #[test]
    fn rust_log_errors_name_the_variable() {
        let err = fmt_filter(Some("=[[[".into())).unwrap_err();
        assert_eq!(err.variable, "RUST_LOG");
        assert!(fmt_filter(Some("off".into())).is_ok());
        assert!(fmt_filter(None).is_ok());
    }
}

/// What `#[taskscope::main]` expands to, and hooks for taskscope's own
/// viewer; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use tokio;

    /// Marks the calling thread as taskscope's own: tasks spawned on it are not
    /// recorded (the viewer's runtime when it runs the demo app in-process).
    pub fn mark_internal_thread() {
        crate::internal::mark_internal_thread();
    }
    use tracing_subscriber::layer::{Layer, SubscriberExt};

    /// What `#[taskscope::main]` calls between `block_on` and the runtime's
    /// drop: see [`super::Guard::before_runtime_drop`].
    pub fn before_runtime_drop(guard: &super::Guard, runtime: &tokio::runtime::Runtime) {
        guard.before_runtime_drop(runtime);
    }

    /// Installs the runtime-hook capture on `runtime` and, unless the app
    /// already has one, a global stderr subscriber for the warnings.
    pub fn install_main(runtime: &mut tokio::runtime::Builder) -> super::Guard {
        let mut builder = super::Builder::from_env();
        builder.report_problems();
        let fmt_filter = match super::fmt_filter(std::env::var("RUST_LOG").ok()) {
            Ok(filter) => filter,
            Err(problem) => {
                eprintln!("taskscope: {problem}");
                super::fmt_filter(None).expect("default filter parses")
            }
        };
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(fmt_filter);
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(fmt));
        builder.install_on(runtime)
    }
}
