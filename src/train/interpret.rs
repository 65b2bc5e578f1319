//! Runs an ONNX graph written by [`crate::export`] or [`crate::quantize`] in libtorch, without ONNX
//! Runtime (which `train` never links): calibration reads the activations of the fp32 graph, and the
//! int8 gate compares the fp32 and the int8 graphs on the validation split.
//!
//! Only the operators those two writers use are known; anything else is an error naming the node.
//! `QuantizeLinear` is computed as ONNX defines it (divide, round half to even, add the zero point,
//! saturate) and kept as a float tensor of whole numbers, so that `DequantizeLinear` gives exactly
//! the values ONNX Runtime's integer kernels work on.

use std::collections::HashMap;

use anyhow::{bail, Context};
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, ModelProto, NodeProto, TensorProto};
use tch::{Kind, Tensor};

use crate::googlenet::Lrn;
use crate::model::lrn;

/// A model's graph, its initializers decoded once into tensors.
pub struct Interpreter<'m> {
    /// The model whose graph is run.
    model: &'m ModelProto,
    /// Initializers by name; integer types hold their whole numbers as floats.
    initializers: HashMap<String, Tensor>,
}

/// The saturation bounds of a quantized type, from its ONNX data type.
pub fn bounds(data_type: i32) -> anyhow::Result<(f64, f64)> {
    Ok(match data_type {
        t if t == DataType::UINT8 as i32 => (0.0, 255.0),
        t if t == DataType::INT8 as i32 => (-128.0, 127.0),
        t if t == DataType::INT32 as i32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        other => bail!("quantized type {other} is not uint8, int8 or int32"),
    })
}

/// Decodes an initializer (raw little-endian data, as the writers store it) into a float tensor.
fn decode(t: &TensorProto) -> anyhow::Result<Tensor> {
    let raw = &t.raw_data;
    let values: Vec<f32> = match t.data_type {
        d if d == DataType::FLOAT as i32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        d if d == DataType::UINT8 as i32 => raw.iter().map(|&b| f32::from(b)).collect(),
        d if d == DataType::INT8 as i32 => raw.iter().map(|&b| f32::from(b as i8)).collect(),
        d if d == DataType::INT32 as i32 => raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        d if d == DataType::INT64 as i32 => raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        other => bail!("initializer `{}` has data type {other}, which is not supported", t.name),
    };
    let expected: i64 = t.dims.iter().product();
    if values.len() as i64 != expected {
        bail!(
            "initializer `{}` holds {} values for dimensions {:?} (only raw data is read)",
            t.name,
            values.len(),
            t.dims
        );
    }
    Ok(Tensor::from_slice(&values).view(t.dims.as_slice()))
}

/// The attribute `name` of `node`, if present.
fn attribute<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// An integer-list attribute, or `default`.
fn ints(node: &NodeProto, name: &str, default: &[i64]) -> Vec<i64> {
    attribute(node, name).map_or_else(|| default.to_vec(), |a| a.ints.clone())
}

/// An integer attribute, or `default`.
fn int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attribute(node, name).map_or(default, |a| a.i)
}

/// A float attribute, or `default`.
fn float(node: &NodeProto, name: &str, default: f64) -> f64 {
    attribute(node, name).map_or(default, |a| f64::from(a.f))
}

/// Symmetric 2-D padding from ONNX `pads` (`[top, left, bottom, right]`); asymmetric pads are refused.
fn symmetric_pads(node: &NodeProto) -> anyhow::Result<[i64; 2]> {
    let pads = ints(node, "pads", &[0, 0, 0, 0]);
    if pads.len() != 4 || pads[0] != pads[2] || pads[1] != pads[3] {
        bail!("node `{}`: pads {pads:?} are not symmetric", node.name);
    }
    Ok([pads[0], pads[1]])
}

/// `scale` (and a zero point) shaped to broadcast along `axis` of a tensor of rank `rank`.
fn along(t: &Tensor, axis: i64, rank: i64) -> Tensor {
    if t.dim() == 0 {
        return t.shallow_clone();
    }
    let mut shape = vec![1i64; rank as usize];
    shape[axis as usize] = t.size()[0];
    t.view(shape.as_slice())
}

