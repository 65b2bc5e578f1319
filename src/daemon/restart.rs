//! After a crash: the swipes whose intents were journaled but whose acknowledgements were not are
//! sent again (like and pass are idempotent at the source) and recorded, before anything new.

use crate::daemon::context::Context;
use crate::daemon::swipe::{send_swipe, SwipeResult};
use crate::daemon::DaemonError;
use crate::journal::Record;
use crate::profile::Profile;

/// Resends the swipes of `unresolved` intents (oldest first) and records each answer. Only the
/// source that journaled an intent may resend it, and never in a dry run: the others stay pending
/// (and their profiles decided) until a run of that source resolves them.
pub(crate) async fn resolve_unresolved(ctx: &Context, unresolved: Vec<Record>) -> Result<(), DaemonError> {
    for mut record in unresolved {
        if record.source != ctx.source.name() || ctx.dry_run {
            tracing::warn!(
                profile = %record.profile_id,
                intent_of = %record.source,
                running = ctx.source.name(),
                dry_run = ctx.dry_run,
                "an unacknowledged swipe is left pending: only a live run of the source that decided it sends it"
            );
            continue;
        }
        tracing::info!(profile = %record.profile_id, decision = record.decision.as_str(), "resending a swipe whose acknowledgement was not recorded before the last stop");
        // The source needs only the id to swipe.
        let profile = Profile {
            id: record.profile_id.clone(),
            name: String::new(),
            bio: String::new(),
            photos: vec![],
            placeholder: false,
            extra: Default::default(),
        };
        let live = ctx.live.borrow().clone();
        match send_swipe(ctx, &live, &profile, record.decision).await {
            SwipeResult::Sent(outcome) => {
                record.sent = true;
                record.sent_at = Some(chrono::Utc::now());
                record.outcome = Some(outcome);
            }
            SwipeResult::Failed(error) => record.error = Some(error),
            SwipeResult::Abandoned => return Ok(()),
        }
        record.resolved_after_restart = true;
        // Decided by an earlier run: journaled, not counted in this run's summary.
        ctx.journal.record(record).await?;
    }
    Ok(())
}
