//! Settings: their defaults, the `TASKSCOPE_*` environment variables and their parsing.

use std::fmt;
use std::path::PathBuf;

use std::time::Duration;
pub use taskscope_api::{DEFAULT_ADDR, ServerAddr};

/// Default slow-poll threshold: asyncio's `slow_callback_duration`.
pub const DEFAULT_SLOW_POLL: Duration = Duration::from_millis(100);
/// Default number of finished tasks kept in the history.
pub const DEFAULT_FINISHED_CAPACITY: usize = 1_000;
/// Default age after which a finished task leaves the history.
pub const DEFAULT_FINISHED_MAX_AGE: Duration = Duration::from_secs(60);
/// Default bound of a recording's files together, in MiB (`TASKSCOPE_RECORD_MAX_MB`).
pub const DEFAULT_RECORD_MAX_MB: u64 = 256;
/// The largest `TASKSCOPE_RECORD_MAX_MB` taken (1 TiB).
pub const MAX_RECORD_MAX_MB: u64 = 1 << 20;
/// The most finished tasks the history can be told to keep
/// (`TASKSCOPE_FINISHED_MAX`, [`crate::Builder::finished_retention`]). The
/// history's ring is allocated in full at start, 64 bytes an entry (64 MB at
/// this bound), and each finished task it keeps holds its record (272 bytes
/// with its reference counts: 272 MB more when full). A larger value is
/// refused (the variable: the default is used) or lowered to this bound (the
/// builder), with a warning on stderr either way.
pub const MAX_FINISHED_CAPACITY: usize = 1_000_000;

/// The shortest `TASKSCOPE_TOKEN` accepted, in characters: a shorter one is
/// refused at start (and the viewer server is off rather than serve without
/// it).
pub const MIN_TOKEN_LEN: usize = 16;
/// Default number of distinct `spawned_at` values the metrics name
/// (`TASKSCOPE_METRICS_MAX_LOCATIONS`); tasks of further locations are
/// counted as `spawned_at="other"`.
pub const DEFAULT_METRICS_MAX_LOCATIONS: usize = 1_000;
/// The most `spawned_at` values `TASKSCOPE_METRICS_MAX_LOCATIONS` may ask for.
pub const MAX_METRICS_LOCATIONS: usize = 10_000;

/// A setting that could not be used, with the variable, the value and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingError {
    /// The environment variable, e.g. `TASKSCOPE_SLOW_POLL_MS`.
    pub variable: &'static str,
    /// The value it had.
    pub value: String,
    /// What was expected instead.
    pub expected: String,
    /// The default used in its place.
    pub default: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: {}; using the default ({})",
            self.variable, self.value, self.expected, self.default
        )
    }
}

impl std::error::Error for SettingError {}

