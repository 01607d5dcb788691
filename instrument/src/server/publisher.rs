//! The publisher: every publish interval it reads the registry once, encodes
//! one delta, and hands each viewer's bounded queue that same encoded delta
//! (a reference count each); a viewer that just connected gets a snapshot of
//! that same state instead. The app never waits for a viewer: its threads
//! never touch the queues, and the publisher only pushes (never waits for
//! room). A viewer whose queue is full is dropped with a reason it can show
//! ("viewer too slow: N updates behind"), and a line on the app's stderr; if
//! it still does not read (so the reason cannot even reach it) its connection
//! is closed [`CLOSE_GRACE`] later. At most [`MAX_VIEWERS`] watch at once.
//! Publishing waits for the server's CPU budget ([`super::budget`]).
//! With no viewer connected, the publisher does no work at all.

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

use crate::clock;
use crate::core::Core;
use crate::server::budget::Budget;
use crate::server::chunk::{self, SnapshotHeader};
use crate::server::codec;
use crate::server::conn::ConnInfo;
use crate::server::delta::{self, Tracker};
use crate::server::{PUBLISH_INTERVAL, convert, runtime};
use crate::table::lock;
use taskscope_api::proto;

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

/// A new viewer waits at most this long after the previous publish for its
/// snapshot (so a storm of connections cannot make the publisher spin).
const MIN_GAP: Duration = Duration::from_millis(50);

/// One update, as its encoded chunks; shared by every viewer's queue.
type Batch = Arc<Vec<Bytes>>;

/// One viewer's queue, shared by the publisher (which fills it) and the
/// viewer's stream (which empties it). A plain mutex: both sides hold it for a
/// push or a pop, and both run on the server's one thread.
#[derive(Default)]
struct Queue {
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

type Client = Arc<Mutex<Queue>>;

/// The viewers connected to the Watch stream.
pub(crate) struct Hub {
    inner: Mutex<Viewers>,
    wake: Notify,
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
    /// at the next publish, which comes at once (at most [`MIN_GAP`] after
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

    /// Viewers connected (watching or about to).
    #[cfg(test)]
    pub(crate) fn viewers(&self) -> usize {
        let v = lock(&self.inner);
        v.watching.len() + v.joining.len()
    }

