//! Fan-out to viewers: each viewer's bounded queue of updates, and the
//! stream that empties it. The app never waits for a viewer: its threads
//! never touch the queues, and the publisher only pushes (never waits for
//! room). A viewer whose queue is full is dropped with a reason it can show
//! ("viewer too slow: N updates behind"), and a line on the app's stderr; if
//! it still does not read (so the reason cannot even reach it) its connection
//! is closed [`CLOSE_GRACE`] later. At most [`MAX_VIEWERS`] watch at once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::Status;

use crate::server::conn::ConnInfo;
use crate::sync::lock;

/// Updates (a snapshot or a delta, each possibly several chunks) a viewer's
/// queue holds. At the publish interval that is 8 s of backlog before the
/// viewer is dropped.
pub(crate) const CLIENT_QUEUE: usize = 16;

/// Viewers watching one app at once, at most; one more is refused with
/// RESOURCE_EXHAUSTED (and its client retries later).
pub(crate) const MAX_VIEWERS: usize = 64;

/// How long a dropped viewer has to read its reason before its connection
/// is closed.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// One update, as its encoded chunks; shared by every viewer's queue.
pub(crate) type Batch = Arc<Vec<Bytes>>;

/// One viewer's queue, shared by the publisher (which fills it) and the
/// viewer's stream (which empties it). A plain mutex: both sides hold it for a
/// push or a pop, and both run on the server's one thread.
#[derive(Default)]
pub(crate) struct Queue {
    items: VecDeque<Batch>,
    /// Set when the viewer is dropped: the stream ends with it.
    killed: Option<Status>,
    /// The stream is gone (the viewer disconnected).
    closed: bool,
    /// The stream waiting for an item.
    waker: Option<Waker>,
    /// The viewer's connection.
    conn: Option<ConnInfo>,
}

impl Queue {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// One viewer: its queue, shared by the publisher and its stream.
pub(crate) type Client = Arc<Mutex<Queue>>;

/// The viewers connected to the Watch stream.
pub(crate) struct Hub {
    inner: Mutex<Viewers>,
    /// Woken when a viewer joins: its snapshot is published at once.
    pub(crate) wake: Notify,
}

#[derive(Default)]
struct Viewers {
    /// Receiving deltas.
    watching: Vec<Client>,
    /// Waiting for their snapshot.
    joining: Vec<Client>,
    /// Dropped, and when: their connection closes if they do not read.
    dropped: Vec<(Client, Instant)>,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        Hub {
            inner: Mutex::new(Viewers::default()),
            wake: Notify::new(),
        }
    }

    /// A new viewer on connection `conn`: its stream starts with a snapshot
    /// at the next publish, which comes at once (at most the publisher's `MIN_GAP` after
    /// the previous one). RESOURCE_EXHAUSTED when [`MAX_VIEWERS`] watch already.
    pub(crate) fn subscribe(&self, conn: Option<ConnInfo>) -> Result<UpdateStream, Status> {
        let queue = Client::new(Mutex::new(Queue {
            conn,
            ..Queue::default()
        }));
        {
            let mut viewers = lock(&self.inner);
            viewers.watching.retain(|c| !lock(c).closed);
            viewers.joining.retain(|c| !lock(c).closed);
            if viewers.watching.len() + viewers.joining.len() >= MAX_VIEWERS {
                return Err(Status::resource_exhausted(format!(
                    "too many viewers: {MAX_VIEWERS} watch this app already (try again later)"
                )));
            }
            viewers.joining.push(Arc::clone(&queue));
        }
        self.wake.notify_one();
        Ok(UpdateStream {
            queue,
            current: None,
            done: false,
        })
    }

    /// Dropped viewers whose connection is not closed yet.
    #[cfg(test)]
    pub(crate) fn dropped_viewers(&self) -> usize {
        lock(&self.inner).dropped.len()
    }

    /// Viewers connected (watching or about to).
    #[cfg(test)]
    pub(crate) fn viewers(&self) -> usize {
        let v = lock(&self.inner);
        v.watching.len() + v.joining.len()
    }

    /// The viewers waiting for their snapshot, taken out of the joining list
    /// (they are watching once [`Hub::welcome`] queued it), and whether
    /// others are watching. `None` when no viewer is connected at all.
    pub(crate) fn take_joining(&self) -> Option<(Vec<Client>, bool)> {
        let mut viewers = lock(&self.inner);
        viewers.watching.retain(|c| !lock(c).closed);
        if viewers.watching.is_empty() && viewers.joining.is_empty() {
            return None;
        }
        let joining = std::mem::take(&mut viewers.joining);
        Some((joining, !viewers.watching.is_empty()))
    }

