//! `train --init MODEL.onnx`: start from the weights of a model `train` exported before, to fine-tune
//! it on newly labelled photos instead of learning from nothing. The exporter names every initializer
//! after its var-store variable, so each variable is read back by name, checked against its shape,
//! and copied in; the normalisation (mean and scale) comes along, so the fine-tuned network sees its
//! inputs as it learnt them. The model must have the input size and channels of this run.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{Message, ModelProto, TensorProto};
use tch::nn::VarStore;
use tch::Tensor;

use swipebot_core::model_info::ModelInfo;

/// What the run started from, for the report and the new model's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Initial {
    /// SHA-256 of the model file the weights came from.
    pub sha256: String,
    /// That model's contract.
    pub info: ModelInfo,
    /// Variables copied.
    pub variables: usize,
}

/// The float values of an initializer, from `raw_data` (little-endian) or `float_data`.
fn floats(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::FLOAT as i32 {
        return None;
    }
    if !t.raw_data.is_empty() {
        if !t.raw_data.len().is_multiple_of(4) {
            return None;
        }
        return Some(
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
    }
    Some(t.float_data.clone())
}

/// Copies the weights of the model at `path` into `vs`, whose network has input `input_size` and
/// `channels` channels. Every variable must be in the file, as a float tensor of its shape.
pub fn load_into(vs: &mut VarStore, path: &Path, input_size: u32, channels: usize) -> anyhow::Result<Initial> {
    let bytes = std::fs::read(path).with_context(|| format!("--init: cannot read {}", path.display()))?;
    let model = ModelProto::parse_from_bytes(&bytes)
        .with_context(|| format!("--init: {} is not an ONNX model", path.display()))?;
    let properties: HashMap<&str, &str> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    let info = ModelInfo::from_lookup(|key| properties.get(key).map(|v| v.to_string()))
        .with_context(|| format!("--init: {} is not a model exported by `train`", path.display()))?;
    let theirs = info.recipe.channels.count();
    if info.input_size != input_size || theirs != channels {
        bail!(
            "--init: {} was trained at input {} with {theirs} channel(s), this run is input {input_size} with \
             {channels}: give `--input-size {}`{} to fine-tune it, or leave out --init to train from scratch",
            path.display(),
            info.input_size,
            info.input_size,
            if theirs == 1 {
                " --grayscale"
            } else {
                " (without --grayscale)"
            }
        );
    }
    let graph = model.graph.as_ref().context("--init: the model has no graph")?;
    let initializers: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut variables = vs.variables();
    let mut names: Vec<String> = variables.keys().cloned().collect();
    names.sort();
    for name in &names {
        let var = variables.get_mut(name).expect("listed above");
        let Some(t) = initializers.get(name.as_str()) else {
            bail!(
                "--init: {} has no weights for `{name}`: it was not exported by this version of `train`, or it \
                 is quantized (start from the fp32 model)",
                path.display()
            );
        };
        let want = var.size();
        let data = floats(t).filter(|d| t.dims == want && d.len() as i64 == want.iter().product::<i64>());
        let Some(data) = data else {
            bail!(
                "--init: `{name}` in {} is {:?} of type {}, this network needs a float tensor {want:?}",
                path.display(),
                t.dims,
                t.data_type
            );
        };
        let values = Tensor::from_slice(&data).view(want.as_slice()).to_device(var.device());
        tch::no_grad(|| var.copy_(&values));
    }
    Ok(Initial {
        sha256: swipebot_core::model_info::sha256_hex(&bytes),
        info,
        variables: names.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GoogLeNet, NetShape};
    use swipebot_core::model_info::CLASSES;
    use swipebot_core::preprocess::{Channels, Recipe};

    /// A freshly initialised network of input 32, grayscale, from `seed`.
    fn network(seed: i64) -> (VarStore, NetShape) {
        tch::manual_seed(seed);
        let vs = VarStore::new(tch::Device::Cpu);
        let shape = NetShape {
            input_size: 32,
            channels: 1,
            classes: 2,
        };
        let mut net = GoogLeNet::new(&vs.root(), shape);
        net.set_normalization(&vec![seed as f32; 32 * 32], &[0.5]);
        (vs, shape)
    }

    /// The model contract of those networks.
    fn info() -> ModelInfo {
        ModelInfo {
            input_size: 32,
            recipe: Recipe::for_input(32, Channels::Gray),
            classes: CLASSES.iter().map(|c| c.to_string()).collect(),
            threshold: 0.4,
            temperature: 1.0,
            trained_at: "2026-11-29T00:00:00Z".into(),
            dataset: "nope=1,like=1".into(),
        }
    }

    #[test]
    fn every_weight_comes_back_from_the_exported_model_and_a_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.onnx");
        let (a, shape) = network(1);
        let sha = crate::export::export(&a, shape, &info(), &path).unwrap();
        let (mut b, _) = network(2);
        let initial = load_into(&mut b, &path, 32, 1).unwrap();
        assert_eq!(initial.sha256, sha);
        assert_eq!(initial.variables, a.variables().len());
        let (va, vb) = (a.variables(), b.variables());
        for (name, t) in &va {
            assert!(t.equal(&vb[name]), "{name} differs");
        }

        let (mut c, _) = network(3);
        let err = load_into(&mut c, &path, 64, 1).unwrap_err().to_string();
        assert!(err.contains("input 32") && err.contains("--input-size 32"), "{err}");
        let err = load_into(&mut c, &path, 32, 3).unwrap_err().to_string();
        assert!(err.contains("--grayscale"), "{err}");
        let err = load_into(&mut c, &dir.path().join("none.onnx"), 32, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("none.onnx"), "{err}");
    }
}
