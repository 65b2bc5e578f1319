//! The command line of `train`: its flags, the checks clap cannot make, and what the flags mean for
//! the run (device, threads, preprocessing, threshold policy, hyper-parameters).

use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;
use swipebot_core::preprocess::{Channels, Recipe};

use crate::calibrate::ThresholdPolicy;
use crate::googlenet::Norm;
use crate::mixed::PrecisionChoice;
use crate::precision::Int8Settings;
use crate::profiles::ProfileSizes;
use crate::ranges::RangeMethod;
use crate::recipe::{Augment, OptimizerKind, RecipeName, Schedule, ScheduleKind};
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
    /// Most passes over the training split (fewer when `--patience` stops the run); 0 exports an
    /// initialised, untrained model.
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
    /// Base learning rate (the top of the schedule; default: 0.001 with AdamW, 0.01 with SGD).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Fraction of the total iterations between learning-rate step-downs (`--schedule step`).
    #[arg(long, default_value_t = 0.33)]
    pub step_fraction: f64,
    /// Learning-rate step-down factor (`--schedule step`).
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
    /// Start from the weights of this model (exported by `train`, fp32, same input size and channels)
    /// to fine-tune it on `--data`, instead of from random weights; the new model records it in
    /// `swipebot.init_from`.
    #[arg(long, conflicts_with_all = ["resume", "quantize"])]
    pub init: Option<PathBuf>,
    /// Stop (with a checkpoint) after this many epochs of this invocation; for testing `--resume`.
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
    /// `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Arithmetic of the training step: `auto` (bf16 where the CPU or GPU computes it natively, else
    /// fp32), `fp32`, `bf16`, or `fp16` (with loss scaling; for CUDA GPUs without bf16). Weights,
    /// validation and the written model stay fp32 (`--precision` sets the written model's).
    #[arg(long, value_enum, default_value_t = PrecisionChoice::Auto)]
    pub precision_train: PrecisionChoice,
    /// Threads for decoding and for libtorch (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    // The recipe (`crate::recipe`) and the profile-level threshold (`crate::profiles`).
    /// The training recipe: `default` (batch normalisation, AdamW with warm-up and cosine, label
    /// smoothing, early stopping) or `original` (the classic experiment, exactly). The flags below
    /// override its parts one by one.
    #[arg(long, value_enum, default_value_t = RecipeName::Default)]
    pub recipe: RecipeName,
    /// Optimizer: `adam` (AdamW) or `sgd` (with `--momentum`; the original's).
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning-rate schedule: `cosine` (warm-up, then cosine to zero) or `step` (the original).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Fraction of the iterations spent warming the learning rate up (`--schedule cosine`).
    #[arg(long, default_value_t = 0.05)]
    pub warmup_fraction: f64,
    /// Training augmentation: `crop-mirror` (random crops and mirrors, both recipes') or `photo`
    /// (scale and aspect crops, rotation, brightness and contrast, mirror).
    #[arg(long, value_enum)]
    pub augment: Option<Augment>,
    /// Label smoothing in [0, 0.5) (default: 0.1, 0 with `--recipe original`).
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Stop after this many epochs without a lower validation loss, counted from the first epoch
    /// at half the peak learning rate or less; 0 runs every epoch (default: 5, 0 with `--recipe
    /// original`).
    #[arg(long)]
    pub patience: Option<usize>,
    /// How the network normalises its activations: `batch` (batch normalisation after every
    /// convolution, folded into the convolutions on export; the default) or `lrn` (the original's
    /// local response normalisation). With --init, the model's own layout is kept.
    #[arg(long, value_enum)]
    pub norm: Option<Norm>,
    /// Photos of a simulated validation profile, for the threshold of the daemon's any-photo rule.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=ProfileSizes::MAX_PHOTOS as i64))]
    pub photos_per_profile: u32,
    /// A folder of recorded profiles (the replay format): simulated profiles get their numbers of
    /// photos instead of `--photos-per-profile`.
    #[arg(long, conflicts_with = "photos_per_profile")]
    pub profiles: Option<PathBuf>,
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
        if let Some(lr) = self.lr {
            if !(lr > 0.0 && lr.is_finite()) {
                bail!("--lr must be a positive number, got {lr}");
            }
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            bail!("--warmup-fraction must be in [0, 1), got {}", self.warmup_fraction);
        }
        if let Some(s) = self.label_smoothing {
            if !(0.0..0.5).contains(&s) {
                bail!("--label-smoothing must be in [0, 0.5), got {s}");
            }
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

    /// How the recommended threshold is chosen: for the daemon's decision on whole profiles (the
    /// default recipe), or photo by photo (`--recipe original`, as the classic experiment did).
    pub fn threshold_policy(&self) -> ThresholdPolicy {
        match (self.recipe, self.target_like_rate) {
            (RecipeName::Original, Some(rate)) => ThresholdPolicy::LikeRate { rate },
            (RecipeName::Original, None) => ThresholdPolicy::MaxLikeF1,
            (RecipeName::Default, Some(rate)) => ThresholdPolicy::ProfileLikeRate { rate },
            (RecipeName::Default, None) => ThresholdPolicy::MaxProfileLikeF1,
        }
    }

    /// The numbers of photos of simulated profiles: `--profiles DIR`'s, else `--photos-per-profile`.
    pub fn profile_sizes(&self) -> anyhow::Result<ProfileSizes> {
        match &self.profiles {
            Some(dir) => ProfileSizes::from_recorded(dir),
            None => Ok(ProfileSizes::fixed(self.photos_per_profile as usize)),
        }
    }

    /// The optimizer: `--optimizer`, else the recipe's.
    pub fn optimizer(&self) -> OptimizerKind {
        self.optimizer.unwrap_or(self.recipe.defaults().optimizer)
    }

    /// The base learning rate: `--lr`, else the one for the optimizer (0.001 for AdamW, 0.01 for SGD).
    pub fn lr(&self) -> f64 {
        self.lr.unwrap_or(match self.optimizer() {
            OptimizerKind::Adam => 0.001,
            OptimizerKind::Sgd => 0.01,
        })
    }

    /// The schedule: `--schedule`, else the recipe's, with its parameters.
    pub fn schedule(&self) -> Schedule {
        match self.schedule.unwrap_or(self.recipe.defaults().schedule) {
            ScheduleKind::Step => Schedule::Step {
                fraction: self.step_fraction,
                gamma: self.gamma,
            },
            ScheduleKind::Cosine => Schedule::Cosine {
                warmup_fraction: self.warmup_fraction,
            },
        }
    }

    /// The augmentation: `--augment`, else the recipe's.
    pub fn augment(&self) -> Augment {
        self.augment.unwrap_or(self.recipe.defaults().augment)
    }

    /// The label smoothing: `--label-smoothing`, else the recipe's.
    pub fn label_smoothing(&self) -> f64 {
        self.label_smoothing.unwrap_or(self.recipe.defaults().label_smoothing)
    }

    /// The early-stopping patience: `--patience`, else the recipe's.
    pub fn patience(&self) -> usize {
        self.patience.unwrap_or(self.recipe.defaults().patience)
    }

    /// The network's normalisation layout: `--norm`, else the recipe's (`--init` models bring
    /// their own: [`crate::init::norm_of`]).
    pub fn norm(&self) -> Norm {
        self.norm.unwrap_or(self.recipe.defaults().norm)
    }

    /// The hyper-parameters of the loop; `train_labels` (the training split's classes) weigh the
    /// loss when `--class-weights` is given.
    pub fn hyper(&self, train_labels: &[usize]) -> Hyper {
        Hyper {
            epochs: self.epochs,
            batch_size: self.batch_size.max(1),
            base_lr: self.lr(),
            optimizer: self.optimizer(),
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: self.schedule(),
            augment: self.augment(),
            label_smoothing: self.label_smoothing(),
            patience: self.patience(),
            best_by: self.recipe.defaults().best_by,
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
            (&["--lr", "0"][..], "--lr"),
            (&["--warmup-fraction", "1"][..], "--warmup-fraction"),
            (&["--label-smoothing", "0.5"][..], "--label-smoothing"),
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
    fn recipes_set_the_parts_and_flags_override_them_one_by_one() {
        let d = parse(&[]).hyper(&[]);
        assert_eq!(d.schedule, Schedule::Cosine { warmup_fraction: 0.05 });
        assert_eq!(
            (d.augment, d.label_smoothing, d.patience, d.base_lr),
            (Augment::CropMirror, 0.1, 5, 0.001)
        );
        assert_eq!(d.optimizer, OptimizerKind::Adam);
        assert_eq!(parse(&[]).norm(), Norm::Batch);
        assert_eq!(parse(&["--recipe", "original"]).norm(), Norm::Lrn);
        assert_eq!(parse(&["--norm", "lrn"]).norm(), Norm::Lrn);
        let sgd = parse(&["--optimizer", "sgd"]).hyper(&[]);
        assert_eq!((sgd.optimizer, sgd.base_lr), (OptimizerKind::Sgd, 0.01));
        assert_eq!(parse(&[]).threshold_policy(), ThresholdPolicy::MaxProfileLikeF1);
        let o = parse(&["--recipe", "original"]).hyper(&[]);
        assert_eq!(
            o.schedule,
            Schedule::Step {
                fraction: 0.33,
                gamma: 0.1
            }
        );
        assert_eq!(
            (o.augment, o.label_smoothing, o.patience, o.base_lr),
            (Augment::CropMirror, 0.0, 0, 0.01)
        );
        assert_eq!(o.optimizer, OptimizerKind::Sgd);
        assert_eq!(
            parse(&["--recipe", "original"]).threshold_policy(),
            ThresholdPolicy::MaxLikeF1
        );
        let mixed = parse(&[
            "--recipe",
            "original",
            "--augment",
            "photo",
            "--patience",
            "3",
            "--lr",
            "0.02",
        ])
        .hyper(&[]);
        assert_eq!(
            (mixed.augment, mixed.patience, mixed.base_lr),
            (Augment::Photo, 3, 0.02)
        );
        assert!(matches!(mixed.schedule, Schedule::Step { .. }));
        assert_eq!(
            parse(&["--target-like-rate", "0.2"]).threshold_policy(),
            ThresholdPolicy::ProfileLikeRate { rate: 0.2 }
        );
        assert_eq!(
            parse(&["--photos-per-profile", "3"]).profile_sizes().unwrap(),
            ProfileSizes::fixed(3)
        );
    }

    #[test]
    fn the_recipe_follows_the_input_size_unless_resize_is_given() {
        let r = parse(&["--input-size", "224", "--grayscale"]).recipe();
        assert_eq!((r.crop, r.square, r.channels), (224, 256, Channels::Gray));
        let r = parse(&["--input-size", "64", "--resize", "80"]).recipe();
        assert_eq!((r.crop, r.square, r.channels), (64, 80, Channels::Rgb));
    }
}
