//! Slow polls end to end: a real app whose task blocks in `std::thread::sleep`.

use taskscope_tests::{location_prefix, run_app};

const APP: &str = env!("CARGO_BIN_EXE_slow_app");

fn final_slow_polls(run: &taskscope_tests::Run) -> Vec<&serde_json::Value> {
    run.of_kind("slow_poll")
        .into_iter()
        .filter(|f| f["in_progress"] == false)
        .collect()
}

fn assert_one_slow_poll_at_spawn_line(run: &taskscope_tests::Run, min_ms: f64) {
    assert!(run.output.status.success(), "app failed: {}", run.stderr());
    let spawn = location_prefix("src/bin/slow_app.rs", "SPAWN-SLOW");
    let slow = final_slow_polls(run);
    assert_eq!(
        slow.len(),
        1,
        "exactly one final slow_poll: {:#?}",
        run.findings
    );
    let f = slow[0];
    assert!(
        f["task"]["spawned_at"]
            .as_str()
            .unwrap()
            .starts_with(&spawn),
        "spawned_at {} should be {spawn}..",
        f["task"]["spawned_at"]
    );
    let ms = f["duration_ms"].as_f64().unwrap();
    assert!(ms >= min_ms, "duration {ms} ms < {min_ms}");
    assert_eq!(f["v"], 1);
    assert!(f["thread"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(f["stack"].is_array());
    assert!(f["time"].as_str().unwrap().contains('T'));
    let id = f["task"]["id"].as_u64().unwrap();

    let warnings: Vec<String> = run
        .warnings()
        .into_iter()
        .filter(|w| w.contains("Executing task") && w.contains("took"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning on stderr: {}", run.stderr());
    let w = &warnings[0];
    assert!(
        w.contains(&format!("Executing task {id} (spawned at {spawn}")),
        "{w}"
    );
    let secs: f64 = w
        .split(" took ")
        .nth(1)
        .and_then(|t| t.split(" seconds").next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {w}"));
    assert!(secs * 1000.0 >= min_ms - 1.0, "{w}");
}

#[test]
fn blocking_sleep_in_a_task_is_one_slow_poll_at_its_spawn_line() {
    let run = run_app(APP, "slow-init", &[]);
    assert_one_slow_poll_at_spawn_line(&run, 250.0);
}

#[test]
fn runtime_builder_path_detects_the_same() {
    let run = run_app(APP, "slow-hooks", &[("SLOW_APP_MODE", "hooks")]);
    assert_one_slow_poll_at_spawn_line(&run, 250.0);
}

#[test]
fn threshold_from_environment_flags_a_poll_the_default_ignores() {
    let lowered = run_app(
        APP,
        "slow-40",
        &[
            ("SLOW_APP_SLEEP_MS", "60"),
            ("TASKSCOPE_SLOW_POLL_MS", "40"),
        ],
    );
    assert_one_slow_poll_at_spawn_line(&lowered, 60.0);
    assert_eq!(lowered.findings[0]["threshold_ms"], 40);

    let default = run_app(APP, "slow-default", &[("SLOW_APP_SLEEP_MS", "60")]);
    assert!(default.output.status.success());
    assert!(
        final_slow_polls(&default).is_empty(),
        "{:#?}",
        default.findings
    );
}

#[test]
fn malformed_threshold_is_named_and_the_default_is_used() {
    for bad in ["abc", "-1"] {
        // 60 ms is under the default 100 ms: not reported.
        let run = run_app(
            APP,
            "slow-bad",
            &[("SLOW_APP_SLEEP_MS", "60"), ("TASKSCOPE_SLOW_POLL_MS", bad)],
        );
        let stderr = run.stderr();
        assert!(run.output.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("TASKSCOPE_SLOW_POLL_MS=\"{bad}\" is not valid"))
                && stderr.contains("using the default (100 ms)"),
            "{stderr}"
        );
        assert!(final_slow_polls(&run).is_empty(), "{:#?}", run.findings);
        // 150 ms is over it: reported.
        let run = run_app(
            APP,
            "slow-bad-150",
            &[
                ("SLOW_APP_SLEEP_MS", "150"),
                ("TASKSCOPE_SLOW_POLL_MS", bad),
            ],
        );
        assert_one_slow_poll_at_spawn_line(&run, 150.0);
        assert_eq!(run.findings[0]["threshold_ms"], 100);
    }
}

#[test]
fn taskscope_main_attribute_detects_slow_polls_and_leaks() {
    let run = run_app(env!("CARGO_BIN_EXE_macro_app"), "macro", &[]);
    assert!(run.output.status.success(), "{}", run.stderr());
    let slow = final_slow_polls(&run);
    assert_eq!(slow.len(), 1, "{:#?}", run.findings);
    let spawn = location_prefix("src/bin/macro_app.rs", concat!("SPAWN-MACRO-", "SLOW"));
    assert!(
        slow[0]["task"]["spawned_at"]
            .as_str()
            .unwrap()
            .starts_with(&spawn)
    );
    // The warning states the poll's duration: the 250 ms sleep, or a little
    // more on a loaded machine.
    let stderr = run.stderr();
    let took: f64 = stderr
        .split("took ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("no `took N` in the warning: {stderr}"));
    assert!((0.25..5.0).contains(&took), "took {took} s: {stderr}");
    let leaks = run.of_kind("leaked_task");
    assert_eq!(
        leaks.len(),
        1,
        "{:#?}\nstderr: {}",
        run.findings,
        run.stderr()
    );
    assert_eq!(leaks[0]["reason"], "alive_at_shutdown");
    let pending = location_prefix("src/bin/macro_app.rs", concat!("SPAWN-", "PENDING"));
    assert!(
        leaks[0]["task"]["spawned_at"]
            .as_str()
            .unwrap()
            .starts_with(&pending)
    );
}
