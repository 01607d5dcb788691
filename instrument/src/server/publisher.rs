//! The publisher: every publish interval it reads the registry once, encodes
//! one delta, and hands every watching viewer's queue that same encoded
//! delta (a reference count each, through [`super::fanout`]); a viewer that
//! just connected gets a snapshot of that same state instead. Publishing
//! waits for the server's CPU budget ([`super::budget`]). With no viewer
//! connected and no recording, the publisher does no work at all.
//!
//! With `TASKSCOPE_RECORD`, the recording is one more watcher that never
//! disconnects: it is handed the same encoded delta, and now and then a
//! snapshot of the same moment ([`super::recorder`]).

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
use crate::server::recorder::Recorder;
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
    /// The recording (`TASKSCOPE_RECORD`), when on.
    pub(crate) recorder: Option<Recorder>,
}

/// The publish loop, on the server's runtime.
///
/// With a recording, the app's shutdown asks for one last publish (see
/// `pipeline::record_queue::RecordControl::finish`): it is made at once,
/// without waiting for the budget.
pub(crate) async fn run(
    session: Arc<Session>,
    hub: Arc<Hub>,
    budget: Arc<Budget>,
    recorder: Option<Recorder>,
) {
    let mut publisher = Publisher::new(session);
    let finish = recorder.as_ref().map(|r| r.sink().finish_signal());
    let mut finish = finish.as_ref();
    publisher.recorder = recorder;
    let mut last = Instant::now();
    loop {
        let wake = async {
            match finish {
                Some(finish) => tokio::select! {
                    _ = hub.wake.notified() => false,
                    _ = finish.asked() => true,
                },
                None => {
                    hub.wake.notified().await;
                    false
                }
            }
        };
        let woken = tokio::time::timeout_at(last + PUBLISH_INTERVAL, wake).await;
        let finishing = woken == Ok(true);
        if woken == Ok(false) {
            tokio::time::sleep_until(last + MIN_GAP).await;
        }
        if finishing {
            // Shutdown waits for this one: it does not wait for the budget.
            finish = None;
            last = Instant::now();
            hub.close_stuck(last);
            budget.spend(|| publisher.publish(&hub));
        } else {
            budget
                .run(|| {
                    last = Instant::now();
                    hub.close_stuck(last);
                    publisher.publish(&hub);
                })
                .await;
        }
    }
}

impl Publisher {
    pub(crate) fn new(session: Arc<Session>) -> Publisher {
        Publisher {
            session,
            tracker: Tracker::default(),
            findings_seq: 0,
            findings_skipped: 0,
            recorder: None,
        }
    }

