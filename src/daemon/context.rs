//! What the profile tasks share, and the small helpers they all use: waiting while keeping the
//! watchdog fed, stopping on a fatal error, pausing for new credentials, and the one way a decided
//! profile is journaled, counted and logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{watch, Semaphore};

use crate::daemon::likes::LikeGate;
use crate::daemon::live::Live;
use crate::daemon::summary::Stats;
use crate::daemon::DaemonError;
use crate::journal::{JournalError, JournalHandle, Record};
use crate::profile::{Decision, PhotoScore};
use crate::shutdown::Shutdown;
use crate::source::ProfileSource;

/// How often a deliberate wait shows a sign of life: well inside any watchdog interval.
const BEAT: Duration = Duration::from_secs(1);

/// Floor and ceiling of every wait a source imposes (`source.min_wait_secs`,
/// `source.max_wait_secs`): a zero or past deadline never makes a storm of calls, and no deadline
/// keeps the daemon asleep for longer than the ceiling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waits {
    /// The shortest wait.
    pub floor: Duration,
    /// The longest wait.
    pub ceiling: Duration,
}

impl Waits {
    /// `wait` brought within the floor and the ceiling.
    pub fn clamp(&self, wait: Duration) -> Duration {
        wait.clamp(self.floor, self.ceiling)
    }

    /// The deadline `until`, seen at `now`, brought within the floor and the ceiling.
    pub fn deadline(&self, until: chrono::DateTime<Utc>, now: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
        let wait = (until - now).to_std().unwrap_or_default();
        now + self.clamp(wait)
    }
}

/// Everything the profile tasks share.
pub(crate) struct Context {
    /// Where candidates come from and swipes go.
    pub source: Arc<dyn ProfileSource>,
    /// The decisions so far, and the only way to record new ones.
    pub journal: JournalHandle,
    /// The model, rule and pacer for new profiles; SIGHUP sends a new bundle.
    pub live: watch::Receiver<Arc<Live>>,
    /// Bounds the photo downloads running at once (`pipeline.photo_concurrency`).
    pub photo_slots: Semaphore,
    /// Swipes go out one at a time, so the pacer sees them in order.
    pub swipe_lane: tokio::sync::Mutex<()>,
    /// SIGTERM/SIGINT, or a fatal error: stop fetching, drain, exit.
    pub shutdown: Shutdown,
    /// Counters for the summary.
    pub stats: Stats,
    /// The daily like budget's count and the source's pause on likes.
    pub likes: LikeGate,
    /// Floor and ceiling of the waits the source imposes.
    pub waits: Waits,
    /// Profiles in a row that the scoring engine failed on (not the photos' fault).
    engine_failures: std::sync::atomic::AtomicU32,
    /// After this many in a row the daemon stops rather than skip its way through the candidates
    /// (`pipeline.max_engine_failures`).
    max_engine_failures: u32,
    /// Milliseconds after `started` of the last sign of life, read by the watchdog.
    heartbeat: AtomicU64,
    /// When the daemon started; the origin of `heartbeat`.
    pub started: Instant,
    /// Score and journal, never swipe (`source.dry_run`).
    pub dry_run: bool,
    /// Longest a photo download may take (`pipeline.photo_timeout_secs`).
    pub photo_timeout: Duration,
    /// Photos scored per profile at most (`pipeline.max_photos_per_profile`).
    pub max_photos_per_profile: usize,
    /// The first error that stopped the daemon, returned by `run`.
    fatal: Mutex<Option<DaemonError>>,
    /// After a 401: wait for new credentials (SIGHUP) instead of stopping.
    wait_for_credentials: bool,
    /// Wakes the tasks paused after a 401 once SIGHUP brought new credentials.
    pub credentials_reloaded: tokio::sync::Notify,
}

/// The parts of a [`Context`] that come from the settings and the source.
pub(crate) struct ContextParts {
    /// See [`Context::source`].
    pub source: Arc<dyn ProfileSource>,
    /// See [`Context::journal`].
    pub journal: JournalHandle,
    /// See [`Context::live`].
    pub live: watch::Receiver<Arc<Live>>,
    /// See [`Context::photo_slots`].
    pub photo_concurrency: usize,
    /// See [`Context::shutdown`].
    pub shutdown: Shutdown,
    /// See [`Context::dry_run`].
    pub dry_run: bool,
    /// See [`Context::photo_timeout`].
    pub photo_timeout: Duration,
    /// See [`Context::max_photos_per_profile`].
    pub max_photos_per_profile: usize,
    /// See [`Context::wait_for_credentials`].
    pub wait_for_credentials: bool,
    /// See [`Context::likes`].
    pub likes: LikeGate,
    /// See [`Context::waits`].
    pub waits: Waits,
    /// See [`Context::max_engine_failures`].
    pub max_engine_failures: u32,
}

