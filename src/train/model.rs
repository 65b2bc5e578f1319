//! The GoogLeNet of [`crate::googlenet`] as a libtorch module, with its input normalisation.
//!
//! The module takes raw pixels (0..=255, as preprocessing produces them), subtracts the training mean
//! image, multiplies by a per-channel scale, runs the network and returns logits. Mean and scale live
//! in the var store (not trained) so checkpoints and the ONNX export carry them.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::googlenet::{self, Conv, Layer, Lrn, MaxPool, Norm, Step, LAYERS};

/// The shape of a network: input side, channels, number of classes and its normalisation layout.
#[derive(Debug, Clone, Copy)]
pub struct NetShape {
    /// Side of the square input (224 by default; 64 or 96 for quick CPU runs).
    pub input_size: i64,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: i64,
    /// Output classes (2: nope, like).
    pub classes: i64,
    /// LRN, batch normalisation or neither ([`Norm`]): which parameters and steps the network has.
    pub norm: Norm,
}

/// Name of the mean image in the var store: `[1, C, S, S]`.
pub const MEAN: &str = "normalize.mean";
/// Name of the per-channel scale in the var store: `[1, C, 1, 1]`.
pub const SCALE: &str = "normalize.scale";

/// How one forward pass runs.
#[derive(Debug, Clone, Copy)]
struct Pass {
    /// Training mode: dropout on, and batch normalisation with the batch's own statistics, moving
    /// the running ones towards them.
    train: bool,
    /// The arithmetic of the network's body ([`crate::mixed`]).
    compute: Kind,
    /// The weight of this batch in the running statistics (training mode only).
    momentum: f64,
}

/// One built step of the network: a [`Layer`] (or an inception branch's [`Step`]) with its parameters.
enum Block {
    /// Convolution, batch normalisation in the [`Norm::Batch`] layout, and ReLU: the parameters and
    /// the kernel's stride and padding (the normalisation boxed: it is most of the variant's size).
    Conv(nn::Conv2D, Option<Box<nn::BatchNorm>>, Conv),
    /// Max pooling.
    MaxPool(MaxPool),
    /// Local response normalisation ([`googlenet::LRN`]).
    Lrn,
    /// Branches run on the same input, concatenated along the channels.
    Inception(Vec<Vec<Block>>),
    /// Global average pooling, flattened to `[N, C]`.
    GlobalAvgPool,
    /// Dropout with this probability, in training only.
    Dropout(f64),
    /// The fully connected layer to the logits.
    Classifier(nn::Linear),
}

impl Block {
    /// Applies this block to `x`; `train` enables dropout; convolutions run in `compute` precision
    /// (their fp32 weights cast on the way, so gradients reach the fp32 weights), and the network's
    /// end (pooling to features, dropout, the classifier) in fp32.
    fn forward(&self, x: &Tensor, pass: Pass) -> Tensor {
        let Pass { train, compute, .. } = pass;
        match self {
            Block::Conv(c, bn, spec) => {
                let ws = c.ws.to_kind(compute);
                let bs = c.bs.as_ref().map(|b| b.to_kind(compute));
                let y = x.conv2d(
                    &ws,
                    bs.as_ref(),
                    [spec.stride, spec.stride],
                    [spec.pad, spec.pad],
                    [1, 1],
                    1,
                );
                // libtorch normalises a bf16 or fp16 input with fp32 parameters and running
                // statistics, so those stay fp32 and are updated in place.
                let mut y = match bn {
                    Some(bn) => y.batch_norm(
                        bn.ws.as_ref(),
                        bn.bs.as_ref(),
                        Some(&bn.running_mean),
                        Some(&bn.running_var),
                        train,
                        pass.momentum,
                        googlenet::BATCH_NORM_EPS,
                        true,
                    ),
                    None => y,
                };
                // The ReLU overwrites its input: neither the convolution's nor the normalisation's
                // backward pass needs its own output, so one buffer a layer is saved.
                y.relu_()
            }
            Block::MaxPool(p) => x.max_pool2d(
                [p.kernel, p.kernel],
                [p.stride, p.stride],
                [p.pad, p.pad],
                [1, 1],
                p.ceil,
            ),
            Block::Lrn => lrn(x, &googlenet::LRN),
            Block::Inception(branches) => {
                let ends: Vec<Tensor> = branches.iter().map(|b| forward_all(b, x, pass)).collect();
                Tensor::cat(&ends, 1)
            }
            Block::GlobalAvgPool => x.to_kind(Kind::Float).adaptive_avg_pool2d([1, 1]).flatten(1, -1),
            Block::Dropout(p) => x.dropout(*p, train),
            Block::Classifier(linear) => linear.forward(x),
        }
    }
}

