//! The time window of `--since` / `--until`, and the RFC 3339 times it compares.

use std::time::SystemTime;

use taskscope_api::Finding;
pub use taskscope_api::time::parse_time;

/// Keeps the findings whose `time` lies in `[since, until]` (both ends included,
/// as `journalctl` and `git log` do); an open end keeps everything on that side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Earliest time kept, if any.
    pub since: Option<SystemTime>,
    /// Latest time kept, if any.
    pub until: Option<SystemTime>,
}

impl Window {
    /// True when the window keeps everything, so no time needs to be read.
    pub fn is_open(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Whether `finding` is inside the window. `Err` says why its `time` can't be
    /// compared; that only happens when the window has an end, because without one
    /// the time is never read.
    pub fn check(&self, finding: &Finding) -> Result<bool, String> {
        if self.is_open() {
            return Ok(true);
        }
        let time = parse_time(&finding.time).map_err(|why| {
            format!(
                "`time` {:?} is {why}, which --since/--until need",
                finding.time
            )
        })?;
        Ok(self.contains(time))
    }

    /// Whether `time` is inside the window.
    pub fn contains(&self, time: SystemTime) -> bool {
        self.since.is_none_or(|since| time >= since) && self.until.is_none_or(|until| time <= until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope_api::FindingKind;

    fn at(text: &str) -> SystemTime {
        parse_time(text).unwrap()
    }

    fn finding(time: &str) -> Finding {
        Finding {
            v: 1,
            kind: FindingKind::FindingsDropped { count: 1 },
            time: time.into(),
            task: None,
        }
    }

    #[test]
    fn window_includes_both_ends() {
        let window = Window {
            since: Some(at("2026-11-22T10:00:00Z")),
            until: Some(at("2026-11-22T11:00:00Z")),
        };
        assert_eq!(
            window.check(&finding("2026-11-22T09:59:59.999Z")),
            Ok(false)
        );
        assert_eq!(window.check(&finding("2026-11-22T10:00:00.000Z")), Ok(true));
        assert_eq!(window.check(&finding("2026-11-22T10:30:00.000Z")), Ok(true));
        assert_eq!(window.check(&finding("2026-11-22T11:00:00.000Z")), Ok(true));
        assert_eq!(
            window.check(&finding("2026-11-22T11:00:00.001Z")),
            Ok(false)
        );
        assert!(window.check(&finding("x")).unwrap_err().contains("\"x\""));
    }

    #[test]
    fn an_open_window_keeps_everything_and_reads_no_time() {
        let since_only = Window {
            since: Some(at("2026-11-22T10:00:00Z")),
            until: None,
        };
        assert_eq!(since_only.check(&finding("2030-01-01T00:00:00Z")), Ok(true));
        assert_eq!(
            since_only.check(&finding("2020-01-01T00:00:00Z")),
            Ok(false)
        );
        assert_eq!(Window::default().check(&finding("not a time")), Ok(true));
    }
}