impl Context {
    /// A context for a daemon starting now.
    pub fn new(parts: ContextParts) -> Self {
        Context {
            source: parts.source,
            journal: parts.journal,
            live: parts.live,
            photo_slots: Semaphore::new(parts.photo_concurrency),
            swipe_lane: tokio::sync::Mutex::new(()),
            shutdown: parts.shutdown,
            stats: Stats::default(),
            likes: parts.likes,
            waits: parts.waits,
            engine_failures: std::sync::atomic::AtomicU32::new(0),
            max_engine_failures: parts.max_engine_failures,
            heartbeat: AtomicU64::new(0),
            started: Instant::now(),
            dry_run: parts.dry_run,
            photo_timeout: parts.photo_timeout,
            max_photos_per_profile: parts.max_photos_per_profile,
            fatal: Mutex::new(None),
            wait_for_credentials: parts.wait_for_credentials,
            credentials_reloaded: tokio::sync::Notify::new(),
        }
    }

    /// Records a sign of life for the watchdog.
    pub fn beat(&self) {
        self.heartbeat
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long ago the last sign of life was.
    pub fn heartbeat_age(&self) -> Duration {
        let last = Duration::from_millis(self.heartbeat.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Sleeps until `deadline` in short steps (keeping the watchdog fed); false if stopping.
    pub async fn wait_until(&self, deadline: chrono::DateTime<Utc>) -> bool {
        loop {
            let left = (deadline - Utc::now()).to_std().unwrap_or_default();
            if left.is_zero() {
                return true;
            }
            self.beat();
            if !self.shutdown.sleep(left.min(BEAT)).await {
                return false;
            }
        }
    }

    /// Waits until a deadline the source set, brought within the floor and the ceiling of
    /// [`Waits`]; false if stopping.
    pub async fn wait_for_source(&self, until: chrono::DateTime<Utc>) -> bool {
        let deadline = self.waits.deadline(until, Utc::now());
        let metrics = crate::metrics::metrics();
        metrics.rate_limit_wait(deadline);
        let waited = self.wait_until(deadline).await;
        metrics.rate_limit_over(deadline);
        waited
    }

    /// Awaits `work` that waits on purpose (the pacer, a source retrying with backoff), keeping
    /// the watchdog fed for at most `limit`: a polite wait is not taken for a hang, and a hang that
    /// outlasts every bound the work has still stops the feeding.
    pub async fn patiently<T>(&self, work: impl std::future::Future<Output = T>, limit: Duration) -> T {
        let started = Instant::now();
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tokio::time::sleep(BEAT) => {
                    if started.elapsed() < limit {
                        self.beat();
                    }
                }
            }
        }
    }

    /// The source refused the credentials: stop (exit code 77), or with `on_unauthorized = "wait"`
    /// wait for a SIGHUP that brings new ones. Returns whether to carry on.
    pub async fn unauthorized(&self, message: String) -> bool {
        if !self.wait_for_credentials {
            self.fail(DaemonError::Unauthorized(message));
            return false;
        }
        tracing::error!(
            "{message}; swiping paused: put a fresh token in place, then send SIGHUP (systemctl reload swipebot)"
        );
        loop {
            let reloaded = self.credentials_reloaded.notified();
            tokio::select! {
                _ = reloaded => return true,
                _ = self.shutdown.wait() => return false,
                // Keep the watchdog fed while paused on purpose.
                _ = tokio::time::sleep(BEAT) => self.beat(),
            }
        }
    }

    /// A profile could not be scored because of the engine or the model: it is left undecided (not
    /// journaled); after `max_engine_failures` such profiles in a row the daemon stops.
    pub fn engine_failed(&self, profile_id: &str, e: &crate::vision::error::PhotoError) {
        let n = self.engine_failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(profile = %profile_id, failures_in_a_row = n, "profile left undecided: {e}");
        if n >= self.max_engine_failures {
            self.fail(DaemonError::Engine(format!(
                "{n} profiles in a row could not be scored; the last error: {e}"
            )));
        }
    }

    /// A profile was scored: the engine works.
    pub fn engine_ok(&self) {
        self.engine_failures.store(0, Ordering::Relaxed);
    }

    /// Stops the daemon with `e` (the first such error is the one `run` returns).
    pub fn fail(&self, e: DaemonError) {
        tracing::error!("{e}");
        self.fatal.lock().expect("fatal lock").get_or_insert(e);
        self.shutdown.trigger();
    }

    /// The error that stopped the daemon, if any.
    pub fn take_fatal(&self) -> Option<DaemonError> {
        self.fatal.lock().expect("fatal lock").take()
    }

    /// A journal record of a decision taken now with `live`'s threshold and model, not yet sent.
    pub fn new_record(&self, live: &Live, profile_id: String, decision: Decision, scores: Vec<PhotoScore>) -> Record {
        Record {
            scores,
            threshold: live.policy.threshold,
            model_sha256: live.scoring.model_sha256().to_string(),
            dry_run: self.dry_run,
            ..Record::new(profile_id, decision, self.source.name())
        }
    }

    /// Journals a decided profile's record (synced) and counts it: the one way a decision is
    /// recorded. The caller logs it, or stops the daemon if the journal cannot be written.
    pub async fn record(&self, record: Record) -> Result<(), JournalError> {
        let decision = record.decision;
        self.journal.record(record).await?;
        self.stats.decided(decision);
        crate::metrics::metrics().decided(decision, self.source.name());
        self.beat();
        Ok(())
    }
}
