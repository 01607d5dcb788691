//! The viewer's model of the remote app, and the state of the interface.
//!
//! The client turns what the app sends into [`Update`]s; [`Model::apply`] folds
//! them in; [`Model::handle_key`] turns keys into changes of the interface
//! state and, when the outside world must act, into an [`Action`]; the views in
//! [`crate::ui`] only draw what is here. Nothing in this module touches a
//! terminal or a socket, so tests drive it with hand-made updates.
//!
//! Time is passed in (`now`), never read, for the same reason.
//!
//! # What is kept
//!
//! - every live task the app reported, by id, with the time it was last
//!   updated (ages and idle times are extrapolated from it between updates);
//! - finished tasks, for [`Model::keep_finished`] (10 s) after the viewer
//!   learnt that they ended; then they are removed;
//! - slow polls, grouped by the spawn location of their task
//!   ([`slow_polls::SlowPolls`]);
//! - the other findings (never awaited, leaked, panicked), the newest
//!   [`MAX_PROBLEMS`], and all of them grouped by kind and location
//!   ([`taskscope_api::problems`], the model `taskscope report` uses);
//! - runtime metrics, and their last five minutes ([`history`]);
//! - drop counters, the connection state.
//!
//! # Pause
//!
//! While paused the picture on screen does not change, but nothing is lost:
//! updates are buffered *coalesced* (a task changed ten times is held once, in
//! its latest form; a snapshot replaces what was held), so the buffer is
//! bounded by the number of tasks, plus at most [`MAX_HELD_FINDINGS`] findings
//! (findings past that are dropped and counted, and the count is shown).
//! Resuming applies what was held as one update. Connection changes and task
//! details are applied at once even while paused: the connection state is
//! always shown, and a detail is something the user just asked for.

mod app_model;
mod apply;
mod entry;
pub mod filter;
mod held;
pub mod history;
pub mod keys;
pub mod model;
pub mod problems;
mod replay_status;
pub mod slow_polls;
pub mod sort;
mod stack_fetch;
mod task_map;
mod ui_state;
mod view;

pub use app_model::{
    KEEP_FINISHED, MAX_PROBLEM_GROUPS, MAX_PROBLEMS, MAX_TASKS, Model, RESORT_AT_ONCE_UP_TO,
    RESORT_EVERY,
};
pub use entry::{Marks, TaskCounts, TaskEntry};
pub use held::MAX_HELD_FINDINGS;
pub use history::{HISTORY_WINDOW, RuntimeHistory, Sample};
pub use keys::Action;
pub use model::*;
pub use replay_status::ReplayStatus;
pub use slow_polls::{SlowOrder, SlowPollGroup, SlowPolls};
pub use sort::{Column, SortSpec};
pub use stack_fetch::StackFetch;
pub use task_map::TaskMap;
pub use ui_state::UiState;
pub use view::View;
