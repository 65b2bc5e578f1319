//! Profile sources: where candidates come from and where swipes go.
//!
//! The daemon speaks only to [`ProfileSource`]. [`replay::ReplaySource`] reads recorded profiles from
//! disk (the test mode: nothing leaves the machine); the HTTP source talks to a Tinder-style API.

pub mod address;
pub mod photo;
pub mod recorder;
pub mod replay;
pub mod tinder;

#[cfg(test)]
pub(crate) mod test_server;

use std::time::Duration;

use async_trait::async_trait;

use crate::profile::{Decision, Profile, SwipeOutcome};

/// A profile that arrived too broken to use: journaled as a `skip` with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The profile's id when it could be read, else where it came from (a folder, "result 3").
    pub id: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What the model in charge asks of a source's photos. A source is told at start and again after
/// every SIGHUP that loads a model, through the one daemon function that puts a model in charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoNeeds {
    /// Side of the model's square input, in pixels: a source that can choose among photo sizes
    /// downloads the smallest one at least this large.
    pub side: u32,
}

/// What one call for candidates returned.
#[derive(Debug)]
pub enum Candidates {
    /// Profiles to decide on, and the ones that arrived too broken to use.
    Profiles {
        /// Usable profiles.
        profiles: Vec<Profile>,
        /// Profiles the source could not parse: journaled as `skip` with the reason.
        rejected: Vec<Rejected>,
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
    /// No calls at all are accepted before `until` (HTTP 429, a rate limit inside a 200 body).
    #[error("rate limited until {until}")]
    RateLimited {
        /// When to try again.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// No likes are accepted before `until` (out of likes); passes and recommendations go on. A
    /// like answered so was not taken.
    #[error("out of likes until {until}")]
    OutOfLikes {
        /// When likes are accepted again (the API's time, else the configured wait).
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The credentials were refused; nothing will work until they are replaced.
    #[error("the API token was refused (HTTP 401): {0}")]
    Unauthorized(String),
    /// This one request cannot succeed (a bad photo URL, an oversized download); do not retry it.
    #[error("{0}")]
    Permanent(String),
    /// The source's settings or credentials cannot be used (a token file that cannot be read).
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// A source cannot be built or reconfigured from the settings.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A config key's value cannot be used; `message` says why and what to do.
    #[error("config key `{key}`: {message}")]
    Config {
        /// The dotted config key at fault, e.g. `source.replay_dir`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client could not be built (no config key is at fault: the TLS backend failed).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
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
    fn reload_credentials(&self) -> Result<(), SourceError> {
        Ok(())
    }

    /// Adapts to the model now in charge (at start and after every SIGHUP that loads a model), e.g.
    /// to download photos of a fitting size. Sources whose photos come as they are ignore it.
    fn use_photo_needs(&self, _needs: PhotoNeeds) {}

    /// The longest one call of this source may take, its own retries and their backoff included
    /// (the watchdog is fed while a call waits on purpose, up to this long).
    fn longest_call(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// The next candidates.
    async fn candidates(&self) -> Result<Candidates, SourceError>;

    /// The bytes of one photo of `profile`, as named in `profile.photos`.
    async fn photo(&self, profile: &Profile, photo: &str) -> Result<Vec<u8>, SourceError>;

    /// Sends a like or a pass and returns what the source said.
    async fn swipe(&self, profile: &Profile, decision: Decision) -> Result<SwipeOutcome, SourceError>;
}
