//! Text forms shared by the task table and messages.

use std::time::Duration;

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
pub fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
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
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

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
    let rows: Vec<Vec<String>> = rows
        .into_iter()
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
    table(
        &[
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
        ],
        &rows,
        &[0, 4, 5, 6, 7, 8, 10],
    )
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
}
