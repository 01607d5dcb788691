//! Reading report files: JSON lines into findings, and a [`Problem`] for each line
//! that is not a finding this version can use.
//!
//! Lines are read as bytes, so invalid UTF-8 is reported rather than guessed at,
//! and a line is never held beyond [`MAX_LINE`] bytes however long it is.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;
use serde_json::error::Category;
use taskscope_api::format::printable;
use taskscope_api::{Finding, FindingKind, SCHEMA_VERSION};

use super::window::Window;

/// The longest line read; the rest of a longer one is skipped unread and the
/// line reported. Findings are a few hundred bytes, a deep stack some tens of KB.
pub const MAX_LINE: usize = 64 << 20;

/// The name under which `-` (standard input) appears in messages.
pub const STDIN_NAME: &str = "<stdin>";

/// A finding and where it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The finding.
    pub finding: Finding,
    /// Index of its file in [`Reading::files`].
    pub file: usize,
    /// Its line number, from 1.
    pub line: u64,
}

/// A line that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file, as named on the command line.
    pub file: String,
    /// The line number, from 1.
    pub line: u64,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for Problem {
    /// `FILE:LINE: reason`, control characters made visible (the reason may
    /// quote the line, and the line can hold anything).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            printable(&self.file),
            self.line,
            printable(&self.reason)
        )
    }
}

/// Where the reading goes, as it happens.
pub trait Sink {
    /// A finding inside the time window, in file and line order.
    fn finding(&mut self, entry: Entry);
    /// A line skipped.
    fn problem(&mut self, problem: &Problem);
    /// A file that could not be opened, or read to the end.
    fn unreadable(&mut self, error: &anyhow::Error);
}

/// What was read from all files: the counts (the findings went to the [`Sink`]).
#[derive(Debug, Default)]
pub struct Reading {
    /// Every file named, as named (`-` shows as [`STDIN_NAME`]).
    pub files: Vec<String>,
    /// Indexes into `files` of those that could not be opened or read to the end.
    pub unreadable: Vec<usize>,
    /// Lines that are findings (inside the time window or not).
    pub valid: u64,
    /// Lines skipped as malformed (each one reported as a [`Problem`]).
    pub malformed: u64,
    /// Valid lines left out by `--since` / `--until`.
    pub outside_window: u64,
}

/// Reads every file in order into `sink`. A file that can't be read is also
/// listed in [`Reading::unreadable`]; reading goes on with the next line or file
/// whatever happens.
#[cfg(test)]
pub fn read_files(paths: &[PathBuf], window: &Window, sink: &mut dyn Sink) -> Reading {
    read_files_with_progress(paths, window, sink, &mut |_| {})
}

/// [`read_files`], calling `progress` with the bytes read so far of all the
/// named files (not standard input), as it reads them.
pub fn read_files_with_progress(
    paths: &[PathBuf],
    window: &Window,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(u64),
) -> Reading {
    let mut reading = Reading::default();
    let mut done = 0u64;
    for path in paths {
        let index = reading.files.len();
        let is_stdin = path.as_os_str() == "-";
        let name = if is_stdin {
            STDIN_NAME.to_string()
        } else {
            path.display().to_string()
        };
        reading.files.push(name.clone());
        let result = if is_stdin {
            read_lines(io::stdin().lock(), index, &name, window, &mut reading, sink)
        } else {
            File::open(path).and_then(|file| {
                let mut counted = Counting {
                    inner: file,
                    done: &mut done,
                    progress: &mut *progress,
                };
                read_lines(
                    BufReader::with_capacity(1 << 16, &mut counted),
                    index,
                    &name,
                    window,
                    &mut reading,
                    sink,
                )
            })
        };
        if let Err(err) = result.with_context(|| format!("cannot read report file {name}")) {
            reading.unreadable.push(index);
            sink.unreadable(&err);
        }
    }
    reading
}

/// A reader that adds what it reads to `done` and tells `progress`.
struct Counting<'a, R> {
    inner: R,
    done: &'a mut u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.done += n as u64;
        (self.progress)(*self.done);
        Ok(n)
    }
}