/// Everything taskscope can be told, in code ([`crate::Builder`]) or by environment.
/// (Its `Debug` output hides the token.)
#[derive(Clone)]
pub struct Settings {
    /// A poll longer than this is a `slow_poll` finding (`TASKSCOPE_SLOW_POLL_MS`).
    pub slow_poll_threshold: Duration,
    /// Report file, JSON lines, appended (`TASKSCOPE_REPORT`; `None` = no file).
    pub report_path: Option<PathBuf>,
    /// Where the viewer server listens (`TASKSCOPE_ADDR`).
    pub server_addr: ServerAddr,
    /// How many finished tasks the history keeps (`TASKSCOPE_FINISHED_MAX`).
    pub finished_capacity: usize,
    /// How long a finished task stays in the history (`TASKSCOPE_FINISHED_TTL_S`).
    pub finished_max_age: Duration,
    /// A task idle longer than this is a leak (`TASKSCOPE_IDLE_LIMIT_S`; off by default).
    pub idle_limit: Option<Duration>,
    /// A shared secret every viewer must send (`TASKSCOPE_TOKEN`; `None`: no
    /// token is asked for). The viewer reads its own `TASKSCOPE_TOKEN` and sends
    /// it; a call without it, or with another one, is refused (UNAUTHENTICATED).
    /// It is compared in constant time, and never printed (not even by `Debug`).
    pub token: Option<String>,
    /// Where to record what a viewer receives, for `taskscope replay`
    /// (`TASKSCOPE_RECORD`; `None` = no recording). The recording's segment
    /// files are this path and `PATH.000001`, … (see the README).
    pub record_path: Option<PathBuf>,
    /// The most bytes a recording's files take together, about
    /// (`TASKSCOPE_RECORD_MAX_MB`, in MiB; default 256 MiB): the oldest
    /// segment is deleted to stay under it.
    pub record_max_bytes: u64,
    /// Whether the stacks of blocked polls are captured (`TASKSCOPE_STACKS`,
    /// `on` by default). Off: no signal handler is installed, no thread is
    /// signalled or has its `/proc` entry read, and `slow_poll` findings say
    /// `stack_unavailable: "disabled"`.
    pub capture_stacks: bool,
    /// Where the Prometheus endpoint (`GET /metrics`) listens
    /// (`TASKSCOPE_METRICS_ADDR`; `None`, the default: no endpoint).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How many distinct `spawned_at` values the metrics name at most
    /// (`TASKSCOPE_METRICS_MAX_LOCATIONS`, default
    /// [`DEFAULT_METRICS_MAX_LOCATIONS`], at most [`MAX_METRICS_LOCATIONS`]);
    /// the rest are `spawned_at="other"`.
    pub metrics_max_locations: usize,
    /// Serve tokio-console's protocol (`rs.tokio.console.instrument.Instrument`)
    /// on the viewer server's address, next to `taskscope.v1`
    /// (`TASKSCOPE_CONSOLE`: `on`, the default, or `off`).
    pub console: bool,
    /// Which runtimes taskscope may take Tokio task dumps of, to say where
    /// each task waits (`TASKSCOPE_TASKDUMP`; needs the `taskdump` feature).
    pub task_dumps: TaskDumps,
    /// Which polls are timed (`TASKSCOPE_POLL_TIMING`: `sampled`, the
    /// default, or `every`); see [`PollTiming`].
    pub poll_timing: PollTiming,
}

/// Which polls taskscope times (`TASKSCOPE_POLL_TIMING`).
///
/// Every poll is counted, and its start read from the clock (so the watchdog
/// sees every slow poll while it runs, and the `in_progress` report says
/// exactly since when). What `Sampled` saves is the clock reading at the end
/// of short polls — on a virtual machine, a third of what taskscope costs a
/// poll:
///
/// - a poll that may have lasted a watchdog tick (10 ms) or more — one
///   during which the watchdog's tick passed, or that began while the
///   watchdog was held up — is always timed: every slow poll is reported with
///   its exact duration;
/// - other polls are timed one in [`SAMPLED_ONE_IN`], chosen at random, and
///   count [`SAMPLED_ONE_IN`] times in a task's busy time and poll-duration
///   histogram. Busy time and the histogram of short polls are then
///   estimates (unbiased; about ±10 % for a task with 1,000 polls), and a
///   task's longest poll is the longest timed one when all its polls are
///   short.
///
/// A slow-poll threshold under 20 ms (two ticks) times every poll, as
/// `Every` does. The viewer and `taskscope dump` say when figures are estimates.
///
/// ```
/// use taskscope::{PollTiming, Settings};
/// let (settings, _) = Settings::from_lookup(|name| {
///     (name == "TASKSCOPE_POLL_TIMING").then(|| "every".to_string())
/// });
/// assert_eq!(settings.poll_timing, PollTiming::Every);
/// assert_eq!(Settings::default().poll_timing, PollTiming::Sampled);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PollTiming {
    /// Long polls always, short ones one in [`SAMPLED_ONE_IN`] (`sampled`, the default).
    #[default]
    Sampled,
    /// Every poll (`every`): exact busy times and histograms.
    Every,
}

