//! Writes a trained network as an ONNX model the daemon can load: the graph is built by walking the
//! same layer list as the libtorch module, the weights come from its var store, and the model's
//! contract ([`ModelInfo`]) goes into the metadata.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::{EnumOrUnknown, MessageField};
use tch::nn::VarStore;
use tch::Tensor;

use crate::googlenet::{Conv, Layer, MaxPool, Norm, Step, BATCH_NORM_EPS, LAYERS, LRN};
use crate::model::{NetShape, MEAN, SCALE};
use swipebot_core::model_info::{keys, ModelInfo, Precision, INPUT_NAME, OUTPUT_NAME};

/// The ONNX operator set the graph is written against.
pub const OPSET: i64 = 17;
/// The ONNX IR version matching [`OPSET`].
const IR_VERSION: i64 = 8;

/// Collects nodes and initializers while the layer list is walked.
struct GraphBuilder {
    /// The var store's tensors not yet written; each is taken once, and any left over at the end
    /// means the module has a parameter the graph does not use.
    weights: HashMap<String, Tensor>,
    /// The network's layout: whether convolutions carry a batch normalisation to fold.
    norm: Norm,
    /// The graph being written.
    graph: GraphProto,
    /// Nodes written so far, for unique output names.
    counter: usize,
}

/// A node attribute of type `kind`, filled in by `fill`.
fn attr(name: &str, kind: AttributeType, fill: impl FnOnce(&mut AttributeProto)) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        type_: EnumOrUnknown::new(kind),
        ..Default::default()
    };
    fill(&mut a);
    a
}

/// An integer-list attribute.
fn ints(name: &str, values: &[i64]) -> AttributeProto {
    attr(name, AttributeType::INTS, |a| a.ints = values.to_vec())
}

/// An integer attribute.
fn int(name: &str, value: i64) -> AttributeProto {
    attr(name, AttributeType::INT, |a| a.i = value)
}

/// A float attribute (ONNX stores it as f32).
fn float(name: &str, value: f64) -> AttributeProto {
    attr(name, AttributeType::FLOAT, |a| a.f = value as f32)
}

/// A float tensor with its data as little-endian raw bytes.
fn float_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.to_vec(),
        data_type: DataType::FLOAT as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// The type of a float graph input or output; `None` dimensions are the batch `N`.
