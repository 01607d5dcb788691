//! Embedding: [`init`], [`try_init`], [`Builder`] and the [`Guard`] that flushes on drop.
//!
//! The builder is the one place that starts anything: it makes the
//! [`Session`], installs the panic hook, and starts taskscope's threads (the
//! findings pipeline's sinks, the watchdog, the viewer server), each given
//! the session it reads.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::capture::layer::{TaskFilter, TaskLayer};
use crate::capture::subscriber::TaskSubscriber;
use crate::capture::{self, poll};
use crate::detect::{events, watchdog};
use crate::error::Error;
use crate::model::app_runtime;
use crate::server;
use crate::session::{self, Session};
use crate::settings::{ServerAddr, SettingError, Settings};

/// How long dropping the [`Guard`] may take in all: reporting what is left
/// behind and waiting for accepted findings to reach the sinks.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// The part of [`FLUSH_TIMEOUT`] kept for the flush itself at shutdown.
const FLUSH_RESERVE: Duration = Duration::from_millis(500);

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
pub fn init() -> Guard {
    Builder::from_env().init()
}

/// Like [`init`], but returns the first problem instead of reporting it and
/// going on: a malformed setting, or a global subscriber already installed.
///
/// ```no_run
/// # fn main() -> Result<(), taskscope::Error> {
/// let _guard = taskscope::try_init()?;
/// # Ok(()) }
/// ```
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
        events::shutting_down(&session, poll::current_key(), deadline - FLUSH_RESERVE);
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !session.flush(left) {
            eprintln!(
                "taskscope: some findings had not reached the report file after {FLUSH_TIMEOUT:?}"
            );
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
    /// compared in constant time by the server.
    pub fn token(mut self, token: impl Into<String>) -> Builder {
        self.settings.token = Some(token.into());
        self
    }

    /// How many finished tasks the history keeps, and for how long.
    pub fn finished_retention(mut self, count: usize, max_age: Duration) -> Builder {
        self.settings.finished_capacity = count;
        self.settings.finished_max_age = max_age;
        self
    }

    /// Reports a task idle for longer than `limit` as leaked (off by default).
    pub fn idle_limit(mut self, limit: Option<Duration>) -> Builder {
        self.settings.idle_limit = limit;
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
    pub fn layer<S>(mut self) -> Result<(impl Layer<S> + Send + Sync + 'static, Guard), Error>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.report_problems();
        let session = self.start();
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
    pub fn install_on(mut self, runtime: &mut tokio::runtime::Builder) -> Guard {
        self.report_problems();
        let session = self.start();
        capture::hooks::install(&session, runtime);
        Guard {
            session: Some(session),
        }
    }

    /// Like [`init`], with these settings.
    pub fn init(mut self) -> Guard {
        self.report_problems();
        match self.install_global(true) {
            Ok(guard) => guard,
            Err(err) => {
                eprintln!("{err}");
                Guard::inert()
            }
        }
    }

    /// Like [`try_init`], with these settings.
    pub fn try_init(mut self) -> Result<Guard, Error> {
        if let Some(problem) = self.problems.drain(..).next() {
            return Err(Error::Setting(problem));
        }
        self.install_global(false)
    }

    fn install_global(self, report: bool) -> Result<Guard, Error> {
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
    watchdog::prepare();
    let weak = Arc::downgrade(session);
    let spawned = std::thread::Builder::new()
        .name("taskscope-watchdog".into())
        .spawn(move || watchdog::run(weak));
    if let Err(err) = spawned {
        eprintln!(
            "taskscope: cannot start the watchdog thread ({err}); slow polls are reported when they end, without stacks"
        );
    }
    if let Some((listener, addr)) = server::bind(session) {
        let session = Arc::clone(session);
        let spawned = std::thread::Builder::new()
            .name("taskscope-server".into())
            .spawn(move || server::serve(session, listener, addr));
        if let Err(err) = spawned {
            eprintln!(
                "taskscope: cannot start the viewer server thread ({err}); the viewer server is off"
            );
        }
    }
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
