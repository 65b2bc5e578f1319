//! Checkpoints: everything `--resume` needs to continue a run exactly where it stopped.
//!
//! A checkpoint is a folder next to the model, named after it like the run's other files
//! ([`crate::outputs`]: `model.onnx` gets `model.checkpoint/`), holding
//! `weights.ot` (the var store: weights and input normalisation), `momentum.ot` (the optimizer's
//! momentum buffers), `best.ot` (the weights of the best validation epoch so far) and `state.json`
//! ([`State`]: where the run is, its history, its best epoch and the settings it was started with).
//! Data order, crops, mirrors and dropout are seeded from the seed, the epoch and the step, and the
//! learning rate from the global iteration, so a resumed run follows the same schedule. `state.json`
//! is written last, so a crash in between leaves the previous consistent state.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tch::nn::VarStore;
use tch::Tensor;

use crate::optimizer::Optimizer;
use crate::recipe::BestBy;
use crate::settings::RunSettings;
use crate::training::EpochReport;

/// Running sums of an epoch in progress (to continue its averages after an interruption).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Partial {
    /// Sum of the per-image training loss.
    pub loss_sum: f64,
    /// Training images classified correctly.
    pub correct: i64,
    /// Training images seen.
    pub seen: usize,
    /// Seconds spent on the training steps.
    pub seconds: f64,
}

/// The best validation epoch so far.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Best {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Its validation accuracy.
    pub val_accuracy: f64,
    /// Its validation loss.
    pub val_loss: f64,
}

impl Best {
    /// True when `report` beats this epoch by `by`: a lower validation loss (ties: a higher
    /// accuracy), or a higher validation accuracy (ties: a lower loss).
    pub fn beaten_by(&self, report: &EpochReport, by: BestBy) -> bool {
        let (loss, accuracy) = (report.val.loss, report.val.accuracy);
        match by {
            BestBy::Loss => loss < self.val_loss || (loss == self.val_loss && accuracy > self.val_accuracy),
            BestBy::Accuracy => accuracy > self.val_accuracy || (accuracy == self.val_accuracy && loss < self.val_loss),
        }
    }
}

/// Where a run stands.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// 0-based index of the epoch to run next (or in progress).
    pub epoch: usize,
    /// Next step within that epoch (0 at an epoch boundary).
    pub step: usize,
    /// Sums of the epoch in progress.
    pub partial: Partial,
    /// Reports of the finished epochs.
    pub history: Vec<EpochReport>,
    /// The best validation epoch so far.
    pub best: Option<Best>,
    /// The settings the run was started with; `--resume` refuses other ones.
    pub settings: RunSettings,
}

impl State {
    /// The state of a run that has not started yet, with `settings`.
    pub fn new(settings: RunSettings) -> Self {
        State {
            epoch: 0,
            step: 0,
            partial: Partial::default(),
            history: Vec::new(),
            best: None,
            settings,
        }
    }
}

/// A checkpoint folder.
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
}

fn tmp(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn save_tensors(path: &Path, named: &[(String, Tensor)]) -> anyhow::Result<()> {
    let t = tmp(path);
    Tensor::save_multi(named, &t).with_context(|| format!("writing {}", t.display()))?;
    std::fs::rename(&t, path)?;
    Ok(())
}

impl Checkpoint {
    /// The checkpoint folder of the model at `model_path` (`x.onnx` gets `x.checkpoint/`).
    pub fn for_model(model_path: &Path) -> Self {
        Checkpoint {
            dir: crate::outputs::Outputs::for_model(model_path).checkpoint,
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when a checkpoint has been written there.
    pub fn exists(&self) -> bool {
        self.dir.join("state.json").exists()
    }

    /// Writes the current weights, the momentum buffers and `state` (in that order).
    pub fn save(&self, vs: &VarStore, sgd: &Optimizer, state: &State) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let weights = self.dir.join("weights.ot");
        vs.save(tmp(&weights))
            .with_context(|| format!("writing {}", weights.display()))?;
        std::fs::rename(tmp(&weights), &weights)?;
        save_tensors(&self.dir.join("momentum.ot"), &sgd.state())?;
        let json = serde_json::to_vec_pretty(state)?;
        swipebot_core::fsutil::write_atomic(&self.dir.join("state.json"), &json)?;
        Ok(())
    }

    /// Writes the weights of a new best epoch.
    pub fn save_best(&self, best: &[(String, Tensor)]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        save_tensors(&self.dir.join("best.ot"), best)
    }

    /// Reads the state and checks it was made with `settings` (the error names each setting that
    /// differs, with its value in the checkpoint and now).
    pub fn load_state(&self, settings: &RunSettings) -> anyhow::Result<State> {
        let path = self.dir.join("state.json");
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "--resume: no checkpoint at {} (run without --resume first)",
                path.display()
            )
        })?;
        let state: State = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "--resume: reading {} (a checkpoint of another version of train?); run without --resume to start afresh",
                path.display()
            )
        })?;
        state.settings.check_resume(settings)?;
        Ok(state)
    }

    /// Loads the saved weights into `vs` and the momentum buffers into `sgd`.
    pub fn load_weights(&self, vs: &mut VarStore, sgd: &mut Optimizer) -> anyhow::Result<()> {
        let weights = self.dir.join("weights.ot");
        vs.load(&weights)
            .with_context(|| format!("reading {}", weights.display()))?;
        let momentum = self.dir.join("momentum.ot");
        sgd.load_state(Tensor::load_multi(&momentum).with_context(|| format!("reading {}", momentum.display()))?)
    }

    /// The weights of the best epoch, if one was saved.
    pub fn load_best(&self) -> anyhow::Result<Option<Vec<(String, Tensor)>>> {
        let path = self.dir.join("best.ot");
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(
            Tensor::load_multi(&path).with_context(|| format!("reading {}", path.display()))?,
        ))
    }
}

