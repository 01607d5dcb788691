//! Where a task waits: the text forms of an async stack (`waiting_at` in a
//! `leaked_task` finding, `taskscope dump --stacks`, the viewer's Detail view).
//!
//! An async stack comes from a Tokio task dump: the frames from the Tokio
//! primitive the task is waiting on (`tokio::sync::mpsc::bounded::Receiver::recv`)
//! out to the task's own future, innermost first, trimmed to the app's
//! frames plus the primitive the app called. The app's frames carry paths
//! relative to the workspace (like a spawn location); the primitive's carry
//! the path the debug info gives (in Cargo's registry, under `/rustc/`).

use crate::StackFrame;

/// `waiting_at_note` of a task whose dump reached no Tokio primitive: it
/// waits in a hand-written future or another library's (a `futures`
/// channel, a future that forgot its waker), which a Tokio task dump cannot
/// see into.
pub const NO_TOKIO_PRIMITIVE: &str = "no Tokio primitive on its stack: it waits in a hand-written or non-Tokio future, which a Tokio task dump cannot see into";

/// Whether `file` belongs to a dependency or to the Rust standard library
/// rather than to the app: under Cargo's registry or git checkouts, or a
/// `/rustc/<hash>/` path of the standard library.
///
/// ```
/// use taskscope_api::waiting::is_dependency_file;
/// assert!(is_dependency_file("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/sync/mpsc/bounded.rs"));
/// assert!(is_dependency_file("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/future/poll_fn.rs"));
/// assert!(!is_dependency_file("src/worker.rs"));
/// ```
pub fn is_dependency_file(file: &str) -> bool {
    dependency_path(file).is_some() || file.starts_with("/rustc/")
}

/// The part of a dependency's path after Cargo's registry (or git checkout)
/// directory: `…/registry/src/index.crates.io-…/tokio-1.54.1/src/time/sleep.rs`
/// → `tokio-1.54.1/src/time/sleep.rs`. `None` for other paths.
///
/// ```
/// use taskscope_api::waiting::dependency_path;
/// assert_eq!(
///     dependency_path("/home/me/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/time/sleep.rs"),
///     Some("tokio-1.54.1/src/time/sleep.rs")
/// );
/// assert_eq!(dependency_path("src/main.rs"), None);
/// ```
pub fn dependency_path(file: &str) -> Option<&str> {
    let after = ["/registry/src/", "/git/checkouts/"]
        .iter()
        .find_map(|dir| file.split_once(dir).map(|(_, rest)| rest))?;
    // `<index or repository directory>/<crate>-<version or commit>/<path>`
    after.split_once('/').map(|(_, rest)| rest)
}

/// The frame of `waiting_at` that names the app's own line: the innermost one
/// whose file is not a dependency's. `None` when the stack has no app frame
/// (a task a library spawned, or an optimized build, where Tokio's dump
/// loses the app's async functions inlined into the task).
///
/// ```
/// use taskscope_api::StackFrame;
/// use taskscope_api::waiting::app_frame;
/// let f = |function: &str, file: &str, line| StackFrame { function: function.into(), file: Some(file.into()), line: Some(line) };
/// let stack = [
///     f("tokio::sync::mpsc::bounded::Receiver::recv", "/root/.cargo/registry/src/index.crates.io-x/tokio-1.54.1/src/sync/mpsc/bounded.rs", 245),
///     f("app::worker", "src/worker.rs", 41),
/// ];
/// assert_eq!(app_frame(&stack).unwrap().line, Some(41));
/// ```
pub fn app_frame(waiting_at: &[StackFrame]) -> Option<&StackFrame> {
    waiting_at.iter().find(|f| {
        f.file
            .as_deref()
            .is_some_and(|file| !is_dependency_file(file))
    })
}

/// A frame as one short line: `function (file:line)`, a dependency's path
/// shortened to the part after Cargo's registry.
///
/// ```
/// use taskscope_api::StackFrame;
/// use taskscope_api::waiting::frame_text;
/// let frame = StackFrame {
///     function: "tokio::sync::mpsc::bounded::Receiver::recv".into(),
///     file: Some("/root/.cargo/registry/src/index.crates.io-x/tokio-1.54.1/src/sync/mpsc/bounded.rs".into()),
///     line: Some(245),
/// };
/// assert_eq!(frame_text(&frame), "tokio::sync::mpsc::bounded::Receiver::recv (tokio-1.54.1/src/sync/mpsc/bounded.rs:245)");
/// ```
pub fn frame_text(frame: &StackFrame) -> String {
    let file = frame
        .file
        .as_deref()
        .map(|f| dependency_path(f).unwrap_or(f));
    match (file, frame.line) {
        (Some(file), Some(line)) => format!("{} ({file}:{line})", frame.function),
        (Some(file), None) => format!("{} ({file})", frame.function),
        _ => frame.function.clone(),
    }
}

