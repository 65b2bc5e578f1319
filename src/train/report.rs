//! What a run leaves next to the model (named after it, see [`crate::outputs`]): the metrics
//! (`m.metrics.csv`, one row per epoch), the curves (`m.curves.png`, the combined graph DIGITS draws:
//! training and validation loss, validation and training accuracy, and below it the learning rate)
//! and the report (`m.report.json`, [`Report`]: the model's SHA-256, dataset, settings, calibration
//! and the confusion matrix).
//!
//! Text in `curves.png` needs a TrueType font: plotters renders it with `ab_glyph` from a font file
//! found on the machine (DejaVu Sans or Liberation Sans, which Debian and Ubuntu ship); without one the
//! curves are drawn without captions and labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;

use crate::cache::CacheStatus;
use crate::calibrate::{Calibration, ThresholdReport};
use crate::data::Skipped;
use crate::settings::RunSettings;
use crate::training::EpochReport;
use crate::Outcome;

/// `<model>.report.json`: what a run did and found. Its keys are read by people and by scripts;
/// keep them.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The model written.
    pub model: PathBuf,
    /// SHA-256 of the model file's bytes, in hex: the `model_sha256` the daemon writes into every
    /// journal line, so a decision can be traced back to this run.
    pub model_sha256: String,
    /// How the run ended.
    pub outcome: Outcome,
    /// The data it trained on.
    pub dataset: DatasetReport,
    /// The settings that identify the run (those `--resume` checks).
    pub settings: RunSettings,
    /// Epochs finished, over every invocation of the run.
    pub epochs_run: usize,
    /// The best validation epoch, whose weights were exported; `None` when no epoch finished.
    pub best_epoch: Option<EpochReport>,
    /// Training images a second over the whole run ([`mean_images_per_second`]).
    pub training_images_per_second: f64,
    /// The arithmetic of the training steps (`--precision-train` resolved: `fp32`, `bf16`, `fp16`).
    pub training_precision: String,
    /// Temperature scaling on the validation split.
    pub calibration: Calibration,
    /// The threshold in the model and how it does on the validation split.
    pub threshold: ThresholdReport,
    /// What makes this model not worth deploying as it is, and what to try ([`crate::verdict`]);
    /// empty when nothing was found.
    pub warnings: Vec<String>,
    /// The other files of the run.
    pub files: Files,
    /// Calibration and gate of the int8 model (`--precision int8`); absent for fp32.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<crate::precision::QuantizationReport>,
}

/// The `dataset` section of [`Report`].
#[derive(Debug, Serialize)]
pub struct DatasetReport {
    /// The `--data` folder.
    pub folder: PathBuf,
    /// Usable images per class name.
    pub counts: BTreeMap<String, usize>,
    /// Images in the training split.
    pub train: usize,
    /// Images in the validation split.
    pub validation: usize,
    /// Files that could not be used, and why.
    pub skipped: Vec<Skipped>,
    /// The dataset cache file.
    pub cache: PathBuf,
    /// Whether the cache was reused or built.
    pub cache_status: CacheStatus,
}

/// The `files` section of [`Report`]: what else the run left next to the model.
#[derive(Debug, Serialize)]
pub struct Files {
    /// The metrics, `<model>.metrics.csv`.
    pub metrics: PathBuf,
    /// The curves, `<model>.curves.png`.
    pub curves: PathBuf,
    /// The checkpoint folder, `<model>.checkpoint/` (`--resume`).
    pub checkpoint: PathBuf,
}

/// Training images a second over `history`, each epoch weighed by its duration (0 when empty).
pub fn mean_images_per_second(history: &[EpochReport]) -> f64 {
    let (images, seconds) = history.iter().fold((0.0, 0.0), |(n, s), r| {
        (n + r.images_per_second * r.seconds, s + r.seconds)
    });
    if seconds > 0.0 {
        images / seconds
    } else {
        0.0
    }
}

/// The header of `metrics.csv`.
pub const CSV_HEADER: &str = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,images_per_second,seconds";

