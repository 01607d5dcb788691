//! Text forms shared by the task table and messages, and the two rules for
//! strings that come from an app or a file:
//!
//! - their size has a bound: [`truncate`] (and [`Bounded`] for values that
//!   are formatted) keep at most [`MAX_TEXT`] bytes of a task name, a panic
//!   message or the name of a never-awaited future, and say how long the
//!   original was;
//! - they reach a terminal only through [`printable`], which makes control
//!   characters visible, so a task name cannot write the clipboard (OSC 52)
//!   or redraw the screen (CSI).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

/// The most bytes taskscope keeps of a string from the app: a task name, a
/// panic message, the name of a never-awaited future. A longer one is cut to
/// at most this many bytes (at a character boundary) and marked, as
/// [`truncate`] says.
pub const MAX_TEXT: usize = 4096;

/// The longest text [`truncate`] makes of any string with [`MAX_TEXT`]: the
/// kept bytes and the longest mark (a length of 20 digits).
pub const MAX_MARKED: usize = MAX_TEXT + " … [truncated, 18446744073709551615 bytes]".len();

/// `text` when it is at most `max` bytes long; otherwise its first `max`
/// bytes at most (cut at a character boundary), then
/// ` … [truncated, N bytes]`, N being the length of the whole.
///
/// ```
/// use taskscope_api::format::truncate;
/// assert_eq!(truncate("handler", 16), "handler");
/// assert_eq!(truncate(&"x".repeat(5_242_880), 4), "xxxx … [truncated, 5242880 bytes]");
/// assert_eq!(truncate("héllo", 2), "h … [truncated, 6 bytes]");
/// ```
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}{}", &text[..cut], truncation_mark(text.len())))
}

/// What [`truncate`] appends to a string of `len` bytes that it cut.
pub fn truncation_mark(len: usize) -> String {
    format!(" … [truncated, {len} bytes]")
}

/// A [`std::fmt::Write`] that keeps the first `max` bytes written to it and
/// counts the rest: a value's `Debug` or `Display` form, bounded without
/// first making all of it.
///
/// ```
/// use std::fmt::Write;
/// use taskscope_api::format::Bounded;
/// let mut name = Bounded::new(8);
/// write!(name, "{:?}", "a very long task name").unwrap();
/// assert_eq!(name.finish(), "\"a very  … [truncated, 23 bytes]");
/// ```
#[derive(Clone, Debug)]
pub struct Bounded {
    kept: String,
    len: usize,
    max: usize,
}

impl Bounded {
    /// An empty text that keeps at most `max` bytes.
    pub fn new(max: usize) -> Bounded {
        Bounded {
            kept: String::new(),
            len: 0,
            max,
        }
    }

    /// The text, marked as [`truncate`] does when it was longer than `max`.
    pub fn finish(mut self) -> String {
        if self.len > self.kept.len() {
            self.kept.push_str(&truncation_mark(self.len));
        }
        self.kept
    }
}

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.len += s.len();
        let room = self.max.saturating_sub(self.kept.len());
        if s.len() <= room {
            self.kept.push_str(s);
        } else {
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.kept.push_str(&s[..cut]);
            // Cut here: nothing written later is kept (the text stays a prefix).
            self.max = self.kept.len();
        }
        Ok(())
    }
}

/// Whether `c` is a control character: C0 (U+0000 to U+001F), DEL, or C1
/// (U+0080 to U+009F).
fn is_control(c: char) -> bool {
    c.is_control()
}

/// `text` with every control character made visible, for printing to a
/// terminal: C0 controls and DEL as `\x1b`, C1 controls as `\u{9b}` (ESC,
/// BEL, CR, LF, TAB included). An escape sequence in a task name, a panic
/// message or a line of a report file then prints as text and does nothing.
/// Everything else is kept as it is.
///
/// ```
/// use taskscope_api::format::printable;
/// assert_eq!(printable("handler"), "handler");
/// assert_eq!(
///     printable("x\x1b]52;c;aGk=\x07\u{9b}2J\r"),
///     "x\\x1b]52;c;aGk=\\x07\\u{9b}2J\\x0d"
/// );
/// ```
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_control(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// A duration in the unit that keeps it short: `850µs`, `12.3ms`, `1.53s`, `2m05s`.
pub fn duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", ns / 1_000)
    } else if ns < 10_000_000 {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else if ns < 60_000_000_000 {
        format!("{:.2}s", ns as f64 / 1e9)
    } else {
        let s = d.as_secs();
        if s < 3600 {
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
        }
    }
}

/// Lays out rows as columns separated by two spaces; columns listed in
/// `right` are right-aligned (numbers).
///
/// The cells are printed through [`printable`]: a cell holding a task name or
/// a function name from a report cannot put a control character on the
/// terminal.
pub fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut cells = Cells::default();
    for row in rows {
        for cell in row {
            cells.push(cell);
        }
        cells.end_row();
    }
    cells.lay_out(header, right)
}

