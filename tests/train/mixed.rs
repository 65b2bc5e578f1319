//! Mixed-precision training (`--precision-train`) through the real `train` binary and libtorch: bf16
//! steps learn what fp32 steps learn, fp16 steps run with loss scaling, and whatever the steps'
//! arithmetic, the written model is the same fp32 graph the daemon loads. The speed of each is
//! `cargo bench -p swipebot-train --bench train_throughput`.

use std::path::Path;
use std::process::{Command, Output};

use onnx_protobuf::{Message, ModelProto};
use swipebot_train::outputs::Outputs;

use crate::common;

/// Runs `train` on `data` into `model` with `extra` flags (input 64, grayscale, batch 16).
fn train(data: &Path, model: &Path, extra: &[&str]) -> Output {
    let out = Command::new(common::paths::bin("train"))
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(model)
        .args(["--input-size", "64", "--grayscale", "--batch-size", "16"])
        .args(extra)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The run's report.json.
fn report(model: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(Outputs::for_model(model).report).unwrap()).unwrap()
}

/// Every weight of the written model is stored as fp32 (ONNX `FLOAT`, data type 1).
fn assert_fp32_weights(model: &Path) {
    let proto = ModelProto::parse_from_bytes(&std::fs::read(model).unwrap()).unwrap();
    let weights = &proto.graph.initializer;
    assert!(weights.len() > 100, "{} initializers", weights.len());
    for w in weights {
        assert_eq!(w.data_type, 1, "{} is stored as ONNX type {}", w.name, w.data_type);
    }
}

/// The same photos, seed and recipe trained with bf16 steps and with fp32 steps: both learn (the
/// validation accuracy is measured in fp32 either way), within a few photos of each other, and both
/// write models whose weights are all fp32.
#[test]
fn bf16_steps_learn_what_fp32_steps_learn_and_write_an_fp32_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    swipebot_core::synth::write_dataset(&data, 120, 64, 33).unwrap();
    let mut accuracy = Vec::new();
    for precision in ["bf16", "fp32"] {
        let model = dir.path().join(format!("{precision}.onnx"));
        let out = train(&data, &model, &["--epochs", "6", "--precision-train", precision]);
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{precision} steps (asked for)")), "{err}");
        let r = report(&model);
        assert_eq!(r["training_precision"], precision);
        let acc = r["best_epoch"]["val"]["accuracy"].as_f64().unwrap();
        let auc = r["threshold"]["roc_auc"].as_f64().unwrap();
        assert!(acc >= 0.8 && auc >= 0.9, "{precision}: accuracy {acc}, ROC AUC {auc}");
        assert_fp32_weights(&model);
        accuracy.push(acc);
    }
    // 36 validation photos: a gap of 0.12 is four photos.
    assert!(
        (accuracy[0] - accuracy[1]).abs() <= 0.12,
        "bf16 {} against fp32 {}",
        accuracy[0],
        accuracy[1]
    );
}

/// fp16 steps on the CPU: the run warns that the CPU is the wrong place for fp16, trains with loss
/// scaling to a finite loss, and writes an fp32 model; `auto` says which arithmetic it picked and why.
#[test]
fn fp16_steps_run_with_loss_scaling_and_auto_says_what_it_picked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    swipebot_core::synth::write_dataset(&data, 24, 64, 7).unwrap();
    let model = dir.path().join("fp16.onnx");
    let out = train(&data, &model, &["--epochs", "2", "--precision-train", "fp16"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: --precision-train fp16 on the CPU"), "{err}");
    let r = report(&model);
    assert_eq!(r["training_precision"], "fp16");
    let loss = r["best_epoch"]["train"]["loss"].as_f64().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "training loss {loss}");
    assert_fp32_weights(&model);

    let auto = dir.path().join("auto.onnx");
    let out = train(&data, &auto, &["--epochs", "1"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let picked = report(&auto)["training_precision"].as_str().unwrap().to_string();
    let expected = if swipebot_train::mixed::cpu_has_bf16() {
        "bf16 steps (auto: this CPU computes bf16 natively)"
    } else {
        "fp32 steps (auto: this CPU has no native bf16)"
    };
    assert!(err.contains(expected), "{err}");
    assert!(expected.starts_with(&picked), "report says {picked}");
    assert!(!err.contains("warning: --precision-train"), "{err}");
}