/// With [`PollTiming::Sampled`], one short poll in this many is timed.
pub const SAMPLED_ONE_IN: u32 = 8;

impl PollTiming {
    /// The value of `TASKSCOPE_POLL_TIMING` that selects it.
    pub fn as_str(self) -> &'static str {
        match self {
            PollTiming::Sampled => "sampled",
            PollTiming::Every => "every",
        }
    }
}

/// Which runtimes taskscope may take Tokio task dumps of (`TASKSCOPE_TASKDUMP`:
/// `off`, `on`, `multi_thread`). Only with the crate's `taskdump` feature; see
/// the README, "Where each task waits".
///
/// A dump pauses the runtime while it re-polls every idle task in a tracing
/// mode. With Tokio 1.54 that is safe on a current-thread runtime, but on a
/// multi-thread runtime it can leave a worker waiting forever (the runtime
/// then never runs those tasks again, and dropping it hangs): taskscope
/// dumps multi-thread runtimes only when told to with `multi_thread`, and
/// then only when a person asks (the viewer, `task_stacks()`, a failing
/// `LeakGuard`), never on its own (at shutdown, for leak findings).
///
/// ```
/// use taskscope::{Settings, TaskDumps};
/// let (settings, _) = Settings::from_lookup(|name| {
///     (name == "TASKSCOPE_TASKDUMP").then(|| "multi_thread".to_string())
/// });
/// assert_eq!(settings.task_dumps, TaskDumps::AlsoMultiThread);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskDumps {
    /// No dumps at all (`off`).
    Off,
    /// Current-thread runtimes only (`on`, the default).
    #[default]
    CurrentThread,
    /// Current-thread runtimes, and multi-thread ones when a person asks
    /// (`multi_thread`): may hang a multi-thread runtime with Tokio 1.54
    /// (see above).
    AlsoMultiThread,
}

impl TaskDumps {
    /// The value of `TASKSCOPE_TASKDUMP` that selects it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskDumps::Off => "off",
            TaskDumps::CurrentThread => "on",
            TaskDumps::AlsoMultiThread => "multi_thread",
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("slow_poll_threshold", &self.slow_poll_threshold)
            .field("report_path", &self.report_path)
            .field("server_addr", &self.server_addr)
            .field("finished_capacity", &self.finished_capacity)
            .field("finished_max_age", &self.finished_max_age)
            .field("idle_limit", &self.idle_limit)
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .field("record_path", &self.record_path)
            .field("record_max_bytes", &self.record_max_bytes)
            .field("task_dumps", &self.task_dumps)
            .field("capture_stacks", &self.capture_stacks)
            .field("metrics_addr", &self.metrics_addr)
            .field("metrics_max_locations", &self.metrics_max_locations)
            .field("console", &self.console)
            .field("poll_timing", &self.poll_timing)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            slow_poll_threshold: DEFAULT_SLOW_POLL,
            report_path: None,
            server_addr: ServerAddr::parse(DEFAULT_ADDR).expect("default address parses"),
            finished_capacity: DEFAULT_FINISHED_CAPACITY,
            finished_max_age: DEFAULT_FINISHED_MAX_AGE,
            idle_limit: None,
            token: None,
            record_path: None,
            record_max_bytes: DEFAULT_RECORD_MAX_MB << 20,
            task_dumps: TaskDumps::default(),
            capture_stacks: true,
            metrics_addr: None,
            metrics_max_locations: DEFAULT_METRICS_MAX_LOCATIONS,
            console: true,
            poll_timing: PollTiming::default(),
        }
    }
}

