//! `swipebot compare`: what models and thresholds would decide on recorded profiles, before one of
//! them is put in charge of an account. Every photo is scored once per model (and never again: see
//! [`cache`]), each model x threshold decides every profile with the daemon's own rule, and the
//! runs are set against the first (profiles that flip) and, given labels, against the user's taste.
//! It reads the recorded profiles and the models only: it never touches a journal and never calls a
//! source.
//!
//! - [`recorded`]: the profiles and their photos' content hashes;
//! - [`cache`]: scores by (model SHA-256, photo SHA-256) on disk;
//! - [`labels`]: the user's labels (`labels.jsonl` or a `like/`/`nope/` folder);
//! - [`report`]: the comparison as text, JSON and an HTML page;
//! - [`command`]: the command line's arguments to options, and the output.

pub mod cache;
pub mod command;
pub mod labels;
pub mod recorded;
pub mod report;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use swipebot_core::metrics::{max_f1_threshold, Measured};

use crate::policy::{NoPhotos, Policy};
use crate::profile::{Decision, PhotoScore};
use crate::vision::batch;
use crate::vision::error::PhotoError;
use crate::vision::scorer::{Scorer, ScorerOptions};
use cache::ModelCache;
use labels::Labels;
use recorded::{Recorded, RecordedProfile};

/// What to compare, and how to score.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The recorded profiles (the replay format).
    pub profiles: PathBuf,
    /// The models, the first being the one the others are set against.
    pub models: Vec<PathBuf>,
    /// Thresholds to decide at; empty means each model's own.
    pub thresholds: Vec<f32>,
    /// The user's labels, if any.
    pub labels: Option<PathBuf>,
    /// The score cache folder; `None` turns the cache off.
    pub cache_dir: Option<PathBuf>,
    /// The ONNX Runtime settings and photo limits.
    pub scorer: ScorerOptions,
    /// Photos a scoring batch.
    pub batch_size: usize,
    /// Threads decoding photos.
    pub decode_threads: usize,
    /// Photos scored a profile at most (`pipeline.max_photos_per_profile`).
    pub max_photos: usize,
    /// What a profile with no scorable photo becomes (`policy.no_photos`).
    pub no_photos: NoPhotos,
}

/// Why a comparison could not be made (a bad input, named).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompareError(pub String);

/// One model's photo scores, and how they were obtained.
#[derive(Debug, Clone, Serialize)]
pub struct ModelScores {
    /// The model file.
    pub path: PathBuf,
    /// SHA-256 of the model file (the cache key, and what the journal records).
    pub sha256: String,
    /// The threshold the model file recommends.
    pub own_threshold: f32,
    /// Photos scored in this run.
    pub scored: usize,
    /// Photos whose result came from the cache.
    pub cached: usize,
    /// Photos without a score (not recorded, not an image, too large).
    pub failed: usize,
    /// Each profile's best photo score (what the any-photo rule compares with the threshold), in
    /// the order of [`Comparison::profile_ids`]; `None` without a scored photo.
    pub best_scores: Vec<Option<f32>>,
    /// Each profile's photo results, in the order of [`Comparison::profiles`].
    #[serde(skip)]
    pub results: Vec<Vec<PhotoScore>>,
}

/// A profile decided differently from the first run.
#[derive(Debug, Clone, Serialize)]
pub struct Flip {
    /// The profile's id.
    pub profile_id: String,
    /// Its display name (written by a stranger: escaped wherever it is shown).
    pub name: String,
    /// The first run's decision.
    pub was: Decision,
    /// This run's decision.
    pub now: Decision,
    /// The photo with the best score under this run's model, and that score.
    pub best_photo: Option<(String, f32)>,
    /// The profile's best score under the first run's model.
    pub best_score_was: Option<f32>,
    /// The index of the profile in [`Comparison::profile_ids`].
    pub index: usize,
}

/// How a run agrees with the user's labels.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// Per profile (a profile is LIKE when any of its labelled photos is), at the run's threshold,
    /// scored by its best photo: the decision the daemon makes.
    pub profiles: Measured,
    /// Per labelled photo, at the run's threshold.
    pub photos: Measured,
    /// The threshold that would maximise the profile-level F1 on these labels.
    pub best_profile_threshold: f64,
}

/// One model at one threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Index into [`Comparison::models`].
    pub model: usize,
    /// The threshold decided at.
    pub threshold: f32,
    /// Profiles liked.
    pub likes: usize,
    /// Profiles passed.
    pub passes: usize,
    /// Profiles skipped (no scorable photo).
    pub skips: usize,
    /// Likes among liked and passed profiles.
    pub like_rate: f64,
    /// Profiles decided differently from the first run.
    pub flips: Vec<Flip>,
    /// Agreement with the labels, when labels were given and cover both classes.
    pub agreement: Option<Agreement>,
    /// Each profile's decision, in the order of [`Comparison::profile_ids`].
    pub decisions: Vec<Decision>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The recorded profiles' folder.
    pub profiles_dir: PathBuf,
    /// Every readable profile's id, in folder order.
    pub profile_ids: Vec<String>,
    /// Profile folders that could not be read, and why.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Photos considered (at most `max_photos` a profile).
    pub photos: usize,
    /// Labelled photos among them.
    pub labelled_photos: usize,
    /// Profiles with at least one labelled photo.
    pub labelled_profiles: usize,
    /// Each model's scores.
    pub models: Vec<ModelScores>,
    /// Each model x threshold, the first being the reference.
    pub runs: Vec<Run>,
    /// The profiles read, for the report.
    #[serde(skip)]
    pub recorded: Vec<RecordedProfile>,
    /// Each photo's label, per profile, in photo order.
    #[serde(skip)]
    pub labels: Vec<Vec<Option<bool>>>,
}

