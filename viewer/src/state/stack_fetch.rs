//! The async stack of the task in the Detail view: taken on demand, once
//! each time the view is opened on a task and again on `s`, never on the
//! detail's once-a-second refresh (a task dump pauses the app's runtime).

use std::time::Instant;

use crate::client::stacks::AsyncStack;
use crate::state::model::TaskDetail;

/// Where the Detail view's async stack stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum StackFetch {
    /// Not asked for (`s` asks).
    #[default]
    NotAsked,
    /// Asked for task `id`; the answer has not come.
    Asked {
        /// The task.
        id: u64,
    },
    /// The answer for task `id`: its frames, or a note saying why there are none.
    Got {
        /// The task.
        id: u64,
        /// Where it waits.
        stack: AsyncStack,
        /// When the answer came (the model's time).
        at: Instant,
    },
}

impl StackFetch {
    /// Notes that the stack of task `id` was asked for.
    pub fn ask(&mut self, id: u64) {
        *self = StackFetch::Asked { id };
    }

    /// Takes the stack from `detail` if it answers the question asked (a
    /// detail without one, or for another task, leaves it as it is).
    pub fn receive(&mut self, detail: &TaskDetail, now: Instant) {
        let Some(stack) = &detail.async_stack_frames else {
            return;
        };
        if matches!(self, StackFetch::Asked { id } if *id == detail.id) {
            *self = StackFetch::Got {
                id: detail.id,
                stack: stack.clone(),
                at: now,
            };
        }
    }

    /// The state as it concerns task `id` ([`StackFetch::NotAsked`] when
    /// what is here is about another task).
    pub fn of(&self, id: u64) -> &StackFetch {
        match self {
            StackFetch::Asked { id: of } | StackFetch::Got { id: of, .. } if *of == id => self,
            _ => &StackFetch::NotAsked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: u64, note: Option<&str>) -> TaskDetail {
        TaskDetail {
            id,
            async_stack_frames: note.map(|n| AsyncStack {
                note: Some(n.into()),
                ..AsyncStack::default()
            }),
            ..TaskDetail::default()
        }
    }

    #[test]
    fn only_the_answer_to_the_question_asked_is_kept() {
        let now = Instant::now();
        let mut fetch = StackFetch::default();
        // Not asked: an answer is not taken.
        fetch.receive(&answer(7, Some("dump refused")), now);
        assert_eq!(fetch, StackFetch::NotAsked);
        fetch.ask(7);
        // Another task's answer, and a refresh without a stack: still waiting.
        fetch.receive(&answer(8, Some("other")), now);
        fetch.receive(&answer(7, None), now);
        assert_eq!(fetch.of(7), &StackFetch::Asked { id: 7 });
        fetch.receive(&answer(7, Some("the task has ended")), now);
        let StackFetch::Got { id: 7, stack, .. } = fetch.of(7) else {
            panic!("{fetch:?}");
        };
        assert_eq!(stack.note.as_deref(), Some("the task has ended"));
        assert_eq!(fetch.of(8), &StackFetch::NotAsked);
        // A late second answer does not replace it unless asked again.
        fetch.receive(&answer(7, Some("late")), now);
        assert!(
            matches!(fetch.of(7), StackFetch::Got { stack, .. } if stack.note.as_deref() == Some("the task has ended"))
        );
    }
}
