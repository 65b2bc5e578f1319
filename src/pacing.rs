//! Pacing swipes like a human: a per-minute quota with random jitter (governor) and a daily like
//! budget. Only remote sources are paced; a replay sends nothing.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Jitter, Quota, RateLimiter};

use crate::config::PacingSettings;

/// The swipe rate limiter.
#[derive(Debug)]
pub struct Pacer {
    /// One swipe per interval, no bursts.
    limiter: DefaultDirectRateLimiter,
    /// The interval between swipes.
    interval: Duration,
    /// Up to this much random delay on top of the interval.
    jitter: Duration,
    /// Likes allowed per UTC day.
    pub daily_like_budget: u64,
}

impl Pacer {
    /// A pacer for `settings`: one swipe per `60 / swipes_per_minute` seconds (no bursts), plus up to
    /// `jitter` of that interval at random.
    pub fn new(settings: &PacingSettings) -> Self {
        let per_minute = NonZeroU32::new(settings.swipes_per_minute.max(1)).expect("at least one");
        let quota = Quota::per_minute(per_minute).allow_burst(NonZeroU32::MIN);
        let interval = Duration::from_secs(60) / per_minute.get();
        Pacer {
            limiter: RateLimiter::direct(quota),
            interval,
            jitter: interval.mul_f64(settings.jitter),
            daily_like_budget: settings.daily_like_budget,
        }
    }

    /// Waits until the next swipe may go out.
    pub async fn ready(&self) {
        self.limiter.until_ready_with_jitter(Jitter::up_to(self.jitter)).await;
    }

    /// The longest [`Pacer::ready`] can wait: one interval and its jitter.
    pub fn longest_wait(&self) -> Duration {
        self.interval + self.jitter
    }
}

/// The next UTC midnight after `now`, when the daily like budget starts again.
pub fn next_budget_reset(now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    let tomorrow = now.date_naive().succ_opt().expect("a date after today");
    tomorrow.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_swipe_goes_at_once_and_the_next_waits_for_the_interval() {
        let pacer = Pacer::new(&PacingSettings {
            swipes_per_minute: 600,
            jitter: 0.0,
            daily_like_budget: 2,
            pass_fraction: 0.0,
        });
        pacer.ready().await;
        let after_first = std::time::Instant::now();
        // The quota allows no burst: a second swipe right away is refused …
        assert!(pacer.limiter.check().is_err());
        // … and waiting for it takes the interval, 60 s / 600 = 100 ms (a lower bound: a slow
        // machine can only make it longer).
        pacer.ready().await;
        let waited = after_first.elapsed();
        assert!(waited >= Duration::from_millis(90), "waited only {waited:?}");
    }

    #[test]
    fn the_budget_resets_at_utc_midnight() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-28T17:30:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(next_budget_reset(now).to_rfc3339(), "2026-11-29T00:00:00+00:00");
    }
}
