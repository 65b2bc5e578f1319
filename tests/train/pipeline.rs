//! `train` end to end on a dataset with a visual rule a CNN can learn (LIKE photos carry vertical
//! stripes, NOPE photos horizontal ones): accuracy, the skip report, the dataset cache, calibration
//! and threshold in the model metadata, parity between libtorch and ONNX Runtime, the files next to
//! the model, `--resume` and Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use swipebot::vision::scorer::{Scorer, ScorerOptions};
use swipebot_core::model_info::CLASSES;
use swipebot_core::preprocess::{self, Channels, Limits, Recipe};
use swipebot_train::checkpoint::{self, Checkpoint};
use swipebot_train::googlenet::Norm;
use swipebot_train::model::{GoogLeNet, NetShape};
use swipebot_train::outputs::Outputs;
use tch::{nn, Device, Tensor};

use crate::common;

fn train(args: &[&str]) -> Output {
    let out = Command::new(common::paths::bin("train")).args(args).output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `metrics.csv` as rows of fields (header left out).
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn trains_to_high_accuracy_and_exports_a_calibrated_model_with_its_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    swipebot_core::synth::write_dataset(&data, 80, 96, 11).unwrap();
    // Unreadable, corrupt and empty files, at depth: reported and skipped, never fatal.
    std::fs::create_dir_all(data.join("like/deeper/still")).unwrap();
    std::fs::write(data.join("like/deeper/broken.jpg"), b"\xff\xd8\xff garbage").unwrap();
    std::fs::write(data.join("nope/empty.png"), b"").unwrap();
    std::fs::copy(
        data.join("like/like-0000.jpg"),
        data.join("like/deeper/still/nested.jpg"),
    )
    .unwrap();
    let model = dir.path().join("out/model.onnx");
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    let epochs = 14;
    let started = Instant::now();
    let out = train(&[
        "--data",
        s(&data),
        "--out",
        s(&model),
        "--input-size",
        "64",
        "--grayscale",
        "--epochs",
        &epochs.to_string(),
        "--batch-size",
        "16",
    ]);
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "train failed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("skipped 2 files"), "{err}");
    assert!(err.contains("broken.jpg") && err.contains("empty.png"), "{err}");
    assert!(err.contains("images per class: nope 80, like 81"), "{err}");
    eprintln!("training took {seconds:.0}s");

    // Accuracy and the files next to the model.
    let report = read_json(&Outputs::for_model(&model).report);
    let model_bytes = std::fs::read(&model).unwrap();
    assert_eq!(
        report["model_sha256"].as_str(),
        Some(swipebot_core::model_info::sha256_hex(&model_bytes).as_str()),
        "the report names the model by the hash the daemon journals"
    );
    let best = report["best_epoch"]["val"]["accuracy"].as_f64().unwrap();
    assert!(best >= 0.95, "best validation accuracy {best}");
    assert_eq!(report["dataset"]["skipped"].as_array().unwrap().len(), 2);
    // `--epochs` is a maximum: the run may stop once the validation loss stops improving, and then
    // says so.
    let rows = csv_rows(&Outputs::for_model(&model).metrics);
    assert!(rows.len() <= epochs && rows.len() >= 6, "{} epochs", rows.len());
    assert_eq!(report["epochs_run"], rows.len());
    assert_eq!(rows.last().unwrap()[0], rows.len().to_string());
    if rows.len() < epochs {
        assert_eq!(report["outcome"], "early_stopped");
        assert!(err.contains("has not improved for 5 epochs at half the peak"), "{err}");
    } else {
        assert_eq!(report["outcome"], "completed");
    }
    let curves = image::open(Outputs::for_model(&model).curves).unwrap();
    assert!(curves.width() > 100 && curves.height() > 100);
    let cal = &report["calibration"];
    for key in ["temperature", "ece_before", "ece_after", "nll_before", "nll_after"] {
        assert!(cal[key].as_f64().is_some(), "report.json lacks {key}: {cal}");
    }
    // A finite temperature, inside the search range (not stuck at a bound).
    let t = cal["temperature"].as_f64().unwrap();
    assert!(t > 0.011 && t < 99.0, "temperature {t}");
    let th = &report["threshold"];
    let confusion = &th["confusion"];
    let total: u64 = ["true_like", "false_like", "true_nope", "false_nope"]
        .iter()
        .map(|k| confusion[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, report["dataset"]["validation"].as_u64().unwrap());
    assert!(th["roc_auc"].as_f64().unwrap() >= 0.95, "{th}");

    // Temperature and threshold in the metadata, as the scorer (`swipebot score`) reads them.
    let temperature = cal["temperature"].as_f64().unwrap() as f32;
    let threshold = th["value"].as_f64().unwrap() as f32;
    let mut scorer = Scorer::load(&model, &ScorerOptions::default()).unwrap();
    assert_eq!(scorer.info().temperature, temperature);
    assert_eq!(scorer.info().threshold, threshold);
    assert_ne!(threshold, 0.4, "the threshold is recommended, not the old default");

    // The exported graph gives the probabilities of the libtorch model with the best weights.
    let recipe = Recipe::for_input(64, Channels::Gray);
    let photos: Vec<PathBuf> = (0..6)
        .map(|i| data.join(format!("{}/{}-{i:04}.jpg", CLASSES[i % 2], CLASSES[i % 2])))
        .collect();
    let mut input = Vec::new();
    for p in &photos {
        preprocess::prepare(&std::fs::read(p).unwrap(), &recipe, &Limits::default(), &mut input).unwrap();
    }
    let got = scorer.probabilities(&input).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let shape = NetShape {
        input_size: 64,
        channels: 1,
        classes: 2,
        // The default recipe's layout: the export folded each batch normalisation into its convolution.
        norm: Norm::Batch,
    };
    let net = GoogLeNet::new(&vs.root(), shape);
    let best_weights = Checkpoint::for_model(&model).load_best().unwrap().unwrap();
    checkpoint::restore(&vs, &best_weights).unwrap();
    let x = Tensor::from_slice(&input).view([photos.len() as i64, 1, 64, 64]);
    let expected = Vec::<f32>::try_from(net.probabilities(&x, f64::from(temperature)).flatten(0, -1)).unwrap();
    let worst = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4, "ONNX {got:?} vs libtorch {expected:?}");
    // And it has learnt the rule, not the photos: 40 photos it never saw, drawn afresh from the same
    // rule, are classified at the recommended threshold.
    let fresh = dir.path().join("fresh");
    swipebot_core::synth::write_dataset(&fresh, 20, 96, 1234).unwrap();
    let mut unseen = Vec::new();
    let mut truth = Vec::new();
    for (class, like) in [("like", true), ("nope", false)] {
        for entry in std::fs::read_dir(fresh.join(class)).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            preprocess::prepare(&bytes, &recipe, &Limits::default(), &mut unseen).unwrap();
            truth.push(like);
        }
    }
    let p = scorer.probabilities(&unseen).unwrap();
    let right = p
        .chunks(2)
        .zip(&truth)
        .filter(|(pair, &like)| (pair[1] >= threshold) == like)
        .count();
    assert_eq!(truth.len(), 40);
    assert!(right >= 36, "{right} of 40 unseen photos classified right");

    // `swipebot score` decides with the model's threshold. The binary belongs to the root package: a
    // plain `cargo test` at the root (or `cargo test --workspace`) builds it next to `train`.
    let out = Command::new(common::paths::bin("swipebot"))
        .args(["score", "--json", "--model", s(&model)])
        .args(&photos)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), photos.len());
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["threshold"].as_f64().unwrap() as f32, threshold);
        let like = v["score"].as_f64().unwrap() as f32;
        assert!(
            (like - got[2 * i + 1]).abs() <= 1e-4,
            "score {v} vs scorer {}",
            got[2 * i + 1]
        );
        let decision = if like >= threshold { "like" } else { "pass" };
        assert_eq!(v["decision"], decision, "{v}");
    }

    // A second run reuses the dataset cache.
    let again = train(&[
        "--data",
        s(&data),
        "--out",
        s(&dir.path().join("again.onnx")),
        "--input-size",
        "64",
        "--grayscale",
        "--epochs",
        "0",
    ]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("reused the dataset cache"));
}

