//! `train --init MODEL.onnx`: start from the weights of a model `train` exported before, to fine-tune
//! it on newly labelled photos instead of learning from nothing. The exporter names every initializer
//! after its var-store variable, so each variable is read back by name, checked against its shape,
//! and copied in; the normalisation (mean and scale) comes along, so the fine-tuned network sees its
//! inputs as it learnt them. The model must have the input size and channels of this run.
//!
//! The network is built in the model's own layout ([`norm_of`]): with LRN when the graph has LRN
//! nodes, otherwise without any normalisation ([`Norm::None`]), since a batch-normalised network
//! exports with its normalisations folded into its convolutions. Such a model fine-tunes as the
//! plain network it now is; rebuilding batch normalisation around its weights would change what
//! each layer computes on the first step.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{Message, ModelProto, TensorProto};
use tch::nn::VarStore;
use tch::Tensor;

use swipebot_core::model_info::ModelInfo;

use crate::googlenet::Norm;

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

/// The layout a network needs to take the weights of the model at `path`: [`Norm::Lrn`] if its graph
/// has LRN nodes, else [`Norm::None`]. `asked` is `--norm`, refused when it names another layout.
pub fn norm_of(path: &Path, asked: Option<Norm>) -> anyhow::Result<Norm> {
    let bytes = std::fs::read(path).with_context(|| format!("--init: cannot read {}", path.display()))?;
    let model = ModelProto::parse_from_bytes(&bytes)
        .with_context(|| format!("--init: {} is not an ONNX model", path.display()))?;
    let graph = model.graph.as_ref().context("--init: the model has no graph")?;
    let norm = if graph.node.iter().any(|n| n.op_type == "LRN") {
        Norm::Lrn
    } else {
        Norm::None
    };
    match asked {
        Some(asked) if asked != norm => bail!(
            "--init: {} has the `{norm}` layout (`lrn`: LRN layers; `none`: batch normalisation folded into \
             its convolutions), and --norm {asked} asks for another; leave out --norm to fine-tune it as it is",
            path.display()
        ),
        _ => Ok(norm),
    }
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

    /// A freshly initialised network of input 32, grayscale, in layout `norm`, from `seed`.
    fn network(seed: i64, norm: Norm) -> (VarStore, NetShape, GoogLeNet) {
        tch::manual_seed(seed);
        let vs = VarStore::new(tch::Device::Cpu);
        let shape = NetShape {
            input_size: 32,
            channels: 1,
            classes: 2,
            norm,
        };
        let mut net = GoogLeNet::new(&vs.root(), shape);
        net.set_normalization(&vec![seed as f32; 32 * 32], &[0.5]);
        (vs, shape, net)
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
        let (a, shape, _) = network(1, Norm::Lrn);
        let sha = crate::export::export(&a, shape, &info(), &path).unwrap();
        assert_eq!(norm_of(&path, None).unwrap(), Norm::Lrn);
        let (mut b, _, _) = network(2, Norm::Lrn);
        let initial = load_into(&mut b, &path, 32, 1).unwrap();
        assert_eq!(initial.sha256, sha);
        assert_eq!(initial.variables, a.variables().len());
        let (va, vb) = (a.variables(), b.variables());
        for (name, t) in &va {
            assert!(t.equal(&vb[name]), "{name} differs");
        }

        let (mut c, _, _) = network(3, Norm::Lrn);
        let err = load_into(&mut c, &path, 64, 1).unwrap_err().to_string();
        assert!(err.contains("input 32") && err.contains("--input-size 32"), "{err}");
        let err = load_into(&mut c, &path, 32, 3).unwrap_err().to_string();
        assert!(err.contains("--grayscale"), "{err}");
        let err = load_into(&mut c, &dir.path().join("none.onnx"), 32, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("none.onnx"), "{err}");
    }

    /// A batch-normalised network exports with its normalisations folded into its convolutions; the
    /// layout that takes those weights back is `none`, and the network built so computes what the
    /// batch-normalised one computes in evaluation.
    #[test]
    fn a_batch_normalised_model_comes_back_as_the_plain_network_it_exported_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bn.onnx");
        let (a, shape, net_a) = network(4, Norm::Batch);
        // Running statistics, scales and shifts away from their initial 0, 1, 1, 0.
        let x = Tensor::rand([8, 1, 32, 32], (tch::Kind::Float, tch::Device::Cpu)) * 255.0;
        for _ in 0..3 {
            let _ = tch::no_grad(|| net_a.logits(&x, true));
        }
        tch::no_grad(|| {
            for (name, mut t) in a.variables() {
                if name.ends_with("bn.weight") || name.ends_with("bn.bias") {
                    let _ = t.uniform_(0.5, 1.5);
                }
            }
        });
        crate::export::export(&a, shape, &info(), &path).unwrap();
        assert_eq!(norm_of(&path, None).unwrap(), Norm::None);
        assert_eq!(norm_of(&path, Some(Norm::None)).unwrap(), Norm::None);
        let err = norm_of(&path, Some(Norm::Batch)).unwrap_err().to_string();
        assert!(err.contains("bn.onnx") && err.contains("leave out --norm"), "{err}");

        let (mut b, _, net_b) = network(5, Norm::None);
        load_into(&mut b, &path, 32, 1).unwrap();
        let (la, lb) = (net_a.logits(&x, false), net_b.logits(&x, false));
        let scale = f64::try_from(la.abs().max()).unwrap();
        let worst = f64::try_from((la - lb).abs().max()).unwrap();
        assert!(
            scale > 0.01 && worst <= 1e-4 * scale.max(1.0),
            "differ by {worst} (scale {scale})"
        );
    }
}
