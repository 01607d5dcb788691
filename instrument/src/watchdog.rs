//! The watchdog thread: every [`TICK`] it looks at each worker's "poll in
//! progress since T" slot. A poll past the threshold has its thread's stack
//! captured while it is still blocked (then symbolized here, off that thread)
//! and is reported as an `in_progress` slow poll, again every [`REPEAT`] while
//! it stays blocked. Every [`SCAN_EVERY`] it also runs the leak scans.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::clock;
use crate::core::Core;
use crate::stack;
use crate::table::lock;
use crate::watch_slot::{self, TakenStack, WatchSlot};
use taskscope_api::{Finding, FindingKind};

/// How often the watchdog looks at the slots: bounds detection latency.
pub(crate) const TICK: Duration = Duration::from_millis(10);
/// How often a poll that stays blocked is reported again.
pub(crate) const REPEAT: Duration = Duration::from_secs(1);
/// How often the leak scans run.
pub(crate) const SCAN_EVERY: Duration = Duration::from_millis(250);
/// How long a capture may wait for the blocked thread to answer.
const CAPTURE_TIMEOUT: Duration = Duration::from_millis(100);

struct Watched {
    seq: u64,
    last_report: Instant,
    frames: Vec<taskscope_api::StackFrame>,
    unavailable: Option<String>,
}

pub(crate) fn start(core: &Arc<Core>) {
    if let Err(err) = stack::install() {
        eprintln!("taskscope: stacks of blocked polls are unavailable: {err}");
    }
    let weak = Arc::downgrade(core);
    let spawned = std::thread::Builder::new()
        .name("taskscope-watchdog".into())
        .spawn(move || run(weak));
    if let Err(err) = spawned {
        eprintln!(
            "taskscope: cannot start the watchdog thread ({err}); slow polls are reported when they end, without stacks"
        );
    }
}

fn run(core: Weak<Core>) {
    let mut watched: HashMap<usize, Watched> = HashMap::new();
    let mut last_scan = Instant::now();
    loop {
        std::thread::sleep(TICK);
        let Some(core) = core.upgrade() else { return };
        let slots = watch_slot::all();
        watched.retain(|addr, _| slots.iter().any(|s| Arc::as_ptr(s) as usize == *addr));
        for slot in &slots {
            check_slot(&core, slot, &mut watched);
        }
        if last_scan.elapsed() >= SCAN_EVERY {
            last_scan = Instant::now();
            crate::leaks::scan(&core);
            core.registry.prune();
        }
    }
}

fn check_slot(core: &Core, slot: &Arc<WatchSlot>, watched: &mut HashMap<usize, Watched>) {
    let start = slot.start.load(Ordering::Acquire);
    if start == 0 {
        return;
    }
    let seq = slot.seq.load(Ordering::Relaxed);
    let key = slot.key.load(Ordering::Relaxed);
    let poll_no = slot.poll_no.load(Ordering::Relaxed);
    if clock::since(start, clock::now()) < core.slow_poll_ns {
        return;
    }
    let addr = Arc::as_ptr(slot) as usize;
    let known = watched.get(&addr).filter(|w| w.seq == seq);
    if known.is_some_and(|w| w.last_report.elapsed() < REPEAT) {
        return;
    }
    let Some(cell) = core.registry.get(key) else {
        return;
    };
    let (frames, unavailable) = match known {
        Some(w) => (w.frames.clone(), w.unavailable.clone()),
        None => {
            *lock(&slot.stack) = Some(TakenStack {
                seq,
                ready: None,
                pending_final: None,
            });
            match stack::capture(&slot.thread, CAPTURE_TIMEOUT) {
                Ok(raw) => (stack::symbolize(&raw), None),
                Err(err) => (Vec::new(), Some(err.to_string())),
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
        taken.ready = Some((frames.clone(), unavailable.clone()));
        if still_running {
            let finding = Finding::new(
                FindingKind::SlowPoll {
                    duration_ms: clock::since(start, clock::now()) as f64 / 1e6,
                    threshold_ms: core.settings.slow_poll_threshold.as_millis() as u64,
                    thread: slot.thread_name.clone(),
                    stack: frames.clone(),
                    stack_unavailable: unavailable.clone(),
                    in_progress: true,
                    poll: poll_no,
                },
                Some(cell.task_ref()),
            );
            core.submit(finding);
        }
        // The poll ended while its stack was being taken: its final report
        // waited for the stack; send it now.
        if let Some(mut last) = taken.pending_final.take() {
            watch_slot::set_stack(&mut last, frames.clone(), unavailable.clone());
            core.submit(last);
        }
    }
    if still_running {
        watched.insert(
            addr,
            Watched {
                seq,
                last_report: Instant::now(),
                frames,
                unavailable,
            },
        );
    }
}
