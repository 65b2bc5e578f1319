//! Why one photo has no score: the error type of the seam between sources, preprocessing and the
//! scorer. Its text goes into the journal (`{photo, error}`) and the logs; the variant tells the
//! daemon whose fault it was.

use swipebot_core::preprocess::PreprocessError;

use crate::source::SourceError;

/// One photo could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    /// A local file could not be read (`swipebot score`).
    #[error("cannot read the file: {0}")]
    Read(#[source] std::io::Error),
    /// The source could not deliver the photo's bytes (a bad URL, an HTTP error, a size cap).
    #[error(transparent)]
    Fetch(#[from] SourceError),
    /// The download took longer than `pipeline.photo_timeout_secs`.
    #[error("download timed out after {secs} s")]
    TimedOut {
        /// The timeout that ran out, in seconds.
        secs: u64,
    },
    /// The bytes are not an image this pipeline accepts (corrupt, too large, unknown format).
    #[error(transparent)]
    Decode(#[from] PreprocessError),
    /// The model gave a score that is not a number (NaN or infinite): the model is broken (a
    /// diverged training run), not the photo.
    #[error("the model gave a non-finite score ({score}): it is broken (a diverged training run?); train it again or use another model")]
    NotFinite {
        /// What the model gave.
        score: f32,
    },
    /// The scoring engine failed or stopped: not the photo's fault.
    #[error("{0}")]
    Engine(String),
}

impl PhotoError {
    /// A score from the model, or the error it is when it is not a number.
    pub fn check_score(score: f32) -> Result<f32, PhotoError> {
        if score.is_finite() {
            Ok(score)
        } else {
            Err(PhotoError::NotFinite { score })
        }
    }

    /// Whether the failure lies with the scoring engine rather than with the photo, so that the
    /// profile is not to be blamed (and not decided) for it.
    pub fn is_engine_fault(&self) -> bool {
        matches!(self, PhotoError::Engine(_) | PhotoError::NotFinite { .. })
    }
}
