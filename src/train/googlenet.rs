//! GoogLeNet v1 (Szegedy et al. 2014, the BVLC deploy layout), written down once as data.
//!
//! Both the libtorch module ([`crate::model`]) and the ONNX exporter ([`crate::export`]) walk this
//! list, inception branches included ([`Inception::branches`]), and neither states a kernel, stride
//! or padding of its own, so the trained network and the deployed graph cannot drift apart. The auxiliary
//! classifiers of the paper's training layout are left out, as in the deploy layout.

/// Local response normalisation parameters (Caffe's across-channel LRN as used by GoogLeNet).
#[derive(Debug, Clone, Copy)]
pub struct Lrn {
    /// Channels in the window.
    pub size: i64,
    /// Scale of the mean of squares over the window.
    pub alpha: f64,
    /// Exponent.
    pub beta: f64,
    /// Additive constant.
    pub k: f64,
}

/// GoogLeNet's LRN: a window of 5 channels, alpha 1e-4, beta 0.75, k 1.
pub const LRN: Lrn = Lrn {
    size: 5,
    alpha: 1e-4,
    beta: 0.75,
    k: 1.0,
};

/// A convolution followed by ReLU.
#[derive(Debug, Clone, Copy)]
pub struct Conv {
    /// Parameter name (inside an inception module, the part after the module's name).
    pub name: &'static str,
    /// Output channels.
    pub out: i64,
    /// Square kernel side.
    pub kernel: i64,
    /// Stride.
    pub stride: i64,
    /// Zero padding on each side.
    pub pad: i64,
}

/// Max pooling over square windows.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool {
    /// Window side.
    pub kernel: i64,
    /// Stride.
    pub stride: i64,
    /// Padding on each side (never part of a window's maximum).
    pub pad: i64,
    /// Round the output size up (Caffe's pooling) instead of down.
    pub ceil: bool,
}

/// The pooling between stages: 3x3, stride 2, rounded up as in Caffe.
const STAGE_POOL: MaxPool = MaxPool {
    kernel: 3,
    stride: 2,
    pad: 0,
    ceil: true,
};

/// The pooling that opens an inception module's fourth branch: 3x3, stride 1, size kept.
const BRANCH_POOL: MaxPool = MaxPool {
    kernel: 3,
    stride: 1,
    pad: 1,
    ceil: false,
};

/// One step of an inception branch.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Convolution and ReLU.
    Conv(Conv),
    /// Max pooling.
    MaxPool(MaxPool),
}

impl Step {
    /// Channels out of this step for `input` channels in.
    pub fn out_channels(&self, input: i64) -> i64 {
        match self {
            Step::Conv(c) => c.out,
            Step::MaxPool(_) => input,
        }
    }
}

/// A convolution step of an inception branch: stride 1 and "same" padding, so every branch keeps
/// the module's spatial size and the four can be concatenated.
const fn unit(name: &'static str, out: i64, kernel: i64) -> Step {
    Step::Conv(Conv {
        name,
        out,
        kernel,
        stride: 1,
        pad: kernel / 2,
    })
}

/// One inception module: four branches from the same input, concatenated along the channels.
#[derive(Debug, Clone, Copy)]
pub struct Inception {
    /// Branch 1: 1x1 convolution.
    pub c1: i64,
    /// Branch 2: 1x1 reduction before the 3x3 convolution.
    pub c3_reduce: i64,
    /// Branch 2: 3x3 convolution.
    pub c3: i64,
    /// Branch 3: 1x1 reduction before the 5x5 convolution.
    pub c5_reduce: i64,
    /// Branch 3: 5x5 convolution.
    pub c5: i64,
    /// Branch 4: 1x1 projection after a 3x3 max pool.
    pub pool_proj: i64,
}

impl Inception {
    /// The four branches in concatenation order, each a sequence of steps applied to the module's
    /// input. Parameter names are `<module>.<step name>`.
    pub fn branches(&self) -> [Vec<Step>; 4] {
        [
            vec![unit("b1", self.c1, 1)],
            vec![unit("b2_reduce", self.c3_reduce, 1), unit("b2", self.c3, 3)],
            vec![unit("b3_reduce", self.c5_reduce, 1), unit("b3", self.c5, 5)],
            vec![Step::MaxPool(BRANCH_POOL), unit("b4", self.pool_proj, 1)],
        ]
    }

    /// Output channels for `input` channels in: the sum of what the branches end with.
    pub fn out_channels(&self, input: i64) -> i64 {
        self.branches()
            .iter()
            .map(|steps| steps.iter().fold(input, |c, step| step.out_channels(c)))
            .sum()
    }
}

/// How the network keeps its activations in range (`--norm`): the one choice of layout that
/// training makes. Every choice exports to the same kind of graph (convolutions with bias and ReLU),
/// so the daemon never needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Local response normalisation after the first two convolution stages ([`LRN`]): the original.
    Lrn,
    /// Batch normalisation after every convolution, which then has no bias of its own: each layer
    /// learns at the same pace from the first step, so this deep net learns a few thousand photos in
    /// a few epochs (README, quality). No LRN. The export folds each normalisation into its
    /// convolution's weights and bias.
    Batch,
    /// Neither: convolutions with bias and ReLU only, the graph a batch-normalised network exports
    /// to, so that `--init` can fine-tune such a model as it is.
    None,
}

