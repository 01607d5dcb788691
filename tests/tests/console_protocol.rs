//! tokio-console's protocol served by a real taskscope app (`grpc_app`, a
//! process under `taskscope::init()` on a free port), read with console-api's
//! generated client, as tokio-console reads it: the first update and later
//! ones, task names, spawn locations, kinds, poll counts, busy time of a
//! 250 ms poll, wakers and self-wakes, a finished task, the poll histogram of
//! `WatchTaskDetails`, pause and resume; then `TASKSCOPE_CONSOLE=off` and the
//! token.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use console_api::field::{Name, Value};
use console_api::instrument::instrument_client::InstrumentClient;
use console_api::instrument::{
    InstrumentRequest, PauseRequest, ResumeRequest, StateRequest, TaskDetailsRequest, Temporality,
    Update,
};
use console_api::tasks::task_details::PollTimesHistogram;
use console_api::tasks::{Stats, Task};
use taskscope::ServerAddr;
use taskscope_api::console::{decode, longest_poll};
use taskscope_tests::scripted::Scripted;
use taskscope_tests::{free_port, marker_line};
use tokio::time::Instant;
use tonic::Streaming;
use tonic::transport::Channel;

/// The longest any step may take (debug builds on a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(20);

const APP: &str = env!("CARGO_BIN_EXE_grpc_app");

/// What the updates said so far, folded as tokio-console folds them.
#[derive(Default)]
struct Seen {
    metadata: HashSet<u64>,
    tasks: HashMap<u64, Task>,
    stats: HashMap<u64, Stats>,
    updates: usize,
}

impl Seen {
    fn apply(&mut self, update: &Update) {
        self.updates += 1;
        if let Some(meta) = &update.new_metadata {
            self.metadata
                .extend(meta.metadata.iter().map(|m| m.id.unwrap().id));
        }
        let tasks = update.task_update.as_ref().expect("a task update");
        for task in &tasks.new_tasks {
            let id = task.id.unwrap().id;
            let meta = task.metadata.unwrap().id;
            assert!(
                self.metadata.contains(&meta),
                "task {id} refers to metadata {meta} not sent yet"
            );
            assert!(
                tasks.stats_update.contains_key(&id),
                "new task {id} without its stats in the same update"
            );
            self.tasks.insert(id, task.clone());
        }
        for (id, stats) in &tasks.stats_update {
            self.stats.insert(*id, *stats);
        }
        assert!(update.resource_update.is_some() && update.async_op_update.is_some());
        assert!(
            update
                .resource_update
                .as_ref()
                .unwrap()
                .new_resources
                .is_empty(),
            "resources are not reported"
        );
    }

    fn named(&self, name: &str) -> Option<(&Task, &Stats)> {
        let found: Vec<_> = self
            .tasks
            .values()
            .filter(|t| debug_field(t, "task.name") == Some(name))
            .collect();
        assert!(found.len() <= 1, "{} tasks named {name}", found.len());
        let task = found.first()?;
        Some((task, &self.stats[&task.id.unwrap().id]))
    }

    fn polls(&self, name: &str) -> Option<u64> {
        self.named(name).map(|(_, s)| s.poll_stats.unwrap().polls)
    }
}

fn field<'a>(task: &'a Task, name: &str) -> Option<&'a Value> {
    task.fields
        .iter()
        .find(|f| f.name == Some(Name::StrName(name.into())))
        .and_then(|f| f.value.as_ref())
}

fn debug_field<'a>(task: &'a Task, name: &str) -> Option<&'a str> {
    match field(task, name)? {
        Value::DebugVal(v) => Some(v),
        _ => None,
    }
}

fn busy(stats: &Stats) -> Duration {
    stats
        .poll_stats
        .unwrap()
        .busy_time
        .map(|d| Duration::try_from(d).unwrap())
        .unwrap_or_default()
}

