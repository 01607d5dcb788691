//! Stacks as a person reads them: the app's frames stand out, each run of the
//! runtime's frames under them ([`StackFrame::is_runtime_plumbing`]: the
//! standard library, the C library, Tokio, `tracing`, `futures`, taskscope)
//! folds into one line, and source paths are shortened. The live view and
//! `taskscope report`'s text both show stacks this way; the report's JSON
//! keeps every frame with its full path.
//!
//! ```
//! use taskscope_api::StackFrame;
//! use taskscope_api::stack::{StackLine, fold, short_path};
//!
//! let frame = |function: &str, file: &str| StackFrame {
//!     function: function.into(),
//!     file: Some(file.into()),
//!     line: Some(1),
//! };
//! let stack = [
//!     frame("__GI___clock_nanosleep", "./time/../sysdeps/unix/sysv/linux/clock_nanosleep.c"),
//!     frame("std::thread::sleep", "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/thread/functions.rs"),
//!     frame("app::load_config", "/home/me/app/src/config.rs"),
//!     frame("tokio::runtime::task::raw::poll", "/home/me/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/task/raw.rs"),
//!     frame("tokio::runtime::task::raw::RawTask::poll", "/home/me/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/task/raw.rs"),
//! ];
//! let lines = fold(&stack, false);
//! assert_eq!(lines.len(), 3);
//! assert!(matches!(lines[0], StackLine::Folded { count: 2, .. }));
//! assert!(matches!(lines[1], StackLine::Frame { index: 2, .. }));
//! assert_eq!(lines[2].to_string(), "… 2 runtime frames (tokio)");
//!
//! let roots = ["/home/me/app/"];
//! assert_eq!(short_path("/home/me/app/src/config.rs", &roots), "src/config.rs");
//! assert_eq!(short_path(stack[3].file.as_deref().unwrap(), &roots), "tokio-1.54.1/src/runtime/task/raw.rs");
//! assert_eq!(short_path(stack[1].file.as_deref().unwrap(), &roots), "std/src/thread/functions.rs");
//! ```

use std::fmt;

use crate::findings::StackFrame;

/// What a frame is, for showing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// The app's own code: what stands out.
    App,
    /// Another crate the app uses (its source is in Cargo's registry or a git
    /// checkout), not one of the runtime's.
    Library,
    /// The runtime's ([`StackFrame::is_runtime_plumbing`]).
    Runtime,
}

impl FrameKind {
    /// The kind of `frame`.
    pub fn of(frame: &StackFrame) -> FrameKind {
        if frame.is_runtime_plumbing() {
            FrameKind::Runtime
        } else if frame
            .file
            .as_deref()
            .is_some_and(|f| f.contains("/registry/src/") || f.contains("/git/checkouts/"))
        {
            FrameKind::Library
        } else {
            FrameKind::App
        }
    }
}

/// One line of a stack as shown: a frame, or a run of runtime frames folded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackLine<'a> {
    /// One frame.
    Frame {
        /// Its position in the stack (0 = innermost), as in the report's JSON.
        index: usize,
        /// The frame.
        frame: &'a StackFrame,
        /// What it is.
        kind: FrameKind,
    },
    /// Consecutive runtime frames, folded.
    Folded {
        /// Position of the first of them.
        first: usize,
        /// How many.
        count: usize,
        /// The runtime parts they belong to ([`StackFrame::runtime_crate`]),
        /// in the order they first appear.
        parts: Vec<&'static str>,
    },
}

