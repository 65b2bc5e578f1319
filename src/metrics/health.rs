//! `/healthz`: healthy while the daemon's loop shows signs of life (within
//! `metrics.stalled_after_secs`) and the model in charge answers a blank photo. The answer is kept
//! for a few seconds, and one check runs at a time, so a busy scraper cannot keep the scorer busy.

use std::time::{Duration, Instant};

use crate::daemon::Daemon;

/// How long a scorer's answer is trusted before it is asked again.
const PROBE_EVERY: Duration = Duration::from_secs(10);

/// How long the scorer has to answer a blank photo (behind at most a queue of real ones).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The health check of one daemon.
#[derive(Debug)]
pub struct Health {
    /// No sign of life for longer than this is a stall (`metrics.stalled_after_secs`).
    stalled_after: Duration,
    /// The last answer of the scorer and when it came; the lock makes checks one at a time.
    last_probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Health {
    /// A check that calls the loop stalled after `stalled_after` without a sign of life.
    pub fn new(stalled_after: Duration) -> Self {
        Health {
            stalled_after,
            last_probe: tokio::sync::Mutex::new(None),
        }
    }

    /// `Ok` with a short word when healthy, else why not.
    pub async fn check(&self, daemon: &Daemon) -> Result<String, String> {
        let age = daemon.heartbeat_age();
        if age > self.stalled_after {
            return Err(format!(
                "stalled: no sign of life from the pipeline for {} s (metrics.stalled_after_secs = {})",
                age.as_secs(),
                self.stalled_after.as_secs()
            ));
        }
        let mut last = self.last_probe.lock().await;
        let fresh = last.as_ref().filter(|(at, _)| at.elapsed() < PROBE_EVERY);
        let answer = match fresh {
            Some((_, answer)) => answer.clone(),
            None => {
                let answer = daemon
                    .scoring()
                    .probe(PROBE_TIMEOUT)
                    .await
                    .map_err(|e| format!("the scorer does not answer: {e}"));
                *last = Some((Instant::now(), answer.clone()));
                answer
            }
        };
        answer.map(|()| "ok".to_string())
    }
}
