//! Build script: records where `scripts/setup.sh` puts the ONNX Runtime library, so the binaries find it
//! without configuration.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // The last place the scorer looks for libonnxruntime (after the config key and ORT_DYLIB_PATH).
    let default_ort = Path::new(&manifest_dir).join(".venv/lib/swipebot/libonnxruntime.so");
    println!("cargo:rustc-env=SWIPEBOT_DEFAULT_ORT_DYLIB={}", default_ort.display());
}
