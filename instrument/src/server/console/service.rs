//! console's `Instrument` service (console-api's generated trait), served
//! from the session's registry on the server's runtime.
//!
//! As console-subscriber serves it:
//! - `WatchUpdates`: every task kept at once, then what changed, every
//!   [`PUBLISH_INTERVAL`] ([`super::updates`]); nothing while paused, except
//!   the first state; the first update after `Resume` carries what changed
//!   meanwhile;
//! - `WatchTaskDetails(id)`: INVALID_ARGUMENT for a missing or 0 id,
//!   NOT_FOUND for a task taskscope does not keep; else the task's poll
//!   histogram at once and every interval (not while paused), until the task
//!   leaves the finished history;
//! - `WatchState`: LIVE or PAUSED at once, at every change and every
//!   interval (tokio-console 0.1.14 does not connect without it);
//! - `Pause` / `Resume`: for every console client of the app (taskscope's own
//!   viewers are not paused).
//!
//! Every stream has a task of its own on the server's runtime feeding a
//! channel of [`STREAM_DEPTH`] messages: a client that does not read stops
//! its own producer, whose memory stays what it was. Reading the registry
//! waits for the server's CPU budget, like the publisher. At most
//! [`MAX_UPDATE_STREAMS`] update streams and [`MAX_OTHER_STREAMS`] others are
//! open at once; one more is refused with RESOURCE_EXHAUSTED.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use console_api::instrument::{
    InstrumentRequest, PauseRequest, PauseResponse, ResumeRequest, ResumeResponse, State,
    StateRequest, TaskDetailsRequest, Temporality, Update, instrument_server::Instrument,
};
use console_api::tasks::TaskDetails;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::clock;
use crate::model::task::TaskCell;
use crate::server::budget::Budget;
use crate::server::console::convert;
use crate::server::console::updates::{self, MAX_UPDATE_BYTES};
use crate::session::Session;

/// How often each stream sends (console-subscriber's default publish interval).
pub(crate) const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Messages a stream's channel holds.
pub(crate) const STREAM_DEPTH: usize = 2;

/// `WatchUpdates` streams open at once, at most (each remembers a signature
/// per task kept; tokio-console opens one).
pub(crate) const MAX_UPDATE_STREAMS: usize = 8;

/// `WatchTaskDetails` and `WatchState` streams open at once, at most.
pub(crate) const MAX_OTHER_STREAMS: usize = 64;

/// The service; cloned for every call.
#[derive(Clone)]
pub(crate) struct Console {
    session: Arc<Session>,
    budget: Arc<Budget>,
    paused: Arc<watch::Sender<bool>>,
    update_streams: Arc<AtomicUsize>,
    other_streams: Arc<AtomicUsize>,
}

