//! `taskscope dump --tree`: the tasks as a tree by parent, like
//! `python -m asyncio pstree` (with `--stacks`, each with where it waits):
//!
//! ```text
//! └── 1 (block_on) running, spawned at src/main.rs:9:1
//!     ├── 12 "acceptor" idle, spawned at src/main.rs:14:5; waiting at src/accept.rs:20
//!     │   └── 15 "conn-1" idle, spawned at src/accept.rs:31:9; waiting at src/conn.rs:44
//!     └── 13 (unnamed) idle, spawned at src/main.rs:15:5
//! ```
//!
//! Parents come from where each task was spawned (taskscope records the task
//! being polled at the spawn), so the tree works without task dumps. A task
//! whose parent has ended is a root, marked `(parent 5 has ended)`.

use std::collections::{BTreeMap, HashSet};

use crate::client::{ListedTask, Listing, TaskKind};
use crate::dump::stacks::{self, visible};

/// How deep the tree is drawn at most (deeper tasks are listed as roots).
const MAX_DEPTH: usize = 256;

struct Tree<'a> {
    roots: Vec<&'a ListedTask>,
    children: BTreeMap<u64, Vec<&'a ListedTask>>,
}

fn tree(listing: &Listing) -> Tree<'_> {
    let alive: HashSet<u64> = listing.tasks.iter().map(|t| t.task.id).collect();
    let mut roots = Vec::new();
    let mut children: BTreeMap<u64, Vec<&ListedTask>> = BTreeMap::new();
    for listed in &listing.tasks {
        match listed.task.parent {
            Some(p) if p != listed.task.id && alive.contains(&p) => {
                children.entry(p).or_default().push(listed)
            }
            _ => roots.push(listed),
        }
    }
    roots.sort_by_key(|t| t.task.id);
    for kids in children.values_mut() {
        kids.sort_by_key(|t| t.task.id);
    }
    Tree { roots, children }
}

fn label(listing: &Listing, listed: &ListedTask) -> String {
    let t = &listed.task;
    let name = match (&t.name, listed.kind) {
        (Some(name), _) => format!("\"{}\"", visible(name)),
        (None, TaskKind::BlockOn) => "(block_on)".into(),
        (None, TaskKind::Blocking) => "(blocking)".into(),
        (None, TaskKind::Task) => "(unnamed)".into(),
    };
    let mut text = format!(
        "{} {name} {}, spawned at {}",
        t.id,
        t.state.as_str(),
        visible(&t.spawned_at)
    );
    if let Some(p) = t.parent
        && !listing.tasks.iter().any(|o| o.task.id == p)
    {
        text.push_str(&format!(" (parent {p} has ended)"));
    }
    if let Some(s) = &listing.stacks {
        text.push_str("; ");
        text.push_str(&stacks::headline(&stacks::of(s, listed)));
    }
    text
}

