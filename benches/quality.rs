//! Model quality on a real-image task of a personal dataset's size, side by side on the same split:
//! `train` with its defaults against the small CNN a PyTorch user would write first
//! (`benches/quality_baseline.py`). Two look-alike classes of Fashion-MNIST (Debian's
//! `dataset-fashion-mnist`): T-shirt/top as LIKE, shirt as NOPE, 1500 of each, 85/15 split, input 64,
//! grayscale. For each: validation accuracy, ROC AUC, profile-level F1 under the daemon's any-photo
//! rule (profiles of 4 photos, threshold chosen for it, the same simulation for both) and minutes.
//!
//! `cargo bench -p swipebot-train --bench quality [-- --per-class N --epochs E --threads T --input-size S
//! --seeds A,B,.. --original --fp32]` (defaults 1500, 15, all cores, 64, seed 42; with several
//! `--seeds` every row is run once per seed, each seed its own split, initialisation and data order
//! on both sides, and the table gives the mean and the range; `--original` adds a row for `train --recipe
//! original`, `--fp32` one for `train --precision-train fp32` beside the default `auto`, which is bf16
//! on CPUs with AVX512-BF16; `--input-size` sets `train`'s input, the baseline stays at 64). Needs
//! `apt-get install dataset-fashion-mnist` and the dev wheels (torch, numpy, Pillow). Not a test: it
//! prints figures for the README.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::bench::BenchArgs;
use swipebot_core::model_info::CLASSES;
use swipebot_train::calibrate::{self, ThresholdPolicy};
use swipebot_train::profiles::{self, ProfileReport, ProfileSizes};
use swipebot_train::{data, training};

/// Where Debian's package puts the dataset.
const FASHION: &str = "/usr/share/datasets/fashion-mnist";
/// The validation share and split seed, `train`'s defaults.
const VAL_FRACTION: f64 = 0.15;
/// `train`'s default seed (split, initialisation, simulation): the one run when `--seeds` is not given.
const SEED: u64 = 42;

/// One row of the table.
struct Row {
    /// Who trained it.
    name: String,
    /// Validation accuracy (arg-max for `train`'s best epoch, 0.5 for the baseline).
    accuracy: f64,
    /// Validation ROC AUC.
    auc: f64,
    /// Profile-level LIKE F1 at the threshold chosen for profiles.
    profile_f1: f64,
    /// Profile-level accuracy at that threshold.
    profile_accuracy: f64,
    /// Wall-clock minutes of training (and validation).
    minutes: f64,
}

/// The Python interpreter of the virtualenv (`VIRTUAL_ENV`, as `scripts/env.sh` sets it), else `python3`.
fn python() -> String {
    std::env::var("VIRTUAL_ENV").map_or("python3".to_string(), |v| format!("{v}/bin/python"))
}

/// Runs `command`, failing with its output when it fails.
fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

/// Trains with `train` and reads its report into a row.
fn train_row(name: &str, data: &Path, dir: &Path, extra: &[&str], spec: &RunSpec) -> Row {
    let RunSpec {
        epochs,
        threads,
        size,
        seed,
    } = *spec;
    let model = dir.join(format!("{name}.onnx"));
    let started = Instant::now();
    let log = run(Command::new(common::paths::bin("train"))
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(&model)
        .args([
            "--input-size",
            &size.to_string(),
            "--grayscale",
            "--epochs",
            &epochs.to_string(),
        ])
        .args(["--threads", &threads.to_string(), "--seed", &seed.to_string()])
        .args(extra));
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    eprintln!("{log}");
    let report_path = swipebot_train::outputs::Outputs::for_model(&model).report;
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    Row {
        name: format!(
            "train {}{}({} steps)",
            if size == 64 {
                String::new()
            } else {
                format!("--input-size {size} ")
            },
            if extra.is_empty() {
                "defaults ".to_string()
            } else {
                format!("{} ", extra.join(" "))
            },
            report["training_precision"].as_str().unwrap_or("?")
        ),
        accuracy: f(&report["best_epoch"]["val"]["accuracy"]),
        auc: f(&report["threshold"]["roc_auc"]),
        profile_f1: f(&report["threshold"]["profile"]["f1"]),
        profile_accuracy: f(&report["threshold"]["profile"]["accuracy"]),
        minutes,
    }
}

/// What every row of one seed shares.
#[derive(Clone, Copy)]
struct RunSpec {
    /// Most epochs of `train`.
    epochs: usize,
    /// Threads of each side.
    threads: usize,
    /// `train`'s input side.
    size: usize,
    /// Split, initialisation and data-order seed of both sides.
    seed: u64,
}

