//! The precision of the model `train` writes: fp32 as exported, or int8 (QDQ) after calibration on
//! training images and a gate on the validation split against the fp32 model (`--precision int8`,
//! or `--quantize MODEL.onnx` for a model already written).
//!
//! The gate compares the decisions at the model's threshold: at most [`MAX_FLIP_FRACTION`] of the
//! validation photos may change side and accuracy may drop at most [`MAX_ACCURACY_DROP`]; otherwise
//! nothing is written (unless `--force`) and the error gives the figures. Both graphs are run by
//! [`crate::interpret`], whose integer arithmetic is ONNX's own (tests compare it with ONNX Runtime).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use onnx_protobuf::{Message, ModelProto, StringStringEntryProto};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::Sample;
use crate::interpret::Interpreter;
use crate::ranges::{self, RangeMethod};
use crate::training;
use swipebot_core::model_info::{keys, ModelInfo, Precision};
use swipebot_core::preprocess::Recipe;

/// Largest share of validation photos whose decision may flip between fp32 and int8.
pub const MAX_FLIP_FRACTION: f64 = 0.005;
/// Largest drop in validation accuracy from fp32 to int8 (0.5 point).
pub const MAX_ACCURACY_DROP: f64 = 0.005;
/// Photos run through the interpreter at once.
const BATCH: usize = 32;

/// How the int8 model is made (the `--calibration*` and `--force` flags).
#[derive(Debug, Clone, Copy)]
pub struct Int8Settings {
    /// Training images the activation ranges are measured on.
    pub calibration_images: usize,
    /// How a range is read from them.
    pub method: RangeMethod,
    /// Write the model even when the gate fails.
    pub force: bool,
}

/// What quantization did and how the int8 model compares (`quantization` in `report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct QuantizationReport {
    /// Always `int8`.
    pub precision: Precision,
    /// The range method of the calibration.
    pub calibration_method: RangeMethod,
    /// Training images the ranges were measured on.
    pub calibration_images: usize,
    /// The threshold the decisions were compared at (the model's).
    pub threshold: f32,
    /// Validation photos compared.
    pub validation_photos: usize,
    /// Photos whose decision differs between fp32 and int8.
    pub flips: usize,
    /// `flips / validation_photos` (0 with no validation photos).
    pub flip_fraction: f64,
    /// Validation accuracy of the fp32 model at the threshold.
    pub fp32_accuracy: f64,
    /// The same for the int8 model.
    pub int8_accuracy: f64,
    /// Largest difference in LIKE probability between the two.
    pub max_probability_difference: f64,
    /// Whether the gate passed.
    pub gate_passed: bool,
    /// Whether the model was written although the gate failed (`--force`).
    pub forced: bool,
}

impl QuantizationReport {
    /// Why the gate failed, with the figures; `None` when it passed.
    pub fn gate_failure(&self) -> Option<String> {
        let drop = self.fp32_accuracy - self.int8_accuracy;
        (self.flip_fraction > MAX_FLIP_FRACTION || drop > MAX_ACCURACY_DROP + 1e-12).then(|| {
            format!(
                "the int8 model flips {} of {} validation decisions ({:.2}%, at most {:.1}% allowed) at threshold {}; \
                 accuracy {:.2}% against fp32's {:.2}% (at most {:.1} point lower allowed)",
                self.flips,
                self.validation_photos,
                100.0 * self.flip_fraction,
                100.0 * MAX_FLIP_FRACTION,
                self.threshold,
                100.0 * self.int8_accuracy,
                100.0 * self.fp32_accuracy,
                100.0 * MAX_ACCURACY_DROP
            )
        })
    }
}

/// Every `step`-th image of `train`, `count` in all (all of them when there are fewer): spread over
/// the (sorted) folder, so both classes and every sub-folder are seen.
pub fn calibration_images<'s>(train: &[&'s Sample], count: usize) -> Vec<&'s Sample> {
    if count >= train.len() {
        return train.to_vec();
    }
    (0..count).map(|i| train[i * train.len() / count]).collect()
}

/// LIKE probabilities of `samples` (centre crops) through `graph`.
fn like_probabilities(
    graph: &Interpreter,
    samples: &[&Sample],
    recipe: &Recipe,
    like: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(BATCH) {
        let (x, _) = training::batch(chunk, recipe, None, Device::Cpu);
        let p = graph.run(&x, &mut |_, _| {})?;
        let col = Vec::<f64>::try_from(p.select(1, like as i64).to_kind(Kind::Double)).context("probabilities")?;
        out.extend(col);
    }
    Ok(out)
}

/// Sets metadata `key` of `model` to `value`.
fn set_property(model: &mut ModelProto, key: &str, value: &str) {
    model.metadata_props.retain(|p| p.key != key);
    model.metadata_props.push(StringStringEntryProto {
        key: key.to_string(),
        value: value.to_string(),
        ..Default::default()
    });
}

