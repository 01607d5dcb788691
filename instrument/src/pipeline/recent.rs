//! The recent findings, numbered, for [`crate::findings`] and the viewer
//! server (which asks for the ones newer than those it has sent).

use std::collections::VecDeque;
use std::sync::Mutex;

use taskscope_api::Finding;

use crate::sync::lock;

/// Findings kept in memory at most.
pub(crate) const RECENT_CAPACITY: usize = 1_000;

/// The newest [`RECENT_CAPACITY`] findings, each with its sequence number
/// (from 1, one more for each finding added).
#[derive(Default)]
pub(super) struct Recent {
    items: Mutex<VecDeque<(u64, Finding)>>,
}

impl Recent {
    /// Adds the newest finding, letting the oldest go when full.
    pub(super) fn push(&self, finding: Finding) {
        let mut items = lock(&self.items);
        let seq = items.back().map_or(1, |(seq, _)| seq + 1);
        if items.len() == RECENT_CAPACITY {
            items.pop_front();
        }
        items.push_back((seq, finding));
    }

    /// Every finding kept, oldest first.
    pub(super) fn all(&self) -> Vec<Finding> {
        lock(&self.items).iter().map(|(_, f)| f.clone()).collect()
    }

    /// The findings numbered above `after`, oldest first, with their numbers.
    pub(super) fn since(&self, after: u64) -> Vec<(u64, Finding)> {
        let items = lock(&self.items);
        let newer = items
            .iter()
            .rev()
            .take_while(|(seq, _)| *seq > after)
            .count();
        items.iter().skip(items.len() - newer).cloned().collect()
    }
}
