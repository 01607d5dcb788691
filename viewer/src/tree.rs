//! Tasks as a tree by parent: the ordering rules `taskscope dump --tree` and
//! the live view's tree mode (`t`) share.
//!
//! A task nests under its parent when the parent is among the tasks given
//! (not ended, not filtered out) and is not the task itself; otherwise it is
//! a root. Siblings keep the order they are given in (the caller sorts).
//! Children are drawn to [`MAX_DEPTH`] levels; deeper tasks, and tasks in a
//! parent loop (bad input), are listed as roots, so none is ever left out.
//!
//! ```
//! use taskscope_viewer::tree::{walk, Step};
//! // (id, parent)
//! let tasks = [(1, None), (12, Some(1)), (15, Some(12)), (13, Some(1)), (20, Some(7))];
//! let rows: Vec<String> = walk(&tasks, |t| t.0, |t| t.1)
//!     .into_iter()
//!     .map(|step| match step {
//!         Step::Node { item, guides } => format!("{}{}", guides.prefix(false), item.0),
//!         Step::More { guides, count } => format!("{}… {count}", guides.prefix(false)),
//!     })
//!     .collect();
//! assert_eq!(rows, ["1", "├─12", "│ └─15", "└─13", "20"]);
//! ```

use std::collections::{HashMap, HashSet};

/// How deep the tree is drawn at most (deeper tasks are listed as roots).
pub const MAX_DEPTH: usize = 256;

/// Where a row sits: for each level from the root down to the row itself,
/// whether the task at that level has siblings after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guides(pub Vec<bool>);

impl Guides {
    /// The row's depth (0 for a root).
    pub fn depth(&self) -> usize {
        self.0.len().saturating_sub(1)
    }

    /// The lines drawn before the row's label: `│ ├─` and the like, two cells
    /// a level (`wide`: four, `│   ├── `, roots included, as `dump --tree`
    /// draws them; narrow leaves roots bare, as the tasks table does).
    pub fn prefix(&self, wide: bool) -> String {
        let (bar, blank, tee, corner) = if wide {
            ("│   ", "    ", "├── ", "└── ")
        } else {
            ("│ ", "  ", "├─", "└─")
        };
        let levels = if wide {
            &self.0[..]
        } else {
            &self.0[1.min(self.0.len())..]
        };
        let mut out = String::new();
        for (i, more) in levels.iter().enumerate() {
            let own = i + 1 == levels.len();
            out.push_str(match (own, *more) {
                (false, true) => bar,
                (false, false) => blank,
                (true, true) => tee,
                (true, false) => corner,
            });
        }
        out
    }
}

/// One row of the tree, in drawing order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<'a, T> {
    /// A task.
    Node {
        /// The task.
        item: &'a T,
        /// Where it sits.
        guides: Guides,
    },
    /// At [`MAX_DEPTH`]: this many children not drawn below (listed as roots
    /// after this tree).
    More {
        /// Where the line sits (as a last child).
        guides: Guides,
        /// Children not drawn here.
        count: usize,
    },
}

/// `items` as a tree, depth first: roots in the order given, each followed
/// by its children (in the order given), and so on down.
pub fn walk<'a, T>(
    items: &'a [T],
    id: impl Fn(&T) -> u64,
    parent: impl Fn(&T) -> Option<u64>,
) -> Vec<Step<'a, T>> {
    let present: HashSet<u64> = items.iter().map(&id).collect();
    let mut roots = Vec::new();
    let mut children: HashMap<u64, Vec<&T>> = HashMap::new();
    for item in items {
        match parent(item) {
            Some(p) if p != id(item) && present.contains(&p) => {
                children.entry(p).or_default().push(item)
            }
            _ => roots.push(item),
        }
    }
    let mut out = Vec::with_capacity(items.len());
    let mut seen: HashSet<u64> = HashSet::with_capacity(items.len());
    let start = |root: &'a T, last: bool, seen: &mut HashSet<u64>, out: &mut Vec<Step<'a, T>>| {
        // Depth first without recursion: (item, guides) still to draw.
        let mut stack = vec![(root, Guides(vec![!last]))];
        while let Some((item, guides)) = stack.pop() {
            if !seen.insert(id(item)) {
                continue;
            }
            let kids = children.get(&id(item)).map_or(&[][..], Vec::as_slice);
            out.push(Step::Node {
                item,
                guides: guides.clone(),
            });
            if kids.is_empty() {
                continue;
            }
            if guides.depth() + 1 >= MAX_DEPTH {
                let mut more = guides.0.clone();
                more.push(false);
                out.push(Step::More {
                    guides: Guides(more),
                    count: kids.len(),
                });
                continue;
            }
            for (i, kid) in kids.iter().enumerate().rev() {
                let mut g = guides.0.clone();
                g.push(i + 1 != kids.len());
                stack.push((kid, Guides(g)));
            }
        }
    };
    let count = roots.len();
    for (i, root) in roots.iter().enumerate() {
        start(root, i + 1 == count, &mut seen, &mut out);
    }
    // Tasks not reached (too deep, or in a parent loop): roots after the rest.
    let left: Vec<&T> = items.iter().filter(|t| !seen.contains(&id(t))).collect();
    for (i, item) in left.iter().enumerate() {
        if !seen.contains(&id(item)) {
            start(item, i + 1 == left.len(), &mut seen, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(tasks: &[(u64, Option<u64>)], wide: bool) -> Vec<String> {
        walk(tasks, |t| t.0, |t| t.1)
            .into_iter()
            .map(|step| match step {
                Step::Node { item, guides } => format!("{}{}", guides.prefix(wide), item.0),
                Step::More { guides, count } => format!("{}… {count}", guides.prefix(wide)),
            })
            .collect()
    }

    #[test]
    fn children_follow_their_parent_in_the_given_order() {
        let tasks = [
            (1, None),
            (13, Some(1)),
            (12, Some(1)),
            (15, Some(12)),
            (20, Some(7)),
        ];
        assert_eq!(
            rows(&tasks, true),
            [
                "├── 1",
                "│   ├── 13",
                "│   └── 12",
                "│       └── 15",
                "└── 20"
            ]
        );
    }

    #[test]
    fn a_parent_loop_loses_no_task() {
        let tasks = [(1, Some(2)), (2, Some(1)), (3, Some(3))];
        let out = rows(&tasks, false);
        assert_eq!(out, ["3", "1", "└─2"]);
    }
}
