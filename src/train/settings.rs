//! The settings that identify a run: what a checkpoint records and what `--resume` must find
//! unchanged, because each of them changes the schedule, the data order, the data or the network.
//!
//! [`RunSettings`] is written into the checkpoint's `state.json` and into `report.json` (as
//! `settings`). On `--resume` the saved settings are compared field by field with the new ones
//! ([`RunSettings::changes`]); any difference stops the run with the setting named, the value the
//! checkpoint was made with and the one given now.

use std::fmt;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use swipebot_core::preprocess::Recipe;

use crate::args::Args;
use crate::googlenet::Norm;
use crate::recipe::{Augment, OptimizerKind, RecipeName, Schedule};

/// Everything a checkpoint must share with a `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Fingerprint of the dataset and its preprocessing ([`crate::cache::fingerprint`]): the files
    /// under `--data` (paths, sizes, modification times) and the cached squares' settings.
    pub dataset: String,
    /// `--epochs`: the length of the run, which sets the learning-rate schedule.
    pub epochs: usize,
    /// `--input-size`: the network's input side.
    pub input_size: u32,
    /// The side images are resized to before cropping (`--resize`, or input size x 8/7).
    pub square: u32,
    /// Input channels: 1 with `--grayscale`, 3 without.
    pub channels: usize,
    /// `--batch-size`.
    pub batch_size: usize,
    /// `--lr`.
    pub lr: f64,
    /// `--step-fraction`.
    pub step_fraction: f64,
    /// `--gamma`.
    pub gamma: f64,
    /// `--momentum`.
    pub momentum: f64,
    /// `--weight-decay`.
    pub weight_decay: f64,
    /// `--val-fraction`: changes the split.
    pub val_fraction: f64,
    /// `--seed`: split, data order, crops, mirrors, initialisation.
    pub seed: u64,
    /// `--class-weights`.
    pub class_weights: bool,
    /// `--recipe`. A checkpoint written before recipes existed was the original's (as are the
    /// defaults of the fields below for it), so `--resume --recipe original` continues it.
    #[serde(default = "original::recipe")]
    pub recipe: RecipeName,
    /// The optimizer (`--optimizer`, else the recipe's).
    #[serde(default = "original::optimizer")]
    pub optimizer: OptimizerKind,
    /// The schedule's kind (`--schedule`, else the recipe's): `step` or `cosine`.
    #[serde(default = "original::schedule")]
    pub schedule: String,
    /// `--warmup-fraction` (used by the cosine schedule).
    #[serde(default = "original::warmup_fraction")]
    pub warmup_fraction: f64,
    /// The augmentation (`--augment`, else the recipe's).
    #[serde(default = "original::augment")]
    pub augment: Augment,
    /// The label smoothing (`--label-smoothing`, else the recipe's).
    #[serde(default)]
    pub label_smoothing: f64,
    /// The early-stopping patience (`--patience`, else the recipe's).
    #[serde(default)]
    pub patience: usize,
    /// The network's normalisation layout (`--norm`, else the recipe's; with `--init`, the model's).
    #[serde(default = "original::norm")]
    pub norm: Norm,
}

/// What a checkpoint written before `--recipe` existed was trained with: the original recipe.
mod original {
    use super::{Augment, OptimizerKind, RecipeName};

    /// The recipe.
    pub fn recipe() -> RecipeName {
        RecipeName::Original
    }

    /// Its optimizer.
    pub fn optimizer() -> OptimizerKind {
        OptimizerKind::Sgd
    }

    /// Its schedule.
    pub fn schedule() -> String {
        "step".to_string()
    }

    /// `--warmup-fraction`'s default (unused by the step schedule, but compared on `--resume`).
    pub fn warmup_fraction() -> f64 {
        0.05
    }

    /// Its augmentation.
    pub fn augment() -> Augment {
        Augment::CropMirror
    }

    /// Its layout: every checkpoint written before `--norm` existed had LRN.
    pub fn norm() -> super::Norm {
        super::Norm::Lrn
    }
}

/// One setting that differs between a checkpoint and a `--resume`.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    /// The setting's name (a field of [`RunSettings`], as in `state.json`).
    pub setting: &'static str,
    /// Its value in the checkpoint.
    pub old: String,
    /// Its value now.
    pub new: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (checkpoint: {}, now: {})", self.setting, self.old, self.new)
    }
}

/// Compares the listed fields of two [`RunSettings`]. The exhaustive destructuring makes a field
/// added to the struct but left out of the list a compile error, so no setting escapes the check.
macro_rules! changes {
    ($old:expr, $new:expr, [$($field:ident),* $(,)?]) => {{
        let RunSettings { $($field: _),* } = $old;
        let mut changes = Vec::new();
        $(
            if $old.$field != $new.$field {
                changes.push(Change {
                    setting: stringify!($field),
                    old: $old.$field.to_string(),
                    new: $new.$field.to_string(),
                });
            }
        )*
        changes
    }};
}