impl fmt::Display for StackLine<'_> {
    /// A frame as [`StackFrame`] shows it; a fold as `… 33 runtime frames (tokio, std)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackLine::Frame { frame, .. } => write!(f, "{frame}"),
            StackLine::Folded { count, parts, .. } => {
                let noun = if *count == 1 { "frame" } else { "frames" };
                write!(f, "… {count} runtime {noun}")?;
                if !parts.is_empty() {
                    write!(f, " ({})", parts.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// `stack` as lines: with `unfold`, every frame; otherwise each run of two or
/// more runtime frames folds into one line (a lone runtime frame takes a line
/// either way, so it is shown). A stack with no frame of the app or its other
/// crates is shown whole: folding would leave nothing.
pub fn fold(stack: &[StackFrame], unfold: bool) -> Vec<StackLine<'_>> {
    let kinds: Vec<FrameKind> = stack.iter().map(FrameKind::of).collect();
    if unfold || kinds.iter().all(|k| *k == FrameKind::Runtime) {
        return stack
            .iter()
            .zip(kinds)
            .enumerate()
            .map(|(index, (frame, kind))| StackLine::Frame { index, frame, kind })
            .collect();
    }
    let mut out = Vec::new();
    let mut index = 0;
    while index < stack.len() {
        let run = kinds[index..]
            .iter()
            .take_while(|k| **k == FrameKind::Runtime)
            .count();
        if run >= 2 {
            let mut parts: Vec<&'static str> = Vec::new();
            for frame in &stack[index..index + run] {
                if let Some(part) = frame.runtime_crate()
                    && !parts.contains(&part)
                {
                    parts.push(part);
                }
            }
            out.push(StackLine::Folded {
                first: index,
                count: run,
                parts,
            });
            index += run;
        } else {
            out.push(StackLine::Frame {
                index,
                frame: &stack[index],
                kind: kinds[index],
            });
            index += 1;
        }
    }
    out
}

/// A source path, short: relative to the first of `roots` (the app's source
/// roots, see [`source_root`]) it is inside; from the crate's directory for
/// a crate in Cargo's registry (`~/.cargo/registry/src/index…/tokio-1.54.1/src/…`
/// → `tokio-1.54.1/src/…`) or a git checkout (`~/.cargo/git/checkouts/repo-hash/rev/…`
/// → `…`); from the library for the standard library's sources
/// (`/rustc/<hash>/library/std/…` → `std/…`). Anything else as it is.
pub fn short_path<'a, R: AsRef<str>>(file: &'a str, roots: &[R]) -> &'a str {
    for root in roots {
        let root = root.as_ref();
        if !root.is_empty()
            && let Some(rest) = file.strip_prefix(root)
            && !rest.is_empty()
        {
            return rest;
        }
    }
    if let Some((_, rest)) = file.split_once("/registry/src/") {
        // Past the index's directory.
        if let Some((_, rest)) = rest.split_once('/') {
            return rest;
        }
    }
    if let Some((_, rest)) = file.split_once("/git/checkouts/") {
        // Past the checkout's directory and the revision's.
        if let Some(rest) = rest.splitn(3, '/').nth(2) {
            return rest;
        }
    }
    if let Some(rest) = file.strip_prefix("/rustc/")
        && let Some((_, rest)) = rest.split_once('/')
    {
        return rest.strip_prefix("library/").unwrap_or(rest);
    }
    file
}

/// The directory the app's relative source paths start from, found from a
/// stack and one relative path of the app (a task's spawn location
/// `viewer/src/demo.rs:96:13`, as `#[track_caller]` gives it, relative to the
/// app's workspace). `None` when the location is absolute or nothing in the
/// stack places it.
///
/// A frame whose file ends with the location's path gives the directory
/// before it (`/work/app/` for `/work/app/viewer/src/demo.rs`). Failing that,
/// a frame of the app (not the runtime's, not in Cargo's registry) whose path
/// holds the location's first directory gives the directory before the last
/// place it does (`/work/app/` for `/work/app/viewer/src/main.rs` and
/// `viewer/src/demo.rs`).
///
/// ```
/// use taskscope_api::StackFrame;
/// use taskscope_api::stack::source_root;
/// let frame = |file: &str| StackFrame { function: "app::f".into(), file: Some(file.into()), line: Some(1) };
/// let stack = [frame("/work/app/viewer/src/config.rs"), frame("/work/app/viewer/src/demo.rs")];
/// assert_eq!(source_root(&stack, "viewer/src/demo.rs:96:13"), Some("/work/app/"));
/// assert_eq!(source_root(&stack[..1], "viewer/src/demo.rs:96:13"), Some("/work/app/"));
/// assert_eq!(source_root(&stack, "/abs/src/main.rs:1:1"), None);
/// ```
pub fn source_root<'a>(stack: &'a [StackFrame], location: &str) -> Option<&'a str> {
    let path = location_path(location);
    if path.is_empty() || path.starts_with('/') {
        return None;
    }
    let files = || stack.iter().filter_map(|f| f.file.as_deref());
    for file in files() {
        if let Some(root) = file.strip_suffix(path)
            && root.ends_with('/')
        {
            return Some(root);
        }
    }
    let first = path.split('/').next().filter(|_| path.contains('/'))?;
    let needle = format!("/{first}/");
    for (frame, file) in stack.iter().filter_map(|f| Some((f, f.file.as_deref()?))) {
        if FrameKind::of(frame) != FrameKind::App || !file.starts_with('/') {
            continue;
        }
        if let Some(at) = file.rfind(&needle) {
            return Some(&file[..at + 1]);
        }
    }
    None
}

/// The path of a `path:line:col` location (the whole text when it has no
/// line and column).
pub fn location_path(location: &str) -> &str {
    let mut parts = location.rsplitn(3, ':');
    let col = parts.next();
    let line = parts.next();
    match (parts.next(), line, col) {
        (Some(path), Some(line), Some(col))
            if line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok() =>
        {
            path
        }
        _ => location,
    }
}

