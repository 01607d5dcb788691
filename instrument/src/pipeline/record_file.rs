//! The recording sink (`TASKSCOPE_RECORD`): on a thread of its own, it
//! appends what a viewer receives — the publisher's snapshots and deltas,
//! findings included, the very bytes encoded for the viewers — to segment
//! files in the format of [`taskscope_api::recording`], and keeps them under
//! a bound.
//!
//! # Files and the bound
//!
//! `PATH` is the segment being written; older ones are `PATH.000001`,
//! `PATH.000002`, … (the higher, the newer). A segment is started when the
//! app starts, when the current one is full, and after the file could not be
//! written; each starts with a full snapshot (the publisher makes it: see
//! `server::recorder`). Starting one renames `PATH` to the next number, then
//! deletes the oldest segments until the older ones take at most
//! `max − max/`[`SEGMENTS`] bytes (and number at most [`MAX_OLD_SEGMENTS`]).
//! The publisher starts a new segment before one would pass `max/SEGMENTS`,
//! so all the files together take at most `max` bytes
//! (`TASKSCOPE_RECORD_MAX_MB`) — plus, for an app whose full snapshot is
//! bigger than a sixteenth of `max`, one segment's slack: a segment may then
//! grow to twice its snapshot before the next one starts.
//!
//! Only files that start with the recording's magic bytes are renamed,
//! counted or deleted: a `PATH` that exists and is something else (a report,
//! a FIFO, a directory) is left alone, and nothing is recorded (one warning).
//! A second process recording to the same `PATH` is refused through an
//! advisory lock on `PATH.lock` (Unix). Files are created owner-only (mode
//! 0600 on Unix): they hold what the viewer server shows.
//!
//! # Failures
//!
//! Like the report file: one warning naming the file and the cause, the
//! publishes meanwhile counted as unwritten, a new try at most once a second
//! (as a new segment, so a record cut short by the failure is never followed
//! by more records in the same file), and a second warning when writing
//! resumes. Publishes dropped because the queue was full are reported at most
//! every [`DROP_NOTICE_EVERY`].

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use taskscope_api::proto::RecordHead;
use taskscope_api::recording::{self, MAGIC};

use super::record_queue::{RecordControl, RecordItem, Recording, Shared};
use crate::sync::lock;

/// The bound is shared by this many segments: a segment is started when the
/// current one would pass `max / SEGMENTS`.
pub(crate) const SEGMENTS: u64 = 8;

/// Older segments kept at most, whatever their size (an app restarted in a
/// loop makes one small segment each run).
pub(crate) const MAX_OLD_SEGMENTS: usize = 64;

/// How often a file that could not be written is tried again, at most.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(1);

/// While publishes are being dropped, how often stderr says so, at most.
pub(crate) const DROP_NOTICE_EVERY: Duration = Duration::from_secs(10);

/// The recording to `path` under a bound of `max_bytes`: the publisher's
/// side, the writer (which the caller runs on a thread of its own:
/// [`RecordWriter::run`]) and the guard's control. Nothing is opened here.
pub(crate) fn channel(path: PathBuf, max_bytes: u64) -> (Recording, RecordWriter, RecordControl) {
    let shared = Arc::new(Shared::new());
    let max_bytes = max_bytes.max(SEGMENTS);
    let segment_limit = max_bytes / SEGMENTS;
    let writer = RecordWriter {
        shared: Arc::clone(&shared),
        path,
        max_bytes,
        segment_limit,
        file: None,
        lock: None,
        failing: false,
        retry_at: None,
        drops_noticed: 0,
        last_notice: None,
    };
    (
        Recording::new(Arc::clone(&shared), segment_limit),
        writer,
        RecordControl::new(shared),
    )
}

/// The recording's thread: writes what the queue brings, starts and drops segments.
pub(crate) struct RecordWriter {
    shared: Arc<Shared>,
    path: PathBuf,
    max_bytes: u64,
    segment_limit: u64,
    file: Option<BufWriter<File>>,
    /// Held while recording: `PATH.lock`, locked.
    lock: Option<File>,
    /// The failure warned about, while the file stays unwritable.
    failing: bool,
    /// When a new segment may be asked for, after a failure.
    retry_at: Option<Instant>,
    drops_noticed: u64,
    last_notice: Option<Instant>,
}