/// The tree as text, one task a line.
pub fn to_text(listing: &Listing) -> String {
    let tree = tree(listing);
    let mut out = String::new();
    if let Some(s) = &listing.stacks {
        out.push_str(&stacks::summary(s, listing.at));
        out.push('\n');
    }
    let mut seen = HashSet::new();
    let count = tree.roots.len();
    for (i, root) in tree.roots.iter().enumerate() {
        draw(
            listing,
            &tree,
            root,
            "",
            i + 1 == count,
            0,
            &mut seen,
            &mut out,
        );
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn draw(
    listing: &Listing,
    tree: &Tree<'_>,
    node: &ListedTask,
    prefix: &str,
    last: bool,
    depth: usize,
    seen: &mut HashSet<u64>,
    out: &mut String,
) {
    if !seen.insert(node.task.id) {
        return;
    }
    out.push_str(prefix);
    out.push_str(if last { "└── " } else { "├── " });
    out.push_str(&label(listing, node));
    out.push('\n');
    let Some(kids) = tree.children.get(&node.task.id) else {
        return;
    };
    let inner = format!("{prefix}{}", if last { "    " } else { "│   " });
    if depth + 1 >= MAX_DEPTH {
        out.push_str(&format!("{inner}└── … {} more below\n", kids.len()));
        return;
    }
    for (i, kid) in kids.iter().enumerate() {
        draw(
            listing,
            tree,
            kid,
            &inner,
            i + 1 == kids.len(),
            depth + 1,
            seen,
            out,
        );
    }
}

/// One node of `dump --tree --json`.
#[derive(serde::Serialize)]
struct Node {
    id: u64,
    name: Option<String>,
    kind: &'static str,
    state: &'static str,
    spawned_at: String,
    parent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_at: Option<Vec<taskscope_api::StackFrame>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_at_note: Option<String>,
    children: Vec<Node>,
}

fn node(
    listing: &Listing,
    tree: &Tree<'_>,
    listed: &ListedTask,
    depth: usize,
    seen: &mut HashSet<u64>,
) -> Node {
    seen.insert(listed.task.id);
    let stack = listing.stacks.as_ref().map(|s| stacks::of(s, listed));
    let mut children = Vec::new();
    if depth + 1 < MAX_DEPTH
        && let Some(kids) = tree.children.get(&listed.task.id)
    {
        for kid in kids {
            if !seen.contains(&kid.task.id) {
                children.push(node(listing, tree, kid, depth + 1, seen));
            }
        }
    }
    let t = &listed.task;
    Node {
        id: t.id,
        name: t.name.clone(),
        kind: listed.kind.as_str(),
        state: t.state.as_str(),
        spawned_at: t.spawned_at.clone(),
        parent: t.parent,
        waiting_at: stack.as_ref().map(|s| s.waiting_at.clone()),
        waiting_at_note: stack.and_then(|s| s.note),
        children,
    }
}

/// The tree as JSON: an array of root tasks, each with its `children`
/// (the fields of `dump --json`'s tasks, fewer of the counters).
pub fn to_json(listing: &Listing) -> String {
    let tree = tree(listing);
    let mut seen = HashSet::new();
    let roots: Vec<Node> = tree
        .roots
        .iter()
        .map(|r| node(listing, &tree, r, 0, &mut seen))
        .collect();
    let mut text = serde_json::to_string_pretty(&roots).expect("JSON values serialize");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::model::{AppInfo, Task, TaskState};
    use std::time::Duration;

    fn task(id: u64, parent: Option<u64>, kind: TaskKind) -> ListedTask {
        ListedTask {
            task: Task {
                id,
                name: (id == 12).then(|| "acceptor".to_string()),
                state: TaskState::Idle,
                ended: None,
                spawned_at: format!("src/main.rs:{id}:5"),
                parent,
                age: Duration::from_secs(1),
                polls: 1,
                busy: Duration::ZERO,
                idle: Duration::from_secs(1),
                since_last_poll: None,
                max_poll: Duration::ZERO,
                wakes: 0,
                wakers: 0,
            },
            kind,
        }
    }

    fn listing() -> Listing {
        Listing {
            app: AppInfo::default(),
            tasks: vec![
                task(1, None, TaskKind::BlockOn),
                task(12, Some(1), TaskKind::Task),
                task(13, Some(1), TaskKind::Task),
                task(15, Some(12), TaskKind::Task),
                task(20, Some(7), TaskKind::Task),
            ],
            at: std::time::SystemTime::UNIX_EPOCH,
            stacks: None,
        }
    }

    #[test]
    fn children_nest_under_their_parents_and_orphans_are_roots() {
        let text = to_text(&listing());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("├── 1 (block_on) idle"), "{text}");
        assert!(
            lines[1].starts_with("│   ├── 12 \"acceptor\" idle, spawned at src/main.rs:12:5"),
            "{text}"
        );
        assert!(lines[2].starts_with("│   │   └── 15 (unnamed)"), "{text}");
        assert!(lines[3].starts_with("│   └── 13 (unnamed)"), "{text}");
        assert!(lines[4].starts_with("└── 20 (unnamed)"), "{text}");
        assert!(lines[4].ends_with("(parent 7 has ended)"), "{text}");

        let v: serde_json::Value = serde_json::from_str(&to_json(&listing())).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["children"][0]["id"], 12);
        assert_eq!(v[0]["children"][0]["children"][0]["id"], 15);
        assert_eq!(v[1]["id"], 20);
        assert!(v[0].get("waiting_at").is_none());
    }

    #[test]
    fn control_characters_from_the_app_are_made_visible() {
        let mut l = listing();
        l.tasks[1].task.name = Some("evil\u{1b}[2Jname".into());
        let text = to_text(&l);
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("evil\\x1b[2Jname"), "{text}");
    }
}