/// Reads one file's lines into `reading`. Only an I/O error ends it early.
pub fn read_lines<R: BufRead>(
    mut reader: R,
    file: usize,
    name: &str,
    window: &Window,
    reading: &mut Reading,
    sink: &mut dyn Sink,
) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut number = 0u64;
    while let Some(length) = next_line(&mut reader, &mut buf, MAX_LINE)? {
        number += 1;
        let outcome = if length > MAX_LINE {
            Err(format!(
                "line of {length} bytes is longer than the {} MiB limit",
                MAX_LINE >> 20
            ))
        } else {
            parse_line(&buf)
        };
        let outcome = outcome.and_then(|finding| match finding {
            Some(finding) => window.check(&finding).map(|inside| Some((finding, inside))),
            None => Ok(None),
        });
        match outcome {
            Ok(None) => {}
            Ok(Some((finding, inside))) => {
                reading.valid += 1;
                if inside {
                    sink.finding(Entry {
                        finding,
                        file,
                        line: number,
                    });
                } else {
                    reading.outside_window += 1;
                }
            }
            Err(reason) => {
                reading.malformed += 1;
                sink.problem(&Problem {
                    file: name.to_string(),
                    line: number,
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// Reads the next line, without its `\n`, into `buf`, keeping at most `max`
/// bytes of it. Returns the line's full length, or `None` at the end of input.
fn next_line<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<usize>> {
    buf.clear();
    let mut length = 0usize;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            return Ok(any.then_some(length));
        }
        any = true;
        let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], end + 1, true),
            None => (available, available.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        length = length.saturating_add(chunk.len());
        reader.consume(used);
        if done {
            return Ok(Some(length));
        }
    }
}

/// One line: `Ok(None)` for a blank line, the finding, or why it is not one.
pub fn parse_line(bytes: &[u8]) -> Result<Option<Finding>, String> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|err| format!("invalid UTF-8 at byte {}", err.valid_up_to() + 1))?;
    match serde_json::from_str::<Finding>(text) {
        Ok(finding) => check(&finding).map(|()| Some(finding)),
        Err(err) => Err(diagnose(text, &err)),
    }
}

/// What serde can't check: a schema this version can't read, values that make
/// no sense.
fn check(finding: &Finding) -> Result<(), String> {
    // New fields don't change `v` (readers ignore them): a larger `v` means
    // the meaning of known fields changed.
    if finding.v > SCHEMA_VERSION {
        return Err(format!(
            "schema version {} is newer than this taskscope reads ({SCHEMA_VERSION})",
            finding.v
        ));
    }
    if let FindingKind::SlowPoll { duration_ms, .. } = finding.kind
        && !(duration_ms >= 0.0 && duration_ms.is_finite())
    {
        return Err(format!(
            "invalid slow_poll finding: `duration_ms` is {duration_ms}"
        ));
    }
    Ok(())
}

/// Says why `text` is not a finding, in terms of the schema rather than serde's.
fn diagnose(text: &str, err: &serde_json::Error) -> String {
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value) => value,
        Err(err) if err.classify() == Category::Eof => {
            return format!(
                "truncated JSON: the line ends at column {} inside a value",
                err.column()
            );
        }
        Err(err) => {
            return format!(
                "not valid JSON: {} at column {}",
                message(&err),
                err.column()
            );
        }
    };
    let Value::Object(map) = value else {
        return format!(
            "not a finding: a JSON {} instead of an object",
            type_name(&value)
        );
    };
    match map.get("kind") {
        None => "not a finding: no `kind` field".to_string(),
        Some(Value::String(kind)) if !FindingKind::NAMES.contains(&kind.as_str()) => format!(
            "unknown kind {kind:?} (this version knows {})",
            FindingKind::NAMES.join(", ")
        ),
        Some(Value::String(kind)) => format!("invalid {kind} finding: {}", message(err)),
        Some(other) => format!(
            "not a finding: `kind` is a JSON {}, not a string",
            type_name(other)
        ),
    }
}

