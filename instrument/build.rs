//! `tokio_unstable` is set by apps (RUSTFLAGS), not by Cargo features: declare
//! it so `#[cfg(tokio_unstable)]` does not trip the `unexpected_cfgs` lint.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tokio_unstable)");
}