    /// Queues `batch` (a delta) for every watching viewer; those that fell
    /// behind are dropped, and their connections closed later if they do not
    /// read their reason.
    pub(crate) fn broadcast(&self, batch: &Batch) {
        let mut viewers = lock(&self.inner);
        let mut dropped = Vec::new();
        viewers.watching.retain(|c| match offer(c, batch) {
            Offer::Queued => true,
            Offer::Gone => false,
            Offer::Dropped => {
                dropped.push(Arc::clone(c));
                false
            }
        });
        let at = Instant::now();
        viewers.dropped.extend(dropped.into_iter().map(|c| (c, at)));
    }

    /// Queues `batch` (a snapshot) for the viewers [`Hub::take_joining`]
    /// gave: from now on they watch.
    pub(crate) fn welcome(&self, joining: Vec<Client>, batch: &Batch) {
        let mut viewers = lock(&self.inner);
        for client in joining {
            if offer(&client, batch) == Offer::Queued {
                viewers.watching.push(client);
            }
        }
    }

    /// Closes the connections of dropped viewers that did not read their
    /// reason within [`CLOSE_GRACE`]; forgets those that did.
    pub(crate) fn close_stuck(&self, now: Instant) {
        lock(&self.inner).dropped.retain(|(client, at)| {
            let queue = lock(client);
            if queue.closed {
                return false;
            }
            if now.duration_since(*at) < CLOSE_GRACE {
                return true;
            }
            if let Some(conn) = &queue.conn {
                eprintln!(
                    "taskscope: closed the connection of viewer{}: it did not read for {} s \
                     after it was dropped",
                    conn.peer_text(),
                    CLOSE_GRACE.as_secs()
                );
                conn.control.close();
            }
            false
        });
    }
}

/// What [`offer`] did.
#[derive(Debug, PartialEq, Eq)]
enum Offer {
    /// Queued.
    Queued,
    /// The viewer is gone (or was dropped before).
    Gone,
    /// The viewer's queue was full: dropped now.
    Dropped,
}

/// Queues `batch` for `client` without waiting. A client whose queue is full
/// is dropped: its queue is emptied at once (so a stuck viewer holds no
/// memory), and its stream ends with the reason.
fn offer(client: &Client, batch: &Batch) -> Offer {
    let mut queue = lock(client);
    if queue.closed || queue.killed.is_some() {
        return Offer::Gone;
    }
    if queue.items.len() >= CLIENT_QUEUE {
        let behind = queue.items.len();
        queue.items.clear();
        let reason = format!(
            "viewer too slow: {behind} updates behind (the app does not wait for viewers; \
             reconnect for a fresh snapshot)"
        );
        let peer = queue
            .conn
            .as_ref()
            .map(ConnInfo::peer_text)
            .unwrap_or_default();
        eprintln!("taskscope: dropped viewer{peer}: {reason}");
        queue.killed = Some(Status::resource_exhausted(reason));
        queue.wake();
        return Offer::Dropped;
    }
    queue.items.push_back(Arc::clone(batch));
    queue.wake();
    Offer::Queued
}

/// The stream of one viewer: the encoded chunks of its queued updates, in
/// order; ended with an error status when the viewer is dropped.
pub(crate) struct UpdateStream {
    queue: Client,
    current: Option<(Batch, usize)>,
    done: bool,
}

impl Stream for UpdateStream {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            {
                let mut queue = lock(&this.queue);
                if let Some(status) = queue.killed.take() {
                    this.done = true;
                    this.current = None;
                    return Poll::Ready(Some(Err(status)));
                }
                if this.current.is_none() {
                    match queue.items.pop_front() {
                        Some(batch) => this.current = Some((batch, 0)),
                        None => {
                            queue.waker = Some(cx.waker().clone());
                            return Poll::Pending;
                        }
                    }
                }
            }
            if let Some((batch, next)) = &mut this.current {
                if let Some(update) = batch.get(*next) {
                    *next += 1;
                    return Poll::Ready(Some(Ok(update.clone())));
                }
                this.current = None;
            }
        }
    }
}

impl Drop for UpdateStream {
    fn drop(&mut self) {
        let mut queue = lock(&self.queue);
        queue.closed = true;
        queue.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewer_past_the_limit_is_refused_and_a_gone_one_frees_its_place() {
        let hub = Hub::new();
        let mut streams: Vec<_> = (0..MAX_VIEWERS)
            .map(|_| hub.subscribe(None).unwrap())
            .collect();
        let Err(refused) = hub.subscribe(None) else {
            panic!("one too many")
        };
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().starts_with("too many viewers: 64"),
            "{refused:?}"
        );
        drop(streams.pop());
        assert!(hub.subscribe(None).is_ok());
    }
}
