//! Calibration and the recommended threshold, from the validation split.
//!
//! The original model's confidences sat near 0 or 1. Temperature scaling (Guo et al. 2017) divides
//! the logits by one scalar `T`, fitted here by minimising the validation negative log-likelihood
//! (golden-section search on `log T`); the export bakes it into the graph, unless it makes the
//! expected calibration error (15 bins) worse, in which case `T` stays 1. The threshold on the LIKE
//! probability is then chosen on the calibrated validation probabilities, for whole profiles under
//! the daemon's any-photo rule ([`crate::profiles`]) or photo by photo, and the report measures the
//! result: confusion matrix, ROC AUC, photo- and profile-level rates, and the calibration error
//! before and after. [`calibrate`] does all of it and returns the two sections of `report.json` it fills.

use serde::{Serialize, Serializer};

use crate::profiles::{self, ProfileReport, ProfileSizes, Rates};

/// The threshold written into a model when nothing could be calibrated (`--epochs 0`, or no
/// validation split) and none was given: the original experiment's guess.
pub const DEFAULT_THRESHOLD: f32 = 0.4;

/// Bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// How the recommended threshold is chosen.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum ThresholdPolicy {
    /// Maximise the F1 score of the LIKE class, photo by photo (`--recipe original`).
    MaxLikeF1,
    /// Swipe right on about this fraction of the validation photos (`--recipe original`).
    LikeRate {
        /// The target fraction, in (0, 1).
        rate: f64,
    },
    /// Maximise the LIKE F1 of simulated profiles under the any-photo rule.
    MaxProfileLikeF1,
    /// Swipe right on about this fraction of simulated profiles under the any-photo rule.
    ProfileLikeRate {
        /// The target fraction, in (0, 1).
        rate: f64,
    },
}

impl ThresholdPolicy {
    /// Whether the threshold is chosen on simulated profiles rather than on photos.
    pub fn on_profiles(self) -> bool {
        matches!(
            self,
            ThresholdPolicy::MaxProfileLikeF1 | ThresholdPolicy::ProfileLikeRate { .. }
        )
    }
}

/// Counts at a threshold and ROC AUC: the same figures `swipebot compare` reports.
pub use swipebot_core::metrics::{roc_auc, Confusion};

