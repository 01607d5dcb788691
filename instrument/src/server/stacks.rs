//! Where the app's tasks wait, for viewers that ask (`ListTasks` with
//! `include_stacks`, `TaskDetail` with `include_async_stack`): one bounded
//! task dump of the app's runtime (see `detect::taskdump`), its stacks
//! resolved on the server's thread within the server's CPU budget.
//!
//! A dump pauses the app's runtime, so a viewer asking again and again must
//! not pause it again and again: a dump is reused for the next requests for
//! [`REUSE_AT_LEAST`], or ten times as long as it paused the app if that is
//! longer (so dumps asked for in a loop pause the app at most a tenth of the
//! time), and requests never overlap: one asked while another is being
//! taken waits for it and gets the same dump.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use taskscope_api::{StackFrame, proto};

use crate::detect::taskdump::collect::{NOT_RESOLVED, not_traced, path_trim, stack_at};
use crate::detect::taskdump::dump::dump_async;
use crate::detect::taskdump::dumped::Dumped;
use crate::detect::taskdump::error::not_built;
use crate::detect::taskdump::request::{Gate, Options};
use crate::detect::taskdump::stack::AsyncStack;
use crate::model::app_runtime;
use crate::server::budget::Budget;
use crate::server::chunk::CHUNK_BUDGET;
use crate::server::convert;
use crate::session::Session;
use crate::sync::lock;

/// A dump is sent again, rather than taken anew, for at least this long.
pub(crate) const REUSE_AT_LEAST: Duration = Duration::from_secs(1);

/// How long resolving the stacks of one listing may take (the viewer's own
/// deadline for the whole call is 10 s); the rest get a note.
const RESOLVE_FOR: Duration = Duration::from_secs(5);

/// Stacks resolved between two looks at the CPU budget.
const BATCH: usize = 128;

struct Recent {
    dumped: Arc<Dumped>,
    taken: Instant,
    reuse_for: Duration,
}

/// The last dump, while it may be reused.
static RECENT: Mutex<Option<Recent>> = Mutex::new(None);

/// Viewers' requests take their turn: one asked while the server's own dump
/// is under way waits for it and gets its result, rather than a refusal.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A dump of the app's runtime: a recent one, or a new one.
async fn dump(session: &Session, budget: &Budget) -> Result<Arc<Dumped>, String> {
    if let Some(why) = not_built() {
        return Err(why.to_string());
    }
    let _turn = TURN.lock().await;
    {
        let mut recent = lock(&RECENT);
        match recent.as_ref() {
            Some(r) if r.taken.elapsed() < r.reuse_for => return Ok(Arc::clone(&r.dumped)),
            Some(_) => *recent = None,
            None => {}
        }
    }
    let Some(handle) = app_runtime::handle() else {
        return Err("no task dump: taskscope has not seen the app's runtime yet".into());
    };
    budget.wait().await;
    let gate = Gate {
        session,
        caller_key: None,
        asked: true,
    };
    let dumped = dump_async(
        handle,
        session.settings.task_dumps,
        &Options::default(),
        &gate,
    )
    .await
    .map_err(|e| e.to_string())?;
    let dumped = Arc::new(dumped);
    *lock(&RECENT) = Some(Recent {
        dumped: Arc::clone(&dumped),
        taken: Instant::now(),
        reuse_for: REUSE_AT_LEAST.max(dumped.took * 10),
    });
    Ok(dumped)
}

fn frame(f: &StackFrame) -> proto::StackFrame {
    proto::StackFrame {
        function: f.function.clone(),
        file: f.file.clone(),
        line: f.line,
    }
}

fn to_proto(id: u64, stack: &AsyncStack) -> proto::AsyncStack {
    proto::AsyncStack {
        id,
        waiting_at: stack.waiting_at.iter().map(frame).collect(),
        also: stack
            .also
            .iter()
            .map(|s| proto::Frames {
                frames: s.iter().map(frame).collect(),
            })
            .collect(),
        note: stack.note.clone().unwrap_or_default(),
    }
}

