//! `train`: from a folder of `like/` and `nope/` images to the ONNX model the daemon loads.
//!
//! A package of its own (`swipebot-train`), so the daemon never links libtorch. One concern a file:
//! [`args`] (the command line), [`data`] (folder to decoded samples), [`cache`] (the binary dataset
//! cache), [`settings`] (the run's identity, which `--resume` checks), [`googlenet`] (the layer
//! list), [`model`] (the libtorch module), [`training`] (the loop, as [`training::Fit`]), [`sgd`]
//! (the optimizer), [`checkpoint`] (resume), [`calibrate`] (temperature and threshold), [`export`]
//! (ONNX), [`report`] (metrics.csv, curves.png, report.json) and `console` (what stderr shows).
//! This file runs them in order.

pub mod args;
pub mod cache;
pub mod calibrate;
pub mod checkpoint;
mod console;
pub mod data;
pub mod export;
pub mod googlenet;
pub mod model;
pub mod report;
pub mod settings;
pub mod sgd;
pub mod training;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use tch::nn::VarStore;

pub use args::Args;
use checkpoint::{Checkpoint, State};
use data::{Dataset, Sample};
use model::{GoogLeNet, NetShape};
use report::{beside, DatasetReport, Files, Report};
use settings::RunSettings;
use sgd::Sgd;
use swipebot_core::model_info::{ModelInfo, CLASSES};
use swipebot_core::preprocess::{Limits, Recipe};
use training::{Fit, FitEnd};

/// How a run of `train` ended (the binary exits 130 when interrupted); `outcome` in `report.json`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every epoch ran and the best one was exported.
    Completed,
    /// Ctrl-C: a checkpoint was written and the best model so far exported.
    Interrupted,
    /// `--stop-after-epochs` ended it early: checkpoint written, best model so far exported.
    Paused,
}

/// The decoded dataset and where it came from.
struct Loaded {
    /// The usable images and the skipped files.
    dataset: Dataset,
    /// Fingerprint of the scanned files and the preprocessing (part of the run's settings).
    fingerprint: String,
    /// The cache file the squares were read from or written to.
    cache_file: PathBuf,
    /// Whether that cache was reused or built.
    cache_status: cache::CacheStatus,
}

