//! The watchdog thread: every [`TICK`] it looks at each worker's "poll in
//! progress since T" slot. A poll past the threshold has its thread's stack
//! captured while it is still blocked (then symbolized here, off that thread)
//! and is reported as an `in_progress` slow poll, again every [`REPEAT`] while
//! it stays blocked. Every [`SCAN_EVERY`] it also starts a leak scan, which
//! it runs in steps, one per tick ([`leaks::Scan`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use taskscope_api::{Finding, FindingKind};

use crate::clock;
use crate::detect::leaks;
use crate::detect::stack_capture;
use crate::detect::symbolize::symbolize;
use crate::detect::taskdump;
use crate::detect::watch_slot::{self, PollStack, TakenStack, WatchSlot};
use crate::session::Session;
use crate::sync::lock;

/// How often the watchdog looks at the slots: bounds detection latency.
pub(crate) const TICK: Duration = clock::TICK;
/// How often a poll that stays blocked is reported again.
pub(crate) const REPEAT: Duration = Duration::from_secs(1);
/// How often a leak scan starts (a scan of many tasks takes several ticks).
pub(crate) const SCAN_EVERY: Duration = Duration::from_millis(250);
/// How long a capture may wait for the blocked thread to answer.
const CAPTURE_TIMEOUT: Duration = Duration::from_millis(100);

struct Watched {
    seq: u64,
    last_report: Instant,
    stack: PollStack,
}

/// Turns stack capture on or off as `session`'s settings say and, when on,
/// installs the stack-capture signal and warms the capturer up before the
/// first capture, so a conflict is reported at start rather than at the first
/// slow poll. Called by the builder before it starts [`run`] on the
/// watchdog's thread, and before the app's workers first poll.
pub(crate) fn prepare(session: &Session) {
    stack_capture::set_enabled(session.settings.capture_stacks);
    if !session.settings.capture_stacks {
        return;
    }
    if let Err(err) = stack_capture::install() {
        eprintln!("taskscope: stacks of blocked polls are unavailable: {err}");
    }
}

/// The watchdog's loop, on a thread of its own; returns once the session is gone.
pub(crate) fn run(session: Weak<Session>) {
    let mut watched: HashMap<usize, Watched> = HashMap::new();
    let mut last_scan = Instant::now();
    let mut scan = leaks::Scan::default();
    loop {
        std::thread::sleep(TICK);
        let Some(session) = session.upgrade() else {
            // No tick any more: from now on every poll is timed.
            clock::hold();
            return;
        };
        // While the watchdog works (a stack capture and its symbolization can
        // take a second), every poll that ends is timed; the tick after the
        // work lets polls be sampled again (see `capture::poll`).
        clock::hold();
        work(&session, &mut watched, &mut scan, &mut last_scan);
        clock::tick();
    }
}

/// One tick's work: task dumps' deadlines, the slots, a leak scan's step.
fn work(
    session: &Session,
    watched: &mut HashMap<usize, Watched>,
    scan: &mut leaks::Scan,
    last_scan: &mut Instant,
) {
    taskdump::dump::tick();
    let slots = watch_slot::all();
    watched.retain(|addr, _| slots.iter().any(|s| Arc::as_ptr(s) as usize == *addr));
    for slot in &slots {
        check_slot(session, slot, watched);
    }
    if !scan.running() && last_scan.elapsed() >= SCAN_EVERY {
        *last_scan = Instant::now();
        scan.start();
        session.registry.prune();
    }
    scan.step(session);
}

fn check_slot(session: &Session, slot: &Arc<WatchSlot>, watched: &mut HashMap<usize, Watched>) {
    let start = slot.start.load(Ordering::Acquire);
    if start == 0 {
        return;
    }
    let seq = slot.seq.load(Ordering::Relaxed);
    let key = slot.key.load(Ordering::Relaxed);
    let poll_no = slot.poll_no.load(Ordering::Relaxed);
    if clock::since(start, clock::now()) < session.slow_poll_ns {
        return;
    }
    let addr = Arc::as_ptr(slot) as usize;
    let known = watched.get(&addr).filter(|w| w.seq == seq);
    if known.is_some_and(|w| w.last_report.elapsed() < REPEAT) {
        return;
    }
    let Some(cell) = session.registry.get(key) else {
        return;
    };
    let stack = match known {
        Some(w) => w.stack.clone(),
        None => {
            *lock(&slot.stack) = Some(TakenStack {
                seq,
                ready: None,
                pending_final: None,
            });
            // Turned off (TASKSCOPE_STACKS=off), the thread is not looked at:
            // the error says "disabled".
            match stack_capture::capture(&slot.thread, CAPTURE_TIMEOUT) {
                Ok(raw) => PollStack {
                    frames: symbolize(&raw),
                    unavailable: None,
                    truncated: raw.is_truncated(),
                },
                Err(err) => PollStack::missing(err.to_string()),
            }
        }
    };
    let still_running =
        slot.seq.load(Ordering::Relaxed) == seq && slot.start.load(Ordering::Acquire) == start;
    {
        let mut state = lock(&slot.stack);
        let Some(taken) = state.as_mut().filter(|t| t.seq == seq) else {
            return;
        };
        taken.ready = Some(stack.clone());
        if still_running {
            let mut finding = Finding::new(
                FindingKind::SlowPoll {
                    duration_ms: clock::since(start, clock::now()) as f64 / 1e6,
                    threshold_ms: session.settings.slow_poll_threshold.as_millis() as u64,
                    thread: slot.thread_name.clone(),
                    stack: Vec::new(),
                    stack_unavailable: None,
                    stack_truncated: false,
                    in_progress: true,
                    poll: poll_no,
                },
                Some(cell.task_ref()),
            );
            watch_slot::set_stack(&mut finding, &stack);
            session.submit(finding);
        }
        // The poll ended while its stack was being taken: its final report
        // waited for the stack; send it now.
        if let Some(mut last) = taken.pending_final.take() {
            watch_slot::set_stack(&mut last, &stack);
            session.submit(last);
        }
    }
    if still_running {
        watched.insert(
            addr,
            Watched {
                seq,
                last_report: Instant::now(),
                stack,
            },
        );
    }
}
