//! What can stop the daemon with an error.

use crate::journal::JournalError;
use crate::vision::scorer::ScorerError;

/// A reason the daemon stops before its source is exhausted or a signal arrives.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The model or ONNX Runtime could not be loaded.
    #[error(transparent)]
    Scorer(#[from] ScorerError),
    /// The journal could not be read or written: nothing more can be acted on safely.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The source refused the credentials.
    #[error("{0}; put a fresh token in place and restart (see systemd/README.md)")]
    Unauthorized(String),
    /// The scoring engine or the model failed on profile after profile (a broken model, a scorer
    /// thread gone): stopping beats skipping through the candidates.
    #[error(
        "scoring does not work: {0}; no profile was journaled for it (check the model with `swipebot check-config`)"
    )]
    Engine(String),
    /// A profile task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}
