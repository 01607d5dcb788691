//! Updates held while the view is paused, coalesced (see the module docs of
//! [`crate::state`]).

use std::collections::HashMap;
use std::time::SystemTime;

use crate::state::model::{AppInfo, Dropped, Finding, RuntimeMetrics, Task, Update};

/// The most findings held while paused; more are dropped and counted.
pub const MAX_HELD_FINDINGS: usize = 10_000;

/// Updates held while paused, coalesced.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// A snapshot came: at resume, replace everything (with `live`/`finished`).
    snapshot: Option<AppInfo>,
    /// Live tasks changed (or, after a snapshot, all live tasks), latest record each.
    live: HashMap<u64, Task>,
    /// Tasks that ended.
    finished: HashMap<u64, Task>,
    /// Findings, oldest first.
    findings: Vec<Finding>,
    metrics: Option<RuntimeMetrics>,
    dropped: Option<Dropped>,
    at: Option<SystemTime>,
    /// Updates held (as they came).
    pub count: u64,
    /// Findings dropped because `findings` was full.
    pub findings_dropped: u64,
}

impl Held {
    /// Holds `update`, coalesced with what is held.
    pub(crate) fn hold(&mut self, update: Update) {
        self.count += 1;
        match update {
            Update::Snapshot {
                app,
                tasks,
                finished,
                findings,
                metrics,
                dropped,
                at,
            } => {
                let (count, findings_dropped) = (self.count, self.findings_dropped);
                *self = Held {
                    snapshot: Some(app),
                    live: tasks.into_iter().map(|t| (t.id, t)).collect(),
                    finished: finished.into_iter().map(|t| (t.id, t)).collect(),
                    findings: Vec::new(),
                    metrics: Some(metrics),
                    dropped: Some(dropped),
                    at: Some(at),
                    count,
                    findings_dropped,
                };
                self.hold_findings(findings);
            }
            Update::Delta {
                changed,
                finished,
                findings,
                metrics,
                dropped,
                at,
            } => {
                for task in changed {
                    if !self.finished.contains_key(&task.id) {
                        self.live.insert(task.id, task);
                    }
                }
                for task in finished {
                    self.live.remove(&task.id);
                    self.finished.insert(task.id, task);
                }
                self.hold_findings(findings);
                self.metrics = Some(metrics);
                self.dropped = Some(dropped);
                self.at = Some(at);
            }
            // Applied at once, never held.
            Update::Detail(_) | Update::Connection(_) => {}
        }
    }

    fn hold_findings(&mut self, findings: Vec<Finding>) {
        for finding in findings {
            if self.findings.len() < MAX_HELD_FINDINGS {
                self.findings.push(finding);
            } else {
                self.findings_dropped += 1;
            }
        }
    }

    /// What was held, as updates to apply in order.
    pub fn into_updates(self) -> Vec<Update> {
        if self.count == 0 {
            return Vec::new();
        }
        let tasks: Vec<Task> = self.live.into_values().collect();
        let finished: Vec<Task> = self.finished.into_values().collect();
        let metrics = self.metrics.unwrap_or_default();
        let dropped = self.dropped.unwrap_or_default();
        let at = self.at.unwrap_or_else(SystemTime::now);
        let update = match self.snapshot {
            Some(app) => Update::Snapshot {
                app,
                tasks,
                finished,
                findings: self.findings,
                metrics,
                dropped,
                at,
            },
            None => Update::Delta {
                changed: tasks,
                finished,
                findings: self.findings,
                metrics,
                dropped,
                at,
            },
        };
        vec![update]
    }
}