/// Calibrates, quantizes and gates the fp32 `model` (contract `info`): ranges on `calibration`,
/// decisions compared on `validation`. Fails naming the figures when the gate fails, unless forced.
pub fn to_int8(
    model: &ModelProto,
    info: &ModelInfo,
    calibration: &[&Sample],
    validation: &[&Sample],
    settings: Int8Settings,
) -> anyhow::Result<(ModelProto, QuantizationReport)> {
    if calibration.is_empty() {
        bail!("no training images to calibrate the int8 ranges on (check --data and --val-fraction)");
    }
    let recipe = &info.recipe;
    let fp32 = Interpreter::new(model)?;
    let batches: Vec<Tensor> = calibration
        .chunks(BATCH)
        .map(|c| training::batch(c, recipe, None, Device::Cpu).0)
        .collect();
    let names = crate::quantize::quantized_tensors(model);
    let measured = ranges::measure(&fp32, &batches, &names, settings.method)?;
    let mut int8 = crate::quantize::quantize(model, &measured)?;
    set_property(&mut int8, keys::PRECISION, Precision::Int8.as_str());

    let like = info.like_index();
    let before = like_probabilities(&fp32, validation, recipe, like)?;
    let after = like_probabilities(&Interpreter::new(&int8)?, validation, recipe, like)?;
    let threshold = f64::from(info.threshold);
    let is_like: Vec<bool> = validation.iter().map(|s| s.label == like).collect();
    let accuracy = |p: &[f64]| {
        let right = p
            .iter()
            .zip(&is_like)
            .filter(|(p, l)| (**p >= threshold) == **l)
            .count();
        right as f64 / p.len().max(1) as f64
    };
    let flips = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| (**a >= threshold) != (**b >= threshold))
        .count();
    let mut report = QuantizationReport {
        precision: Precision::Int8,
        calibration_method: settings.method,
        calibration_images: calibration.len(),
        threshold: info.threshold,
        validation_photos: validation.len(),
        flips,
        flip_fraction: flips as f64 / validation.len().max(1) as f64,
        fp32_accuracy: accuracy(&before),
        int8_accuracy: accuracy(&after),
        max_probability_difference: before
            .iter()
            .zip(&after)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max),
        gate_passed: true,
        forced: false,
    };
    if let Some(why) = report.gate_failure() {
        if !settings.force {
            bail!("{why}; the int8 model was not written (--force writes it anyway; --calibration percentile or more --calibration-images may flip fewer)");
        }
        eprintln!("warning: {why}; written anyway (--force)");
        report.gate_passed = false;
        report.forced = true;
    }
    Ok((int8, report))
}

/// Reads an ONNX model and its contract; refuses a model that is not fp32.
pub fn read_model(path: &Path) -> anyhow::Result<(ModelProto, ModelInfo)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    let model =
        ModelProto::parse_from_bytes(&bytes).with_context(|| format!("{} is not an ONNX model", path.display()))?;
    let lookup = |key: &str| {
        model
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
    };
    let info = ModelInfo::from_lookup(lookup).with_context(|| format!("model {}", path.display()))?;
    let precision = Precision::from_metadata(lookup(keys::PRECISION).as_deref())
        .with_context(|| format!("model {}", path.display()))?;
    if precision != Precision::Fp32 {
        bail!(
            "model {} is already {} (metadata `{}`): quantize the fp32 model it was made from",
            path.display(),
            precision.as_str(),
            keys::PRECISION
        );
    }
    Ok((model, info))
}

/// Writes `model` to `path` atomically; returns the SHA-256 of its bytes in hex.
pub fn write(model: &ModelProto, path: &Path) -> anyhow::Result<String> {
    let bytes = model.write_to_bytes().context("encoding the ONNX model")?;
    swipebot_core::fsutil::write_atomic(path, &bytes).with_context(|| format!("writing model {}", path.display()))?;
    Ok(swipebot_core::model_info::sha256_hex(&bytes))
}

/// The report of `train --quantize`, written next to the int8 model.
#[derive(Debug, Serialize)]
pub struct QuantizeOnlyReport {
    /// The int8 model written.
    pub model: PathBuf,
    /// Its SHA-256 (the daemon's `model_sha256`).
    pub model_sha256: String,
    /// The fp32 model it was made from.
    pub source_model: PathBuf,
    /// Calibration, gate and figures.
    pub quantization: QuantizationReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(flips: usize, photos: usize, fp32: f64, int8: f64) -> QuantizationReport {
        QuantizationReport {
            precision: Precision::Int8,
            calibration_method: RangeMethod::Minmax,
            calibration_images: 8,
            threshold: 0.4,
            validation_photos: photos,
            flips,
            flip_fraction: flips as f64 / photos as f64,
            fp32_accuracy: fp32,
            int8_accuracy: int8,
            max_probability_difference: 0.0,
            gate_passed: true,
            forced: false,
        }
    }

    #[test]
    fn the_gate_allows_half_a_percent_of_flips_and_half_a_point_of_accuracy() {
        assert_eq!(report(1, 200, 0.9, 0.9).gate_failure(), None);
        assert_eq!(report(0, 200, 0.9, 0.895).gate_failure(), None);
        let why = report(2, 200, 0.9, 0.9).gate_failure().unwrap();
        assert!(why.contains("flips 2 of 200") && why.contains("1.00%"), "{why}");
        let why = report(0, 200, 0.9, 0.89).gate_failure().unwrap();
        assert!(why.contains("89.00%") && why.contains("90.00%"), "{why}");
        // Better int8 accuracy is no failure.
        assert_eq!(report(1, 400, 0.9, 0.95).gate_failure(), None);
    }

    #[test]
    fn calibration_images_are_spread_over_the_training_split() {
        let samples: Vec<Sample> = (0..10)
            .map(|i| Sample {
                pixels: vec![],
                label: i % 2,
                path: PathBuf::from(format!("{i}")),
            })
            .collect();
        let refs: Vec<&Sample> = samples.iter().collect();
        let picked: Vec<String> = calibration_images(&refs, 4)
            .iter()
            .map(|s| s.path.display().to_string())
            .collect();
        assert_eq!(picked, ["0", "2", "5", "7"]);
        assert_eq!(calibration_images(&refs, 50).len(), 10);
    }
}