impl RecordWriter {
    /// The thread's loop, until the publisher's side is gone.
    pub(crate) fn run(mut self) {
        if let Err(why) = self.prepare() {
            eprintln!(
                "taskscope: TASKSCOPE_RECORD={}: {why}; nothing is recorded",
                self.path.display()
            );
            self.shared.give_up();
            return;
        }
        while let Some(item) = self.next_item() {
            self.write_item(item);
        }
        if let Some(file) = self.file.as_mut() {
            let _ = file.flush();
        }
    }

    /// The next item, waiting for one; `None` once the publisher's side is
    /// gone and the queue is empty.
    fn next_item(&mut self) -> Option<RecordItem> {
        let mut queue = lock(&self.shared.queue);
        loop {
            if let Some(item) = queue.items.pop_front() {
                queue.bytes -= item.bytes();
                return Some(item);
            }
            if queue.closed {
                return None;
            }
            queue = self
                .shared
                .ready
                .wait_timeout(queue, Duration::from_secs(1))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Takes the lock (unless its directory is missing: then the first
    /// segment tries again) and checks that `PATH` is a recording or nothing.
    fn prepare(&mut self) -> Result<(), String> {
        match take_lock(&self.path) {
            Ok(lock) => self.lock = lock,
            Err(Lock::Busy(why)) => return Err(why),
            Err(Lock::Failed(_)) => {}
        }
        match std::fs::metadata(&self.path) {
            Err(_) => Ok(()),
            Ok(meta) if !meta.is_file() => {
                Err("it exists and is not a regular file; it is left as it is".into())
            }
            Ok(_) if !is_recording(&self.path) => {
                Err("the file exists and is not a taskscope recording; it is left as it is".into())
            }
            Ok(_) => Ok(()),
        }
    }

    fn write_item(&mut self, item: RecordItem) {
        self.notice_drops();
        if let Some(start) = &item.new_segment {
            match self.start_segment(start) {
                Ok(()) => {
                    if self.failing {
                        self.failing = false;
                        eprintln!(
                            "taskscope: recording {}: writing again, in a new segment",
                            self.path.display()
                        );
                    }
                }
                Err(err) => self.fail(&format!("cannot start a segment: {err}")),
            }
        }
        let written = match self.file.as_mut() {
            Some(file) => write_records(file, &item),
            None => Err(None),
        };
        match written {
            Ok(bytes) => {
                self.shared.written.fetch_add(1, SeqCst);
                self.shared.bytes.fetch_add(bytes, SeqCst);
            }
            Err(err) => {
                self.shared.unwritten.fetch_add(1, SeqCst);
                if let Some(err) = err {
                    self.fail(&format!("cannot write to it: {err}"));
                }
                // The next segment starts with a snapshot: ask for it when due.
                if self.retry_at.is_none_or(|at| Instant::now() >= at) {
                    self.retry_at = Some(Instant::now() + RETRY_EVERY);
                    self.shared.want_segment.store(true, SeqCst);
                }
            }
        }
        if item.last {
            lock(&self.shared.queue).finished = true;
            self.shared.done.notify_all();
        }
    }

    fn fail(&mut self, why: &str) {
        // A record may be cut short in this file: never append to it again.
        self.file = None;
        if !self.failing {
            self.failing = true;
            eprintln!(
                "taskscope: recording {}: {why}; the viewer and the report go on, and recording \
                 resumes (in a new segment) when the file can be written",
                self.path.display()
            );
        }
    }

    /// Says on stderr how many publishes the full queue dropped since the last notice.
    fn notice_drops(&mut self) {
        let dropped = self.shared.dropped.load(SeqCst);
        if dropped > self.drops_noticed
            && self
                .last_notice
                .is_none_or(|t| t.elapsed() >= DROP_NOTICE_EVERY)
        {
            eprintln!(
                "taskscope: recording {}: {} updates were not recorded (the disk did not keep up); \
                 the recording goes on from a full snapshot",
                self.path.display(),
                dropped - self.drops_noticed
            );
            self.drops_noticed = dropped;
            self.last_notice = Some(Instant::now());
        }
    }

    /// Closes the current segment (renamed to the next number), drops the
    /// oldest ones down to the bound, and starts `PATH` with `start`.
    fn start_segment(&mut self, start: &[u8]) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        if self.lock.is_none() {
            match take_lock(&self.path) {
                Ok(lock) => self.lock = lock,
                Err(Lock::Failed(why)) => return Err(io::Error::other(why)),
                Err(Lock::Busy(why)) => {
                    eprintln!(
                        "taskscope: TASKSCOPE_RECORD={}: {why}; nothing more is recorded",
                        self.path.display()
                    );
                    self.shared.give_up();
                    return Err(io::Error::other(why));
                }
            }
        }
        let mut old = old_segments(&self.path)?;
        if std::fs::metadata(&self.path).is_ok_and(|m| m.is_file()) && is_recording(&self.path) {
            let next = old.last().map_or(1, |s| s.number + 1);
            let renamed = numbered(&self.path, next);
            std::fs::rename(&self.path, &renamed)?;
            let size = std::fs::metadata(&renamed).map_or(0, |m| m.len());
            old.push(Segment {
                number: next,
                path: renamed,
                size,
            });
        }
        let keep = self.max_bytes - self.segment_limit;
        let mut total: u64 = old.iter().map(|s| s.size).sum();
        let mut count = old.len();
        for segment in &old {
            if total <= keep && count <= MAX_OLD_SEGMENTS {
                break;
            }
            std::fs::remove_file(&segment.path)?;
            total -= segment.size;
            count -= 1;
            self.shared.segments_dropped.fetch_add(1, SeqCst);
        }
        let mut file = BufWriter::with_capacity(64 * 1024, create(&self.path)?);
        file.write_all(start)?;
        file.flush()?;
        self.file = Some(file);
        self.shared.segments.fetch_add(1, SeqCst);
        self.shared.bytes.fetch_add(start.len() as u64, SeqCst);
        Ok(())
    }
}

/// Writes the records of `item`; returns the bytes written. `Err(None)`:
/// nothing to write to.
fn write_records(file: &mut BufWriter<File>, item: &RecordItem) -> Result<u64, Option<io::Error>> {
    let mut bytes = 0u64;
    for (snapshot, chunks) in &item.updates {
        let head = RecordHead {
            seq: item.seq,
            at_unix_ns: item.at_unix_ns,
            snapshot: *snapshot,
        };
        for chunk in chunks.iter() {
            let frame = recording::record_frame(&head, chunk);
            file.write_all(&frame.prefix).map_err(Some)?;
            file.write_all(chunk).map_err(Some)?;
            file.write_all(&frame.crc).map_err(Some)?;
            bytes += (frame.prefix.len() + chunk.len() + frame.crc.len()) as u64;
        }
    }
    file.flush().map_err(Some)?;
    Ok(bytes)
}

/// An older segment.
#[derive(Debug)]
struct Segment {
    number: u64,
    path: PathBuf,
    size: u64,
}

/// `PATH.000017`.
fn numbered(path: &Path, number: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{number:06}"));
    PathBuf::from(name)
}

/// The older segments of the recording at `path` (files `PATH.N` that are
/// recordings), oldest first.
fn old_segments(path: &Path) -> io::Result<Vec<Segment>> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{base}.");
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() && is_recording(&path) {
            segments.push(Segment {
                number,
                path,
                size: meta.len(),
            });
        }
    }
    segments.sort_by_key(|s| s.number);
    Ok(segments)
}