/// A small dataset and the arguments of a quick run on it.
fn small_run(dir: &Path, per_class: usize) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    swipebot_core::synth::write_dataset(&data, per_class, 48, 5).unwrap();
    (data, dir.join("model.onnx"))
}

fn quick_args<'a>(data: &'a Path, model: &'a Path, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "--data",
        s(data),
        "--out",
        s(model),
        "--input-size",
        "32",
        "--grayscale",
        "--batch-size",
        "8",
        "--epochs",
        epochs,
    ]
}

#[test]
fn an_interrupted_run_resumes_to_the_same_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = small_run(dir.path(), 16);
    let whole = dir.path().join("whole/model.onnx");
    let split = dir.path().join("split/model.onnx");
    for m in [&whole, &split] {
        std::fs::create_dir_all(m.parent().unwrap()).unwrap();
    }
    assert!(train(&quick_args(&data, &whole, "4")).status.success());

    let mut first = quick_args(&data, &split, "4");
    first.extend(["--stop-after-epochs", "2"]);
    let out = train(&first);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("continue with --resume"));
    assert_eq!(csv_rows(&Outputs::for_model(&split).metrics).len(), 2);
    // Other settings are refused.
    let mut other = quick_args(&data, &split, "5");
    other.push("--resume");
    let out = train(&other);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("epochs"));

    let mut rest = quick_args(&data, &split, "4");
    rest.push("--resume");
    let out = train(&rest);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming"));

    let a = csv_rows(&Outputs::for_model(&whole).metrics);
    let b = csv_rows(&Outputs::for_model(&split).metrics);
    assert_eq!(a.len(), 4);
    assert_eq!(b.len(), 4, "the resumed run continues metrics.csv");
    for (ra, rb) in a.iter().zip(&b) {
        assert_eq!(ra[0], rb[0], "epoch numbers");
        assert_eq!(ra[5], rb[5], "learning rate of epoch {}", ra[0]);
        // Same data order, crops, dropout and momentum: the same training, up to float noise.
        let (la, lb): (f64, f64) = (ra[1].parse().unwrap(), rb[1].parse().unwrap());
        assert!((la - lb).abs() < 1e-3, "epoch {}: train loss {la} vs {lb}", ra[0]);
    }
    let report = read_json(&Outputs::for_model(&split).report);
    assert_eq!(report["epochs_run"], 4);
}

