//! `train`: from a folder of `like/` and `nope/` images to the ONNX model the daemon loads.
//!
//! A package of its own (`swipebot-train`), so the daemon never links libtorch. One concern a file:
//! [`googlenet`] (the layer list), [`model`] (the libtorch module), [`data`] (folder to decoded
//! samples), [`training`] (the loop), [`export`] (ONNX).

pub mod data;
pub mod export;
pub mod googlenet;
pub mod model;
pub mod training;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;

use model::{GoogLeNet, NetShape};
use swipebot::model_info::{ModelInfo, CLASSES};
use swipebot::vision::preprocess::{Channels, Limits, Recipe};
use training::Hyper;

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
    /// Decision threshold written into the model (the original experiment used 0.4).
    #[arg(long, default_value_t = 0.4)]
    pub threshold: f32,
    /// `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Threads for decoding and for libtorch (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs `train` with parsed arguments.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&args.val_fraction) {
        bail!("--val-fraction must be in [0, 1), got {}", args.val_fraction);
    }
    let device = match args.device.as_str() {
        "cpu" => tch::Device::Cpu,
        "cuda" if tch::Cuda::is_available() => tch::Device::Cuda(0),
        "cuda" => bail!("--device cuda: libtorch sees no CUDA device (is this a GPU host with the CUDA torch wheel?)"),
        other => bail!("--device must be `cpu` or `cuda`, got `{other}`"),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tch::set_num_threads(threads as i32);
    tch::manual_seed(args.seed as i64);

    let channels = if args.grayscale { Channels::Gray } else { Channels::Rgb };
    let recipe = Recipe::for_input(args.input_size, channels);
    let files = data::scan(&args.data)?;
    eprintln!("scanning {}: {} files", args.data.display(), files.len());
    let dataset = data::load(&files, &recipe, &Limits::default(), threads);
    for s in &dataset.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    eprintln!(
        "dataset: {} ({} skipped)",
        dataset.describe_counts(),
        dataset.skipped.len()
    );

    let labels: Vec<usize> = dataset.samples.iter().map(|s| s.label).collect();
    let (train_idx, val_idx) = training::split(&labels, args.val_fraction, args.seed);
    let train: Vec<&data::Sample> = train_idx.iter().map(|&i| &dataset.samples[i]).collect();
    let val: Vec<&data::Sample> = val_idx.iter().map(|&i| &dataset.samples[i]).collect();
    if args.epochs > 0 && (train.is_empty() || dataset.counts().contains(&0)) {
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
    let vs = tch::nn::VarStore::new(device);
    let mut net = GoogLeNet::new(&vs.root(), shape);
    let (mean, scale) = data::normalization(&train, &recipe);
    net.set_normalization(&mean, &scale);

    if args.epochs > 0 {
        eprintln!(
            "training on {} images, validating on {} ({device:?}, {threads} threads)",
            train.len(),
            val.len()
        );
        let hyper = Hyper {
            epochs: args.epochs,
            batch_size: args.batch_size.max(1),
            base_lr: args.lr,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            step_fraction: args.step_fraction,
            gamma: args.gamma,
            seed: args.seed,
        };
        training::fit(&vs, &net, &train, &val, &recipe, &hyper, |r| {
            eprintln!(
                "epoch {:>3}: train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} | lr {:.2e}",
                r.epoch, r.train.loss, r.train.accuracy, r.val.loss, r.val.accuracy, r.lr
            );
        })?;
    }

    let info = ModelInfo {
        input_size: args.input_size,
        recipe,
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        threshold: args.threshold,
        temperature: 1.0,
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dataset: dataset.describe_counts(),
    };
    export::export(&vs, shape, &info, &args.out).with_context(|| format!("exporting to {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
