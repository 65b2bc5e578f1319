//! What `train` shows on stderr: the dataset it found, a progress bar per epoch (on a terminal), one
//! line per finished epoch, and the summary at the end. The wording is read by people and by the
//! tests; the figures also go to the metrics and the report next to the model.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use swipebot_core::model_info::CLASSES;

use crate::cache::CacheStatus;
use crate::data::Dataset;
use crate::report::Report;
use crate::training::{EpochReport, Observer};

/// The progress bar and per-epoch lines; plain lines only when stderr is not a terminal.
pub struct Console {
    /// The bar of the epoch in progress, when there is one.
    bar: Option<ProgressBar>,
    /// Whether stderr is a terminal (a bar would be noise in a log file).
    fancy: bool,
}

impl Console {
    /// A console on stderr.
    pub fn new() -> Self {
        Console {
            bar: None,
            fancy: std::io::stderr().is_terminal(),
        }
    }
}

impl Drop for Console {
    /// An epoch cut short (Ctrl-C, an error) leaves its bar where it stopped, above what follows.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
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

/// How the dataset was obtained from the `files` scanned (decoded in `seconds` on `threads`
/// threads, or read from the cache), what was skipped and why, and the images per class.
pub fn dataset(dataset: &Dataset, files: usize, status: CacheStatus, cache_file: &Path, seconds: f64, threads: usize) {
    match status {
        CacheStatus::Built => eprintln!(
            "decoded {files} files in {seconds:.1}s ({:.0} images/s on {threads} threads); cache {}",
            files as f64 / seconds.max(1e-9),
            cache_file.display()
        ),
        CacheStatus::Reused => eprintln!("reused the dataset cache {}", cache_file.display()),
    }
    if !dataset.skipped.is_empty() {
        eprintln!("skipped {} files:", dataset.skipped.len());
        for s in &dataset.skipped {
            eprintln!("  {}: {}", s.path.display(), s.reason);
        }
    }
    eprintln!(
        "images per class: {}",
        CLASSES
            .iter()
            .zip(dataset.counts())
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The end of a run with epochs: best epoch, calibration, threshold and its confusion counts, and
/// the files written next to the model (`report_path` is the report, `<model>.report.json`).
pub fn summary(report: &Report, report_path: &Path) {
    match &report.best_epoch {
        Some(b) => eprintln!(
            "best epoch {} of {}: val accuracy {:.3}, val loss {:.4}",
            b.epoch, report.epochs_run, b.val.accuracy, b.val.loss
        ),
        None => eprintln!("no epoch finished: exported the current weights"),
    }
    let (cal, th) = (&report.calibration, &report.threshold);
    eprintln!(
        "calibration: temperature {:.3}, ECE {:.4} -> {:.4}; threshold {:.3} ({}), ROC AUC {}",
        cal.temperature,
        cal.ece_before,
        cal.ece_after,
        th.value,
        th.chosen_by,
        th.roc_auc.map_or("n/a".to_string(), |a| format!("{a:.4}"))
    );
    let c = &th.confusion;
    eprintln!(
        "at that threshold: {} true like, {} false like, {} true nope, {} false nope",
        c.true_like, c.false_like, c.true_nope, c.false_nope
    );
    eprintln!(
        "wrote {}, {}, {}",
        report.files.metrics.display(),
        report.files.curves.display(),
        report_path.display()
    );
}
