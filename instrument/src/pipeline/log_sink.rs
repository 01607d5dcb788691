//! The log sink: each finding as a `tracing` WARN event (target `taskscope`),
//! worded like asyncio's debug mode.

use taskscope_api::Finding;

pub(crate) fn emit(finding: &Finding) {
    let message = finding.message();
    match &finding.task {
        Some(task) => tracing::warn!(
            target: "taskscope",
            kind = finding.kind.name(),
            task.id = task.id,
            "{message}"
        ),
        None => tracing::warn!(target: "taskscope", kind = finding.kind.name(), "{message}"),
    }
}
