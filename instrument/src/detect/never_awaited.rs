//! Never-awaited futures: the finding for a tracked future dropped before its
//! first poll (the wrapper itself is [`crate::Tracked`]).

use std::panic::Location;

use taskscope_api::format::{MAX_TEXT, truncate};
use taskscope_api::{Finding, FindingKind, TaskRef};

/// The `never_awaited` finding of a future of type `F` (or named `name`)
/// created at `created_at`, dropped inside `task` (if any).
pub(crate) fn finding(
    created_at: &'static Location<'static>,
    name: Option<&str>,
    type_name: &str,
    task: Option<TaskRef>,
) -> Finding {
    let name = name.map_or_else(|| short_type_name(type_name), str::to_owned);
    // A name of any length may be given: at most MAX_TEXT bytes are kept (marked).
    let name = truncate(&name, MAX_TEXT).into_owned();
    Finding::new(
        FindingKind::NeverAwaited {
            name,
            created_at: format!(
                "{}:{}:{}",
                created_at.file(),
                created_at.line(),
                created_at.column()
            ),
        },
        task,
    )
}

/// `app::fetch_user::{{closure}}` → `fetch_user`; `core::future::ready::Ready<u8>` → `Ready`.
pub(crate) fn short_type_name(full: &str) -> String {
    // Drop generic arguments.
    let mut base = String::with_capacity(full.len());
    let mut depth = 0usize;
    for ch in full.chars() {
        match ch {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => base.push(ch),
            _ => {}
        }
    }
    let mut parts: Vec<&str> = base.split("::").filter(|p| !p.is_empty()).collect();
    while parts.last().is_some_and(|p| p.starts_with("{{")) {
        parts.pop();
    }
    parts
        .last()
        .map_or_else(|| full.to_string(), |p| (*p).to_string())
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn type_names_are_shortened_to_the_fn() {
        assert_eq!(
            short_type_name("app::fetch_user::{{closure}}"),
            "fetch_user"
        );
        assert_eq!(
            short_type_name("core::future::ready::Ready<alloc::string::String>"),
            "Ready"
        );
        assert_eq!(short_type_name("a::b::{{closure}}::{{closure}}"), "b");
        assert_eq!(short_type_name("plain"), "plain");
    }
}
