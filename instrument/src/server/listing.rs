//! The ListTasks answer, made chunk by chunk as the client reads it.
//!
//! At the first chunk the list of live tasks is taken (one reference each:
//! 8 bytes a task) with the finished history if asked; each chunk then turns
//! the next tasks into protocol messages, up to [`chunk::CHUNK_BUDGET`] bytes,
//! and is encoded only when the client has read the one before it (HTTP/2
//! flow control stops asking otherwise). An answer nobody reads thus holds
//! the references and a chunk or two, never the whole listing encoded. Each
//! chunk is made in its turn of the server's CPU budget, before the periodic
//! steps ([`Budget::run_first`]).
//!
//! Every task alive when the listing was taken is in it, once, in id order
//! (a task that ended since is listed with its last figures).
//!
//! When the client asked where tasks wait, the dump is taken (or reused)
//! before the first chunk, and each live task's async stack goes in the chunk
//! that lists it, counted in that chunk's bytes ([`ListingStacks`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use prost::Message;
use tokio_stream::Stream;
use tonic::Status;

use taskscope_api::proto;

use crate::clock;
use crate::model::task::{FinishedTask, TaskCell};
use crate::server::budget::Budget;
use crate::server::chunk::{self, CHUNK_BUDGET};
use crate::server::codec;
use crate::server::convert;
use crate::server::delta;
use crate::server::stacks::ListingStacks;
use crate::session::Session;

/// What is left to send of a listing.
struct Cursor {
    session: Arc<Session>,
    include_finished: bool,
    /// Taken at the first chunk.
    taken: Option<Taken>,
    /// The next chunk's number.
    chunk: u32,
    /// Where the live tasks wait, when asked.
    stacks: Option<ListingStacks>,
}

struct Taken {
    app: proto::AppInfo,
    now: u64,
    at_unix_ns: u64,
    total_tasks: u64,
    live: std::vec::IntoIter<Arc<TaskCell>>,
    finished: std::vec::IntoIter<FinishedTask>,
    /// A task made for the previous chunk that did not fit in it.
    carried: Option<Listed>,
}

/// One task of the listing, made.
struct Listed {
    task: proto::Task,
    finished: bool,
    /// Where it waits, when asked.
    stack: Option<proto::AsyncStack>,
}

impl Taken {
    /// The next task, with its stack if `stacks` says where it waits.
    fn next(&mut self, stacks: Option<&mut ListingStacks>) -> Option<Listed> {
        if let Some(carried) = self.carried.take() {
            return Some(carried);
        }
        if let Some(cell) = self.live.next() {
            let task = chunk::bounded_task(convert::live(&cell, self.now));
            let stack = stacks.and_then(|s| s.of(&task));
            return Some(Listed {
                task,
                finished: false,
                stack,
            });
        }
        self.finished.next().map(|f| Listed {
            task: chunk::bounded_task(convert::finished(&f)),
            finished: true,
            stack: None,
        })
    }
}

impl Cursor {
    /// Takes the listing.
    fn take(&self) -> Taken {
        let session = &*self.session;
        let now = clock::now();
        let finished = session.registry.finished();
        let live = delta::alive(session.registry.live_cells(), &finished);
        let finished = if self.include_finished {
            finished
        } else {
            Vec::new()
        };
        Taken {
            app: convert::app_info(session),
            now,
            at_unix_ns: convert::unix_ns(clock::to_system_time(now)),
            total_tasks: live.len() as u64,
            live: live.into_iter(),
            finished: finished.into_iter(),
            carried: None,
        }
    }

    /// The next chunk, encoded; `None` after the last one.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.taken.is_none() {
            if self.chunk > 0 {
                return None;
            }
            self.taken = Some(self.take());
        }
        let taken = self.taken.as_mut().expect("taken above");
        let (mut tasks, mut finished, mut stacks) = (Vec::new(), Vec::new(), Vec::new());
        let mut used = 0usize;
        while let Some(listed) = taken.next(self.stacks.as_mut()) {
            let cost = chunk::task_cost(&listed.task)
                + listed
                    .stack
                    .as_ref()
                    .map_or(0, |s| chunk::field_cost(s.encoded_len()));
            if used > 0 && used + cost > CHUNK_BUDGET {
                taken.carried = Some(listed);
                break;
            }
            used += cost;
            stacks.extend(listed.stack);
            if listed.finished {
                finished.push(listed.task);
            } else {
                tasks.push(listed.task);
            }
        }
        let last = taken.carried.is_none();
        let mut message = proto::TaskList {
            chunk: self.chunk,
            last,
            protocol_version: proto::PROTOCOL_VERSION,
            app: Some(taken.app.clone()),
            tasks,
            finished,
            total_tasks: taken.total_tasks,
            at_unix_ns: taken.at_unix_ns,
            stacks,
            ..proto::TaskList::default()
        };
        if let Some(stacks) = &self.stacks {
            stacks.head(&mut message);
        }
        self.chunk += 1;
        if last {
            self.taken = None; // Let go of the references at once.
        }
        Some(codec::encode(&message))
    }
}