/// Runs `train` with parsed arguments.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    args.validate()?;
    let device = args.device()?;
    if device.is_cuda() {
        // cuDNN picks the fastest convolution algorithm for each shape (fixed here) once.
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let threads = args.threads();
    tch::set_num_threads(threads as i32);
    tch::manual_seed(args.seed as i64);
    let recipe = args.recipe();

    let loaded = load(&args, &recipe, threads)?;
    let (train, val) = split(&args, &loaded.dataset)?;

    // The network, normalised on the training split, and the state the run starts from.
    let shape = NetShape {
        input_size: i64::from(args.input_size),
        channels: recipe.channels.count() as i64,
        classes: CLASSES.len() as i64,
    };
    let mut vs = VarStore::new(device);
    let mut net = GoogLeNet::new(&vs.root(), shape);
    let (mean, scale) = data::normalization(&train, &recipe);
    net.set_normalization(&mean, &scale);
    let train_labels: Vec<usize> = train.iter().map(|s| s.label).collect();
    let hyper = args.hyper(&train_labels);
    let mut sgd = Sgd::new(&vs, hyper.momentum, hyper.weight_decay);
    let ckpt = Checkpoint::for_model(&args.out);
    let settings = RunSettings::new(&args, &recipe, &loaded.fingerprint);
    let mut state = start(&args, &ckpt, settings, &mut vs, &mut sgd)?;

    let mut outcome = Outcome::Completed;
    if args.epochs > 0 {
        eprintln!(
            "training on {} images, validating on {} ({device:?}, {threads} threads, input {}x{}, batch {})",
            train.len(),
            val.len(),
            args.input_size,
            args.input_size,
            hyper.batch_size
        );
        let stop = ctrl_c_flag()?;
        let fit = Fit {
            vs: &vs,
            net: &net,
            train: &train,
            val: &val,
            recipe: &recipe,
            hyper: &hyper,
            checkpoint: &ckpt,
            stop: &stop,
            stop_after: args.stop_after_epochs,
        };
        let end = fit.run(&mut sgd, &mut state, &mut console::Console::new())?;
        outcome = ended(end, &state, &ckpt);
    }

    // Calibration on the validation split, with the weights of the best epoch (fit restored them).
    let (logits, like): (Vec<[f32; 2]>, Vec<bool>) = if args.epochs > 0 {
        let logits = training::predict_logits(&net, &val, &recipe, hyper.batch_size, device);
        (logits, val.iter().map(|s| CLASSES[s.label] == "like").collect())
    } else {
        (Vec::new(), Vec::new())
    };
    let (calibration, threshold) = calibrate::calibrate(&logits, &like, args.threshold_policy(), args.threshold);

    let info = ModelInfo {
        input_size: args.input_size,
        recipe,
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        threshold: threshold.value,
        temperature: calibration.temperature as f32,
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dataset: loaded.dataset.describe_counts(),
    };
    export::export(&vs, shape, &info, &args.out).with_context(|| format!("exporting to {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    if args.epochs == 0 {
        return Ok(outcome);
    }

    // The files next to the model.
    let files = Files {
        metrics: beside(&args.out, "metrics.csv"),
        curves: beside(&args.out, "curves.png"),
        checkpoint: ckpt.dir().to_path_buf(),
    };
    report::write_metrics_csv(&files.metrics, &state.history)?;
    if !report::write_curves(&files.curves, &state.history)? {
        eprintln!("note: no TrueType font found, curves.png has no labels");
    }
    let dataset = DatasetReport {
        folder: args.data.clone(),
        counts: CLASSES
            .iter()
            .map(|c| c.to_string())
            .zip(loaded.dataset.counts())
            .collect(),
        train: train.len(),
        validation: val.len(),
        skipped: loaded.dataset.skipped.clone(),
        cache: loaded.cache_file.clone(),
        cache_status: loaded.cache_status,
    };
    let report = Report {
        model: args.out.clone(),
        outcome,
        dataset,
        best_epoch: state
            .best
            .and_then(|b| state.history.iter().find(|r| r.epoch == b.epoch).copied()),
        epochs_run: state.history.len(),
        training_images_per_second: report::mean_images_per_second(&state.history),
        settings: state.settings,
        calibration,
        threshold,
        files,
    };
    let report_path = beside(&args.out, "report.json");
    report::write_json(&report_path, &report)?;
    console::summary(&report, &report_path);
    Ok(outcome)
}

/// Scans `--data` and reads the squares from the cache, or decodes them on `threads` threads and
/// writes the cache; says on stderr which, and what was skipped.
fn load(args: &Args, recipe: &Recipe, threads: usize) -> anyhow::Result<Loaded> {
    let limits = Limits::default();
    let files = data::scan(&args.data)?;
    let cache_dir = args.cache.clone().unwrap_or_else(|| args.data.join(cache::DEFAULT_DIR));
    let cache_file = cache::file_for(&cache_dir, recipe);
    let started = Instant::now();
    let (dataset, cache_status) = cache::load_or_build(&cache_file, &files, recipe, &limits, threads)?;
    let seconds = started.elapsed().as_secs_f64();
    console::dataset(&dataset, files.len(), cache_status, &cache_file, seconds, threads);
    Ok(Loaded {
        dataset,
        fingerprint: cache::fingerprint(&files, recipe, &limits),
        cache_file,
        cache_status,
    })
}

/// The seeded stratified split into training and validation images; training needs every class.
fn split<'d>(args: &Args, dataset: &'d Dataset) -> anyhow::Result<(Vec<&'d Sample>, Vec<&'d Sample>)> {
    let labels: Vec<usize> = dataset.samples.iter().map(|s| s.label).collect();
    let (train_idx, val_idx) = training::split(&labels, args.val_fraction, args.seed);
    let train: Vec<&Sample> = train_idx.iter().map(|&i| &dataset.samples[i]).collect();
    let val: Vec<&Sample> = val_idx.iter().map(|&i| &dataset.samples[i]).collect();
    if args.epochs > 0 && (train.is_empty() || dataset.counts().contains(&0)) {
        bail!(
            "cannot train: every class needs images (found {})",
            dataset.describe_counts()
        );
    }
    Ok((train, val))
}

/// The state the run starts from: with `--resume`, the checkpoint's (which must have been made with
/// `settings`), its weights and momentum loaded into `vs` and `sgd`; otherwise a fresh one.
fn start(
    args: &Args,
    ckpt: &Checkpoint,
    settings: RunSettings,
    vs: &mut VarStore,
    sgd: &mut Sgd,
) -> anyhow::Result<State> {
    if args.resume {
        let state = ckpt.load_state(&settings)?;
        ckpt.load_weights(vs, sgd)?;
        eprintln!(
            "resuming from {} at epoch {}, step {}",
            ckpt.dir().display(),
            state.epoch + 1,
            state.step
        );
        return Ok(state);
    }
    if ckpt.exists() && args.epochs > 0 {
        eprintln!(
            "starting afresh: overwriting the checkpoint in {} (use --resume to continue it)",
            ckpt.dir().display()
        );
    }
    Ok(State::new(settings))
}

/// A flag the first Ctrl-C raises (the loop then checkpoints at the next step); a second Ctrl-C
/// exits at once with code 130.
fn ctrl_c_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_shutdown(signal_hook::consts::SIGINT, 130, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    Ok(stop)
}

/// The run's outcome for how the loop ended, said on stderr when it stopped early.
fn ended(end: FitEnd, state: &State, ckpt: &Checkpoint) -> Outcome {
    match end {
        FitEnd::Completed => Outcome::Completed,
        FitEnd::Interrupted => {
            eprintln!(
                "interrupted at epoch {}, step {}: checkpoint in {}; continue with --resume",
                state.epoch + 1,
                state.step,
                ckpt.dir().display()
            );
            Outcome::Interrupted
        }
        FitEnd::Paused => {
            eprintln!(
                "stopped after epoch {} as asked: checkpoint in {}; continue with --resume",
                state.epoch,
                ckpt.dir().display()
            );
            Outcome::Paused
        }
    }
}
