//! Rewrites an fp32 graph written by [`crate::export`] into ONNX's QDQ int8 form, given the
//! activation ranges [`crate::ranges`] measured: ONNX Runtime fuses each
//! `DequantizeLinear -> op -> QuantizeLinear` group into one integer kernel (QLinearConv, QGemm, ...).
//!
//! - Activations entering or leaving a convolution, a max pooling or a concatenation, and the
//!   classifier's input, are uint8 with a scale and zero point from their range (the range always
//!   includes 0, so 0 is exact).
//! - A ReLU right after a convolution is folded into the QuantizeLinear of its output: that range
//!   starts at 0, so the zero point is 0 and saturation does the ReLU's work.
//! - A max pooling's output keeps its input's scale and zero point (its values are a subset), which
//!   lets the runtime pool the uint8 values directly.
//! - Weights of convolutions and the classifier are int8, symmetric, one scale per output channel
//!   (`max |w| / 127`); biases int32 with scale `input scale x weight scale`, as the integer kernels
//!   expect.
//! - The input contract (float pixels, mean subtraction, scale) and the output (float softmax after
//!   the temperature) are unchanged.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Context};
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, ModelProto, NodeProto, TensorProto};

use crate::interpret::bounds;

/// Operators whose float activation inputs are quantized.
const QUANTIZED_INPUTS: [&str; 4] = ["Conv", "Gemm", "MaxPool", "Concat"];
/// Operators whose output is quantized.
const QUANTIZED_OUTPUTS: [&str; 2] = ["MaxPool", "Concat"];

/// The uint8 scale and zero point of an activation with range `[lo, hi]` (widened to include 0).
pub fn activation_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    if hi - lo <= f32::EPSILON {
        return (1.0, 0);
    }
    let scale = (hi - lo) / 255.0;
    let zero = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero)
}