/// The cells of a table in one buffer, made printable as they come: a
/// million-row table costs its text and one index a cell, not a `String` a
/// cell (`taskscope dump` of a million tasks: 1.33 GB → 567 MB at its peak).
#[derive(Default)]
struct Cells {
    text: String,
    /// Where each cell ends in `text`.
    ends: Vec<usize>,
    /// Where each row ends in `ends`.
    rows: Vec<usize>,
}

impl Cells {
    fn push(&mut self, cell: &str) {
        self.text.push_str(&printable(cell));
        self.ends.push(self.text.len());
    }

    /// A cell written with `fmt::Write` (numbers, durations): no control
    /// character can come from those.
    fn push_fmt(&mut self, args: std::fmt::Arguments<'_>) {
        let _ = self.text.write_fmt(args);
        self.ends.push(self.text.len());
    }

    fn end_row(&mut self) {
        self.rows.push(self.ends.len());
    }

    fn rows(&self) -> impl Iterator<Item = impl Iterator<Item = &str>> {
        let mut row_start = 0;
        self.rows.iter().map(move |&row_end| {
            let ends = &self.ends[row_start..row_end];
            let mut at = if row_start == 0 {
                0
            } else {
                self.ends[row_start - 1]
            };
            row_start = row_end;
            ends.iter().map(move |&end| {
                let cell = &self.text[at..end];
                at = end;
                cell
            })
        })
    }

    fn lay_out(&self, header: &[&str], right: &[usize]) -> String {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in self.rows() {
            for (i, cell) in row.enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        // At most this long (a line is trimmed at its end): written without a reallocation.
        let line_max = widths.iter().map(|w| w + 2).sum::<usize>() + 1;
        let mut out = String::with_capacity(line_max.saturating_mul(self.rows.len() + 1));
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let start = out.len();
            for (i, cell) in cells.enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                if right.contains(&i) {
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            let kept = out[start..].trim_end().len();
            out.truncate(start + kept);
            out.push('\n');
        };
        line(&mut header.iter().copied());
        for mut row in self.rows() {
            line(&mut row);
        }
        out
    }
}

/// The task table's columns, and those right-aligned (numbers).
const TASK_TABLE_HEADER: [&str; 11] = [
    "ID",
    "NAME",
    "STATE",
    "SPAWNED AT",
    "PARENT",
    "AGE",
    "POLLS",
    "BUSY",
    "IDLE",
    "LAST POLL",
    "WAKES",
];
const TASK_TABLE_RIGHT: [usize; 7] = [0, 4, 5, 6, 7, 8, 10];

/// One row of the task table that `taskscope::dump()` and `taskscope dump` print.
#[derive(Clone, Debug)]
pub struct TaskRow<'a> {
    /// Task id.
    pub id: u64,
    /// Name, or what to show instead (`-`, `(block_on)`).
    pub name: &'a str,
    /// `running`, `scheduled`, `idle`.
    pub state: &'a str,
    /// `path:line:col`.
    pub spawned_at: &'a str,
    /// Parent task id.
    pub parent: Option<u64>,
    /// Age.
    pub age: Duration,
    /// Polls.
    pub polls: u64,
    /// Time inside polls.
    pub busy: Duration,
    /// Time alive but not polled.
    pub idle: Duration,
    /// Time since the last poll ended.
    pub since_last_poll: Option<Duration>,
    /// Wakes.
    pub wakes: u64,
}

