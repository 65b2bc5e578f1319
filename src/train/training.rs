//! The training loop: SGD with momentum and weight decay, the recipe's learning-rate schedule and
//! augmentation for training ([`crate::recipe`]), centre crops for validation; the best validation
//! epoch is kept, and the run stops early once the validation loss stops improving (`--patience`).
//!
//! Batches are assembled from the cached squares by a Rust thread while the step runs. Everything
//! random is seeded from (seed, epoch, step), and the learning rate follows the global iteration,
//! so a run resumed from a checkpoint, even in the middle of an epoch, keeps its schedule and order.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::augment;
use crate::checkpoint::{self, Best, Checkpoint, Partial, State};
use crate::data::Sample;
use crate::googlenet::Norm;
use crate::mixed::{GradScaler, TrainPrecision};
use crate::model::GoogLeNet;
use crate::optimizer::Optimizer;
use crate::recipe::{self, Augment, Schedule};
use swipebot_core::model_info::CLASSES;
use swipebot_core::preprocess::{self, Recipe};

/// The training hyper-parameters (from the command line: [`crate::Args::hyper`]).
#[derive(Debug)]
pub struct Hyper {
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Learning rate at the start.
    pub base_lr: f64,
    /// The optimizer.
    pub optimizer: recipe::OptimizerKind,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// How the learning rate moves over the run's iterations.
    pub schedule: Schedule,
    /// How training images are varied.
    pub augment: Augment,
    /// Weight of the uniform target mixed into the one-hot target (0: hard targets).
    pub label_smoothing: f64,
    /// Stop after this many epochs without a lower validation loss, counted from the first epoch at
    /// half the peak learning rate or less ([`recipe::first_counted_epoch`]; 0: run every epoch).
    pub patience: usize,
    /// Which validation figure picks the exported epoch.
    pub best_by: recipe::BestBy,
    /// Seed for data order, crops, mirrors and dropout.
    pub seed: u64,
    /// Loss weight of each class (in [`CLASSES`] order); `None` weighs every image the same.
    pub class_weights: Option<[f64; 2]>,
}

impl Hyper {
    /// The learning rate at iteration `iter` of `total`.
    pub fn lr_at(&self, iter: usize, total: usize) -> f64 {
        self.schedule.lr_at(self.base_lr, iter, total)
    }
}

/// Loss and accuracy of one pass.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly at the arg-max.
    pub accuracy: f64,
}

/// What one epoch measured.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
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
    to_tensors(&data, samples, recipe, device)
}

/// The batch tensor `[N, C, S, S]` of the prepared inputs `data` of `samples`, and their labels, on
/// `device`.
pub fn to_tensors(data: &[f32], samples: &[&Sample], recipe: &Recipe, device: Device) -> (Tensor, Tensor) {
    let (c, side) = (recipe.channels.count() as i64, i64::from(recipe.crop));
    let x = Tensor::from_slice(data)
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

/// Most training images [`measure_statistics`] runs through the network before a validation.
pub const STATISTICS_IMAGES: usize = 512;

/// Measures the batch normalisations' running statistics with the current weights
/// ([`GoogLeNet::measure_statistics`]) on the centre crops of up to [`STATISTICS_IMAGES`] training
/// images, spread evenly over the split and put in an order seeded by `seed` (so every batch mixes
/// the classes), in batches of `batch_size` (a last batch of one image left out). Costs a forward
/// pass of those images; does nothing in the layouts without batch normalisation.
pub fn measure_statistics(
    net: &GoogLeNet,
    train: &[&Sample],
    recipe: &Recipe,
    batch_size: usize,
    seed: u64,
    device: Device,
) {
    if net.norm() != Norm::Batch || train.len() < 2 {
        return;
    }
    let every = train.len().div_ceil(STATISTICS_IMAGES).max(1);
    let mut picked: Vec<&Sample> = train.iter().step_by(every).copied().collect();
    picked.shuffle(&mut StdRng::seed_from_u64(seed));
    let batches = picked
        .chunks(batch_size.max(2))
        .filter(|chunk| chunk.len() > 1)
        .map(|chunk| batch(chunk, recipe, None, device).0);
    net.measure_statistics(batches);
}

/// Balanced class weights for unbalanced folders: `n / (classes * n_c)` for each class, so every
/// class weighs as much in the loss as if the folders were the same size.
pub fn balanced_class_weights(labels: &[usize]) -> [f64; 2] {
    let mut counts = [0usize; 2];
    for &l in labels {
        counts[l] += 1;
    }
    let n = labels.len() as f64;
    counts.map(|c| if c == 0 { 0.0 } else { n / (2.0 * c as f64) })
}

/// Cross-entropy of `logits` against `labels`, weighted per class as PyTorch's
/// `CrossEntropyLoss(weight=...)` does (weighted mean).
pub fn loss(logits: &Tensor, labels: &Tensor, class_weights: Option<&Tensor>) -> Tensor {
    smoothed_loss(logits, labels, class_weights, 0.0)
}

/// [`loss`] against targets smoothed by `smoothing`: `1 - smoothing` on the label and `smoothing`
/// spread evenly over every class, as PyTorch's `CrossEntropyLoss(label_smoothing=...)`. A net that
/// may not push a photo's probability all the way to 0 or 1 keeps learning from the photos it gets
/// right instead of growing its weights on them, which a small dataset overfits.
pub fn smoothed_loss(logits: &Tensor, labels: &Tensor, class_weights: Option<&Tensor>, smoothing: f64) -> Tensor {
    if smoothing == 0.0 && class_weights.is_none() {
        return logits.cross_entropy_for_logits(labels);
    }
    let log_p = logits.log_softmax(-1, Kind::Float);
    let nll = -log_p.gather(1, &labels.unsqueeze(1), false).squeeze_dim(1);
    let per_image = if smoothing == 0.0 {
        nll
    } else {
        let uniform = -log_p.mean_dim(-1, false, Kind::Float);
        nll * (1.0 - smoothing) + uniform * smoothing
    };
    match class_weights {
        None => per_image.mean(Kind::Float),
        Some(w) => {
            let w = w.index_select(0, labels);
            (per_image * &w).sum(Kind::Float) / w.sum(Kind::Float)
        }
    }
}

/// The validation logits `[nope, like]` of `samples` (centre crops, evaluation mode).
pub fn predict_logits(
    net: &GoogLeNet,
    samples: &[&Sample],
    recipe: &Recipe,
    batch_size: usize,
    device: Device,
) -> Vec<[f32; 2]> {
    let mut out = Vec::with_capacity(samples.len());
    tch::no_grad(|| {
        for chunk in samples.chunks(batch_size.max(1)) {
            let (x, _) = batch(chunk, recipe, None, device);
            let logits = Vec::<f32>::try_from(
                net.logits(&x, false)
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float)
                    .flatten(0, -1),
            )
            .expect("float logits");
            out.extend(logits.chunks_exact(2).map(|c| [c[0], c[1]]));
        }
    });
    out
}

