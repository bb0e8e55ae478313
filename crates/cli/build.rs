//! Decides whether the tests that need the shared data (real weights and music) run:
//! they do when `STEMDECK_SHARED_DIR` is set (where a missing file is then a failure) or
//! when `../shared` beside the repository has the weights; otherwise they are ignored
//! with the reason, never passed silently.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_data)");
    println!("cargo::rerun-if-env-changed=STEMDECK_SHARED_DIR");
    let explicit = std::env::var_os("STEMDECK_SHARED_DIR").filter(|d| !d.is_empty());
    let weights = explicit
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
                .join("../../../shared")
        })
        .join("models/htdemucs_955717e8_from_onnx.safetensors");
    // So that the data arriving or going changes the decision.
    println!("cargo::rerun-if-changed={}", weights.display());
    if explicit.is_some() || weights.is_file() {
        println!("cargo::rustc-cfg=shared_data");
    }
}
