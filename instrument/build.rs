//! Generates the wire protocol's code (`proto/taskscope.proto`) with the protoc
//! binary vendored from crates.io (`protoc-bin-vendored`): a fresh machine needs
//! no system protoc. Both the server (used inside the app) and the client (used
//! by the viewer, through `taskscope::proto`) are generated here, once.

fn main() {
    // `tokio_unstable` is set by apps (RUSTFLAGS), not by Cargo features: declare
    // it so `#[cfg(tokio_unstable)]` does not trip the `unexpected_cfgs` lint.
    println!("cargo::rustc-check-cfg=cfg(tokio_unstable)");
    println!("cargo::rerun-if-changed=proto/taskscope.proto");

    let protoc = protoc_bin_vendored::protoc_bin_path()
        .expect("protoc-bin-vendored has no protoc for this platform");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        // The generated client needs only tonic's codegen, not its transport:
        // the viewer brings the channel, so apps do not compile a gRPC client stack.
        .build_transport(false)
        .compile_with_config(config, &["proto/taskscope.proto"], &["proto"])
        .expect("generate the taskscope protocol code");
}