/// `function (file:line)` as [`StackFrame`] shows it, with the file
/// shortened ([`short_path`]).
pub fn frame_text<R: AsRef<str>>(frame: &StackFrame, roots: &[R]) -> String {
    match (&frame.file, frame.line) {
        (Some(file), Some(line)) => {
            format!("{} ({}:{line})", frame.function, short_path(file, roots))
        }
        (Some(file), None) => format!("{} ({})", frame.function, short_path(file, roots)),
        _ => frame.function.clone(),
    }
}

/// The app's source roots, learnt from stacks (at most [`SourceRoots::MAX`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceRoots {
    roots: Vec<String>,
}

impl SourceRoots {
    /// The most roots kept: an app has one workspace, seldom more.
    pub const MAX: usize = 8;

    /// Learns the root `stack` shows for `location` ([`source_root`]), if any.
    pub fn learn(&mut self, stack: &[StackFrame], location: &str) {
        if let Some(root) = source_root(stack, location)
            && self.roots.len() < Self::MAX
            && !self.roots.iter().any(|r| r == root)
        {
            self.roots.push(root.to_owned());
        }
    }

    /// The roots learnt, oldest first.
    pub fn as_slice(&self) -> &[String] {
        &self.roots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: Option<&str>) -> StackFrame {
        StackFrame {
            function: function.into(),
            file: file.map(str::to_owned),
            line: Some(7),
        }
    }

    const REG: &str = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";

    /// The demo's stuck poll as the issue saw it: libc and std above the
    /// app's two frames, Tokio, tracing, core and std below.
    fn demo_stack() -> Vec<StackFrame> {
        let rustc = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";
        let tokio = format!("{REG}/tokio-1.54.1/src/runtime/task/core.rs");
        let tracing = format!("{REG}/tracing-0.1.44/src/instrument.rs");
        vec![
            frame(
                "__GI___clock_nanosleep",
                Some("./time/../sysdeps/unix/sysv/linux/clock_nanosleep.c"),
            ),
            frame(
                "std::sys::thread::unix::sleep",
                Some(&format!("{rustc}/std/src/sys/thread/unix.rs")),
            ),
            frame(
                "std::thread::functions::sleep",
                Some(&format!("{rustc}/std/src/thread/functions.rs")),
            ),
            frame(
                "taskscope_viewer::demo::stuck_poll",
                Some("/work/wt/views/viewer/src/demo.rs"),
            ),
            frame(
                "taskscope_viewer::demo::app::{{closure}}::{{closure}}",
                Some("/work/wt/views/viewer/src/demo.rs"),
            ),
            frame(
                "<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll",
                Some(&tracing),
            ),
            frame(
                "tokio::runtime::task::core::Core<T,S>::poll::{{closure}}",
                Some(&tokio),
            ),
            frame(
                "<core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once",
                Some(&format!("{rustc}/core/src/panic/unwind_safe.rs")),
            ),
            frame("__rust_try", None),
            frame(
                "std::panicking::catch_unwind",
                Some(&format!("{rustc}/std/src/panicking.rs")),
            ),
            frame("start_thread", Some("./nptl/pthread_create.c")),
            frame("clone3", None),
        ]
    }

    #[test]
    fn runtime_frames_of_every_part_are_told_apart_from_the_apps() {
        let parts: Vec<Option<&str>> = demo_stack().iter().map(|f| f.runtime_crate()).collect();
        assert_eq!(
            parts,
            [
                Some("libc"),
                Some("std"),
                Some("std"),
                None,
                None,
                Some("tracing"),
                Some("tokio"),
                Some("std"),
                Some("std"),
                Some("std"),
                Some("libc"),
                Some("libc"),
            ]
        );
        for (function, part) in [
            (
                "<futures_util::future::Map<Fut,F> as core::future::future::Future>::poll",
                "futures",
            ),
            (
                "<taskscope::tracked::Tracked<F> as core::future::future::Future>::poll",
                "taskscope",
            ),
            ("<&mut F as core::future::future::Future>::poll", "std"),
            ("tracing_subscriber::layer::Layered<L,S>::enter", "tracing"),
            (
                "<alloc::boxed::Box<F,A> as core::future::future::Future>::poll",
                "std",
            ),
        ] {
            assert_eq!(
                frame(function, None).runtime_crate(),
                Some(part),
                "{function}"
            );
        }
        // An app's own type implementing a std trait is the app's.
        assert_eq!(
            frame("<app::Conn as core::future::future::Future>::poll", None).runtime_crate(),
            None
        );
        // A crate of the registry that is not the runtime's: a library.
        let hyper = frame(
            "hyper::proto::h1::dispatch::Dispatcher::poll",
            Some(&format!("{REG}/hyper-1.5.0/src/proto/h1/dispatch.rs")),
        );
        assert_eq!(FrameKind::of(&hyper), FrameKind::Library);
        // A bare address (the demo's cpu_hog, sampled in the clock's vDSO)
        // is not where the app blocked: the app's frame under it is.
        let hog = [
            frame("0x7f58e94c3b46", None),
            frame("app::cpu_hog", Some("/app/src/main.rs")),
        ];
        assert_eq!(hog[0].runtime_crate(), Some("unknown"));
        assert_eq!(
            crate::blocking_frame(&hog).map(|f| f.function.as_str()),
            Some("app::cpu_hog")
        );
        // Without a name path, the crate's registry directory tells.
        let inlined = frame(
            "poll_inner",
            Some(&format!("{REG}/tokio-1.54.1/src/lib.rs")),
        );
        assert_eq!(inlined.runtime_crate(), Some("tokio"));
    }