impl Settings {
    /// Reads the `TASKSCOPE_*` variables from the process environment.
    ///
    /// A variable that cannot be used leaves its default in place and is returned
    /// as a [`SettingError`] naming the variable and the value.
    pub fn from_env() -> (Settings, Vec<SettingError>) {
        Settings::from_lookup(|name| {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    }

    /// Like [`Settings::from_env`], with the variables read through `lookup`.
    ///
    /// ```
    /// use taskscope::Settings;
    /// let (settings, errors) = Settings::from_lookup(|name| match name {
    ///     "TASKSCOPE_SLOW_POLL_MS" => Some("40".into()),
    ///     "TASKSCOPE_ADDR" => Some("nonsense".into()),
    ///     _ => None,
    /// });
    /// assert_eq!(settings.slow_poll_threshold.as_millis(), 40);
    /// assert_eq!(errors[0].variable, "TASKSCOPE_ADDR");
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> (Settings, Vec<SettingError>) {
        let mut settings = Settings::default();
        let mut errors = Vec::new();
        let mut fail = |variable: &'static str, value: &str, expected: String, default: String| {
            errors.push(SettingError {
                variable,
                value: value.to_string(),
                expected,
                default,
            })
        };

        if let Some(value) = lookup("TASKSCOPE_SLOW_POLL_MS") {
            match parse_positive_u64(&value) {
                Some(ms) => settings.slow_poll_threshold = Duration::from_millis(ms),
                None => fail(
                    "TASKSCOPE_SLOW_POLL_MS",
                    &value,
                    "expected a whole number of milliseconds greater than 0".into(),
                    format!("{} ms", DEFAULT_SLOW_POLL.as_millis()),
                ),
            }
        }
        if let Some(value) = lookup("TASKSCOPE_REPORT") {
            if value.trim().is_empty() {
                fail(
                    "TASKSCOPE_REPORT",
                    &value,
                    "expected the path of the report file".into(),
                    "no report file".into(),
                );
            } else {
                settings.report_path = Some(PathBuf::from(value));
            }
        }
        if let Some(value) = lookup("TASKSCOPE_ADDR") {
            match ServerAddr::parse(&value) {
                Ok(addr) => settings.server_addr = addr,
                Err(why) => fail("TASKSCOPE_ADDR", &value, why, DEFAULT_ADDR.into()),
            }
        }
        if let Some(value) = lookup("TASKSCOPE_FINISHED_MAX") {
            match value.trim().parse::<usize>() {
                Ok(n) if n <= MAX_FINISHED_CAPACITY => settings.finished_capacity = n,
                _ => fail(
                    "TASKSCOPE_FINISHED_MAX",
                    &value,
                    format!(
                        "expected a whole number of tasks from 0 (keeps none) to {MAX_FINISHED_CAPACITY}"
                    ),
                    DEFAULT_FINISHED_CAPACITY.to_string(),
                ),
            }
        }
        if let Some(value) = lookup("TASKSCOPE_FINISHED_TTL_S") {
            match parse_positive_u64(&value) {
                Some(s) => settings.finished_max_age = Duration::from_secs(s),
                None => fail(
                    "TASKSCOPE_FINISHED_TTL_S",
                    &value,
                    "expected a whole number of seconds greater than 0".into(),
                    format!("{} s", DEFAULT_FINISHED_MAX_AGE.as_secs()),
                ),
            }
        }
        if let Some(value) = lookup("TASKSCOPE_IDLE_LIMIT_S") {
            if value.trim().eq_ignore_ascii_case("off") {
                settings.idle_limit = None;
            } else {
                match parse_positive_u64(&value) {
                    Some(s) => settings.idle_limit = Some(Duration::from_secs(s)),
                    None => fail(
                        "TASKSCOPE_IDLE_LIMIT_S",
                        &value,
                        "expected a whole number of seconds greater than 0, or off".into(),
                        "off".into(),
                    ),
                }
            }
        }
        if let Some(value) = lookup("TASKSCOPE_RECORD") {
            if value.trim().is_empty() {
                fail(
                    "TASKSCOPE_RECORD",
                    &value,
                    "expected the path of the recording".into(),
                    "no recording".into(),
                );
            } else {
                settings.record_path = Some(PathBuf::from(value));
            }
        }
        if let Some(value) = lookup("TASKSCOPE_RECORD_MAX_MB") {
            match parse_positive_u64(&value).filter(|&mb| mb <= MAX_RECORD_MAX_MB) {
                Some(mb) => settings.record_max_bytes = mb << 20,
                None => fail(
                    "TASKSCOPE_RECORD_MAX_MB",
                    &value,
                    format!("expected a whole number of MiB from 1 to {MAX_RECORD_MAX_MB}"),
                    format!("{DEFAULT_RECORD_MAX_MB} MiB"),
                ),
            }
        }
        let mut token_refused = false;
        if let Some(value) = lookup("TASKSCOPE_TOKEN") {
            // Never echoed, and never silently dropped: a token that cannot be
            // used turns the server off rather than serve without one.
            match token_problem(&value) {
                Some(expected) => {
                    fail(
                        "TASKSCOPE_TOKEN",
                        "(hidden)",
                        expected,
                        "the viewer server and the metrics endpoint off, rather than serve \
                         without the token"
                            .into(),
                    );
                    token_refused = true;
                }
                None => settings.token = Some(value),
            }
        }
        if let Some(value) = lookup("TASKSCOPE_TASKDUMP") {
            match value.trim().to_ascii_lowercase().as_str() {
                "off" => settings.task_dumps = TaskDumps::Off,
                "on" => settings.task_dumps = TaskDumps::CurrentThread,
                "multi_thread" => settings.task_dumps = TaskDumps::AlsoMultiThread,
                _ => fail(
                    "TASKSCOPE_TASKDUMP",
                    &value,
                    "expected off, on (current-thread runtimes) or multi_thread (all runtimes)"
                        .into(),
                    "on".into(),
                ),
            }
        }
        if let Some(value) = lookup("TASKSCOPE_POLL_TIMING") {
            match value.trim().to_ascii_lowercase().as_str() {
                "sampled" => settings.poll_timing = PollTiming::Sampled,
                "every" => settings.poll_timing = PollTiming::Every,
                _ => fail(
                    "TASKSCOPE_POLL_TIMING",
                    &value,
                    "expected sampled (long polls always, short ones one in 8) or every".into(),
                    "sampled".into(),
                ),
            }
        }
        for (variable, value) in [
            ("TASKSCOPE_STACKS", &mut settings.capture_stacks),
            ("TASKSCOPE_CONSOLE", &mut settings.console),
        ] {
            if let Some(text) = lookup(variable) {
                match text.trim().to_ascii_lowercase().as_str() {
                    "on" => *value = true,
                    "off" => *value = false,
                    _ => fail(variable, &text, "expected on or off".into(), "on".into()),
                }
            }
        }
        if let Some(value) = lookup("TASKSCOPE_METRICS_ADDR") {
            match parse_metrics_addr(&value) {
                Ok(addr) => settings.metrics_addr = addr,
                Err(why) => fail("TASKSCOPE_METRICS_ADDR", &value, why, "off".into()),
            }
        }
        if let Some(value) = lookup("TASKSCOPE_METRICS_MAX_LOCATIONS") {
            match value.trim().parse::<usize>() {
                Ok(n) if n <= MAX_METRICS_LOCATIONS => settings.metrics_max_locations = n,
                _ => fail(
                    "TASKSCOPE_METRICS_MAX_LOCATIONS",
                    &value,
                    format!(
                        "expected a whole number of spawn locations from 0 to {MAX_METRICS_LOCATIONS}"
                    ),
                    DEFAULT_METRICS_MAX_LOCATIONS.to_string(),
                ),
            }
        }
        if token_refused {
            // Whatever the addresses say: nothing is served without the token.
            settings.server_addr = ServerAddr::Off;
            settings.metrics_addr = None;
        }
        (settings, errors)
    }
}

/// What is wrong with `token` as a token (what was expected), if anything: it
/// must be printable ASCII without spaces, and at least [`MIN_TOKEN_LEN`]
/// characters long (a short one is guessed). The text never contains the token.
pub(crate) fn token_problem(token: &str) -> Option<String> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        Some("expected a token of printable ASCII characters without spaces".into())
    } else if token.len() < MIN_TOKEN_LEN {
        Some(format!(
            "expected a token of at least {MIN_TOKEN_LEN} characters (this one has {}; use a \
             random one, e.g. `openssl rand -hex 16`)",
            token.len()
        ))
    } else {
        None
    }
}

