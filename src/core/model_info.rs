//! The contract between `train` and the daemon: what a model file must say about itself.
//!
//! Everything the daemon needs to use a model travels inside the ONNX file as metadata properties
//! (`swipebot.*`), so a model can never be scored with the wrong preprocessing or threshold.
//! `models/README.md` documents each key.

use crate::preprocess::{Channels, Recipe};

/// Version of this contract (the names, metadata keys and class order below): raised when a change
/// means a model of the old contract can no longer be scored as it was. `swipebot --version` shows it.
pub const CONTRACT_VERSION: u32 = 1;

/// Name of the graph input: float32 `[N, C, H, W]`, pixel values 0..=255 after resize and crop.
pub const INPUT_NAME: &str = "pixels";
/// Name of the graph output: float32 `[N, classes]` softmax probabilities.
pub const OUTPUT_NAME: &str = "prob";
/// The class whose probability decides a swipe right.
pub const LIKE_CLASS: &str = "like";
/// Class order the project trains and exports.
pub const CLASSES: [&str; 2] = ["nope", LIKE_CLASS];

/// Metadata keys, in the order they are written.
pub mod keys {
    /// Side of the square network input, in pixels.
    pub const INPUT_SIZE: &str = "swipebot.input_size";
    /// 1 (grayscale) or 3 (RGB).
    pub const CHANNELS: &str = "swipebot.channels";
    /// The resize recipe, as written by `Recipe::describe`.
    pub const RESIZE: &str = "swipebot.resize";
    /// Comma-separated class names in output order.
    pub const CLASSES: &str = "swipebot.classes";
    /// Recommended decision threshold on the LIKE probability.
    pub const THRESHOLD: &str = "swipebot.threshold";
    /// Softmax temperature baked into the graph (1 when uncalibrated).
    pub const TEMPERATURE: &str = "swipebot.temperature";
    /// When training finished, RFC 3339.
    pub const TRAINED_AT: &str = "swipebot.trained_at";
    /// Images per class, e.g. `nope=120,like=80`.
    pub const DATASET: &str = "swipebot.dataset";
    /// The arithmetic of the graph: `fp32`, or `int8` for a QDQ quantized model ([`super::Precision`]).
    /// Absent in older files, which are fp32. The daemon runs either the same way.
    pub const PRECISION: &str = "swipebot.precision";
    /// The model a fine-tuned model started from (`train --init`): its SHA-256 and file name.
    /// Absent in a model trained from scratch; the daemon does not need it.
    pub const INIT_FROM: &str = "swipebot.init_from";
}

/// The arithmetic a model's graph runs in (metadata [`keys::PRECISION`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Float weights and activations, as exported from training.
    Fp32,
    /// int8 weights and uint8 activations in QDQ form, float at the input and output.
    Int8,
}

impl Precision {
    /// The metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    /// Reads the metadata value; absent means fp32 (files written before the key existed).
    pub fn from_metadata(value: Option<&str>) -> Result<Self, ModelInfoError> {
        match value {
            None | Some("fp32") => Ok(Precision::Fp32),
            Some("int8") => Ok(Precision::Int8),
            Some(other) => Err(ModelInfoError::Invalid {
                key: keys::PRECISION,
                value: other.to_string(),
                why: "expected fp32 or int8".into(),
            }),
        }
    }
}

/// What a model file says about itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// Side of the square network input.
    pub input_size: u32,
    /// Preprocessing geometry and channels.
    #[serde(skip)]
    pub recipe: Recipe,
    /// Class names in output order.
    pub classes: Vec<String>,
    /// Recommended threshold on the LIKE probability.
    pub threshold: f32,
    /// Softmax temperature baked into the graph.
    pub temperature: f32,
    /// When the model was trained (RFC 3339).
    pub trained_at: String,
    /// Images per class used to train it.
    pub dataset: String,
}

/// A model's metadata is missing or wrong; names the key so the user knows which file and what to fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelInfoError {
    /// A required key is absent.
    #[error("metadata key `{0}` is missing: this file was not exported by `train` (re-export it with `train`)")]
    Missing(&'static str),
    /// A key is present but its value is not valid.
    #[error("metadata key `{key}` has an invalid value `{value}`: {why}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: String,
    },
}

impl ModelInfo {
    /// The properties to write into the ONNX file, in a stable order.
    pub fn to_properties(&self) -> Vec<(&'static str, String)> {
        vec![
            (keys::INPUT_SIZE, self.input_size.to_string()),
            (keys::CHANNELS, self.recipe.channels.count().to_string()),
            (keys::RESIZE, self.recipe.describe()),
            (keys::CLASSES, self.classes.join(",")),
            (keys::THRESHOLD, self.threshold.to_string()),
            (keys::TEMPERATURE, self.temperature.to_string()),
            (keys::TRAINED_AT, self.trained_at.clone()),
            (keys::DATASET, self.dataset.clone()),
        ]
    }

