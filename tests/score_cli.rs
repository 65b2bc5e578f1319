//! `swipebot score` end to end: the real binary, a model made by the real `train`, real ONNX Runtime,
//! real photos.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use swipebot::vision::scorer::{Device, Scorer, ScorerError, ScorerOptions};

fn score(args: &[&str], files: &[PathBuf]) -> Output {
    Command::new(common::bin("swipebot"))
        .arg("score")
        .args(args)
        .args(files)
        .output()
        .unwrap()
}

/// A PNG whose header declares `width` x `height` but carries almost no pixel data (an empty zlib
/// stream): a decompression bomb stand-in that must be refused before any allocation.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn scores_real_photos_with_the_models_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::untrained_model(dir.path(), 64, false);
    let photos: Vec<PathBuf> = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png"]
        .iter()
        .map(|n| common::sample_photo_dir().join(n))
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
    let model = common::untrained_model(dir.path(), 64, true);
    let photos: Vec<PathBuf> = ["astronaut.png", "coffee.png", "chelsea.png"]
        .iter()
        .map(|n| common::sample_photo_dir().join(n))
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
    let model = common::untrained_model(dir.path(), 64, true);
    let good = common::sample_photo_dir().join("coffee.png");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut truncated = std::fs::read(common::sample_photo_dir().join("rocket.jpg")).unwrap();
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
    let model = common::untrained_model(dir.path(), 64, true);
    let out = Command::new(common::bin("swipebot"))
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .args(["score", "--model", model.to_str().unwrap()])
        .arg(common::sample_photo_dir().join("coffee.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ONNX Runtime library not found at /nonexistent/libonnxruntime.so (from ORT_DYLIB_PATH)"),
        "{err}"
    );
    assert!(err.contains("scripts/setup.sh"), "{err}");
    assert!(out.stdout.is_empty());

    // A file that is not a shared library is refused with the same advice, not a crash.
    let bogus = dir.path().join("libonnxruntime.so");
    std::fs::write(&bogus, b"not a library").unwrap();
    let out = Command::new(common::bin("swipebot"))
        .args([
            "score",
            "--ort-library",
            bogus.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ])
        .arg(common::sample_photo_dir().join("coffee.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not load ONNX Runtime from") && err.contains("scripts/setup.sh"),
        "{err}"
    );
}

#[test]
fn a_missing_model_says_how_to_make_one() {
    let out = score(
        &["--model", "/nonexistent/model.onnx"],
        &[common::sample_photo_dir().join("coffee.png")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/model.onnx") && err.contains("train --data"),
        "{err}"
    );
}

#[test]
fn cuda_falls_back_to_the_cpu_unless_required() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::untrained_model(dir.path(), 64, true);
    let cuda = ScorerOptions {
        device: Device::Cuda,
        ..ScorerOptions::default()
    };
    let mut scorer = Scorer::load(&model, &cuda).unwrap();
    let gpu_runtime = scorer.device() == Device::Cuda;
    if !gpu_runtime {
        // The CPU build of ONNX Runtime: the scorer works on the CPU and says so.
        let mut batch = Vec::new();
        scorer
            .prepare(
                &std::fs::read(common::sample_photo_dir().join("coffee.png")).unwrap(),
                &mut batch,
            )
            .unwrap();
        assert_eq!(scorer.score(&batch).unwrap().len(), 1);
        let required = ScorerOptions {
            device: Device::Cuda,
            require_gpu: true,
            ..ScorerOptions::default()
        };
        let err = Scorer::load(&model, &required).unwrap_err();
        assert!(matches!(err, ScorerError::GpuUnavailable(_)), "{err}");
        assert!(err.to_string().contains("scripts/setup.sh --gpu"), "{err}");
    } else {
        let required = ScorerOptions {
            device: Device::Cuda,
            require_gpu: true,
            ..ScorerOptions::default()
        };
        assert_eq!(Scorer::load(&model, &required).unwrap().device(), Device::Cuda);
    }
}
