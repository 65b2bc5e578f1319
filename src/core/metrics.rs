//! How well LIKE probabilities agree with labels: counts at a threshold, accuracy, precision,
//! recall, F1, ROC AUC and the threshold that maximises F1. `train` measures its validation split
//! with them and `swipebot compare` measures models against a user's own labels, so that the two
//! speak of the same figures.

use serde::Serialize;

/// Counts at a threshold, LIKE being the positive class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// LIKE items scored at or above the threshold.
    pub true_like: usize,
    /// NOPE items scored at or above the threshold.
    pub false_like: usize,
    /// NOPE items scored below the threshold.
    pub true_nope: usize,
    /// LIKE items scored below the threshold.
    pub false_nope: usize,
}

impl Confusion {
    /// Counts for LIKE probabilities `p` and labels `like` at `threshold` (LIKE when `p >= threshold`).
    pub fn at(p: &[f64], like: &[bool], threshold: f64) -> Self {
        let mut c = Confusion::default();
        for (&p, &l) in p.iter().zip(like) {
            match (p >= threshold, l) {
                (true, true) => c.true_like += 1,
                (true, false) => c.false_like += 1,
                (false, false) => c.true_nope += 1,
                (false, true) => c.false_nope += 1,
            }
        }
        c
    }

    /// Items counted.
    pub fn total(&self) -> usize {
        self.true_like + self.false_like + self.true_nope + self.false_nope
    }

    /// F1 score of the LIKE class (0 when it is undefined).
    pub fn like_f1(&self) -> f64 {
        ratio(
            2 * self.true_like,
            2 * self.true_like + self.false_like + self.false_nope,
        )
    }

    /// Fraction classified correctly (0 with nothing counted).
    pub fn accuracy(&self) -> f64 {
        ratio(self.true_like + self.true_nope, self.total())
    }

    /// Of the items called LIKE, the fraction that are (0 when none was called LIKE).
    pub fn precision(&self) -> f64 {
        ratio(self.true_like, self.true_like + self.false_like)
    }

    /// Of the LIKE items, the fraction called LIKE (0 when there is none).
    pub fn recall(&self) -> f64 {
        ratio(self.true_like, self.true_like + self.false_nope)
    }
}

/// `num / den`, 0 when `den` is 0.
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Everything measured at one threshold, as reports print it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measured {
    /// Items with a label and a score.
    pub count: usize,
    /// The threshold the counts are taken at.
    pub threshold: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Of those called LIKE, the fraction that are.
    pub precision: f64,
    /// Of the LIKE items, the fraction called LIKE.
    pub recall: f64,
    /// F1 of the LIKE class.
    pub f1: f64,
    /// Area under the ROC curve; `None` when one class is absent.
    pub roc_auc: Option<f64>,
    /// The counts themselves.
    pub confusion: Confusion,
}

impl Measured {
    /// Measures `p` against `like` at `threshold`.
    pub fn at(p: &[f64], like: &[bool], threshold: f64) -> Self {
        let confusion = Confusion::at(p, like, threshold);
        Measured {
            count: p.len(),
            threshold,
            accuracy: confusion.accuracy(),
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.like_f1(),
            roc_auc: roc_auc(p, like),
            confusion,
        }
    }
}

/// The threshold on `p` that maximises the F1 of the LIKE class (0.5 with no data). Every distinct
/// score is a candidate; between equal F1s the first (lowest) wins, placed in the middle of the gap
/// below it, which is the most robust to new photos.
pub fn max_f1_threshold(p: &[f64], like: &[bool]) -> f64 {
    let mut sorted: Vec<f64> = p.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let mut best = (f64::NEG_INFINITY, 0.5);
    for (i, &t) in sorted.iter().enumerate() {
        let f1 = Confusion::at(p, like, t).like_f1();
        let below = if i == 0 { 0.0 } else { sorted[i - 1] };
        if f1 > best.0 + 1e-12 {
            best = (f1, (below + t) / 2.0);
        }
    }
    best.1.clamp(0.0, 1.0)
}

/// Area under the ROC curve of `p` for the LIKE class (Mann-Whitney, ties counted half); `None`
/// when one class is absent.
pub fn roc_auc(p: &[f64], like: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let positives = like.iter().filter(|&&l| l).count();
    let negatives = p.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // Average ranks over ties.
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && p[order[j + 1]] == p[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += rank * order[i..=j].iter().filter(|&&k| like[k]).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (positives * (positives + 1)) as f64 / 2.0;
    Some(u / (positives * negatives) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates_on_known_scores() {
        let p = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1];
        let like = [true, true, true, false, false, false];
        let m = Measured::at(&p, &like, 0.5);
        assert_eq!(
            m.confusion,
            Confusion {
                true_like: 2,
                false_like: 1,
                true_nope: 2,
                false_nope: 1
            }
        );
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12);
        // 9 pairs, 8 ordered right (0.3 < 0.6 is the one wrong).
        assert!((m.roc_auc.unwrap() - 8.0 / 9.0).abs() < 1e-12);
        assert_eq!(roc_auc(&p, &[true; 6]), None);
        assert_eq!(Confusion::default().precision(), 0.0);
    }

    #[test]
    fn the_max_f1_threshold_separates_separable_scores() {
        let p = [0.1, 0.2, 0.35, 0.7, 0.8];
        let like = [false, false, false, true, true];
        let t = max_f1_threshold(&p, &like);
        assert!(t > 0.35 && t <= 0.7, "{t}");
        assert_eq!(Confusion::at(&p, &like, t).like_f1(), 1.0);
        assert_eq!(max_f1_threshold(&[], &[]), 0.5);
    }
}