/// `TASKSCOPE_METRICS_ADDR`: `host:port`, `http://host:port` or `off`
/// (Prometheus scrapes over TCP: no Unix socket).
fn parse_metrics_addr(text: &str) -> Result<Option<std::net::SocketAddr>, String> {
    match ServerAddr::parse(text)? {
        ServerAddr::Off => Ok(None),
        ServerAddr::Tcp(addr) => Ok(Some(addr)),
        ServerAddr::Unix(_) => {
            Err("expected host:port, http://host:port or off (Prometheus scrapes over TCP, not a Unix socket)".into())
        }
    }
}

fn parse_positive_u64(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> (Settings, Vec<SettingError>) {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_without_environment() {
        let (s, errors) = with(&[]);
        assert!(errors.is_empty());
        assert_eq!(s.slow_poll_threshold, Duration::from_millis(100));
        assert_eq!(s.report_path, None);
        assert_eq!(s.server_addr.to_string(), "127.0.0.1:6670");
        assert!(s.server_addr.is_local());
    }

    #[test]
    fn malformed_threshold_names_variable_and_value_and_keeps_default() {
        for bad in ["abc", "-1", "0", "1.5", ""] {
            let (s, errors) = with(&[("TASKSCOPE_SLOW_POLL_MS", bad)]);
            assert_eq!(s.slow_poll_threshold, DEFAULT_SLOW_POLL, "{bad}");
            assert_eq!(errors.len(), 1, "{bad}");
            let text = errors[0].to_string();
            assert!(text.contains("TASKSCOPE_SLOW_POLL_MS"), "{text}");
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert!(text.contains("100 ms"), "{text}");
        }
    }

    #[test]
    fn addresses_in_every_form() {
        assert_eq!(ServerAddr::parse("OFF").unwrap(), ServerAddr::Off);
        assert_eq!(
            ServerAddr::parse("localhost:7000").unwrap(),
            ServerAddr::Tcp("127.0.0.1:7000".parse().unwrap())
        );
        assert_eq!(
            ServerAddr::parse("http://[::1]:7000/").unwrap(),
            ServerAddr::Tcp("[::1]:7000".parse().unwrap())
        );
        assert!(!ServerAddr::parse("0.0.0.0:7000").unwrap().is_local());
        assert!(ServerAddr::parse("127.0.0.1:99999").is_err());
        assert!(ServerAddr::parse("unix:").is_err());
        let (s, errors) = with(&[("TASKSCOPE_ADDR", "127.0.0.1")]);
        assert_eq!(s.server_addr.to_string(), DEFAULT_ADDR);
        assert_eq!(errors[0].variable, "TASKSCOPE_ADDR");
    }

    #[test]
    fn recording_path_and_bound() {
        let (s, errors) = with(&[]);
        assert_eq!((s.record_path, s.record_max_bytes), (None, 256 << 20));
        assert!(errors.is_empty());
        let (s, errors) = with(&[
            ("TASKSCOPE_RECORD", "/tmp/app.rec"),
            ("TASKSCOPE_RECORD_MAX_MB", "16"),
        ]);
        assert_eq!(s.record_path, Some(PathBuf::from("/tmp/app.rec")));
        assert_eq!(s.record_max_bytes, 16 << 20);
        assert!(errors.is_empty());
        for bad in ["0", "-3", "1.5", "lots", "1048577"] {
            let (s, errors) = with(&[("TASKSCOPE_RECORD_MAX_MB", bad)]);
            assert_eq!(s.record_max_bytes, 256 << 20, "{bad}");
            let text = errors[0].to_string();
            assert!(
                text.starts_with(&format!("TASKSCOPE_RECORD_MAX_MB={bad:?} is not valid")),
                "{text}"
            );
            assert!(text.ends_with("using the default (256 MiB)"), "{text}");
        }
        let (s, errors) = with(&[("TASKSCOPE_RECORD", " ")]);
        assert_eq!(s.record_path, None);
        assert_eq!(errors[0].variable, "TASKSCOPE_RECORD");
    }

    #[test]
    fn metrics_endpoint_is_off_by_default_and_takes_tcp_addresses_only() {
        let (s, errors) = with(&[]);
        assert!(errors.is_empty());
        assert_eq!(s.metrics_addr, None);
        assert_eq!(s.metrics_max_locations, 1_000);
        let (s, errors) = with(&[
            ("TASKSCOPE_METRICS_ADDR", "http://localhost:9464/"),
            ("TASKSCOPE_METRICS_MAX_LOCATIONS", "50"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(s.metrics_max_locations, 50);
        let (s, _) = with(&[("TASKSCOPE_METRICS_ADDR", "off")]);
        assert_eq!(s.metrics_addr, None);
        for (variable, bad) in [
            ("TASKSCOPE_METRICS_ADDR", "unix:/tmp/m.sock"),
            ("TASKSCOPE_METRICS_ADDR", "9464"),
            ("TASKSCOPE_METRICS_MAX_LOCATIONS", "10001"),
            ("TASKSCOPE_METRICS_MAX_LOCATIONS", "-1"),
            ("TASKSCOPE_METRICS_MAX_LOCATIONS", "many"),
        ] {
            let (s, errors) = with(&[(variable, bad)]);
            assert_eq!(errors.len(), 1, "{bad}");
            assert_eq!(errors[0].variable, variable);
            assert!(errors[0].to_string().contains(&format!("{bad:?}")));
            assert_eq!(s.metrics_addr, None);
            assert_eq!(s.metrics_max_locations, DEFAULT_METRICS_MAX_LOCATIONS);
        }
        let (s, errors) = with(&[("TASKSCOPE_METRICS_MAX_LOCATIONS", "10000")]);
        assert!(errors.is_empty());
        assert_eq!(s.metrics_max_locations, MAX_METRICS_LOCATIONS);
    }

    #[test]
    fn idle_limit_and_retention() {
        let (s, errors) = with(&[
            ("TASKSCOPE_IDLE_LIMIT_S", "30"),
            ("TASKSCOPE_FINISHED_MAX", "5"),
            ("TASKSCOPE_FINISHED_TTL_S", "x"),
        ]);
        assert_eq!(s.idle_limit, Some(Duration::from_secs(30)));
        assert_eq!(s.finished_capacity, 5);
        assert_eq!(s.finished_max_age, DEFAULT_FINISHED_MAX_AGE);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].variable, "TASKSCOPE_FINISHED_TTL_S");
    }

    #[test]
    fn task_dump_policy_reads_its_three_values_and_refuses_others() {
        assert_eq!(with(&[]).0.task_dumps, TaskDumps::CurrentThread);
        for (value, want) in [
            ("off", TaskDumps::Off),
            ("ON", TaskDumps::CurrentThread),
            (" multi_thread ", TaskDumps::AlsoMultiThread),
        ] {
            let (s, errors) = with(&[("TASKSCOPE_TASKDUMP", value)]);
            assert!(errors.is_empty(), "{value}: {errors:?}");
            assert_eq!(s.task_dumps, want, "{value}");
            assert_eq!(
                with(&[("TASKSCOPE_TASKDUMP", want.as_str())]).0.task_dumps,
                want
            );
        }
        let (s, errors) = with(&[("TASKSCOPE_TASKDUMP", "multi")]);
        assert_eq!(s.task_dumps, TaskDumps::CurrentThread);
        assert_eq!(errors[0].variable, "TASKSCOPE_TASKDUMP");
        assert!(
            errors[0].to_string().contains("multi_thread"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn poll_timing_reads_sampled_and_every_and_refuses_others() {
        assert_eq!(with(&[]).0.poll_timing, PollTiming::Sampled);
        for want in [PollTiming::Every, PollTiming::Sampled] {
            let (s, errors) = with(&[("TASKSCOPE_POLL_TIMING", want.as_str())]);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(s.poll_timing, want);
        }
        assert_eq!(
            with(&[("TASKSCOPE_POLL_TIMING", " EVERY ")]).0.poll_timing,
            PollTiming::Every
        );
        let (s, errors) = with(&[("TASKSCOPE_POLL_TIMING", "1/8")]);
        assert_eq!(s.poll_timing, PollTiming::Sampled);
        assert_eq!(errors[0].variable, "TASKSCOPE_POLL_TIMING");
        assert!(
            errors[0].to_string().contains("expected sampled"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn history_size_has_a_stated_maximum() {
        let (s, errors) = with(&[("TASKSCOPE_FINISHED_MAX", "1000000")]);
        assert!(errors.is_empty());
        assert_eq!(s.finished_capacity, MAX_FINISHED_CAPACITY);
        for too_big in [
            "1000001",
            "100000000",
            "18446744073709551615",
            "18446744073709551616",
        ] {
            let (s, errors) = with(&[("TASKSCOPE_FINISHED_MAX", too_big)]);
            assert_eq!(s.finished_capacity, DEFAULT_FINISHED_CAPACITY, "{too_big}");
            assert_eq!(errors.len(), 1, "{too_big}");
            assert_eq!(
                errors[0].to_string(),
                format!(
                    "TASKSCOPE_FINISHED_MAX={too_big:?} is not valid: expected a whole number of \
                     tasks from 0 (keeps none) to 1000000; using the default (1000)"
                )
            );
        }
    }

    #[test]
    fn stacks_on_or_off() {
        assert!(with(&[]).0.capture_stacks);
        let (s, errors) = with(&[("TASKSCOPE_STACKS", " OFF ")]);
        assert!(!s.capture_stacks && errors.is_empty());
        let (s, errors) = with(&[("TASKSCOPE_STACKS", "on")]);
        assert!(s.capture_stacks && errors.is_empty());
        for bad in ["no", "0", "false", ""] {
            let (s, errors) = with(&[("TASKSCOPE_STACKS", bad)]);
            assert!(s.capture_stacks, "{bad}");
            assert_eq!(
                errors[0].to_string(),
                format!(
                    "TASKSCOPE_STACKS={bad:?} is not valid: expected on or off; using the default (on)"
                )
            );
        }
    }

    #[test]
    fn a_refused_token_turns_every_endpoint_off() {
        let (s, errors) = with(&[
            ("TASKSCOPE_TOKEN", "short"),
            ("TASKSCOPE_ADDR", "127.0.0.1:7000"),
            ("TASKSCOPE_METRICS_ADDR", "127.0.0.1:9464"),
        ]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].variable, "TASKSCOPE_TOKEN");
        assert!(!errors[0].to_string().contains("short"), "never echoed");
        assert_eq!(s.server_addr, ServerAddr::Off);
        assert_eq!(s.metrics_addr, None);
        assert_eq!(s.token, None);
    }

    #[test]
    fn console_protocol_on_by_default_off_on_request() {
        assert!(with(&[]).0.console);
        for off in ["off", "OFF", " off "] {
            let (s, errors) = with(&[("TASKSCOPE_CONSOLE", off)]);
            assert!(!s.console, "{off:?}");
            assert!(errors.is_empty());
        }
        assert!(with(&[("TASKSCOPE_CONSOLE", "on")]).0.console);
        let (s, errors) = with(&[("TASKSCOPE_CONSOLE", "no")]);
        assert!(s.console);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            r#"TASKSCOPE_CONSOLE="no" is not valid: expected on or off; using the default (on)"#
        );
    }
}
