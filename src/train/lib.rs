//! `train`: from a folder of `like/` and `nope/` images to the ONNX model the daemon loads.
//!
//! A package of its own (`swipebot-train`), so the daemon never links libtorch. One concern a file:
//! [`googlenet`] (the layer list), [`model`] (the libtorch module), [`data`] (folder to decoded
//! samples), [`cache`] (the binary dataset cache), [`training`] (the loop), [`sgd`] (the optimizer),
//! [`checkpoint`] (resume), [`calibrate`] (temperature and threshold), [`report`] (metrics.csv,
//! curves.png, report.json), [`export`] (ONNX). This file is the command line and the orchestration.

pub mod cache;
pub mod calibrate;
pub mod checkpoint;
pub mod data;
pub mod export;
pub mod googlenet;
pub mod model;
pub mod report;
pub mod sgd;
pub mod training;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use calibrate::ThresholdPolicy;
use checkpoint::{Checkpoint, State};
use model::{GoogLeNet, NetShape};
use swipebot_core::model_info::{ModelInfo, CLASSES};
use swipebot_core::preprocess::{Channels, Limits, Recipe};
use training::{EpochReport, FitControl, FitEnd, Hyper, Observer};

/// Command-line arguments of `train`.
#[derive(Debug, Parser)]
#[command(
    name = "train",
    version,
    about = "Train the swipebot GoogLeNet on like/ and nope/ folders and export it to ONNX"
)]
pub struct Args {
    /// Folder holding `like/` and `nope/` sub-folders of JPEG, PNG or WebP images (any depth).
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the ONNX model.
    #[arg(long)]
    pub out: PathBuf,
    /// Passes over the training split; 0 exports an initialised, untrained model.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Side of the square network input (224 as in the original; 64 or 96 for quick CPU runs).
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(32..=512))]
    pub input_size: u32,
    /// Side images are resized to before cropping (default: input size x 8/7, i.e. 256 for 224).
    #[arg(long)]
    pub resize: Option<u32>,
    /// Folder for the dataset cache (default: `DATA/.swipebot-cache`).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Train on grayscale images, as the original recipe did (default: RGB).
    #[arg(long)]
    pub grayscale: bool,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Base learning rate (multiplied by --gamma every --step-fraction of the iterations).
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Fraction of the total iterations between learning-rate step-downs.
    #[arg(long, default_value_t = 0.33)]
    pub step_fraction: f64,
    /// Learning-rate step-down factor.
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = 2e-4)]
    pub weight_decay: f64,
    /// Fraction of each class held out for validation.
    #[arg(long, default_value_t = 0.15)]
    pub val_fraction: f64,
    /// Seed for the split, data order, crops, mirrors and initialisation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Weigh the loss by class so unbalanced folders count equally (`n / (2 * n_class)`).
    #[arg(long)]
    pub class_weights: bool,
    /// Recommend the threshold that swipes right on about this fraction of the validation photos,
    /// instead of the one maximising the LIKE F1 score.
    #[arg(long, conflicts_with = "threshold")]
    pub target_like_rate: Option<f64>,
    /// Write this threshold into the model instead of the recommended one (0.4, the original
    /// experiment's guess, is used when nothing can be calibrated: `--epochs 0` or no validation).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Continue the run whose checkpoint is next to `--out` (same settings and data required).
    #[arg(long)]
    pub resume: bool,
    /// Stop (with a checkpoint) after this many epochs of this invocation; for testing `--resume`.
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
    /// `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Threads for decoding and for libtorch (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// How a run of `train` ended (the binary exits 130 when interrupted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every epoch ran and the best one was exported.
    Completed,
    /// Ctrl-C: a checkpoint was written and the best model so far exported.
    Interrupted,
    /// `--stop-after-epochs` ended it early: checkpoint written, best model so far exported.
    Paused,
}

/// The progress bar and per-epoch lines; plain lines only when stderr is not a terminal.
struct Console {
    bar: Option<ProgressBar>,
    fancy: bool,
}

impl Console {
    fn new() -> Self {
        Console {
            bar: None,
            fancy: std::io::stderr().is_terminal(),
        }
    }
}