/// One model's results over the recorded profiles, and how they were obtained.
struct Scored {
    /// Each profile's photo results.
    results: Vec<Vec<PhotoScore>>,
    /// Photo contents run through the model now.
    scored: usize,
    /// Photos answered by the cache.
    cached: usize,
    /// Photos without a score.
    failed: usize,
}

/// Scores every recorded photo with `scorer`, taking what the cache has, and adds the new results
/// to it.
fn score_model(
    scorer: &mut Scorer,
    cache: &mut ModelCache,
    recorded: &[RecordedProfile],
    options: &CompareOptions,
) -> Result<Scored, CompareError> {
    // The photos the cache lacks, each content once.
    let mut wanted: Vec<(&Path, &str, &str)> = Vec::new();
    let mut seen = HashSet::new();
    for p in recorded {
        for photo in &p.photos {
            if let Ok(hash) = &photo.hash {
                if cache.get(hash).is_none() && seen.insert(hash.as_str()) {
                    wanted.push((&p.folder, &photo.name, hash));
                }
            }
        }
    }
    let max_bytes = scorer.limits().max_bytes;
    let results = batch::score_all(
        scorer,
        wanted.len(),
        |i| {
            let (folder, name, hash) = wanted[i];
            let bytes = recorded::photo_bytes(folder, name, max_bytes)
                .map_err(|e| PhotoError::Read(std::io::Error::other(e)))?;
            if swipebot_core::model_info::sha256_hex(&bytes) != hash {
                return Err(PhotoError::Read(std::io::Error::other(format!(
                    "{}: changed while being compared",
                    folder.join(name).display()
                ))));
            }
            Ok(bytes)
        },
        options.batch_size,
        options.decode_threads,
    )
    .map_err(|e| CompareError(e.to_string()))?;
    let scored = wanted.len();
    let mut lasting = Vec::new();
    let mut passing = Vec::new();
    for ((_, _, hash), result) in wanted.iter().zip(results) {
        let result = result.and_then(PhotoError::check_score);
        match result {
            Ok(score) => lasting.push((hash.to_string(), Ok(score))),
            // What the photo's bytes cause is as lasting as a score; a read error or a broken
            // model is not, and is tried again next time.
            Err(e @ PhotoError::Decode(_)) => lasting.push((hash.to_string(), Err(e.to_string()))),
            Err(e) => passing.push((hash.to_string(), Err(e.to_string()))),
        }
    }
    cache.add(lasting).map_err(CompareError)?;
    let passing: std::collections::HashMap<String, Result<f32, String>> = passing.into_iter().collect();
    let (mut cached, mut failed) = (0, 0);
    let mut per_profile = Vec::with_capacity(recorded.len());
    let fresh: HashSet<&str> = wanted.iter().map(|(_, _, h)| *h).collect();
    for p in recorded {
        let mut scores = Vec::with_capacity(p.photos.len());
        for photo in &p.photos {
            let result = match &photo.hash {
                Err(why) => Err(why.clone()),
                Ok(hash) => {
                    if !fresh.contains(hash.as_str()) {
                        cached += 1;
                    }
                    passing
                        .get(hash)
                        .or_else(|| cache.get(hash))
                        .cloned()
                        .unwrap_or_else(|| Err("no result".to_string()))
                }
            };
            scores.push(match result {
                Ok(score) => PhotoScore::Scored {
                    photo: photo.name.clone(),
                    score,
                },
                Err(error) => {
                    failed += 1;
                    PhotoScore::Failed {
                        photo: photo.name.clone(),
                        error,
                    }
                }
            });
        }
        per_profile.push(scores);
    }
    Ok(Scored {
        results: per_profile,
        scored,
        cached,
        failed,
    })
}

/// The best score of a profile's photos, with the photo.
fn best(scores: &[PhotoScore]) -> Option<(String, f32)> {
    scores
        .iter()
        .filter_map(|s| match s {
            PhotoScore::Scored { photo, score } => Some((photo.clone(), *score)),
            PhotoScore::Failed { .. } => None,
        })
        .reduce(|a, b| if b.1 > a.1 { b } else { a })
}

