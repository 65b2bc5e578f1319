//! Whether a trained model is worth deploying: a model that cannot tell LIKE from NOPE on the
//! validation split still gets a threshold, and the daemon would swipe with it. Such a run ends
//! with warnings that say so and what to try; `report.json` carries them (`warnings`).

use crate::calibrate::ThresholdReport;

/// A validation ROC AUC under this is "no better than chance".
pub const MIN_AUC: f64 = 0.6;

/// What to try when a model has not learnt: the same words in every warning.
const TRY: &str = "try more epochs (--epochs), more photos in each of like/ and nope/, or a lower learning \
                   rate (--lr 0.003)";

/// The warnings for the validation measurements `threshold` on validation labels `like` (LIKE when
/// true); empty when the model beats chance and the majority class.
pub fn warnings(threshold: &ThresholdReport, like: &[bool]) -> Vec<String> {
    let mut out = Vec::new();
    if like.is_empty() {
        out.push(
            "no validation split: nothing was measured and the threshold is a guess; keep --val-fraction above 0 \
             and give each class a few dozen photos"
                .to_string(),
        );
        return out;
    }
    match threshold.roc_auc {
        Some(auc) if auc < MIN_AUC => out.push(format!(
            "the model is no better than chance: validation ROC AUC {auc:.3} is under {MIN_AUC}; {TRY}"
        )),
        None => out.push(format!(
            "the validation split holds only one class ({} photos): the model's ranking could not be measured; \
             give each class more photos",
            like.len()
        )),
        _ => {}
    }
    let n_like = like.iter().filter(|&&l| l).count();
    let majority = n_like.max(like.len() - n_like) as f64 / like.len() as f64;
    let name = if 2 * n_like >= like.len() { "like" } else { "nope" };
    if threshold.accuracy <= majority {
        out.push(format!(
            "the model is no better than answering `{name}` every time: validation accuracy {:.3} at the threshold \
             against {majority:.3} for the majority class; {TRY}",
            threshold.accuracy
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::{calibrate, ThresholdChoice, ThresholdPolicy};
    use crate::profiles::ProfileSizes;

    fn measured(margins: &[f32], like: &[bool]) -> ThresholdReport {
        let logits: Vec<[f32; 2]> = margins.iter().map(|&m| [0.0, m]).collect();
        let sizes = ProfileSizes::fixed(4);
        let choice = ThresholdChoice {
            policy: ThresholdPolicy::MaxProfileLikeF1,
            fixed: None,
            sizes: &sizes,
            seed: 1,
        };
        calibrate(&logits, like, choice).1
    }

    #[test]
    fn a_model_that_separates_the_classes_gets_no_warning() {
        let like = [false, false, false, true, true, true];
        assert!(warnings(&measured(&[-3.0, -2.0, -1.0, 1.0, 2.0, 3.0], &like), &like).is_empty());
    }

    #[test]
    fn chance_and_the_majority_class_are_named_with_what_to_try() {
        // Scores unrelated to the labels.
        let like: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
        let margins: Vec<f32> = (0..40).map(|i| ((i / 2) % 5) as f32).collect();
        let w = warnings(&measured(&margins, &like), &like);
        assert!(
            w.iter()
                .any(|w| w.contains("no better than chance") && w.contains("0.500")),
            "{w:?}"
        );
        assert!(w.iter().all(|w| w.contains("--epochs") && w.contains("--lr")), "{w:?}");

        // Unbalanced: 30 NOPE, 10 LIKE, and every score the same: the majority class wins.
        let like: Vec<bool> = (0..40).map(|i| i < 10).collect();
        let w = warnings(&measured(&[0.0; 40], &like), &like);
        assert!(
            w.iter().any(|w| w.contains("answering `nope`") && w.contains("0.750")),
            "{w:?}"
        );

        assert!(warnings(&measured(&[], &[]), &[])[0].starts_with("no validation split"));
        let one_class = [true, true];
        let w = warnings(&measured(&[1.0, 2.0], &one_class), &one_class);
        assert!(w[0].contains("only one class"), "{w:?}");
    }
}