impl Norm {
    /// Whether the layer list's [`Layer::Lrn`] steps are part of this layout.
    pub fn has_lrn(self) -> bool {
        self == Norm::Lrn
    }
}

impl std::fmt::Display for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Norm::Lrn => "lrn",
            Norm::Batch => "batch",
            Norm::None => "none",
        })
    }
}

/// Batch normalisation's epsilon (as in torchvision's GoogLeNet), added to each channel's variance.
pub const BATCH_NORM_EPS: f64 = 1e-3;
/// Batch normalisation's momentum: the weight of each batch in the running mean and variance that
/// evaluation and the export use.
pub const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// One step of the network, in order.
#[derive(Debug, Clone, Copy)]
pub enum Layer {
    /// Convolution followed by ReLU.
    Conv(Conv),
    /// Max pooling.
    MaxPool(MaxPool),
    /// Local response normalisation across channels ([`LRN`]), in the [`Norm::Lrn`] layout only.
    Lrn,
    /// An inception module.
    Inception {
        /// Parameter name prefix.
        name: &'static str,
        /// Branch widths.
        spec: Inception,
    },
    /// Global average pooling to one value per channel (the 7x7 average pool at input 224).
    GlobalAvgPool,
    /// Dropout, active in training only.
    Dropout(f64),
    /// Fully connected layer to the class scores (logits).
    Classifier {
        /// Parameter name prefix.
        name: &'static str,
    },
}

const fn inception(
    name: &'static str,
    c1: i64,
    c3_reduce: i64,
    c3: i64,
    c5_reduce: i64,
    c5: i64,
    pool_proj: i64,
) -> Layer {
    Layer::Inception {
        name,
        spec: Inception {
            c1,
            c3_reduce,
            c3,
            c5_reduce,
            c5,
            pool_proj,
        },
    }
}

/// The whole network, from the normalised input to the logits.
pub const LAYERS: &[Layer] = &[
    Layer::Conv(Conv {
        name: "conv1",
        out: 64,
        kernel: 7,
        stride: 2,
        pad: 3,
    }),
    Layer::MaxPool(STAGE_POOL),
    Layer::Lrn,
    Layer::Conv(Conv {
        name: "conv2_reduce",
        out: 64,
        kernel: 1,
        stride: 1,
        pad: 0,
    }),
    Layer::Conv(Conv {
        name: "conv2",
        out: 192,
        kernel: 3,
        stride: 1,
        pad: 1,
    }),
    Layer::Lrn,
    Layer::MaxPool(STAGE_POOL),
    inception("inception_3a", 64, 96, 128, 16, 32, 32),
    inception("inception_3b", 128, 128, 192, 32, 96, 64),
    Layer::MaxPool(STAGE_POOL),
    inception("inception_4a", 192, 96, 208, 16, 48, 64),
    inception("inception_4b", 160, 112, 224, 24, 64, 64),
    inception("inception_4c", 128, 128, 256, 24, 64, 64),
    inception("inception_4d", 112, 144, 288, 32, 64, 64),
    inception("inception_4e", 256, 160, 320, 32, 128, 128),
    Layer::MaxPool(STAGE_POOL),
    inception("inception_5a", 256, 160, 320, 32, 128, 128),
    inception("inception_5b", 384, 192, 384, 48, 128, 128),
    Layer::GlobalAvgPool,
    Layer::Dropout(0.4),
    Layer::Classifier { name: "fc" },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The table gives the paper's module widths (Szegedy et al. 2014, table 1), 1024 at the end.
    #[test]
    fn inception_widths_match_the_paper() {
        let mut channels = 3;
        let mut outs = Vec::new();
        for layer in LAYERS {
            match layer {
                Layer::Conv(c) => channels = c.out,
                Layer::Inception { spec, .. } => {
                    channels = spec.out_channels(channels);
                    outs.push(channels);
                }
                _ => {}
            }
        }
        assert_eq!(outs, [256, 480, 512, 512, 512, 528, 832, 832, 1024]);
    }

    /// Every convolution of a branch keeps the spatial size (stride 1, "same" padding), so the four
    /// branches can be concatenated.
    #[test]
    fn inception_branches_keep_the_spatial_size() {
        let spec = match LAYERS.iter().find(|l| matches!(l, Layer::Inception { .. })) {
            Some(Layer::Inception { spec, .. }) => *spec,
            _ => panic!("no inception module"),
        };
        for step in spec.branches().iter().flatten() {
            let (kernel, stride, pad) = match step {
                Step::Conv(c) => (c.kernel, c.stride, c.pad),
                Step::MaxPool(p) => (p.kernel, p.stride, p.pad),
            };
            assert_eq!((stride, 2 * pad + 1), (1, kernel), "{step:?}");
        }
    }
}