/// Writes the metrics, one row per epoch (atomically).
pub fn write_metrics_csv(path: &Path, history: &[EpochReport]) -> anyhow::Result<()> {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for r in history {
        text.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:e},{:.2},{:.3}\n",
            r.epoch, r.train.loss, r.train.accuracy, r.val.loss, r.val.accuracy, r.lr, r.images_per_second, r.seconds
        ));
    }
    swipebot_core::fsutil::write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Writes the report (atomically), pretty-printed.
pub fn write_json(path: &Path, report: &Report) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(report)?;
    swipebot_core::fsutil::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Font files tried for the labels of the curves.
const FONT_FILES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a system font with plotters once; false when none was found.
fn font_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        for file in FONT_FILES {
            if let Ok(bytes) = std::fs::read(file) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Width of the curves in pixels.
const WIDTH: u32 = 960;
/// Height of the curves in pixels.
const HEIGHT: u32 = 640;

/// Draws the curves as a PNG: loss (left axis) and accuracy (right axis) per epoch on top, the learning
/// rate (log scale) below. Returns whether labels could be drawn (a font was found).
pub fn write_curves(path: &Path, history: &[EpochReport]) -> anyhow::Result<bool> {
    let labels = font_available();
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    draw(&mut buffer, history, labels).map_err(|e| anyhow::anyhow!("drawing curves: {e}"))?;
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &buffer,
        WIDTH,
        HEIGHT,
        image::ExtendedColorType::Rgb8,
    )
    .with_context(|| format!("encoding {}", path.display()))?;
    swipebot_core::fsutil::write_atomic(path, &png).with_context(|| format!("writing {}", path.display()))?;
    Ok(labels)
}

