//! A progress bar on stderr for the long reads (`taskscope report` on big
//! files, `taskscope replay` loading a recording): drawn only when stderr is
//! a terminal, and only for reads big enough to be worth one. A pipe or a
//! file on stderr gets nothing, so scripts and logs see the same bytes as
//! before.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `taskscope report` shows a bar when the files it reads add up to more
/// than this many bytes (100 MB): smaller ones read in about a second.
pub const REPORT_MIN_BYTES: u64 = 100 * 1000 * 1000;

/// `taskscope replay` shows a bar for a recording of any size: loading
/// indexes every record, and the live view only starts once it is done.
pub const REPLAY_MIN_BYTES: u64 = 0;

/// Whether a read of `total` bytes gets a bar: stderr is a terminal and the
/// read is over `min_bytes`.
///
/// ```
/// use taskscope_viewer::progress::{REPORT_MIN_BYTES, wanted};
/// assert!(wanted(REPORT_MIN_BYTES + 1, REPORT_MIN_BYTES, true));
/// assert!(!wanted(REPORT_MIN_BYTES, REPORT_MIN_BYTES, true));
/// assert!(!wanted(u64::MAX, REPORT_MIN_BYTES, false)); // a pipe: never
/// ```
pub fn wanted(total: u64, min_bytes: u64, stderr_is_terminal: bool) -> bool {
    stderr_is_terminal && total > min_bytes
}

/// A progress bar over bytes read, or nothing (every call then does nothing).
/// Clones are the same bar.
#[derive(Clone, Debug)]
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// No bar.
    pub fn none() -> Bar {
        Bar { bar: None }
    }

    /// A bar on stderr for reading `total` bytes, when [`wanted`] says so
    /// for this process's stderr; else none.
    ///
    /// ```
    /// use taskscope_viewer::progress::Bar;
    /// // Under `cargo test` stderr is captured, not a terminal: no bar.
    /// let bar = Bar::on_stderr("reading", 1 << 40, 0);
    /// bar.set(1 << 20);
    /// bar.finish();
    /// ```
    pub fn on_stderr(what: &str, total: u64, min_bytes: u64) -> Bar {
        Bar::new(
            what,
            total,
            wanted(total, min_bytes, std::io::stderr().is_terminal()),
            ProgressDrawTarget::stderr(),
        )
    }

    /// A bar drawn to `target` when `shown`.
    fn new(what: &str, total: u64, shown: bool, target: ProgressDrawTarget) -> Bar {
        if !shown {
            return Bar::none();
        }
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        )
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(what.to_string());
        Bar { bar: Some(bar) }
    }

    /// Whether a bar is drawn.
    pub fn is_shown(&self) -> bool {
        self.bar.is_some()
    }

    /// `done` bytes read so far.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// Runs `f` with the bar taken off the screen (for a line on stderr).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Takes the bar off the screen for good.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_files_get_a_bar_only_over_100_mb_on_a_terminal() {
        assert!(!wanted(0, REPORT_MIN_BYTES, true));
        assert!(!wanted(99_999_999, REPORT_MIN_BYTES, true));
        assert!(!wanted(100_000_000, REPORT_MIN_BYTES, true));
        assert!(wanted(100_000_001, REPORT_MIN_BYTES, true));
        assert!(wanted(5 << 30, REPORT_MIN_BYTES, true));
    }

    #[test]
    fn nothing_when_stderr_is_not_a_terminal() {
        for total in [0, 1, 100_000_001, u64::MAX] {
            assert!(!wanted(total, REPORT_MIN_BYTES, false), "{total}");
            assert!(!wanted(total, REPLAY_MIN_BYTES, false), "{total}");
        }
        let bar = Bar::new("reading", 1 << 40, false, ProgressDrawTarget::hidden());
        assert!(!bar.is_shown());
        // Every call is harmless without a bar.
        bar.set(10);
        assert_eq!(bar.suspend(|| 7), 7);
        bar.finish();
    }

    #[test]
    fn a_recording_of_any_size_gets_a_bar_on_a_terminal() {
        assert!(wanted(1, REPLAY_MIN_BYTES, true));
        assert!(!wanted(0, REPLAY_MIN_BYTES, true));
    }

    #[test]
    fn a_shown_bar_follows_the_bytes_read() {
        let bar = Bar::new("reading", 1000, true, ProgressDrawTarget::hidden());
        assert!(bar.is_shown());
        bar.set(400);
        let inner = bar.bar.as_ref().expect("a bar");
        assert_eq!(inner.position(), 400);
        assert_eq!(inner.length(), Some(1000));
        bar.finish();
        assert!(inner.is_finished());
    }
}
