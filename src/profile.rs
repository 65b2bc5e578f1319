//! Domain types: a candidate profile, its photos, the decision taken on it, and what a swipe returned.

use serde::{Deserialize, Serialize};

/// One candidate as a profile source delivers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The source's identifier: what is swiped, journaled and never decided twice.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Free text from the profile.
    #[serde(default)]
    pub bio: String,
    /// Photos in the profile's order: file names relative to the profile's folder, or http(s) URLs.
    pub photos: Vec<String>,
    /// A stand-in the source shows instead of a person (a rate-limit notice); never swiped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub placeholder: bool,
    /// Whatever else the source said about the profile, kept as it came.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What the daemon does with a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Swipe right: some photo scored at or above the threshold.
    Like,
    /// Swipe left: every scored photo is below the threshold.
    Pass,
    /// Not swiped: a placeholder, a profile with no scorable photo, or a bad profile.
    Skip,
}

impl Decision {
    /// The lowercase name used in logs and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Like => "like",
            Decision::Pass => "pass",
            Decision::Skip => "skip",
        }
    }
}

/// One photo's result: its LIKE probability, or why it has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PhotoScore {
    /// The photo was scored.
    Scored {
        /// The photo as named in the profile.
        photo: String,
        /// LIKE probability.
        score: f32,
    },
    /// The photo could not be downloaded or decoded; it is ignored by the decision.
    Failed {
        /// The photo as named in the profile.
        photo: String,
        /// What went wrong.
        error: String,
    },
}

impl PhotoScore {
    /// The score, if the photo has one.
    pub fn score(&self) -> Option<f32> {
        match self {
            PhotoScore::Scored { score, .. } => Some(*score),
            PhotoScore::Failed { .. } => None,
        }
    }
}

/// What the source said after a swipe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwipeOutcome {
    /// The like produced a match.
    #[serde(default)]
    pub matched: bool,
    /// Likes left today, when the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likes_remaining: Option<u64>,
    /// No likes are accepted before this time (RFC 3339), when the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_until: Option<chrono::DateTime<chrono::Utc>>,
}
