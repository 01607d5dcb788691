//! The publisher: every publish interval it reads the registry once, encodes
//! one delta, and hands every watching viewer's queue that same encoded
//! delta (a reference count each, through [`super::fanout`]); a viewer that
//! just connected gets a snapshot of that same state instead. Publishing
//! waits for the server's CPU budget ([`super::budget`]). With no viewer
//! connected, the publisher does no work at all.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use taskscope_api::proto;

use crate::clock;
use crate::server::budget::Budget;
use crate::server::chunk::{self, SnapshotHeader};
use crate::server::codec;
use crate::server::convert;
use crate::server::delta::Tracker;
use crate::server::fanout::{Batch, Hub};
use crate::server::runtime;
use crate::session::Session;

/// How often the publisher sends each viewer a delta.
pub(crate) const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

/// A new viewer waits at most this long after the previous publish for its
/// snapshot (so a storm of connections cannot make the publisher spin).
const MIN_GAP: Duration = Duration::from_millis(50);

/// What the publisher remembers between publishes.
pub(crate) struct Publisher {
    session: Arc<Session>,
    tracker: Tracker,
    /// Sequence number of the newest finding sent.
    findings_seq: u64,
    /// Findings that left the recent list before they could be sent.
    findings_skipped: u64,
}

/// The publish loop, on the server's runtime.
pub(crate) async fn run(session: Arc<Session>, hub: Arc<Hub>, budget: Arc<Budget>) {
    let mut publisher = Publisher::new(session);
    let mut last = Instant::now();
    loop {
        let woken = tokio::time::timeout_at(last + PUBLISH_INTERVAL, hub.wake.notified()).await;
        if woken.is_ok() {
            tokio::time::sleep_until(last + MIN_GAP).await;
        }
        budget
            .run(|| {
                last = Instant::now();
                hub.close_stuck(last);
                publisher.publish(&hub);
            })
            .await;
    }
}

impl Publisher {
    pub(crate) fn new(session: Arc<Session>) -> Publisher {
        Publisher {
            session,
            tracker: Tracker::default(),
            findings_seq: 0,
            findings_skipped: 0,
        }
    }