/// Two-class logits as the LIKE-minus-NOPE margin: softmax of `[nope, like] / T` gives
/// `sigmoid(margin / T)` for LIKE.
pub fn margins(logits: &[[f32; 2]]) -> Vec<f64> {
    logits.iter().map(|l| f64::from(l[1]) - f64::from(l[0])).collect()
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// LIKE probabilities for margins at temperature `t`.
pub fn like_probabilities(margins: &[f64], t: f64) -> Vec<f64> {
    margins.iter().map(|m| sigmoid(m / t)).collect()
}

/// Mean negative log-likelihood of the labels at temperature `t`.
pub fn nll(margins: &[f64], like: &[bool], t: f64) -> f64 {
    mean_cross_entropy(margins, like, t, (1.0, 0.0))
}

/// Mean cross-entropy of the LIKE probabilities `sigmoid(margin / t)` against the target `targets.0`
/// for a LIKE and `targets.1` for a NOPE (1 and 0: the negative log-likelihood), computed stably
/// through `-log sigmoid(z) = softplus(-z)`. 0 when there is nothing to average.
fn mean_cross_entropy(margins: &[f64], like: &[bool], t: f64, (t_like, t_nope): (f64, f64)) -> f64 {
    if margins.is_empty() {
        return 0.0;
    }
    let sum: f64 = margins
        .iter()
        .zip(like)
        .map(|(m, &l)| {
            let target = if l { t_like } else { t_nope };
            let z = m / t;
            target * softplus(-z) + (1.0 - target) * softplus(z)
        })
        .sum();
    sum / margins.len() as f64
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The temperature minimising the validation NLL, searched in [0.01, 100] on a log scale. Returns 1
/// when there is nothing to fit (no validation data).
///
/// The targets are Platt's: `(n_like + 1) / (n_like + 2)` for LIKE and `1 / (n_nope + 2)` for NOPE
/// instead of 1 and 0. A small validation split that the model separates perfectly would otherwise
/// drive the temperature to zero, back to the 0-or-1 confidences of the original.
pub fn fit_temperature(margins: &[f64], like: &[bool]) -> f64 {
    if margins.is_empty() {
        return 1.0;
    }
    let n_like = like.iter().filter(|&&l| l).count() as f64;
    let n_nope = like.len() as f64 - n_like;
    let targets = ((n_like + 1.0) / (n_like + 2.0), 1.0 / (n_nope + 2.0));
    let f = |log_t: f64| mean_cross_entropy(margins, like, log_t.exp(), targets);
    let (mut a, mut b) = (0.01f64.ln(), 100f64.ln());
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - r * (b - a);
    let mut d = a + r * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..80 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - r * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + r * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// The recommended threshold on scores `p` (photos' LIKE probabilities, or simulated profiles' highest
/// ones: the profile policies choose as their photo counterparts do, on what they are given); 0.5
/// when there is no validation data.
pub fn choose_threshold(p: &[f64], like: &[bool], policy: ThresholdPolicy) -> f64 {
    if p.is_empty() {
        return 0.5;
    }
    let mut sorted: Vec<f64> = p.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    match policy {
        ThresholdPolicy::MaxLikeF1 | ThresholdPolicy::MaxProfileLikeF1 => {
            // Every distinct score is a candidate; between equal F1s prefer the threshold in the
            // middle of the widest gap, which is the most robust to new photos.
            let mut best = (f64::NEG_INFINITY, 0.5);
            for (i, &t) in sorted.iter().enumerate() {
                let f1 = Confusion::at(p, like, t).like_f1();
                let below = if i == 0 { 0.0 } else { sorted[i - 1] };
                let candidate = (below + t) / 2.0;
                if f1 > best.0 + 1e-12 {
                    best = (f1, candidate);
                }
            }
            best.1.clamp(0.0, 1.0)
        }
        ThresholdPolicy::LikeRate { rate } | ThresholdPolicy::ProfileLikeRate { rate } => {
            // The smallest threshold whose LIKE rate does not exceed the target.
            let n = p.len() as f64;
            let mut desc = p.to_vec();
            desc.sort_by(|a, b| b.total_cmp(a));
            let k = ((rate * n).round() as usize).min(p.len());
            if k == 0 {
                return (desc[0] + 1.0) / 2.0;
            }
            let t = desc[k - 1];
            let next_lower = desc.get(k).copied().unwrap_or(0.0);
            if next_lower < t {
                (t + next_lower) / 2.0
            } else {
                t
            }
        }
    }
}

/// Expected calibration error of the predicted class's confidence over `bins` equal-width bins.
pub fn ece(p: &[f64], like: &[bool], bins: usize) -> f64 {
    if p.is_empty() {
        return 0.0;
    }
    let mut count = vec![0usize; bins];
    let mut conf = vec![0f64; bins];
    let mut hit = vec![0f64; bins];
    for (&p, &l) in p.iter().zip(like) {
        let predicted_like = p >= 0.5;
        let confidence = if predicted_like { p } else { 1.0 - p };
        let b = ((confidence * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        conf[b] += confidence;
        hit[b] += f64::from(u8::from(predicted_like == l));
    }
    let n = p.len() as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (conf[b] - hit[b]).abs() / n)
        .sum()
}

/// What temperature scaling found on the validation split (`calibration` in `report.json`).
#[derive(Debug, Serialize)]
pub struct Calibration {
    /// The temperature baked into the exported graph: the fitted one when it lowers the expected
    /// calibration error, else 1.
    pub temperature: f64,
    /// The temperature that minimised the validation log-loss (1 when nothing was fitted).
    pub fitted_temperature: f64,
    /// Whether the fitted temperature was applied (false: it would have raised the calibration error).
    pub applied: bool,
    /// Validation negative log-likelihood at temperature 1.
    pub nll_before: f64,
    /// The same at the applied temperature.
    pub nll_after: f64,
    /// Expected calibration error at temperature 1.
    pub ece_before: f64,
    /// The same at the applied temperature.
    pub ece_after: f64,
    /// The same at the fitted temperature (equal to `ece_after` when it was applied).
    pub ece_fitted: f64,
    /// Bins the ECE was measured over ([`ECE_BINS`]).
    pub ece_bins: usize,
}

/// Who chose the threshold written into the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChosenBy {
    /// `--threshold` gave it (written in `report.json` as the string `"--threshold"`).
    Flag,
    /// This policy recommended it on the validation split (written as the policy's object).
    Policy(ThresholdPolicy),
}

impl Serialize for ChosenBy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ChosenBy::Flag => serializer.serialize_str("--threshold"),
            ChosenBy::Policy(policy) => policy.serialize(serializer),
        }
    }
}

