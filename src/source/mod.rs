//! Profile sources: where candidates come from and where swipes go.
//!
//! The daemon speaks only to [`ProfileSource`]. [`replay::ReplaySource`] reads recorded profiles from
//! disk (the test mode: nothing leaves the machine); the HTTP source talks to a Tinder-style API.

pub mod photo;
pub mod recorder;
pub mod replay;
pub mod tinder;

use std::time::Duration;

use async_trait::async_trait;

use crate::profile::{Decision, Profile, SwipeOutcome};

/// What one call for candidates returned.
#[derive(Debug)]
pub enum Candidates {
    /// Profiles to decide on, and the ones that arrived too broken to use (id or folder, and why).
    Profiles {
        /// Usable profiles.
        profiles: Vec<Profile>,
        /// Profiles the source could not parse: journaled as `skip` with the reason.
        rejected: Vec<(String, String)>,
    },
    /// Nothing right now: ask again after this long.
    Wait(Duration),
    /// There will never be more (a replay has reached its end).
    Exhausted,
}

/// Why a source call failed. The variant tells the daemon what to do next.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Worth retrying later (network trouble, 5xx, malformed body).
    #[error("{0}")]
    Transient(String),
    /// No swipes (or no likes) are accepted before `until`.
    #[error("rate limited until {until}")]
    RateLimited {
        /// When to try again.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The credentials were refused; nothing will work until they are replaced.
    #[error("the API token was refused (HTTP 401): {0}")]
    Unauthorized(String),
    /// This one request cannot succeed (a bad photo URL, an oversized download); do not retry it.
    #[error("{0}")]
    Permanent(String),
}

/// A place that supplies candidate profiles and accepts swipes.
#[async_trait]
pub trait ProfileSource: Send + Sync {
    /// Short name for logs and the journal (`replay`, `tinder`).
    fn name(&self) -> &str;

    /// Whether swipes leave the machine and so must be paced like a human's.
    fn is_remote(&self) -> bool;

    /// Reads the credentials again (SIGHUP after the API refused them). Sources without credentials
    /// have nothing to do.
    fn reload_credentials(&self) -> Result<(), String> {
        Ok(())
    }

    /// Tells the source the side of the model's input, so it can download photos of a fitting size.
    fn prefer_photo_side(&self, _side: u32) {}

    /// The next candidates.
    async fn candidates(&self) -> Result<Candidates, SourceError>;

    /// The bytes of one photo of `profile`, as named in `profile.photos`.
    async fn photo(&self, profile: &Profile, photo: &str) -> Result<Vec<u8>, SourceError>;

    /// Sends a like or a pass and returns what the source said.
    async fn swipe(&self, profile: &Profile, decision: Decision) -> Result<SwipeOutcome, SourceError>;
}