/// What plotters' drawing calls return.
type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// One curve of the top panel: name, colour, on the accuracy axis, and the value it plots.
type Curve = (&'static str, RGBColor, bool, fn(&EpochReport) -> f64);

/// Draws the two panels of the curves into an RGB `buffer`; `labels` when a font is available.
fn draw(buffer: &mut [u8], history: &[EpochReport], labels: bool) -> DrawResult {
    let root = BitMapBackend::with_buffer(buffer, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(HEIGHT * 7 / 10);
    let epochs = history.len().max(1) as f64;
    let max_loss = history
        .iter()
        .flat_map(|r| [r.train.loss, r.val.loss])
        .filter(|v| v.is_finite())
        .fold(0.1f64, f64::max)
        * 1.05;
    let margin = if labels { 50 } else { 10 };

    let mut chart = ChartBuilder::on(&top);
    chart
        .margin(10)
        .x_label_area_size(if labels { 30 } else { 0 })
        .y_label_area_size(margin)
        .right_y_label_area_size(margin);
    if labels {
        chart.caption("loss and accuracy per epoch", ("sans-serif", 20));
    }
    let mut chart = chart
        .build_cartesian_2d(0f64..epochs, 0f64..max_loss)?
        .set_secondary_coord(0f64..epochs, 0f64..1f64);
    if labels {
        chart.configure_mesh().x_desc("epoch").y_desc("loss").draw()?;
        chart.configure_secondary_axes().y_desc("accuracy").draw()?;
    }
    let point = |f: fn(&EpochReport) -> f64| history.iter().map(move |r| (r.epoch as f64, f(r))).collect::<Vec<_>>();
    let series: [Curve; 4] = [
        ("train loss", BLUE, false, |r| r.train.loss),
        ("val loss", GREEN, false, |r| r.val.loss),
        ("train accuracy", MAGENTA, true, |r| r.train.accuracy),
        ("val accuracy", RED, true, |r| r.val.accuracy),
    ];
    for (name, color, secondary, f) in series {
        let line = LineSeries::new(point(f), color.stroke_width(2));
        let drawn = if secondary {
            chart.draw_secondary_series(line)?
        } else {
            chart.draw_series(line)?
        };
        if labels {
            drawn
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    if labels {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }

    let lrs: Vec<f64> = history.iter().map(|r| r.lr.max(1e-12)).collect();
    let lo = lrs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = lrs.iter().copied().fold(0f64, f64::max);
    let (lo, hi) = if lrs.is_empty() {
        (1e-4, 1e-2)
    } else {
        (lo / 2.0, hi * 2.0)
    };
    let mut chart = ChartBuilder::on(&bottom);
    chart
        .margin(10)
        .x_label_area_size(if labels { 30 } else { 0 })
        .y_label_area_size(margin)
        .right_y_label_area_size(margin);
    let mut chart = chart.build_cartesian_2d(0f64..epochs, (lo..hi).log_scale())?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("learning rate")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
    }
    chart.draw_series(LineSeries::new(
        history.iter().map(|r| (r.epoch as f64, r.lr.max(1e-12))),
        BLACK.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::Metrics;

    fn history() -> Vec<EpochReport> {
        (1..=6)
            .map(|e| EpochReport {
                epoch: e,
                train: Metrics {
                    loss: 1.0 / e as f64,
                    accuracy: 0.5 + e as f64 / 14.0,
                },
                val: Metrics {
                    loss: 1.2 / e as f64,
                    accuracy: 0.5 + e as f64 / 13.0,
                },
                lr: 0.01 * 0.1f64.powi((e as i32 - 1) / 2),
                images_per_second: 50.0,
                seconds: 2.0,
            })
            .collect()
    }

    #[test]
    fn csv_has_one_row_per_epoch_and_the_png_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("metrics.csv");
        write_metrics_csv(&csv, &history()).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(text.lines().count(), 7);
        assert!(text.starts_with(CSV_HEADER));
        let png = dir.path().join("curves.png");
        write_curves(&png, &history()).unwrap();
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
        // Something other than the white background was drawn.
        assert!(img.to_rgb8().pixels().any(|p| p.0 != [255, 255, 255]));
        // And an empty history still draws.
        write_curves(&png, &[]).unwrap();
    }

    /// The keys of every object in `value`, sorted, as `path.key` (arrays looked into at their first
    /// element).
    fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.push(path.clone());
                    key_paths(v, &path, out);
                }
            }
            serde_json::Value::Array(items) => {
                if let Some(first) = items.first() {
                    key_paths(first, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }

    /// `report.json` keeps the keys and types it had when it was assembled by hand (the pipeline
    /// test and scripts read them).
    #[test]
    fn the_report_has_the_keys_and_types_of_report_json() {
        use crate::calibrate::{calibrate, ThresholdChoice, ThresholdPolicy};
        use crate::profiles::ProfileSizes;
        use clap::Parser;

        let args = crate::Args::parse_from(["train", "--data", "d", "--out", "m.onnx", "--epochs", "6"]);
        let settings = RunSettings::new(&args, &args.recipe(), "00ff");
        let logits = [[0.0f32, -2.0], [0.0, 1.0], [0.0, 3.0], [0.0, -1.0]];
        let like = [false, true, true, false];
        let sizes = ProfileSizes::fixed(4);
        let choice = ThresholdChoice {
            policy: ThresholdPolicy::MaxProfileLikeF1,
            fixed: None,
            sizes: &sizes,
            seed: 1,
        };
        let (calibration, threshold) = calibrate(&logits, &like, choice);
        let history = history();
        let report = Report {
            model: "m.onnx".into(),
            model_sha256: swipebot_core::model_info::sha256_hex(b"m"),
            outcome: Outcome::Paused,
            dataset: DatasetReport {
                folder: "d".into(),
                counts: [("nope".to_string(), 2), ("like".to_string(), 3)].into(),
                train: 1,
                validation: 4,
                skipped: vec![Skipped {
                    path: "d/like/x.jpg".into(),
                    reason: "empty".into(),
                }],
                cache: "d/.swipebot-cache/squares-256-rgb.bin".into(),
                cache_status: CacheStatus::Reused,
            },
            settings,
            epochs_run: history.len(),
            best_epoch: Some(history[3]),
            training_images_per_second: mean_images_per_second(&history),
            training_precision: "bf16".into(),
            calibration,
            threshold,
            warnings: vec!["validation ROC AUC 0.55 is under 0.6".to_string()],
            files: Files {
                metrics: "m.metrics.csv".into(),
                curves: "m.curves.png".into(),
                checkpoint: "m.checkpoint".into(),
            },
            quantization: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.report.json");
        write_json(&path, &report).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();

        let mut keys = Vec::new();
        key_paths(&json, "", &mut keys);
        keys.sort();
        let mut expected: Vec<String> = [
            "model",
            "model_sha256",
            "outcome",
            "dataset",
            "dataset.folder",
            "dataset.counts",
            "dataset.counts.like",
            "dataset.counts.nope",
            "dataset.train",
            "dataset.validation",
            "dataset.skipped",
            "dataset.skipped[].path",
            "dataset.skipped[].reason",
            "dataset.cache",
            "dataset.cache_status",
            "settings",
            "epochs_run",
            "best_epoch",
            "best_epoch.epoch",
            "best_epoch.train",
            "best_epoch.train.loss",
            "best_epoch.train.accuracy",
            "best_epoch.val",
            "best_epoch.val.loss",
            "best_epoch.val.accuracy",
            "best_epoch.lr",
            "best_epoch.images_per_second",
            "best_epoch.seconds",
            "training_images_per_second",
            "training_precision",
            "calibration",
            "calibration.temperature",
            "calibration.fitted_temperature",
            "calibration.applied",
            "calibration.ece_fitted",
            "calibration.nll_before",
            "calibration.nll_after",
            "calibration.ece_before",
            "calibration.ece_after",
            "calibration.ece_bins",
            "threshold",
            "threshold.value",
            "threshold.recommended",
            "threshold.chosen_by",
            "threshold.chosen_by.policy",
            "threshold.confusion",
            "threshold.confusion.true_like",
            "threshold.confusion.false_like",
            "threshold.confusion.true_nope",
            "threshold.confusion.false_nope",
            "threshold.accuracy",
            "threshold.like_f1",
            "threshold.roc_auc",
            "threshold.photo",
            "threshold.photo.accuracy",
            "threshold.photo.precision",
            "threshold.photo.recall",
            "threshold.photo.f1",
            "threshold.profile",
            "threshold.profile.accuracy",
            "threshold.profile.precision",
            "threshold.profile.recall",
            "threshold.profile.f1",
            "threshold.profile.photos_per_profile",
            "threshold.profile.sizes_from",
            "threshold.profile.profiles",
            "threshold.profile.confusion",
            "threshold.profile.confusion.true_like",
            "threshold.profile.confusion.false_like",
            "threshold.profile.confusion.true_nope",
            "threshold.profile.confusion.false_nope",
            "warnings",
            "files",
            "files.metrics",
            "files.curves",
            "files.checkpoint",
        ]
        .iter()
        .map(|k| k.to_string())
        .collect();
        let settings_keys = json["settings"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| format!("settings.{k}"));
        expected.extend(settings_keys);
        expected.sort();
        assert_eq!(keys, expected);

        // The types the readers expect.
        assert_eq!(json["outcome"], "paused");
        assert_eq!(json["model_sha256"].as_str().map(str::len), Some(64));
        assert_eq!(json["dataset"]["cache_status"], "reused");
        assert_eq!(json["dataset"]["counts"]["like"], 3);
        assert_eq!(json["epochs_run"], 6);
        assert_eq!(json["best_epoch"]["epoch"], 4);
        assert!(json["best_epoch"]["val"]["accuracy"].is_f64());
        assert_eq!(json["settings"]["epochs"], 6);
        assert_eq!(json["training_images_per_second"], 50.0);
        assert_eq!(json["training_precision"], "bf16");
        let total: u64 = ["true_like", "false_like", "true_nope", "false_nope"]
            .iter()
            .map(|k| json["threshold"]["confusion"][k].as_u64().unwrap())
            .sum();
        assert_eq!(total, 4);
        assert!(json["threshold"]["value"].is_f64() && json["threshold"]["roc_auc"].is_f64());
        assert!(json["calibration"]["temperature"].is_f64());
        assert_eq!(json["calibration"]["ece_bins"], 15);
        assert!(json["calibration"]["applied"].is_boolean());
        assert_eq!(json["threshold"]["chosen_by"]["policy"], "max_profile_like_f1");
        assert_eq!(json["threshold"]["profile"]["photos_per_profile"], 4.0);
        assert_eq!(json["threshold"]["profile"]["sizes_from"], "--photos-per-profile 4");
        assert_eq!(json["warnings"][0], "validation ROC AUC 0.55 is under 0.6");
    }
}
