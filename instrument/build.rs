//! `tokio_unstable` is set by apps (RUSTFLAGS), not by Cargo features: declare
//! it so `#[cfg(tokio_unstable)]` does not trip the `unexpected_cfgs` lint.
//!
//! `taskscope_taskdump` is set when Tokio's task dumps are compiled in: the
//! `taskdump` feature, `--cfg tokio_unstable`, Linux on x86_64 or aarch64 —
//! the conditions under which Tokio has `Handle::dump` (one name for what
//! would otherwise be a long `cfg(all(...))` on every item).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tokio_unstable)");
    println!("cargo::rustc-check-cfg=cfg(taskscope_taskdump)");
    let feature = std::env::var_os("CARGO_FEATURE_TASKDUMP").is_some();
    let unstable = std::env::var_os("CARGO_CFG_TOKIO_UNSTABLE").is_some();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if feature && unstable && os == "linux" && (arch == "x86_64" || arch == "aarch64") {
        println!("cargo::rustc-cfg=taskscope_taskdump");
    }
}
