//! A dump's traces as frames (compiled only with task dumps).

use taskscope_api::StackFrame;
use tokio::runtime::dump::Trace;

/// Every stack of a task's trace (one per Tokio leaf future it reached),
/// innermost frame first, inlined functions expanded, names as the debug
/// info has them (with hash and generic arguments). Reads the binary's
/// debug info: slow the first time in a process; never on a runtime worker.
pub(crate) fn raw_stacks(trace: &Trace) -> Vec<Vec<StackFrame>> {
    trace
        .resolve_backtraces()
        .iter()
        .map(|backtrace| {
            backtrace
                .frames()
                .flat_map(|frame| frame.symbols())
                .map(|symbol| StackFrame {
                    function: symbol
                        .name_demangled()
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            format!("{:?}", symbol.addr().unwrap_or(std::ptr::null_mut()))
                        }),
                    file: symbol.filename().map(|p| p.display().to_string()),
                    line: symbol.lineno(),
                })
                .collect()
        })
        .collect()
}
