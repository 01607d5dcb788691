//! Memory safety at a worker thread's exit: a runtime kept in a
//! thread-local is dropped after taskscope's own thread-local and polls tasks
//! while it is dropped; nothing of taskscope's may be written after it was
//! freed (`tls_runtime_app`, with a quarantining allocator that catches
//! writes to freed blocks).

use std::process::Command;

const APP: &str = env!("CARGO_BIN_EXE_tls_runtime_app");

fn run(capture: &str) {
    let out = Command::new(APP)
        .arg(capture)
        .env_remove("RUST_LOG")
        .env_remove("TASKSCOPE_REPORT")
        .env("TASKSCOPE_ADDR", "off")
        .output()
        .expect("run tls_runtime_app");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains("polled in drop 3"),
        "{capture}: the runtime polled tasks while its thread-local was dropped:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("written after free 0") && out.status.success(),
        "{capture}: taskscope wrote to freed memory:\n{stdout}\n{stderr}"
    );
}

#[test]
fn a_runtime_in_a_thread_local_dropped_after_taskscopes_writes_no_freed_memory_init() {
    run("init");
}

#[test]
fn a_runtime_in_a_thread_local_dropped_after_taskscopes_writes_no_freed_memory_hooks() {
    run("hooks");
}
