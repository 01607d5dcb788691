//! Reading a recording: its segment files, each checked and indexed (every
//! record's head: number, time, snapshot or delta; the updates themselves
//! are read when the cursor gets to them).
//!
//! What cannot be read is said, naming the file and what is wrong, and the
//! rest is shown: a segment that is not a recording, of another version or
//! protocol, is skipped; a segment cut short or corrupt in the middle keeps
//! the records before the damage. Only a recording with no update at all is
//! an error.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use taskscope_api::proto::{self, PROTOCOL_VERSION, RecordingHeader};
use taskscope_api::recording::{FormatError, Frame, SegmentReader, UpdateMetrics, read_frame};

/// How far loading has got, for a progress bar: bytes of all the segment
/// files read so far, out of their total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes read so far.
    pub read: u64,
    /// Bytes of all the recording's files.
    pub total: u64,
    /// The file being read.
    pub file: PathBuf,
}

/// A recording that cannot be replayed at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The files could not be listed or opened.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing in the files could be read; says why for each file.
    #[error("{path}: no update can be read from it:\n  {}", problems.join("\n  "))]
    Unreadable {
        /// The recording as given.
        path: PathBuf,
        /// What is wrong with each of its files.
        problems: Vec<String>,
    },
}

/// One segment file of a recording.
#[derive(Debug)]
pub struct Segment {
    /// Its path.
    pub path: PathBuf,
    /// Its header.
    pub header: RecordingHeader,
    /// Open for reading the updates (kept open: the app may rename or
    /// delete the file while it records on).
    file: File,
    /// The run of the app it belongs to (index into [`Recording::runs`]).
    pub run: usize,
}

/// One update of the recording: where its records are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateRef {
    /// The update's time, in nanoseconds since the Unix epoch.
    pub at_unix_ns: u64,
    /// The recording's time at this update: the latest `at_unix_ns` so far
    /// (a clock that went back does not make the timeline go back).
    pub time: u64,
    /// The publish that made it (shared by a snapshot and the delta of the same publish).
    pub seq: u64,
    /// A snapshot (else a delta).
    pub snapshot: bool,
    /// Updates of this run are missing just before it (the app dropped them),
    /// or it starts a run: a delta cannot follow on from what came before.
    pub gap_before: bool,
    /// Its segment (index into [`Recording::segments`]).
    pub segment: usize,
    /// Where its first record starts in the segment file.
    pub offset: u64,
    /// How many records (chunks) it has.
    pub records: u32,
}

/// A recording, indexed, ready to replay.
#[derive(Debug)]
pub struct Recording {
    /// The recording as given (the current segment's path).
    pub path: PathBuf,
    /// Its readable segments, oldest first.
    pub segments: Vec<Segment>,
    /// Its updates, in order.
    pub updates: Vec<UpdateRef>,
    /// The app's runs it holds: `(pid, when the run's recording started)`.
    pub runs: Vec<(u32, u64)>,
    /// Publishes missing from the recording (dropped by the app: the disk did
    /// not keep up), counted from the numbers skipped.
    pub missing: u64,
    /// What could not be read, each naming its file.
    pub problems: Vec<String>,
}

/// The files of the recording at `path`: `PATH.N` (oldest first) and `PATH`
/// itself (the newest), those that exist.
pub fn segment_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{base}.");
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut numbered = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            numbered.push((number, entry.path()));
        }
    }
    numbered.sort();
    let mut files: Vec<PathBuf> = numbered.into_iter().map(|(_, p)| p).collect();
    if path.exists() || files.is_empty() {
        files.push(path.to_owned());
    }
    Ok(files)
}