    /// Reads and checks the properties through `lookup` (a model's custom metadata).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ModelInfoError> {
        let get = |key: &'static str| lookup(key).ok_or(ModelInfoError::Missing(key));
        let invalid = |key: &'static str, value: &str, why: String| ModelInfoError::Invalid {
            key,
            value: value.to_string(),
            why,
        };
        let size_text = get(keys::INPUT_SIZE)?;
        let input_size: u32 = size_text
            .parse()
            .ok()
            .filter(|s| (16..=1024).contains(s))
            .ok_or_else(|| invalid(keys::INPUT_SIZE, &size_text, "expected a size from 16 to 1024".into()))?;
        let channels_text = get(keys::CHANNELS)?;
        let channels = channels_text
            .parse()
            .ok()
            .and_then(Channels::from_count)
            .ok_or_else(|| invalid(keys::CHANNELS, &channels_text, "expected 1 or 3".into()))?;
        let resize_text = get(keys::RESIZE)?;
        let recipe = Recipe::parse(&resize_text, channels).map_err(|why| invalid(keys::RESIZE, &resize_text, why))?;
        if recipe.crop != input_size {
            return Err(invalid(
                keys::RESIZE,
                &resize_text,
                format!("crop {} differs from input size {input_size}", recipe.crop),
            ));
        }
        let classes_text = get(keys::CLASSES)?;
        let classes: Vec<String> = classes_text.split(',').map(|c| c.trim().to_string()).collect();
        if classes.len() < 2 || !classes.iter().any(|c| c == LIKE_CLASS) {
            return Err(invalid(
                keys::CLASSES,
                &classes_text,
                format!("expected at least two classes, one `{LIKE_CLASS}`"),
            ));
        }
        let threshold_text = get(keys::THRESHOLD)?;
        let threshold = parse_unit(&threshold_text)
            .ok_or_else(|| invalid(keys::THRESHOLD, &threshold_text, "expected a number from 0 to 1".into()))?;
        // Older files without a temperature were exported uncalibrated.
        let temperature = match lookup(keys::TEMPERATURE) {
            None => 1.0,
            Some(text) => text
                .parse::<f32>()
                .ok()
                .filter(|t| t.is_finite() && *t > 0.0)
                .ok_or_else(|| invalid(keys::TEMPERATURE, &text, "expected a positive number".into()))?,
        };
        Ok(ModelInfo {
            input_size,
            recipe,
            classes,
            threshold,
            temperature,
            trained_at: lookup(keys::TRAINED_AT).unwrap_or_default(),
            dataset: lookup(keys::DATASET).unwrap_or_default(),
        })
    }

    /// Index of the LIKE class in the model output.
    pub fn like_index(&self) -> usize {
        self.classes
            .iter()
            .position(|c| c == LIKE_CLASS)
            .expect("checked when read")
    }
}

/// SHA-256 of a model file's bytes, in hex: how the journal identifies the model behind a decision.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Parses a probability-like number in 0..=1.
fn parse_unit(text: &str) -> Option<f32> {
    text.parse::<f32>().ok().filter(|v| (0.0..=1.0).contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sample() -> ModelInfo {
        ModelInfo {
            input_size: 64,
            recipe: Recipe::for_input(64, Channels::Gray),
            classes: CLASSES.iter().map(|c| c.to_string()).collect(),
            threshold: 0.4,
            temperature: 1.5,
            trained_at: "2026-01-01T00:00:00Z".into(),
            dataset: "nope=3,like=2".into(),
        }
    }

    #[test]
    fn properties_round_trip() {
        let info = sample();
        let map: HashMap<_, _> = info.to_properties().into_iter().collect();
        let back = ModelInfo::from_lookup(|k| map.get(k).cloned()).unwrap();
        assert_eq!(back, info);
        assert_eq!(back.like_index(), 1);
    }

    #[test]
    fn missing_and_invalid_keys_are_named() {
        let mut map: HashMap<_, _> = sample().to_properties().into_iter().collect();
        map.remove(keys::THRESHOLD);
        assert_eq!(
            ModelInfo::from_lookup(|k| map.get(k).cloned()),
            Err(ModelInfoError::Missing(keys::THRESHOLD))
        );
        map.insert(keys::THRESHOLD, "1.5".into());
        let err = ModelInfo::from_lookup(|k| map.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("swipebot.threshold"), "{err}");
        map.insert(keys::THRESHOLD, "0.5".into());
        map.insert(keys::CHANNELS, "2".into());
        assert!(ModelInfo::from_lookup(|k| map.get(k).cloned())
            .unwrap_err()
            .to_string()
            .contains("swipebot.channels"));
    }

    #[test]
    fn precision_is_fp32_when_absent_and_unknown_values_are_named() {
        assert_eq!(Precision::from_metadata(None), Ok(Precision::Fp32));
        assert_eq!(Precision::from_metadata(Some("int8")), Ok(Precision::Int8));
        let err = Precision::from_metadata(Some("fp8")).unwrap_err().to_string();
        assert!(err.contains("swipebot.precision") && err.contains("fp8"), "{err}");
    }
}