/// Copies named tensors (a snapshot or `best.ot`) into the variables of `vs`.
pub fn restore(vs: &VarStore, snapshot: &[(String, Tensor)]) -> anyhow::Result<()> {
    let mut vars = vs.variables();
    tch::no_grad(|| {
        for (name, saved) in snapshot {
            let v = vars
                .get_mut(name)
                .ok_or_else(|| anyhow::anyhow!("saved weights have unknown `{name}`"))?;
            v.copy_(&saved.to_device(v.device()));
        }
        Ok(())
    })
}

/// A copy of every variable of `vs` (weights and normalisation), by name.
pub fn snapshot(vs: &VarStore) -> Vec<(String, Tensor)> {
    tch::no_grad(|| {
        let mut all: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.copy())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tch::nn;

    /// The settings of `train --data d --out m.onnx` plus `extra`, on dataset fingerprint `00ff`.
    fn settings(extra: &[&str]) -> RunSettings {
        let mut argv = vec!["train", "--data", "d", "--out", "m.onnx"];
        argv.extend(extra);
        let args = crate::Args::parse_from(argv);
        RunSettings::new(&args, &args.recipe(), "00ff")
    }

    /// The default recipe keeps the epoch of lowest validation loss, the original the one of highest
    /// accuracy; each breaks a tie with the other figure.
    #[test]
    fn the_best_epoch_is_picked_by_the_recipe_s_figure() {
        let best = Best {
            epoch: 7,
            val_accuracy: 0.836,
            val_loss: 0.41,
        };
        let report = |accuracy: f64, loss: f64| EpochReport {
            epoch: 15,
            train: crate::training::Metrics {
                loss: 0.4,
                accuracy: 0.87,
            },
            val: crate::training::Metrics { loss, accuracy },
            lr: 0.0,
            images_per_second: 1.0,
            seconds: 1.0,
        };
        let later = report(0.831, 0.37);
        assert!(best.beaten_by(&later, BestBy::Loss));
        assert!(!best.beaten_by(&later, BestBy::Accuracy));
        assert!(best.beaten_by(&report(0.84, 0.41), BestBy::Loss));
        assert!(!best.beaten_by(&report(0.83, 0.41), BestBy::Loss));
        assert!(best.beaten_by(&report(0.836, 0.40), BestBy::Accuracy));
    }

    /// `--resume` continues a checkpoint made with the same settings and refuses one made with
    /// others, naming the setting with the checkpoint's value and the new one.
    #[test]
    fn resume_refuses_a_changed_setting_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = Checkpoint::for_model(&dir.path().join("model.onnx"));
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _ = nn::linear(vs.root() / "l", 2, 2, Default::default());
        let sgd = Optimizer::new(crate::recipe::OptimizerKind::Sgd, &vs, 0.9, 0.0);
        let mut state = State::new(settings(&["--epochs", "4", "--batch-size", "8"]));
        state.epoch = 2;
        ckpt.save(&vs, &sgd, &state).unwrap();
        assert!(ckpt.exists());

        let resumed = ckpt
            .load_state(&settings(&["--epochs", "4", "--batch-size", "8"]))
            .unwrap();
        assert_eq!((resumed.epoch, resumed.settings), (2, state.settings.clone()));

        let err = ckpt
            .load_state(&settings(&["--epochs", "4", "--batch-size", "16"]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--resume:"), "{err}");
        assert!(err.contains("batch_size (checkpoint: 8, now: 16)"), "{err}");
        assert!(!err.contains("epochs"), "only the changed setting is named: {err}");
        assert!(err.contains("without --resume"), "the error says what to do: {err}");
    }
}
