//! The report file reader fuzzed: arbitrary bytes, valid findings of every
//! kind, and valid lines mutated (cut short, bytes flipped or inserted, invalid
//! UTF-8, unknown kinds and fields, CRLF endings) go through the parser of
//! `taskscope report`; it must never panic, must count every valid line, and
//! must name every other non-blank line by its number. A few of the same files
//! also go through the real binary (`taskscope report --json -`).
//!
//! Each property runs with `cargo test` (256 cases; 32 for the one that
//! starts processes); for a long run:
//! `PROPTEST_CASES=100000 cargo test -p taskscope-viewer --test fuzz_report fuzz`.
//!
//! The parser lives in the binary crate (`src/report/`), so its two files are
//! compiled into this test as they are.

// `parse.rs` reaches the window as `super::window`: both at the root here.
#[allow(dead_code)]
#[path = "../src/report/parse.rs"]
mod parse;
#[allow(dead_code)]
#[path = "../src/report/window.rs"]
mod window;

use std::io::{Cursor, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use parse::{Entry, Problem, Reading, Sink, read_lines};
use proptest::prelude::*;
use taskscope_api::{Finding, FindingKind, LeakReason, SCHEMA_VERSION, StackFrame, TaskRef};
use window::{Window, parse_time};

/// Keeps what the parser hands over.
#[derive(Default)]
struct Collect {
    entries: Vec<Entry>,
    problems: Vec<Problem>,
}

impl Sink for Collect {
    fn finding(&mut self, entry: Entry) {
        self.entries.push(entry);
    }
    fn problem(&mut self, problem: &Problem) {
        self.problems.push(problem.clone());
    }
    fn unreadable(&mut self, error: &anyhow::Error) {
        panic!("reading from memory cannot fail: {error:#}");
    }
}

fn read(input: &[u8], window: &Window) -> (Reading, Collect) {
    let mut reading = Reading::default();
    let mut sink = Collect::default();
    read_lines(
        Cursor::new(input),
        0,
        "fuzz.jsonl",
        window,
        &mut reading,
        &mut sink,
    )
    .expect("reading from memory cannot fail");
    (reading, sink)
}

/// What a line is, decided without the parser's code: `None` for a blank
/// line, else whether it is a finding this version reads.
fn oracle(line: &[u8]) -> Option<bool> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(false);
    };
    let Ok(finding) = serde_json::from_str::<Finding>(text) else {
        return Some(false);
    };
    let sane_duration = match finding.kind {
        FindingKind::SlowPoll { duration_ms, .. } => duration_ms >= 0.0 && duration_ms.is_finite(),
        _ => true,
    };
    Some(finding.v <= SCHEMA_VERSION && sane_duration)
}

/// Splits as the parser does: on `\n`, the last line without one counting
/// when it is not empty.
fn lines(input: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// The whole contract for an open window: valid lines are entries with their
/// line numbers, every other non-blank line is one problem with its number,
/// blank lines are neither; the counts say the same.
fn check(input: &[u8]) -> Result<(), TestCaseError> {
    let (reading, sink) = read(input, &Window::default());
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    for (i, line) in lines(input).iter().enumerate() {
        match oracle(line) {
            Some(true) => valid.push(i as u64 + 1),
            Some(false) => invalid.push(i as u64 + 1),
            None => {}
        }
    }
    let entry_lines: Vec<u64> = sink.entries.iter().map(|e| e.line).collect();
    let problem_lines: Vec<u64> = sink.problems.iter().map(|p| p.line).collect();
    prop_assert_eq!(&entry_lines, &valid, "valid lines");
    prop_assert_eq!(&problem_lines, &invalid, "malformed lines, named by number");
    prop_assert_eq!(reading.valid, valid.len() as u64);
    prop_assert_eq!(reading.malformed, invalid.len() as u64);
    prop_assert_eq!(reading.outside_window, 0);
    for problem in &sink.problems {
        prop_assert!(!problem.reason.is_empty());
        let text = problem.to_string();
        let head = format!("fuzz.jsonl:{}: ", problem.line);
        prop_assert!(text.starts_with(&head), "{}", text);
        prop_assert!(
            problem.reason.len() < 1_000,
            "a reason never echoes the line"
        );
    }
    Ok(())
}

// ---- strategies ----

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
        "src/[a-z]{1,8}\\.rs:[0-9]{1,4}:[0-9]{1,3}",
    ]
}

fn frame() -> impl Strategy<Value = StackFrame> {
    (
        text(),
        prop::option::of(text()),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(function, file, line)| StackFrame {
            function,
            file,
            line,
        })
}