/// The aligned task table, with its header.
///
/// ```
/// use std::time::Duration;
/// use taskscope_api::format::{TaskRow, task_table};
/// let row = TaskRow {
///     id: 7, name: "handler", state: "idle", spawned_at: "src/main.rs:42:5", parent: None,
///     age: Duration::from_secs(2), polls: 3, busy: Duration::from_micros(40),
///     idle: Duration::from_secs(2), since_last_poll: None, wakes: 3,
/// };
/// let text = task_table([row]);
/// assert!(text.lines().nth(1).unwrap().contains("handler  idle   src/main.rs:42:5"));
/// ```
pub fn task_table<'a>(rows: impl IntoIterator<Item = TaskRow<'a>>) -> String {
    let mut cells = Cells::default();
    for t in rows {
        cells.push_fmt(format_args!("{}", t.id));
        cells.push(t.name);
        cells.push(t.state);
        cells.push(t.spawned_at);
        match t.parent {
            Some(p) => cells.push_fmt(format_args!("{p}")),
            None => cells.push("-"),
        }
        cells.push(&duration(t.age));
        cells.push_fmt(format_args!("{}", t.polls));
        cells.push(&duration(t.busy));
        cells.push(&duration(t.idle));
        match t.since_last_poll {
            Some(d) => cells.push_fmt(format_args!("{} ago", duration(d))),
            None => cells.push("never"),
        }
        cells.push_fmt(format_args!("{}", t.wakes));
        cells.end_row();
    }
    cells.lay_out(&TASK_TABLE_HEADER, &TASK_TABLE_RIGHT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(Duration::from_nanos(850)), "850ns");
        assert_eq!(duration(Duration::from_micros(850)), "850µs");
        assert_eq!(duration(Duration::from_micros(1_530)), "1.53ms");
        assert_eq!(duration(Duration::from_millis(153)), "153.0ms");
        assert_eq!(duration(Duration::from_millis(1_530)), "1.53s");
        assert_eq!(duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn every_control_character_is_made_visible_and_nothing_else() {
        for c in (0u32..0x20).chain([0x7f]).chain(0x80..0xa0) {
            let c = char::from_u32(c).unwrap();
            let shown = printable(&format!("a{c}b")).into_owned();
            assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
            assert!(
                shown.starts_with("a\\") && shown.ends_with('b'),
                "{shown:?}"
            );
        }
        assert_eq!(printable("\u{1b}[2J"), "\\x1b[2J");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(printable("\u{7f}"), "\\x7f");
        let plain = "src/main.rs:42:5 — ünïcödé, 漢字, emoji 🦀, \\ and spaces";
        assert!(matches!(printable(plain), Cow::Borrowed(_)));
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary_and_marked() {
        let long = "é".repeat(3_000); // 6,000 bytes
        let cut = truncate(&long, MAX_TEXT);
        assert!(
            cut.ends_with(" … [truncated, 6000 bytes]"),
            "{}",
            &cut[4000..]
        );
        assert_eq!(cut.len(), MAX_TEXT + " … [truncated, 6000 bytes]".len());
        assert!(matches!(
            truncate("short", MAX_TEXT),
            Cow::Borrowed("short")
        ));

        let mut w = Bounded::new(5);
        for piece in ["ab", "cé", "fgh", "ijk"] {
            w.write_str(piece).unwrap();
        }
        assert_eq!(w.finish(), "abcé … [truncated, 11 bytes]");
        let mut w = Bounded::new(5);
        w.write_str("abcde").unwrap();
        assert_eq!(w.finish(), "abcde", "exactly the bound: not cut");
        let longest = truncate(&"x".repeat(MAX_TEXT + 1), MAX_TEXT).len();
        assert!(longest <= MAX_MARKED, "{longest}");
        assert_eq!(MAX_MARKED, MAX_TEXT + 44);
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "a".into()],
                vec!["100".into(), "bb".into()],
            ],
            &[0],
        );
        assert_eq!(t, " ID  NAME\n  1  a\n100  bb\n");
    }

    /// The table as it was laid out before `Cells` (a `String` a cell):
    /// the definition the one-buffer layout must match byte for byte.
    fn table_by_definition(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
        let rows: Vec<Vec<Cow<'_, str>>> = rows
            .iter()
            .map(|row| row.iter().map(|cell| printable(cell)).collect())
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut text = String::new();
            for (i, cell) in cells.enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                if right.contains(&i) {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut header.iter().copied());
        for row in &rows {
            line(&mut row.iter().map(|cell| &**cell));
        }
        out
    }

    #[test]
    fn table_matches_its_definition() {
        // Cells that are empty, wide (multi-byte), with control characters
        // (made visible, which widens them), with trailing spaces or an
        // ideographic space (trimmed at a line's end); rows shorter than the
        // header and empty ones.
        let pieces = [
            "",
            "7",
            "12345",
            "é",
            "名前",
            "a\x1b[2Jb",
            "tab\t",
            "end  ",
            "\u{3000}",
            "\u{9b}x",
        ];
        let mut seed = 0x2545_f491_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize
        };
        for case in 0..2_000 {
            let columns = 1 + case % 4;
            let rows: Vec<Vec<String>> = (0..case % 6)
                .map(|_| {
                    (0..next() % (columns + 1))
                        .map(|_| {
                            (0..next() % 3)
                                .map(|_| pieces[next() % pieces.len()])
                                .collect()
                        })
                        .collect()
                })
                .collect();
            let header = &["ID", "NAME", "SPAWNED AT", "X"][..columns];
            let right: Vec<usize> = (0..columns).filter(|_| next() % 2 == 0).collect();
            assert_eq!(
                table(header, &rows, &right),
                table_by_definition(header, &rows, &right),
                "{header:?} {rows:?} {right:?}"
            );
        }
    }

    #[test]
    fn task_table_matches_the_table_of_its_cells() {
        let row = |id: u64, name: &'static str, parent, last: Option<Duration>| TaskRow {
            id,
            name,
            state: "idle",
            spawned_at: "src/main.rs:42:5",
            parent,
            age: Duration::from_millis(1_500),
            polls: 3,
            busy: Duration::from_micros(40),
            idle: Duration::from_millis(1_499),
            since_last_poll: last,
            wakes: 9,
        };
        let rows = [
            row(7, "handler", None, None),
            row(12_345, "a\x07b", Some(7), Some(Duration::from_millis(3))),
        ];
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.name.to_string(),
                    t.state.to_string(),
                    t.spawned_at.to_string(),
                    t.parent.map_or_else(|| "-".into(), |p| p.to_string()),
                    duration(t.age),
                    t.polls.to_string(),
                    duration(t.busy),
                    duration(t.idle),
                    t.since_last_poll
                        .map_or_else(|| "never".into(), |d| format!("{} ago", duration(d))),
                    t.wakes.to_string(),
                ]
            })
            .collect();
        assert_eq!(
            task_table(rows.clone()),
            table_by_definition(&TASK_TABLE_HEADER, &cells, &TASK_TABLE_RIGHT)
        );
    }
}
