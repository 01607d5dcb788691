//! What the calls of all clients together may hold of the server, applied to
//! every call the server serves (in [`super::routes::Routes`], after the
//! token check, whatever service the call is for):
//!
//! - every call counts as in progress on its connection until its answer
//!   has been sent or dropped (a connection with none is idle:
//!   [`super::conn`] closes it);
//! - answers (a task listing, a task's detail: whatever is built for one
//!   call and may be big) are at most [`MAX_ANSWERS`] at once. One more is
//!   refused at once with RESOURCE_EXHAUSTED, saying so (a client tries again
//!   later); waiting instead would let clients that never read hold the queue;
//! - an answer that its client does not read for [`ANSWER_STALL`] (no part
//!   of it taken) gets its connection closed (with one line on stderr): a
//!   client that stops reading cannot keep a place for itself, while a big
//!   listing read slowly, but read, is never cut. An answer is produced as
//!   the client reads it ([`super::listing`]), so an unread one holds a few
//!   chunks, not all of them.
//!
//! Subscriptions (the Watch stream) are bounded elsewhere: at most
//! [`super::fanout::MAX_VIEWERS`], each with its bounded queue.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;
use tonic::Status;
use tonic::codegen::http;

use crate::server::conn::{ConnInfo, notice};
use crate::sync::lock;

/// Answers (task listings, task details) built or being sent at once, at most.
pub(crate) const MAX_ANSWERS: usize = 8;

/// How long an answer may wait for its client to take its next part.
pub(crate) const ANSWER_STALL: Duration = Duration::from_secs(15);

/// What kind of call a call is, for its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// A long-lived stream of updates (Watch): bounded by its service (the
    /// fan-out's [`super::fanout::MAX_VIEWERS`] for Watch).
    Stream,
    /// One answer, built for this call: counts against [`MAX_ANSWERS`] and
    /// be read, part after part, with no pause of [`ANSWER_STALL`].
    Answer,
}

/// The limits of the server's calls.
#[derive(Debug)]
pub(crate) struct Limits {
    answers: Arc<Semaphore>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            answers: Arc::new(Semaphore::new(MAX_ANSWERS)),
        }
    }
}

impl Limits {
    /// Lets a call of `kind` on `conn` in, or says why not. The guard is
    /// held until the call's answer is sent or dropped ([`CallGuard::attach`]).
    pub(crate) fn admit(
        &self,
        kind: CallKind,
        conn: Option<&ConnInfo>,
    ) -> Result<CallGuard, Status> {
        let answer = match kind {
            CallKind::Stream => None,
            CallKind::Answer => {
                let permit = Arc::clone(&self.answers).try_acquire_owned().map_err(|_| {
                    Status::resource_exhausted(format!(
                        "too many answers in progress: {MAX_ANSWERS} task listings and details \
                         are being sent to viewers (try again in a moment)"
                    ))
                })?;
                Some(AnswerSlot::new(permit, conn.cloned()))
            }
        };
        let open = conn.map(|c| {
            c.control.call_started();
            OpenCall(c.clone())
        });
        Ok(CallGuard {
            _open: open,
            answer,
        })
    }

    /// Answers in progress (for tests).
    #[cfg(test)]
    pub(crate) fn answers(&self) -> usize {
        MAX_ANSWERS - self.answers.available_permits()
    }
}

/// A call in progress: what it holds of the limits, let go when dropped.
#[derive(Debug)]
pub(crate) struct CallGuard {
    _open: Option<OpenCall>,
    answer: Option<AnswerSlot>,
}

impl CallGuard {
    /// `response`, holding this guard until its body is sent to the end or
    /// dropped.
    pub(crate) fn attach(
        self,
        response: http::Response<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body> {
        response.map(|body| tonic::body::Body::new(Guarded { body, guard: self }))
    }
}

/// A call counted as in progress on its connection.
#[derive(Debug)]
struct OpenCall(ConnInfo);

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0.control.call_ended();
    }
}