/// Reads the recording at `path` (its current segment's path; the older
/// segments beside it are found by their names), calling `progress` as it
/// goes. What cannot be read is listed in [`Recording::problems`]; an error
/// only when no update at all can be read.
///
/// ```no_run
/// let recording = taskscope_viewer::replay::load(std::path::Path::new("app.rec"), &mut |_| {})?;
/// println!("{} updates, {} problems", recording.updates.len(), recording.problems.len());
/// # Ok::<(), taskscope_viewer::replay::LoadError>(())
/// ```
pub fn load(path: &Path, progress: &mut dyn FnMut(&Progress)) -> Result<Recording, LoadError> {
    let files = segment_files(path)?;
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let mut recording = Recording {
        path: path.to_owned(),
        segments: Vec::new(),
        updates: Vec::new(),
        runs: Vec::new(),
        missing: 0,
        problems: Vec::new(),
    };
    let mut done = 0u64;
    let mut last_seq: Option<(usize, u64)> = None;
    let mut time = 0u64;
    for file_path in &files {
        progress(&Progress {
            read: done,
            total,
            file: file_path.clone(),
        });
        let size = std::fs::metadata(file_path).map_or(0, |m| m.len());
        if let Err(problem) = read_segment(
            file_path,
            &mut recording,
            &mut last_seq,
            &mut time,
            &mut |read| {
                progress(&Progress {
                    read: done + read,
                    total,
                    file: file_path.clone(),
                })
            },
        ) {
            recording.problems.push(problem);
        }
        done += size;
    }
    progress(&Progress {
        read: total,
        total,
        file: path.to_owned(),
    });
    if recording.updates.is_empty() {
        let mut problems = std::mem::take(&mut recording.problems);
        if problems.is_empty() {
            problems.push(format!("{}: it holds no update", path.display()));
        }
        return Err(LoadError::Unreadable {
            path: path.to_owned(),
            problems,
        });
    }
    Ok(recording)
}

/// Reads one segment file into `recording`. `Err`: what is wrong with it
/// (its records before the damage are kept).
fn read_segment(
    path: &Path,
    recording: &mut Recording,
    last_seq: &mut Option<(usize, u64)>,
    time: &mut u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), String> {
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(|e| named(&format!("cannot open it: {e}")))?;
    let reader = BufReader::with_capacity(256 * 1024, file.try_clone().map_err(|e| named(&e))?);
    let (header, mut reader) = SegmentReader::open(reader).map_err(|e| named(&e))?;
    if header.protocol_version != PROTOCOL_VERSION {
        return Err(named(&format!(
            "it was recorded by an app speaking taskscope protocol version {}; this taskscope \
             speaks version {PROTOCOL_VERSION} (use the taskscope release of the app)",
            header.protocol_version
        )));
    }
    let pid = header.app.as_ref().map_or(0, |a| a.pid);
    let key = (pid, header.run_started_unix_ns);
    let run = match recording.runs.iter().position(|r| *r == key) {
        Some(run) => run,
        None => {
            recording.runs.push(key);
            recording.runs.len() - 1
        }
    };
    let segment = recording.segments.len();
    recording.segments.push(Segment {
        path: path.to_owned(),
        header,
        file,
        run,
    });
    let mut records = 0u64;
    let outcome = loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let head = match frame.head() {
            Ok(head) => head,
            Err(e) => break Err(e),
        };
        records += 1;
        if records.is_multiple_of(1024) {
            progress(reader.offset());
        }
        let same_update = recording.updates.last().is_some_and(|u| {
            u.segment == segment && u.seq == head.seq && u.snapshot == head.snapshot
        });
        if same_update {
            if let Some(last) = recording.updates.last_mut() {
                last.records += 1;
            }
            continue;
        }
        let gap_before = match *last_seq {
            Some((last_run, last)) if last_run == run => {
                if head.seq > last + 1 {
                    recording.missing += head.seq - last - 1;
                    true
                } else {
                    false
                }
            }
            _ => true,
        };
        *last_seq = Some((run, head.seq));
        *time = (*time).max(head.at_unix_ns);
        recording.updates.push(UpdateRef {
            at_unix_ns: head.at_unix_ns,
            time: *time,
            seq: head.seq,
            snapshot: head.snapshot,
            gap_before,
            segment,
            offset: frame.offset,
            records: 1,
        });
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(e) => {
            let kept = recording
                .updates
                .iter()
                .filter(|u| u.segment == segment)
                .count();
            let what = match &e {
                FormatError::Truncated { .. } => {
                    "the app stopped while writing it, or is writing it"
                }
                _ => "the rest of this file is skipped",
            };
            Err(format!(
                "{}: {e} ({what}; the {kept} updates before it are shown)",
                path.display()
            ))
        }
    }
}