type Making = Pin<Box<dyn Future<Output = (Cursor, Option<Bytes>)> + Send>>;

/// The chunks of one listing, made as they are asked for.
pub(crate) struct ListingStream {
    budget: Arc<Budget>,
    cursor: Option<Cursor>,
    making: Option<Making>,
}

impl ListingStream {
    /// The listing of `session`'s tasks (and its finished history, if
    /// `include_finished`, and where they wait if `stacks` says); nothing is
    /// read before the first chunk is asked for.
    pub(crate) fn new(
        session: Arc<Session>,
        budget: Arc<Budget>,
        include_finished: bool,
        stacks: Option<ListingStacks>,
    ) -> ListingStream {
        ListingStream {
            budget,
            cursor: Some(Cursor {
                session,
                include_finished,
                taken: None,
                chunk: 0,
                stacks,
            }),
            making: None,
        }
    }
}

impl Stream for ListingStream {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.making.is_none() {
            let Some(mut cursor) = this.cursor.take() else {
                return Poll::Ready(None);
            };
            let budget = Arc::clone(&this.budget);
            this.making = Some(Box::pin(async move {
                let chunk = budget.run_first(|| cursor.next_chunk()).await;
                (cursor, chunk)
            }));
        }
        let making = this.making.as_mut().expect("set above");
        let (cursor, chunk) = std::task::ready!(making.as_mut().poll(cx));
        this.making = None;
        if chunk.is_some() {
            this.cursor = Some(cursor);
        }
        Poll::Ready(chunk.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::SpawnLocation;
    use crate::settings::{ServerAddr, Settings};
    use tokio_stream::StreamExt;

    fn session() -> Arc<Session> {
        let (session, sinks) = Session::new(Settings {
            server_addr: ServerAddr::Off,
            ..Settings::default()
        });
        std::thread::spawn(move || sinks.run());
        Arc::new(session)
    }

    fn spawn(session: &Session, id: u64, name: String) {
        let loc = SpawnLocation {
            file: "src/listing_test.rs",
            line: 3,
            col: 5,
        };
        session
            .registry
            .add(id, TaskCell::new(id, Some(name.into()), loc, None));
    }

    #[tokio::test]
    async fn a_listing_is_made_chunk_by_chunk_as_it_is_read() {
        let session = session();
        // About 3 chunks of tasks.
        let name = "n".repeat(300);
        for id in 1..=2_000 {
            spawn(&session, id, format!("{name}{id}"));
        }
        let mut stream =
            ListingStream::new(Arc::clone(&session), Arc::new(Budget::new()), false, None);
        // Nothing is taken before the client asks.
        assert!(stream.cursor.as_ref().unwrap().taken.is_none());

        let first = stream.next().await.unwrap().unwrap();
        let first = proto::TaskList::decode(first).unwrap();
        assert_eq!(first.chunk, 0);
        assert!(!first.last);
        assert!(first.encoded_len() <= CHUNK_BUDGET + 1024);
        // Only the first chunk was made: the rest is references.
        let cursor = stream.cursor.as_ref().unwrap();
        let taken = cursor.taken.as_ref().unwrap();
        let carried = usize::from(taken.carried.is_some());
        assert_eq!(taken.live.len() + carried + first.tasks.len(), 2_000);

        // Tasks that end meanwhile are still listed, once, in order.
        for id in 1..=2_000 {
            crate::detect::events::task_ended(
                &session,
                id,
                crate::model::task::TaskEnd::Completed,
                false,
            );
        }
        let mut ids: Vec<u64> = first.tasks.iter().map(|t| t.id).collect();
        let mut chunks = 1;
        while let Some(chunk) = stream.next().await {
            let chunk = proto::TaskList::decode(chunk.unwrap()).unwrap();
            assert_eq!(chunk.chunk, chunks);
            assert_eq!(chunk.total_tasks, 2_000);
            ids.extend(chunk.tasks.iter().map(|t| t.id));
            chunks += 1;
            if chunk.last {
                break;
            }
        }
        assert!(chunks >= 3, "{chunks}");
        assert_eq!(ids, (1..=2_000).collect::<Vec<u64>>());
        assert!(
            stream.next().await.is_none(),
            "nothing after the last chunk"
        );
    }

    #[tokio::test]
    async fn an_empty_listing_is_one_last_chunk() {
        let session = session();
        let mut stream = ListingStream::new(session, Arc::new(Budget::new()), true, None);
        let only = proto::TaskList::decode(stream.next().await.unwrap().unwrap()).unwrap();
        assert!(only.last);
        assert_eq!(only.chunk, 0);
        assert!(stream.next().await.is_none());
    }
}
