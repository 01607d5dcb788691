//! The findings sinks under stress and faults, through a real app
//! (`sink_app`, driven line by line on stdin): a flood of findings (counted,
//! the excess dropped and the drops reported in the report file, the log and
//! the viewer; memory bounded; the counts add up), a report file that cannot
//! be written (one warning naming the file and the cause; the app and the other
//! sinks go on; writing resumes), and shutdown while the report writer is busy
//! and a viewer is attached (no hang; no accepted finding lost while the flush
//! has time).

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use taskscope_tests::{location_prefix, temp_dir};

/// Upper bound on a hang: the app must have exited this long after `quit`
/// (its guard waits at most twice `taskscope::FLUSH_TIMEOUT`). Not a
/// performance figure: a debug build on a loaded machine exits in well under it.
const EXIT_WITHIN: Duration = Duration::from_secs(10);
/// The longest any other step may take.
const WAIT: Duration = Duration::from_secs(60);
/// An app still running after this long is killed, so that a hang fails the
/// test (its reads of the app's output end) instead of stalling the run.
const LIFETIME: Duration = Duration::from_secs(240);

/// `sink_app` running, driven through its stdin.
struct App {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Dropped with the app: stops the killer thread.
    _killer: std::sync::mpsc::Sender<()>,
    /// Commands carried out so far.
    done: usize,
}

/// Kills process `pid` unless `stop` hears from its sender (or loses it) within [`LIFETIME`].
fn kill_after_lifetime(pid: u32, stop: std::sync::mpsc::Receiver<()>) {
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(LIFETIME) {
            eprintln!("sink_app {pid} still running after {LIFETIME:?}: killed");
            #[cfg(unix)]
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    });
}

impl App {
    fn start(env: &[(&str, &str)]) -> App {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sink_app"));
        cmd.env_remove("RUST_LOG")
            .env_remove("TASKSCOPE_REPORT")
            .env("TASKSCOPE_ADDR", "off")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start sink_app");
        let (killer, stop) = std::sync::mpsc::channel();
        kill_after_lifetime(child.id(), stop);
        let (stderr, reader) = taskscope_tests::collect_stderr(child.stderr.take().unwrap());
        let mut app = App {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            stderr,
            reader: Some(reader),
            _killer: killer,
            done: 0,
        };
        app.line_starting("ready");
        app
    }

    /// The rest of the next stdout line starting with `prefix`.
    fn line_starting(&mut self, prefix: &str) -> String {
        let stderr = Arc::clone(&self.stderr);
        taskscope_tests::next_line_where(
            &mut self.stdout,
            &format!("sink_app (waiting for {prefix:?})"),
            || stderr_tail(&stderr.lock().unwrap()),
            |line| {
                line.strip_prefix(prefix)
                    .map(|rest| rest.trim().to_string())
            },
        )
    }

    /// Sends a command; returns the answer once the app has carried it out.
    fn send(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let answer = self.line_starting(&format!("ok {command}"));
        // The app said so on stderr before answering: once that is read, so
        // is every line it logged before.
        self.done += 1;
        let deadline = Instant::now() + WAIT;
        while self.stderr().matches("sink_app: done ").count() < self.done {
            assert!(Instant::now() < deadline, "stderr is not read");
            std::thread::sleep(Duration::from_millis(5));
        }
        answer
    }

    fn send_json(&mut self, command: &str) -> Value {
        let answer = self.send(command);
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{command}: {answer:?}: {e}"))
    }

