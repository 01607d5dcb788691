//! Two of taskscope's captures in one process: the second is refused with an
//! error that names both (`try_init` and `layer()` return it, `init()` and
//! `install_on()` print it once on stderr and give an inert guard), and the
//! first keeps seeing tasks. Each combination runs in a process of its own
//! (`modes_app`, `modes_macro_app`).

use std::process::{Command, Output};

const APP: &str = env!("CARGO_BIN_EXE_modes_app");
const MACRO_APP: &str = env!("CARGO_BIN_EXE_modes_macro_app");

fn run(bin: &str, args: &[&str]) -> Output {
    let out = Command::new(bin)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TASKSCOPE_REPORT")
        .env("TASKSCOPE_ADDR", "off")
        .output()
        .expect("run the app");
    assert!(
        out.status.success(),
        "{bin} {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `a,b`: the second refused, the error naming both; `said` is how it is
/// said: "stderr" (init, install_on: once) or "error" (layer, try_init).
fn assert_refused(first: &str, second: &str) {
    let out = run(APP, &[&format!("{first},{second}")]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let expected = format!(
        "taskscope: {} refused: {} already captures this process's tasks; use one of them per process (the first one keeps running)",
        name(second),
        name(first)
    );
    assert_eq!(
        stdout.matches("second active: false").count(),
        2,
        "{first},{second}: the second is refused both times:\n{stdout}\n{stderr}"
    );
    match second {
        "layer" | "init" if second == "layer" || first != "init" => {
            // The error returned (init: try_init's, after init() said it once).
            assert_eq!(
                stdout.matches(&format!("second error: {expected}")).count(),
                2,
                "{first},{second}:\n{stdout}"
            );
        }
        _ => {}
    }
    if second != "layer" {
        // init() and install_on() say it on stderr, once however often they are called.
        assert_eq!(
            stderr.matches(&expected).count(),
            1,
            "{first},{second}: said once on stderr:\n{stderr}"
        );
    }
    assert!(
        stdout.contains("probe seen: true"),
        "{first},{second}: the first capture still sees tasks:\n{stdout}\n{stderr}"
    );
}

fn name(how: &str) -> &'static str {
    match how {
        "init" => "taskscope::init()",
        "layer" => "taskscope::Builder::layer()",
        _ => "taskscope::Builder::install_on() (or #[taskscope::main])",
    }
}

#[test]
fn layer_then_install_on_is_refused() {
    assert_refused("layer", "install_on");
}

#[test]
fn install_on_then_layer_is_refused() {
    assert_refused("install_on", "layer");
}

#[test]
fn init_then_install_on_is_refused() {
    assert_refused("init", "install_on");
}

#[test]
fn install_on_then_init_is_refused() {
    assert_refused("install_on", "init");
}

#[test]
fn init_then_layer_is_refused() {
    assert_refused("init", "layer");
}

#[test]
fn layer_then_layer_is_refused() {
    assert_refused("layer", "layer");
}

#[test]
fn install_on_twice_is_fine() {
    let out = run(APP, &["install_on,install_on"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(stdout.matches("second active: true").count(), 2, "{stdout}");
    assert!(!stderr.contains("refused"), "{stderr}");
    assert!(stdout.contains("probe seen: true"), "{stdout}");
}

#[test]
fn taskscope_main_then_init_is_refused() {
    let out = run(MACRO_APP, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let expected = "taskscope: taskscope::init() refused: taskscope::Builder::install_on() (or #[taskscope::main]) already captures this process's tasks; use one of them per process (the first one keeps running)";
    assert!(stdout.contains("init active: false"), "{stdout}");
    assert!(
        stdout.contains(&format!("try_init: {expected}")),
        "{stdout}"
    );
    assert_eq!(stderr.matches(expected).count(), 1, "{stderr}");
    assert!(stdout.contains("probe seen: true"), "{stdout}\n{stderr}");
}
