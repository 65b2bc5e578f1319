//! The decision rule of the original experiment: like a profile when **any** of its photos scores at
//! or above the threshold.

use serde::{Deserialize, Serialize};

use crate::profile::{Decision, PhotoScore, Profile};

/// What to do with a profile none of whose photos could be scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoPhotos {
    /// Leave it alone: it may come back with working photos.
    #[default]
    Skip,
    /// Swipe left.
    Pass,
}

/// The decision rule and its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// LIKE probability at or above which a photo makes the profile a like.
    pub threshold: f32,
    /// Profiles without a scorable photo.
    pub no_photos: NoPhotos,
}

impl Policy {
    /// Decides on `profile` from its photos' results.
    pub fn decide(&self, profile: &Profile, scores: &[PhotoScore]) -> Decision {
        if profile.placeholder {
            return Decision::Skip;
        }
        let mut scored = scores.iter().filter_map(PhotoScore::score).peekable();
        if scored.peek().is_none() {
            return match self.no_photos {
                NoPhotos::Skip => Decision::Skip,
                NoPhotos::Pass => Decision::Pass,
            };
        }
        if scored.any(|s| s >= self.threshold) {
            Decision::Like
        } else {
            Decision::Pass
        }
    }
}

/// The highest score among the photos, for logs.
pub fn best_score(scores: &[PhotoScore]) -> Option<f32> {
    scores.iter().filter_map(PhotoScore::score).reduce(f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(placeholder: bool) -> Profile {
        Profile {
            id: "p".into(),
            name: String::new(),
            bio: String::new(),
            photos: vec![],
            placeholder,
            extra: Default::default(),
        }
    }

    fn scored(score: f32) -> PhotoScore {
        PhotoScore::Scored {
            photo: "x".into(),
            score,
        }
    }

    fn failed() -> PhotoScore {
        PhotoScore::Failed {
            photo: "y".into(),
            error: "corrupt".into(),
        }
    }

    #[test]
    fn any_photo_at_or_above_the_threshold_is_a_like() {
        let policy = Policy {
            threshold: 0.4,
            no_photos: NoPhotos::Skip,
        };
        let p = profile(false);
        assert_eq!(
            policy.decide(&p, &[scored(0.1), scored(0.4), scored(0.2)]),
            Decision::Like
        );
        assert_eq!(policy.decide(&p, &[scored(0.1), scored(0.39999)]), Decision::Pass);
        assert_eq!(policy.decide(&p, &[failed(), scored(0.9)]), Decision::Like);
        assert_eq!(best_score(&[scored(0.1), failed(), scored(0.7)]), Some(0.7));
    }

    #[test]
    fn no_scorable_photo_and_placeholders_are_skipped() {
        let policy = Policy {
            threshold: 0.4,
            no_photos: NoPhotos::Skip,
        };
        assert_eq!(policy.decide(&profile(false), &[failed()]), Decision::Skip);
        assert_eq!(policy.decide(&profile(false), &[]), Decision::Skip);
        assert_eq!(policy.decide(&profile(true), &[scored(1.0)]), Decision::Skip);
        let pass = Policy {
            no_photos: NoPhotos::Pass,
            ..policy
        };
        assert_eq!(pass.decide(&profile(false), &[failed()]), Decision::Pass);
        assert_eq!(pass.decide(&profile(true), &[]), Decision::Skip);
    }
}