fn tensor_value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("N".to_string()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        shape: MessageField::some(TensorShapeProto {
            dim,
            ..Default::default()
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.to_string(),
        type_: MessageField::some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl GraphBuilder {
    /// Takes the var-store tensor `name` out of the ones left to write.
    fn take(&mut self, name: &str) -> anyhow::Result<Tensor> {
        self.weights
            .remove(name)
            .with_context(|| format!("the network has no parameter `{name}`"))
    }

    /// Moves the var-store tensor `name` into the graph as an initializer and returns its name.
    fn initializer(&mut self, name: &str) -> anyhow::Result<String> {
        let tensor = self.take(name)?;
        self.push(name, &tensor)
    }

    /// Writes `tensor` into the graph as the initializer `name` (fp32) and returns its name.
    fn push(&mut self, name: &str, tensor: &Tensor) -> anyhow::Result<String> {
        let dims = tensor.size();
        let data = Vec::<f32>::try_from(
            tensor
                .to_device(tch::Device::Cpu)
                .to_kind(tch::Kind::Float)
                .flatten(0, -1),
        )
        .with_context(|| format!("reading parameter `{name}`"))?;
        self.graph.initializer.push(float_tensor(name, &dims, &data));
        Ok(name.to_string())
    }

    /// A constant that is not a network parameter (the temperature).
    fn constant(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        self.graph.initializer.push(float_tensor(name, dims, data));
        name.to_string()
    }

    /// Appends a node and returns the name of its (single) output.
    fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.counter += 1;
        let output = format!("{}_{}", op.to_lowercase(), self.counter);
        self.graph.node.push(NodeProto {
            op_type: op.to_string(),
            name: output.clone(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    /// The weights and bias of convolution `name` as initializers `<name>.weight` and `<name>.bias`:
    /// the var store's own, or in the [`Norm::Batch`] layout the convolution with its normalisation
    /// folded in. In evaluation the normalisation is `(y - mean) * gamma / sqrt(var + eps) + beta`
    /// for each output channel, an affine map of the convolution's output: the weights of channel
    /// `o` are multiplied by `gamma / sqrt(var + eps)` and the bias is `beta - mean * that`. Computed
    /// in f64, so the folded graph matches the module to float rounding.
    fn conv_parameters(&mut self, name: &str) -> anyhow::Result<(String, String)> {
        let weight = format!("{name}.weight");
        let bias = format!("{name}.bias");
        if self.norm != Norm::Batch {
            return Ok((self.initializer(&weight)?, self.initializer(&bias)?));
        }
        let mut part = |p: &str| -> anyhow::Result<Tensor> {
            Ok(self
                .take(&format!("{name}.{p}"))?
                .to_device(tch::Device::Cpu)
                .to_kind(tch::Kind::Double))
        };
        let (w, gamma, beta) = (part("weight")?, part("bn.weight")?, part("bn.bias")?);
        let (mean, var) = (part("bn.running_mean")?, part("bn.running_var")?);
        let (w, b) = tch::no_grad(|| {
            let factor = gamma / (var + BATCH_NORM_EPS).sqrt();
            let b = beta - mean * &factor;
            (w * factor.view([-1, 1, 1, 1]), b)
        });
        Ok((self.push(&weight, &w)?, self.push(&bias, &b)?))
    }

    /// The convolution `spec` with bias, then ReLU; its parameters are `<name>.weight` and `<name>.bias`.
    fn conv_relu(&mut self, x: &str, name: &str, spec: &Conv) -> anyhow::Result<String> {
        let (w, b) = self.conv_parameters(name)?;
        let attrs = vec![
            ints("kernel_shape", &[spec.kernel, spec.kernel]),
            ints("strides", &[spec.stride, spec.stride]),
            ints("pads", &[spec.pad; 4]),
        ];
        let y = self.node("Conv", &[x, &w, &b], attrs);
        Ok(self.node("Relu", &[&y], vec![]))
    }

    /// Max pooling as `pool` describes it.
    fn max_pool(&mut self, x: &str, pool: &MaxPool) -> String {
        let attrs = vec![
            ints("kernel_shape", &[pool.kernel, pool.kernel]),
            ints("strides", &[pool.stride, pool.stride]),
            ints("pads", &[pool.pad; 4]),
            int("ceil_mode", i64::from(pool.ceil)),
        ];
        self.node("MaxPool", &[x], attrs)
    }

    /// One inception branch of module `module` applied to `x`; returns its output.
    fn branch(&mut self, x: &str, module: &str, steps: &[Step]) -> anyhow::Result<String> {
        let mut y = x.to_string();
        for step in steps {
            y = match step {
                Step::Conv(spec) => self.conv_relu(&y, &format!("{module}.{}", spec.name), spec)?,
                Step::MaxPool(pool) => self.max_pool(&y, pool),
            };
        }
        Ok(y)
    }
}

/// Builds the ONNX model of a network whose parameters are in `vs`, with `info` as its metadata.
pub fn build_model(vs: &VarStore, shape: NetShape, info: &ModelInfo) -> anyhow::Result<ModelProto> {
    if i64::from(info.input_size) != shape.input_size || info.recipe.channels.count() as i64 != shape.channels {
        bail!(
            "model metadata ({}x{}, {} channels) does not match the network ({}x{}, {} channels)",
            info.input_size,
            info.input_size,
            info.recipe.channels.count(),
            shape.input_size,
            shape.input_size,
            shape.channels
        );
    }
    let mut b = GraphBuilder {
        weights: vs.variables(),
        norm: shape.norm,
        graph: GraphProto {
            name: "swipebot-googlenet".into(),
            ..Default::default()
        },
        counter: 0,
    };
    let mean = b.initializer(MEAN)?;
    let scale = b.initializer(SCALE)?;
    let centred = b.node("Sub", &[INPUT_NAME, &mean], vec![]);
    let mut x = b.node("Mul", &[&centred, &scale], vec![]);
    for layer in LAYERS {
        x = match *layer {
            Layer::Conv(spec) => b.conv_relu(&x, spec.name, &spec)?,
            Layer::MaxPool(pool) => b.max_pool(&x, &pool),
            Layer::Lrn if !shape.norm.has_lrn() => x,
            Layer::Lrn => {
                let attrs = vec![
                    int("size", LRN.size),
                    float("alpha", LRN.alpha),
                    float("beta", LRN.beta),
                    float("bias", LRN.k),
                ];
                b.node("LRN", &[&x], attrs)
            }
            Layer::Inception { name, spec } => {
                let ends = spec
                    .branches()
                    .iter()
                    .map(|steps| b.branch(&x, name, steps))
                    .collect::<anyhow::Result<Vec<String>>>()?;
                let refs: Vec<&str> = ends.iter().map(String::as_str).collect();
                b.node("Concat", &refs, vec![int("axis", 1)])
            }
            Layer::GlobalAvgPool => {
                let pooled = b.node("GlobalAveragePool", &[&x], vec![]);
                b.node("Flatten", &[&pooled], vec![int("axis", 1)])
            }
            // Dropout is the identity at inference.
            Layer::Dropout(_) => x,
            Layer::Classifier { name } => {
                let w = b.initializer(&format!("{name}.weight"))?;
                let bias = b.initializer(&format!("{name}.bias"))?;
                b.node("Gemm", &[&x, &w, &bias], vec![int("transB", 1)])
            }
        };
    }
    let temperature = b.constant("temperature", &[], &[info.temperature]);
    let scaled = b.node("Div", &[&x, &temperature], vec![]);
    b.node("Softmax", &[&scaled], vec![int("axis", 1)]);
    // Name the final output as the contract says.
    b.graph.node.last_mut().expect("softmax node").output = vec![OUTPUT_NAME.to_string()];
    if let Some(left) = b.weights.keys().next() {
        bail!("parameter `{left}` is not used by the exported graph: the layer list and the module disagree");
    }
    let (c, s) = (shape.channels, shape.input_size);
    b.graph
        .input
        .push(tensor_value(INPUT_NAME, &[None, Some(c), Some(s), Some(s)]));
    b.graph
        .output
        .push(tensor_value(OUTPUT_NAME, &[None, Some(shape.classes)]));

    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        producer_name: "swipebot".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "GoogLeNet LIKE/NOPE classifier; see models/README.md for the metadata contract".into(),
        graph: MessageField::some(b.graph),
        metadata_props: info
            .to_properties()
            .into_iter()
            .chain([(keys::PRECISION, Precision::Fp32.as_str().to_string())])
            .map(|(key, value)| StringStringEntryProto {
                key: key.to_string(),
                value,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// Exports to `path`, atomically: the file appears whole or not at all. Returns the SHA-256 of the
/// bytes written, in hex (the `model_sha256` the daemon journals for this model).
pub fn export(vs: &VarStore, shape: NetShape, info: &ModelInfo, path: &Path) -> anyhow::Result<String> {
    let model = build_model(vs, shape, info)?;
    let bytes = model.write_to_bytes().context("encoding the ONNX model")?;
    swipebot_core::fsutil::write_atomic(path, &bytes).with_context(|| format!("writing model {}", path.display()))?;
    Ok(swipebot_core::model_info::sha256_hex(&bytes))
}
