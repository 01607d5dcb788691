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
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let Some(last_start) = hay.len().checked_sub(needle.len()) else {
        return false;
    };
    // The needle's first byte in either case, found with SIMD (`memchr2`),
    // then the rest compared there: at a million tasks a filter key reads
    // every name and location, and most positions are not a start.
    memchr::memchr2_iter(
        first.to_ascii_lowercase(),
        first.to_ascii_uppercase(),
        &hay[..=last_start],
    )
    .any(|at| hay[at + 1..at + needle.len()].eq_ignore_ascii_case(rest))
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

    /// The plain definition: some window of the haystack equals the needle.
    fn naive(hay: &str, needle: &str) -> bool {
        needle.is_empty()
            || hay
                .as_bytes()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    }

    #[test]
    fn agrees_with_the_plain_definition() {
        // Every seventh haystack of up to 6 characters over a small alphabet
        // (both cases of a letter, a digit, a separator, a multi-byte
        // character), against every needle of up to 3 bytes over the same
        // alphabet.
        let alphabet = ["a", "A", "b", "1", ":", "é"];
        let mut words = vec![String::new()];
        let mut all = Vec::new();
        for _ in 0..6 {
            words = words
                .iter()
                .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                .collect();
            all.extend(words.iter().cloned());
        }
        let needles: Vec<&String> = all.iter().filter(|w| w.len() <= 3).collect();
        let mut checked = 0;
        for hay in all.iter().step_by(7) {
            for needle in &needles {
                assert_eq!(
                    contains_ignore_ascii_case(hay, needle),
                    naive(hay, needle),
                    "{hay:?} {needle:?}"
                );
                checked += 1;
            }
        }
        assert!(checked > 100_000, "{checked}");
        assert!(contains_ignore_ascii_case("x", ""));
        assert!(!contains_ignore_ascii_case("", "a"));
        assert!(contains_ignore_ascii_case("src/Main.rs", "MAIN.RS"));
        assert!(!contains_ignore_ascii_case("ab", "abc"));
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