/// Adds where each live task waits to a listing's chunks: chunks of stacks
/// after those of the tasks, and the dump's header in every chunk.
pub(crate) async fn add_to_listing(
    session: &Session,
    budget: &Budget,
    chunks: &mut Vec<proto::TaskList>,
) {
    let dumped = match dump(session, budget).await {
        Ok(dumped) => dumped,
        Err(why) => {
            for chunk in chunks.iter_mut() {
                chunk.stacks_unavailable.clone_from(&why);
            }
            return;
        }
    };
    let live: Vec<u64> = chunks
        .iter()
        .flat_map(|c| c.tasks.iter())
        .filter(|t| t.kind != proto::TaskKind::BlockOn as i32)
        .map(|t| t.id)
        .collect();
    let index: HashMap<u64, usize> = dumped
        .task_ids()
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();
    let started = Instant::now();
    let mut paths = path_trim(session);
    let mut stacks = Vec::with_capacity(live.len());
    for batch in live.chunks(BATCH) {
        budget.wait().await;
        budget.spend(|| {
            for &id in batch {
                let stack = match index.get(&id) {
                    Some(_) if started.elapsed() > RESOLVE_FOR => AsyncStack::missing(NOT_RESOLVED),
                    Some(&i) => stack_at(&dumped, i, &mut paths),
                    None => AsyncStack::missing(not_traced(&dumped)),
                };
                stacks.push(to_proto(id, &stack));
            }
        });
    }
    let mut parts: Vec<Vec<proto::AsyncStack>> = Vec::new();
    let mut used = 0usize;
    for stack in stacks {
        let cost = stack.encoded_len() + 8;
        if parts.is_empty() || (used > 0 && used + cost > CHUNK_BUDGET) {
            parts.push(Vec::new());
            used = 0;
        }
        used += cost;
        parts.last_mut().expect("a part").push(stack);
    }
    let Some(head) = chunks.first().cloned() else {
        return;
    };
    for part in parts {
        chunks.push(proto::TaskList {
            stacks: part,
            tasks: Vec::new(),
            finished: Vec::new(),
            ..head.clone()
        });
    }
    let count = chunks.len();
    let at = convert::unix_ns(dumped.at);
    for (i, chunk) in chunks.iter_mut().enumerate() {
        chunk.chunk = i as u32;
        chunk.last = i + 1 == count;
        chunk.stacks_partial = dumped.partial.clone().unwrap_or_default();
        chunk.dump_pause_ns = dumped.took.as_nanos().min(u128::from(u64::MAX)) as u64;
        chunk.dump_at_unix_ns = at;
    }
}

/// Adds where task `id` waits to its detail (it must be alive).
pub(crate) async fn add_to_detail(
    session: &Session,
    budget: &Budget,
    detail: &mut proto::TaskDetailResponse,
) {
    let Some(task) = detail.task.as_ref() else {
        return;
    };
    let id = task.id;
    if task.end != proto::TaskEnd::Alive as i32 {
        detail.async_stack_unavailable = "the task has ended".into();
        return;
    }
    if task.kind == proto::TaskKind::BlockOn as i32 {
        detail.async_stack_unavailable =
            "a runtime's block_on future: Tokio's task dump traces spawned tasks only".into();
        return;
    }
    let dumped = match dump(session, budget).await {
        Ok(dumped) => dumped,
        Err(why) => {
            detail.async_stack_unavailable = why;
            return;
        }
    };
    let Some(index) = dumped.task_ids().iter().position(|&t| t == id) else {
        detail.async_stack_unavailable = not_traced(&dumped);
        return;
    };
    budget.wait().await;
    let stack = budget.spend(|| stack_at(&dumped, index, &mut path_trim(session)));
    detail.async_stack = Some(stack.lines().join("\n"));
    detail.async_stack_unavailable = String::new();
    detail.async_stack_frames = Some(to_proto(id, &stack));
}