impl<'m> Interpreter<'m> {
    /// Decodes the initializers of `model`.
    pub fn new(model: &'m ModelProto) -> anyhow::Result<Self> {
        let graph = model.graph.as_ref().context("the model has no graph")?;
        let initializers = graph
            .initializer
            .iter()
            .map(|t| Ok((t.name.clone(), decode(t)?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Interpreter { model, initializers })
    }

    /// The data type of initializer `name` (the zero points say which integer type a node makes).
    fn data_type(&self, name: &str) -> Option<i32> {
        self.model
            .graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.data_type)
    }

    /// Runs the graph on `input` (the graph's only input) and returns its first output; `observe` sees
    /// every node's output, by name, as it is computed.
    pub fn run(&self, input: &Tensor, observe: &mut dyn FnMut(&str, &Tensor)) -> anyhow::Result<Tensor> {
        let graph = &self.model.graph;
        let input_name = &graph.input.first().context("the graph has no input")?.name;
        let output_name = &graph.output.first().context("the graph has no output")?.name;
        let mut values: HashMap<&str, Tensor> = HashMap::new();
        values.insert(input_name, input.to_kind(Kind::Float));
        tch::no_grad(|| -> anyhow::Result<()> {
            for node in &graph.node {
                let args = node
                    .input
                    .iter()
                    .map(|name| {
                        values
                            .get(name.as_str())
                            .or_else(|| self.initializers.get(name))
                            .with_context(|| format!("node `{}` reads `{name}`, which nothing wrote", node.name))
                    })
                    .collect::<anyhow::Result<Vec<&Tensor>>>()?;
                let y = self
                    .apply(node, &args)
                    .with_context(|| format!("running node `{}` ({})", node.name, node.op_type))?;
                let out = node.output.first().context("a node without output")?;
                observe(out, &y);
                values.insert(out, y);
            }
            Ok(())
        })?;
        values
            .remove(output_name.as_str())
            .with_context(|| format!("no node writes the graph output `{output_name}`"))
    }

    /// One node on its input tensors.
    fn apply(&self, node: &NodeProto, x: &[&Tensor]) -> anyhow::Result<Tensor> {
        let arity = |n: usize| -> anyhow::Result<()> {
            if x.len() < n {
                bail!("{} inputs, {n} needed", x.len());
            }
            Ok(())
        };
        arity(1)?;
        Ok(match node.op_type.as_str() {
            "Sub" => x[0] - x[1],
            "Mul" => x[0] * x[1],
            "Div" => x[0] / x[1],
            "Add" => x[0] + x[1],
            "Relu" => x[0].relu(),
            "Conv" => {
                arity(2)?;
                let strides = ints(node, "strides", &[1, 1]);
                x[0].conv2d(
                    x[1],
                    x.get(2).copied(),
                    strides.as_slice(),
                    symmetric_pads(node)?,
                    [1, 1],
                    int(node, "group", 1),
                )
            }
            "MaxPool" => {
                let kernel = ints(node, "kernel_shape", &[]);
                let strides = ints(node, "strides", &[1, 1]);
                x[0].max_pool2d(
                    kernel.as_slice(),
                    strides.as_slice(),
                    symmetric_pads(node)?,
                    [1, 1],
                    int(node, "ceil_mode", 0) != 0,
                )
            }
            "LRN" => {
                let p = Lrn {
                    size: int(node, "size", 5),
                    alpha: float(node, "alpha", 1e-4),
                    beta: float(node, "beta", 0.75),
                    k: float(node, "bias", 1.0),
                };
                lrn(x[0], &p)
            }
            "Concat" => Tensor::cat(x, int(node, "axis", 1)),
            "GlobalAveragePool" => x[0].adaptive_avg_pool2d([1, 1]),
            "Flatten" => x[0].flatten(int(node, "axis", 1), -1),
            "Gemm" => {
                arity(2)?;
                let b = if int(node, "transB", 0) != 0 {
                    x[1].tr()
                } else {
                    x[1].shallow_clone()
                };
                let y = x[0].matmul(&b);
                match x.get(2) {
                    Some(bias) => y + *bias,
                    None => y,
                }
            }
            "Softmax" => x[0].softmax(int(node, "axis", -1), Kind::Float),
            "QuantizeLinear" => {
                arity(3)?;
                let (lo, hi) = bounds(
                    self.data_type(&node.input[2])
                        .context("zero point is not an initializer")?,
                )?;
                let rank = x[0].dim() as i64;
                let axis = int(node, "axis", 1);
                let q = (x[0] / along(x[1], axis, rank)).round() + along(x[2], axis, rank);
                q.clamp(lo, hi)
            }
            "DequantizeLinear" => {
                arity(3)?;
                let rank = x[0].dim() as i64;
                let axis = int(node, "axis", 1);
                (x[0] - along(x[2], axis, rank)) * along(x[1], axis, rank)
            }
            other => bail!("operator {other} is not one `train` writes"),
        })
    }
}