/// serde_json's message without its ` at line L column C` tail.
fn message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let tail = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&tail).map(str::to_owned).unwrap_or(text)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const SLOW: &str = r#"{"v":1,"kind":"slow_poll","time":"2026-11-22T10:00:00.153Z","task":{"id":17,"name":"handler","spawned_at":"src/main.rs:42:5"},"duration_ms":153.2,"threshold_ms":100,"thread":"w","stack":[],"in_progress":false,"poll":3}"#;

    /// Keeps what it is given.
    #[derive(Default)]
    struct Collect {
        entries: Vec<Entry>,
        problems: Vec<Problem>,
        errors: Vec<String>,
    }

    impl Sink for Collect {
        fn finding(&mut self, entry: Entry) {
            self.entries.push(entry);
        }
        fn problem(&mut self, problem: &Problem) {
            self.problems.push(problem.clone());
        }
        fn unreadable(&mut self, error: &anyhow::Error) {
            self.errors.push(format!("{error:#}"));
        }
    }

    fn read(input: &[u8]) -> (Reading, Collect) {
        let mut reading = Reading {
            files: vec!["f.jsonl".into()],
            ..Reading::default()
        };
        let mut sink = Collect::default();
        read_lines(
            Cursor::new(input),
            0,
            "f.jsonl",
            &Window::default(),
            &mut reading,
            &mut sink,
        )
        .unwrap();
        (reading, sink)
    }

    fn reason(line: &[u8]) -> String {
        parse_line(line).unwrap_err()
    }

    #[test]
    fn valid_lines_count_and_bad_ones_are_named_by_line() {
        let input =
            format!("{SLOW}\n\nnot json\n   \n{SLOW}\r\n{{\"v\":1,\"kind\":\"mystery\"}}\n{SLOW}");
        let (
            reading,
            Collect {
                entries, problems, ..
            },
        ) = read(input.as_bytes());
        assert_eq!(reading.valid, 3);
        assert_eq!(reading.malformed, 2);
        let lines: Vec<u64> = entries.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 5, 7]);
        assert_eq!(
            problems[0].to_string(),
            "f.jsonl:3: not valid JSON: expected ident at column 2"
        );
        assert!(
            problems[1]
                .to_string()
                .starts_with("f.jsonl:6: unknown kind \"mystery\"")
        );
    }

    #[test]
    fn reasons_speak_of_the_schema() {
        assert!(reason(&SLOW.as_bytes()[..60]).starts_with("truncated JSON"));
        assert_eq!(
            reason(b"[1,2]"),
            "not a finding: a JSON array instead of an object"
        );
        assert_eq!(reason(b"{\"v\":1}"), "not a finding: no `kind` field");
        assert_eq!(
            reason(b"{\"kind\":3}"),
            "not a finding: `kind` is a JSON number, not a string"
        );
        let no_time = SLOW.replace(r#""time":"2026-11-22T10:00:00.153Z","#, "");
        assert_eq!(
            reason(no_time.as_bytes()),
            "invalid slow_poll finding: missing field `time`"
        );
        let no_duration = SLOW.replace(r#""duration_ms":153.2,"#, "");
        assert_eq!(
            reason(no_duration.as_bytes()),
            "invalid slow_poll finding: missing field `duration_ms`"
        );
        let negative = SLOW.replace("153.2", "-1.5");
        assert_eq!(
            reason(negative.as_bytes()),
            "invalid slow_poll finding: `duration_ms` is -1.5"
        );
        let newer = SLOW.replace(r#""v":1"#, r#""v":2"#);
        assert_eq!(
            reason(newer.as_bytes()),
            "schema version 2 is newer than this taskscope reads (1)"
        );
        let mut bad_utf8 = SLOW.as_bytes().to_vec();
        bad_utf8[40] = 0xff;
        assert_eq!(reason(&bad_utf8), "invalid UTF-8 at byte 41");
    }

    #[test]
    fn unknown_fields_and_missing_optional_ones_are_fine() {
        let line = r#"{"v":1,"kind":"never_awaited","name":"fetch_user","created_at":"src/main.rs:10:5","time":"x","extra":{"a":[1]}}"#;
        let finding = parse_line(line.as_bytes()).unwrap().unwrap();
        assert_eq!(finding.task, None);
    }

    #[test]
    fn a_line_past_the_limit_is_skipped_without_being_kept() {
        let mut input = Vec::new();
        input.extend_from_slice(SLOW.as_bytes());
        input.push(b'\n');
        let mut reader =
            Cursor::new([vec![b'x'; 1000], b"\n".to_vec(), SLOW.as_bytes().to_vec()].concat());
        let mut buf = Vec::new();
        assert_eq!(next_line(&mut reader, &mut buf, 100).unwrap(), Some(1000));
        assert_eq!(buf.len(), 100);
        assert_eq!(
            next_line(&mut reader, &mut buf, 100).unwrap(),
            Some(SLOW.len())
        );
        assert_eq!(next_line(&mut reader, &mut buf, 100).unwrap(), None);
    }

    #[test]
    fn a_huge_line_of_garbage_is_one_problem() {
        let mut input = vec![b'{'; 2 << 20];
        input.push(b'\n');
        input.extend_from_slice(SLOW.as_bytes());
        let (reading, Collect { problems, .. }) = read(&input);
        assert_eq!((reading.valid, reading.malformed), (1, 1));
        assert_eq!(problems[0].line, 1);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let mut sink = Collect::default();
        let reading = read_files(
            &[PathBuf::from("/nonexistent/taskscope-report.jsonl")],
            &Window::default(),
            &mut sink,
        );
        assert_eq!(reading.unreadable, [0]);
        assert!(
            sink.errors[0]
                .starts_with("cannot read report file /nonexistent/taskscope-report.jsonl: ")
        );
    }

    #[test]
    fn progress_counts_the_bytes_of_every_file_up_to_their_total() {
        let dir = std::env::temp_dir().join(format!("taskscope-progress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Two files of several 64 KiB reads each.
        let one = dir.join("one.jsonl");
        let two = dir.join("two.jsonl");
        let line = format!("{SLOW}\n");
        std::fs::write(&one, line.repeat(2000)).unwrap();
        std::fs::write(&two, line.repeat(1000)).unwrap();
        let total = (line.len() * 3000) as u64;
        let mut seen = Vec::new();
        let mut sink = Collect::default();
        let reading = read_files_with_progress(
            &[one, PathBuf::from("/nonexistent/x.jsonl"), two],
            &Window::default(),
            &mut sink,
            &mut |done| seen.push(done),
        );
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(reading.valid, 3000);
        assert!(seen.len() > 3, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&total));
    }
}
