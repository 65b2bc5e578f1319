//! Build script of `train`: links it to the libtorch of the `torch` wheel that `scripts/setup.sh`
//! installed, with an rpath so the binary runs without LD_LIBRARY_PATH.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // torch-sys (a direct dependency with `links = "tch"`) tells where libtorch lives. It sets no rpath,
    // and the linker's --as-needed would drop libtorch_cuda (nothing references it by symbol), which makes
    // CUDA invisible to tch on GPU hosts.
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!(
            "cargo:warning=torch-sys did not report DEP_TCH_LIBTORCH_LIB; train may not find libtorch at run time"
        );
        return;
    };
    let mut args = vec![format!("-Wl,-rpath,{lib_dir}")];
    if Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        args.push("-Wl,--no-as-needed,-ltorch_cuda,--as-needed".to_string());
    }
    for arg in &args {
        println!("cargo:rustc-link-arg={arg}");
    }
}