    /// One publish: a delta to the watching viewers, a snapshot to the joining ones.
    pub(crate) fn publish(&mut self, hub: &Hub) {
        let Some((joining, watching)) = hub.take_joining() else {
            self.tracker.clear();
            return;
        };

        let session = &*self.session;
        let now = clock::now();
        let at = clock::to_system_time(now);
        // One walk of the live tasks, without a lock and without a reference
        // taken to each (only to the new and changed records), then the
        // history: a task that ends between the two reads counts as finished.
        if !watching {
            self.tracker.clear();
        }
        let registry = &session.registry;
        let pass = self
            .tracker
            .walk(|f| registry.for_each_live(|_, cell| f(cell)));
        let finished = registry.finished();
        let findings = session.pipeline.recent_since(if joining.is_empty() {
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
        // Findings too big for a chunk are never sent: counted once, as they come.
        let (new_findings_json, too_big) = chunk::fitting(
            new_findings
                .iter()
                .map(|(_, f)| convert::finding(f))
                .collect(),
        );
        self.findings_skipped += too_big;
        let header = SnapshotHeader {
            app: convert::app_info(session),
            metrics: runtime::metrics(),
            dropped: proto::Dropped {
                findings: session.pipeline.stats().dropped + self.findings_skipped,
                updates: 0,
            },
            at_unix_ns: convert::unix_ns(at),
        };

        if watching {
            let changes = self.tracker.delta(pass, &finished, now, at);
            let batch = encoded(chunk::delta(
                &header,
                changes.changed,
                changes.finished,
                new_findings_json,
            ));
            hub.broadcast(&batch);
        } else {
            self.tracker.rebase(pass, &finished);
        }
        if let Some((seq, _)) = findings.last() {
            self.findings_seq = self.findings_seq.max(*seq);
        }

        if !joining.is_empty() {
            // Converted and encoded chunk by chunk: at a million tasks the
            // snapshot costs its encoded bytes only.
            let live = self.tracker.live();
            let tasks = live.iter().map(|c| convert::live(c, now));
            let finished = finished.iter().map(convert::finished).collect();
            let findings = findings.iter().map(|(_, f)| convert::finding(f)).collect();
            let chunks =
                chunk::snapshot_encoded(&header, live.len(), tasks, finished, findings, |update| {
                    codec::encode(update)
                });
            hub.welcome(joining, &Arc::new(chunks));
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
    use crate::detect::events;
    use crate::model::task::{SpawnLocation, TaskCell, TaskEnd};
    use crate::server::conn::ConnInfo;
    use crate::server::fanout::{CLIENT_QUEUE, CLOSE_GRACE, UpdateStream};
    use crate::settings::{ServerAddr, Settings};
    use taskscope_api::{Finding, FindingKind};
    use tokio_stream::StreamExt;

    /// A session of the test's own, its findings thread running.
    fn session() -> Arc<Session> {
        let (session, sinks) = Session::new(Settings {
            server_addr: ServerAddr::Off,
            ..Settings::default()
        });
        std::thread::spawn(move || sinks.run());
        Arc::new(session)
    }

    fn spawn(session: &Session, id: u64) -> Arc<TaskCell> {
        let loc = SpawnLocation {
            file: "src/publisher_test.rs",
            line: 7,
            col: 9,
        };
        session.registry.add(
            id,
            TaskCell::new(id, Some(format!("t{id}").into()), loc, None),
        );
        session.registry.get(id).unwrap()
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

    fn ids(tasks: &[proto::Task]) -> Vec<u64> {
        tasks.iter().map(|t| t.id).collect()
    }

    #[tokio::test]
    async fn a_viewer_gets_a_snapshot_then_deltas_of_what_changed() {
        let session = session();
        let hub = Hub::new();
        let mut publisher = Publisher::new(Arc::clone(&session));
        let first = spawn(&session, 1);

        let mut stream = hub.subscribe(None).unwrap();
        publisher.publish(&hub);
        let proto::update::Kind::Snapshot(snap) = next(&mut stream).await else {
            panic!("a snapshot first")
        };
        assert!(snap.last && snap.chunk == 0);
        assert_eq!(ids(&snap.tasks), [1]);
        assert_eq!(snap.app.unwrap().protocol_version, proto::PROTOCOL_VERSION);

        // Nothing changed: an empty delta (a heartbeat with metrics).
        publisher.publish(&hub);
        let proto::update::Kind::Delta(d) = next(&mut stream).await else {
            panic!("a delta")
        };
        assert!(ids(&d.changed).is_empty(), "{d:?}");

        // A poll, a new task, a finding.
        TaskCell::bump(&first.polls, 1);
        spawn(&session, 2);
        session.submit(Finding::new(
            FindingKind::NeverAwaited {
                name: "fetch".into(),
                created_at: "src/publisher_test.rs:1:1".into(),
            },
            Some(first.task_ref()),
        ));
        assert!(session.flush(Duration::from_secs(5)));
        publisher.publish(&hub);
        let proto::update::Kind::Delta(d) = next(&mut stream).await else {
            panic!("a delta")
        };
        assert_eq!(ids(&d.changed), [1, 2]);
        assert!(
            d.findings
                .iter()
                .any(|f| f.contains("never_awaited") && f.contains("publisher_test.rs:1:1")),
            "{:?}",
            d.findings
        );

        // The first task ends: it is sent as finished, once.
        events::task_ended(&session, 1, TaskEnd::Completed, false);
        publisher.publish(&hub);
        let proto::update::Kind::Delta(d) = next(&mut stream).await else {
            panic!("a delta")
        };
        assert_eq!(ids(&d.finished), [1]);
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
        assert!(ids(&d.finished).is_empty());
        events::task_ended(&session, 2, TaskEnd::Cancelled, false);
    }

    #[tokio::test]
    async fn a_viewer_that_does_not_read_is_dropped_with_a_reason_and_others_go_on() {
        let session = session();
        let hub = Hub::new();
        let mut publisher = Publisher::new(Arc::clone(&session));
        spawn(&session, 1);
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
        events::task_ended(&session, 1, TaskEnd::Cancelled, false);
    }

    #[tokio::test]
    async fn a_dropped_viewer_that_does_not_read_is_disconnected_after_the_grace() {
        let session = session();
        let hub = Hub::new();
        let mut publisher = Publisher::new(Arc::clone(&session));
        spawn(&session, 1);
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
        assert_eq!(hub.dropped_viewers(), 0);
        events::task_ended(&session, 1, TaskEnd::Cancelled, false);
    }

    #[test]
    fn recent_findings_have_increasing_sequence_numbers() {
        let session = session();
        let before = session
            .pipeline
            .recent_since(0)
            .last()
            .map_or(0, |(s, _)| *s);
        for i in 0..3 {
            session.submit(Finding::new(
                FindingKind::FindingsDropped { count: i },
                None,
            ));
        }
        assert!(session.flush(Duration::from_secs(5)));
        let newer = session.pipeline.recent_since(before);
        assert!(newer.len() >= 3);
        assert!(newer.windows(2).all(|w| w[1].0 == w[0].0 + 1));
        assert!(newer[0].0 == before + 1);
        assert!(
            session
                .pipeline
                .recent_since(newer.last().unwrap().0)
                .is_empty()
        );
    }
}
