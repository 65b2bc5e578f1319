//! int8 models: the QDQ graph against the official ONNX checker, ONNX Runtime against the libtorch
//! interpreter the gate trusts, `train --precision int8` and `train --quantize` end to end, the gate
//! refusing a model that flips decisions (and `--force`), and `--precision fp16` refused.

use std::path::Path;
use std::process::{Command, Output};

use onnx_protobuf::Message;
use swipebot::vision::scorer::{Scorer, ScorerOptions};
use swipebot_core::model_info::{ModelInfo, CLASSES};
use swipebot_core::preprocess::{Channels, Recipe};
use swipebot_train::data::Sample;
use swipebot_train::googlenet::Norm;
use swipebot_train::interpret::Interpreter;
use swipebot_train::model::{GoogLeNet, NetShape};
use swipebot_train::precision::{self, Int8Settings};
use swipebot_train::ranges::RangeMethod;
use swipebot_train::{export, training};
use tch::{nn, Device, Kind, Tensor};

use crate::common;

/// The contract of a 64 grayscale test model.
fn info(temperature: f32) -> ModelInfo {
    ModelInfo {
        input_size: 64,
        recipe: Recipe::for_input(64, Channels::Gray),
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        threshold: 0.5,
        temperature,
        trained_at: "2026-11-29T00:00:00Z".into(),
        dataset: "nope=8,like=8".into(),
    }
}

/// Samples of random-looking but smooth pixels, half of each class.
fn samples(count: usize, square: u32) -> Vec<Sample> {
    let n = (square * square) as usize;
    (0..count)
        .map(|i| Sample {
            pixels: (0..n).map(|j| ((j * (3 + i) + i * 17) % 251) as u8).collect(),
            label: i % 2,
            path: format!("sample-{i}").into(),
        })
        .collect()
}

