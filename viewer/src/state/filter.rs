//! The tasks view's filter: a piece of text matched against each task's name
//! and spawn location, ignoring ASCII case, without allocating per task.

use crate::state::model::Task;

/// Whether `task` passes the filter `needle` (empty passes everything).
pub fn matches(task: &Task, needle: &str) -> bool {
    let needle = needle.trim();
    needle.is_empty()
        || task
            .name
            .as_deref()
            .is_some_and(|name| contains_ignore_ascii_case(name, needle))
        || contains_ignore_ascii_case(&task.spawned_at, needle)
}

/// Whether `haystack` contains `needle`, ignoring ASCII case.
///
/// ```
/// # use taskscope_viewer::state::filter::contains_ignore_ascii_case;
/// assert!(contains_ignore_ascii_case("src/Handlers.rs:42:5", "hand"));
/// assert!(!contains_ignore_ascii_case("src/main.rs:1:1", "hand"));
/// ```
pub fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (hay, needle) = (haystack.as_bytes(), needle.as_bytes());
    if needle.is_empty() {
        return true;
    }
    if needle.len() > hay.len() {
        return false;
    }
    hay.windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::model::TaskState;
    use std::time::Duration;

    fn task(name: Option<&str>, at: &str) -> Task {
        Task {
            id: 1,
            name: name.map(str::to_owned),
            state: TaskState::Idle,
            ended: None,
            spawned_at: at.into(),
            parent: None,
            age: Duration::ZERO,
            polls: 0,
            busy: Duration::ZERO,
            idle: Duration::ZERO,
            since_last_poll: None,
            max_poll: Duration::ZERO,
            wakes: 0,
            wakers: 0,
        }
    }

    #[test]
    fn matches_name_or_location_ignoring_case() {
        assert!(matches(&task(Some("Handler-3"), "src/main.rs:1:1"), "hand"));
        assert!(matches(&task(None, "src/HANDLERS.rs:42:5"), "handlers"));
        assert!(!matches(&task(Some("worker"), "src/main.rs:1:1"), "hand"));
        assert!(matches(&task(None, "x"), ""));
        assert!(matches(&task(None, "x"), "  "));
    }
}