/// Whether the regular file at `path` is a recording: it starts with the
/// magic bytes (or with part of them: a segment cut short at its start, or
/// an empty file).
fn is_recording(path: &Path) -> bool {
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let mut start = [0u8; MAGIC.len()];
    let mut got = 0;
    while got < start.len() {
        match file.read(&mut start[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    start[..got] == MAGIC[..got]
}

/// Creates (or empties) a segment file, owner-only.
fn create(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Why the lock was not taken.
enum Lock {
    /// Another process holds it.
    Busy(String),
    /// It could not be tried (its directory is missing, say).
    Failed(String),
}

/// Locks `PATH.lock` (advisory, non-blocking): one process records to a path.
#[cfg(unix)]
fn take_lock(path: &Path) -> Result<Option<File>, Lock> {
    use std::os::fd::AsRawFd;
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| {
                Lock::Failed(format!(
                    "cannot open its lock file {}: {e}",
                    lock_path.display()
                ))
            })?
    };
    // SAFETY: a valid descriptor owned by `file`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            return Err(Lock::Busy(format!(
                "another process records to it (it holds {})",
                lock_path.display()
            )));
        }
        return Err(Lock::Failed(format!(
            "cannot lock {}: {err}",
            lock_path.display()
        )));
    }
    Ok(Some(file))
}

