//! What a run leaves next to the model: `metrics.csv` (one row per epoch), `curves.png` (the combined
//! graph DIGITS draws: training and validation loss, validation and training accuracy, and below it
//! the learning rate) and `report.json` (dataset, settings, calibration and the confusion matrix).
//!
//! Text in `curves.png` needs a TrueType font: plotters renders it with `ab_glyph` from a font file
//! found on the machine (DejaVu Sans or Liberation Sans, which Debian and Ubuntu ship); without one the
//! curves are drawn without captions and labels.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use plotters::prelude::*;

use crate::training::EpochReport;

/// The header of `metrics.csv`.
pub const CSV_HEADER: &str = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,images_per_second,seconds";

/// Writes `metrics.csv` (atomically).
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

/// Writes `report.json` (atomically), pretty-printed.
pub fn write_json(path: &Path, report: &serde_json::Value) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(report)?;
    swipebot_core::fsutil::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Font files tried for the labels of `curves.png`.
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

const WIDTH: u32 = 960;
const HEIGHT: u32 = 640;

/// Draws `curves.png`: loss (left axis) and accuracy (right axis) per epoch on top, the learning
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
    .context("encoding curves.png")?;
    swipebot_core::fsutil::write_atomic(path, &png).with_context(|| format!("writing {}", path.display()))?;
    Ok(labels)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// One curve of the top panel: name, colour, on the accuracy axis, and the value it plots.
type Curve = (&'static str, RGBColor, bool, fn(&EpochReport) -> f64);

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
}
