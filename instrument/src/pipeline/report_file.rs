//! The report file sink: JSON lines, one finding a line, appended, one `write`
//! per line.
//!
//! It runs on the findings thread, never on the app's threads: the file is
//! opened there too (a FIFO without a reader is not waited for: opening it
//! fails, and is tried again). When the file cannot be opened or written, it
//! warns once, naming the file and the cause, keeps counting what it could not
//! write, and tries again at most once a second, so writing resumes — with a
//! "writing again" warning — when the file can be written again.
//!
//! A line cut short (a full disk, a crash in a previous run) is never glued to
//! the next one: when the file does not end with a newline, the next line
//! starts with one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use taskscope_api::Finding;

/// How often an unwritable report file is tried again, at most.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct ReportFile {
    path: PathBuf,
    file: Option<File>,
    /// When opening was last tried (`None`: try at the next line).
    last_attempt: Option<Instant>,
    /// The failure warned about, while the file stays unwritable.
    failing: bool,
    /// The file does not end with a newline: start the next line with one.
    torn: bool,
    line: Vec<u8>,
    /// Lines that could not be written since the last warning.
    failed_since_warning: u64,
}

impl ReportFile {
    /// The report file at `path`; nothing is opened until [`Self::open_quietly`]
    /// or the first [`Self::write`], on the findings thread.
    pub(crate) fn new(path: PathBuf) -> ReportFile {
        ReportFile {
            path,
            file: None,
            last_attempt: None,
            failing: false,
            torn: false,
            line: Vec::with_capacity(512),
            failed_since_warning: 0,
        }
    }

    /// Opens (creates) the file if it can, without a warning when it cannot:
    /// the first line then tries again at once, and warns.
    pub(crate) fn open_quietly(&mut self) {
        if let Ok(file) = open(&self.path) {
            self.opened(file);
        }
    }

    fn opened(&mut self, file: File) {
        self.torn = ends_without_newline(&file, &self.path);
        self.file = Some(file);
    }

    /// Opens the file; on failure, warns (once while it keeps failing).
    fn reopen(&mut self) {
        self.last_attempt = Some(Instant::now());
        match open(&self.path) {
            Ok(file) => self.opened(file),
            Err(err) => self.fail(&format!("cannot open it: {err}")),
        }
    }

    fn fail(&mut self, why: &str) {
        self.file = None;
        if !self.failing {
            self.failing = true;
            self.failed_since_warning = 0;
            tracing::warn!(
                target: "taskscope",
                "report file {}: {why}; findings still go to the log, and writing resumes when the file can be written",
                self.path.display()
            );
        }
    }

    /// Appends one finding. Returns true when it reached the file.
    pub(crate) fn write(&mut self, finding: &Finding) -> bool {
        let ok = self.try_write(finding);
        if !ok {
            self.failed_since_warning += 1;
        }
        ok
    }

    fn try_write(&mut self, finding: &Finding) -> bool {
        if self.file.is_none() && self.last_attempt.is_none_or(|t| t.elapsed() >= RETRY_EVERY) {
            self.reopen();
        }
        let Some(file) = self.file.as_mut() else {
            return false;
        };
        self.line.clear();
        if self.torn {
            self.line.push(b'\n');
        }
        if let Err(err) = serde_json::to_writer(&mut self.line, finding) {
            // Not the file's fault: say so, but keep the file.
            tracing::warn!(target: "taskscope", "cannot write a finding as JSON: {err}");
            return false;
        }
        self.line.push(b'\n');
        match file.write_all(&self.line) {
            Ok(()) => {
                self.torn = false;
                if self.failing {
                    self.failing = false;
                    tracing::warn!(
                        target: "taskscope",
                        "report file {}: writing again ({} findings could not be written meanwhile)",
                        self.path.display(),
                        self.failed_since_warning
                    );
                }
                true
            }
            Err(err) => {
                // Part of the line may have reached the file: the reopen looks.
                self.fail(&format!("cannot write to it: {err}"));
                false
            }
        }
    }
}

/// Opens `path` for appending, creating it owner-only (mode 0600: it holds
/// panic messages and stack frames; an existing file keeps its mode). Never
/// waits for a FIFO's reader.
fn open(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK).mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        // Writes block again (a slow reader slows the findings thread, which
        // then drops findings, never the app).
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: `fd` is a valid descriptor owned by `file` for these calls.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
    Ok(file)
}

/// True for a regular file (`file`, opened at `path`) whose last byte is not a newline.
fn ends_without_newline(file: &File, path: &Path) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !meta.is_file() || meta.len() == 0 {
        return false;
    }
    // Read through a second handle: `file` is open for appending only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        let mut byte = 0u8;
        if let Ok(reader) = File::open(path)
            && reader
                .read_at(std::slice::from_mut(&mut byte), meta.len() - 1)
                .is_ok_and(|n| n == 1)
        {
            return byte != b'\n';
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope_api::FindingKind;

    fn finding(n: u64) -> Finding {
        Finding::new(FindingKind::FindingsDropped { count: n }, None)
    }

    fn dir(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("taskscope-report-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_missing_directory_is_retried_and_writing_resumes() {
        let dir = dir("resume");
        let path = dir.join("sub").join("report.jsonl");
        let mut report = ReportFile::new(path.clone());
        report.open_quietly();
        assert!(!report.write(&finding(1)));
        assert!(report.failing);
        // Within the retry interval: not tried again.
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert!(!report.write(&finding(2)));
        report.last_attempt = Some(Instant::now() - RETRY_EVERY);
        assert!(report.write(&finding(3)));
        assert!(!report.failing);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"count\":3"));
    }

    #[cfg(unix)]
    #[test]
    fn the_report_file_is_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = dir("mode");
        let path = dir.join("report.jsonl");
        let mut report = ReportFile::new(path.clone());
        assert!(report.write(&finding(1)));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600, "mode {mode:o}");
        assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
    }

    #[test]
    fn a_torn_last_line_is_ended_before_the_next_one() {
        let dir = dir("torn");
        let path = dir.join("report.jsonl");
        std::fs::write(&path, b"{\"v\":1,\"kind\":\"findings_dr").unwrap();
        let mut report = ReportFile::new(path.clone());
        report.open_quietly();
        assert!(report.write(&finding(1)));
        assert!(report.write(&finding(2)));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with("findings_dr"));
        for line in &lines[1..] {
            serde_json::from_str::<Finding>(line).unwrap();
        }
        // A whole file is left as it is.
        let mut report = ReportFile::new(path.clone());
        report.open_quietly();
        assert!(!report.torn);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_counted_not_written() {
        let mut report = ReportFile::new(PathBuf::from("/dev/full"));
        report.open_quietly();
        assert!(report.file.is_some());
        assert!(!report.write(&finding(1)));
        assert!(report.failing);
        assert!(!report.write(&finding(2)));
        assert_eq!(report.failed_since_warning, 2);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_without_reader_is_not_waited_for() {
        let dir = dir("fifo");
        let path = dir.join("report.fifo");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opening would block forever without O_NONBLOCK: on a thread, with a bound.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut report = ReportFile::new(path);
            report.open_quietly();
            let wrote = report.write(&finding(1));
            let _ = tx.send((wrote, report.failing));
        });
        let outcome = rx.recv_timeout(Duration::from_secs(20));
        assert_eq!(
            outcome,
            Ok((false, true)),
            "not written, warned, not waited for"
        );
    }
}
