//! Generates the protobuf messages and async ttrpc services for our .proto files into OUT_DIR.
//! Pure Rust (ttrpc-codegen's own parser): no protoc needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["protos/nri.proto", "protos/control.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    ttrpc_codegen::Codegen::new()
        .out_dir(&out_dir)
        .inputs(protos)
        .include("protos")
        .rust_protobuf()
        .customize(ttrpc_codegen::Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ttrpc_codegen::ProtobufCustomize::default().gen_mod_rs(false))
        .run()?;
    // The generated files open with inner attributes (`#![allow(..)]`), which `include!` cannot
    // take; lib.rs sets the equivalent allowances on the enclosing modules instead.
    for generated in ["nri.rs", "nri_ttrpc.rs", "control.rs", "control_ttrpc.rs"] {
        let path = out_dir.join(generated);
        let text = std::fs::read_to_string(&path)?;
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| {
                let line = line.trim_start();
                !line.starts_with("#![") && !line.starts_with("//!")
            })
            .collect();
        std::fs::write(&path, kept.join("\n"))?;
    }
    Ok(())
}
