//! int8 benchmark: photos per second of the fp32 model, the project's int8 model (`train --quantize`)
//! and the same fp32 model quantized by ONNX Runtime's Python quantizer (`benches/int8_reference.py`:
//! `quantize_static`, QDQ, per-channel), side by side in one run: pure inference on decoded tensors
//! and the full pipeline (decode + resize + score), at 1 and 2 intra-op threads, at inputs 224 and
//! 64, grayscale; and how many held-out photo decisions each int8 model flips against fp32 at the
//! model's threshold, scored by ONNX Runtime.
//!
//! ```text
//! cargo bench --bench int8                            # 224 and 64, 48 photos, 1 and 2 threads
//! cargo bench --bench int8 -- --sizes 64 --threads 2 --repeats 3 --percentile
//! ```
//!
//! Options: `--sizes LIST` (`224,64`), `--photos N` (48, timed), `--held-out N` (200, for flips),
//! `--threads LIST` (`1,2`), `--batch N` (8), `--repeats N` (5, median), `--warmup N` (1),
//! `--percentile` (`train --quantize --calibration percentile`; default minmax), `--no-reference`.
//!
//! The models are trained once by the `train` binary of the same profile on a synthetic dataset
//! (LIKE photos striped one way, NOPE the other) and cached under `target/bench-int8/`, with the
//! photos; the reference quantizer runs with the project's virtual environment (onnxruntime, onnx,
//! Pillow, numpy).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::bench::{median, BenchArgs};
use swipebot::vision::batch::score_all;
use swipebot::vision::scorer::{Scorer, ScorerOptions};
use swipebot_core::preprocess::{self, Channels, Limits, Recipe};

/// Photo geometry of the timed and held-out folders.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 800;

/// Command-line options.
struct Options {
    /// Input sides to measure.
    sizes: Vec<usize>,
    /// Photos timed.
    photos: usize,
    /// Held-out photos the flips are counted on.
    held_out: usize,
    /// ONNX Runtime intra-op thread counts.
    threads: Vec<usize>,
    /// Photos a batch.
    batch: usize,
    /// Timed rounds; the median is reported.
    repeats: usize,
    /// Untimed rounds first.
    warmup: usize,
    /// `--calibration` of `train --quantize`.
    calibration: String,
    /// Whether to make and measure ONNX Runtime's own int8 model.
    reference: bool,
}

impl Options {
    /// Reads the options from the command line.
    fn parse() -> Result<Self, String> {
        let args = BenchArgs::parse(
            "cargo bench --bench int8 -- [--sizes 224,64] [--photos N] [--held-out N] [--threads 1,2] \
             [--batch N] [--repeats N] [--warmup N] [--percentile] [--no-reference]",
            &[
                "--sizes",
                "--photos",
                "--held-out",
                "--threads",
                "--batch",
                "--repeats",
                "--warmup",
            ],
            &["--percentile", "--no-reference"],
        )?;
        Ok(Options {
            sizes: args.numbers("--sizes", &[224, 64], 32)?,
            photos: args.number("--photos", 48, 1)?,
            held_out: args.number("--held-out", 200, 2)?,
            threads: args.numbers("--threads", &[1, 2], 1)?,
            batch: args.number("--batch", 8, 1)?,
            repeats: args.number("--repeats", 5, 1)?,
            warmup: args.number("--warmup", 1, 0)?,
            calibration: if args.flag("--percentile") {
                "percentile"
            } else {
                "minmax"
            }
            .to_string(),
            reference: !args.flag("--no-reference"),
        })
    }
}