fn kind() -> impl Strategy<Value = FindingKind> {
    prop_oneof![
        (
            0.0..1e9f64,
            any::<u64>(),
            text(),
            prop::collection::vec(frame(), 0..4),
            prop::option::of(text()),
            any::<bool>(),
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(
                |(
                    duration_ms,
                    threshold_ms,
                    thread,
                    stack,
                    stack_unavailable,
                    stack_truncated,
                    in_progress,
                    poll,
                )| {
                    FindingKind::SlowPoll {
                        duration_ms,
                        threshold_ms,
                        thread,
                        stack,
                        stack_unavailable,
                        stack_truncated,
                        in_progress,
                        poll,
                    }
                }
            ),
        (text(), text())
            .prop_map(|(name, created_at)| FindingKind::NeverAwaited { name, created_at }),
        (
            prop::sample::select(vec![
                LeakReason::AliveAtShutdown,
                LeakReason::LostWaker,
                LeakReason::IdleTooLong
            ]),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(frame(), 0..4),
            prop::option::of(text())
        )
            .prop_map(|(reason, age_ms, idle_ms, waiting_at, waiting_at_note)| {
                FindingKind::LeakedTask {
                    reason,
                    age_ms,
                    idle_ms,
                    waiting_at,
                    waiting_at_note,
                }
            }),
        (
            text(),
            prop::option::of(text()),
            prop::option::of(any::<bool>())
        )
            .prop_map(|(message, panicked_at, joined)| FindingKind::TaskPanicked {
                message,
                panicked_at,
                joined
            }),
        any::<u64>().prop_map(|count| FindingKind::FindingsDropped { count }),
    ]
}

fn finding() -> impl Strategy<Value = Finding> {
    (
        0..=SCHEMA_VERSION,
        kind(),
        prop_oneof![
            (0u64..4_000_000_000).prop_map(|s| {
                humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_secs(s))
                    .to_string()
            }),
            text(),
        ],
        prop::option::of((any::<u64>(), prop::option::of(text()), text())),
    )
        .prop_map(|(v, kind, time, task)| Finding {
            v,
            kind,
            time,
            task: task.map(|(id, name, spawned_at)| TaskRef {
                id,
                name,
                spawned_at,
            }),
        })
}

/// A valid finding as a report line (without its newline).
fn valid_line() -> impl Strategy<Value = Vec<u8>> {
    finding().prop_map(|f| serde_json::to_vec(&f).expect("a finding serializes"))
}

/// How a valid line gets damaged.
#[derive(Clone, Debug)]
enum Mutation {
    /// Cut short after this many bytes (a full disk, a crash).
    Truncate(prop::sample::Index),
    /// One byte replaced.
    Flip(prop::sample::Index, u8),
    /// Bytes inserted (no newline among them).
    Insert(prop::sample::Index, Vec<u8>),
    /// The `kind` renamed.
    UnknownKind(String),
    /// A field this version does not know, added.
    UnknownField(String),
    /// A newer schema version.
    Newer(u32),
    /// A `\r` before the newline.
    Crlf,
    /// A field removed (by name, when there).
    Remove(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..8)
        )
            .prop_map(|(i, bytes)| Mutation::Insert(i, bytes)),
        "[a-z_]{0,12}".prop_map(Mutation::UnknownKind),
        "[a-z_]{1,12}".prop_map(Mutation::UnknownField),
        (SCHEMA_VERSION + 1..u32::MAX).prop_map(Mutation::Newer),
        Just(Mutation::Crlf),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
    ]
}

fn mutate(mut line: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    let value = || serde_json::from_slice::<serde_json::Value>(&line).unwrap();
    match mutation {
        Mutation::Truncate(at) => line.truncate(at.index(line.len())),
        Mutation::Flip(at, byte) => {
            let i = at.index(line.len());
            line[i] = if *byte == b'\n' { b'x' } else { *byte };
        }
        Mutation::Insert(at, bytes) => {
            let i = at.index(line.len() + 1);
            let bytes: Vec<u8> = bytes
                .iter()
                .map(|&b| if b == b'\n' { b' ' } else { b })
                .collect();
            line.splice(i..i, bytes);
        }
        Mutation::UnknownKind(kind) => {
            let mut v = value();
            v["kind"] = kind.clone().into();
            line = serde_json::to_vec(&v).unwrap();
        }
        Mutation::UnknownField(name) => {
            let mut v = value();
            v[format!("x_{name}")] = serde_json::json!({"nested": [1, "two", null]});
            line = serde_json::to_vec(&v).unwrap();
        }
        Mutation::Newer(version) => {
            let mut v = value();
            v["v"] = (*version).into();
            line = serde_json::to_vec(&v).unwrap();
        }
        Mutation::Crlf => line.push(b'\r'),
        Mutation::Remove(which) => {
            let mut v = value();
            let map = v.as_object_mut().unwrap();
            let keys: Vec<String> = map.keys().cloned().collect();
            map.remove(&keys[which.index(keys.len())]);
            line = serde_json::to_vec(&v).unwrap();
        }
    }
    line
}

