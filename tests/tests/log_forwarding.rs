//! `taskscope::init()` installs taskscope's own subscriber: the app's spans and
//! events still reach the stderr log, with their span context and `RUST_LOG`.

use taskscope_tests::run_app;

#[test]
fn app_logs_keep_their_spans_and_levels() {
    let run = run_app(env!("CARGO_BIN_EXE_log_app"), "log", &[]);
    let stderr = run.stderr();
    assert!(run.output.status.success(), "{stderr}");
    assert!(
        stderr.contains("request{id=7}: log_app: handled current=\"request\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("request{id=7}:db{table=\"users\"}: log_app: query done"),
        "{stderr}"
    );
    assert!(!stderr.contains("hidden at the default level"), "{stderr}");
    // Tokio's own task spans and waker events stay out of the log.
    assert!(!stderr.contains("runtime.spawn"), "{stderr}");
    assert!(!stderr.contains("waker"), "{stderr}");
    assert!(
        run.stdout().contains("named task seen: true"),
        "{}",
        run.stdout()
    );
}

#[test]
fn rust_log_sets_the_levels() {
    let run = run_app(
        env!("CARGO_BIN_EXE_log_app"),
        "log-debug",
        &[("RUST_LOG", "log_app=debug")],
    );
    let stderr = run.stderr();
    assert!(stderr.contains("hidden at the default level"), "{stderr}");
    let run = run_app(
        env!("CARGO_BIN_EXE_log_app"),
        "log-warn",
        &[("RUST_LOG", "warn")],
    );
    let stderr = run.stderr();
    assert!(!stderr.contains("handled"), "{stderr}");
    assert!(
        run.stdout().contains("named task seen: true"),
        "{}",
        run.stdout()
    );
}
