//! Never-awaited futures: [`track`] and [`TrackExt::tracked`] wrap a future and
//! report `never_awaited` if the wrapper is dropped without ever being polled,
//! like Python's "coroutine ... was never awaited".
//!
//! Cost: the wrapper adds a `bool`, a `&'static Location` and an optional
//! `&'static str` to the future (24 bytes on 64-bit), one store per poll, and
//! one branch on drop. Nothing is allocated unless a finding is reported. It
//! works on stable Rust without `--cfg tokio_unstable`, but findings are only
//! reported once taskscope is started.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::core;
use taskscope_api::{Finding, FindingKind};

pin_project_lite::pin_project! {
    /// A future that reports being dropped without ever having been polled.
    /// Made by [`track`], [`track_named`] or [`TrackExt`].
    #[must_use = "futures do nothing unless awaited; a Tracked future dropped unpolled is reported"]
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        polled: bool,
        created_at: &'static Location<'static>,
        name: Option<&'static str>,
    }

    impl<F> PinnedDrop for Tracked<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.polled {
                never_awaited(this.created_at, this.name.map(str::to_owned).unwrap_or_else(|| short_type_name(std::any::type_name::<F>())));
            }
        }
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        *this.polled = true;
        this.inner.poll(cx)
    }
}

impl<F> Tracked<F> {
    /// Where the future was wrapped (the `track` call).
    pub fn created_at(&self) -> &'static Location<'static> {
        self.created_at
    }
}

/// Wraps `future` so that dropping it without ever polling it is reported as
/// `never_awaited`, naming the line of this call.
///
/// ```
/// async fn fetch_user() -> u32 { 7 }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let user = taskscope::track(fetch_user()).await; // fine: awaited
/// # assert_eq!(user, 7);
/// let _forgotten = taskscope::track(fetch_user()); // dropped unpolled: reported
/// # }
/// ```
#[track_caller]
pub fn track<F: Future>(future: F) -> Tracked<F> {
    Tracked {
        inner: future,
        polled: false,
        created_at: Location::caller(),
        name: None,
    }
}

/// Like [`track`], with the name to report instead of the future's type name.
#[track_caller]
pub fn track_named<F: Future>(name: &'static str, future: F) -> Tracked<F> {
    Tracked {
        inner: future,
        polled: false,
        created_at: Location::caller(),
        name: Some(name),
    }
}

/// `.tracked()` and `.tracked_as(name)` on any future.
///
/// ```
/// use taskscope::TrackExt;
/// async fn send_email() {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// send_email().tracked().await;
/// send_email().tracked_as("welcome email").await;
/// # }
/// ```
pub trait TrackExt: Future + Sized {
    /// See [`track`].
    #[track_caller]
    fn tracked(self) -> Tracked<Self> {
        track(self)
    }

    /// See [`track_named`].
    #[track_caller]
    fn tracked_as(self, name: &'static str) -> Tracked<Self> {
        track_named(name, self)
    }
}

impl<F: Future> TrackExt for F {}

#[cold]
fn never_awaited(created_at: &'static Location<'static>, name: String) {
    let Some(core) = core::get() else { return };
    let task = crate::capture::poll::with_current(|_, cell| cell.task_ref());
    core.submit(Finding::new(
        FindingKind::NeverAwaited {
            name,
            created_at: format!(
                "{}:{}:{}",
                created_at.file(),
                created_at.line(),
                created_at.column()
            ),
        },
        task,
    ));
}

/// `app::fetch_user::{{closure}}` → `fetch_user`; `core::future::ready::Ready<u8>` → `Ready`.
pub(crate) fn short_type_name(full: &str) -> String {
    // Drop generic arguments.
    let mut base = String::with_capacity(full.len());
    let mut depth = 0usize;
    for ch in full.chars() {
        match ch {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => base.push(ch),
            _ => {}
        }
    }
    let mut parts: Vec<&str> = base.split("::").filter(|p| !p.is_empty()).collect();
    while parts.last().is_some_and(|p| p.starts_with("{{")) {
        parts.pop();
    }
    parts
        .last()
        .map_or_else(|| full.to_string(), |p| (*p).to_string())
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn type_names_are_shortened_to_the_fn() {
        assert_eq!(
            short_type_name("app::fetch_user::{{closure}}"),
            "fetch_user"
        );
        assert_eq!(
            short_type_name("core::future::ready::Ready<alloc::string::String>"),
            "Ready"
        );
        assert_eq!(short_type_name("a::b::{{closure}}::{{closure}}"), "b");
        assert_eq!(short_type_name("plain"), "plain");
    }
}