    #[test]
    fn runs_of_runtime_frames_fold_and_the_apps_frames_stay() {
        let stack = demo_stack();
        let lines = fold(&stack, false);
        let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(text.len(), 4, "{text:#?}");
        assert_eq!(text[0], "… 3 runtime frames (libc, std)");
        assert!(text[1].starts_with("taskscope_viewer::demo::stuck_poll ("));
        assert!(text[2].starts_with("taskscope_viewer::demo::app::{{closure}}::{{closure}}"));
        assert_eq!(text[3], "… 7 runtime frames (tracing, tokio, std, libc)");
        assert!(matches!(
            lines[1],
            StackLine::Frame {
                index: 3,
                kind: FrameKind::App,
                ..
            }
        ));
        assert!(matches!(
            lines[3],
            StackLine::Folded {
                first: 5,
                count: 7,
                ..
            }
        ));

        // Unfolded: every frame, in order.
        let all = fold(&stack, true);
        assert_eq!(all.len(), stack.len());
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, l)| matches!(l, StackLine::Frame { index, .. } if *index == i))
        );

        // A lone runtime frame between app frames is shown, not folded.
        let lone = [
            frame("app::a", Some("/app/src/a.rs")),
            frame("std::thread::sleep", None),
            frame("app::b", Some("/app/src/b.rs")),
        ];
        assert_eq!(fold(&lone, false).len(), 3);
        // Nothing but the runtime: shown whole.
        let runtime_only = &stack[5..];
        assert_eq!(fold(runtime_only, false).len(), runtime_only.len());
        assert!(fold(&[], false).is_empty());
    }

    #[test]
    fn paths_are_shortened_and_roots_found_from_spawn_locations() {
        let stack = demo_stack();
        let root = source_root(&stack, "viewer/src/demo.rs:110:13");
        assert_eq!(root, Some("/work/wt/views/"));
        let roots = [root.unwrap()];
        let short: Vec<&str> = stack
            .iter()
            .filter_map(|f| f.file.as_deref())
            .map(|f| short_path(f, &roots))
            .collect();
        assert_eq!(
            short[0],
            "./time/../sysdeps/unix/sysv/linux/clock_nanosleep.c"
        );
        assert_eq!(short[1], "std/src/sys/thread/unix.rs");
        assert_eq!(short[3], "viewer/src/demo.rs");
        assert_eq!(short[5], "tracing-0.1.44/src/instrument.rs");
        assert_eq!(short[6], "tokio-1.54.1/src/runtime/task/core.rs");
        assert_eq!(
            short_path(
                "/root/.cargo/git/checkouts/tokio-0f7f2b0/9e8a1c2/tokio/src/lib.rs",
                &roots
            ),
            "tokio/src/lib.rs"
        );
        assert_eq!(short_path("src/main.rs", &roots), "src/main.rs");
        assert_eq!(
            frame_text(&stack[3], &roots),
            "taskscope_viewer::demo::stuck_poll (viewer/src/demo.rs:7)"
        );

        // The spawn location's file is not in the stack: its first directory places the root.
        let other = [frame(
            "app::load",
            Some("/home/me/shop/server/src/config.rs"),
        )];
        assert_eq!(
            source_root(&other, "server/src/main.rs:4:1"),
            Some("/home/me/shop/")
        );
        // A registry crate's `src` is not the app's.
        let lib = [frame(
            "hyper::x",
            Some(&format!("{REG}/hyper-1.5.0/src/lib.rs")),
        )];
        assert_eq!(source_root(&lib, "src/main.rs:4:1"), None);
        assert_eq!(
            source_root(&stack, "main.rs:1:1"),
            None,
            "no directory to place"
        );

        let mut learnt = SourceRoots::default();
        learnt.learn(&stack, "viewer/src/demo.rs:110:13");
        learnt.learn(&stack, "viewer/src/demo.rs:96:13");
        assert_eq!(learnt.as_slice(), ["/work/wt/views/"]);
        assert_eq!(location_path("src/a.rs:1:2"), "src/a.rs");
        assert_eq!(location_path("C:/x.rs"), "C:/x.rs");
    }
}
