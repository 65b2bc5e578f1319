//! The command line of `train`: its flags, the checks clap cannot make, and what the flags mean for
//! the run (device, threads, preprocessing, threshold policy, hyper-parameters).

use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;
use swipebot_core::preprocess::{Channels, Recipe};

use crate::calibrate::ThresholdPolicy;
use crate::precision::Int8Settings;
use crate::ranges::RangeMethod;
use crate::training::{self, Hyper};

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

    // Precision of the written model (README, "Precision"); one block, read by `precision.rs`.
    /// Arithmetic of the written model: `fp32`, or `int8` (calibrated on training images, gated on
    /// the validation split against fp32). `fp16` is refused: it needs a CUDA host.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,
    /// Quantize this existing fp32 model to int8 instead of training (calibration and gate on `--data`,
    /// split by `--val-fraction` and `--seed` as in training); writes `--out` and its report.
    #[arg(long, conflicts_with_all = ["resume", "precision"])]
    pub quantize: Option<PathBuf>,
    /// Training images the int8 activation ranges are measured on.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub calibration_images: u64,
    /// How an int8 activation range is read from the calibration images.
    #[arg(long, value_enum, default_value_t = RangeMethod::Minmax)]
    pub calibration: RangeMethod,
    /// Write the int8 model even when it flips more validation decisions than the gate allows.
    #[arg(long)]
    pub force: bool,
}

/// The values of `--precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// Float, as trained.
    Fp32,
    /// int8 weights, uint8 activations (QDQ).
    Int8,
    /// Half precision, for CUDA hosts: refused (see [`Args::validate`]).
    Fp16,
}

impl Args {
    /// Checks the values clap does not: the fractions, the threshold and `--resize`.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..1.0).contains(&self.val_fraction) {
            bail!("--val-fraction must be in [0, 1), got {}", self.val_fraction);
        }
        if let Some(r) = self.target_like_rate {
            if !(r > 0.0 && r < 1.0) {
                bail!("--target-like-rate must be between 0 and 1, got {r}");
            }
        }
        if let Some(t) = self.threshold {
            if !(0.0..=1.0).contains(&t) {
                bail!("--threshold must be between 0 and 1, got {t}");
            }
        }
        if let Some(square) = self.resize {
            if square < self.input_size {
                bail!("--resize {square} is smaller than --input-size {}", self.input_size);
            }
        }
        if self.precision == PrecisionArg::Fp16 {
            bail!(
                "--precision fp16 is not available: ONNX Runtime runs fp16 convolutions fast only on CUDA, and this \
                 build has not been measured on a CUDA host; use fp32 (any host) or int8 (CPU)"
            );
        }
        Ok(())
    }

    /// The int8 settings, when the run writes an int8 model (`--precision int8` or `--quantize`).
    pub fn int8(&self) -> Option<Int8Settings> {
        (self.precision == PrecisionArg::Int8 || self.quantize.is_some()).then_some(Int8Settings {
            calibration_images: self.calibration_images as usize,
            method: self.calibration,
            force: self.force,
        })
    }

    /// The libtorch device `--device` names; `cuda` fails when libtorch sees no GPU.
    pub fn device(&self) -> anyhow::Result<tch::Device> {
        match self.device.as_str() {
            "cpu" => Ok(tch::Device::Cpu),
            "cuda" if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            "cuda" => {
                bail!("--device cuda: libtorch sees no CUDA device (is this a GPU host with the CUDA torch wheel?)")
            }
            other => bail!("--device must be `cpu` or `cuda`, got `{other}`"),
        }
    }

    /// Threads for decoding and libtorch: `--threads`, else every core.
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }

    /// The preprocessing: input side, channels and the square images are resized to.
    pub fn recipe(&self) -> Recipe {
        let channels = if self.grayscale { Channels::Gray } else { Channels::Rgb };
        let mut recipe = Recipe::for_input(self.input_size, channels);
        if let Some(square) = self.resize {
            recipe.square = square;
        }
        recipe
    }

    /// How the recommended threshold is chosen.
    pub fn threshold_policy(&self) -> ThresholdPolicy {
        match self.target_like_rate {
            Some(rate) => ThresholdPolicy::LikeRate { rate },
            None => ThresholdPolicy::MaxLikeF1,
        }
    }

    /// The hyper-parameters of the loop; `train_labels` (the training split's classes) weigh the
    /// loss when `--class-weights` is given.
    pub fn hyper(&self, train_labels: &[usize]) -> Hyper {
        Hyper {
            epochs: self.epochs,
            batch_size: self.batch_size.max(1),
            base_lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            step_fraction: self.step_fraction,
            gamma: self.gamma,
            seed: self.seed,
            class_weights: self
                .class_weights
                .then(|| training::balanced_class_weights(train_labels)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec!["train", "--data", "d", "--out", "m.onnx"];
        argv.extend(extra);
        Args::parse_from(argv)
    }

    #[test]
    fn values_clap_cannot_check_are_refused_with_the_flag_named() {
        parse(&[]).validate().unwrap();
        for (extra, flag) in [
            (&["--val-fraction", "1"][..], "--val-fraction"),
            (&["--target-like-rate", "0"][..], "--target-like-rate"),
            (&["--threshold", "1.5"][..], "--threshold"),
            (&["--input-size", "96", "--resize", "64"][..], "--resize"),
        ] {
            let err = parse(extra).validate().unwrap_err().to_string();
            assert!(err.starts_with(flag), "{extra:?}: {err}");
        }
        let err = parse(&["--precision", "fp16"]).validate().unwrap_err().to_string();
        assert!(err.starts_with("--precision fp16") && err.contains("CUDA"), "{err}");
        assert!(parse(&[]).int8().is_none());
        let int8 = parse(&["--precision", "int8", "--calibration", "percentile", "--force"])
            .int8()
            .unwrap();
        assert_eq!(
            (int8.calibration_images, int8.method, int8.force),
            (256, RangeMethod::Percentile, true)
        );
        assert!(parse(&["--quantize", "m.onnx"]).int8().is_some());
        assert!(Args::try_parse_from(["train", "--data", "d", "--out", "o", "--quantize", "m", "--resume"]).is_err());
        assert!(parse(&["--device", "tpu"])
            .device()
            .unwrap_err()
            .to_string()
            .contains("`tpu`"));
    }

    #[test]
    fn the_recipe_follows_the_input_size_unless_resize_is_given() {
        let r = parse(&["--input-size", "224", "--grayscale"]).recipe();
        assert_eq!((r.crop, r.square, r.channels), (224, 256, Channels::Gray));
        let r = parse(&["--input-size", "64", "--resize", "80"]).recipe();
        assert_eq!((r.crop, r.square, r.channels), (64, 80, Channels::Rgb));
    }
}