async fn connect(port: u16) -> InstrumentClient<Channel> {
    let deadline = Instant::now() + WAIT;
    loop {
        match InstrumentClient::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => panic!("cannot connect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn next_update(updates: &mut Streaming<Update>) -> Update {
    tokio::time::timeout(WAIT, updates.message())
        .await
        .expect("an update in time")
        .expect("not an error")
        .expect("the stream goes on")
}

/// Reads updates until `done` holds.
async fn until(
    updates: &mut Streaming<Update>,
    seen: &mut Seen,
    what: &str,
    done: impl Fn(&Seen) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(seen) {
        assert!(
            Instant::now() < deadline,
            "no update showed {what} within {WAIT:?}"
        );
        seen.apply(&next_update(updates).await);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn tokio_console_protocol_against_a_taskscope_app() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut app = Scripted::start(APP, &[("TASKSCOPE_ADDR", &addr), ("GRPC_APP_TASKS", "3")]);
    app.send("selfwake 5");
    app.send("block 250");
    app.send("finish worker-0");
    let file = "tests/src/bin/grpc_app.rs";
    let named_line = marker_line("src/bin/grpc_app.rs", concat!("SPAWN-", "NAMED"));

    runtime().block_on(async {
        let mut client = connect(port).await;
        let mut updates = client
            .watch_updates(InstrumentRequest {})
            .await
            .expect("WatchUpdates answers")
            .into_inner();
        let mut seen = Seen::default();
        let first = next_update(&mut updates).await;
        assert!(
            first.new_metadata.is_some(),
            "the first update has the metadata"
        );
        seen.apply(&first);
        let finished =
            |s: &Seen, name: &str| s.named(name).is_some_and(|(_, st)| st.dropped_at.is_some());
        until(
            &mut updates,
            &mut seen,
            "the blocker and worker-0 finished",
            |s| {
                finished(s, "blocker")
                    && finished(s, "worker-0")
                    && s.polls("self-waker") == Some(6)
            },
        )
        .await;

        // Names, Tokio's ids, kinds and spawn locations, as tokio-console shows them.
        let (task, stats) = seen.named("worker-1").expect("worker-1 is listed");
        let id = task.id.unwrap().id;
        assert_eq!(field(task, "task.id"), Some(&Value::U64Val(id)));
        assert_eq!(debug_field(task, "kind"), Some("task"));
        let loc = task.location.clone().expect("a spawn location");
        assert_eq!(loc.file.as_deref(), Some(file));
        assert_eq!(loc.line, Some(named_line));
        assert!(loc.column.is_some_and(|c| c > 0));
        // Polled once; waiting on its channel, which holds one waker.
        assert_eq!(stats.poll_stats.unwrap().polls, 1);
        assert!(stats.dropped_at.is_none());
        assert!(stats.created_at.is_some());
        assert!(stats.waker_clones >= 1, "{stats:?}");
        assert_eq!(stats.waker_clones - stats.waker_drops, 1, "{stats:?}");
        assert!(
            seen.tasks
                .values()
                .any(|t| debug_field(t, "kind") == Some("block_on")),
            "the runtime's block_on future is listed as such"
        );

        // A finished task: its end, its polls, its wake. (Whether the drop
        // of the waker its channel held is seen depends on whether the
        // channel is freed before the task's end is noted: not asserted.)
        let (_, done) = seen.named("worker-0").unwrap();
        assert!(done.dropped_at.is_some());
        assert_eq!(done.poll_stats.unwrap().polls, 2);
        assert!(done.wakes >= 1 && done.waker_clones >= 1, "{done:?}");

        // The 250 ms poll: one poll, 250 ms busy.
        let (blocker, blocked) = seen.named("blocker").unwrap();
        let blocker_id = blocker.id.unwrap().id;
        assert_eq!(blocked.poll_stats.unwrap().polls, 1);
        let busy_time = busy(blocked);
        assert!(
            busy_time >= Duration::from_millis(250) && busy_time < Duration::from_secs(2),
            "{busy_time:?}"
        );

        // Self-wakes: five wakes from inside its own polls.
        let (_, woke) = seen.named("self-waker").unwrap();
        assert_eq!(woke.self_wakes, 5);
        assert!(woke.wakes >= 5);

        // Later updates carry only what changed: worker-2 never changes again.
        let worker2 = seen.named("worker-2").unwrap().0.id.unwrap().id;
        for _ in 0..2 {
            let u = next_update(&mut updates).await;
            let tasks = u.task_update.as_ref().unwrap();
            assert!(!tasks.stats_update.contains_key(&worker2), "{u:?}");
            assert!(tasks.new_tasks.is_empty() && u.new_metadata.is_none());
            seen.apply(&u);
        }

        // WatchTaskDetails: the poll histogram, longest poll 250 ms.
        let mut details = client
            .watch_task_details(TaskDetailsRequest {
                id: Some(console_api::Id { id: blocker_id }),
            })
            .await
            .expect("details of a finished task")
            .into_inner();
        let d = tokio::time::timeout(WAIT, details.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.task_id.unwrap().id, blocker_id);
        let Some(PollTimesHistogram::Histogram(h)) = d.poll_times_histogram else {
            panic!("a histogram: {d:?}")
        };
        let longest = longest_poll(&h).expect("a serialized HdrHistogram");
        assert!(
            longest >= Duration::from_millis(250)
                && longest.as_secs_f64() <= busy_time.as_secs_f64() * 1.01,
            "longest {longest:?}, busy {busy_time:?}"
        );
        assert_eq!(h.high_outliers, 0);
        assert_eq!(
            decode(&h.raw_histogram).unwrap().len(),
            1,
            "one poll (dropping the future is not one)"
        );
        let self_waker = seen.named("self-waker").unwrap().0.id.unwrap().id;
        let mut details = client
            .watch_task_details(TaskDetailsRequest {
                id: Some(console_api::Id { id: self_waker }),
            })
            .await
            .unwrap()
            .into_inner();
        let d = details.message().await.unwrap().unwrap();
        let Some(PollTimesHistogram::Histogram(h)) = d.poll_times_histogram else {
            panic!("a histogram")
        };
        assert_eq!(
            decode(&h.raw_histogram).unwrap().len(),
            6,
            "one count per poll"
        );
        let unknown = client
            .watch_task_details(TaskDetailsRequest {
                id: Some(console_api::Id { id: u64::MAX >> 1 }),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);

        // Pause: state PAUSED, and a task spawned meanwhile is not sent...
        client.pause(PauseRequest {}).await.expect("Pause");
        let mut states = client
            .watch_state(StateRequest {})
            .await
            .expect("WatchState answers")
            .into_inner();
        let state = states.message().await.unwrap().unwrap();
        assert_eq!(state.temporality(), Temporality::Paused);
        app.send("spawn late-task");
        let quiet = Instant::now() + Duration::from_secs(3);
        while let Ok(update) = tokio::time::timeout_at(quiet, updates.message()).await {
            // Only an update made before the pause may still arrive.
            seen.apply(&update.unwrap().unwrap());
            assert!(seen.named("late-task").is_none(), "an update while paused");
        }
        // ... until Resume: LIVE, and the task arrives with its stats.
        client.resume(ResumeRequest {}).await.expect("Resume");
        let deadline = Instant::now() + WAIT;
        loop {
            let state = tokio::time::timeout_at(deadline, states.message())
                .await
                .expect("LIVE again in time")
                .unwrap()
                .unwrap();
            if state.temporality() == Temporality::Live {
                break;
            }
        }
        until(&mut updates, &mut seen, "late-task after Resume", |s| {
            s.named("late-task").is_some()
        })
        .await;
        assert_eq!(seen.polls("late-task"), Some(1));
    });
    assert!(!app.stderr().contains("panicked"), "{}", app.stderr());
}

#[test]
fn console_off_and_the_token() {
    let off_port = free_port();
    let off_addr = format!("127.0.0.1:{off_port}");
    let _off = Scripted::start(
        APP,
        &[
            ("TASKSCOPE_ADDR", &off_addr),
            ("GRPC_APP_TASKS", "1"),
            ("TASKSCOPE_CONSOLE", "off"),
        ],
    );
    let token_port = free_port();
    let token_addr = format!("127.0.0.1:{token_port}");
    let _guarded = Scripted::start(
        APP,
        &[
            ("TASKSCOPE_ADDR", &token_addr),
            ("GRPC_APP_TASKS", "1"),
            ("TASKSCOPE_TOKEN", "s3cret-token-of-16+"),
        ],
    );
    runtime().block_on(async {
        // Off: console's calls are UNIMPLEMENTED, saying why; taskscope.v1 answers.
        let mut client = connect(off_port).await;
        let off = client
            .watch_updates(InstrumentRequest {})
            .await
            .unwrap_err();
        assert_eq!(off.code(), tonic::Code::Unimplemented);
        assert!(off.message().contains("TASKSCOPE_CONSOLE=off"), "{off:?}");
        let listing = taskscope_viewer::client::list_tasks(&ServerAddr::parse(&off_addr).unwrap())
            .await
            .expect("taskscope.v1 is served");
        assert!(
            listing
                .tasks
                .iter()
                .any(|t| t.task.name.as_deref() == Some("worker-0"))
        );

        // A token: refused without it, served with it.
        let mut client = connect(token_port).await;
        let refused = client
            .watch_updates(InstrumentRequest {})
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let refused = client.pause(PauseRequest {}).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let mut request = tonic::Request::new(InstrumentRequest {});
        request.metadata_mut().insert(
            "authorization",
            "Bearer s3cret-token-of-16+".parse().unwrap(),
        );
        let mut updates = client
            .watch_updates(request)
            .await
            .expect("served with the token")
            .into_inner();
        let mut seen = Seen::default();
        seen.apply(&next_update(&mut updates).await);
        assert!(seen.named("worker-0").is_some());
    });
}