/// Applies `blocks` one after the other.
fn forward_all(blocks: &[Block], x: &Tensor, pass: Pass) -> Tensor {
    blocks
        .iter()
        .fold(x.shallow_clone(), |x, block| block.forward(&x, pass))
}

/// The trainable network.
pub struct GoogLeNet {
    /// The layers of [`LAYERS`], built, in order.
    blocks: Vec<Block>,
    /// The training mean image `[1, C, S, S]` (var store: [`MEAN`]), subtracted from the input.
    mean: Tensor,
    /// One factor per channel `[1, C, 1, 1]` (var store: [`SCALE`]), applied after the mean.
    scale: Tensor,
    /// Input side, channels and classes, to check what `set_normalization` is given.
    shape: NetShape,
}

/// The original's initialisation (BVLC GoogLeNet in Caffe): "xavier" weights, uniform in
/// +-sqrt(3 / fan_in). PyTorch's default (+-1/sqrt(fan_in)) shrinks the signal threefold in variance
/// at every layer, and this network, which has no batch normalisation, then never leaves loss ln 2;
/// tch's own default (Kaiming uniform) diverged at the recipe's learning rate.
fn xavier(fan_in: i64) -> nn::Init {
    let bound = (3.0 / fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}

/// The original's convolution bias: the constant 0.2, which keeps the ReLUs alive at the start.
const CONV_BIAS: nn::Init = nn::Init::Const(0.2);

/// The convolution `spec` on `input` channels, its parameters under `path`, weights channels-last;
/// in the [`Norm::Batch`] layout without a bias and followed by a batch normalisation (under
/// `path / "bn"`: scale 1, shift 0, running mean 0 and variance 1 to start).
fn conv(path: nn::Path, input: i64, spec: &Conv, norm: Norm) -> Block {
    let batch = norm == Norm::Batch;
    let config = nn::ConvConfig {
        stride: spec.stride,
        padding: spec.pad,
        ws_init: xavier(input * spec.kernel * spec.kernel),
        bs_init: CONV_BIAS,
        // A bias before batch normalisation is subtracted again with the batch's mean.
        bias: !batch,
        ..Default::default()
    };
    let mut c = nn::conv2d(&path, input, spec.out, spec.kernel, config);
    // The variable keeps its identity (the var store and the optimizer share it); only its layout changes.
    tch::no_grad(|| c.ws.set_data(&channels_last(&c.ws)));
    let bn = batch.then(|| {
        let config = nn::BatchNormConfig {
            eps: googlenet::BATCH_NORM_EPS,
            momentum: googlenet::BATCH_NORM_MOMENTUM,
            ..Default::default()
        };
        Box::new(nn::batch_norm2d(&path / "bn", spec.out, config))
    });
    Block::Conv(c, bn, *spec)
}

/// The same `[N, C, H, W]` tensor with channels-last (NHWC) strides. libtorch's convolutions (oneDNN
/// on the CPU, cuDNN on CUDA) run faster on this layout: the same training step at input 224 went
/// from 7.7 to 12.9 images/s on the 2-core CPU (README, performance). Shape and values are
/// unchanged; a tensor that is already channels-last is returned without a copy.
pub fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Builds one inception branch on `input` channels in layout `norm`, its parameters under `module`.
fn branch(module: &nn::Path, input: i64, steps: &[Step], norm: Norm) -> Vec<Block> {
    let mut channels = input;
    steps
        .iter()
        .map(|step| {
            let block = match step {
                Step::Conv(spec) => conv(module / spec.name, channels, spec, norm),
                Step::MaxPool(pool) => Block::MaxPool(*pool),
            };
            channels = step.out_channels(channels);
            block
        })
        .collect()
}

impl GoogLeNet {
    /// Creates the network's variables under `root`, freshly initialised; mean 0 and scale 1 until
    /// [`GoogLeNet::set_normalization`] is called.
    pub fn new(root: &nn::Path, shape: NetShape) -> Self {
        let mut channels = shape.channels;
        let mut blocks = Vec::with_capacity(LAYERS.len());
        for layer in LAYERS {
            blocks.push(match *layer {
                Layer::Conv(spec) => {
                    let block = conv(root / spec.name, channels, &spec, shape.norm);
                    channels = spec.out;
                    block
                }
                Layer::MaxPool(pool) => Block::MaxPool(pool),
                Layer::Lrn if shape.norm.has_lrn() => Block::Lrn,
                Layer::Lrn => continue,
                Layer::Inception { name, spec } => {
                    let module = root / name;
                    let branches = spec
                        .branches()
                        .iter()
                        .map(|steps| branch(&module, channels, steps, shape.norm))
                        .collect();
                    channels = spec.out_channels(channels);
                    Block::Inception(branches)
                }
                Layer::GlobalAvgPool => Block::GlobalAvgPool,
                Layer::Dropout(p) => Block::Dropout(p),
                Layer::Classifier { name } => {
                    let config = nn::LinearConfig {
                        ws_init: xavier(channels),
                        bs_init: Some(nn::Init::Const(0.0)),
                        bias: true,
                    };
                    Block::Classifier(nn::linear(root / name, channels, shape.classes, config))
                }
            });
        }
        let norm = root / "normalize";
        let s = shape.input_size;
        let mean = norm.zeros_no_train("mean", &[1, shape.channels, s, s]);
        let scale = norm.ones_no_train("scale", &[1, shape.channels, 1, 1]);
        GoogLeNet {
            blocks,
            mean,
            scale,
            shape,
        }
    }

    /// The network's normalisation layout.
    pub fn norm(&self) -> Norm {
        self.shape.norm
    }

    /// Sets the input normalisation: `mean` is a `[C, S, S]` mean image, `scale` one factor per channel.
    pub fn set_normalization(&mut self, mean: &[f32], scale: &[f32]) {
        let (c, s) = (self.shape.channels, self.shape.input_size);
        assert_eq!(mean.len() as i64, c * s * s, "mean image has the wrong size");
        assert_eq!(scale.len() as i64, c, "one scale per channel");
        tch::no_grad(|| {
            self.mean.copy_(
                &Tensor::from_slice(mean)
                    .view([1, c, s, s])
                    .to_device(self.mean.device()),
            );
            self.scale.copy_(
                &Tensor::from_slice(scale)
                    .view([1, c, 1, 1])
                    .to_device(self.scale.device()),
            );
        });
    }

    /// Logits for a batch of raw pixels `[N, C, S, S]` in 0..=255, computed in fp32 as the exported
    /// graph computes them; `train` enables dropout and, in the [`Norm::Batch`] layout, normalises
    /// with the batch's own statistics and moves the running ones towards them (evaluation uses the
    /// running statistics, as the export does).
    pub fn logits(&self, pixels: &Tensor, train: bool) -> Tensor {
        self.logits_in(pixels, train, Kind::Float)
    }

    /// Logits (fp32) with the convolutions, pooling and LRN of the body computed in `compute`
    /// (`Kind::Float`, or `BFloat16`/`Half` for mixed-precision training, [`crate::mixed`]): the
    /// input normalisation and the network's end stay in fp32, and the weights stay fp32 in the var
    /// store (cast for each use), as PyTorch's autocast does.
    pub fn logits_in(&self, pixels: &Tensor, train: bool, compute: Kind) -> Tensor {
        let pass = Pass {
            train,
            compute,
            momentum: googlenet::BATCH_NORM_MOMENTUM,
        };
        self.forward(pixels, pass)
    }

    /// The logits of `pixels` under `pass`.
    fn forward(&self, pixels: &Tensor, pass: Pass) -> Tensor {
        let x = ((channels_last(pixels) - &self.mean) * &self.scale).to_kind(pass.compute);
        forward_all(&self.blocks, &x, pass)
    }

    /// Measures the running statistics of the batch normalisations afresh, with the current
    /// weights, on `batches` of raw pixels: each running mean and variance becomes the average of
    /// its per-batch figures over them (fp32, no gradients). Does nothing in the other layouts.
    ///
    /// Training moves those statistics by a tenth a step, so after the few dozen steps of a small
    /// run they still carry the initial 0 and 1 and the statistics of weights since changed, and
    /// evaluation (which uses them, as the export does) scores with a network that never existed: a
    /// few hundred photos at batch 16 then validated at chance for the first epochs. `train` calls
    /// this before every validation and before exporting an untrained model.
    pub fn measure_statistics(&self, batches: impl IntoIterator<Item = Tensor>) {
        if self.shape.norm != Norm::Batch {
            return;
        }
        tch::no_grad(|| {
            for (k, x) in batches.into_iter().enumerate() {
                // The first batch replaces the statistics, the k-th weighs 1/k: a plain average.
                let pass = Pass {
                    train: true,
                    compute: Kind::Float,
                    momentum: 1.0 / (k + 1) as f64,
                };
                let _ = self.forward(&x, pass);
            }
        });
    }

    /// Class probabilities in evaluation mode: softmax of the logits divided by `temperature`,
    /// exactly what the exported graph computes.
    pub fn probabilities(&self, pixels: &Tensor, temperature: f64) -> Tensor {
        tch::no_grad(|| (self.logits(pixels, false) / temperature).softmax(-1, Kind::Float))
    }
}

/// Across-channel local response normalisation from libtorch primitives (tch has no LRN):
/// `x / (k + alpha * mean(x^2 over `size` neighbouring channels))^beta`, with zero padding at the
/// channel edges, as in Caffe, PyTorch and ONNX's `LRN`.
///
/// The window runs along the channels, which are the innermost axis of a channels-last tensor: the
/// squares are seen as `N*H*W` rows of `C` values and averaged by a one-dimensional pooling over each
/// row (zeros padded, always divided by `size`). PyTorch's `local_response_norm` pools a 5-D view
/// with `avg_pool3d` instead, which libtorch's CPU kernel spreads over only `N` work items: that
/// formulation took a quarter of the whole training step at input 112 (README, performance).
pub fn lrn(x: &Tensor, p: &Lrn) -> Tensor {
    let (n, c, h, w) = x.size4().expect("LRN takes an [N, C, H, W] tensor");
    let rows = x.square().permute([0, 2, 3, 1]).reshape([-1, 1, c]);
    let mean = rows
        .avg_pool1d([p.size], [1], [p.size / 2], false, true)
        .narrow(2, 0, c)
        .reshape([n, h, w, c])
        .permute([0, 3, 1, 2]);
    // The scaled mean is this function's own: adding `k` in place saves a buffer (an addition's
    // backward pass needs neither operand).
    let mut base = mean * p.alpha;
    let _ = base.g_add_scalar_(p.k);
    x / base.pow_tensor_scalar(p.beta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// A fresh two-class network of input `size` and `channels` on the CPU, in the LRN layout, with
    /// its var store.
    fn network(size: i64, channels: i64) -> (nn::VarStore, GoogLeNet) {
        network_with(size, channels, Norm::Lrn)
    }

    /// The same in layout `norm`.
    fn network_with(size: i64, channels: i64, norm: Norm) -> (nn::VarStore, GoogLeNet) {
        let vs = nn::VarStore::new(Device::Cpu);
        let shape = NetShape {
            input_size: size,
            channels,
            classes: 2,
            norm,
        };
        let net = GoogLeNet::new(&vs.root(), shape);
        (vs, net)
    }

    /// The convolution weights live channels-last in the var store (what the optimizer updates and
    /// checkpoints save), and `channels_last` changes strides, never values.
    #[test]
    fn weights_and_inputs_are_channels_last() {
        let (vs, _net) = network(64, 3);
        let convs: Vec<_> = vs
            .variables()
            .into_iter()
            .filter(|(name, t)| t.dim() == 4 && name.ends_with("weight"))
            .collect();
        assert!(convs.len() > 50, "{} convolution weights", convs.len());
        for (name, t) in convs {
            assert_eq!(
                t.stride()[1],
                1,
                "{name} is not channels-last: strides {:?}",
                t.stride()
            );
            assert!(t.requires_grad(), "{name} lost its gradient");
        }
        let x = Tensor::randn([2, 3, 5, 4], (Kind::Float, Device::Cpu));
        let y = channels_last(&x);
        assert_eq!(y.size(), x.size());
        assert_eq!(y.stride(), vec![60, 1, 12, 3]);
        assert!(y.equal(&x));
    }

    /// Mixed precision: the body in bf16 gives logits close to fp32's, and the gradients arrive in
    /// fp32 on the fp32 weights, pointing the same way as fp32's.
    #[test]
    fn bf16_body_keeps_fp32_weights_and_gradients() {
        let (vs, mut net) = network(64, 1);
        net.set_normalization(&vec![127.0; 64 * 64], &[1.0 / 64.0]);
        let x = Tensor::rand([4, 1, 64, 64], (Kind::Float, Device::Cpu)) * 255.0;
        let variables = vs.variables();
        let watched = [&variables["conv1.weight"], &variables["fc.weight"]];
        let run = |kind: Kind| {
            for p in watched {
                p.shallow_clone().zero_grad();
            }
            let logits = net.logits_in(&x, false, kind);
            assert_eq!(logits.kind(), Kind::Float);
            // The summed LIKE margin: an untrained net's softmax is saturated, where a cross-entropy
            // gradient would weigh each image by how far from saturation it is, and rounding decides that.
            (logits.select(1, 1) - logits.select(1, 0)).sum(Kind::Float).backward();
            let grads: Vec<Tensor> = watched.iter().map(|p| p.grad().copy()).collect();
            for g in &grads {
                assert_eq!(g.kind(), Kind::Float);
            }
            (logits.detach(), grads)
        };
        let (l32, g32) = run(Kind::Float);
        let (l16, g16) = run(Kind::BFloat16);
        assert!(watched.iter().all(|p| p.kind() == Kind::Float));
        let logit_gap = (&l16 - &l32).abs().max().double_value(&[]);
        let scale = l32.abs().max().double_value(&[]).max(1.0);
        assert!(
            logit_gap < 0.05 * scale,
            "bf16 logits differ by {logit_gap} (largest {scale})"
        );
        // bf16 keeps 8 bits of mantissa: the classifier's gradient (fp32 arithmetic on bf16
        // features) stays nearly parallel; the first layer's, back through the whole bf16 body,
        // less so but still the same direction.
        for ((name, least), (a, b)) in [("conv1", 0.9), ("fc", 0.999)].iter().zip(g16.iter().zip(&g32)) {
            let cosine = ((a * b).sum(Kind::Float) / (a.norm() * b.norm())).double_value(&[]);
            assert!(
                cosine > *least,
                "bf16 and fp32 gradients of {name} have cosine {cosine}"
            );
        }
    }

    /// The batch-normalised layout: convolutions without bias, a normalisation after each (its scale
    /// and shift trained, its running statistics not), no LRN. A bf16 training step normalises with
    /// the batch's statistics, moves the fp32 running ones and brings fp32 gradients to the scales;
    /// evaluation uses the running statistics, so it is the same for any batch an image is in.
    #[test]
    fn batch_layout_trains_on_batch_statistics_and_evaluates_on_running_ones() {
        let (vs, mut net) = network_with(32, 1, Norm::Batch);
        net.set_normalization(&vec![127.0; 32 * 32], &[1.0 / 64.0]);
        let v = vs.variables();
        assert!(!v.contains_key("conv1.bias") && v.contains_key("inception_5b.b3.bn.weight"));
        assert!(v["conv1.bn.weight"].requires_grad() && !v["conv1.bn.running_mean"].requires_grad());
        assert!(!net.blocks.iter().any(|b| matches!(b, Block::Lrn)));
        assert!(network(32, 1).1.blocks.iter().any(|b| matches!(b, Block::Lrn)));

        let x = Tensor::rand([6, 1, 32, 32], (Kind::Float, Device::Cpu)) * 255.0;
        let logits = net.logits_in(&x, true, Kind::BFloat16);
        (logits.select(1, 1) - logits.select(1, 0)).sum(Kind::Float).backward();
        let (mean, scale) = (&v["conv1.bn.running_mean"], &v["conv1.bn.weight"]);
        assert_eq!((mean.kind(), scale.grad().kind()), (Kind::Float, Kind::Float));
        assert!(
            mean.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "running mean moved"
        );
        assert!(scale.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);

        let alone = net.logits(&x.narrow(0, 0, 1), false);
        let in_batch = net.logits(&x, false).narrow(0, 0, 1);
        assert!(alone.allclose(&in_batch, 1e-4, 1e-4, false), "{alone} vs {in_batch}");
        let trained_alone = net.logits(&x.narrow(0, 0, 2), true).narrow(0, 0, 1);
        assert!(!trained_alone.allclose(&in_batch, 1e-4, 1e-4, false));
    }

    #[test]
    fn lrn_matches_a_direct_computation() {
        let x = Tensor::randn([2, 7, 3, 4], (Kind::Double, Device::Cpu)) * 10.0;
        let p = Lrn {
            size: 5,
            alpha: 0.01,
            beta: 0.75,
            k: 2.0,
        };
        let y = lrn(&x, &p);
        // The same values whatever the layout the input comes in.
        assert!(lrn(&channels_last(&x), &p).allclose(&y, 1e-12, 1e-12, false));
        let (n, c, h, w) = x.size4().unwrap();
        let mut worst = 0f64;
        for ni in 0..n {
            for ci in 0..c {
                for hi in 0..h {
                    for wi in 0..w {
                        let lo = (ci - 2).max(0);
                        let hi_c = (ci + 2).min(c - 1);
                        let sum: f64 = (lo..=hi_c).map(|j| x.double_value(&[ni, j, hi, wi]).powi(2)).sum();
                        let v = x.double_value(&[ni, ci, hi, wi]);
                        let expected = v / (p.k + p.alpha * sum / p.size as f64).powf(p.beta);
                        worst = worst.max((y.double_value(&[ni, ci, hi, wi]) - expected).abs());
                    }
                }
            }
        }
        assert!(worst < 1e-9, "LRN differs from the direct computation by {worst}");
    }

    #[test]
    fn forward_gives_one_probability_pair_per_image_at_small_and_full_sizes() {
        for (size, channels) in [(64, 1), (96, 3), (224, 1)] {
            let (_vs, net) = network(size, channels);
            let x = Tensor::rand([2, channels, size, size], (Kind::Float, Device::Cpu)) * 255.0;
            let logits = tch::no_grad(|| net.logits(&x, false));
            let margins: Vec<f64> = (0..2)
                .map(|i| logits.double_value(&[i, 1]) - logits.double_value(&[i, 0]))
                .collect();
            // Margins of zero would make every temperature give 0.5: nothing to compare.
            assert!(margins.iter().any(|m| m.abs() > 1e-3), "logit margins {margins:?}");
            for temperature in [0.5, 1.0, 2.0] {
                let p = net.probabilities(&x, temperature);
                assert_eq!(p.size(), [2, 2]);
                // [nope, like] = softmax(logits / T): LIKE is the logistic of the margin over T.
                for (i, margin) in margins.iter().enumerate() {
                    let like = 1.0 / (1.0 + (-margin / temperature).exp());
                    let (got_nope, got_like) = (p.double_value(&[i as i64, 0]), p.double_value(&[i as i64, 1]));
                    assert!(
                        (got_like - like).abs() < 1e-5 && (got_nope - (1.0 - like)).abs() < 1e-5,
                        "{size}x{size}x{channels}, T {temperature}, image {i}: [{got_nope}, {got_like}], \
                         expected LIKE {like} from margin {margin}"
                    );
                }
            }
        }
    }
}