/// How a model's scores at `threshold` agree with `labels` (None without both classes labelled).
fn agreement(scores: &[Vec<PhotoScore>], labels: &[Vec<Option<bool>>], threshold: f32) -> Option<Agreement> {
    let (mut photo_p, mut photo_l, mut profile_p, mut profile_l) = (vec![], vec![], vec![], vec![]);
    for (photos, labels) in scores.iter().zip(labels) {
        let mut profile_label = None;
        for (score, label) in photos.iter().zip(labels) {
            if let Some(label) = label {
                profile_label = Some(profile_label.unwrap_or(false) || *label);
                if let Some(s) = score.score() {
                    photo_p.push(f64::from(s));
                    photo_l.push(*label);
                }
            }
        }
        if let (Some(label), Some((_, s))) = (profile_label, best(photos)) {
            profile_p.push(f64::from(s));
            profile_l.push(label);
        }
    }
    let both = |l: &[bool]| l.iter().any(|&x| x) && l.iter().any(|&x| !x);
    if !both(&profile_l) {
        return None;
    }
    Some(Agreement {
        profiles: Measured::at(&profile_p, &profile_l, f64::from(threshold)),
        photos: Measured::at(&photo_p, &photo_l, f64::from(threshold)),
        best_profile_threshold: max_f1_threshold(&profile_p, &profile_l),
    })
}

/// Runs the comparison.
pub fn compare(options: &CompareOptions) -> Result<Comparison, CompareError> {
    if options.models.is_empty() {
        return Err(CompareError("give at least one --model".into()));
    }
    let max_bytes = options.scorer.limits.max_bytes;
    let Recorded { profiles, unreadable } =
        recorded::read(&options.profiles, max_bytes, options.max_photos).map_err(CompareError)?;
    for (folder, why) in &unreadable {
        tracing::warn!(folder = %folder.display(), error = %why, "recorded profile left out");
    }
    let labels = match &options.labels {
        Some(path) => Some(Labels::read(path, max_bytes).map_err(CompareError)?),
        None => None,
    };
    let photo_labels: Vec<Vec<Option<bool>>> = profiles
        .iter()
        .map(|p| {
            p.photos
                .iter()
                .map(|photo| {
                    labels
                        .as_ref()
                        .and_then(|l| l.of(&p.profile.id, &photo.name, photo.hash.as_deref().ok()))
                })
                .collect()
        })
        .collect();

    let mut models = Vec::new();
    for path in &options.models {
        let mut scorer = Scorer::load(path, &options.scorer).map_err(|e| CompareError(e.to_string()))?;
        let sha256 = scorer.model_sha256().to_string();
        let mut cache = ModelCache::open(options.cache_dir.as_deref(), &sha256).map_err(CompareError)?;
        let Scored {
            results,
            scored,
            cached,
            failed,
        } = score_model(&mut scorer, &mut cache, &profiles, options)?;
        tracing::info!(model = %path.display(), scored, cached, failed, "photos scored");
        models.push(ModelScores {
            path: path.clone(),
            sha256,
            own_threshold: scorer.info().threshold,
            scored,
            cached,
            failed,
            best_scores: results.iter().map(|r| best(r).map(|(_, s)| s)).collect(),
            results,
        });
    }

    let mut runs: Vec<Run> = Vec::new();
    for (m, model) in models.iter().enumerate() {
        let thresholds = if options.thresholds.is_empty() {
            vec![model.own_threshold]
        } else {
            options.thresholds.clone()
        };
        for threshold in thresholds {
            let policy = Policy {
                threshold,
                no_photos: options.no_photos,
            };
            let decisions: Vec<Decision> = profiles
                .iter()
                .zip(&model.results)
                .map(|(p, scores)| policy.decide(&p.profile, scores))
                .collect();
            let count = |d: Decision| decisions.iter().filter(|&&x| x == d).count();
            let (likes, passes, skips) = (count(Decision::Like), count(Decision::Pass), count(Decision::Skip));
            let flips = match runs.first() {
                None => Vec::new(),
                Some(first) => decisions
                    .iter()
                    .zip(&first.decisions)
                    .enumerate()
                    .filter(|(_, (now, was))| now != was)
                    .map(|(i, (&now, &was))| Flip {
                        profile_id: profiles[i].profile.id.clone(),
                        name: profiles[i].profile.name.clone(),
                        was,
                        now,
                        best_photo: best(&model.results[i]),
                        best_score_was: best(&models[first.model].results[i]).map(|(_, s)| s),
                        index: i,
                    })
                    .collect(),
            };
            runs.push(Run {
                model: m,
                threshold,
                likes,
                passes,
                skips,
                like_rate: if likes + passes == 0 {
                    0.0
                } else {
                    likes as f64 / (likes + passes) as f64
                },
                flips,
                agreement: agreement(&model.results, &photo_labels, threshold),
                decisions,
            });
        }
    }
    Ok(Comparison {
        profiles_dir: options.profiles.clone(),
        profile_ids: profiles.iter().map(|p| p.profile.id.clone()).collect(),
        unreadable,
        photos: profiles.iter().map(|p| p.photos.len()).sum(),
        labelled_photos: photo_labels.iter().flatten().filter(|l| l.is_some()).count(),
        labelled_profiles: photo_labels.iter().filter(|l| l.iter().any(Option::is_some)).count(),
        models,
        runs,
        recorded: profiles,
        labels: photo_labels,
    })
}
