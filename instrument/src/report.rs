//! The report file sink: JSON lines, one finding a line, appended, flushed per line.
//!
//! It runs on the findings thread, never on the app's threads. When the file
//! cannot be opened or written, it warns once, keeps counting what it could not
//! write, and tries again (at most once a second) so writing resumes when the
//! file becomes writable again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::findings::Finding;

const RETRY_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct ReportFile {
    path: PathBuf,
    file: Option<File>,
    last_attempt: Option<Instant>,
    failing: bool,
    line: Vec<u8>,
    pub(crate) written: u64,
    pub(crate) failed: u64,
}

impl ReportFile {
    pub(crate) fn new(path: PathBuf) -> ReportFile {
        let mut report = ReportFile {
            path,
            file: None,
            last_attempt: None,
            failing: false,
            line: Vec::with_capacity(512),
            written: 0,
            failed: 0,
        };
        report.open();
        report
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn open(&mut self) {
        self.last_attempt = Some(Instant::now());
        match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(file) => self.file = Some(file),
            Err(err) => self.fail(&format!("cannot open it: {err}")),
        }
    }

    fn fail(&mut self, why: &str) {
        self.file = None;
        if !self.failing {
            self.failing = true;
            tracing::warn!(
                target: "taskscope",
                "report file {}: {why}; findings still go to the log, and writing resumes when the file can be written",
                self.path.display()
            );
        }
    }

    /// Appends one finding. Returns true when it reached the file.
    pub(crate) fn write(&mut self, finding: &Finding) -> bool {
        if self.file.is_none() && self.last_attempt.is_none_or(|t| t.elapsed() >= RETRY_EVERY) {
            self.open();
        }
        self.line.clear();
        if serde_json::to_writer(&mut self.line, finding).is_err() {
            self.failed += 1;
            return false;
        }
        self.line.push(b'\n');
        let Some(file) = self.file.as_mut() else {
            self.failed += 1;
            return false;
        };
        match file.write_all(&self.line).and_then(|()| file.flush()) {
            Ok(()) => {
                self.written += 1;
                if self.failing {
                    self.failing = false;
                    tracing::warn!(
                        target: "taskscope",
                        "report file {}: writing again ({} findings could not be written meanwhile)",
                        self.path.display(),
                        self.failed
                    );
                }
                true
            }
            Err(err) => {
                self.failed += 1;
                self.fail(&format!("cannot write to it: {err}"));
                false
            }
        }
    }
}
