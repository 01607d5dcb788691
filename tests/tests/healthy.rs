//! A healthy app yields no finding at all.

use taskscope_tests::run_app;

#[test]
fn thousand_healthy_tasks_give_zero_findings() {
    let run = run_app(env!("CARGO_BIN_EXE_healthy_app"), "healthy", &[]);
    assert!(run.output.status.success(), "{}", run.stderr());
    assert!(run.stdout().contains("served 1000"));
    // The history (1,000 by default) is full: every request task was seen.
    assert!(
        run.stdout().contains("finished tasks seen: 1000"),
        "{}",
        run.stdout()
    );
    assert!(run.findings.is_empty(), "findings: {:#?}", run.findings);
    assert!(run.warnings().is_empty(), "warnings: {:?}", run.warnings());
}