/// One line of a report file: valid, a damaged valid one, blank, or garbage.
fn any_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => valid_line(),
        4 => (valid_line(), mutation()).prop_map(|(line, m)| mutate(line, &m)),
        1 => "[ \t\r]{0,3}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| b.into_iter().filter(|&c| c != b'\n').collect()),
        1 => any::<String>().prop_map(|s| s.replace('\n', " ").into_bytes()),
    ]
}

/// A report file: lines joined by newlines, with or without a last one.
fn file() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(any_line(), 0..24), any::<bool>()).prop_map(|(lines, last_newline)| {
        let mut bytes = lines.join(&b'\n');
        if last_newline && !lines.is_empty() {
            bytes.push(b'\n');
        }
        bytes
    })
}

proptest! {
    #[test]
    fn fuzz_arbitrary_bytes(input in prop::collection::vec(
        prop_oneof![8 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'{'), 1 => Just(b'"')],
        0..2048,
    )) {
        check(&input)?;
    }

    #[test]
    fn fuzz_valid_lines_are_read_back(findings in prop::collection::vec(finding(), 1..16)) {
        let mut input = Vec::new();
        for f in &findings {
            serde_json::to_writer(&mut input, f).unwrap();
            input.push(b'\n');
        }
        check(&input)?;
        let (_, sink) = read(&input, &Window::default());
        prop_assert_eq!(sink.entries.len(), findings.len());
        for (entry, original) in sink.entries.iter().zip(&findings) {
            prop_assert_eq!(&entry.finding.time, &original.time);
            prop_assert_eq!(&entry.finding.task, &original.task);
            prop_assert_eq!(entry.finding.kind.name(), original.kind.name());
        }
    }

    #[test]
    fn fuzz_mutated_and_mixed_lines(input in file()) {
        check(&input)?;
    }

    #[test]
    fn fuzz_time_window(input in file(), since in prop::option::of(0u64..4_000_000_000), span in 0u64..4_000_000_000) {
        // With a window, a valid line whose time can't be read is malformed,
        // and the valid ones are either kept or counted outside.
        let window = Window {
            since: since.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
            until: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(since.unwrap_or(0) + span)),
        };
        let (reading, sink) = read(&input, &window);
        let non_blank = lines(&input).iter().filter(|l| oracle(l).is_some()).count() as u64;
        prop_assert_eq!(reading.valid + reading.malformed, non_blank);
        prop_assert_eq!(reading.valid - reading.outside_window, sink.entries.len() as u64);
        for entry in &sink.entries {
            prop_assert!(window.contains(parse_time(&entry.finding.time).unwrap()));
        }
    }

    #[test]
    fn fuzz_parse_time_never_panics(text in prop_oneof![
        any::<String>(),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?.{0,3}",
    ]) {
        let _ = parse_time(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn fuzz_the_report_command_counts_every_valid_line(input in file()) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_taskscope"))
            .args(["report", "--json", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run taskscope report");
        let mut stdin = child.stdin.take().unwrap();
        let writer = {
            let input = input.clone();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            })
        };
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        prop_assert_eq!(output.status.code(), Some(0));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let (mut valid, mut invalid) = (0u64, Vec::new());
        for (i, line) in lines(&input).iter().enumerate() {
            match oracle(line) {
                Some(true) => valid += 1,
                Some(false) => invalid.push(i + 1),
                None => {}
            }
        }
        prop_assert_eq!(report["lines"]["valid"].as_u64(), Some(valid));
        prop_assert_eq!(report["lines"]["malformed"].as_u64(), Some(invalid.len() as u64));
        let stderr = String::from_utf8_lossy(&output.stderr);
        for number in invalid {
            let head = format!("<stdin>:{number}: ");
            prop_assert!(stderr.lines().any(|l| l.starts_with(&head)), "{} not named:\n{}", head, stderr);
        }
    }
}

/// The one case the fuzzing can't reach: a line past the parser's limit (64 MiB)
/// is one problem naming its length, and the lines after it keep their numbers.
#[test]
fn a_line_past_the_limit_is_named_and_the_next_ones_still_count() {
    let valid = serde_json::to_vec(&Finding::new(
        FindingKind::FindingsDropped { count: 2 },
        None,
    ))
    .unwrap();
    let mut input = valid.clone();
    input.push(b'\n');
    let huge = parse::MAX_LINE + 7;
    input.resize(input.len() + huge, b'{');
    input.push(b'\n');
    input.extend_from_slice(&valid);
    let (reading, sink) = read(&input, &Window::default());
    assert_eq!((reading.valid, reading.malformed), (2, 1));
    assert_eq!(
        sink.entries.iter().map(|e| e.line).collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(sink.problems[0].line, 2);
    assert_eq!(
        sink.problems[0].reason,
        format!("line of {huge} bytes is longer than the 64 MiB limit")
    );
}