fn main() {
    let args = BenchArgs::parse(
        "cargo bench -p swipebot-train --bench quality [-- --per-class N --epochs E --threads T --input-size S \
         --seeds A,B,.. --original --fp32]",
        &["--per-class", "--epochs", "--threads", "--input-size", "--seeds"],
        &["--original", "--fp32"],
    )
    .and_then(|a| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok((
            a.number("--per-class", 1500, 10)?,
            a.number("--epochs", 15, 1)?,
            a.number("--threads", cores, 1)?,
            a.number("--input-size", 64, 32)?,
            a.numbers("--seeds", &[SEED as usize], 0)?,
            a.flag("--original"),
            a.flag("--fp32"),
        ))
    });
    let (per_class, epochs, threads, size, seeds, original, fp32) = args.unwrap_or_else(|e| {
        eprintln!("quality: {e}");
        std::process::exit(1);
    });
    if !Path::new(FASHION).is_dir() {
        eprintln!("quality: {FASHION} is missing: apt-get install dataset-fashion-mnist");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/quality_baseline.py");
    run(Command::new(python())
        .arg(&script)
        .args(["dataset", "--per-class", &per_class.to_string(), "--out"])
        .arg(&data));

    let runs: Vec<Vec<Row>> = seeds
        .iter()
        .map(|&seed| {
            let run = RunSpec {
                epochs,
                threads,
                size,
                seed: seed as u64,
            };
            rows_for_seed(&data, dir.path(), &script, run, fp32, original)
        })
        .collect();
    println!(
        "Fashion-MNIST T-shirt (like) vs shirt (nope), {per_class} a class, 85/15 split; input {size} grayscale \
         (the baseline: 64), {epochs} epochs at most, {threads} threads; seeds {seeds:?}{}",
        if seeds.len() > 1 { "; mean (lowest-highest)" } else { "" }
    );
    println!("| model | val accuracy | ROC AUC | profile F1 (4 photos) | profile accuracy | minutes |");
    println!("|---|---|---|---|---|---|");
    for (i, first) in runs[0].iter().enumerate() {
        let column = |f: fn(&Row) -> f64, digits: usize| {
            let values: Vec<f64> = runs.iter().map(|rows| f(&rows[i])).collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            if values.len() == 1 {
                format!("{mean:.digits$}")
            } else {
                let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!("{mean:.digits$} ({lo:.digits$}-{hi:.digits$})")
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            first.name,
            column(|r| r.accuracy, 3),
            column(|r| r.auc, 3),
            column(|r| r.profile_f1, 3),
            column(|r| r.profile_accuracy, 3),
            column(|r| r.minutes, 1)
        );
    }
}

/// One seed's rows: `train`'s and the baseline's, on the split of that seed.
fn rows_for_seed(data: &Path, dir: &Path, script: &Path, spec: RunSpec, fp32: bool, original: bool) -> Vec<Row> {
    // The split `train` makes (the same scan order and seeded split), for the baseline.
    let files = data::scan(data).unwrap();
    let labels: Vec<usize> = files.iter().map(|(_, l)| *l).collect();
    let (train_idx, val_idx) = training::split(&labels, VAL_FRACTION, spec.seed);
    let is_like = |i: &usize| usize::from(CLASSES[labels[*i]] == "like");
    let split = serde_json::json!({
        "train": train_idx.iter().map(|&i| &files[i].0).collect::<Vec<_>>(),
        "train_like": train_idx.iter().map(is_like).collect::<Vec<_>>(),
        "val": val_idx.iter().map(|&i| &files[i].0).collect::<Vec<_>>(),
        "val_like": val_idx.iter().map(is_like).collect::<Vec<_>>(),
    });
    let split_file = dir.join(format!("split-{}.json", spec.seed));
    std::fs::write(&split_file, serde_json::to_vec(&split).unwrap()).unwrap();
    eprintln!(
        "seed {}: Fashion-MNIST T-shirt (like) vs shirt (nope): {} images, {} training, {} validation; input {} grayscale \
         (the baseline: 64), {} epochs at most, {} threads",
        spec.seed,
        files.len(),
        train_idx.len(),
        val_idx.len(),
        spec.size,
        spec.epochs,
        spec.threads
    );

    let mut rows = vec![train_row(&format!("default-{}", spec.seed), data, dir, &[], &spec)];
    if fp32 {
        let extra = ["--precision-train", "fp32"];
        rows.push(train_row(&format!("fp32-{}", spec.seed), data, dir, &extra, &spec));
    }
    if original {
        let extra = ["--recipe", "original"];
        rows.push(train_row(&format!("original-{}", spec.seed), data, dir, &extra, &spec));
    }

    // The baseline, scored with the same measures and the same profile simulation.
    let scores_file = dir.join(format!("baseline-scores-{}.json", spec.seed));
    let started = Instant::now();
    let log = run(Command::new(python())
        .arg(script)
        .args([
            "baseline",
            "--threads",
            &spec.threads.to_string(),
            "--seed",
            &spec.seed.to_string(),
            "--split",
        ])
        .arg(&split_file)
        .arg("--scores")
        .arg(&scores_file));
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    eprint!("{log}");
    let p: Vec<f64> = serde_json::from_slice(&std::fs::read(&scores_file).unwrap()).unwrap();
    let like: Vec<bool> = val_idx.iter().map(|i| is_like(i) == 1).collect();
    let sizes = ProfileSizes::fixed(4);
    let sim = profiles::simulate(&p, &like, &sizes, spec.seed);
    let threshold = calibrate::choose_threshold(&sim.scores, &sim.like, ThresholdPolicy::MaxProfileLikeF1);
    let profile = ProfileReport::at(&sim, &sizes, threshold);
    let right = p.iter().zip(&like).filter(|(&p, &l)| (p >= 0.5) == l).count();
    rows.push(Row {
        name: "PyTorch small CNN (Adam, 10 epochs)".to_string(),
        accuracy: right as f64 / like.len() as f64,
        auc: calibrate::roc_auc(&p, &like).unwrap_or(f64::NAN),
        profile_f1: profile.rates.f1,
        profile_accuracy: profile.rates.accuracy,
        minutes,
    });

    rows
}
