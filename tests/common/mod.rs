//! Helpers shared by the integration tests of both packages: paths to the built binaries, the
//! project's virtual environment, and models made by the real `train` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (where scripts/setup.sh lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("scripts/setup.sh").exists())
        .expect("tests run inside the repository")
        .to_path_buf()
}

/// A binary of the workspace, built next to the test executable (`cargo test --workspace` builds both).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// The project's Python (made by scripts/setup.sh --dev), for the ONNX checker and sample photos.
pub fn python() -> PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/setup.sh --dev", p.display());
    p
}

/// Writes a small synthetic dataset and runs `train --epochs 0` on it; returns the model path.
pub fn untrained_model(dir: &Path, input_size: u32, grayscale: bool) -> PathBuf {
    let data = dir.join("data");
    swipebot_core::synth::write_dataset(&data, 4, 96, 7).unwrap();
    let out = dir.join(format!("model-{input_size}.onnx"));
    let mut cmd = Command::new(bin("train"));
    cmd.args([
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "0",
    ]);
    cmd.args(["--input-size", &input_size.to_string()]);
    if grayscale {
        cmd.arg("--grayscale");
    }
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// scikit-image's bundled sample photos (installed by scripts/setup.sh --dev).
pub fn sample_photo_dir() -> PathBuf {
    let out = Command::new(python())
        .args([
            "-c",
            "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('skimage').origin))",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scikit-image is not installed: run scripts/setup.sh --dev"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("data")
}
