//! Taking one Tokio task dump, bounded (compiled only with task dumps).
//!
//! - **One at a time**: a flight flag, held until Tokio's dump really ends,
//!   also when its caller gave up waiting; a second request is refused at once.
//! - **Gated**: refused while a thread has been inside one poll for longer
//!   than [`Options::max_busy`] (it would not stop for the dump), naming it;
//!   on a multi-thread runtime also while its workers' queues hold more tasks
//!   than Tokio 1.54's dump can gather.
//! - **Never blocks a worker** of the runtime it dumps.
//! - **A deadline on the caller's side**: past it the caller gets
//!   [`TaskDumpError::TimedOut`] naming the threads still inside a poll; the
//!   dump goes on without it (see below) and its result is dropped.
//!
//! How each runtime is dumped:
//! - current-thread, from its own thread (a task of it, or its `block_on`):
//!   Tokio's dump is synchronous there; it is taken at once.
//! - current-thread, from another thread (taskscope's server, its watchdog):
//!   only the runtime's own thread can dump it, so a task is spawned on it
//!   that does; on timeout the task is aborted and, unless it is dumping at
//!   that very moment, the next dump may start at once (a runtime nobody
//!   drives any more must not hold the flight for ever).
//! - multi-thread: Tokio runs the dump on a thread of its own; the caller
//!   polls the future that waits for it. A caller that gives up leaves that
//!   future to be polled by the next request (or the watchdog), which frees
//!   the flight once Tokio is done: no thread of taskscope's waits for it.
//!
//! Async callers need no timer in their runtime: the watchdog's [`tick`]
//! wakes a waiter whose deadline has passed.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::{Dump, Handle, RuntimeFlavor};

use crate::clock;
use crate::detect::taskdump::dumped::Dumped;
use crate::detect::taskdump::error::{BusyWorker, TaskDumpError};
use crate::detect::taskdump::request::{Gate, Options};
use crate::detect::watch_slot;
use crate::sync::lock;

// ---- one at a time ---------------------------------------------------------

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// When the dump in flight started (ns since [`epoch`], plus one); 0: none.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// Held for as long as Tokio's dump runs; dropping it lets the next one start.
struct Flight(());

impl Flight {
    fn acquire() -> Result<Flight, TaskDumpError> {
        poll_abandoned();
        let now = epoch().elapsed().as_nanos() as u64 + 1;
        match IN_FLIGHT.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(Flight(())),
            Err(since) => Err(TaskDumpError::AlreadyRunning {
                for_: Duration::from_nanos(now.saturating_sub(since)),
            }),
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        IN_FLIGHT.store(0, Ordering::Release);
    }
}

/// A multi-thread dump whose caller gave up: it holds the flight until
/// Tokio's dump thread answers.
type Abandoned = Pin<Box<dyn Future<Output = ()> + Send>>;

static ABANDONED: Mutex<Option<Abandoned>> = Mutex::new(None);

fn poll_abandoned() {
    let mut abandoned = lock(&ABANDONED);
    if let Some(fut) = abandoned.as_mut() {
        let mut cx = Context::from_waker(Waker::noop());
        if fut.as_mut().poll(&mut cx).is_ready() {
            *abandoned = None;
        }
    }
}

/// Whether a dump is under way (also one whose caller gave up).
#[cfg(test)]
pub(crate) fn in_flight() -> bool {
    poll_abandoned();
    IN_FLIGHT.load(Ordering::Acquire) != 0
}

fn abandon(fut: Pin<Box<dyn Future<Output = Dump> + Send>>) {
    *lock(&ABANDONED) = Some(Box::pin(async move {
        let _ = fut.await;
    }));
}

// ---- deadlines for async callers -------------------------------------------

/// The async caller waiting now (one dump at a time: at most one).
struct Waiter {
    deadline: Instant,
    waker: Mutex<Option<Waker>>,
}

static WAITER: Mutex<Option<Arc<Waiter>>> = Mutex::new(None);

/// Called by the watchdog every few milliseconds: wakes an async caller
/// whose deadline has passed, and polls an abandoned dump.
pub(crate) fn tick() {
    if let Some(waiter) = lock(&WAITER).as_ref()
        && Instant::now() >= waiter.deadline
        && let Some(waker) = lock(&waiter.waker).take()
    {
        waker.wake();
    }
    poll_abandoned();
}