impl std::fmt::Display for ChosenBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChosenBy::Flag => f.write_str("from --threshold"),
            ChosenBy::Policy(ThresholdPolicy::MaxLikeF1) => f.write_str("max LIKE F1 per photo"),
            ChosenBy::Policy(ThresholdPolicy::LikeRate { rate }) => write!(f, "photo like rate {rate}"),
            ChosenBy::Policy(ThresholdPolicy::MaxProfileLikeF1) => f.write_str("max LIKE F1 per profile"),
            ChosenBy::Policy(ThresholdPolicy::ProfileLikeRate { rate }) => write!(f, "profile like rate {rate}"),
        }
    }
}

/// The threshold written into the model and how it does on the validation split (`threshold` in
/// `report.json`).
#[derive(Debug, Serialize)]
pub struct ThresholdReport {
    /// The threshold in the model's metadata.
    pub value: f32,
    /// What the policy recommended (written when no `--threshold` is given and a validation split exists).
    pub recommended: f64,
    /// Where `value` came from.
    pub chosen_by: ChosenBy,
    /// Validation counts at `value`, on the calibrated probabilities.
    pub confusion: Confusion,
    /// Validation accuracy at `value`.
    pub accuracy: f64,
    /// LIKE F1 at `value`.
    pub like_f1: f64,
    /// ROC AUC of the calibrated probabilities; `None` when a class is missing from validation.
    pub roc_auc: Option<f64>,
    /// Photo-level accuracy, precision, recall and F1 at `value`.
    pub photo: Rates,
    /// The same for simulated profiles under the daemon's any-photo rule.
    pub profile: ProfileReport,
}

/// Where the threshold is chosen and measured: the policy, and the profiles simulated for it.
#[derive(Debug, Clone, Copy)]
pub struct ThresholdChoice<'a> {
    /// How the threshold is recommended.
    pub policy: ThresholdPolicy,
    /// `--threshold`, written as is instead of the recommendation.
    pub fixed: Option<f32>,
    /// The numbers of photos of simulated profiles.
    pub sizes: &'a ProfileSizes,
    /// Seed of the simulation (`--seed`).
    pub seed: u64,
}

