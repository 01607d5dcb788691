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
                Ok(n) => settings.finished_capacity = n,
                Err(_) => fail(
                    "TASKSCOPE_FINISHED_MAX",
                    &value,
                    "expected a whole number of tasks (0 keeps none)".into(),
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
        if let Some(value) = lookup("TASKSCOPE_TOKEN") {
            // Never echoed, and never silently dropped: a token that cannot be
            // used turns the server off rather than serve without one.
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
                fail(
                    "TASKSCOPE_TOKEN",
                    "(hidden)",
                    "expected a token of printable ASCII characters without spaces".into(),
                    "the viewer server off, rather than serve without the token".into(),
                );
                settings.server_addr = ServerAddr::Off;
            } else {
                settings.token = Some(value);
            }
        }
        (settings, errors)
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
}
