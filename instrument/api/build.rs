//! Generates the wire protocol's code (`proto/taskscope.proto`) with the protoc
//! binary vendored from crates.io (`protoc-bin-vendored`): a fresh machine needs
//! no system protoc. Both the server stubs (used inside the app) and the client
//! (used by the viewer) are generated here, once.

fn main() {
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