    /// Closes the connections of dropped viewers that did not read their
    /// reason within [`CLOSE_GRACE`]; forgets those that did.
    fn close_stuck(&self, now: Instant) {
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

/// What the publisher remembers between publishes.
pub(crate) struct Publisher {
    core: Arc<Core>,
    tracker: Tracker,
    /// Sequence number of the newest finding sent.
    findings_seq: u64,
    /// Findings that left the recent list before they could be sent.
    findings_skipped: u64,
}

/// The publish loop, on the server's runtime.
pub(crate) async fn run(core: Arc<Core>, hub: Arc<Hub>, budget: Arc<Budget>) {
    let mut publisher = Publisher::new(core);
    let mut last = Instant::now();
    loop {
        let woken = tokio::time::timeout_at(last + PUBLISH_INTERVAL, hub.wake.notified()).await;
        if woken.is_ok() {
            tokio::time::sleep_until(last + MIN_GAP).await;
        }
        budget.wait().await;
        last = Instant::now();
        hub.close_stuck(last);
        budget.spend(|| publisher.publish(&hub));
    }
}

impl Publisher {
    pub(crate) fn new(core: Arc<Core>) -> Publisher {
        Publisher {
            core,
            tracker: Tracker::default(),
            findings_seq: 0,
            findings_skipped: 0,
        }
    }

    /// One publish: a delta to the watching viewers, a snapshot to the joining ones.
    pub(crate) fn publish(&mut self, hub: &Hub) {
        let joining = {
            let mut viewers = lock(&hub.inner);
            viewers.watching.retain(|c| !lock(c).closed);
            if viewers.watching.is_empty() && viewers.joining.is_empty() {
                self.tracker.clear();
                return;
            }
            std::mem::take(&mut viewers.joining)
        };
        let watching = !lock(&hub.inner).watching.is_empty();

        let core = &*self.core;
        let now = clock::now();
        let at = clock::to_system_time(now);
        let cells = core.registry.live_cells();
        let finished = core.registry.finished();
        let live = delta::alive(cells, &finished);
        let findings = core.pipeline.recent_since(if joining.is_empty() {
            self.findings_seq
        } else {
            0
        });
        let new_findings: Vec<_> = findings
            .iter()
            .filter(|(seq, _)| *seq > self.findings_seq)
            .collect();
        if watching
            && self.findings_seq > 0
            && let Some((first, _)) = new_findings.first()
        {
            self.findings_skipped += first - self.findings_seq - 1;
        }
        let header = SnapshotHeader {
            app: convert::app_info(core),
            metrics: runtime::metrics(),
            dropped: proto::Dropped {
                findings: core.pipeline.stats().dropped + self.findings_skipped,
                updates: 0,
            },
            at_unix_ns: convert::unix_ns(at),
        };

        if watching {
            let changes = self.tracker.delta(&live, &finished, now, at);
            let findings = new_findings
                .iter()
                .map(|(_, f)| convert::finding(f))
                .collect();
            let batch = encoded(chunk::delta(
                &header,
                changes.changed,
                changes.finished,
                findings,
            ));
            let mut viewers = lock(&hub.inner);
            let mut dropped = Vec::new();
            viewers.watching.retain(|c| match offer(c, &batch) {
                Offer::Queued => true,
                Offer::Gone => false,
                Offer::Dropped => {
                    dropped.push(Arc::clone(c));
                    false
                }
            });
            let at = Instant::now();
            viewers.dropped.extend(dropped.into_iter().map(|c| (c, at)));
        } else {
            self.tracker.rebase(&live, &finished);
        }
        if let Some((seq, _)) = findings.last() {
            self.findings_seq = self.findings_seq.max(*seq);
        }

        if !joining.is_empty() {
            let tasks = live.iter().map(|c| convert::live(c, now)).collect();
            let finished = finished.iter().map(convert::finished).collect();
            let findings = findings.iter().map(|(_, f)| convert::finding(f)).collect();
            let batch = encoded(chunk::snapshot(&header, tasks, finished, findings));
            let mut viewers = lock(&hub.inner);
            for client in joining {
                if offer(&client, &batch) == Offer::Queued {
                    viewers.watching.push(client);
                }
            }
        }
    }
}

/// The chunks of one update, encoded once for every viewer.
fn encoded(chunks: Vec<proto::Update>) -> Batch {
    Arc::new(chunks.iter().map(codec::encode).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{ServerAddr, Settings};
    use crate::task::{SpawnLocation, TaskCell, TaskEnd};
    use taskscope_api::{Finding, FindingKind};
    use tokio_stream::StreamExt;

    fn core() -> Arc<Core> {
        crate::core::start(Settings {
            server_addr: ServerAddr::Off,
            ..Settings::default()
        })
        .0
    }

    fn spawn(core: &Core, id: u64) -> Arc<TaskCell> {
        let loc = SpawnLocation {
            file: "src/publisher_test.rs",
            line: 7,
            col: 9,
        };
        core.task_spawned(
            id,
            TaskCell::new(id, Some(format!("t{id}").into()), loc, None),
        );
        core.registry.get(id).unwrap()
    }

    async fn next(stream: &mut UpdateStream) -> proto::update::Kind {
        use prost::Message;
        let bytes = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an update in time")
            .expect("the stream goes on")
            .expect("not an error");
        let update = proto::Update::decode(bytes).expect("an encoded Update");
        update.kind.expect("a kind")
    }

    fn ids(tasks: &[proto::Task], base: u64) -> Vec<u64> {
        tasks
            .iter()
            .map(|t| t.id)
            .filter(|id| (base..base + 1_000).contains(id))
            .collect()
    }

    #[tokio::test]
    async fn a_viewer_gets_a_snapshot_then_deltas_of_what_changed() {
        const BASE: u64 = 1 << 60;
        let core = core();
        let hub = Hub::new();
        let mut publisher = Publisher::new(Arc::clone(&core));
        let first = spawn(&core, BASE + 1);

        let mut stream = hub.subscribe(None).unwrap();
        publisher.publish(&hub);
        let proto::update::Kind::Snapshot(snap) = next(&mut stream).await else {
            panic!("a snapshot first")
        };
        assert!(snap.last && snap.chunk == 0);
        assert_eq!(ids(&snap.tasks, BASE), [BASE + 1]);
        assert_eq!(snap.app.unwrap().protocol_version, proto::PROTOCOL_VERSION);

        // Nothing changed: an empty delta (a heartbeat with metrics).
        publisher.publish(&hub);
        let proto::update::Kind::Delta(d) = next(&mut stream).await else {
            panic!("a delta")
        };
        assert!(ids(&d.changed, BASE).is_empty(), "{d:?}");

        // A poll, a new task, a finding.
        TaskCell::bump(&first.polls, 1);
        spawn(&core, BASE + 2);
        core.submit(Finding::new(
            FindingKind::NeverAwaited {
                name: "fetch".into(),
                created_at: "src/publisher_test.rs:1:1".into(),
            },
            Some(first.task_ref()),
        ));
        assert!(core.flush(Duration::from_secs(5)));
        publisher.publish(&hub);
        let proto::update::Kind::Delta(d) = next(&mut stream).await else {
            panic!("a delta")
        };
        assert_eq!(ids(&d.changed, BASE), [BASE + 1, BASE + 2]);
        assert!(
            d.findings
                .iter()
                .any(|f| f.contains("never_awaited") && f.contains("publisher_test.rs:1:1")),
            "{:?}",
            d.findings
        );

        // The first task ends: it is sent as finished, once.
        core.task_ended(BASE + 1, TaskEnd::Completed, false);
        publisher.publish(&hub);
        let proto::update::Kind::Delta(d) = next(&mut stream).await else {
            panic!("a delta")
        };
        assert_eq!(ids(&d.finished, BASE), [BASE + 1]);
        assert_eq!(d.finished[0].end(), proto::TaskEnd::Completed);
        assert!(
            !d.findings
                .iter()
                .any(|f| f.contains("publisher_test.rs:1:1")),
            "a finding is sent once"
        );
        publisher.publish(&hub);
        let proto::update::Kind::Delta(d) = next(&mut stream).await else {
            panic!("a delta")
        };
        assert!(ids(&d.finished, BASE).is_empty());
        core.task_ended(BASE + 2, TaskEnd::Cancelled, false);
    }

    #[tokio::test]
    async fn a_viewer_that_does_not_read_is_dropped_with_a_reason_and_others_go_on() {
        const BASE: u64 = 2 << 60;
        let core = core();
        let hub = Hub::new();
        let mut publisher = Publisher::new(Arc::clone(&core));
        spawn(&core, BASE + 1);
        let mut slow = hub.subscribe(None).unwrap();
        let mut healthy = hub.subscribe(None).unwrap();
        for _ in 0..CLIENT_QUEUE + 1 {
            publisher.publish(&hub);
            // The healthy viewer reads everything.
            loop {
                match next(&mut healthy).await {
                    proto::update::Kind::Snapshot(s) if s.last => break,
                    proto::update::Kind::Delta(d) if d.last => break,
                    _ => {}
                }
            }
        }
        assert_eq!(hub.viewers(), 1, "the slow viewer was dropped");
        let status = tokio::time::timeout(Duration::from_secs(5), slow.next())
            .await
            .unwrap()
            .expect("a final status")
            .expect_err("an error status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status
                .message()
                .starts_with(&format!("viewer too slow: {CLIENT_QUEUE} updates behind")),
            "{}",
            status.message()
        );
        assert!(slow.next().await.is_none(), "and the stream ends");

        publisher.publish(&hub);
        assert!(matches!(
            next(&mut healthy).await,
            proto::update::Kind::Delta(_)
        ));
        core.task_ended(BASE + 1, TaskEnd::Cancelled, false);
    }

    #[tokio::test]
    async fn a_dropped_viewer_that_does_not_read_is_disconnected_after_the_grace() {
        const BASE: u64 = 3 << 60;
        let core = core();
        let hub = Hub::new();
        let mut publisher = Publisher::new(Arc::clone(&core));
        spawn(&core, BASE + 1);
        let conn = ConnInfo {
            peer: None,
            control: Arc::default(),
        };
        let _stuck = hub.subscribe(Some(conn.clone())).unwrap();
        for _ in 0..CLIENT_QUEUE + 1 {
            publisher.publish(&hub);
        }
        assert_eq!(hub.viewers(), 0, "dropped");
        let now = Instant::now();
        hub.close_stuck(now);
        assert!(
            !conn.control.is_closed(),
            "it has the grace to read its reason"
        );
        hub.close_stuck(now + CLOSE_GRACE);
        assert!(conn.control.is_closed(), "then its connection is closed");
        assert!(lock(&hub.inner).dropped.is_empty());
        core.task_ended(BASE + 1, TaskEnd::Cancelled, false);
    }

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

    #[test]
    fn recent_findings_have_increasing_sequence_numbers() {
        let core = core();
        let before = core.pipeline.recent_since(0).last().map_or(0, |(s, _)| *s);
        for i in 0..3 {
            core.submit(Finding::new(
                FindingKind::FindingsDropped { count: i },
                None,
            ));
        }
        assert!(core.flush(Duration::from_secs(5)));
        let newer = core.pipeline.recent_since(before);
        assert!(newer.len() >= 3);
        assert!(newer.windows(2).all(|w| w[1].0 == w[0].0 + 1));
        assert!(newer[0].0 == before + 1);
        assert!(
            core.pipeline
                .recent_since(newer.last().unwrap().0)
                .is_empty()
        );
    }
}