    /// Sends `quit` and waits for the exit, at most [`EXIT_WITHIN`]: the exit
    /// status, the counters printed after the guard's flush, and how long it took.
    fn quit(&mut self) -> (ExitStatus, Value, Duration) {
        let started = Instant::now();
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "quit").unwrap();
        stdin.flush().unwrap();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > EXIT_WITHIN {
                let _ = self.child.kill();
                panic!(
                    "sink_app still running {EXIT_WITHIN:?} after quit; stderr:\n{}",
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = started.elapsed();
        let stats = serde_json::from_str(&self.line_starting("exit-stats")).unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, stats, took)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stderr_tail(&self) -> String {
        stderr_tail(&self.stderr())
    }

    /// taskscope's WARN lines on stderr containing `needle`.
    fn warnings(&self, needle: &str) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("taskscope") && l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ms(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// Every line of a report file, parsed (taskscope must only write whole lines).
fn report_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["kind"] == kind).collect()
}

/// The counters add up: `submitted = accepted + dropped`, nothing left in the
/// queue, every accepted finding written or not, every drop reported.
fn assert_counts_add_up(stats: &Value, report_file: bool) {
    assert_eq!(
        n(stats, "submitted"),
        n(stats, "accepted") + n(stats, "dropped"),
        "{stats}"
    );
    assert_eq!(n(stats, "queued"), 0, "{stats}");
    assert_eq!(n(stats, "processed"), n(stats, "accepted"), "{stats}");
    if report_file {
        assert_eq!(
            n(stats, "written") + n(stats, "unwritten"),
            n(stats, "accepted"),
            "{stats}"
        );
    }
    assert_eq!(n(stats, "drops_noticed"), n(stats, "dropped"), "{stats}");
}

/// The counts in `N findings were dropped` log lines, added up.
fn dropped_in_log(app: &App) -> u64 {
    app.warnings("findings were dropped")
        .iter()
        .map(|l| {
            l.split(" findings were dropped")
                .next()
                .and_then(|head| head.rsplit(' ').next())
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in {l}"))
        })
        .sum()
}

#[test]
fn a_flood_is_counted_the_excess_dropped_and_reported_everywhere_in_bounded_memory() {
    const FLOOD: u64 = 400_000;
    let dir = temp_dir("sink-flood");
    let report = dir.join("report.jsonl");
    let mut app = App::start(&[
        ("TASKSCOPE_REPORT", report.to_str().unwrap()),
        // Never-awaited findings only: the app knows how many it made.
        ("TASKSCOPE_SLOW_POLL_MS", "60000"),
    ]);
    let flood = app.send_json(&format!("flood {FLOOD}"));
    let stats = &flood["stats"];
    assert_eq!(flood["flushed"], true, "{flood}");
    assert_eq!(
        n(stats, "submitted"),
        FLOOD,
        "every finding counted: {flood}"
    );
    assert!(
        n(stats, "dropped") > 0,
        "two tasks making findings outpace a thread writing a line per finding: {flood}"
    );
    assert_counts_add_up(stats, true);
    assert_eq!(n(stats, "unwritten"), 0, "{flood}");
    // Memory stays bounded: the queue (4,096) and the recent list (1,000)
    // hold a few MB, where keeping the flood would take over 100 MB.
    assert_eq!(n(&flood, "recent"), 1_000, "{flood}");
    let grew_kb = n(&flood, "rss_max_kb").saturating_sub(n(&flood, "rss_before_kb"));
    assert!(grew_kb < 64 * 1024, "VmRSS grew by {grew_kb} KiB: {flood}");

    let (status, exit, took) = app.quit();
    assert!(status.success(), "{}", app.stderr_tail());
    assert_counts_add_up(&exit, true);
    assert_eq!(n(&exit, "submitted"), FLOOD, "{exit}");

    // The report file: every accepted finding, and the drops with their count.
    let lines = report_lines(&std::fs::read_to_string(&report).unwrap());
    let notices = of_kind(&lines, "findings_dropped");
    assert_eq!(
        of_kind(&lines, "never_awaited").len() as u64,
        n(&exit, "written")
    );
    assert_eq!(notices.len() as u64, n(&exit, "drop_notices_written"));
    assert_eq!(
        lines.len() as u64,
        n(&exit, "written") + n(&exit, "drop_notices_written")
    );
    let noticed: u64 = notices.iter().map(|l| n(l, "count")).sum();
    assert_eq!(noticed, n(&exit, "dropped"));
    assert!(notices.iter().all(|l| l["task"].is_null() && l["v"] == 1));

    // The log: a WARN line per accepted finding, and the drops.
    assert_eq!(
        app.warnings("was never awaited").len() as u64,
        n(&exit, "processed")
    );
    assert_eq!(dropped_in_log(&app), n(&exit, "dropped"));

    let secs = ms(&flood, "elapsed_ms") / 1e3;
    eprintln!(
        "flood: {FLOOD} findings in {secs:.2} s ({:.0}/s produced); written {} ({:.0}/s), dropped {} in {} notices; \
         VmRSS {} -> {} KiB; exit {took:?} after quit",
        FLOOD as f64 / secs,
        n(stats, "written"),
        n(stats, "written") as f64 / (ms(&flood, "flushed_ms") / 1e3),
        n(stats, "dropped"),
        n(stats, "drop_notices"),
        n(&flood, "rss_before_kb"),
        n(&flood, "rss_max_kb"),
    );
}

/// A final `slow_poll` line about a `blocker` task of the `slow` command.
fn is_blocker_final(line: &Value) -> bool {
    line["kind"] == "slow_poll" && line["in_progress"] == false && line["task"]["name"] == "blocker"
}

/// The warnings about the report file at `path`.
fn report_warnings(app: &App, path: &Path) -> Vec<String> {
    app.warnings(&format!("report file {}:", path.display()))
}

/// One final slow poll per `slow` command: logged, and in `findings()`.
fn slow_poll_logged(app: &mut App, expect_total: usize) {
    let held: usize = app.send("slow 60").parse().unwrap();
    assert_eq!(
        held, expect_total,
        "taskscope::findings() has every slow poll"
    );
    let spawn = location_prefix("src/bin/sink_app.rs", "SPAWN-SINK-SLOW");
    let logged: Vec<String> = app
        .warnings("took")
        .into_iter()
        .filter(|w| w.contains("Executing task") && w.contains(&spawn))
        .collect();
    assert_eq!(logged.len(), expect_total, "{}", app.stderr_tail());
}

/// An unwritable report file: one warning naming it and `cause`; the app, the
/// log and `findings()` go on; every finding counted as unwritten.
fn unwritable(path: &Path, cause: &str) {
    let mut app = App::start(&[
        ("TASKSCOPE_REPORT", path.to_str().unwrap()),
        ("TASKSCOPE_SLOW_POLL_MS", "20"),
    ]);
    slow_poll_logged(&mut app, 1);
    app.send("request");
    // After a retry (at most once a second) and many more findings: still one warning.
    std::thread::sleep(Duration::from_millis(1_100));
    slow_poll_logged(&mut app, 2);
    app.send_json("flood 2000");
    app.send("request");
    let stats = app.send_json("stats");
    assert_eq!(stats["flushed"], true);
    assert_eq!(n(&stats, "written"), 0, "{stats}");
    assert_counts_add_up(&stats, true);
    assert!(n(&stats, "unwritten") >= 2, "{stats}");

    let warnings = report_warnings(&app, path);
    assert_eq!(
        warnings.len(),
        1,
        "exactly one warning about {}:\n{}",
        path.display(),
        app.stderr_tail()
    );
    assert!(
        warnings[0].contains(cause),
        "the cause ({cause}): {}",
        warnings[0]
    );
    assert!(warnings[0].contains("findings still go to the log"));
    let (status, exit, _) = app.quit();
    assert!(status.success(), "{}", app.stderr_tail());
    assert_counts_add_up(&exit, true);
    assert_eq!(report_warnings(&app, path).len(), 1);
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_one_warning_and_the_app_and_the_log_go_on() {
    unwritable(Path::new("/dev/full"), "No space left on device");
}

#[test]
fn a_report_path_that_is_a_directory_or_under_a_file_is_one_warning() {
    let dir = temp_dir("sink-isdir");
    unwritable(&dir, "Is a directory");
    let file = dir.join("plain-file");
    std::fs::write(&file, b"").unwrap();
    unwritable(&file.join("report.jsonl"), "Not a directory");
}

#[cfg(unix)]
#[test]
fn a_read_only_report_file_is_one_warning() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // root writes to a 0444 file: the path cases above and /dev/full stand in.
        eprintln!("running as root: a read-only file does not stop writes; skipped");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("sink-readonly");
    let file = dir.join("report.jsonl");
    std::fs::write(&file, b"").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    unwritable(&file, "Permission denied");
}

#[test]
fn writing_resumes_when_the_directory_appears() {
    let dir = temp_dir("sink-resume");
    let sub = dir.join("sub");
    let report = sub.join("report.jsonl");
    let mut app = App::start(&[
        ("TASKSCOPE_REPORT", report.to_str().unwrap()),
        ("TASKSCOPE_SLOW_POLL_MS", "20"),
    ]);
    slow_poll_logged(&mut app, 1);
    let warnings = report_warnings(&app, &report);
    assert_eq!(warnings.len(), 1, "{}", app.stderr_tail());
    assert!(
        warnings[0].contains("cannot open it") && warnings[0].contains("No such file or directory"),
        "{}",
        warnings[0]
    );
    assert!(!report.exists());

    std::fs::create_dir(&sub).unwrap();
    // The file is tried again at most once a second: findings until one is in it.
    let deadline = Instant::now() + WAIT;
    let mut slow_polls = 1;
    let written = loop {
        slow_polls += 1;
        slow_poll_logged(&mut app, slow_polls);
        let lines = report_lines(&std::fs::read_to_string(&report).unwrap_or_default());
        let written: Vec<Value> = lines.into_iter().filter(is_blocker_final).collect();
        if !written.is_empty() {
            break written;
        }
        assert!(Instant::now() < deadline, "nothing written after {WAIT:?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        written.len() < slow_polls,
        "the first slow poll could not be written"
    );
    let again = app.warnings("writing again");
    assert_eq!(again.len(), 1, "{}", app.stderr_tail());
    assert!(again[0].contains(&report.display().to_string()));
    assert_eq!(
        report_warnings(&app, &report).len(),
        2,
        "{}",
        app.stderr_tail()
    );

    // From now on every finding reaches the file.
    slow_poll_logged(&mut app, slow_polls + 1);
    let stats = app.send_json("stats");
    assert_counts_add_up(&stats, true);
    assert!(n(&stats, "unwritten") >= 1, "{stats}");
    let (status, exit, _) = app.quit();
    assert!(status.success());
    let lines = report_lines(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(
        lines.len() as u64,
        n(&exit, "written") + n(&exit, "drop_notices_written")
    );
    assert_eq!(
        lines.iter().filter(|l| is_blocker_final(l)).count(),
        written.len() + 1
    );
}

/// Makes a FIFO at `path`.
#[cfg(unix)]
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[cfg(unix)]
#[test]
fn a_fifo_nobody_reads_never_blocks_the_app() {
    let dir = temp_dir("sink-fifo-noreader");
    let fifo = dir.join("report.fifo");
    mkfifo(&fifo);
    let mut app = App::start(&[
        ("TASKSCOPE_REPORT", fifo.to_str().unwrap()),
        ("TASKSCOPE_SLOW_POLL_MS", "20"),
    ]);
    slow_poll_logged(&mut app, 1);
    app.send("request");
    let warnings = report_warnings(&app, &fifo);
    assert_eq!(warnings.len(), 1, "{}", app.stderr_tail());
    assert!(warnings[0].contains("cannot open it"), "{}", warnings[0]);
    let (status, exit, _) = app.quit();
    assert!(status.success());
    assert_counts_add_up(&exit, true);
}

/// Reads a FIFO as a slow disk would take writes: nothing until `resume`,
/// then small reads with pauses, until the writer closes it.
#[cfg(unix)]
struct SlowReader {
    resume: Arc<AtomicBool>,
    read: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Vec<u8>>>,
}

#[cfg(unix)]
impl SlowReader {
    fn open(path: &Path) -> SlowReader {
        use std::os::fd::FromRawFd;
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // Open the read end without waiting for a writer, then make reads block.
        // SAFETY: valid path; the descriptor is owned by the File below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
        assert!(fd >= 0, "open the FIFO for reading");
        // SAFETY: `fd` is a valid descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
        // SAFETY: `fd` is open and owned by nobody else.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        let resume = Arc::new(AtomicBool::new(false));
        let read = Arc::new(AtomicU64::new(0));
        let thread = {
            let (resume, read) = (Arc::clone(&resume), Arc::clone(&read));
            std::thread::spawn(move || {
                while !resume.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let mut all = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match file.read(&mut buf) {
                        // No writer (yet, or any more): the app has exited.
                        Ok(0) => break,
                        Ok(n) => {
                            all.extend_from_slice(&buf[..n]);
                            read.fetch_add(n as u64, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => panic!("read the FIFO: {e}"),
                    }
                }
                all
            })
        };
        SlowReader {
            resume,
            read,
            thread: Some(thread),
        }
    }

    fn resume(&self) {
        self.resume.store(true, Ordering::SeqCst);
    }

    fn finish(mut self) -> Vec<u8> {
        self.resume();
        self.thread.take().unwrap().join().unwrap()
    }
}

/// A viewer attached over a Unix socket, on a runtime of its own; keeps the
/// largest dropped-findings count and the `findings_dropped` findings it saw.
struct Viewer {
    runtime: tokio::runtime::Runtime,
    connected: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    notices: Arc<AtomicU64>,
    ended: Arc<AtomicBool>,
}

impl Viewer {
    fn attach(addr: &str) -> Viewer {
        use taskscope_viewer::state::model::{Connection, Update};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addr = taskscope::ServerAddr::parse(addr).unwrap();
        let connected = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let notices = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicBool::new(false));
        let (tx, mut updates) = tokio::sync::mpsc::channel(64);
        let (_requests, requests_rx) = tokio::sync::mpsc::channel(1);
        runtime.spawn(async move {
            let _requests = _requests;
            taskscope_viewer::client::watch(addr, tx, requests_rx).await;
        });
        let (c, d, no, e) = (
            Arc::clone(&connected),
            Arc::clone(&dropped),
            Arc::clone(&notices),
            Arc::clone(&ended),
        );
        runtime.spawn(async move {
            while let Some(update) = updates.recv().await {
                let (count, findings) = match &update {
                    Update::Connection(Connection::Connected { .. }) => {
                        c.store(true, Ordering::SeqCst);
                        continue;
                    }
                    Update::Connection(Connection::Disconnected { .. }) => {
                        if c.load(Ordering::SeqCst) {
                            e.store(true, Ordering::SeqCst);
                        }
                        continue;
                    }
                    Update::Snapshot {
                        dropped, findings, ..
                    }
                    | Update::Delta {
                        dropped, findings, ..
                    } => (dropped.findings, findings),
                    _ => continue,
                };
                d.fetch_max(count, Ordering::SeqCst);
                let seen = findings
                    .iter()
                    .filter(|f| f.kind.name() == "findings_dropped")
                    .count();
                no.fetch_add(seen as u64, Ordering::SeqCst);
            }
        });
        Viewer {
            runtime,
            connected,
            dropped,
            notices,
            ended,
        }
    }

    fn wait_until(&self, what: &str, done: impl Fn(&Viewer) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            assert!(Instant::now() < deadline, "the viewer never saw {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A flood with the report file held up (a FIFO nobody reads for now) and a
/// viewer attached: the app's findings are dropped, the viewer shows the count.
#[cfg(unix)]
fn flood_held_up(test: &str) -> (App, SlowReader, Viewer, PathBuf) {
    let dir = temp_dir(test);
    let fifo = dir.join("report.fifo");
    mkfifo(&fifo);
    let reader = SlowReader::open(&fifo);
    let sock = format!("unix:{}", dir.join("app.sock").display());
    let mut app = App::start(&[
        ("TASKSCOPE_REPORT", fifo.to_str().unwrap()),
        ("TASKSCOPE_ADDR", &sock),
        ("TASKSCOPE_SLOW_POLL_MS", "60000"),
    ]);
    let viewer = Viewer::attach(&sock);
    viewer.wait_until("the app (connected)", |v| {
        v.connected.load(Ordering::SeqCst)
    });
    app.send("burst 100000");
    // The writer is stuck on the FIFO: at most the queue and the pipe's buffer
    // were taken; the rest was dropped, and the viewer is told.
    viewer.wait_until("dropped findings", |v| v.dropped.load(Ordering::SeqCst) > 0);
    assert_eq!(reader.read.load(Ordering::SeqCst), 0);
    (app, reader, viewer, fifo)
}

#[cfg(unix)]
#[test]
fn shutdown_with_a_busy_report_writer_and_a_viewer_attached_loses_no_accepted_finding() {
    let (mut app, reader, viewer, _fifo) = flood_held_up("sink-shutdown-slow");
    // The disk comes back, slowly, as the app shuts down.
    reader.resume();
    let (status, exit, took) = app.quit();
    let bytes = reader.finish();
    assert!(status.success(), "{}", app.stderr_tail());
    assert!(
        !app.stderr().contains("had not reached the report file"),
        "the flush had time: {}",
        app.stderr_tail()
    );
    assert_counts_add_up(&exit, true);
    assert!(n(&exit, "dropped") > 0, "{exit}");
    assert_eq!(n(&exit, "written"), n(&exit, "accepted"), "{exit}");
    let lines = report_lines(std::str::from_utf8(&bytes).unwrap());
    assert_eq!(
        lines.len() as u64,
        n(&exit, "written") + n(&exit, "drop_notices_written")
    );
    let noticed: u64 = of_kind(&lines, "findings_dropped")
        .iter()
        .map(|l| n(l, "count"))
        .sum();
    assert_eq!(noticed, n(&exit, "dropped"));
    // (The viewer was shown the drops before `quit`: `flood_held_up`. Its count
    // may also hold findings it missed itself, so it is no exact match here.)
    viewer.wait_until("the app go away", |v| v.ended.load(Ordering::SeqCst));
    eprintln!(
        "shutdown with a slow writer: exit {took:?} after quit; accepted {}, written {}, dropped {}; \
         the viewer saw {} dropped and {} notices",
        n(&exit, "accepted"),
        n(&exit, "written"),
        n(&exit, "dropped"),
        viewer.dropped.load(Ordering::SeqCst),
        viewer.notices.load(Ordering::SeqCst),
    );
    viewer.runtime.shutdown_timeout(Duration::from_secs(1));
}

#[cfg(unix)]
#[test]
fn shutdown_with_a_stuck_report_writer_is_bounded_and_says_what_it_lost() {
    let (mut app, reader, viewer, _fifo) = flood_held_up("sink-shutdown-stuck");
    // The disk never comes back while the app runs.
    let (status, exit, took) = app.quit();
    assert!(status.success(), "{}", app.stderr_tail());
    // The guard's drop is bounded by FLUSH_TIMEOUT in all (the margin: the
    // scheduling of a loaded machine, not a budget of taskscope's).
    let guard_drop = Duration::from_secs_f64(ms(&exit, "guard_drop_ms") / 1e3);
    assert!(
        guard_drop >= taskscope::FLUSH_TIMEOUT - Duration::from_millis(100),
        "the flush waited for the stuck writer until its deadline: {guard_drop:?}"
    );
    assert!(
        guard_drop <= taskscope::FLUSH_TIMEOUT + Duration::from_secs(1),
        "the guard's drop took {guard_drop:?}, more than FLUSH_TIMEOUT ({:?}) and a margin",
        taskscope::FLUSH_TIMEOUT
    );
    assert!(
        app.stderr().contains("had not reached the report file"),
        "{}",
        app.stderr_tail()
    );
    // Accepted, but still queued when the bounded flush gave up.
    assert!(n(&exit, "queued") > 0, "{exit}");
    assert_eq!(
        n(&exit, "accepted"),
        n(&exit, "processed") + n(&exit, "queued")
    );
    assert_eq!(
        n(&exit, "submitted"),
        n(&exit, "accepted") + n(&exit, "dropped")
    );
    let bytes = reader.finish();
    // What the reader got is whole lines, a possibly cut last one aside.
    let text = String::from_utf8_lossy(&bytes);
    let whole = text.rsplit_once('\n').map_or("", |(head, _)| head);
    report_lines(whole);
    viewer.wait_until("the app go away", |v| v.ended.load(Ordering::SeqCst));
    eprintln!("shutdown with a stuck writer: exit {took:?} after quit; {exit}");
    viewer.runtime.shutdown_timeout(Duration::from_secs(1));
}

/// The last 20,000 bytes of `text` (at a character boundary): enough to see why.
fn stderr_tail(text: &str) -> String {
    let start = text.len().saturating_sub(20_000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[start..].to_string()
}