/// The target directory this bench binary was built in (`.../target/release/deps/int8-*`).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Runs `cmd`, failing with its stderr.
fn run_command(mut cmd: Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A folder of `count` JPEG photos (half LIKE-like, half NOPE-like) from `seed`; cached.
fn photos(dir: &Path, count: usize, seed: u64) -> Result<Vec<PathBuf>, String> {
    let paths: Vec<PathBuf> = (0..count).map(|i| dir.join(format!("photo-{i:04}.jpg"))).collect();
    if !paths.iter().all(|p| p.is_file()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (i, path) in paths.iter().enumerate() {
            let img = swipebot_core::synth::photo(i % 2 == 0, WIDTH, HEIGHT, seed + i as u64);
            std::fs::write(path, swipebot_core::synth::jpeg(&img, 90))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(paths)
}

/// The three models at input `size`: fp32 (trained), the project's int8, and ONNX Runtime's.
struct Models {
    /// The trained fp32 model.
    fp32: PathBuf,
    /// `train --quantize` of it.
    int8: PathBuf,
    /// `int8_reference.py` of it, when asked for.
    reference: Option<PathBuf>,
}

/// Trains (once) and quantizes the models at `size` on the dataset in `data`.
fn models(cache: &Path, data: &Path, size: usize, o: &Options) -> Result<Models, String> {
    let fp32 = cache.join(format!("fp32-{size}.onnx"));
    if !fp32.is_file() {
        // Enough epochs for the stripes to be learnt; 224 is slow to train on a CPU.
        let epochs = if size >= 160 { "2" } else { "6" };
        let mut cmd = Command::new(common::paths::bin("train"));
        cmd.arg("--data").arg(data).arg("--out").arg(&fp32);
        cmd.args([
            "--input-size",
            &size.to_string(),
            "--grayscale",
            "--epochs",
            epochs,
            "--batch-size",
            "16",
        ]);
        run_command(cmd)?;
    }
    let int8 = cache.join(format!("int8-{size}-{}.onnx", o.calibration));
    let mut cmd = Command::new(common::paths::bin("train"));
    cmd.arg("--quantize")
        .arg(&fp32)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(&int8);
    cmd.args(["--calibration", &o.calibration, "--force"]);
    let said = run_command(cmd)?;
    if let Some(line) = said.lines().rev().find(|l| l.starts_with("wrote")) {
        println!("train --quantize ({size}): {line}");
    }
    let reference = if o.reference {
        let reference = cache.join(format!("ort-int8-{size}.onnx"));
        let square = Recipe::for_input(size as u32, Channels::Gray).square;
        let mut cmd = Command::new(common::paths::python());
        cmd.arg(common::paths::repo_root().join("benches/int8_reference.py"));
        cmd.arg("--model")
            .arg(&fp32)
            .arg("--data")
            .arg(data)
            .arg("--out")
            .arg(&reference);
        cmd.args(["--square", &square.to_string(), "--crop", &size.to_string()]);
        run_command(cmd)?;
        Some(reference)
    } else {
        None
    };
    Ok(Models { fp32, int8, reference })
}

/// LIKE probabilities of every held-out photo under `model`.
fn probabilities(model: &Path, held_out: &[PathBuf]) -> Result<Vec<f32>, String> {
    let mut scorer = Scorer::load(model, &ScorerOptions::default()).map_err(|e| e.to_string())?;
    let load = |i: usize| std::fs::read(&held_out[i]).map_err(swipebot::vision::error::PhotoError::Read);
    let results = score_all(&mut scorer, held_out.len(), load, 8, 1).map_err(|e| e.to_string())?;
    results.into_iter().map(|r| r.map_err(|e| e.to_string())).collect()
}

/// Seconds `f` takes.
fn time(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

/// Measures one input size.
fn measure(
    o: &Options,
    cache: &Path,
    data: &Path,
    timed: &[PathBuf],
    held_out: &[PathBuf],
    size: usize,
) -> Result<(), String> {
    let m = models(cache, data, size, o)?;
    let mut named: Vec<(&str, &Path)> = vec![("fp32", &m.fp32), ("int8 (train)", &m.int8)];
    if let Some(r) = &m.reference {
        named.push(("int8 (ORT py)", r));
    }
    // Flips against fp32 at the model's threshold, on the held-out photos.
    let threshold = Scorer::load(&m.fp32, &ScorerOptions::default())
        .map_err(|e| e.to_string())?
        .info()
        .threshold;
    let base = probabilities(&m.fp32, held_out)?;
    println!(
        "== input {size}x{size} grayscale, threshold {threshold}, {} held-out photos",
        held_out.len()
    );
    for (name, path) in &named[1..] {
        let p = probabilities(path, held_out)?;
        let flips = base
            .iter()
            .zip(&p)
            .filter(|(a, b)| (**a >= threshold) != (**b >= threshold))
            .count();
        let worst = base.iter().zip(&p).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("{name:>14}: {flips} flips of {}, max |dp| {worst:.4}", held_out.len());
    }

    let recipe = Recipe::for_input(size as u32, Channels::Gray);
    let limits = Limits::default();
    let mut tensors = Vec::new();
    for p in timed {
        let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        preprocess::prepare(&bytes, &recipe, &limits, &mut tensors).map_err(|e| e.to_string())?;
    }
    let per_input = recipe.input_len();
    let load = |i: usize| std::fs::read(&timed[i]).map_err(swipebot::vision::error::PhotoError::Read);
    let n = timed.len();
    for &threads in &o.threads {
        let options = ScorerOptions {
            intra_threads: threads,
            ..ScorerOptions::default()
        };
        let mut scorers = named
            .iter()
            .map(|(_, p)| Scorer::load(p, &options).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        // One round times every model in turn, so they all see the same load.
        let mut round = || -> Vec<[f64; 2]> {
            scorers
                .iter_mut()
                .map(|scorer| {
                    let inference = time(|| {
                        for batch in tensors.chunks(o.batch * per_input) {
                            scorer.score(batch).expect("inference runs");
                        }
                    });
                    let full = time(|| {
                        let r = score_all(scorer, n, load, o.batch, 1).expect("inference runs");
                        assert!(r.iter().all(Result::is_ok), "every photo scores");
                    });
                    [inference, full]
                })
                .collect()
        };
        for _ in 0..o.warmup {
            round();
        }
        let rounds: Vec<Vec<[f64; 2]>> = (0..o.repeats).map(|_| round()).collect();
        let rate = |model: usize, slot: usize| n as f64 / median(rounds.iter().map(|r| r[model][slot]).collect());
        println!("-- {threads} intra-op thread(s): photos/s, pure inference | full pipeline (x fp32)");
        for (i, (name, _)) in named.iter().enumerate() {
            println!(
                "{name:>14}: {:8.2} ({:.2}x) | {:8.2} ({:.2}x)",
                rate(i, 0),
                rate(i, 0) / rate(0, 0),
                rate(i, 1),
                rate(i, 1) / rate(0, 1)
            );
        }
    }
    Ok(())
}

/// The benchmark; an error says what is missing or what failed.
fn run() -> Result<(), String> {
    let o = Options::parse()?;
    let cache = target_dir().join("bench-int8");
    let data = cache.join("data");
    if !data.join("like").is_dir() {
        swipebot_core::synth::write_dataset(&data, 150, 300, 21).map_err(|e| format!("{}: {e}", data.display()))?;
    }
    let timed = photos(&cache.join(format!("timed-{}", o.photos)), o.photos, 5000)?;
    let held_out = photos(&cache.join(format!("held-out-{}", o.held_out)), o.held_out, 90_000)?;
    println!(
        "int8: {} timed photos {WIDTH}x{HEIGHT}, batch {}, {} cores, median of {} rounds after {} warm-up; \
         calibration {}",
        o.photos,
        o.batch,
        std::thread::available_parallelism().map_or(1, |c| c.get()),
        o.repeats,
        o.warmup,
        o.calibration
    );
    for &size in &o.sizes {
        measure(&o, &cache, &data, &timed, &held_out, size)?;
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("int8: {e}");
        std::process::exit(1);
    }
}
