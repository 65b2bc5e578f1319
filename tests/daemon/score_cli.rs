//! `swipebot score` end to end: the real binary, a model made by the real `train`, real ONNX Runtime,
//! real photos.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use swipebot::vision::scorer::{Device, Scorer, ScorerError, ScorerOptions};

use crate::common::images::png_header_only;
use crate::common::models::untrained_model;
use crate::common::paths::{bin, sample_photo_dir};

/// `swipebot score ARGS FILES`, run to the end.
fn score(args: &[&str], files: &[PathBuf]) -> Output {
    Command::new(bin("swipebot"))
        .arg("score")
        .args(args)
        .args(files)
        .output()
        .unwrap()
}

/// Panics unless `out` ended with exit code 2 (a setup problem, nothing scored) and its error names
/// every one of `needles`.
fn assert_setup_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn scores_real_photos_with_the_models_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let model = untrained_model(dir.path(), 64, false);
    let photos: Vec<PathBuf> = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png"]
        .iter()
        .map(|n| sample_photo_dir().join(n))
        .collect();
    let out = score(&["--model", model.to_str().unwrap()], &photos);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), photos.len(), "{stdout}");
    for (line, photo) in lines.iter().zip(&photos) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields[0], photo.to_str().unwrap());
        let p: f32 = fields[1].parse().unwrap();
        assert!((0.0..=1.0).contains(&p), "{line}");
        assert_eq!(fields[2], if p >= 0.4 { "like" } else { "pass" }, "{line}");
    }

    // The same photos as JSON lines, with a threshold override that makes every photo a like.
    let out = score(
        &["--model", model.to_str().unwrap(), "--json", "--threshold", "0"],
        &photos,
    );
    assert!(out.status.success());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["decision"], "like", "{line}");
        assert_eq!(v["threshold"], 0.0);
    }
}

#[test]
fn scores_agree_between_batch_sizes_and_with_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let model = untrained_model(dir.path(), 64, true);
    let photos: Vec<PathBuf> = ["astronaut.png", "coffee.png", "chelsea.png"]
        .iter()
        .map(|n| sample_photo_dir().join(n))
        .collect();
    let one = score(&["--model", model.to_str().unwrap(), "--batch-size", "1"], &photos);
    let many = score(&["--model", model.to_str().unwrap(), "--batch-size", "3"], &photos);
    assert_eq!(
        String::from_utf8_lossy(&one.stdout),
        String::from_utf8_lossy(&many.stdout)
    );

    let mut scorer = Scorer::load(&model, &ScorerOptions::default()).unwrap();
    let mut batch = Vec::new();
    scorer.prepare(&std::fs::read(&photos[0]).unwrap(), &mut batch).unwrap();
    let p = scorer.score(&batch).unwrap()[0];
    let first = String::from_utf8_lossy(&one.stdout)
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(first, format!("{p:.4}"));
}

#[test]
fn corrupt_html_and_oversized_images_get_an_error_line_and_the_rest_are_scored() {
    let dir = tempfile::tempdir().unwrap();
    let model = untrained_model(dir.path(), 64, true);
    let good = sample_photo_dir().join("coffee.png");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut truncated = std::fs::read(sample_photo_dir().join("rocket.jpg")).unwrap();
    truncated.truncate(600);
    let corrupt = write("truncated.jpg", &truncated);
    let html = write("page.jpg", b"<!doctype html><html><body>Forbidden</body></html>");
    let bomb = write("bomb.png", &png_header_only(60_000, 60_000));
    let mut huge = b"\xFF\xD8\xFF\xE0".to_vec();
    huge.resize(21 * 1024 * 1024, 0);
    let big = write("huge.jpg", &huge);
    let missing = dir.path().join("missing.jpg");

    let files = vec![
        corrupt.clone(),
        good.clone(),
        html.clone(),
        bomb.clone(),
        big.clone(),
        missing.clone(),
    ];
    let out = score(&["--model", model.to_str().unwrap(), "--json"], &files);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some images failed, so the exit code says so"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len());
    assert!(
        lines[1]["score"].is_number(),
        "the good photo is still scored: {:?}",
        lines[1]
    );
    let expect_error = |i: usize, path: &Path, needle: &str| {
        let e = lines[i]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error for {}: {:?}", path.display(), lines[i]));
        assert!(e.contains(needle), "{}: {e}", path.display());
        assert!(
            stderr.contains(&format!("error: {}: ", path.display())),
            "stderr names {}: {stderr}",
            path.display()
        );
    };
    expect_error(0, &corrupt, "corrupt");
    expect_error(2, &html, "not a JPEG, PNG or WebP");
    expect_error(3, &bomb, "60000x60000");
    expect_error(4, &big, "over the limit");
    expect_error(5, &missing, "No such file");
}

#[test]
fn a_missing_onnx_runtime_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = untrained_model(dir.path(), 64, true);
    let out = Command::new(bin("swipebot"))
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .args(["score", "--model", model.to_str().unwrap()])
        .arg(sample_photo_dir().join("coffee.png"))
        .output()
        .unwrap();
    assert_setup_error(
        &out,
        &[
            "ONNX Runtime library not found at /nonexistent/libonnxruntime.so (from ORT_DYLIB_PATH)",
            "scripts/setup.sh",
        ],
    );
    assert!(out.stdout.is_empty());

    // A file that is not a shared library is refused with the same advice, not a crash.
    let bogus = dir.path().join("libonnxruntime.so");
    std::fs::write(&bogus, b"not a library").unwrap();
    let out = Command::new(bin("swipebot"))
        .args([
            "score",
            "--ort-library",
            bogus.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ])
        .arg(sample_photo_dir().join("coffee.png"))
        .output()
        .unwrap();
    assert_setup_error(&out, &["could not load ONNX Runtime from", "scripts/setup.sh"]);
}

#[test]
fn a_missing_model_says_how_to_make_one() {
    let out = score(
        &["--model", "/nonexistent/model.onnx"],
        &[sample_photo_dir().join("coffee.png")],
    );
    assert_setup_error(&out, &["/nonexistent/model.onnx", "train --data"]);
}

#[test]
fn cuda_falls_back_to_the_cpu_unless_required() {
    let dir = tempfile::tempdir().unwrap();
    let model = untrained_model(dir.path(), 64, true);
    let cuda = ScorerOptions {
        device: Device::Cuda,
        ..ScorerOptions::default()
    };
    let required = ScorerOptions {
        require_gpu: true,
        ..cuda.clone()
    };
    let mut scorer = Scorer::load(&model, &cuda).unwrap();
    let gpu_runtime = scorer.device() == Device::Cuda;
    if !gpu_runtime {
        // The CPU build of ONNX Runtime: the scorer works on the CPU and says so.
        let mut batch = Vec::new();
        scorer
            .prepare(
                &std::fs::read(sample_photo_dir().join("coffee.png")).unwrap(),
                &mut batch,
            )
            .unwrap();
        assert_eq!(scorer.score(&batch).unwrap().len(), 1);
        let reason = scorer.fallback_reason().expect("the reason CUDA is not used");
        assert!(reason.contains("has no CUDA provider"), "{reason}");
        let err = Scorer::load(&model, &required).unwrap_err();
        assert!(matches!(err, ScorerError::GpuUnavailable(_)), "{err}");
        assert!(err.to_string().contains("scripts/setup.sh --gpu"), "{err}");
    } else {
        assert_eq!(Scorer::load(&model, &required).unwrap().device(), Device::Cuda);
    }
}