impl RunSettings {
    /// The settings of a run started with `args`, preprocessing `recipe` and dataset `fingerprint`.
    pub fn new(args: &Args, recipe: &Recipe, fingerprint: &str) -> Self {
        RunSettings {
            dataset: fingerprint.to_string(),
            epochs: args.epochs,
            input_size: args.input_size,
            square: recipe.square,
            channels: recipe.channels.count(),
            batch_size: args.batch_size,
            lr: args.lr(),
            step_fraction: args.step_fraction,
            gamma: args.gamma,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            val_fraction: args.val_fraction,
            seed: args.seed,
            class_weights: args.class_weights,
            recipe: args.recipe,
            optimizer: args.optimizer(),
            schedule: match args.schedule() {
                Schedule::Step { .. } => "step".to_string(),
                Schedule::Cosine { .. } => "cosine".to_string(),
            },
            warmup_fraction: args.warmup_fraction,
            augment: args.augment(),
            label_smoothing: args.label_smoothing(),
            patience: args.patience(),
            norm: args.norm(),
        }
    }

    /// The settings that differ from `self` (the checkpoint's) in `now`, in declaration order.
    pub fn changes(&self, now: &RunSettings) -> Vec<Change> {
        changes!(
            self,
            now,
            [
                dataset,
                epochs,
                input_size,
                square,
                channels,
                batch_size,
                lr,
                step_fraction,
                gamma,
                momentum,
                weight_decay,
                val_fraction,
                seed,
                class_weights,
                recipe,
                optimizer,
                schedule,
                warmup_fraction,
                augment,
                label_smoothing,
                patience,
                norm,
            ]
        )
    }

    /// Refuses a `--resume` with settings `now` unless they are the checkpoint's (`self`), naming
    /// each setting that differs with both values.
    pub fn check_resume(&self, now: &RunSettings) -> anyhow::Result<()> {
        let changes = self.changes(now);
        if changes.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = changes.iter().map(Change::to_string).collect();
        bail!(
            "--resume: the run was started with other settings or data; changed: {}. Resume with the \
             checkpoint's settings, or run without --resume to start afresh",
            listed.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use swipebot_core::preprocess::Channels;

    fn settings(extra: &[&str]) -> RunSettings {
        let mut argv = vec!["train", "--data", "d", "--out", "m.onnx"];
        argv.extend(extra);
        let args = Args::parse_from(argv);
        let recipe = Recipe::for_input(args.input_size, Channels::Gray);
        RunSettings::new(&args, &recipe, "00ff")
    }

    #[test]
    fn the_same_settings_resume() {
        let a = settings(&["--epochs", "4"]);
        assert!(a.changes(&a.clone()).is_empty());
        a.check_resume(&settings(&["--epochs", "4"])).unwrap();
    }

    #[test]
    fn a_changed_setting_refuses_to_resume_and_names_it_with_both_values() {
        let saved = settings(&["--epochs", "4", "--lr", "0.01"]);
        let now = settings(&["--epochs", "5", "--lr", "0.01"]);
        assert_eq!(
            saved.changes(&now),
            [Change {
                setting: "epochs",
                old: "4".into(),
                new: "5".into(),
            }]
        );
        let err = saved.check_resume(&now).unwrap_err().to_string();
        assert!(err.contains("epochs (checkpoint: 4, now: 5)"), "{err}");
        assert!(!err.contains("lr"), "only the changed setting is named: {err}");

        // Several at once, the dataset fingerprint and a flag included.
        let mut other = settings(&["--epochs", "4", "--lr", "0.01", "--seed", "7", "--class-weights"]);
        other.dataset = "11aa".into();
        let names: Vec<&str> = saved.changes(&other).iter().map(|c| c.setting).collect();
        assert_eq!(names, ["dataset", "seed", "class_weights"]);
        let err = saved.check_resume(&other).unwrap_err().to_string();
        assert!(err.contains("dataset (checkpoint: 00ff, now: 11aa)"), "{err}");
        assert!(err.contains("seed (checkpoint: 42, now: 7)"), "{err}");
        assert!(err.contains("class_weights (checkpoint: false, now: true)"), "{err}");
    }

    /// `state.json` and `report.json` keep the keys they had when the settings were loose JSON, so
    /// a checkpoint written before still resumes; one written before `--recipe` existed reads as the
    /// original recipe's.
    #[test]
    fn settings_keep_their_json_keys() {
        let value = serde_json::to_value(settings(&[])).unwrap();
        let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "augment",
                "batch_size",
                "channels",
                "class_weights",
                "dataset",
                "epochs",
                "gamma",
                "input_size",
                "label_smoothing",
                "lr",
                "momentum",
                "norm",
                "optimizer",
                "patience",
                "recipe",
                "schedule",
                "seed",
                "square",
                "step_fraction",
                "val_fraction",
                "warmup_fraction",
                "weight_decay"
            ]
        );
        let back: RunSettings = serde_json::from_value(value).unwrap();
        assert_eq!(back, settings(&[]));
        let mut old = serde_json::to_value(settings(&["--recipe", "original"])).unwrap();
        for key in [
            "recipe",
            "optimizer",
            "schedule",
            "warmup_fraction",
            "augment",
            "label_smoothing",
            "patience",
            "norm",
        ] {
            old.as_object_mut().unwrap().remove(key);
        }
        let old: RunSettings = serde_json::from_value(old).unwrap();
        assert!(old.changes(&settings(&["--recipe", "original"])).is_empty(), "{old:?}");
    }
}