    /// One publish: a delta to the watching viewers, a snapshot to the
    /// joining ones, and to the recording the delta and, when due, a snapshot.
    pub(crate) fn publish(&mut self, hub: &Hub) {
        let recording = self.recorder.as_ref().is_some_and(Recorder::active);
        let finishing = self.recorder.as_ref().is_some_and(Recorder::finishing);
        let (joining, watching) = match hub.take_joining() {
            Some(viewers) => viewers,
            None if recording => (Vec::new(), false),
            None => {
                self.tracker.clear();
                return;
            }
        };

        let session = &*self.session;
        let now = clock::now();
        let at = clock::to_system_time(now);
        // One walk of the live tasks, without a lock and without a reference
        // taken to each (only to the new and changed records), then the
        // history: a task that ends between the two reads counts as finished.
        if !watching && !recording {
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
        if (watching || recording)
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

        let mut delta = None;
        if watching || recording {
            let changes = self.tracker.delta(pass, &finished, now, at);
            let batch = encoded(chunk::delta(
                &header,
                changes.changed,
                changes.finished,
                new_findings_json,
            ));
            if watching {
                hub.broadcast(&batch);
            }
            delta = Some(batch);
        } else {
            self.tracker.rebase(pass, &finished);
        }
        if let Some((seq, _)) = findings.last() {
            self.findings_seq = self.findings_seq.max(*seq);
        }
        let plan = match (self.recorder.as_mut(), &delta) {
            (Some(recorder), Some(delta)) if recording => {
                Some(recorder.plan(delta, header.at_unix_ns))
            }
            _ => None,
        };

        let mut snapshot = None;
        if !joining.is_empty() || plan.is_some_and(|p| p.snapshot()) {
            // Converted and encoded chunk by chunk: at a million tasks the
            // snapshot costs its encoded bytes only.
            let live = self.tracker.live();
            let tasks = live.iter().map(|c| convert::live(c, now));
            let finished = finished.iter().map(convert::finished).collect();
            let findings = if joining.is_empty() {
                // For the recording alone: the recent findings up to those
                // the delta carried, so that the next delta follows it.
                let sent = self.findings_seq;
                session
                    .pipeline
                    .recent_since(0)
                    .iter()
                    .filter(|(seq, _)| *seq <= sent)
                    .map(|(_, f)| convert::finding(f))
                    .collect()
            } else {
                findings.iter().map(|(_, f)| convert::finding(f)).collect()
            };
            let batch: Batch = Arc::new(chunk::snapshot_encoded(
                &header,
                live.len(),
                tasks,
                finished,
                findings,
                codec::encode,
            ));
            if !joining.is_empty() {
                hub.welcome(joining, &batch);
            }
            snapshot = Some(batch);
        }
        if let (Some(plan), Some(recorder), Some(delta)) = (plan, self.recorder.as_mut(), &delta) {
            recorder.record(
                plan,
                &header.app,
                header.at_unix_ns,
                snapshot.as_ref(),
                delta,
                finishing,
            );
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

    /// A segment as read back: its number in its header, and its records
    /// `(seq, snapshot, update)`.
    type Segment = (u64, Vec<(u64, bool, proto::Update)>);

    /// The segments of the recording at `path`, oldest first.
    fn recorded(path: &std::path::Path) -> Vec<Segment> {
        use taskscope_api::recording::SegmentReader;
        let dir = path.parent().unwrap();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                name.starts_with("rec.") && !name.ends_with(".lock")
            })
            .collect();
        files.sort();
        files.push(path.to_owned());
        files
            .iter()
            .map(|file| {
                let bytes = std::fs::read(file).unwrap();
                let (header, mut reader) = SegmentReader::open(&bytes[..]).unwrap();
                assert_eq!(header.protocol_version, proto::PROTOCOL_VERSION);
                assert_eq!(header.run_started_unix_ns, 1);
                let mut records = Vec::new();
                while let Some(frame) = reader.next_frame().unwrap() {
                    let r = frame.record().unwrap();
                    records.push((r.seq, r.snapshot, r.update.unwrap()));
                }
                (header.segment, records)
            })
            .collect()
    }

    #[tokio::test]
    async fn the_recording_gets_the_viewers_deltas_and_a_snapshot_at_each_segment_start() {
        use crate::pipeline::record_file;
        use crate::server::recorder::Recorder;
        use prost::Message;

        let session = session();
        let dir =
            std::env::temp_dir().join(format!("taskscope-publisher-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rec");
        // Segments of 4,000 bytes.
        let (recording, writer, _control) = record_file::channel(path.clone(), 32_000);
        let thread = std::thread::spawn(move || writer.run());
        let hub = Hub::new();
        let mut publisher = Publisher::new(Arc::clone(&session));
        publisher.recorder = Some(Recorder::new(recording, 1));
        let cells: Vec<_> = (1..=10).map(|id| spawn(&session, id)).collect();

        // No viewer: the recording alone makes the publisher work.
        publisher.publish(&hub);
        // A viewer joins: it gets the same deltas as the recording.
        let mut stream = hub.subscribe(None).unwrap();
        let mut seen = Vec::new();
        for round in 0..12u64 {
            for cell in &cells {
                TaskCell::bump(&cell.polls, 1);
            }
            if round == 5 {
                events::task_ended(&session, 3, TaskEnd::Completed, false);
            }
            publisher.publish(&hub);
            loop {
                use tokio_stream::StreamExt;
                let bytes = tokio::time::timeout(Duration::from_secs(5), stream.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                let last = match proto::Update::decode(bytes.clone()).unwrap().kind.unwrap() {
                    proto::update::Kind::Snapshot(s) => s.last,
                    proto::update::Kind::Delta(d) => {
                        seen.push(bytes);
                        d.last
                    }
                };
                if last {
                    break;
                }
            }
        }
        drop(publisher);
        thread.join().unwrap();

        let segments = recorded(&path);
        assert!(segments.len() >= 3, "{} segments", segments.len());
        let mut next_seq = 0;
        let mut deltas = Vec::new();
        for (number, (segment, records)) in segments.iter().enumerate() {
            assert_eq!(*segment, number as u64);
            // A segment starts with a snapshot of every live task, then the
            // delta of the same publish.
            let (seq, snapshot, first) = &records[0];
            assert!(*snapshot, "segment {segment} starts with a snapshot");
            let Some(proto::update::Kind::Snapshot(s)) = &first.kind else {
                panic!("a snapshot")
            };
            let live = if *seq >= 6 { 9 } else { 10 };
            assert_eq!(s.tasks.len(), live, "segment {segment}");
            assert_eq!((records[1].0, records[1].1), (*seq, false));
            for (seq, snapshot, update) in records {
                if !snapshot {
                    assert_eq!(*seq, next_seq, "no publish missing");
                    next_seq += 1;
                    deltas.push(update.encode_to_vec());
                }
            }
            let size = std::fs::metadata(if number + 1 == segments.len() {
                path.clone()
            } else {
                dir.join(format!("rec.{:06}", number + 1))
            })
            .unwrap()
            .len();
            assert!(size <= 4_000, "segment {segment}: {size} bytes");
        }
        assert_eq!(next_seq, 13);
        // The viewer's deltas (after its snapshot) are the very bytes recorded.
        assert_eq!(seen.len(), 11);
        assert_eq!(
            deltas[2..],
            seen.iter().map(|b| b.to_vec()).collect::<Vec<_>>()[..]
        );
        for id in (1..=10).filter(|&id| id != 3) {
            events::task_ended(&session, id, TaskEnd::Cancelled, false);
        }
    }

    #[test]
    fn a_snapshot_bigger_than_a_segment_does_not_start_one_at_every_publish() {
        use crate::pipeline::record_file;
        use crate::server::recorder::Recorder;
        use prost::Message;

        let session = session();
        let dir = std::env::temp_dir().join(format!(
            "taskscope-publisher-big-snapshot-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rec");
        // Segments of 1,000 bytes; the snapshot of 100 tasks is about 5,000.
        let max = 8_000;
        let (recording, writer, _control) = record_file::channel(path.clone(), max);
        let thread = std::thread::spawn(move || writer.run());
        let hub = Hub::new();
        let mut publisher = Publisher::new(Arc::clone(&session));
        publisher.recorder = Some(Recorder::new(recording, 1));
        let cells: Vec<_> = (1..=100).map(|id| spawn(&session, id)).collect();
        for _ in 0..30 {
            TaskCell::bump(&cells[0].polls, 1);
            publisher.publish(&hub);
        }
        drop(publisher);
        thread.join().unwrap();
        let segments = recorded(&path);
        let first = segments[0].1[0].2.encoded_len() as u64;
        assert!(first > 4 * 1_000, "a snapshot of {first} bytes");
        // A segment takes twice its start before the next one: a few
        // segments for 30 publishes, not 30.
        let started = segments.last().unwrap().0 + 1;
        assert!(started <= 3, "{started} segments started");
        let total: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(
            total <= max + 2 * (first + 1_000),
            "{total} bytes: more than the bound and one segment"
        );
        for id in 1..=100 {
            events::task_ended(&session, id, TaskEnd::Cancelled, false);
        }
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
