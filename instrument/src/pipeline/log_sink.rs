//! The log sink: each finding as a `tracing` WARN event (target `taskscope`),
//! worded like asyncio's debug mode, with the finding's fields as the event's
//! fields, so that any subscriber (a JSON log, an OpenTelemetry bridge) gets
//! them without parsing the message.
//!
//! The fields are a stable interface, named as in the report file (the
//! task's as `task.id`, `task.name` and `spawned_at`, the metrics' label);
//! a field whose value is absent (an unnamed task, a finding without task)
//! is left out of the event:
//!
//! | kind | fields |
//! |---|---|
//! | every kind | `kind`, and for a task: `task.id`, `task.name`, `spawned_at` |
//! | `slow_poll` | `duration_ms`, `threshold_ms`, `in_progress`, `poll`, `thread`, `blocked_in` (the blocking frame, when there is a stack), `stack_unavailable` |
//! | `never_awaited` | `future` (its name), `created_at` |
//! | `leaked_task` | `reason`, `age_ms`, `idle_ms` |
//! | `task_panicked` | `panic_message`, `panicked_at`, `joined` |
//! | `findings_dropped` | `count` |

use taskscope_api::{Finding, FindingKind, LeakReason, blocking_frame};

/// The text of a leak's reason, as in the report file.
fn reason(reason: LeakReason) -> &'static str {
    match reason {
        LeakReason::AliveAtShutdown => "alive_at_shutdown",
        LeakReason::LostWaker => "lost_waker",
        LeakReason::IdleTooLong => "idle_too_long",
    }
}

