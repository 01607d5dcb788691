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

use crate::capture::poll;
use crate::detect::never_awaited;
use crate::session;

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
                report_never_awaited(this.created_at, *this.name, std::any::type_name::<F>());
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
fn report_never_awaited(
    created_at: &'static Location<'static>,
    name: Option<&str>,
    type_name: &str,
) {
    let Some(session) = session::global() else {
        return;
    };
    let task = poll::with_current(|_, cell| cell.task_ref());
    session.submit(never_awaited::finding(created_at, name, type_name, task));
}
