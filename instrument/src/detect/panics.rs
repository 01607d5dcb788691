//! Tasks that panicked: the finding, from what the panic hook noted on the
//! task's record (the hook itself is the capture's: `capture::panics`).

use taskscope_api::{Finding, FindingKind};

use crate::model::task::{PanicRecord, TaskCell};

/// The `task_panicked` finding of `cell`'s panic.
pub(crate) fn finding(cell: &TaskCell, panic: PanicRecord) -> Finding {
    Finding::new(
        FindingKind::TaskPanicked {
            message: panic.message,
            panicked_at: panic.location,
            // Tokio does not tell whether a JoinHandle observed the panic.
            joined: None,
        },
        Some(cell.task_ref()),
    )
}