pub(crate) fn emit(finding: &Finding) {
    let message = finding.message();
    let task = finding.task.as_ref();
    let id = task.map(|t| t.id);
    let name = task.and_then(|t| t.name.as_deref());
    let spawned_at = task.map(|t| t.spawned_at.as_str());
    let kind = finding.kind.name();
    match &finding.kind {
        FindingKind::SlowPoll {
            duration_ms,
            threshold_ms,
            thread,
            stack,
            stack_unavailable,
            in_progress,
            poll,
            ..
        } => {
            let blocked_in = blocking_frame(stack).map(|frame| frame.to_string());
            tracing::warn!(
                target: "taskscope",
                kind,
                task.id = id,
                task.name = name,
                spawned_at,
                duration_ms,
                threshold_ms,
                in_progress,
                poll,
                thread = thread.as_str(),
                blocked_in = blocked_in.as_deref(),
                stack_unavailable = stack_unavailable.as_deref(),
                "{message}"
            )
        }
        FindingKind::NeverAwaited {
            name: future,
            created_at,
        } => tracing::warn!(
            target: "taskscope",
            kind,
            task.id = id,
            task.name = name,
            spawned_at,
            future = future.as_str(),
            created_at = created_at.as_str(),
            "{message}"
        ),
        FindingKind::LeakedTask {
            reason: why,
            age_ms,
            idle_ms,
            waiting_at,
            waiting_at_note,
        } => {
            // Where it waits, as one value: the app's line it waits at, or
            // the innermost frame when no frame is the app's.
            let waiting = match taskscope_api::waiting::app_frame(waiting_at) {
                Some(frame) => Some(format!(
                    "{}:{}",
                    frame.file.as_deref().unwrap_or("?"),
                    frame.line.unwrap_or(0)
                )),
                None => waiting_at.first().map(taskscope_api::waiting::frame_text),
            };
            tracing::warn!(
                target: "taskscope",
                kind,
                task.id = id,
                task.name = name,
                spawned_at,
                reason = reason(*why),
                age_ms,
                idle_ms,
                waiting_at = waiting.as_deref(),
                waiting_at_note = waiting_at_note.as_deref(),
                "{message}"
            )
        }
        FindingKind::TaskPanicked {
            message: panic_message,
            panicked_at,
            joined,
        } => tracing::warn!(
            target: "taskscope",
            kind,
            task.id = id,
            task.name = name,
            spawned_at,
            panic_message = panic_message.as_str(),
            panicked_at = panicked_at.as_deref(),
            joined,
            "{message}"
        ),
        FindingKind::FindingsDropped { count } => tracing::warn!(
            target: "taskscope",
            kind,
            task.id = id,
            task.name = name,
            spawned_at,
            count,
            "{message}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::sync::{Arc, Mutex};

    use taskscope_api::{StackFrame, TaskRef};
    use tracing::field::{Field, Visit};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    use super::*;

    type Seen = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

    /// Records each event's fields as text.
    struct Fields(Seen);

    struct Visitor<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Visitor<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.insert(field.name().into(), format!("{value:?}"));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().into(), value.into());
        }
    }

    impl<S: Subscriber> Layer<S> for Fields {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut fields = BTreeMap::new();
            fields.insert("target".into(), event.metadata().target().into());
            fields.insert("level".into(), event.metadata().level().to_string());
            event.record(&mut Visitor(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }

    fn emitted(findings: &[Finding]) -> Vec<BTreeMap<String, String>> {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(Fields(Arc::clone(&seen)));
        tracing::subscriber::with_default(subscriber, || findings.iter().for_each(emit));
        seen.lock().unwrap().clone()
    }

    fn task(name: Option<&str>) -> Option<TaskRef> {
        Some(TaskRef {
            id: 17,
            name: name.map(str::to_owned),
            spawned_at: "src/main.rs:42:5".into(),
        })
    }

    #[test]
    fn a_slow_poll_event_carries_the_findings_fields() {
        let finding = Finding::new(
            FindingKind::SlowPoll {
                duration_ms: 153.25,
                threshold_ms: 100,
                thread: "worker-1".into(),
                stack: vec![StackFrame {
                    function: "app::load_config".into(),
                    file: Some("src/config.rs".into()),
                    line: Some(12),
                }],
                stack_unavailable: None,
                stack_truncated: false,
                in_progress: false,
                poll: 3,
            },
            task(Some("handler")),
        );
        let events = emitted(std::slice::from_ref(&finding));
        let e = &events[0];
        assert_eq!(e["target"], "taskscope");
        assert_eq!(e["level"], "WARN");
        assert_eq!(e["message"], finding.message());
        assert_eq!(e["kind"], "slow_poll");
        assert_eq!(e["task.id"], "17");
        assert_eq!(e["task.name"], "handler");
        assert_eq!(e["spawned_at"], "src/main.rs:42:5");
        assert_eq!(e["duration_ms"], "153.25");
        assert_eq!(e["threshold_ms"], "100");
        assert_eq!(e["in_progress"], "false");
        assert_eq!(e["poll"], "3");
        assert_eq!(e["thread"], "worker-1");
        assert_eq!(e["blocked_in"], "app::load_config (src/config.rs:12)");
        assert!(!e.contains_key("stack_unavailable"), "{e:?}");
    }

    #[test]
    fn every_kind_names_its_fields_and_leaves_out_absent_ones() {
        let findings = [
            Finding::new(
                FindingKind::NeverAwaited {
                    name: "fetch_user".into(),
                    created_at: "src/main.rs:10:5".into(),
                },
                task(None),
            ),
            Finding::new(
                FindingKind::LeakedTask {
                    reason: LeakReason::LostWaker,
                    age_ms: 560,
                    idle_ms: 559,
                    waiting_at: Vec::new(),
                    waiting_at_note: None,
                },
                task(None),
            ),
            Finding::new(
                FindingKind::TaskPanicked {
                    message: "config file missing".into(),
                    panicked_at: Some("src/main.rs:53:9".into()),
                    joined: None,
                },
                task(None),
            ),
            Finding::new(FindingKind::FindingsDropped { count: 120 }, None),
        ];
        let events = emitted(&findings);
        assert_eq!(events.len(), 4);
        for (e, f) in events.iter().zip(&findings) {
            assert_eq!(e["kind"], f.kind.name());
            assert_eq!(e["message"], f.message());
            assert!(!e.contains_key("task.name"), "unnamed: {e:?}");
        }
        assert_eq!(events[0]["future"], "fetch_user");
        assert_eq!(events[0]["created_at"], "src/main.rs:10:5");
        assert_eq!(events[0]["spawned_at"], "src/main.rs:42:5");
        assert_eq!(events[1]["reason"], "lost_waker");
        assert_eq!(
            (&*events[1]["age_ms"], &*events[1]["idle_ms"]),
            ("560", "559")
        );
        assert_eq!(events[2]["panic_message"], "config file missing");
        assert_eq!(events[2]["panicked_at"], "src/main.rs:53:9");
        assert!(!events[2].contains_key("joined"));
        assert_eq!(events[3]["count"], "120");
        assert!(!events[3].contains_key("task.id"));
        assert!(!events[3].contains_key("spawned_at"));
    }
}
