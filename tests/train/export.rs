//! The libtorch network, its ONNX export, the official checker and the ONNX Runtime scorer, together.

use std::process::Command;

use swipebot::vision::scorer::{Scorer, ScorerOptions};
use swipebot_core::model_info::{ModelInfo, CLASSES};
use swipebot_core::preprocess::{Channels, Recipe};
use swipebot_train::export;
use swipebot_train::googlenet::Norm;
use swipebot_train::model::{GoogLeNet, NetShape};
use tch::{nn, Device, Kind, Tensor};

use crate::common;

fn info(size: u32, channels: Channels, temperature: f32) -> ModelInfo {
    ModelInfo {
        input_size: size,
        recipe: Recipe::for_input(size, channels),
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        threshold: 0.37,
        temperature,
        trained_at: "2026-11-28T00:00:00Z".into(),
        dataset: "nope=10,like=12".into(),
    }
}

/// A network in layout `norm` with a non-trivial input normalisation, so the export of mean and
/// scale is exercised; batch normalisations get running statistics from a few training passes and
/// scales and shifts away from 1 and 0, so their folding into the convolutions is exercised.
fn network(size: i64, channels: i64, norm: Norm) -> (nn::VarStore, GoogLeNet, NetShape) {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let shape = NetShape {
        input_size: size,
        channels,
        classes: 2,
        norm,
    };
    let mut net = GoogLeNet::new(&vs.root(), shape);
    let n = (channels * size * size) as usize;
    let mean: Vec<f32> = (0..n).map(|i| 100.0 + (i % 37) as f32).collect();
    let scale: Vec<f32> = (0..channels).map(|c| 0.01 + 0.005 * c as f32).collect();
    net.set_normalization(&mean, &scale);
    if norm == Norm::Batch {
        let x = Tensor::rand([8, channels, size, size], (Kind::Float, Device::Cpu)) * 255.0;
        for _ in 0..3 {
            let _ = tch::no_grad(|| net.logits(&x, true));
        }
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if name.ends_with("bn.weight") || name.ends_with("bn.bias") {
                    let _ = t.uniform_(0.5, 1.5);
                }
            }
        });
    }
    (vs, net, shape)
}

#[test]
fn exported_model_passes_the_official_onnx_checker() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, _net, shape) = network(64, 1, Norm::Batch);
    let path = dir.path().join("m.onnx");
    export::export(&vs, shape, &info(64, Channels::Gray, 1.0), &path).unwrap();
    let script = "import sys, onnx\n\
                  m = onnx.load(sys.argv[1])\n\
                  onnx.checker.check_model(m, full_check=True)\n\
                  props = {p.key: p.value for p in m.metadata_props}\n\
                  assert props['swipebot.classes'] == 'nope,like', props\n\
                  assert max(o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')) >= 17\n\
                  ops = {n.op_type for n in m.graph.node}\n\
                  assert 'LRN' not in ops and 'BatchNormalization' not in ops, ops\n\
                  print('ok', len(m.graph.node))";
    let out = Command::new(common::paths::python())
        .args(["-c", script, path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnx.checker rejected the model:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok"));
}

#[test]
fn onnx_runtime_gives_the_same_probabilities_as_libtorch() {
    for (size, channels, norm) in [
        (64i64, Channels::Gray, Norm::Lrn),
        (96, Channels::Rgb, Norm::Lrn),
        (64, Channels::Gray, Norm::Batch),
        (96, Channels::Rgb, Norm::Batch),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let c = channels.count() as i64;
        let (vs, net, shape) = network(size, c, norm);
        // A low temperature spreads the probabilities away from 0.5, so any difference in the
        // logits shows in the comparison.
        let temperature = 0.02f32;
        let path = dir.path().join("m.onnx");
        export::export(&vs, shape, &info(size as u32, channels, temperature), &path).unwrap();

        let pixels = Tensor::rand([5, c, size, size], (Kind::Float, Device::Cpu)) * 255.0;
        let expected = Vec::<f32>::try_from(net.probabilities(&pixels, f64::from(temperature)).flatten(0, -1)).unwrap();
        let mut scorer = Scorer::load(&path, &ScorerOptions::default()).unwrap();
        let input = Vec::<f32>::try_from(pixels.flatten(0, -1)).unwrap();
        let got = scorer.probabilities(&input).unwrap();
        assert_eq!(got.len(), expected.len());
        let spread = expected.iter().map(|p| (p - 0.5).abs()).fold(0f32, f32::max);
        assert!(
            spread > 0.05,
            "probabilities too close to 0.5 to compare meaningfully: {expected:?}"
        );
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4,
            "ONNX differs from libtorch by {worst} at {size}x{size}x{c}, {norm}: {got:?} vs {expected:?}"
        );
        assert_eq!(scorer.info().temperature, temperature);
        assert_eq!(scorer.info().threshold, 0.37);
    }
}

#[test]
fn train_with_zero_epochs_writes_a_model_carrying_its_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::models::untrained_model(dir.path(), 64, true);
    let scorer = Scorer::load(&path, &ScorerOptions::default()).unwrap();
    let info = scorer.info();
    assert_eq!(info.input_size, 64);
    assert_eq!(info.recipe.channels, Channels::Gray);
    assert_eq!(info.recipe.square, 74);
    assert_eq!(info.classes, ["nope", "like"]);
    assert_eq!(info.threshold, 0.4);
    assert_eq!(info.dataset, "nope=4,like=4");
    assert_eq!(scorer.model_sha256().len(), 64);
}

#[test]
fn a_missing_data_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::paths::bin("train"))
        .args([
            "--data",
            dir.path().join("nothing").to_str().unwrap(),
            "--out",
            "x.onnx",
            "--epochs",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing") && err.contains("like/"), "{err}");
}