#[cfg(not(unix))]
fn take_lock(_path: &Path) -> Result<Option<File>, Lock> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use taskscope_api::proto::{self, RecordingHeader};
    use taskscope_api::recording::SegmentReader;

    fn dir(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("taskscope-record-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn start(segment: u64) -> Vec<u8> {
        recording::segment_start(&RecordingHeader {
            format_version: recording::FORMAT_VERSION,
            protocol_version: proto::PROTOCOL_VERSION,
            app: Some(proto::AppInfo {
                name: "test".into(),
                ..Default::default()
            }),
            segment,
            ..Default::default()
        })
    }

    fn item(seq: u64, new_segment: Option<Vec<u8>>, size: usize) -> RecordItem {
        let update = proto::Update {
            kind: Some(proto::update::Kind::Delta(proto::Delta {
                last: true,
                at_unix_ns: seq,
                findings: vec!["f".repeat(size)],
                ..Default::default()
            })),
        };
        RecordItem {
            seq,
            at_unix_ns: seq,
            new_segment,
            updates: vec![(
                false,
                Arc::new(vec![Bytes::from(prost::Message::encode_to_vec(&update))]),
            )],
            last: false,
        }
    }

    fn segments_of(path: &Path) -> Vec<(PathBuf, Vec<u64>)> {
        let mut files: Vec<PathBuf> = old_segments(path)
            .unwrap()
            .into_iter()
            .map(|s| s.path)
            .collect();
        files.push(path.to_owned());
        files
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                let (_, mut reader) = SegmentReader::open(&bytes[..]).unwrap();
                let mut seqs = Vec::new();
                while let Some(frame) = reader.next_frame().unwrap() {
                    seqs.push(frame.head().unwrap().seq);
                }
                (p, seqs)
            })
            .collect()
    }

    #[test]
    fn segments_rotate_and_the_oldest_are_dropped_within_the_bound() {
        let dir = dir("rotate");
        let path = dir.join("rec");
        let max = 80_000u64;
        let (recording, mut writer, _control) = channel(path.clone(), max);
        assert_eq!(recording.segment_limit, 10_000);
        writer.prepare().unwrap();
        // 1 KiB updates, a new segment every 9 (as the publisher would ask).
        for seq in 0..200u64 {
            let new = (seq % 9 == 0).then(|| start(seq / 9));
            writer.write_item(item(seq, new, 1_000));
            let total: u64 = old_segments(&path)
                .unwrap()
                .iter()
                .map(|s| s.size)
                .sum::<u64>()
                + std::fs::metadata(&path).unwrap().len();
            assert!(total <= max, "{total} bytes after seq {seq}");
        }
        let segments = segments_of(&path);
        // The oldest went; the newest are whole, in order, numbered upwards.
        let seqs: Vec<u64> = segments.iter().flat_map(|(_, s)| s.clone()).collect();
        assert_eq!(*seqs.last().unwrap(), 199);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        assert_eq!(
            seqs[0] % 9,
            0,
            "each segment starts where one was asked for"
        );
        assert!(
            seqs.len() >= 60,
            "about max - one segment kept: {}",
            seqs.len()
        );
        let stats = writer.shared.stats();
        assert_eq!(stats.written, 200);
        assert_eq!(stats.segments, 23);
        assert!(stats.segments_dropped > 10, "{stats:?}");
        assert_eq!(
            segments.first().unwrap().0,
            numbered(&path, 22 - segments.len() as u64 + 2)
        );
    }

    #[test]
    fn a_file_that_is_not_a_recording_is_left_alone() {
        let dir = dir("foreign");
        let path = dir.join("important.jsonl");
        std::fs::write(&path, b"{\"v\":1}\n").unwrap();
        let (recording, writer, _control) = channel(path.clone(), 1 << 20);
        writer.run();
        assert!(!recording.alive());
        assert!(!recording.offer(item(0, Some(start(0)), 10)));
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"v\":1}\n");
        assert!(old_segments(&path).unwrap().is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_second_process_on_the_same_path_is_refused() {
        let dir = dir("lock");
        let path = dir.join("rec");
        let (_r1, mut first, _c1) = channel(path.clone(), 1 << 20);
        first.prepare().unwrap();
        let (_r2, mut second, _c2) = channel(path.clone(), 1 << 20);
        let err = second.prepare().unwrap_err();
        assert!(err.starts_with("another process records to it"), "{err}");
        // Also when the first lock is taken only at the first segment.
        let (recording, mut third, _c3) = channel(path.clone(), 1 << 20);
        third.lock = None;
        third.write_item(item(0, Some(start(0)), 10));
        assert!(!recording.alive(), "gave up");
        assert!(!path.exists(), "wrote nothing");
        drop(first);
        second.prepare().unwrap();
    }

    #[test]
    fn a_failed_write_asks_for_a_new_segment_and_resumes_there() {
        let dir = dir("fail");
        let path = dir.join("sub").join("rec");
        let (recording, mut writer, _control) = channel(path.clone(), 1 << 20);
        writer.prepare().unwrap();
        // The directory is missing: the segment cannot start.
        writer.write_item(item(0, Some(start(0)), 10));
        assert!(writer.failing);
        assert!(
            recording.take_segment_request(),
            "a new segment is asked for"
        );
        writer.write_item(item(1, None, 10));
        assert!(!recording.take_segment_request(), "at most once a second");
        std::fs::create_dir(dir.join("sub")).unwrap();
        writer.write_item(item(2, Some(start(1)), 10));
        writer.write_item(item(3, None, 10));
        assert!(!writer.failing);
        let stats = recording.stats();
        assert_eq!((stats.written, stats.unwritten), (2, 2));
        assert_eq!(segments_of(&path), [(path.clone(), vec![2, 3])]);
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_finish_waits_for_the_last_item() {
        let dir = dir("queue");
        let path = dir.join("rec");
        let (recording, writer, control) = channel(path.clone(), 1 << 20);
        for seq in 0..super::super::record_queue::QUEUE_UPDATES as u64 + 3 {
            let new = (seq == 0).then(|| start(0));
            recording.offer(item(seq, new, 10));
        }
        assert_eq!(recording.stats().dropped, 3);
        let thread = std::thread::spawn(move || writer.run());
        // The writer drains the full queue first: the last item then has room.
        let deadline = Instant::now() + Duration::from_secs(20);
        while control.stats().written < super::super::record_queue::QUEUE_UPDATES as u64 {
            assert!(Instant::now() < deadline, "the writer drains the queue");
            std::thread::sleep(Duration::from_millis(5));
        }
        let publisher = std::thread::spawn(move || {
            while !recording.finish_wanted() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut last = item(99, None, 10);
            last.last = true;
            assert!(recording.offer(last));
            recording
        });
        assert!(control.finish(Instant::now() + Duration::from_secs(20)));
        // The last item is on disk once finish returns.
        let seqs = &segments_of(&path)[0].1;
        assert_eq!(seqs.last(), Some(&99));
        drop(publisher.join().unwrap());
        thread.join().unwrap();
        // Counted by the writer after it wrote: read once it is done.
        let stats = control.stats();
        assert_eq!(
            stats.written,
            super::super::record_queue::QUEUE_UPDATES as u64 + 1
        );
    }
}