impl Observer for Console {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, first: usize, steps: usize) {
        if !self.fancy {
            return;
        }
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        bar.set_position(first as u64);
        bar.reset_eta();
        self.bar = Some(bar);
    }

    fn step(&mut self, loss: f64, images_per_second: f64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {loss:.4} {images_per_second:.1} img/s"));
            bar.inc(1);
        }
    }

    fn epoch_end(&mut self, r: &EpochReport, best: bool) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!(
            "epoch {:>3}: train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} | lr {:.2e} | {:.1} img/s{}",
            r.epoch,
            r.train.loss,
            r.train.accuracy,
            r.val.loss,
            r.val.accuracy,
            r.lr,
            r.images_per_second,
            if best { " *" } else { "" }
        );
    }
}

/// The settings a checkpoint must share with a `--resume`: everything that changes the schedule,
/// the data order or the network.
fn run_settings(args: &Args, recipe: &Recipe, fingerprint: &str) -> serde_json::Value {
    serde_json::json!({
        "dataset": fingerprint,
        "epochs": args.epochs,
        "input_size": args.input_size,
        "square": recipe.square,
        "channels": recipe.channels.count(),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "step_fraction": args.step_fraction,
        "gamma": args.gamma,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "class_weights": args.class_weights,
    })
}

/// Where the files that go next to the model live (`metrics.csv` and the others).
fn beside(model: &Path, name: &str) -> PathBuf {
    model.with_file_name(name)
}

