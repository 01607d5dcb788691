//! From the raw stacks of a task's dump trace to where it waits.
//!
//! Tokio's dump gives one stack per Tokio leaf future a task reached while it
//! was re-polled in tracing mode (a `select!` or `join!` reaches several),
//! each from the leaf (innermost) out to the task's future, inlined functions
//! expanded. [`trim`] keeps what a person needs: the function of the Tokio
//! (or `futures`) primitive the app called, then the app's own frames.
//! [`PathTrim`] makes the app's paths relative like spawn locations, and
//! [`async_stack`] puts it together, with a note when something is missing.
//!
//! Pure code on frames (no Tokio): tested without a dump.

use std::collections::HashSet;

use taskscope_api::StackFrame;
use taskscope_api::waiting::{NO_TOKIO_PRIMITIVE, app_frame, is_dependency_file};

use crate::detect::symbolize::is_short_name;
use crate::detect::taskdump::stack::AsyncStack;

/// `waiting_at_note` of a stack without any of the app's frames.
pub(crate) const NO_APP_FRAME: &str = "no frame of the app's own code on it: a task a library \
     spawned, or an optimized build, where Tokio's dump loses the app's async functions (they are \
     inlined into the task's root)";

/// `waiting_at_note` of a stack whose frames are named without their paths.
pub(crate) const SHORT_NAMES: &str = "frames named without their paths (`recv`, \
     `{async_fn#0}`): the binary's debug info is line tables only (`debug = \"line-tables-only\"`); \
     `debug = \"limited\"` in the profile names them in full (files and lines are right either way)";

