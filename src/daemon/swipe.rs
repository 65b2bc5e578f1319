//! Sending one swipe: one at a time, under the pacer and the daily like budget (remote sources
//! only), retrying transient failures and waiting out rate limits without calling the source.

use std::time::Duration;

use chrono::Utc;

use crate::daemon::context::Context;
use crate::daemon::live::Live;
use crate::pacing;
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

/// Sends `decision` on `profile` through the pacer, one swipe at a time.
pub(crate) async fn send_swipe(ctx: &Context, live: &Live, profile: &Profile, decision: Decision) -> SwipeResult {
    let _lane = tokio::select! {
        l = ctx.swipe_lane.lock() => l,
        _ = ctx.shutdown.wait() => return SwipeResult::Abandoned,
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        if ctx.source.is_remote() {
            if decision == Decision::Like && !wait_for_like_budget(ctx, live).await {
                return SwipeResult::Abandoned;
            }
            tokio::select! {
                _ = live.pacer.ready() => {}
                _ = ctx.shutdown.wait() => return SwipeResult::Abandoned,
            }
        }
        match ctx.source.swipe(profile, decision).await {
            Ok(outcome) => {
                if let Some(until) = outcome.rate_limited_until {
                    tracing::warn!(%until, "the source says no more likes until then");
                }
                return SwipeResult::Sent(outcome);
            }
            Err(SourceError::RateLimited { until }) => {
                tracing::warn!(profile = %profile.id, %until, "rate limited; waiting before swiping again");
                if !ctx.wait_until(until).await {
                    return SwipeResult::Abandoned;
                }
            }
            Err(SourceError::Transient(e)) => {
                tracing::warn!(profile = %profile.id, retry_in = backoff.as_secs(), "swipe failed: {e}");
                if !ctx.wait_until(Utc::now() + backoff).await {
                    return SwipeResult::Abandoned;
                }
                backoff = (backoff * 2).min(Duration::from_secs(120));
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

/// Waits until one more like fits in today's budget (the next UTC midnight when it is spent);
/// false if the daemon is stopping.
async fn wait_for_like_budget(ctx: &Context, live: &Live) -> bool {
    loop {
        let today = ctx.journal.likes_on(Utc::now().date_naive());
        if live.pacer.like_allowed(today) {
            return true;
        }
        let reset = pacing::next_budget_reset(Utc::now());
        tracing::info!(until = %reset, budget = live.pacer.daily_like_budget, "daily like budget spent; waiting");
        if !ctx.wait_until(reset).await {
            return false;
        }
    }
}