impl Recording {
    /// The records (chunks) of update `index`, read from its file.
    pub fn read(&mut self, index: usize) -> Result<Vec<proto::Update>, String> {
        let path = self.segments[self.updates[index].segment].path.clone();
        self.frames(index)?
            .iter()
            .map(|frame| {
                let record = frame
                    .record()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(record.update.unwrap_or_default())
            })
            .collect()
    }

    /// The records of update `index` without their tasks: what the
    /// runtime's history needs ([`UpdateMetrics`]), read at a fraction of
    /// the cost.
    pub fn read_metrics(&mut self, index: usize) -> Result<Vec<UpdateMetrics>, String> {
        let path = self.segments[self.updates[index].segment].path.clone();
        self.frames(index)?
            .iter()
            .map(|frame| {
                frame
                    .metrics()
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .collect()
    }

    /// The frames of update `index`, read from its file and checked against the index.
    fn frames(&mut self, index: usize) -> Result<Vec<Frame>, String> {
        let update = &self.updates[index];
        let segment = &mut self.segments[update.segment];
        let named = |e: &dyn std::fmt::Display| format!("{}: {e}", segment.path.display());
        segment
            .file
            .seek(SeekFrom::Start(update.offset))
            .map_err(|e| named(&e))?;
        let mut reader = BufReader::new(&segment.file);
        let mut offset = update.offset;
        let mut frames = Vec::with_capacity(update.records as usize);
        for _ in 0..update.records {
            let frame = read_frame(&mut reader, offset)
                .map_err(|e| named(&e))?
                .ok_or_else(|| named(&"it ends where a record was"))?;
            offset += frame.len;
            let head = frame.head().map_err(|e| named(&e))?;
            if head.seq != update.seq || head.snapshot != update.snapshot {
                return Err(named(&format!(
                    "the record at byte {} changed since it was read",
                    frame.offset
                )));
            }
            frames.push(frame);
        }
        Ok(frames)
    }

    /// The recorded time of the first update.
    pub fn start(&self) -> u64 {
        self.updates.first().map_or(0, |u| u.time)
    }

    /// The recorded time of the last update.
    pub fn end(&self) -> u64 {
        self.updates.last().map_or(0, |u| u.time)
    }
}

/// A recorded time as a [`SystemTime`].
pub fn system_time(unix_ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(unix_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::testing::{
        at, delta, dir, numbered, rec, segment_bytes, snapshot, task, write_segment,
    };

    fn no_progress(_: &Progress) {}

    /// Three segments of one run: each starts with a snapshot (and the
    /// delta of the same publish); publishes 5 and 6 are missing.
    fn three_segments(path: &Path) {
        let t = |id| task(id, "t", None, false);
        write_segment(
            &numbered(path, 1),
            1,
            0,
            &[
                rec(0, snapshot(at(0.0), vec![t(1)], vec![])),
                rec(0, delta(at(0.0), vec![t(1)], vec![], vec![])),
                rec(1, delta(at(0.5), vec![], vec![], vec![])),
                rec(2, delta(at(1.0), vec![t(2)], vec![], vec![])),
            ],
        );
        write_segment(
            &numbered(path, 2),
            1,
            1,
            &[
                rec(3, snapshot(at(1.5), vec![t(1), t(2)], vec![])),
                rec(3, delta(at(1.5), vec![], vec![], vec![])),
                rec(4, delta(at(2.0), vec![], vec![], vec![])),
                rec(7, snapshot(at(3.5), vec![t(1)], vec![])),
                rec(7, delta(at(3.5), vec![], vec![], vec![])),
            ],
        );
        write_segment(
            path,
            1,
            2,
            &[
                rec(8, snapshot(at(4.0), vec![t(1)], vec![])),
                rec(8, delta(at(4.0), vec![], vec![], vec![])),
                rec(9, delta(at(4.5), vec![], vec![], vec![])),
            ],
        );
    }

    #[test]
    fn segments_load_oldest_first_with_the_missing_publishes_counted() {
        let dir = dir("load-three");
        let path = dir.join("app.rec");
        three_segments(&path);
        let mut seen = Vec::new();
        let recording = load(&path, &mut |p| seen.push(p.clone())).unwrap();
        assert!(recording.problems.is_empty(), "{:?}", recording.problems);
        let updates: Vec<(u64, bool, bool)> = recording
            .updates
            .iter()
            .map(|u| (u.seq, u.snapshot, u.gap_before))
            .collect();
        assert_eq!(
            updates,
            [
                (0, true, true),
                (0, false, false),
                (1, false, false),
                (2, false, false),
                (3, true, false),
                (3, false, false),
                (4, false, false),
                (7, true, true),
                (7, false, false),
                (8, true, false),
                (8, false, false),
                (9, false, false),
            ]
        );
        assert_eq!(recording.missing, 2);
        assert_eq!(recording.runs.len(), 1);
        assert_eq!(
            recording
                .segments
                .iter()
                .map(|s| s.header.segment)
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!((recording.start(), recording.end()), (at(0.0), at(4.5)));
        // Progress ends at the total.
        let last = seen.last().unwrap();
        assert_eq!(last.read, last.total);
        assert!(last.total > 0);
        // Each update reads back.
        let mut recording = recording;
        let chunks = recording.read(7).unwrap();
        let Some(proto::update::Kind::Snapshot(s)) = &chunks[0].kind else {
            panic!("a snapshot")
        };
        assert_eq!(s.at_unix_ns, at(3.5));
    }

    #[test]
    fn a_last_record_cut_short_keeps_what_is_before_it_and_names_the_file() {
        let dir = dir("load-cut");
        let path = dir.join("app.rec");
        three_segments(&path);
        let whole = std::fs::read(&path).unwrap();
        let before_last = segment_bytes(
            1,
            2,
            &[
                rec(
                    8,
                    snapshot(at(4.0), vec![task(1, "t", None, false)], vec![]),
                ),
                rec(8, delta(at(4.0), vec![], vec![], vec![])),
            ],
        )
        .len();
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        let recording = load(&path, &mut no_progress).unwrap();
        assert_eq!(recording.updates.last().unwrap().seq, 8);
        assert_eq!(
            recording.problems,
            [format!(
                "{}: it is cut short at byte {before_last}: a record's checksum (the app stopped \
                 while writing it, or is writing it; the 2 updates before it are shown)",
                path.display()
            )]
        );
    }

    #[test]
    fn a_corrupt_record_skips_the_rest_of_its_segment_and_the_next_segments_are_read() {
        let dir = dir("load-corrupt");
        let path = dir.join("app.rec");
        three_segments(&path);
        let second = numbered(&path, 2);
        let mut bytes = std::fs::read(&second).unwrap();
        let third_record = segment_bytes(
            1,
            1,
            &[
                rec(
                    3,
                    snapshot(
                        at(1.5),
                        vec![task(1, "t", None, false), task(2, "t", None, false)],
                        vec![],
                    ),
                ),
                rec(3, delta(at(1.5), vec![], vec![], vec![])),
            ],
        )
        .len();
        bytes[third_record + 4] ^= 0xff;
        std::fs::write(&second, &bytes).unwrap();
        let recording = load(&path, &mut no_progress).unwrap();
        let seqs: Vec<u64> = recording.updates.iter().map(|u| u.seq).collect();
        assert_eq!(seqs, [0, 0, 1, 2, 3, 3, 8, 8, 9]);
        assert_eq!(
            recording.problems,
            [format!(
                "{}: it is corrupt at byte {third_record}: a record whose checksum does not match \
                 its bytes (the rest of this file is skipped; the 2 updates before it are shown)",
                second.display()
            )]
        );
        // The gap is seen: the next segment's snapshot follows missing publishes.
        assert!(recording.updates[6].gap_before);
        assert_eq!(recording.missing, 4);
    }

    #[test]
    fn files_of_another_format_version_or_protocol_are_named_and_skipped() {
        let dir = dir("load-foreign");
        let path = dir.join("app.rec");
        three_segments(&path);
        // The oldest segment is a report file, the next one of format 2.
        std::fs::write(numbered(&path, 1), b"{\"v\":1,\"kind\":\"slow_poll\"}\n").unwrap();
        let second = numbered(&path, 2);
        let mut bytes = std::fs::read(&second).unwrap();
        bytes[taskscope_api::recording::MAGIC.len()] = 2;
        std::fs::write(&second, &bytes).unwrap();
        let recording = load(&path, &mut no_progress).unwrap();
        assert_eq!(recording.updates.len(), 3, "the newest segment");
        assert_eq!(
            recording.problems,
            [
                format!(
                    "{}: it is not a taskscope recording (it does not start with \
                     \"TASKSCOPE-REC\"); it looks like a JSON-lines report: read it with \
                     `taskscope report`",
                    numbered(&path, 1).display()
                ),
                format!(
                    "{}: it is a taskscope recording of format version 2; this taskscope reads \
                     format version 1 (use the taskscope release of the app that recorded it)",
                    second.display()
                ),
            ]
        );
    }

    #[test]
    fn nothing_readable_is_an_error_that_says_why_for_each_file() {
        let dir = dir("load-nothing");
        let path = dir.join("report.jsonl");
        std::fs::write(&path, b"{\"v\":1}\n").unwrap();
        let err = load(&path, &mut no_progress).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{p}: no update can be read from it:\n  {p}: it is not a taskscope recording (it \
                 does not start with \"TASKSCOPE-REC\"); it looks like a JSON-lines report: read \
                 it with `taskscope report`",
                p = path.display()
            )
        );
        // Another protocol version.
        let mut bytes = segment_bytes(1, 0, &[rec(0, snapshot(at(0.0), vec![], vec![]))]);
        let header = taskscope_api::proto::RecordingHeader {
            format_version: 1,
            protocol_version: 9,
            ..Default::default()
        };
        let start = taskscope_api::recording::segment_start(&header);
        let old_start =
            taskscope_api::recording::segment_start(&taskscope_api::proto::RecordingHeader {
                format_version: 1,
                protocol_version: taskscope_api::PROTOCOL_VERSION,
                app: Some(crate::replay::testing::app()),
                started_unix_ns: crate::replay::testing::T0,
                run_started_unix_ns: 1,
                segment: 0,
            });
        bytes.splice(..old_start.len(), start);
        let path = dir.join("v9.rec");
        std::fs::write(&path, &bytes).unwrap();
        let err = load(&path, &mut no_progress).unwrap_err().to_string();
        assert!(
            err.ends_with(&format!(
                "{}: it was recorded by an app speaking taskscope protocol version 9; this \
                 taskscope speaks version 1 (use the taskscope release of the app)",
                path.display()
            )),
            "{err}"
        );
        // No file at all.
        let err = load(&dir.join("none.rec"), &mut no_progress)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("none.rec: cannot open it: No such file"),
            "{err}"
        );
        // An empty file (the app had just created it).
        let path = dir.join("empty.rec");
        std::fs::write(&path, b"").unwrap();
        let err = load(&path, &mut no_progress).unwrap_err().to_string();
        assert!(
            err.ends_with("empty.rec: it is cut short at byte 0: the file is empty"),
            "{err}"
        );
    }
}