/// Symmetric int8 weights with one scale per output channel (the first dimension of `w`, which
/// holds `channels` rows): the quantized values and the scales.
pub fn quantize_weights(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / channels.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(channels);
    for row in w.chunks(per.max(1)) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(
            row.iter()
                .map(|v| (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (q, scales)
}

/// The names of the activations the rewrite quantizes, as named in the fp32 graph: what
/// calibration must measure. A ReLU after a convolution stands for the convolution's output.
pub fn quantized_tensors(model: &ModelProto) -> HashSet<String> {
    let graph = &model.graph;
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let fused = fused_relus(model);
    let mut names = HashSet::new();
    for node in &graph.node {
        let op = node.op_type.as_str();
        if QUANTIZED_INPUTS.contains(&op) {
            let activations = if op == "Conv" || op == "Gemm" {
                &node.input[..1]
            } else {
                &node.input[..]
            };
            for i in activations {
                if !initializers.contains(i.as_str()) {
                    names.insert(i.clone());
                }
            }
        }
        if QUANTIZED_OUTPUTS.contains(&op) || (op == "Conv" && fused.contains_key(node.output[0].as_str())) {
            let out = &node.output[0];
            names.insert(fused.get(out.as_str()).map_or_else(|| out.clone(), |r| r.to_string()));
        }
    }
    names
}

/// Convolution outputs read by a ReLU alone: convolution output -> the ReLU's output.
fn fused_relus(model: &ModelProto) -> HashMap<&str, &str> {
    let graph = &model.graph;
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for node in &graph.node {
        for i in &node.input {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    let convs: HashSet<&str> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .map(|n| n.output[0].as_str())
        .collect();
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "Relu" && convs.contains(n.input[0].as_str()) && readers[n.input[0].as_str()] == 1)
        .map(|n| (n.input[0].as_str(), n.output[0].as_str()))
        .collect()
}

/// A tensor of `data_type` and raw little-endian `raw` bytes.
fn raw_tensor(name: &str, dims: &[i64], data_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.to_vec(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    }
}

/// A float tensor (scales).
fn floats(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    raw_tensor(
        name,
        dims,
        DataType::FLOAT,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// A node with one output.
fn node(op: &str, name: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.to_string(),
        name: name.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        attribute,
        ..Default::default()
    }
}

/// The `axis` attribute of per-channel (de)quantization.
fn axis(value: i64) -> AttributeProto {
    AttributeProto {
        name: "axis".into(),
        type_: protobuf::EnumOrUnknown::new(onnx_protobuf::attribute_proto::AttributeType::INT),
        i: value,
        ..Default::default()
    }
}

/// Reads a float initializer's values.
fn float_values(t: &TensorProto) -> anyhow::Result<Vec<f32>> {
    if t.data_type != DataType::FLOAT as i32 {
        bail!("initializer `{}` is not float (data type {})", t.name, t.data_type);
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The rewrite in progress.
struct Rewrite {
    /// Initializers by name: the float ones of the source, then what the rewrite adds.
    initializers: HashMap<String, TensorProto>,
    /// Float initializers replaced by quantized ones, left out of the result.
    replaced: HashSet<String>,
    /// Quantized activation -> the name of its DequantizeLinear output, and its scale.
    dequantized: HashMap<String, (String, f32)>,
    /// The rewritten nodes.
    nodes: Vec<NodeProto>,
}

impl Rewrite {
    /// Appends QuantizeLinear and DequantizeLinear after activation `name`, with `scale` and `zero`.
    fn quantize_activation(&mut self, name: &str, scale: f32, zero: u8) {
        let (s, z) = (format!("{name}_scale"), format!("{name}_zero_point"));
        self.initializers.insert(s.clone(), floats(&s, &[], &[scale]));
        self.initializers
            .insert(z.clone(), raw_tensor(&z, &[], DataType::UINT8, vec![zero]));
        let (q, dq) = (format!("{name}_quantized"), format!("{name}_dequantized"));
        self.nodes.push(node("QuantizeLinear", &q, &[name, &s, &z], &q, vec![]));
        self.nodes
            .push(node("DequantizeLinear", &dq, &[&q, &s, &z], &dq, vec![]));
        self.dequantized.insert(name.to_string(), (dq, scale));
    }

    /// Replaces float weight `name` (output channels first) by int8 per-channel weights and their
    /// DequantizeLinear; returns the dequantized name and the channel scales.
    fn quantize_weight(&mut self, name: &str) -> anyhow::Result<(String, Vec<f32>)> {
        let t = self
            .initializers
            .get(name)
            .with_context(|| format!("weight `{name}` is no initializer"))?;
        let dims = t.dims.clone();
        let channels = *dims
            .first()
            .with_context(|| format!("weight `{name}` has no dimensions"))? as usize;
        let (q, scales) = quantize_weights(&float_values(t)?, channels);
        let (qn, s, z, dq) = (
            format!("{name}_quantized"),
            format!("{name}_scale"),
            format!("{name}_zero_point"),
            format!("{name}_dequantized"),
        );
        let raw = q.iter().map(|&v| v as u8).collect();
        self.initializers
            .insert(qn.clone(), raw_tensor(&qn, &dims, DataType::INT8, raw));
        self.initializers
            .insert(s.clone(), floats(&s, &[channels as i64], &scales));
        self.initializers.insert(
            z.clone(),
            raw_tensor(&z, &[channels as i64], DataType::INT8, vec![0; channels]),
        );
        self.nodes
            .push(node("DequantizeLinear", &dq, &[&qn, &s, &z], &dq, vec![axis(0)]));
        self.replaced.insert(name.to_string());
        Ok((dq, scales))
    }

    /// Replaces float bias `name` by int32 values with scales `input_scale x weight_scales`.
    fn quantize_bias(&mut self, name: &str, input_scale: f32, weight_scales: &[f32]) -> anyhow::Result<String> {
        let t = self
            .initializers
            .get(name)
            .with_context(|| format!("bias `{name}` is no initializer"))?;
        let values = float_values(t)?;
        if values.len() != weight_scales.len() {
            bail!(
                "bias `{name}` has {} values for {} channels",
                values.len(),
                weight_scales.len()
            );
        }
        let scales: Vec<f32> = weight_scales.iter().map(|w| w * input_scale).collect();
        let (lo, hi) = bounds(DataType::INT32 as i32)?;
        let q: Vec<i32> = values
            .iter()
            .zip(&scales)
            .map(|(b, s)| f64::from(b / s).round_ties_even().clamp(lo, hi) as i32)
            .collect();
        let n = values.len() as i64;
        let (qn, s, z, dq) = (
            format!("{name}_quantized"),
            format!("{name}_scale"),
            format!("{name}_zero_point"),
            format!("{name}_dequantized"),
        );
        let raw = q.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers
            .insert(qn.clone(), raw_tensor(&qn, &[n], DataType::INT32, raw));
        self.initializers.insert(s.clone(), floats(&s, &[n], &scales));
        self.initializers.insert(
            z.clone(),
            raw_tensor(&z, &[n], DataType::INT32, vec![0; 4 * n as usize]),
        );
        self.nodes
            .push(node("DequantizeLinear", &dq, &[&qn, &s, &z], &dq, vec![axis(0)]));
        self.replaced.insert(name.to_string());
        Ok(dq)
    }
}

/// The QDQ int8 version of `model` (an fp32 graph written by [`crate::export`]), with activation
/// ranges `ranges` for every name [`quantized_tensors`] gives. Metadata is copied as it is; the
/// caller sets `swipebot.precision`.
pub fn quantize(model: &ModelProto, ranges: &HashMap<String, (f32, f32)>) -> anyhow::Result<ModelProto> {
    let graph = &model.graph;
    let fused = fused_relus(model);
    let wanted = quantized_tensors(model);
    let range = |name: &str| -> anyhow::Result<(f32, f32)> {
        ranges
            .get(name)
            .copied()
            .with_context(|| format!("no calibrated range for activation `{name}`"))
    };
    let mut r = Rewrite {
        initializers: graph.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect(),
        replaced: HashSet::new(),
        dequantized: HashMap::new(),
        nodes: Vec::with_capacity(graph.node.len() * 3),
    };
    let skipped_relus: HashSet<&str> = fused.values().copied().collect();
    for source in &graph.node {
        if source.op_type == "Relu" && skipped_relus.contains(source.output[0].as_str()) {
            continue;
        }
        let mut n = source.clone();
        let op = n.op_type.clone();
        // Every reader of a quantized activation reads its dequantized value, so the float tensor
        // has the QuantizeLinear as its only reader (which the runtime's fusion requires).
        for input in n.input.iter_mut() {
            if let Some((dq, _)) = r.dequantized.get(input.as_str()) {
                *input = dq.clone();
            }
        }
        if op == "Conv" || op == "Gemm" {
            let x = &source.input[0];
            let (_, input_scale) = r
                .dequantized
                .get(x)
                .cloned()
                .with_context(|| format!("the input `{x}` of node `{}` is not quantized", n.name))?;
            let (w, scales) = r.quantize_weight(&source.input[1])?;
            n.input[1] = w;
            if let Some(bias) = source.input.get(2) {
                n.input[2] = r.quantize_bias(bias, input_scale, &scales)?;
            }
        }
        // A fused convolution writes what its ReLU wrote.
        if let Some(relu) = fused.get(source.output[0].as_str()) {
            n.output[0] = relu.to_string();
        }
        let out = n.output[0].clone();
        r.nodes.push(n);
        if !wanted.contains(&out) {
            continue;
        }
        let (scale, zero) = if op == "MaxPool" {
            // Same parameters as the pooled input.
            let input = &source.input[0];
            let dq = r.dequantized.get(input).map(|(_, s)| *s);
            let zp_name = format!("{input}_zero_point");
            match (dq, r.initializers.get(&zp_name)) {
                (Some(s), Some(z)) => (s, z.raw_data[0]),
                _ => {
                    let (lo, hi) = range(&out)?;
                    activation_params(lo, hi)
                }
            }
        } else {
            let (lo, hi) = range(&out)?;
            activation_params(lo, hi)
        };
        r.quantize_activation(&out, scale, zero);
    }
    // Activations quantized before their first reader (the graph input's normalisation) are handled
    // above through `wanted`; anything else wanted but never written is an error.
    if let Some(missing) = wanted.iter().find(|n| !r.dequantized.contains_key(*n)) {
        bail!("activation `{missing}` was to be quantized but no node writes it");
    }
    let mut out = model.clone();
    let g = out.graph.as_mut().context("the model has no graph")?;
    g.node = r.nodes;
    let mut initializers: Vec<TensorProto> = r
        .initializers
        .into_values()
        .filter(|t| !r.replaced.contains(&t.name))
        .collect();
    initializers.sort_by(|a, b| a.name.cmp(&b.name));
    g.initializer = initializers;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_ranges_include_zero_exactly() {
        let (s, z) = activation_params(0.0, 25.5);
        assert!((s - 0.1).abs() < 1e-7, "{s}");
        assert_eq!(z, 0);
        let (s, z) = activation_params(-1.0, 3.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 64, "0 maps to round(1 / scale)");
        // A range that misses 0 is widened to include it; an empty range gets scale 1.
        assert_eq!(activation_params(2.0, 5.1).1, 0);
        assert_eq!(activation_params(0.0, 0.0), (1.0, 0));
    }

    #[test]
    fn weights_get_one_symmetric_scale_per_output_channel() {
        let w = [1.27f32, -0.64, 0.0, 0.0, 0.0, 0.0];
        let (q, scales) = quantize_weights(&w, 3);
        assert_eq!(q, [127, -64, 0, 0, 0, 0]);
        assert!((scales[0] - 0.01).abs() < 1e-7, "{scales:?}");
        assert_eq!(&scales[1..], [1.0, 1.0], "an all-zero channel keeps scale 1");
    }
}
