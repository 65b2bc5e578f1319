//! Deciding one profile: every photo fetched and scored, the rule applied, the decision journaled
//! (an intent first for a swipe), the swipe sent, the acknowledged record written.

use std::time::Instant;

use crate::daemon::context::Context;
use crate::daemon::live::Live;
use crate::daemon::swipe::{send_swipe, SwipeResult};
use crate::journal::Record;
use crate::metrics::metrics;
use crate::metrics::registry::PhotoResult;
use crate::policy;
use crate::profile::{Decision, PhotoScore, Profile};
use crate::vision::error::PhotoError;

/// Decides on one profile and acts on it. Errors that stop the daemon are reported through
/// [`Context::fail`]; an abandoned swipe (shutdown) leaves its intent for the next start.
pub(crate) async fn process(ctx: &Context, live: &Live, profile: Profile) {
    let start = Instant::now();
    let scores: Vec<PhotoScore> = if profile.placeholder {
        Vec::new()
    } else {
        let (scored, rest) = profile
            .photos
            .split_at(profile.photos.len().min(ctx.max_photos_per_profile));
        let results = futures::future::join_all(scored.iter().map(|p| fetch_and_score(ctx, live, &profile, p))).await;
        match results.into_iter().collect::<Result<Vec<_>, PhotoError>>() {
            Ok(mut scores) => {
                scores.extend(rest.iter().map(|photo| PhotoScore::Failed {
                    photo: photo.clone(),
                    error: format!(
                        "not scored: the profile has more than pipeline.max_photos_per_profile ({}) photos",
                        ctx.max_photos_per_profile
                    ),
                }));
                scores
            }
            // Not the profile's fault: it is not journaled, so it can be decided another time.
            Err(e) => return ctx.engine_failed(&profile.id, &e),
        }
    };
    ctx.engine_ok();
    let mut decision = live.policy.decide(&profile, &scores);
    metrics().decision_latency(start.elapsed());
    // A share of likes goes out as passes, so the pattern of swipes looks human.
    let mixed_pass =
        decision == Decision::Like && live.pass_fraction > 0.0 && rand::random::<f64>() < live.pass_fraction;
    if mixed_pass {
        decision = Decision::Pass;
    }
    let mut record = Record {
        mixed_pass,
        ..ctx.new_record(live, profile.id.clone(), decision, scores)
    };
    if decision != Decision::Skip && !ctx.dry_run {
        if let Err(e) = ctx.journal.record_intent(record.clone()).await {
            return ctx.fail(e.into());
        }
        match send_swipe(ctx, live, &profile, decision).await {
            SwipeResult::Sent(outcome) => {
                record.sent = true;
                record.sent_at = Some(chrono::Utc::now());
                record.outcome = Some(outcome);
            }
            SwipeResult::Failed(error) => record.error = Some(error),
            // The intent stays in the journal; the swipe is resent on the next start.
            SwipeResult::Abandoned => return,
        }
    }
    conclude(ctx, record, start).await;
}

/// Journals, counts and logs a decided profile; a journal that cannot be written stops the daemon.
async fn conclude(ctx: &Context, record: Record, start: Instant) {
    let logged = record.clone();
    if let Err(e) = ctx.record(record).await {
        return ctx.fail(e.into());
    }
    tracing::info!(
        profile = %logged.profile_id,
        photos = logged.scores.len(),
        best = policy::best_score(&logged.scores).map(f64::from),
        decision = logged.decision.as_str(),
        sent = logged.sent,
        matched = logged.outcome.as_ref().is_some_and(|o| o.matched),
        latency_ms = start.elapsed().as_millis() as u64,
        "decided"
    );
}

/// Fetches one photo from the source (at most `pipeline.photo_concurrency` at once, within
/// `pipeline.photo_timeout_secs`), then decodes and scores it; a failure of the photo becomes its
/// error, a failure of the scoring engine (or a broken model) is returned as such.
async fn fetch_and_score(ctx: &Context, live: &Live, profile: &Profile, photo: &str) -> Result<PhotoScore, PhotoError> {
    let bytes = {
        let _slot = ctx.photo_slots.acquire().await.expect("semaphore open");
        let started = Instant::now();
        let bytes = tokio::time::timeout(ctx.photo_timeout, ctx.source.photo(profile, photo)).await;
        if let Ok(Ok(_)) = &bytes {
            metrics().download_time(started.elapsed());
        }
        bytes
    };
    let result = match bytes {
        Err(_) => Err(PhotoError::TimedOut {
            secs: ctx.photo_timeout.as_secs(),
        }),
        Ok(Err(e)) => Err(PhotoError::Fetch(e)),
        Ok(Ok(bytes)) => live.scoring.decode_and_score(bytes).await,
    };
    metrics().photo(match &result {
        Ok(_) => PhotoResult::Scored,
        Err(e) => PhotoResult::of(e),
    });
    match result {
        Err(e) if e.is_engine_fault() => Err(e),
        Ok(score) => {
            ctx.stats.photo(true);
            Ok(PhotoScore::Scored {
                photo: photo.to_string(),
                score,
            })
        }
        Err(error) => {
            ctx.stats.photo(false);
            tracing::warn!(profile = %profile.id, photo, "photo ignored: {error}");
            Ok(PhotoScore::Failed {
                photo: photo.to_string(),
                error: error.to_string(),
            })
        }
    }
}