#[test]
fn ctrl_c_checkpoints_exports_the_best_model_so_far_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = small_run(dir.path(), 24);
    let mut child = Command::new(common::paths::bin("train"))
        .args(quick_args(&data, &model, "40"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    // Wait for the first finished epoch, so there is a best epoch to export.
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "train ended early:\n{log}");
        log.push_str(&line);
        if line.starts_with("epoch   1:") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    log.push_str(&rest);
    let status = child.wait().unwrap();
    eprintln!("{log}");
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(sent.elapsed() < Duration::from_secs(30));
    assert!(log.contains("interrupted at epoch"), "{log}");
    let scorer = Scorer::load(&model, &ScorerOptions::default()).unwrap();
    assert_eq!(scorer.info().input_size, 32);
    let ckpt = Checkpoint::for_model(&model);
    assert!(ckpt.exists());
    let done = csv_rows(&Outputs::for_model(&model).metrics).len();
    assert!(done >= 1);

    let mut args = quick_args(&data, &model, "40");
    args.extend(["--resume", "--stop-after-epochs", "1"]);
    let out = train(&args);
    assert!(out.status.success());
    let rows = csv_rows(&Outputs::for_model(&model).metrics);
    assert_eq!(rows.len(), done + 1, "the interrupted epoch was finished");
    assert_eq!(rows.last().unwrap()[0], (done + 1).to_string());
}
