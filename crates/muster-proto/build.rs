//! Generates Rust types from `proto/muster.proto` and `proto/raftwire.proto` with a vendored protoc, so a fresh machine needs
//! no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let protos = ["../../proto/muster.proto", "../../proto/raftwire.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // The descriptor set serves gRPC reflection (`grpcurl list` against an agent).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("muster_descriptor.bin"))
        .compile_protos(&protos, &["../../proto"])?;
    Ok(())
}
