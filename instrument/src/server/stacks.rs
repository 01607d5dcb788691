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

use taskscope_api::{StackFrame, proto};

use crate::detect::taskdump::collect::{NOT_RESOLVED, not_traced, path_trim, stack_at};
use crate::detect::taskdump::dump::dump_async;
use crate::detect::taskdump::dumped::Dumped;
use crate::detect::taskdump::error::not_built;
use crate::detect::taskdump::request::{Gate, Options};
use crate::detect::taskdump::stack::AsyncStack;
use crate::model::app_runtime;
use crate::server::budget::Budget;
use crate::server::convert;
use crate::session::Session;
use crate::sync::lock;

/// A dump is sent again, rather than taken anew, for at least this long.
pub(crate) const REUSE_AT_LEAST: Duration = Duration::from_secs(1);

/// How long resolving the stacks of one listing may take (the viewer's own
/// deadline for the whole call is 10 s); the rest get a note.
const RESOLVE_FOR: Duration = Duration::from_secs(5);

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

/// Where the live tasks of one listing wait: the dump (or why there is
/// none), resolved task by task as the listing's chunks are made, each
/// task's stack in the chunk that lists it.
pub(crate) struct ListingStacks {
    dump: Result<(Arc<Dumped>, HashMap<u64, usize>), String>,
    paths: Option<crate::detect::taskdump::frames::PathTrim>,
    started: Instant,
}

impl ListingStacks {
    /// Takes (or reuses) the dump a listing's stacks come from.
    pub(crate) async fn take(session: &Session, budget: &Budget) -> ListingStacks {
        let dump = dump(session, budget).await.map(|dumped| {
            let index = dumped
                .task_ids()
                .into_iter()
                .enumerate()
                .map(|(i, id)| (id, i))
                .collect();
            (dumped, index)
        });
        ListingStacks {
            paths: dump.is_ok().then(|| path_trim(session)),
            dump,
            started: Instant::now(),
        }
    }

    /// Where the live task `task` waits (`None` for a `block_on` future,
    /// which a dump does not trace, or when there is no dump). Resolving
    /// stops after [`RESOLVE_FOR`]: the later tasks get a note.
    pub(crate) fn of(&mut self, task: &proto::Task) -> Option<proto::AsyncStack> {
        if task.kind == proto::TaskKind::BlockOn as i32 {
            return None;
        }
        let (dumped, index) = self.dump.as_ref().ok()?;
        let stack = match index.get(&task.id) {
            Some(_) if self.started.elapsed() > RESOLVE_FOR => AsyncStack::missing(NOT_RESOLVED),
            Some(&i) => stack_at(dumped, i, self.paths.as_mut()?),
            None => AsyncStack::missing(not_traced(dumped)),
        };
        Some(to_proto(task.id, &stack))
    }

    /// The dump's header, in every chunk of the listing.
    pub(crate) fn head(&self, chunk: &mut proto::TaskList) {
        match &self.dump {
            Err(why) => chunk.stacks_unavailable.clone_from(why),
            Ok((dumped, _)) => {
                chunk.stacks_partial = dumped.partial.clone().unwrap_or_default();
                chunk.dump_pause_ns = dumped.took.as_nanos().min(u128::from(u64::MAX)) as u64;
                chunk.dump_at_unix_ns = convert::unix_ns(dumped.at);
            }
        }
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