/// `tokio::sync::mpsc::bounded::Receiver<T>::recv::{{closure}}::h66d4a52ba6ebadac`
/// → `tokio::sync::mpsc::bounded::Receiver::recv`;
/// `<tokio::time::sleep::Sleep as core::future::future::Future>::poll::h…`
/// → `<tokio::time::sleep::Sleep as Future>::poll`.
pub(crate) fn clean_function(name: &str) -> String {
    let name = strip_hash(name);
    let mut out = String::with_capacity(name.len());
    let chars: Vec<char> = name.chars().collect();
    let mut i = 0;
    // `<X as Trait>` heads open at the start of a path segment; generic
    // arguments (`Receiver<T>`) open after a name and are dropped.
    let mut qualified = 0usize;
    while i < chars.len() {
        let c = chars[i];
        if c == '<' {
            let segment_start = out.is_empty() || out.ends_with("::") || out.ends_with('<');
            if segment_start {
                qualified += 1;
                out.push('<');
                i += 1;
                continue;
            }
            let mut depth = 0usize;
            while i < chars.len() {
                match chars[i] {
                    '<' => depth += 1,
                    '>' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '>' {
            qualified = qualified.saturating_sub(1);
        }
        out.push(c);
        i += 1;
    }
    out.replace("::{{closure}}", "")
        .replace("core::future::future::Future", "Future")
}

fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

/// Where a frame's code comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The app: any code that is not one of the below.
    App,
    /// Tokio's and `futures`' primitives: what a task waits on.
    Primitive,
    /// Another dependency (hyper, tonic, …).
    Library,
    /// The standard library, Tokio's runtime, taskscope itself, tracing.
    Plumbing,
}

/// The crate of a cleaned function name; for `<X as T>::f`, the crate of `X`.
fn crate_of(function: &str) -> &str {
    let path = function.strip_prefix('<').unwrap_or(function);
    let end = path.find("::").unwrap_or(path.len());
    path[..end]
        .trim_start_matches(['&', '*', '[', '('])
        .trim_start_matches("mut ")
}

/// `(crate, path inside the crate)` of a dependency's file:
/// `…/tokio-1.54.1/src/sync/mpsc/chan.rs` → `("tokio", "src/sync/mpsc/chan.rs")`.
fn dependency_crate(file: &str) -> Option<(&str, &str)> {
    let rest = taskscope_api::waiting::dependency_path(file)?;
    let (dir, path) = rest.split_once('/').unwrap_or((rest, ""));
    let name = match dir.rfind('-') {
        Some(i) if dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => &dir[..i],
        _ => dir,
    };
    Some((name, path))
}

const PLUMBING_CRATES: &[&str] = &[
    "core",
    "std",
    "alloc",
    "backtrace",
    "taskscope",
    "tracing",
    "tracing_core",
    "tracing-core",
    "tracing-futures",
    "pin_project_lite",
    "pin-project-lite",
];

fn is_primitive_crate(name: &str) -> bool {
    name == "tokio"
        || name == "futures"
        || name.starts_with("futures-")
        || name.starts_with("futures_")
}

fn tokio_plumbing_path(path: &str) -> bool {
    ["src/runtime/", "src/util/", "src/loom/", "src/macros/"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// Where a frame comes from: by its source file first (optimized builds with
/// `debug = "line-tables-only"` name inlined frames by their last segment
/// only, `recv` or `{closure#0}`), by its function's path otherwise.
pub(crate) fn origin(frame: &StackFrame) -> Origin {
    let file = frame.file.as_deref().unwrap_or("");
    let function = frame.function.as_str();
    let fn_crate = crate_of(function);
    // taskscope's own unit tests stand for an app.
    if fn_crate == "taskscope" && function.contains("::tests::") {
        return Origin::App;
    }
    if file.starts_with("/rustc/") {
        return Origin::Plumbing;
    }
    if let Some((krate, path)) = dependency_crate(file) {
        if function.contains("::")
            && fn_crate.replace('_', "-") != krate.replace('_', "-")
            && !PLUMBING_CRATES.contains(&fn_crate)
        {
            // The app's function, whose code here comes from a dependency's
            // macro (`tokio::select!`): its own line follows further out.
            return Origin::Plumbing;
        }
        return if PLUMBING_CRATES.contains(&krate)
            || (krate == "tokio" && tokio_plumbing_path(path))
        {
            Origin::Plumbing
        } else if is_primitive_crate(krate) {
            Origin::Primitive
        } else {
            Origin::Library
        };
    }
    if is_dependency_file(file) {
        return Origin::Library;
    }
    match fn_crate {
        c if PLUMBING_CRATES.contains(&c) => Origin::Plumbing,
        "tokio"
            if [
                "tokio::runtime::",
                "<tokio::runtime::",
                "tokio::util::",
                "<tokio::util::",
            ]
            .iter()
            .any(|p| function.starts_with(p)) =>
        {
            Origin::Plumbing
        }
        c if is_primitive_crate(c) => Origin::Primitive,
        _ if file.is_empty() => Origin::Plumbing,
        _ => Origin::App,
    }
}

/// Trims one stack (innermost first) to where the task waits: the function
/// the app called (the outermost non-app frame just inside the innermost app
/// frame: for a Tokio leaf, its public API, `Receiver::recv` rather than
/// `chan::Rx::recv`), the innermost primitive too when the app called another
/// library that waits on Tokio, then every app frame.
///
/// A stack without app frames (a task a library spawned; an optimized build)
/// keeps the innermost primitive, and the library entry around it.
pub(crate) fn trim(stack: &[StackFrame]) -> Vec<StackFrame> {
    let origins: Vec<Origin> = stack.iter().map(origin).collect();
    let first_app = origins.iter().position(|&o| o == Origin::App);
    let inner = &origins[..first_app.unwrap_or(stack.len())];
    // The outermost frame of the first run of primitive frames: the leaf's
    // public entry (`Sleep::poll` rather than `Sleep::poll_elapsed`).
    let primitive = inner
        .iter()
        .position(|&o| o == Origin::Primitive)
        .map(|start| {
            let mut end = start;
            for (i, &o) in inner.iter().enumerate().skip(start) {
                match o {
                    Origin::Primitive => end = i,
                    Origin::Plumbing => {}
                    _ => break,
                }
            }
            end
        });
    let entry = inner
        .iter()
        .rposition(|&o| matches!(o, Origin::Primitive | Origin::Library));
    let mut out = Vec::new();
    if let (Some(p), Some(e)) = (primitive, entry)
        && e != p
        && inner[e] == Origin::Library
    {
        out.push(stack[p].clone());
    }
    if let Some(e) = entry.or(primitive) {
        out.push(stack[e].clone());
    }
    if let Some(first) = first_app {
        out.extend(
            stack[first..]
                .iter()
                .zip(&origins[first..])
                .filter(|(_, o)| **o == Origin::App)
                .map(|(f, _)| f.clone()),
        );
    }
    dedup_adjacent(out)
}

/// An async fn polled from its own closure shows twice under one cleaned
/// name; keep the innermost (its line is the `.await`).
fn dedup_adjacent(frames: Vec<StackFrame>) -> Vec<StackFrame> {
    let mut out: Vec<StackFrame> = Vec::with_capacity(frames.len());
    for f in frames {
        if out
            .last()
            .is_some_and(|l| l.function == f.function && l.file == f.file)
        {
            continue;
        }
        out.push(f);
    }
    out
}

/// Makes the app's absolute source paths (from debug info) relative the way
/// spawn locations are (to the workspace root): roots are learnt from pairs of
/// paths for one file, an absolute one from a stack and a relative one from a
/// spawn location; the current directory is the last resort.
#[derive(Clone, Debug, Default)]
pub(crate) struct PathTrim {
    /// Relative source files of spawn locations (the pairs' second halves).
    known: HashSet<String>,
    /// Roots learnt, longest first.
    roots: Vec<String>,
    /// The current directory, with a trailing `/`.
    cwd: Option<String>,
}

/// The most spawn-location files a [`PathTrim`] keeps to learn from.
const MAX_KNOWN_FILES: usize = 4096;

impl PathTrim {
    /// Learns from the files of these spawn locations (relative paths).
    pub(crate) fn new<'a>(spawn_files: impl IntoIterator<Item = &'a str>) -> PathTrim {
        let known = spawn_files
            .into_iter()
            .filter(|f| !f.starts_with('/') && !f.is_empty() && !f.starts_with('<'))
            .take(MAX_KNOWN_FILES)
            .map(str::to_string)
            .collect();
        let cwd = std::env::current_dir()
            .ok()
            .map(|d| format!("{}/", d.display().to_string().trim_end_matches('/')));
        PathTrim {
            known,
            roots: Vec::new(),
            cwd,
        }
    }

    fn learn(&mut self, absolute: &str) {
        // Try every suffix of the path that starts after a '/'.
        let mut from = 0;
        while let Some(i) = absolute[from..].find('/') {
            let cut = from + i + 1;
            if self.known.contains(&absolute[cut..]) {
                let root = absolute[..cut].to_string();
                if !self.roots.contains(&root) {
                    self.roots.push(root);
                    self.roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
                }
                return;
            }
            from = cut;
        }
    }

    /// Learns from `path`, when it is an app path under no known root.
    fn consider(&mut self, path: &str) {
        if path.starts_with('/')
            && !is_dependency_file(path)
            && !self.roots.iter().any(|r| path.starts_with(r.as_str()))
        {
            self.learn(path);
        }
    }

    /// `path` relative to the app's workspace when it is under it.
    pub(crate) fn trim(&mut self, path: &str) -> String {
        if !path.starts_with('/') || is_dependency_file(path) {
            return path.to_string();
        }
        self.consider(path);
        self.roots
            .iter()
            .chain(self.cwd.as_ref())
            .find_map(|r| path.strip_prefix(r.as_str()))
            .unwrap_or(path)
            .to_string()
    }

    fn apply(&mut self, frames: &mut [StackFrame]) {
        // Learn from every frame first: the frame that teaches the root may
        // come after one that needs it.
        for f in frames.iter() {
            if let Some(file) = &f.file {
                self.consider(file);
            }
        }
        for f in frames {
            if let Some(file) = &f.file {
                f.file = Some(self.trim(file));
            }
        }
    }
}

/// Where a task waits, from the raw stacks of its dump trace (innermost
/// first each, names as the debug info has them).
pub(crate) fn async_stack(raw: Vec<Vec<StackFrame>>, paths: &mut PathTrim) -> AsyncStack {
    let mut stacks: Vec<Vec<StackFrame>> = raw
        .into_iter()
        .map(|stack| {
            let cleaned: Vec<StackFrame> = stack
                .into_iter()
                .map(|f| StackFrame {
                    function: clean_function(&f.function),
                    ..f
                })
                .collect();
            let mut trimmed = trim(&cleaned);
            paths.apply(&mut trimmed);
            trimmed
        })
        .filter(|s| !s.is_empty())
        .collect();
    if stacks.is_empty() {
        return AsyncStack::missing(NO_TOKIO_PRIMITIVE);
    }
    let waiting_at = stacks.remove(0);
    let mut notes = Vec::new();
    if app_frame(&waiting_at).is_none() {
        notes.push(NO_APP_FRAME.to_string());
    }
    if waiting_at.iter().any(|f| is_short_name(&f.function)) {
        notes.push(SHORT_NAMES.to_string());
    }
    if !stacks.is_empty() {
        notes.push(format!(
            "it waits at {} places at once (a select! or join!); this is the first",
            stacks.len() + 1
        ));
    }
    AsyncStack {
        waiting_at,
        also: stacks,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKIO: &str = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1";
    const CORE: &str = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src";

    fn f(function: &str, file: &str, line: u32) -> StackFrame {
        StackFrame {
            function: function.into(),
            file: Some(file.into()),
            line: Some(line),
        }
    }

    fn texts(frames: &[StackFrame]) -> Vec<String> {
        frames.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn names_lose_hash_generics_and_closures() {
        assert_eq!(
            clean_function(
                "tokio::sync::mpsc::bounded::Receiver<T>::recv::{{closure}}::h66d4a52ba6ebadac"
            ),
            "tokio::sync::mpsc::bounded::Receiver::recv"
        );
        assert_eq!(
            clean_function(
                "<tokio::time::sleep::Sleep as core::future::future::Future>::poll::h679f2e60c62976e5"
            ),
            "<tokio::time::sleep::Sleep as Future>::poll"
        );
        assert_eq!(
            clean_function(
                "<core::future::poll_fn::PollFn<F> as core::future::future::Future>::poll"
            ),
            "<core::future::poll_fn::PollFn as Future>::poll"
        );
        assert_eq!(
            clean_function("app::worker::hnot-a-hash"),
            "app::worker::hnot-a-hash"
        );
    }

    #[test]
    fn classifies_by_file_first() {
        let origin_of = |function: &str, file: &str| origin(&f(function, file, 1));
        assert_eq!(
            origin_of("recv", &format!("{TOKIO}/src/sync/mpsc/chan.rs")),
            Origin::Primitive
        );
        assert_eq!(
            origin_of("poll", &format!("{TOKIO}/src/runtime/task/harness.rs")),
            Origin::Plumbing
        );
        assert_eq!(
            origin_of("poll", &format!("{CORE}/future/poll_fn.rs")),
            Origin::Plumbing
        );
        assert_eq!(
            origin_of("app::run", &format!("{TOKIO}/src/macros/select.rs")),
            Origin::Plumbing
        );
        assert_eq!(
            origin_of(
                "hyper::proto::h1::dispatch::Dispatcher::poll",
                "/root/.cargo/registry/src/index.crates.io-x/hyper-1.6.0/src/proto/h1/dispatch.rs"
            ),
            Origin::Library
        );
        assert_eq!(
            origin_of(
                "futures_channel::mpsc::Receiver::poll_next",
                "/root/.cargo/registry/src/index.crates.io-x/futures-channel-0.3.31/src/mpsc/mod.rs"
            ),
            Origin::Primitive
        );
        assert_eq!(origin_of("app::run", "/work/app/src/main.rs"), Origin::App);
        assert_eq!(
            origin_of("{async_fn#0}", "/work/app/src/main.rs"),
            Origin::App
        );
        assert_eq!(
            origin_of(
                "taskscope::tracked::Tracked::poll",
                "/work/ts/instrument/src/tracked.rs"
            ),
            Origin::Plumbing
        );
        assert_eq!(
            origin_of(
                "taskscope::detect::tests::worker",
                "/work/ts/instrument/src/detect/tests.rs"
            ),
            Origin::App
        );
    }

    /// A debug build's stack of `rx.recv().await` at src/worker.rs:41, as
    /// Tokio 1.54.1 gives it (names cleaned).
    fn recv_stack(app_root: &str) -> Vec<StackFrame> {
        vec![
            f(
                "tokio::sync::mpsc::chan::Rx::recv",
                &format!("{TOKIO}/src/sync/mpsc/chan.rs"),
                308,
            ),
            f(
                "tokio::sync::mpsc::bounded::Receiver::recv",
                &format!("{TOKIO}/src/sync/mpsc/bounded.rs"),
                245,
            ),
            f(
                "<core::future::poll_fn::PollFn as Future>::poll",
                &format!("{CORE}/future/poll_fn.rs"),
                151,
            ),
            f(
                "tokio::sync::mpsc::bounded::Receiver::recv",
                &format!("{TOKIO}/src/sync/mpsc/bounded.rs"),
                245,
            ),
            f("app::worker::run", &format!("{app_root}src/worker.rs"), 41),
            f("app::main", &format!("{app_root}src/main.rs"), 12),
        ]
    }

    #[test]
    fn keeps_the_primitive_the_app_called_and_the_app_frames() {
        let mut paths = PathTrim::new(["src/main.rs"]);
        let stack = async_stack(vec![recv_stack("/work/app/")], &mut paths);
        assert_eq!(
            texts(&stack.waiting_at),
            [
                format!(
                    "tokio::sync::mpsc::bounded::Receiver::recv ({TOKIO}/src/sync/mpsc/bounded.rs:245)"
                ),
                "app::worker::run (src/worker.rs:41)".to_string(),
                "app::main (src/main.rs:12)".to_string(),
            ]
        );
        assert_eq!(stack.note, None);
        assert_eq!(
            taskscope_api::waiting::warning_suffix(&stack.waiting_at, None),
            "; waiting at src/worker.rs:41"
        );
    }

    #[test]
    fn a_library_between_app_and_tokio_keeps_both_the_library_entry_and_the_primitive() {
        let hyper = "/root/.cargo/registry/src/index.crates.io-x/hyper-1.6.0/src";
        let stack = vec![
            f(
                "<tokio::net::tcp::stream::TcpStream as tokio::io::AsyncRead>::poll_read",
                &format!("{TOKIO}/src/net/tcp/stream.rs"),
                1,
            ),
            f(
                "hyper::proto::h1::io::Buffered::poll_read_from_io",
                &format!("{hyper}/proto/h1/io.rs"),
                2,
            ),
            f(
                "hyper::server::conn::http1::Connection::poll",
                &format!("{hyper}/server/conn/http1.rs"),
                3,
            ),
            f("app::serve", "src/server.rs", 30),
        ];
        let trimmed = trim(&stack);
        let names: Vec<&str> = trimmed.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(
            names,
            [
                "<tokio::net::tcp::stream::TcpStream as tokio::io::AsyncRead>::poll_read",
                "hyper::server::conn::http1::Connection::poll",
                "app::serve",
            ]
        );
    }

    #[test]
    fn notes_say_what_is_missing() {
        let mut paths = PathTrim::new([]);
        let none = async_stack(vec![], &mut paths);
        assert!(none.waiting_at.is_empty());
        assert_eq!(none.note.as_deref(), Some(NO_TOKIO_PRIMITIVE));

        // An optimized build: only Tokio's frames are left.
        let release = vec![f(
            "{closure#0}",
            &format!("{TOKIO}/src/sync/mpsc/bounded.rs"),
            245,
        )];
        let stack = async_stack(vec![release], &mut paths);
        assert_eq!(stack.waiting_at.len(), 1);
        assert_eq!(
            stack.note.as_deref(),
            Some(format!("{NO_APP_FRAME}; {SHORT_NAMES}").as_str())
        );

        // The same with `debug = "limited"`: named in full, nothing more to say.
        let limited = vec![f(
            "tokio::sync::mpsc::bounded::Receiver<T>::recv::{{closure}}",
            &format!("{TOKIO}/src/sync/mpsc/bounded.rs"),
            245,
        )];
        let stack = async_stack(vec![limited], &mut paths);
        assert_eq!(
            texts(&stack.waiting_at),
            [format!(
                "tokio::sync::mpsc::bounded::Receiver::recv ({TOKIO}/src/sync/mpsc/bounded.rs:245)"
            )]
        );
        assert_eq!(stack.note.as_deref(), Some(NO_APP_FRAME));

        // Line tables only, with the app's frames: they are kept, and the note says why
        // their names are short.
        let app = vec![
            f("recv", &format!("{TOKIO}/src/sync/mpsc/bounded.rs"), 245),
            f("{async_fn#0}", "/w/src/worker.rs", 41),
            f("app::main", "/w/src/main.rs", 9),
        ];
        let stack = async_stack(vec![app], &mut paths);
        assert_eq!(stack.note.as_deref(), Some(SHORT_NAMES));
        assert!(is_short_name("{closure#0}") && is_short_name("recv"));
        assert!(!is_short_name(
            "<tokio::time::sleep::Sleep as Future>::poll"
        ));
        assert!(!is_short_name("app::worker"));

        // A select!: one stack a branch.
        let stack = async_stack(vec![recv_stack("/w/"), recv_stack("/w/")], &mut paths);
        assert_eq!(stack.also.len(), 1);
        assert!(stack.note.unwrap().contains("2 places at once"));
    }

    #[test]
    fn paths_become_relative_like_spawn_locations() {
        let mut paths = PathTrim::new(["tests/src/bin/app.rs"]);
        // Learnt from a pair: the workspace root, not the current directory.
        assert_eq!(
            paths.trim("/work/ws/tests/src/bin/app.rs"),
            "tests/src/bin/app.rs"
        );
        assert_eq!(paths.trim("/work/ws/tests/src/lib.rs"), "tests/src/lib.rs");
        // Dependencies and relative paths stay as they are.
        let dep = format!("{TOKIO}/src/time/sleep.rs");
        assert_eq!(paths.trim(&dep), dep);
        assert_eq!(paths.trim("src/main.rs"), "src/main.rs");
        // Elsewhere: unchanged (unless under the current directory).
        assert_eq!(paths.trim("/elsewhere/x.rs"), "/elsewhere/x.rs");
    }
}
