//! One journal line: a profile's decision with every photo's score, the threshold, the model and what
//! the source answered.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::profile::{Decision, PhotoScore, SwipeOutcome};

/// One profile's decision, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The source's profile id.
    pub profile_id: String,
    /// `like`, `pass` or `skip`.
    pub decision: Decision,
    /// Each photo's score or error, in the profile's order.
    pub scores: Vec<PhotoScore>,
    /// The threshold the decision used.
    pub threshold: f32,
    /// SHA-256 of the model file that scored the photos.
    pub model_sha256: String,
    /// The source's name.
    pub source: String,
    /// When the decision was taken.
    pub at: DateTime<Utc>,
    /// Whether the source acknowledged a swipe.
    pub sent: bool,
    /// When the source acknowledged the swipe: a like counts against the daily budget of this day,
    /// not of the day it was decided. Absent in records written before it existed (then `at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// What the source answered to the swipe.
    pub outcome: Option<SwipeOutcome>,
    /// Why the profile was skipped without scoring (a broken profile), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Dry run: scored and journaled, never swiped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The swipe was sent again after a restart because its acknowledgement had not been recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolved_after_restart: bool,
    /// A like sent as a pass on purpose (`pacing.pass_fraction`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mixed_pass: bool,
}

impl Record {
    /// What kind of skip this record is, in a few words (`None` for a like or a pass): a broken
    /// profile (with `error`), a placeholder or a profile without photos, or photos none of which
    /// could be scored. `swipebot stats` counts skips by it and the console shows it.
    pub fn skip_kind(&self) -> Option<&'static str> {
        match self.decision {
            Decision::Skip if self.error.is_some() => Some("bad profile"),
            Decision::Skip if self.scores.is_empty() => Some("placeholder or no photos"),
            Decision::Skip => Some("no scorable photo"),
            _ => None,
        }
    }

    /// A record of `decision` on `profile_id`, taken now by `source`: no scores, no model, not sent.
    /// The caller sets what else it knows.
    pub fn new(profile_id: impl Into<String>, decision: Decision, source: impl Into<String>) -> Self {
        Record {
            profile_id: profile_id.into(),
            decision,
            scores: Vec::new(),
            threshold: 0.0,
            model_sha256: String::new(),
            source: source.into(),
            at: Utc::now(),
            sent: false,
            sent_at: None,
            outcome: None,
            error: None,
            dry_run: false,
            resolved_after_restart: false,
            mixed_pass: false,
        }
    }
}
