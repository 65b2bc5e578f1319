//! What SIGHUP swaps: the model, the decision rule and the pacer, bundled so that a profile is
//! decided from start to end with one consistent set.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Settings;
use crate::pacing::Pacer;
use crate::policy::Policy;
use crate::source::PhotoNeeds;
use crate::vision::scorer::{ScorerError, ScorerOptions};
use crate::vision::service::ScoringService;
use swipebot_core::preprocess::Limits;

/// The settings a profile is processed with; replaced as a whole on SIGHUP.
#[derive(Debug)]
pub struct Live {
    /// The decision rule, with the threshold resolved (the config's, else the model's).
    pub policy: Policy,
    /// The model's scoring threads.
    pub scoring: Arc<ScoringService>,
    /// The model file the scoring threads loaded, to tell on reload whether it changed.
    pub model_path: PathBuf,
    /// The swipe pacer.
    pub pacer: Arc<Pacer>,
    /// Fraction of likes sent as passes, at random.
    pub pass_fraction: f64,
}

impl Live {
    /// Builds the bundle for `settings`: at start with `current = None`, on reload with the running
    /// bundle, whose scoring threads are kept when the model file is the same one (same path, same
    /// SHA-256), so a reload that changes only the threshold or pacing loads nothing.
    pub fn build(settings: &Settings, current: Option<&Live>) -> Result<Live, ScorerError> {
        let reusable = current.filter(|c| c.model_path == settings.model.path && same_file(c));
        let scoring = match reusable {
            Some(c) => Arc::clone(&c.scoring),
            None => start_scoring(settings)?,
        };
        let threshold = settings.model.threshold.unwrap_or(scoring.info().threshold);
        Ok(Live {
            policy: Policy {
                threshold,
                no_photos: settings.policy.no_photos,
            },
            scoring,
            model_path: settings.model.path.clone(),
            pacer: Arc::new(Pacer::new(&settings.pacing)),
            pass_fraction: settings.pacing.pass_fraction,
        })
    }

    /// What this bundle's model asks of a source's photos.
    pub fn photo_needs(&self) -> PhotoNeeds {
        PhotoNeeds {
            side: self.scoring.info().input_size,
        }
    }
}

/// Whether the model file at `live.model_path` still has the SHA-256 `live` was loaded from.
fn same_file(live: &Live) -> bool {
    std::fs::read(&live.model_path)
        .ok()
        .map(|b| swipebot_core::model_info::sha256_hex(&b))
        .as_deref()
        == Some(live.scoring.model_sha256())
}

/// How the settings ask for the model to be loaded: runtime library, device, threads, photo limits.
pub fn scorer_options(settings: &Settings) -> ScorerOptions {
    ScorerOptions {
        library: settings.runtime.library.clone(),
        device: settings.runtime.device,
        require_gpu: settings.runtime.require_gpu,
        intra_threads: settings.runtime.intra_threads,
        limits: Limits {
            max_bytes: settings.pipeline.max_photo_bytes,
            max_pixels: settings.pipeline.max_photo_pixels,
        },
    }
}

/// Loads the model into its scoring threads, with the runtime and photo limits of `settings`.
fn start_scoring(settings: &Settings) -> Result<Arc<ScoringService>, ScorerError> {
    ScoringService::start(
        &settings.model.path,
        &scorer_options(settings),
        settings.runtime.scorer_threads,
        settings.runtime.batch_size,
        settings.pipeline.decodes_at_once,
    )
}