fn run_train(args: &[&str]) -> Output {
    let out = Command::new(common::paths::bin("train")).args(args).output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The official checker (full check, with shape inference) on `path`, and the graph's shape: every
/// Conv and Gemm reads its input and weights from DequantizeLinear, weights int8 per channel; no
/// float activation is read beside its QuantizeLinear; and ONNX Runtime fuses every convolution
/// into QLinearConv and the classifier into QGemm (an unfused one runs in float, slower than fp32).
fn check_int8_with_onnx(path: &Path) {
    let script = "import sys, onnx\n\
                  from onnx import TensorProto\n\
                  m = onnx.load(sys.argv[1])\n\
                  onnx.checker.check_model(m, full_check=True)\n\
                  props = {p.key: p.value for p in m.metadata_props}\n\
                  assert props['swipebot.precision'] == 'int8', props\n\
                  inits = {t.name: t for t in m.graph.initializer}\n\
                  made = {o: n for n in m.graph.node for o in n.output}\n\
                  ops = [n for n in m.graph.node if n.op_type in ('Conv', 'Gemm')]\n\
                  assert len(ops) > 50, len(ops)\n\
                  for n in ops:\n\
                  \x20   for i in n.input:\n\
                  \x20       assert made[i].op_type == 'DequantizeLinear', (n.name, i)\n\
                  \x20   w = made[n.input[1]]\n\
                  \x20   assert inits[w.input[0]].data_type == TensorProto.INT8, w.input[0]\n\
                  \x20   assert len(inits[w.input[1]].dims) == 1, 'per-channel scales'\n\
                  \x20   assert inits[made[n.input[2]].input[0]].data_type == TensorProto.INT32\n\
                  assert not any(n.op_type == 'Relu' for n in m.graph.node)\n\
                  assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT\n\
                  readers = {}\n\
                  for n in m.graph.node:\n\
                  \x20   for i in n.input:\n\
                  \x20       readers[i] = readers.get(i, 0) + 1\n\
                  for n in m.graph.node:\n\
                  \x20   if n.op_type == 'QuantizeLinear':\n\
                  \x20       assert readers[n.input[0]] == 1, ('read around its quantization', n.input[0])\n\
                  import onnxruntime as ort, os, tempfile\n\
                  so = ort.SessionOptions()\n\
                  so.log_severity_level = 3\n\
                  so.optimized_model_filepath = os.path.join(tempfile.mkdtemp(), 'optimized.onnx')\n\
                  ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])\n\
                  fused = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]\n\
                  assert 'Conv' not in fused and fused.count('QLinearConv') == len(ops) - 1, fused\n\
                  assert 'QGemm' in fused, fused\n\
                  print('ok', len(m.graph.node))";
    let out = Command::new(common::paths::python())
        .args(["-c", script, s(path)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the int8 model failed the check:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The int8 graph passes the official checker; ONNX Runtime runs it and gives what the interpreter
/// (which the gate uses) computes, and stays near the fp32 model.
#[test]
fn the_int8_graph_is_valid_onnx_and_onnx_runtime_agrees_with_the_gate() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let shape = NetShape {
        input_size: 64,
        channels: 1,
        classes: 2,
        norm: Norm::Lrn,
    };
    let mut net = GoogLeNet::new(&vs.root(), shape);
    net.set_normalization(&vec![120.0; 64 * 64], &[0.01]);
    let info = info(0.05);
    let fp32 = export::build_model(&vs, shape, &info).unwrap();
    let all = samples(24, info.recipe.square);
    let refs: Vec<&Sample> = all.iter().collect();
    let settings = Int8Settings {
        calibration_images: 16,
        method: RangeMethod::Minmax,
        force: true,
    };
    let (int8, report) = precision::to_int8(&fp32, &info, &refs[..16], &refs[16..], settings).unwrap();
    assert_eq!((report.calibration_images, report.validation_photos), (16, 8));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.int8.onnx");
    precision::write(&int8, &path).unwrap();
    check_int8_with_onnx(&path);

    let (x, _) = training::batch(&refs, &info.recipe, None, Device::Cpu);
    let emulated = Interpreter::new(&int8).unwrap().run(&x, &mut |_, _| {}).unwrap();
    let float = Interpreter::new(&fp32).unwrap().run(&x, &mut |_, _| {}).unwrap();
    let libtorch = net.probabilities(&x, f64::from(info.temperature));
    let flat = |t: &Tensor| Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap();
    let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(
        worst(&flat(&float), &flat(&libtorch)) < 1e-4,
        "the interpreter runs the fp32 graph as libtorch"
    );

    let mut scorer = Scorer::load(&path, &ScorerOptions::default()).unwrap();
    let ort = scorer.probabilities(&flat(&x)).unwrap();
    let spread = flat(&float).iter().map(|p| (p - 0.5).abs()).fold(0f32, f32::max);
    assert!(
        spread > 0.02,
        "probabilities too close to 0.5 to compare: spread {spread}"
    );
    let (gate_vs_ort, int8_vs_fp32) = (worst(&ort, &flat(&emulated)), worst(&ort, &flat(&float)));
    eprintln!("|ORT int8 - interpreter int8| {gate_vs_ort}, |ORT int8 - fp32| {int8_vs_fp32}");
    assert!(
        gate_vs_ort < 0.01,
        "ONNX Runtime differs from the gate's int8 by {gate_vs_ort}"
    );
    assert!(int8_vs_fp32 < 0.1, "int8 differs from fp32 by {int8_vs_fp32}");
}

/// `train --precision int8` writes an int8 model the daemon's scorer loads with no new setting, and
/// its report carries the gate's figures; `--quantize` makes the same from the fp32 model, and an
/// int8 model is not quantized twice.
#[test]
fn train_writes_int8_models_the_scorer_loads_with_their_gate_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    swipebot_core::synth::write_dataset(&data, 16, 96, 4).unwrap();
    let common_args = [
        "--input-size",
        "32",
        "--grayscale",
        "--batch-size",
        "8",
        "--threads",
        "2",
    ];
    let int8 = dir.path().join("int8.onnx");
    let mut args = vec![
        "--data",
        s(&data),
        "--out",
        s(&int8),
        "--epochs",
        "1",
        "--precision",
        "int8",
    ];
    args.extend(common_args);
    args.extend(["--calibration-images", "12", "--force"]);
    assert!(run_train(&args).status.success());
    let scorer = Scorer::load(&int8, &ScorerOptions::default()).unwrap();
    assert_eq!(scorer.info().input_size, 32);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("int8.report.json")).unwrap()).unwrap();
    let q = &report["quantization"];
    assert_eq!(q["precision"], "int8");
    assert_eq!(q["calibration_method"], "minmax");
    assert_eq!(q["calibration_images"], 12);
    assert_eq!(q["validation_photos"], report["dataset"]["validation"]);
    assert!(
        q["fp32_accuracy"].as_f64().is_some() && q["int8_accuracy"].as_f64().is_some(),
        "{q}"
    );
    assert!(q["flips"].as_u64().is_some(), "{q}");
    let bytes = std::fs::read(&int8).unwrap();
    assert_eq!(report["model_sha256"], swipebot_core::model_info::sha256_hex(&bytes));

    // The fp32 model of the same run, then --quantize of it.
    let fp32 = dir.path().join("fp32.onnx");
    let mut args = vec!["--data", s(&data), "--out", s(&fp32), "--epochs", "1"];
    args.extend(common_args);
    assert!(run_train(&args).status.success());
    let model = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(&fp32).unwrap()).unwrap();
    let precision = model.metadata_props.iter().find(|p| p.key == "swipebot.precision");
    assert_eq!(precision.map(|p| p.value.as_str()), Some("fp32"));
    let quantized = dir.path().join("q.onnx");
    let out = run_train(&[
        "--quantize",
        s(&fp32),
        "--data",
        s(&data),
        "--out",
        s(&quantized),
        "--calibration",
        "percentile",
        "--force",
    ]);
    assert!(out.status.success());
    check_int8_with_onnx(&quantized);
    Scorer::load(&quantized, &ScorerOptions::default()).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("q.report.json")).unwrap()).unwrap();
    assert_eq!(report["source_model"].as_str(), fp32.to_str());
    assert_eq!(report["quantization"]["calibration_method"], "percentile");

    let again = dir.path().join("again.onnx");
    let out = run_train(&["--quantize", s(&quantized), "--data", s(&data), "--out", s(&again)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already int8") && err.contains("q.onnx"), "{err}");
    assert!(!again.exists());
}

/// A threshold right at the untrained model's probabilities makes int8 noise flip decisions: the
/// gate refuses with the figures and writes nothing; `--force` writes it and says so in the report.
#[test]
fn the_gate_refuses_a_model_that_flips_decisions_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    swipebot_core::synth::write_dataset(&data, 20, 96, 8).unwrap();
    let common_args = ["--input-size", "32", "--grayscale", "--epochs", "0", "--threads", "2"];
    let probe = dir.path().join("probe.onnx");
    let mut args = vec!["--data", s(&data), "--out", s(&probe)];
    args.extend(common_args);
    assert!(run_train(&args).status.success());
    // The median LIKE probability over every photo of the folder, through ONNX Runtime.
    let mut scorer = Scorer::load(&probe, &ScorerOptions::default()).unwrap();
    let mut scores = Vec::new();
    for class in ["like", "nope"] {
        for entry in std::fs::read_dir(data.join(class)).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let mut x = Vec::new();
            swipebot_core::preprocess::prepare(&bytes, &scorer.info().recipe.clone(), &Default::default(), &mut x)
                .unwrap();
            scores.extend(scorer.score(&x).unwrap());
        }
    }
    scores.sort_by(f32::total_cmp);
    let median = scores[scores.len() / 2].to_string();

    let fp32 = dir.path().join("fp32.onnx");
    let mut args = vec!["--data", s(&data), "--out", s(&fp32), "--threshold", &median];
    args.extend(common_args);
    assert!(run_train(&args).status.success());
    let int8 = dir.path().join("int8.onnx");
    let quantize = ["--quantize", s(&fp32), "--data", s(&data), "--out", s(&int8)];
    let out = run_train(&quantize);
    assert!(!out.status.success(), "the gate let a flipping model through");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flips") && err.contains("validation decisions") && err.contains("--force"),
        "{err}"
    );
    assert!(!int8.exists(), "nothing is written when the gate fails");

    let mut forced = quantize.to_vec();
    forced.push("--force");
    assert!(run_train(&forced).status.success());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("int8.report.json")).unwrap()).unwrap();
    assert_eq!(report["quantization"]["gate_passed"], false);
    assert_eq!(report["quantization"]["forced"], true);
    assert!(report["quantization"]["flips"].as_u64().unwrap() > 0);
}

/// `--precision fp16` is refused on this (CPU) build with a clear error, before any work.
#[test]
fn fp16_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_train(&[
        "--data",
        s(dir.path()),
        "--out",
        s(&dir.path().join("m.onnx")),
        "--precision",
        "fp16",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--precision fp16") && err.contains("CUDA"), "{err}");
}