/// Runs `train` with parsed arguments.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    if !(0.0..1.0).contains(&args.val_fraction) {
        bail!("--val-fraction must be in [0, 1), got {}", args.val_fraction);
    }
    if let Some(r) = args.target_like_rate {
        if !(r > 0.0 && r < 1.0) {
            bail!("--target-like-rate must be between 0 and 1, got {r}");
        }
    }
    if let Some(t) = args.threshold {
        if !(0.0..=1.0).contains(&t) {
            bail!("--threshold must be between 0 and 1, got {t}");
        }
    }
    let device = match args.device.as_str() {
        "cpu" => tch::Device::Cpu,
        "cuda" if tch::Cuda::is_available() => {
            // cuDNN picks the fastest convolution algorithm for each shape (fixed here) once.
            tch::Cuda::cudnn_set_benchmark(true);
            tch::Device::Cuda(0)
        }
        "cuda" => bail!("--device cuda: libtorch sees no CUDA device (is this a GPU host with the CUDA torch wheel?)"),
        other => bail!("--device must be `cpu` or `cuda`, got `{other}`"),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    tch::set_num_threads(threads as i32);
    tch::manual_seed(args.seed as i64);

    let channels = if args.grayscale { Channels::Gray } else { Channels::Rgb };
    let mut recipe = Recipe::for_input(args.input_size, channels);
    if let Some(square) = args.resize {
        if square < args.input_size {
            bail!("--resize {square} is smaller than --input-size {}", args.input_size);
        }
        recipe.square = square;
    }

    // Dataset: scan, then the cache (decoding on every core when it must be built).
    let limits = Limits::default();
    let files = data::scan(&args.data)?;
    let cache_dir = args.cache.clone().unwrap_or_else(|| args.data.join(cache::DEFAULT_DIR));
    let cache_file = cache::file_for(&cache_dir, &recipe);
    let fingerprint = cache::fingerprint(&files, &recipe, &limits);
    let started = Instant::now();
    let (dataset, cache_status) = cache::load_or_build(&cache_file, &files, &recipe, &limits, threads)?;
    let dataset_seconds = started.elapsed().as_secs_f64();
    match cache_status {
        cache::CacheStatus::Built => eprintln!(
            "decoded {} files in {dataset_seconds:.1}s ({:.0} images/s on {threads} threads); cache {}",
            files.len(),
            files.len() as f64 / dataset_seconds.max(1e-9),
            cache_file.display()
        ),
        cache::CacheStatus::Reused => {
            eprintln!("reused the dataset cache {}", cache_file.display())
        }
    }
    if !dataset.skipped.is_empty() {
        eprintln!("skipped {} files:", dataset.skipped.len());
        for s in &dataset.skipped {
            eprintln!("  {}: {}", s.path.display(), s.reason);
        }
    }
    let counts = dataset.counts();
    eprintln!(
        "images per class: {}",
        CLASSES
            .iter()
            .zip(&counts)
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let labels: Vec<usize> = dataset.samples.iter().map(|s| s.label).collect();
    let (train_idx, val_idx) = training::split(&labels, args.val_fraction, args.seed);
    let train: Vec<&data::Sample> = train_idx.iter().map(|&i| &dataset.samples[i]).collect();
    let val: Vec<&data::Sample> = val_idx.iter().map(|&i| &dataset.samples[i]).collect();
    if args.epochs > 0 && (train.is_empty() || counts.contains(&0)) {
        bail!(
            "cannot train: every class needs images (found {})",
            dataset.describe_counts()
        );
    }

    let shape = NetShape {
        input_size: i64::from(args.input_size),
        channels: channels.count() as i64,
        classes: CLASSES.len() as i64,
    };
    let mut vs = tch::nn::VarStore::new(device);
    let mut net = GoogLeNet::new(&vs.root(), shape);
    let (mean, scale) = data::normalization(&train, &recipe);
    net.set_normalization(&mean, &scale);

    let train_labels: Vec<usize> = train.iter().map(|s| s.label).collect();
    let hyper = Hyper {
        epochs: args.epochs,
        batch_size: args.batch_size.max(1),
        base_lr: args.lr,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        step_fraction: args.step_fraction,
        gamma: args.gamma,
        seed: args.seed,
        class_weights: args
            .class_weights
            .then(|| training::balanced_class_weights(&train_labels)),
    };
    let mut sgd = sgd::Sgd::new(&vs, args.momentum, args.weight_decay);
    let ckpt = Checkpoint::for_model(&args.out);
    let settings = run_settings(&args, &recipe, &fingerprint);
    let mut state = State {
        settings: settings.clone(),
        ..State::default()
    };
    let mut best = None;
    if args.resume {
        state = ckpt.load_state(&settings)?;
        ckpt.load_weights(&mut vs, &mut sgd)?;
        best = ckpt.load_best()?;
        eprintln!(
            "resuming from {} at epoch {}, step {}",
            ckpt.dir().display(),
            state.epoch + 1,
            state.step
        );
    } else if ckpt.exists() && args.epochs > 0 {
        eprintln!(
            "starting afresh: overwriting the checkpoint in {} (use --resume to continue it)",
            ckpt.dir().display()
        );
    }

    let mut outcome = Outcome::Completed;
    if args.epochs > 0 {
        // Ctrl-C raises the flag; the loop checkpoints at the next step. A second Ctrl-C exits now.
        let stop = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register_conditional_shutdown(signal_hook::consts::SIGINT, 130, Arc::clone(&stop))?;
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
        eprintln!(
            "training on {} images, validating on {} ({device:?}, {threads} threads, input {}x{}, batch {})",
            train.len(),
            val.len(),
            args.input_size,
            args.input_size,
            hyper.batch_size
        );
        let control = FitControl {
            checkpoint: &ckpt,
            stop: &stop,
            stop_after: args.stop_after_epochs,
        };
        let mut console = Console::new();
        let end = training::fit(
            &vs,
            &net,
            &mut sgd,
            &train,
            &val,
            &recipe,
            &hyper,
            &mut state,
            &mut best,
            &control,
            &mut console,
        )?;
        if let Some(bar) = console.bar.take() {
            bar.abandon();
        }
        outcome = match end {
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
        };
    }

    // Calibration on the validation split, with the weights of the best epoch (fit restored them).
    let calibrated = args.epochs > 0 && !val.is_empty();
    let logits = if calibrated {
        training::predict_logits(&net, &val, &recipe, hyper.batch_size, device)
    } else {
        Vec::new()
    };
    let margins = calibrate::margins(&logits);
    let val_like: Vec<bool> = val.iter().map(|s| CLASSES[s.label] == "like").collect();
    let temperature = calibrate::fit_temperature(&margins, &val_like);
    let raw = calibrate::like_probabilities(&margins, 1.0);
    let scaled = calibrate::like_probabilities(&margins, temperature);
    let policy = match args.target_like_rate {
        Some(rate) => ThresholdPolicy::LikeRate { rate },
        None => ThresholdPolicy::MaxLikeF1,
    };
    let recommended = calibrate::choose_threshold(&scaled, &val_like, policy);
    let threshold = match (args.threshold, calibrated) {
        (Some(t), _) => t,
        (None, true) => recommended as f32,
        (None, false) => 0.4,
    };
    let confusion = calibrate::Confusion::at(&scaled, &val_like, f64::from(threshold));

    let info = ModelInfo {
        input_size: args.input_size,
        recipe,
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        threshold,
        temperature: temperature as f32,
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dataset: dataset.describe_counts(),
    };
    export::export(&vs, shape, &info, &args.out).with_context(|| format!("exporting to {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    if args.epochs == 0 {
        return Ok(outcome);
    }

    // The files next to the model.
    let metrics_path = beside(&args.out, "metrics.csv");
    report::write_metrics_csv(&metrics_path, &state.history)?;
    let curves_path = beside(&args.out, "curves.png");
    let labelled = report::write_curves(&curves_path, &state.history)?;
    if !labelled {
        eprintln!("note: no TrueType font found, curves.png has no labels");
    }
    let best_report = state
        .best
        .and_then(|b| state.history.iter().find(|r| r.epoch == b.epoch));
    let ece_before = calibrate::ece(&raw, &val_like, 15);
    let ece_after = calibrate::ece(&scaled, &val_like, 15);
    let auc = calibrate::roc_auc(&scaled, &val_like);
    let images_per_second = {
        let (n, s) = state.history.iter().fold((0.0, 0.0), |(n, s), r| {
            (n + r.images_per_second * r.seconds, s + r.seconds)
        });
        if s > 0.0 {
            n / s
        } else {
            0.0
        }
    };
    let json = serde_json::json!({
        "model": args.out,
        "outcome": format!("{outcome:?}").to_lowercase(),
        "dataset": {
            "folder": args.data,
            "counts": CLASSES.iter().zip(&counts).map(|(c, n)| (c.to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "train": train.len(),
            "validation": val.len(),
            "skipped": dataset.skipped,
            "cache": cache_file,
            "cache_status": cache_status,
        },
        "settings": settings,
        "epochs_run": state.history.len(),
        "best_epoch": best_report,
        "training_images_per_second": images_per_second,
        "calibration": {
            "temperature": temperature,
            "nll_before": calibrate::nll(&margins, &val_like, 1.0),
            "nll_after": calibrate::nll(&margins, &val_like, temperature),
            "ece_before": ece_before,
            "ece_after": ece_after,
            "ece_bins": 15,
        },
        "threshold": {
            "value": threshold,
            "recommended": recommended,
            "chosen_by": if args.threshold.is_some() { serde_json::json!("--threshold") } else { serde_json::to_value(policy)? },
            "confusion": confusion,
            "accuracy": confusion.accuracy(),
            "like_f1": confusion.like_f1(),
            "roc_auc": auc,
        },
        "files": {
            "metrics": metrics_path,
            "curves": curves_path,
            "checkpoint": ckpt.dir(),
        },
    });
    let report_path = beside(&args.out, "report.json");
    report::write_json(&report_path, &json)?;

    match best_report {
        Some(b) => eprintln!(
            "best epoch {} of {}: val accuracy {:.3}, val loss {:.4}",
            b.epoch,
            state.history.len(),
            b.val.accuracy,
            b.val.loss
        ),
        None => eprintln!("no epoch finished: exported the current weights"),
    }
    eprintln!(
        "calibration: temperature {temperature:.3}, ECE {ece_before:.4} -> {ece_after:.4}; threshold {threshold:.3} ({}), ROC AUC {}",
        match policy {
            _ if args.threshold.is_some() => "from --threshold".to_string(),
            ThresholdPolicy::MaxLikeF1 => "max LIKE F1".to_string(),
            ThresholdPolicy::LikeRate { rate } => format!("like rate {rate}"),
        },
        auc.map_or("n/a".to_string(), |a| format!("{a:.4}"))
    );
    eprintln!(
        "at that threshold: {} true like, {} false like, {} true nope, {} false nope",
        confusion.true_like, confusion.false_like, confusion.true_nope, confusion.false_nope
    );
    eprintln!(
        "wrote {}, {}, {}",
        metrics_path.display(),
        curves_path.display(),
        report_path.display()
    );
    Ok(outcome)
}