/// One of the [`MAX_ANSWERS`] places, and the watch on its answer's progress.
#[derive(Debug)]
struct AnswerSlot {
    _permit: OwnedSemaphorePermit,
    /// When the client last took a part of the answer.
    progress: Arc<Mutex<Instant>>,
    /// Dropped when the answer is done: the watch ends.
    _done: oneshot::Sender<()>,
}

impl AnswerSlot {
    fn new(permit: OwnedSemaphorePermit, conn: Option<ConnInfo>) -> AnswerSlot {
        let (done, mut dropped) = oneshot::channel::<()>();
        let progress = Arc::new(Mutex::new(Instant::now()));
        if let Some(conn) = conn {
            let progress = Arc::clone(&progress);
            tokio::spawn(async move {
                loop {
                    let last = *lock(&progress);
                    tokio::select! {
                        () = tokio::time::sleep_until(last + ANSWER_STALL) => {}
                        _ = &mut dropped => return,
                    }
                    if *lock(&progress) == last {
                        break;
                    }
                }
                if !conn.control.is_closed() {
                    let peer = conn.peer_text();
                    notice(|| {
                        format!(
                            "taskscope: closed the connection of{peer}: it did not read its \
                             answer for {} s",
                            ANSWER_STALL.as_secs()
                        )
                    });
                    conn.control.close();
                }
            });
        }
        AnswerSlot {
            _permit: permit,
            progress,
            _done: done,
        }
    }

    /// The client took a part of the answer.
    fn progressed(&self) {
        *lock(&self.progress) = Instant::now();
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds a [`CallGuard`] until it is dropped, and
    /// notes each part the client takes.
    struct Guarded {
        #[pin]
        body: tonic::body::Body,
        guard: CallGuard,
    }
}

impl Body for Guarded {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.body.poll_frame(cx);
        if let (Poll::Ready(Some(Ok(_))), Some(answer)) = (&frame, &this.guard.answer) {
            answer.progressed();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnInfo {
        ConnInfo {
            peer: None,
            control: Arc::default(),
        }
    }

    #[tokio::test]
    async fn answers_past_the_bound_are_refused_and_a_sent_one_frees_its_place() {
        let limits = Limits::default();
        let c = conn();
        let mut held: Vec<_> = (0..MAX_ANSWERS)
            .map(|_| limits.admit(CallKind::Answer, Some(&c)).unwrap())
            .collect();
        assert_eq!(limits.answers(), MAX_ANSWERS);
        let refused = limits.admit(CallKind::Answer, Some(&c)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused
                .message()
                .starts_with("too many answers in progress: 8"),
            "{refused:?}"
        );
        // Watch streams are not answers.
        let watch = limits.admit(CallKind::Stream, Some(&c)).unwrap();
        assert_eq!(c.control.idle_since(), None, "calls in progress");

        // An answer's body is dropped (sent, or its stream reset): its place is free.
        let response = held
            .pop()
            .unwrap()
            .attach(http::Response::new(tonic::body::Body::empty()));
        drop(response);
        assert_eq!(limits.answers(), MAX_ANSWERS - 1);
        assert!(limits.admit(CallKind::Answer, Some(&c)).is_ok());

        drop(held);
        drop(watch);
        assert!(c.control.idle_since().is_some(), "no call in progress");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_not_read_for_a_while_closes_its_connection_one_read_slowly_does_not() {
        let limits = Limits::default();
        let (stuck, slow) = (conn(), conn());
        let _unread = limits.admit(CallKind::Answer, Some(&stuck)).unwrap();
        let read = limits.admit(CallKind::Answer, Some(&slow)).unwrap();
        // The slow one takes a part every half stall, for three stalls.
        for _ in 0..6 {
            tokio::time::sleep(ANSWER_STALL / 2).await;
            read.answer.as_ref().unwrap().progressed();
        }
        assert!(stuck.control.is_closed(), "not read for a stall: closed");
        assert!(!slow.control.is_closed(), "read slowly, but read");
        // Then it stops reading too.
        tokio::time::sleep(ANSWER_STALL + Duration::from_millis(10)).await;
        assert!(slow.control.is_closed());
    }
}