/// A seed for (seed, epoch, step): data order uses step 0, batch `s` of an epoch uses `s + 1`.
fn mix(seed: u64, epoch: usize, step: usize) -> u64 {
    let mut x =
        seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (step as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The order of the training images in epoch `epoch` (0-based).
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut StdRng::seed_from_u64(mix(seed, epoch, 0)));
    order
}

/// What the training loop tells the user interface.
pub trait Observer {
    /// Epoch `epoch` (1-based) of `epochs` starts at step `first` of `steps`.
    fn epoch_start(&mut self, epoch: usize, epochs: usize, first: usize, steps: usize);
    /// One step finished: its loss and the training images a second so far in this epoch.
    fn step(&mut self, loss: f64, images_per_second: f64);
    /// An epoch finished.
    fn epoch_end(&mut self, report: &EpochReport, best: bool);
}

/// How [`Fit::run`] ended.
#[derive(Debug, Clone, Copy)]
pub enum FitEnd {
    /// Every epoch ran.
    Completed,
    /// `stop` was raised (Ctrl-C): a checkpoint at the current step was written.
    Interrupted,
    /// The `stop_after` epochs of this invocation ran (a checkpoint was written).
    Paused,
    /// The validation loss had not improved for `patience` epochs: the remaining epochs were skipped.
    EarlyStopped,
}

/// One training run's fixed inputs: the network, the data, the hyper-parameters, the checkpoint it
/// writes and the signals that end it early. [`Fit::run`] trains from a [`State`].
pub struct Fit<'a> {
    /// The variables of `net` (weights and normalisation), saved in checkpoints.
    pub vs: &'a nn::VarStore,
    /// The network being trained.
    pub net: &'a GoogLeNet,
    /// The training split.
    pub train: &'a [&'a Sample],
    /// The validation split, evaluated after every epoch.
    pub val: &'a [&'a Sample],
    /// How cached squares become network inputs (crop side, channels).
    pub recipe: &'a Recipe,
    /// Epochs, batch size, schedule, seed and class weights.
    pub hyper: &'a Hyper,
    /// The checkpoint folder (written at every epoch end and on interruption).
    pub checkpoint: &'a Checkpoint,
    /// Raised by the Ctrl-C handler; checked between steps.
    pub stop: &'a AtomicBool,
    /// End after this many epochs of this invocation (a hidden testing aid for `--resume`).
    pub stop_after: Option<usize>,
    /// The arithmetic of the training step (`--precision-train`, resolved; [`crate::mixed`]).
    pub precision: TrainPrecision,
}