/// Fits the temperature on validation `logits` (`[nope, like]`, one pair per photo, LIKE when
/// `like`) and keeps it only when it lowers the expected calibration error, chooses the threshold as
/// `choice` says, and measures both, per photo and per simulated profile. With no logits (no training
/// or no validation split), the temperature is 1 and the threshold `fixed` or [`DEFAULT_THRESHOLD`].
pub fn calibrate(logits: &[[f32; 2]], like: &[bool], choice: ThresholdChoice) -> (Calibration, ThresholdReport) {
    let ThresholdChoice {
        policy,
        fixed,
        sizes,
        seed,
    } = choice;
    let margins = margins(logits);
    let fitted = fit_temperature(&margins, like);
    let raw = like_probabilities(&margins, 1.0);
    let (ece_before, ece_fitted) = (
        ece(&raw, like, ECE_BINS),
        ece(&like_probabilities(&margins, fitted), like, ECE_BINS),
    );
    let applied = ece_fitted <= ece_before;
    let temperature = if applied { fitted } else { 1.0 };
    let scaled = like_probabilities(&margins, temperature);
    let sim = profiles::simulate(&scaled, like, sizes, seed);
    let recommended = if policy.on_profiles() {
        choose_threshold(&sim.scores, &sim.like, policy)
    } else {
        choose_threshold(&scaled, like, policy)
    };
    let (value, chosen_by) = match fixed {
        Some(t) => (t, ChosenBy::Flag),
        None if logits.is_empty() => (DEFAULT_THRESHOLD, ChosenBy::Policy(policy)),
        None => (recommended as f32, ChosenBy::Policy(policy)),
    };
    let confusion = Confusion::at(&scaled, like, f64::from(value));
    let calibration = Calibration {
        temperature,
        fitted_temperature: fitted,
        applied,
        nll_before: nll(&margins, like, 1.0),
        nll_after: nll(&margins, like, temperature),
        ece_before,
        ece_after: ece(&scaled, like, ECE_BINS),
        ece_fitted,
        ece_bins: ECE_BINS,
    };
    let threshold = ThresholdReport {
        value,
        recommended,
        chosen_by,
        confusion,
        accuracy: confusion.accuracy(),
        like_f1: confusion.like_f1(),
        roc_auc: roc_auc(&scaled, like),
        photo: Rates::of(&confusion),
        profile: ProfileReport::at(&sim, sizes, f64::from(value)),
    };
    (calibration, threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn temperature_scaling_recovers_an_overconfidence_factor_and_lowers_ece() {
        // Labels drawn from sigmoid(z); the model reports 4 z: the right temperature is about 4.
        let mut rng = StdRng::seed_from_u64(1);
        let (mut m, mut like) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let z: f64 = rng.random_range(-4.0..4.0);
            like.push(rng.random_bool(sigmoid(z)));
            m.push(4.0 * z);
        }
        let t = fit_temperature(&m, &like);
        assert!((t - 4.0).abs() < 0.4, "fitted temperature {t}");
        // Perfectly separated scores keep a finite temperature.
        let separable = fit_temperature(&[-3.0, -2.0, 2.0, 3.0], &[false, false, true, true]);
        assert!(separable > 0.3 && separable < 3.0, "{separable}");
        assert!(nll(&m, &like, t) < nll(&m, &like, 1.0));
        let before = ece(&like_probabilities(&m, 1.0), &like, 15);
        let after = ece(&like_probabilities(&m, t), &like, 15);
        assert!(after < before / 2.0, "ECE {before} -> {after}");
    }

    #[test]
    fn auc_and_confusion_on_known_scores() {
        let p = [0.1, 0.4, 0.35, 0.8];
        let like = [false, false, true, true];
        assert_eq!(roc_auc(&p, &like), Some(0.75));
        assert_eq!(roc_auc(&[0.2, 0.2], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.2], &[true]), None);
        let c = Confusion::at(&p, &like, 0.35);
        assert_eq!(
            c,
            Confusion {
                true_like: 2,
                false_like: 1,
                true_nope: 1,
                false_nope: 0
            }
        );
        assert!((c.like_f1() - 0.8).abs() < 1e-12);
    }

    #[test]
    fn thresholds_separate_separable_scores_and_follow_a_target_rate() {
        let p = [0.05, 0.2, 0.3, 0.6, 0.7, 0.9];
        let like = [false, false, false, true, true, true];
        let t = choose_threshold(&p, &like, ThresholdPolicy::MaxLikeF1);
        assert!((0.3..=0.6).contains(&t) && t > 0.3, "{t}");
        assert_eq!(Confusion::at(&p, &like, t).accuracy(), 1.0);
        let t = choose_threshold(&p, &like, ThresholdPolicy::LikeRate { rate: 1.0 / 3.0 });
        assert_eq!(Confusion::at(&p, &like, t).true_like, 2);
        assert_eq!(Confusion::at(&p, &like, t).false_like, 0);
        assert_eq!(choose_threshold(&[], &[], ThresholdPolicy::MaxLikeF1), 0.5);
    }

    /// `calibrate` with `policy`, `fixed`, profiles of 4 photos and seed 1.
    fn run(
        logits: &[[f32; 2]],
        like: &[bool],
        policy: ThresholdPolicy,
        fixed: Option<f32>,
    ) -> (Calibration, ThresholdReport) {
        let sizes = ProfileSizes::fixed(4);
        calibrate(
            logits,
            like,
            ThresholdChoice {
                policy,
                fixed,
                sizes: &sizes,
                seed: 1,
            },
        )
    }

    #[test]
    fn calibrate_chooses_measures_and_says_who_chose() {
        // Overconfident but separable logits: the recommended threshold separates them.
        let logits: Vec<[f32; 2]> = [-8.0f32, -6.0, -4.0, 4.0, 6.0, 8.0].iter().map(|&m| [0.0, m]).collect();
        let like = [false, false, false, true, true, true];
        let (cal, th) = run(&logits, &like, ThresholdPolicy::MaxLikeF1, None);
        // Platt's targets soften a perfectly separated split: the fitted temperature is above 1, but
        // on this split every confident answer is right, so softening them raises the calibration
        // error: the temperature is not applied.
        assert!(cal.fitted_temperature > 1.0, "{cal:?}");
        assert!(!cal.applied && cal.temperature == 1.0, "{cal:?}");
        assert!(
            cal.ece_fitted > cal.ece_before && cal.ece_after == cal.ece_before,
            "{cal:?}"
        );
        // The threshold is chosen on the probabilities at the applied temperature: between the
        // highest NOPE score and the lowest LIKE score.
        assert!(
            sigmoid(-4.0) < th.recommended && th.recommended < sigmoid(4.0),
            "{th:?}"
        );
        assert_eq!(cal.ece_bins, ECE_BINS);
        assert_eq!(th.value, th.recommended as f32);
        assert_eq!((th.accuracy, th.like_f1, th.roc_auc), (1.0, 1.0, Some(1.0)));
        assert_eq!(
            (th.photo.f1, th.profile.rates.f1, th.profile.rates.accuracy),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(
            serde_json::to_value(th.chosen_by).unwrap(),
            serde_json::json!({"policy": "max_like_f1"})
        );

        // A given threshold is written as is and measured: above every score, nothing is liked.
        let (_, th) = run(&logits, &like, ThresholdPolicy::MaxLikeF1, Some(0.999_9));
        assert_eq!((th.value, th.chosen_by), (0.999_9, ChosenBy::Flag));
        assert_eq!(serde_json::to_value(th.chosen_by).unwrap(), "--threshold");
        assert_eq!((th.confusion.true_like, th.confusion.false_nope), (0, 3), "{th:?}");
        assert_eq!((th.profile.rates.recall, th.profile.confusion.true_like), (0.0, 0));

        // Nothing to calibrate on: temperature 1 and the default threshold.
        let (cal, th) = run(&[], &[], ThresholdPolicy::LikeRate { rate: 0.3 }, None);
        assert_eq!((cal.temperature, th.value), (1.0, DEFAULT_THRESHOLD));
        assert_eq!(th.chosen_by.to_string(), "photo like rate 0.3");
        assert_eq!(th.profile.profiles, 0);
    }

    /// Overlapping, overconfident scores, as a real model gives: `(logits, like)`.
    fn noisy(n: usize) -> (Vec<[f32; 2]>, Vec<bool>) {
        let mut rng = StdRng::seed_from_u64(3);
        (0..n)
            .map(|_| {
                let like = rng.random_bool(0.5);
                let z: f64 = rng.random_range(-2.0..2.0) + if like { 1.0 } else { -1.0 };
                ([0.0, (3.0 * z) as f32], like)
            })
            .unzip()
    }

    #[test]
    fn a_temperature_that_lowers_the_calibration_error_is_applied() {
        let (logits, like) = noisy(2000);
        let (cal, _) = run(&logits, &like, ThresholdPolicy::MaxLikeF1, None);
        assert!(
            cal.applied && cal.temperature == cal.fitted_temperature && cal.temperature > 1.5,
            "{cal:?}"
        );
        assert!(
            cal.ece_after < cal.ece_before && cal.nll_after < cal.nll_before,
            "{cal:?}"
        );
    }

    #[test]
    fn the_profile_threshold_is_higher_and_does_better_on_profiles() {
        let (logits, like) = noisy(2000);
        let (_, photo) = run(&logits, &like, ThresholdPolicy::MaxLikeF1, None);
        let (_, profile) = run(&logits, &like, ThresholdPolicy::MaxProfileLikeF1, None);
        // Any of 4 photos likes the profile: a per-photo threshold likes too many NOPE profiles.
        assert!(profile.value > photo.value, "{} vs {}", profile.value, photo.value);
        assert!(
            profile.profile.rates.f1 > photo.profile.rates.f1,
            "{profile:?} vs {photo:?}"
        );
        assert!(profile.profile.rates.precision > photo.profile.rates.precision);
        assert!(
            photo.photo.f1 >= profile.photo.f1,
            "the photo threshold is the best per photo"
        );
        assert_eq!(profile.profile.profiles, profiles::SIMULATED_PROFILES);
        assert_eq!(profile.chosen_by.to_string(), "max LIKE F1 per profile");
        // A target like rate is met on profiles.
        let (_, rate) = run(&logits, &like, ThresholdPolicy::ProfileLikeRate { rate: 0.3 }, None);
        let c = rate.profile.confusion;
        let liked = (c.true_like + c.false_like) as f64 / rate.profile.profiles as f64;
        assert!((liked - 0.3).abs() < 0.01, "{liked}");
    }
}