/// One open stream, counted until its producer ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, max: usize, what: &str) -> Result<Slot, Status> {
        let taken = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        });
        match taken {
            Ok(_) => Ok(Slot(Arc::clone(count))),
            Err(_) => Err(Status::resource_exhausted(format!(
                "{max} {what} streams are open on this app already (taskscope's limit); \
                 try again when one closes"
            ))),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A ticker of the publish interval whose first tick is at once.
fn ticker() -> tokio::time::Interval {
    let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

impl Console {
    pub(crate) fn new(session: Arc<Session>, budget: Arc<Budget>) -> Console {
        Console {
            session,
            budget,
            paused: Arc::new(watch::channel(false).0),
            update_streams: Arc::default(),
            other_streams: Arc::default(),
        }
    }

    /// The record of task `id`, live or in the finished history.
    fn find(&self, id: u64) -> Option<Arc<TaskCell>> {
        let registry = &self.session.registry;
        // The table's key is the task id, except under a layer (a span id).
        if let Some(cell) = registry.get(id).filter(|c| c.id == id) {
            return Some(cell);
        }
        registry
            .finished_cells()
            .into_iter()
            .rev()
            .find(|c| c.id == id)
            .or_else(|| registry.live_cells().into_iter().find(|c| c.id == id))
    }
}

fn state(paused: bool) -> State {
    let temporality = if paused {
        Temporality::Paused
    } else {
        Temporality::Live
    };
    State {
        temporality: temporality as i32,
    }
}

#[tonic::async_trait]
impl Instrument for Console {
    type WatchUpdatesStream = BoxStream<Update>;
    type WatchTaskDetailsStream = BoxStream<TaskDetails>;
    type WatchStateStream = BoxStream<State>;

    async fn watch_updates(
        &self,
        _request: Request<InstrumentRequest>,
    ) -> Result<Response<Self::WatchUpdatesStream>, Status> {
        let slot = Slot::take(&self.update_streams, MAX_UPDATE_STREAMS, "WatchUpdates")?;
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        let console = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut stream = updates::Stream::default();
            let mut paused = console.paused.subscribe();
            let mut tick = ticker();
            let mut first = true;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tx.closed() => return,
                }
                // The first state goes out even while paused.
                if !first && *paused.borrow_and_update() {
                    continue;
                }
                first = false;
                console.budget.wait().await;
                let batch = console
                    .budget
                    .spend(|| stream.updates(&console.session, MAX_UPDATE_BYTES));
                for update in batch {
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch_task_details(
        &self,
        request: Request<TaskDetailsRequest>,
    ) -> Result<Response<Self::WatchTaskDetailsStream>, Status> {
        let id = request
            .into_inner()
            .id
            .ok_or_else(|| Status::invalid_argument("missing task_id"))?
            .id;
        if id == 0 {
            return Err(Status::invalid_argument("task_id cannot be 0"));
        }
        self.budget.wait().await;
        if self.budget.spend(|| self.find(id)).is_none() {
            return Err(Status::not_found(format!(
                "task {id} is neither alive nor in the finished history"
            )));
        }
        let slot = Slot::take(&self.other_streams, MAX_OTHER_STREAMS, "console")?;
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        let console = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let paused = console.paused.subscribe();
            let mut tick = ticker();
            let mut first = true;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tx.closed() => return,
                }
                if !first && *paused.borrow() {
                    continue;
                }
                first = false;
                console.budget.wait().await;
                let details = console.budget.spend(|| {
                    console
                        .find(id)
                        .map(|cell| convert::details(&cell, clock::now()))
                });
                // Gone from the history: the stream ends.
                let Some(details) = details else { return };
                if tx.send(Ok(details)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch_state(
        &self,
        _request: Request<StateRequest>,
    ) -> Result<Response<Self::WatchStateStream>, Status> {
        let slot = Slot::take(&self.other_streams, MAX_OTHER_STREAMS, "console")?;
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        let mut paused = self.paused.subscribe();
        tokio::spawn(async move {
            let _slot = slot;
            let mut tick = ticker();
            tick.reset();
            loop {
                let now = state(*paused.borrow_and_update());
                if tx.send(Ok(now)).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = paused.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn pause(
        &self,
        _request: Request<PauseRequest>,
    ) -> Result<Response<PauseResponse>, Status> {
        self.paused.send_replace(true);
        Ok(Response::new(PauseResponse {}))
    }

    async fn resume(
        &self,
        _request: Request<ResumeRequest>,
    ) -> Result<Response<ResumeResponse>, Status> {
        self.paused.send_replace(false);
        Ok(Response::new(ResumeResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::SpawnLocation;
    use crate::settings::{ServerAddr, Settings};
    use tokio_stream::StreamExt;

    fn console() -> Console {
        let (session, _sinks) = Session::new(Settings {
            server_addr: ServerAddr::Off,
            ..Settings::default()
        });
        Console::new(Arc::new(session), Arc::new(Budget::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn pause_stops_updates_and_resume_sends_what_changed() {
        let console = console();
        console.session.registry.add(
            7,
            TaskCell::new(7, Some("t".into()), SpawnLocation::UNKNOWN, None),
        );
        let mut updates = console
            .watch_updates(Request::new(InstrumentRequest {}))
            .await
            .unwrap()
            .into_inner();
        let mut states = console
            .watch_state(Request::new(StateRequest {}))
            .await
            .unwrap()
            .into_inner();
        let first = updates.next().await.unwrap().unwrap();
        assert!(first.new_metadata.is_some());
        assert_eq!(first.task_update.unwrap().new_tasks.len(), 1);
        let live = states.next().await.unwrap().unwrap();
        assert_eq!(live.temporality(), Temporality::Live);

        console.pause(Request::new(PauseRequest {})).await.unwrap();
        assert_eq!(
            states.next().await.unwrap().unwrap().temporality(),
            Temporality::Paused
        );
        let cell = console.session.registry.get(7).unwrap();
        TaskCell::bump(&cell.polls, 1);
        let quiet = tokio::time::timeout(PUBLISH_INTERVAL * 5, updates.next()).await;
        assert!(quiet.is_err(), "no update while paused: {quiet:?}");

        console
            .resume(Request::new(ResumeRequest {}))
            .await
            .unwrap();
        let next = updates.next().await.unwrap().unwrap();
        assert!(next.new_metadata.is_none());
        let tasks = next.task_update.unwrap();
        assert!(tasks.new_tasks.is_empty());
        assert_eq!(tasks.stats_update[&7].poll_stats.unwrap().polls, 1);
    }

    #[tokio::test]
    async fn details_of_unknown_and_invalid_tasks_are_refused_as_console_subscriber_does() {
        let console = console();
        let ask = |id: Option<u64>| {
            console.watch_task_details(Request::new(TaskDetailsRequest {
                id: id.map(|id| console_api::Id { id }),
            }))
        };
        assert_eq!(
            ask(None).await.err().unwrap().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            ask(Some(0)).await.err().unwrap().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            ask(Some(99)).await.err().unwrap().code(),
            tonic::Code::NotFound
        );
    }

    #[tokio::test]
    async fn update_streams_are_bounded() {
        let console = console();
        let mut open = Vec::new();
        for _ in 0..MAX_UPDATE_STREAMS {
            open.push(
                console
                    .watch_updates(Request::new(InstrumentRequest {}))
                    .await
                    .unwrap()
                    .into_inner(),
            );
        }
        let refused = console
            .watch_updates(Request::new(InstrumentRequest {}))
            .await
            .err()
            .unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        // One closes: its producer ends and frees its slot.
        drop(open.pop());
        let mut again = None;
        for _ in 0..100 {
            tokio::task::yield_now().await;
            if let Ok(s) = console
                .watch_updates(Request::new(InstrumentRequest {}))
                .await
            {
                again = Some(s);
                break;
            }
        }
        assert!(again.is_some(), "a slot is free again");
    }
}