impl Fit<'_> {
    /// Trains from `state` (fresh or loaded from the checkpoint) with optimizer `sgd`, writing a
    /// checkpoint at every epoch end, and finally restores the weights of the best validation epoch
    /// (from the checkpoint's `best.ot` when a resumed run's best epoch came before this invocation).
    /// `state` ends as the run's final state.
    pub fn run(&self, sgd: &mut Optimizer, state: &mut State, observer: &mut dyn Observer) -> anyhow::Result<FitEnd> {
        let Fit {
            vs,
            net,
            train,
            val,
            recipe,
            hyper,
            checkpoint: ckpt,
            stop,
            stop_after,
            precision,
        } = *self;
        // fp16's loss scale starts afresh in each invocation (a resumed run skips a few steps while
        // it settles, as a fresh one does).
        let mut scaler = GradScaler::default();
        let mut best = match state.best {
            Some(b) => Some(ckpt.load_best()?.with_context(|| {
                format!(
                    "the checkpoint in {} names epoch {} as the best but has no best.ot; run without --resume",
                    ckpt.dir().display(),
                    b.epoch
                )
            })?),
            None => None,
        };
        let device = vs.device();
        let batch_size = hyper.batch_size.max(1);
        let steps = train.len().div_ceil(batch_size).max(1);
        let total = steps * hyper.epochs;
        let weights = hyper
            .class_weights
            .map(|w| Tensor::from_slice(&w).to_kind(Kind::Float).to_device(device));
        // Patience counts from this epoch on: the schedule is fixed for the run.
        let counted_from = recipe::first_counted_epoch(&hyper.schedule, hyper.base_lr, hyper.epochs, steps);
        let mut epochs_run = 0;
        let mut end = FitEnd::Completed;
        while state.epoch < hyper.epochs {
            let val_losses: Vec<f64> = state.history.iter().map(|r| r.val.loss).collect();
            if !val.is_empty() && recipe::patience_exhausted(&val_losses, hyper.patience, counted_from) {
                end = FitEnd::EarlyStopped;
                break;
            }
            let epoch = state.epoch;
            let order = epoch_order(train.len(), hyper.seed, epoch);
            let first = state.step;
            observer.epoch_start(epoch + 1, hyper.epochs, first, steps);
            let mut partial = state.partial;
            let mut stopped_at = None;
            std::thread::scope(|scope| -> anyhow::Result<()> {
                // Batches are assembled on this thread while the step runs; two are kept ready.
                let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Tensor, Tensor)>(2);
                let order = &order;
                scope.spawn(move || {
                    for step in first..steps {
                        let chunk =
                            &order[(step * batch_size).min(order.len())..((step + 1) * batch_size).min(order.len())];
                        let picked: Vec<&Sample> = chunk.iter().map(|&i| train[i]).collect();
                        let mut rng = StdRng::seed_from_u64(mix(hyper.seed, epoch, step + 1));
                        let (x, y) = augment::batch(&picked, recipe, hyper.augment, &mut rng, Device::Cpu);
                        if tx.send((step, x, y)).is_err() {
                            break;
                        }
                    }
                });
                let started = Instant::now();
                let seconds_before = partial.seconds;
                let seen_before = partial.seen;
                for (step, x, y) in rx.iter() {
                    if stop.load(Ordering::SeqCst) {
                        stopped_at = Some(step);
                        break;
                    }
                    // Batch normalisation needs two images for a batch's statistics (one image at the
                    // last stage of input 32 is a single value a channel): an epoch's last batch of
                    // one image is skipped in that layout; the order changes each epoch.
                    if x.size()[0] == 0 || (x.size()[0] == 1 && net.norm() == Norm::Batch) {
                        continue;
                    }
                    tch::manual_seed(mix(hyper.seed, epoch, step + 1) as i64 & i64::MAX);
                    let (x, y) = (x.to_device(device), y.to_device(device));
                    let logits = net.logits_in(&x, true, precision.kind());
                    let l = smoothed_loss(&logits, &y, weights.as_ref(), hyper.label_smoothing);
                    let lr = hyper.lr_at(epoch * steps + step, total);
                    match precision {
                        TrainPrecision::Fp16 => {
                            sgd.scaled_backward_step(&l, lr, &mut scaler);
                        }
                        TrainPrecision::Fp32 | TrainPrecision::Bf16 => sgd.backward_step(&l, lr),
                    }
                    let value = l.double_value(&[]);
                    if !value.is_finite() {
                        anyhow::bail!("training diverged at epoch {} (loss {value}): lower --lr", epoch + 1);
                    }
                    let n = y.size()[0] as usize;
                    partial.loss_sum += value * n as f64;
                    partial.correct +=
                        tch::no_grad(|| logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]));
                    partial.seen += n;
                    let elapsed = started.elapsed().as_secs_f64();
                    partial.seconds = seconds_before + elapsed;
                    observer.step(value, (partial.seen - seen_before) as f64 / elapsed.max(1e-9));
                }
                drop(rx);
                Ok(())
            })?;
            if let Some(step) = stopped_at {
                state.step = step;
                state.partial = partial;
                ckpt.save(vs, sgd, state)?;
                end = FitEnd::Interrupted;
                break;
            }
            measure_statistics(net, train, recipe, batch_size, hyper.seed, device);
            let val_metrics = evaluate(net, val, recipe, batch_size, device);
            let report = EpochReport {
                epoch: epoch + 1,
                train: Metrics {
                    loss: partial.loss_sum / partial.seen.max(1) as f64,
                    accuracy: partial.correct as f64 / partial.seen.max(1) as f64,
                },
                val: val_metrics,
                lr: hyper.lr_at((epoch + 1) * steps - 1, total),
                images_per_second: partial.seen as f64 / partial.seconds.max(1e-9),
                seconds: partial.seconds,
            };
            let improved = state.best.is_none_or(|b| b.beaten_by(&report, hyper.best_by));
            if improved {
                let snap = checkpoint::snapshot(vs);
                ckpt.save_best(&snap)?;
                best = Some(snap);
                state.best = Some(Best {
                    epoch: report.epoch,
                    val_accuracy: report.val.accuracy,
                    val_loss: report.val.loss,
                });
            }
            state.history.push(report);
            state.epoch += 1;
            state.step = 0;
            state.partial = Partial::default();
            ckpt.save(vs, sgd, state)?;
            observer.epoch_end(&report, improved);
            epochs_run += 1;
            if stop.load(Ordering::SeqCst) {
                end = FitEnd::Interrupted;
                break;
            }
            if stop_after.is_some_and(|n| epochs_run >= n) && state.epoch < hyper.epochs {
                end = FitEnd::Paused;
                break;
            }
        }
        if let Some(snap) = best.as_ref() {
            checkpoint::restore(vs, snap)?;
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_steps_down_every_third_of_the_iterations() {
        use clap::Parser;
        let h = crate::Args::parse_from(["train", "--data", "d", "--out", "m.onnx", "--recipe", "original"]).hyper(&[]);
        assert_eq!(h.lr_at(0, 300), 0.01);
        assert!((h.lr_at(99, 300) - 0.001).abs() < 1e-12);
        assert!((h.lr_at(200, 300) - 0.0001).abs() < 1e-12);
    }

    #[test]
    fn split_is_stratified_deterministic_and_complete() {
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 4 == 0)).collect();
        let (t, v) = split(&labels, 0.15, 9);
        assert_eq!((t.clone(), v.clone()), split(&labels, 0.15, 9));
        assert_eq!(t.len() + v.len(), 100);
        assert_eq!(v.iter().filter(|&&i| labels[i] == 1).count(), 4); // 15% of 25
        assert_eq!(v.iter().filter(|&&i| labels[i] == 0).count(), 11); // 15% of 75
        assert_ne!(epoch_order(10, 1, 0), epoch_order(10, 1, 1));
        assert_eq!(epoch_order(10, 1, 3), epoch_order(10, 1, 3));
    }

    #[test]
    fn label_smoothing_mixes_the_uniform_target_in() {
        let logits = Tensor::from_slice(&[0.0f32, 2.0, 1.0, 0.0]).view([2, 2]);
        let labels = Tensor::from_slice(&[1i64, 1]);
        // log-softmax by hand, per image: [nope, like].
        let log_p = |a: f64, b: f64| {
            let z = (a.exp() + b.exp()).ln();
            (a - z, b - z)
        };
        let (a, b) = (log_p(0.0, 2.0), log_p(1.0, 0.0));
        let hard = -(a.1 + b.1) / 2.0;
        let uniform = -((a.0 + a.1) / 2.0 + (b.0 + b.1) / 2.0) / 2.0;
        let got = |s, w: Option<&Tensor>| smoothed_loss(&logits, &labels, w, s).double_value(&[]);
        assert!((got(0.0, None) - hard).abs() < 1e-6);
        assert!((got(0.1, None) - (0.9 * hard + 0.1 * uniform)).abs() < 1e-6);
        // Class weights of one class only: the same weighted mean.
        let w = Tensor::from_slice(&[3.0f32, 2.0]);
        assert!((got(0.1, Some(&w)) - (0.9 * hard + 0.1 * uniform)).abs() < 1e-6);
    }

    #[test]
    fn balanced_weights_equalise_the_classes() {
        let w = balanced_class_weights(&[0, 0, 0, 1]);
        assert_eq!(w, [4.0 / 6.0, 2.0]);
    }
}
