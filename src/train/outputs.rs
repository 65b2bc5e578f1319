//! Where a run's files go: next to the model, named after it, so that several models trained into
//! one folder keep their own reports and checkpoints.
//!
//! The model's file name less its extension is the stem of every other file: `--out
//! models/m.onnx` writes `models/m.metrics.csv`, `models/m.curves.png`, `models/m.report.json` and
//! the checkpoint folder `models/m.checkpoint/`. Two models whose names differ only in their
//! extension would share them; give models different names.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The files a run writes, all derived from the model's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// The ONNX model (`--out`).
    pub model: PathBuf,
    /// One row per epoch (`<stem>.metrics.csv`).
    pub metrics: PathBuf,
    /// Loss, accuracy and learning rate drawn (`<stem>.curves.png`).
    pub curves: PathBuf,
    /// What the run did and found, with the model's SHA-256 (`<stem>.report.json`).
    pub report: PathBuf,
    /// The checkpoint folder `--resume` continues from (`<stem>.checkpoint/`).
    pub checkpoint: PathBuf,
}

impl Outputs {
    /// The files of the run that writes the model at `model`.
    pub fn for_model(model: &Path) -> Self {
        Outputs {
            model: model.to_path_buf(),
            metrics: beside(model, "metrics.csv"),
            curves: beside(model, "curves.png"),
            report: beside(model, "report.json"),
            checkpoint: beside(model, "checkpoint"),
        }
    }

    /// Refuses a model path that one of the other files would overwrite (a model named
    /// `x.checkpoint` would be its own checkpoint folder).
    pub fn check(&self) -> anyhow::Result<()> {
        for other in [&self.metrics, &self.curves, &self.report, &self.checkpoint] {
            if *other == self.model {
                bail!(
                    "--out {}: the run's other files would overwrite the model; give it another name, such as model.onnx",
                    self.model.display()
                );
            }
        }
        Ok(())
    }
}

/// The file `<stem>.<what>` next to `model`, where `<stem>` is the model's file name less its
/// extension (`m.onnx` and `"report.json"` give `m.report.json`).
pub fn beside(model: &Path, what: &str) -> PathBuf {
    let mut name = model.file_stem().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(what);
    model.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file is named after the model, in the model's folder; models with other names in one
    /// folder get other files, and a model without an extension works too.
    #[test]
    fn the_files_are_named_after_the_model() {
        let a = Outputs::for_model(Path::new("models/a.onnx"));
        assert_eq!(a.model, Path::new("models/a.onnx"));
        assert_eq!(a.metrics, Path::new("models/a.metrics.csv"));
        assert_eq!(a.curves, Path::new("models/a.curves.png"));
        assert_eq!(a.report, Path::new("models/a.report.json"));
        assert_eq!(a.checkpoint, Path::new("models/a.checkpoint"));
        assert!(a.check().is_ok());

        let b = Outputs::for_model(Path::new("models/a.v2.onnx"));
        assert_eq!(b.report, Path::new("models/a.v2.report.json"));
        for (x, y) in [
            (&a.metrics, &b.metrics),
            (&a.curves, &b.curves),
            (&a.report, &b.report),
            (&a.checkpoint, &b.checkpoint),
        ] {
            assert_ne!(x, y);
        }

        let bare = Outputs::for_model(Path::new("m"));
        assert_eq!(bare.metrics, Path::new("m.metrics.csv"));
        assert_eq!(bare.checkpoint, Path::new("m.checkpoint"));
    }

    /// A model path one of the other files would overwrite is refused, naming `--out`.
    #[test]
    fn a_model_its_own_files_would_overwrite_is_refused() {
        let err = Outputs::for_model(Path::new("d/x.checkpoint"))
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--out d/x.checkpoint:"), "{err}");
        assert!(err.contains("another name"), "{err}");
    }
}
