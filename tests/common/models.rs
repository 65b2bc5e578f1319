//! Models made by the real `train` binary, so that tests and benchmarks score with exactly what a
//! user's `train` writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::paths;

/// An untrained model (`train --epochs 0` on a small synthetic dataset: 4 photos a class) of input
/// `input_size`, grayscale or RGB, at `dir/model-<size>-<gray|rgb>.onnx`; a model already there is
/// reused (the benchmarks keep theirs between runs). Panics with train's own error if it fails.
pub fn untrained_model(dir: &Path, input_size: u32, grayscale: bool) -> PathBuf {
    let kind = if grayscale { "gray" } else { "rgb" };
    let out = dir.join(format!("model-{input_size}-{kind}.onnx"));
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let data = tempfile::tempdir().expect("a temporary folder for the dataset");
    swipebot_core::synth::write_dataset(data.path(), 4, 96, 7).expect("the synthetic dataset is written");
    let train = paths::bin("train");
    let mut cmd = Command::new(&train);
    cmd.arg("--data").arg(data.path()).arg("--out").arg(&out).args([
        "--epochs",
        "0",
        "--input-size",
        &input_size.to_string(),
    ]);
    if grayscale {
        cmd.arg("--grayscale");
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", train.display()));
    assert!(
        output.status.success() && out.is_file(),
        "{} failed: {}",
        train.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    out
}