/// The end of a `leaked_task` warning: `; waiting at src/worker.rs:41` (the
/// app's innermost line), `; waiting in tokio::… (tokio-1.54.1/…:245)` when
/// the stack has no app frame, `; waiting in a non-Tokio future …` when the
/// dump found no Tokio primitive ([`NO_TOKIO_PRIMITIVE`]); empty when nothing
/// is known (no dump: the reason is in the finding's `waiting_at_note`).
///
/// ```
/// use taskscope_api::StackFrame;
/// use taskscope_api::waiting::{NO_TOKIO_PRIMITIVE, warning_suffix};
/// let at = |file: &str, line| StackFrame { function: "f".into(), file: Some(file.into()), line: Some(line) };
/// assert_eq!(warning_suffix(&[at("src/worker.rs", 41)], None), "; waiting at src/worker.rs:41");
/// assert_eq!(
///     warning_suffix(&[], Some(NO_TOKIO_PRIMITIVE)),
///     "; waiting in a non-Tokio future (no Tokio primitive on its stack)"
/// );
/// assert_eq!(warning_suffix(&[], Some("taskscope was built without its taskdump feature")), "");
/// ```
pub fn warning_suffix(waiting_at: &[StackFrame], note: Option<&str>) -> String {
    if let Some(frame) = app_frame(waiting_at) {
        let file = frame.file.as_deref().unwrap_or("?");
        return match frame.line {
            Some(line) => format!("; waiting at {file}:{line}"),
            None => format!("; waiting at {file}"),
        };
    }
    if let Some(first) = waiting_at.first() {
        return format!("; waiting in {}", frame_text(first));
    }
    if note == Some(NO_TOKIO_PRIMITIVE) {
        return "; waiting in a non-Tokio future (no Tokio primitive on its stack)".into();
    }
    String::new()
}

/// An async stack as lines of text, for a person: one frame a line
/// ([`frame_text`]), innermost first; then `or at …` with the innermost frame
/// of each other place it waits at once (the other branches of a `select!`);
/// then the note in parentheses, when there is one.
///
/// ```
/// use taskscope_api::StackFrame;
/// use taskscope_api::waiting::stack_lines;
/// let at = |function: &str, line| StackFrame { function: function.into(), file: Some("src/main.rs".into()), line: Some(line) };
/// assert_eq!(
///     stack_lines(&[at("app::worker", 41)], &[vec![at("app::timer", 44)]], Some("two places")),
///     ["app::worker (src/main.rs:41)", "or at app::timer (src/main.rs:44)", "(two places)"]
/// );
/// ```
pub fn stack_lines(
    waiting_at: &[StackFrame],
    also: &[Vec<StackFrame>],
    note: Option<&str>,
) -> Vec<String> {
    let mut lines: Vec<String> = waiting_at.iter().map(frame_text).collect();
    lines.extend(
        also.iter()
            .filter_map(|stack| stack.first())
            .map(|f| format!("or at {}", frame_text(f))),
    );
    if let Some(note) = note {
        lines.push(format!("({note})"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str, line: u32) -> StackFrame {
        StackFrame {
            function: function.into(),
            file: Some(file.into()),
            line: Some(line),
        }
    }

    #[test]
    fn the_suffix_names_the_app_line_else_the_primitive() {
        let recv = frame(
            "tokio::sync::mpsc::bounded::Receiver::recv",
            "/root/.cargo/registry/src/index.crates.io-x/tokio-1.54.1/src/sync/mpsc/bounded.rs",
            245,
        );
        let app = frame("app::worker", "src/worker.rs", 41);
        assert_eq!(
            warning_suffix(&[recv.clone(), app], None),
            "; waiting at src/worker.rs:41"
        );
        assert_eq!(
            warning_suffix(&[recv], None),
            "; waiting in tokio::sync::mpsc::bounded::Receiver::recv (tokio-1.54.1/src/sync/mpsc/bounded.rs:245)"
        );
        let git = "/home/u/.cargo/git/checkouts/hyper-0123/abcdef0/src/proto/h1/dispatch.rs";
        assert!(is_dependency_file(git));
        assert_eq!(
            dependency_path(git),
            Some("abcdef0/src/proto/h1/dispatch.rs")
        );
    }
}
