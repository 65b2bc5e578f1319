//! Sending one swipe: one at a time, under the pacer, the daily like budget and the source's pause
//! on likes (remote sources only), retrying transient failures and waiting out rate limits without
//! calling the source.

use std::time::Duration;

use chrono::Utc;

use crate::daemon::context::Context;
use crate::daemon::likes::LikeHold;
use crate::daemon::live::Live;
use crate::metrics::metrics;
use crate::metrics::registry::answer;
use crate::profile::{Decision, Profile, SwipeOutcome};
use crate::source::SourceError;

/// How a swipe ended.
pub(crate) enum SwipeResult {
    /// The source acknowledged it, with its answer.
    Sent(SwipeOutcome),
    /// The source refused it for good; the reason goes into the record.
    Failed(String),
    /// Shutdown came first: nothing was acknowledged, the intent is resent on the next start.
    Abandoned,
}

/// Sends `decision` on `profile` through the pacer, one swipe at a time. A like first waits, outside
/// the one-at-a-time lane so that passes go on meanwhile, for the daily budget and the source's
/// pause; both are checked again, and counted, inside the lane, so no two likes see room for one.
pub(crate) async fn send_swipe(ctx: &Context, live: &Live, profile: &Profile, decision: Decision) -> SwipeResult {
    let remote = ctx.source.is_remote();
    let is_like = decision == Decision::Like;
    let mut backoff = ctx.waits.floor;
    loop {
        if remote && is_like && !wait_for_like_room(ctx, live).await {
            return SwipeResult::Abandoned;
        }
        let _lane = tokio::select! {
            l = ctx.swipe_lane.lock() => l,
            _ = ctx.shutdown.wait() => return SwipeResult::Abandoned,
        };
        if remote {
            if is_like && ctx.likes.hold(Utc::now(), live.pacer.daily_like_budget).is_some() {
                // Another like took the room while this one waited for the lane.
                continue;
            }
            let ready = ctx.patiently(live.pacer.ready(), live.pacer.longest_wait() + Duration::from_secs(10));
            tokio::select! {
                _ = ready => {}
                _ = ctx.shutdown.wait() => return SwipeResult::Abandoned,
            }
        }
        let answer = ctx
            .patiently(ctx.source.swipe(profile, decision), ctx.source.longest_call())
            .await;
        metrics().swipe(decision, answer_label(&answer));
        match answer {
            Ok(outcome) => {
                if is_like && remote {
                    ctx.likes.count_sent(Utc::now());
                }
                if let Some(until) = outcome.rate_limited_until.filter(|u| *u > Utc::now()) {
                    let until = ctx.waits.deadline(until, Utc::now());
                    if let Err(e) = ctx.likes.pause(until) {
                        ctx.fail(e.into());
                    }
                }
                return SwipeResult::Sent(outcome);
            }
            Err(SourceError::OutOfLikes { until }) => {
                // The like was not taken: pause likes, then wait for room again (lane released).
                if let Err(e) = ctx.likes.pause(ctx.waits.deadline(until, Utc::now())) {
                    ctx.fail(e.into());
                    return SwipeResult::Abandoned;
                }
            }
            Err(SourceError::RateLimited { until }) => {
                tracing::warn!(profile = %profile.id, %until, "rate limited; waiting before swiping again");
                if !ctx.wait_for_source(until).await {
                    return SwipeResult::Abandoned;
                }
            }
            Err(SourceError::Transient(e)) => {
                tracing::warn!(profile = %profile.id, retry_in = backoff.as_secs(), "swipe failed: {e}");
                if !ctx.wait_until(Utc::now() + backoff).await {
                    return SwipeResult::Abandoned;
                }
                backoff = ctx.waits.clamp((backoff * 2).min(Duration::from_secs(120)));
            }
            Err(SourceError::Unauthorized(e)) => {
                if !ctx.unauthorized(e).await {
                    return SwipeResult::Abandoned;
                }
            }
            Err(e @ (SourceError::Permanent(_) | SourceError::Setup(_))) => return SwipeResult::Failed(e.to_string()),
        }
    }
}

/// The `answer` label of the source's answer to a swipe.
fn answer_label(answer: &Result<SwipeOutcome, SourceError>) -> &'static str {
    match answer {
        Ok(outcome) if outcome.matched => answer::MATCH,
        Ok(_) => answer::NO_MATCH,
        Err(SourceError::OutOfLikes { .. }) => answer::OUT_OF_LIKES,
        Err(SourceError::RateLimited { .. }) => answer::RATE_LIMITED,
        Err(SourceError::Transient(_)) => answer::TRANSIENT,
        Err(SourceError::Unauthorized(_)) => answer::UNAUTHORIZED,
        Err(SourceError::Permanent(_) | SourceError::Setup(_)) => answer::REFUSED,
    }
}

/// Waits until a like fits: the source's pause is over and today's budget has room (else the
/// next UTC midnight); false if the daemon is stopping.
async fn wait_for_like_room(ctx: &Context, live: &Live) -> bool {
    while let Some(hold) = ctx.likes.hold(Utc::now(), live.pacer.daily_like_budget) {
        match hold {
            LikeHold::Paused(until) => tracing::info!(%until, "likes are paused by the source; this like waits"),
            LikeHold::BudgetSpent(until) => {
                tracing::info!(%until, budget = live.pacer.daily_like_budget, "daily like budget spent; waiting")
            }
        }
        if !ctx.wait_until(hold.until()).await {
            return false;
        }
    }
    true
}
