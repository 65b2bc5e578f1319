//! GoogLeNet v1 (Szegedy et al. 2014, the BVLC deploy layout), written down once as data.
//!
//! Both the libtorch module ([`crate::model`]) and the ONNX exporter ([`crate::export`])
//! walk this list, so the trained network and the deployed graph cannot drift apart. The auxiliary
//! classifiers of the paper's training layout are left out, as in the deploy layout.

/// Local response normalisation parameters (Caffe's across-channel LRN as used by GoogLeNet).
#[derive(Debug, Clone, Copy, PartialEq)]
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

/// One inception module: four branches concatenated along the channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Output channels: the sum of the four branches.
    pub fn out_channels(&self) -> i64 {
        self.c1 + self.c3 + self.c5 + self.pool_proj
    }

    /// The module's convolutions as (suffix, in, out, kernel, padding), in concatenation order
    /// where they end a branch. Names are `<module>.<suffix>`.
    pub fn convs(&self, input: i64) -> [(&'static str, i64, i64, i64, i64); 6] {
        [
            ("b1", input, self.c1, 1, 0),
            ("b2_reduce", input, self.c3_reduce, 1, 0),
            ("b2", self.c3_reduce, self.c3, 3, 1),
            ("b3_reduce", input, self.c5_reduce, 1, 0),
            ("b3", self.c5_reduce, self.c5, 5, 2),
            ("b4", input, self.pool_proj, 1, 0),
        ]
    }
}

/// One step of the network, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layer {
    /// Convolution followed by ReLU.
    Conv {
        /// Parameter name prefix.
        name: &'static str,
        /// Output channels.
        out: i64,
        /// Square kernel side.
        kernel: i64,
        /// Stride.
        stride: i64,
        /// Zero padding on each side.
        pad: i64,
    },
    /// Max pooling, 3x3 stride 2 with ceil rounding between stages.
    MaxPool {
        /// Window side.
        kernel: i64,
        /// Stride.
        stride: i64,
    },
    /// Local response normalisation across channels.
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
    Layer::Conv {
        name: "conv1",
        out: 64,
        kernel: 7,
        stride: 2,
        pad: 3,
    },
    Layer::MaxPool { kernel: 3, stride: 2 },
    Layer::Lrn,
    Layer::Conv {
        name: "conv2_reduce",
        out: 64,
        kernel: 1,
        stride: 1,
        pad: 0,
    },
    Layer::Conv {
        name: "conv2",
        out: 192,
        kernel: 3,
        stride: 1,
        pad: 1,
    },
    Layer::Lrn,
    Layer::MaxPool { kernel: 3, stride: 2 },
    inception("inception_3a", 64, 96, 128, 16, 32, 32),
    inception("inception_3b", 128, 128, 192, 32, 96, 64),
    Layer::MaxPool { kernel: 3, stride: 2 },
    inception("inception_4a", 192, 96, 208, 16, 48, 64),
    inception("inception_4b", 160, 112, 224, 24, 64, 64),
    inception("inception_4c", 128, 128, 256, 24, 64, 64),
    inception("inception_4d", 112, 144, 288, 32, 64, 64),
    inception("inception_4e", 256, 160, 320, 32, 128, 128),
    Layer::MaxPool { kernel: 3, stride: 2 },
    inception("inception_5a", 256, 160, 320, 32, 128, 128),
    inception("inception_5b", 384, 192, 384, 48, 128, 128),
    Layer::GlobalAvgPool,
    Layer::Dropout(0.4),
    Layer::Classifier { name: "fc" },
];

/// Channels that reach the classifier (1024 for GoogLeNet).
pub fn feature_channels() -> i64 {
    LAYERS
        .iter()
        .rev()
        .find_map(|l| match l {
            Layer::Conv { out, .. } => Some(*out),
            Layer::Inception { spec, .. } => Some(spec.out_channels()),
            _ => None,
        })
        .expect("the network has convolutions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inception_widths_match_the_paper() {
        let outs: Vec<i64> = LAYERS
            .iter()
            .filter_map(|l| match l {
                Layer::Inception { spec, .. } => Some(spec.out_channels()),
                _ => None,
            })
            .collect();
        assert_eq!(outs, [256, 480, 512, 512, 512, 528, 832, 832, 1024]);
        assert_eq!(feature_channels(), 1024);
    }
}
