//! The training loop: SGD with momentum and weight decay, the step-down learning-rate policy, random
//! crops and mirrors for training, centre crops for validation; the best validation epoch is kept.
//!
//! Batches are assembled from the cached squares by a Rust thread while the step runs. Everything
//! random is seeded from (seed, epoch, step), and the learning rate follows the global iteration,
//! so a run resumed from a checkpoint, even in the middle of an epoch, keeps its schedule and order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{self, Best, Checkpoint, Partial, State};
use crate::data::Sample;
use crate::model::GoogLeNet;
use crate::sgd::Sgd;
use swipebot::model_info::CLASSES;
use swipebot::vision::preprocess::{self, Recipe};

/// The training hyper-parameters; the defaults are the original recipe's.
#[derive(Debug, Clone)]
pub struct Hyper {
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Learning rate at the start.
    pub base_lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// The learning rate is multiplied by `gamma` every `step_fraction` of the total iterations.
    pub step_fraction: f64,
    /// Step-down factor.
    pub gamma: f64,
    /// Seed for data order, crops, mirrors and dropout.
    pub seed: u64,
    /// Loss weight of each class (in [`CLASSES`] order); `None` weighs every image the same.
    pub class_weights: Option<[f64; 2]>,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            epochs: 30,
            batch_size: 32,
            base_lr: 0.01,
            momentum: 0.9,
            weight_decay: 2e-4,
            step_fraction: 0.33,
            gamma: 0.1,
            seed: 42,
            class_weights: None,
        }
    }
}

impl Hyper {
    /// The learning rate at iteration `iter` of `total` (the step-down policy).
    pub fn lr_at(&self, iter: usize, total: usize) -> f64 {
        let step = ((total as f64 * self.step_fraction).ceil() as usize).max(1);
        self.base_lr * self.gamma.powi((iter / step) as i32)
    }
}

/// Loss and accuracy of one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly at the arg-max.
    pub accuracy: f64,
}

/// What one epoch measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// On the training split (with augmentation and dropout).
    pub train: Metrics,
    /// On the validation split (centre crops, no dropout).
    pub val: Metrics,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Training images a second (forward, backward and update, with batch assembly overlapped).
    pub images_per_second: f64,
    /// Seconds the epoch's training steps took.
    pub seconds: f64,
}

/// Deterministic stratified split: for each class, a seeded shuffle, then `val_fraction` of it
/// (at least one image when the class has two or more) goes to validation. Returns index lists.
pub fn split(labels: &[usize], val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for class in 0..CLASSES.len() {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        idx.shuffle(&mut rng);
        let mut n_val = (idx.len() as f64 * val_fraction).round() as usize;
        if n_val == 0 && idx.len() >= 2 && val_fraction > 0.0 {
            n_val = 1;
        }
        val.extend_from_slice(&idx[..n_val]);
        train.extend_from_slice(&idx[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Assembles a batch tensor `[N, C, S, S]` and its labels; `rng` set means random crop and mirror.
pub fn batch(samples: &[&Sample], recipe: &Recipe, rng: Option<&mut StdRng>, device: Device) -> (Tensor, Tensor) {
    let mut data = Vec::with_capacity(samples.len() * recipe.input_len());
    let centre = preprocess::centre_offset(recipe);
    let room = recipe.square - recipe.crop;
    let mut rng = rng;
    for s in samples {
        let (left, top, mirror) = match rng.as_deref_mut() {
            Some(r) => (r.random_range(0..=room), r.random_range(0..=room), r.random_bool(0.5)),
            None => (centre, centre, false),
        };
        preprocess::crop_to_tensor(&s.pixels, recipe, left, top, mirror, &mut data);
    }
    let (c, side) = (recipe.channels.count() as i64, i64::from(recipe.crop));
    let x = Tensor::from_slice(&data)
        .view([samples.len() as i64, c, side, side])
        .to_device(device);
    let labels: Vec<i64> = samples.iter().map(|s| s.label as i64).collect();
    (x, Tensor::from_slice(&labels).to_device(device))
}

/// Loss and accuracy on `samples` with centre crops, in evaluation mode.
pub fn evaluate(net: &GoogLeNet, samples: &[&Sample], recipe: &Recipe, batch_size: usize, device: Device) -> Metrics {
    if samples.is_empty() {
        return Metrics::default();
    }
    let (mut loss, mut correct) = (0f64, 0i64);
    tch::no_grad(|| {
        for chunk in samples.chunks(batch_size) {
            let (x, y) = batch(chunk, recipe, None, device);
            let logits = net.logits(&x, false);
            loss += logits.cross_entropy_for_logits(&y).double_value(&[]) * chunk.len() as f64;
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
        }
    });
    Metrics {
        loss: loss / samples.len() as f64,
        accuracy: correct as f64 / samples.len() as f64,
    }
}

