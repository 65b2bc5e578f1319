//! What `train` shows on stderr: the dataset it found, a progress bar per epoch (on a terminal), one
//! line per finished epoch, and the summary at the end. The wording is read by people and by the
//! tests; the figures also go to the metrics and the report next to the model.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

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
    /// The epochs of the run at most (`--epochs`), for the ETA.
    epochs: usize,
    /// When the epoch in progress started (training and validation).
    epoch_started: Option<Instant>,
    /// Wall time of the epochs this invocation finished, and how many.
    spent: (Duration, usize),
}

impl Console {
    /// A console on stderr.
    pub fn new() -> Self {
        Console {
            bar: None,
            fancy: std::io::stderr().is_terminal(),
            epochs: 0,
            epoch_started: None,
            spent: (Duration::ZERO, 0),
        }
    }
}

/// `1h02m`, `3m05s` or `12s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The seconds a finished epoch took and the time left for the rest of the run at that pace:
/// ` | 31.2 s/epoch, ETA 5m12s` (`ETA 0s` after the last epoch; the run may stop earlier).
pub fn pace(epoch: usize, epochs: usize, mean_seconds: f64, this_seconds: f64) -> String {
    let left = epochs.saturating_sub(epoch) as f64 * mean_seconds;
    format!(" | {this_seconds:.1} s/epoch, ETA {}", duration(left))
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
        self.epochs = epochs;
        self.epoch_started = Some(Instant::now());
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
        let this = self.epoch_started.take().map_or(Duration::ZERO, |t| t.elapsed());
        self.spent = (self.spent.0 + this, self.spent.1 + 1);
        let mean = self.spent.0.as_secs_f64() / self.spent.1 as f64;
        eprintln!(
            "epoch {:>3}: train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} | lr {:.2e} | {:.1} img/s{}{}",
            r.epoch,
            r.train.loss,
            r.train.accuracy,
            r.val.loss,
            r.val.accuracy,
            r.lr,
            r.images_per_second,
            pace(r.epoch, self.epochs, mean, this.as_secs_f64()),
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
    if cal.applied {
        eprintln!(
            "calibration: temperature {:.3}, ECE {:.4} -> {:.4}",
            cal.temperature, cal.ece_before, cal.ece_after
        );
    } else {
        eprintln!(
            "calibration: not applied (temperature {:.3} would raise the ECE {:.4} -> {:.4}); temperature 1",
            cal.fitted_temperature, cal.ece_before, cal.ece_fitted
        );
    }
    eprintln!(
        "threshold {:.3} ({}), ROC AUC {}",
        th.value,
        th.chosen_by,
        th.roc_auc.map_or("n/a".to_string(), |a| format!("{a:.4}"))
    );
    let c = &th.confusion;
    eprintln!(
        "at that threshold: {} true like, {} false like, {} true nope, {} false nope",
        c.true_like, c.false_like, c.true_nope, c.false_nope
    );
    let (photo, profile) = (&th.photo, &th.profile);
    eprintln!(
        "photos: accuracy {:.3}, precision {:.3}, recall {:.3}, F1 {:.3}; profiles of {:.1} photos (any photo \
         likes): accuracy {:.3}, precision {:.3}, recall {:.3}, F1 {:.3}",
        photo.accuracy,
        photo.precision,
        photo.recall,
        photo.f1,
        profile.photos_per_profile,
        profile.rates.accuracy,
        profile.rates.precision,
        profile.rates.recall,
        profile.rates.f1
    );
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "wrote {}, {}, {}",
        report.files.metrics.display(),
        report.files.curves.display(),
        report_path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_gives_the_epoch_seconds_and_the_time_left() {
        assert_eq!(pace(3, 15, 31.2, 30.0), " | 30.0 s/epoch, ETA 6m14s");
        assert_eq!(pace(15, 15, 31.2, 32.0), " | 32.0 s/epoch, ETA 0s");
        assert_eq!(duration(7300.0), "2h01m");
        assert_eq!(duration(59.4), "59s");
    }
}