/// Polls `step` until it is ready or `deadline` passes (`None`).
async fn until<T>(
    deadline: Instant,
    mut step: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Option<T> {
    let waiter = Arc::new(Waiter {
        deadline,
        waker: Mutex::new(None),
    });
    *lock(&WAITER) = Some(Arc::clone(&waiter));
    let out = std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = step(cx) {
            return Poll::Ready(Some(v));
        }
        if Instant::now() >= deadline {
            return Poll::Ready(None);
        }
        *lock(&waiter.waker) = Some(cx.waker().clone());
        Poll::Pending
    })
    .await;
    let mut current = lock(&WAITER);
    if current.as_ref().is_some_and(|w| Arc::ptr_eq(w, &waiter)) {
        *current = None;
    }
    out
}

// ---- a result both sync and async callers can wait for --------------------

/// A dump and how long it paused the runtime.
type Taken = (Dump, Duration);

struct Slot {
    /// The dump once taken, and the waker of an async caller.
    state: Mutex<(Option<Taken>, Option<Waker>)>,
    ready: Condvar,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new((None, None)),
            ready: Condvar::new(),
        })
    }

    fn put(&self, dump: Dump, took: Duration) {
        let mut state = lock(&self.state);
        state.0 = Some((dump, took));
        if let Some(waker) = state.1.take() {
            waker.wake();
        }
        self.ready.notify_all();
    }

    fn wait(&self, deadline: Instant) -> Option<Taken> {
        let mut state = lock(&self.state);
        loop {
            if let Some(done) = state.0.take() {
                return Some(done);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = match self.ready.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<Taken> {
        let mut state = lock(&self.state);
        match state.0.take() {
            Some(done) => Poll::Ready(done),
            None => {
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

// ---- a minimal executor for blocking callers -------------------------------

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread until it is ready or `deadline` passes,
/// parking in between. Not a Tokio runtime: usable on a thread inside one
/// (never on a worker of the runtime being dumped).
fn block_on_here<F: Future + Unpin>(fut: &mut F, deadline: Instant) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = Pin::new(&mut *fut).poll(&mut cx) {
            return Some(v);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

// ---- the threads inside a poll ---------------------------------------------

/// A thread inside a poll, as its watch slot shows it.
struct InPoll {
    slot: usize,
    seq: u64,
    start: u64,
    worker: BusyWorker,
}

/// The threads inside a poll now, longest first: but the caller's own poll,
/// and (on a multi-thread runtime, whose `block_on` thread is no worker) the
/// `block_on` future's.
fn in_poll(gate: &Gate<'_>, multi_thread: bool) -> Vec<InPoll> {
    let now = clock::now();
    let mut out: Vec<InPoll> = watch_slot::all()
        .iter()
        .filter_map(|slot| {
            let start = slot.start.load(Ordering::Acquire);
            if start == 0 || slot.dead.load(Ordering::Relaxed) {
                return None;
            }
            let key = slot.key.load(Ordering::Relaxed);
            if Some(key) == gate.caller_key {
                return None;
            }
            if multi_thread
                && gate
                    .session
                    .registry
                    .get(key)
                    .is_some_and(|cell| cell.is_block_on)
            {
                return None;
            }
            Some(InPoll {
                slot: Arc::as_ptr(slot) as usize,
                seq: slot.seq.load(Ordering::Relaxed),
                start,
                worker: BusyWorker {
                    thread: slot.thread_name.clone(),
                    task: key,
                    for_: Duration::from_nanos(clock::since(start, now)),
                },
            })
        })
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.worker.for_));
    out
}

// ---- taking the dump ---------------------------------------------------------

fn on_this_runtime(handle: &Handle) -> bool {
    Handle::try_current().is_ok_and(|h| h.id() == handle.id())
}

/// Whether the calling thread is polling a task of `handle`'s runtime.
fn in_task_of(handle: &Handle) -> bool {
    on_this_runtime(handle) && tokio::task::try_id().is_some()
}

enum Started {
    /// Taken at once, on the runtime's own thread.
    Ready(Dump, Duration),
    /// A task of the (current-thread) runtime takes it.
    Remote(Arc<Slot>, tokio::task::JoinHandle<()>, Arc<Remote>),
    /// Tokio's dump thread takes it (multi-thread).
    Tokio(Pin<Box<dyn Future<Output = Dump> + Send>>),
}

struct Request {
    at: Instant,
    /// Threads inside a poll when the dump was asked for.
    before: Vec<InPoll>,
    /// Tasks of that runtime that are the caller (never traced).
    callers: usize,
}

fn start(
    handle: &Handle,
    opts: &Options,
    gate: &Gate<'_>,
    blocking: bool,
) -> Result<(Started, Request), TaskDumpError> {
    let at = Instant::now();
    let multi_thread = handle.runtime_flavor() != RuntimeFlavor::CurrentThread;
    if multi_thread && blocking && in_task_of(handle) {
        return Err(TaskDumpError::WouldBlockWorker);
    }
    let flight = Flight::acquire()?;
    if !multi_thread && on_this_runtime(handle) {
        // Tokio's current-thread dump is synchronous here: ready at its
        // first poll. Off the runtime's thread (a `spawn_blocking` thread,
        // a thread that entered the runtime) it is empty: then ask a task.
        let mut dump = pin!(handle.dump());
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(dump) = dump.as_mut().poll(&mut cx) {
            let took = at.elapsed();
            let callers = usize::from(tokio::task::try_id().is_some());
            if dump.tasks().iter().next().is_some() || handle.metrics().num_alive_tasks() <= callers
            {
                drop(flight);
                let req = Request {
                    at,
                    before: Vec::new(),
                    callers,
                };
                return Ok((Started::Ready(dump, took), req));
            }
        }
    }
    let before = in_poll(gate, multi_thread);
    let busy: Vec<BusyWorker> = before
        .iter()
        .filter(|p| p.worker.for_ > opts.max_busy)
        .map(|p| p.worker.clone())
        .collect();
    if !busy.is_empty() {
        return Err(TaskDumpError::WorkerBusy { workers: busy });
    }
    if multi_thread {
        let metrics = handle.metrics();
        let queued: usize = (0..metrics.num_workers())
            .map(|w| metrics.worker_local_queue_depth(w))
            .sum();
        if queued > opts.max_queued {
            return Err(TaskDumpError::QueuesTooFull { queued });
        }
        let h = handle.clone();
        let fut: Pin<Box<dyn Future<Output = Dump> + Send>> = Box::pin(async move {
            let _flight = flight;
            h.dump().await
        });
        let req = Request {
            at,
            before,
            callers: usize::from(in_task_of(handle)),
        };
        return Ok((Started::Tokio(fut), req));
    }
    let slot = Slot::new();
    let remote = Arc::new(Remote {
        state: AtomicU8::new(WAITING),
        flight: Mutex::new(Some(flight)),
    });
    let (put, task_side) = (Arc::clone(&slot), Arc::clone(&remote));
    let task = handle.spawn(async move {
        if task_side
            .state
            .compare_exchange(WAITING, DUMPING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // the caller gave up: no dump nobody waits for
        }
        let began = Instant::now();
        let dump = Handle::current().dump().await;
        // Free before the caller hears of it: it may ask again at once.
        drop(lock(&task_side.flight).take());
        put.put(dump, began.elapsed());
    });
    let req = Request {
        at,
        before,
        callers: 1,
    };
    Ok((Started::Remote(slot, task, remote), req))
}

/// A dump asked of a current-thread runtime's task: whether it started.
struct Remote {
    state: AtomicU8,
    /// The flight, freed by the task once it has dumped, or by the caller
    /// when it gives up before the task started.
    flight: Mutex<Option<Flight>>,
}

const WAITING: u8 = 0;
const DUMPING: u8 = 1;
const GAVE_UP: u8 = 2;

impl Remote {
    /// The caller gives up: a task that has not started never will (its
    /// runtime's thread may never come back, and must not hold the flight
    /// for ever); one that is dumping right now frees it when done.
    fn give_up(&self, task: &tokio::task::JoinHandle<()>) {
        task.abort();
        if self
            .state
            .compare_exchange(WAITING, GAVE_UP, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            drop(lock(&self.flight).take());
        }
    }
}

fn finish(handle: &Handle, gate: &Gate<'_>, req: &Request, dump: Dump, took: Duration) -> Dumped {
    let alive = handle.metrics().num_alive_tasks();
    let traced = dump.tasks().iter().count();
    let multi_thread = handle.runtime_flavor() != RuntimeFlavor::CurrentThread;
    let now = in_poll(gate, multi_thread);
    // A thread whose poll began before the dump and still goes on never
    // stopped for it.
    let stuck: Vec<String> = req
        .before
        .iter()
        .filter(|b| {
            now.iter()
                .any(|n| n.slot == b.slot && n.seq == b.seq && n.start == b.start)
        })
        .map(|b| format!("{} and did not stop for the dump", b.worker))
        .collect();
    let expected = alive.saturating_sub(req.callers);
    let partial = if !stuck.is_empty() {
        Some(format!(
            "{} of {expected} tasks not traced: {}",
            expected.saturating_sub(traced),
            stuck.join("; ")
        ))
    } else if traced < expected {
        Some(format!(
            "{} of {expected} tasks not traced: running or just woken while the dump ran",
            expected - traced
        ))
    } else {
        None
    };
    Dumped::new(dump, took, partial, SystemTime::now())
}

fn timed_out(req: &Request, gate: &Gate<'_>, multi_thread: bool) -> TaskDumpError {
    TaskDumpError::TimedOut {
        after: req.at.elapsed(),
        unanswered: in_poll(gate, multi_thread)
            .into_iter()
            .map(|p| p.worker)
            .collect(),
    }
}

/// Dumps `handle`'s runtime, blocking this thread at most `opts.timeout`.
pub(crate) fn dump_blocking(
    handle: &Handle,
    opts: &Options,
    gate: &Gate<'_>,
) -> Result<Dumped, TaskDumpError> {
    let (started, req) = start(handle, opts, gate, true)?;
    let deadline = req.at + opts.timeout;
    let multi_thread = handle.runtime_flavor() != RuntimeFlavor::CurrentThread;
    match started {
        Started::Ready(dump, took) => Ok(finish(handle, gate, &req, dump, took)),
        Started::Remote(slot, task, remote) => match slot.wait(deadline) {
            Some((dump, took)) => Ok(finish(handle, gate, &req, dump, took)),
            None => {
                remote.give_up(&task);
                Err(timed_out(&req, gate, multi_thread))
            }
        },
        Started::Tokio(mut fut) => match block_on_here(&mut fut, deadline) {
            Some(dump) => {
                let took = req.at.elapsed();
                Ok(finish(handle, gate, &req, dump, took))
            }
            None => {
                abandon(fut);
                Err(timed_out(&req, gate, multi_thread))
            }
        },
    }
}

/// Like [`dump_blocking`], for async callers on any runtime (the app's own
/// tasks, taskscope's server): waits without blocking the thread, and needs
/// no timer (the watchdog's [`tick`] enforces the deadline).
pub(crate) async fn dump_async(
    handle: &Handle,
    opts: &Options,
    gate: &Gate<'_>,
) -> Result<Dumped, TaskDumpError> {
    let (started, req) = start(handle, opts, gate, false)?;
    let deadline = req.at + opts.timeout;
    let multi_thread = handle.runtime_flavor() != RuntimeFlavor::CurrentThread;
    match started {
        Started::Ready(dump, took) => Ok(finish(handle, gate, &req, dump, took)),
        Started::Remote(slot, task, remote) => match until(deadline, |cx| slot.poll(cx)).await {
            Some((dump, took)) => Ok(finish(handle, gate, &req, dump, took)),
            None => {
                remote.give_up(&task);
                Err(timed_out(&req, gate, multi_thread))
            }
        },
        Started::Tokio(mut fut) => match until(deadline, |cx| fut.as_mut().poll(cx)).await {
            Some(dump) => {
                let took = req.at.elapsed();
                Ok(finish(handle, gate, &req, dump, took))
            }
            None => {
                abandon(fut);
                Err(timed_out(&req, gate, multi_thread))
            }
        },
    }
}
