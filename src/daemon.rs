//! The daemon: pulls candidates from a [`ProfileSource`], scores every photo, decides, journals, and
//! swipes under the pacer, until the source is exhausted (a replay) or a signal says stop.
//!
//! Per profile: photo downloads run concurrently under a bound, decoding runs on tokio's blocking
//! pool, scoring on the dedicated threads of [`ScoringService`]; the decision is journaled (an intent
//! for a swipe, synced) before the swipe is sent, and the acknowledged record after. Swipes go out one
//! at a time through the pacer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::{OnUnauthorized, Settings};
use crate::journal::{Journal, JournalError, Record};
use crate::pacing::{self, Pacer};
use crate::policy::{self, Policy};
use crate::profile::{Decision, PhotoScore, Profile, SwipeOutcome};
use crate::shutdown::Shutdown;
use crate::source::{Candidates, ProfileSource, SourceError};
use swipebot_core::preprocess::Limits;
use crate::vision::scorer::{ScorerError, ScorerOptions};
use crate::vision::service::ScoringService;

/// What can stop the daemon with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The model or ONNX Runtime could not be loaded.
    #[error(transparent)]
    Scorer(#[from] ScorerError),
    /// The journal could not be read or written: nothing more can be acted on safely.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The source refused the credentials.
    #[error("{0}; put a fresh token in place and restart (see systemd/README.md)")]
    Unauthorized(String),
    /// A profile task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Counters for the end-of-run summary.
#[derive(Debug, Default)]
pub struct Stats {
    profiles: AtomicU64,
    likes: AtomicU64,
    passes: AtomicU64,
    skips: AtomicU64,
    already_decided: AtomicU64,
    photos_scored: AtomicU64,
    photos_failed: AtomicU64,
}

/// What a run did, printed at its end.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Profiles decided in this run.
    pub profiles: u64,
    /// Of which liked.
    pub likes: u64,
    /// Of which passed.
    pub passes: u64,
    /// Of which skipped.
    pub skips: u64,
    /// Profiles seen again that an earlier run had decided.
    pub already_decided: u64,
    /// Photos scored.
    pub photos_scored: u64,
    /// Photos that could not be downloaded or decoded.
    pub photos_failed: u64,
    /// Wall time of the run in seconds.
    pub seconds: f64,
    /// Whether the run ended on a signal rather than at the end of the source.
    pub interrupted: bool,
}

impl Summary {
    /// Photos scored per second of wall time.
    pub fn photos_per_second(&self) -> f64 {
        self.photos_scored as f64 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "profiles {} (like {}, pass {}, skip {}; {} already decided), photos scored {}, photos failed {}, {:.1} photos/s over {:.1} s{}",
            self.profiles,
            self.likes,
            self.passes,
            self.skips,
            self.already_decided,
            self.photos_scored,
            self.photos_failed,
            self.photos_per_second(),
            self.seconds,
            if self.interrupted { " (interrupted)" } else { "" }
        )
    }
}

/// The settings a profile is processed with; replaced as a whole on SIGHUP.
#[derive(Debug)]
pub struct Live {
    /// The decision rule.
    pub policy: Policy,
    /// The model.
    pub scoring: Arc<ScoringService>,
    /// The swipe pacer.
    pub pacer: Arc<Pacer>,
    /// Fraction of likes sent as passes, at random.
    pub pass_fraction: f64,
}

/// Everything the profile tasks share.
struct Context {
    source: Arc<dyn ProfileSource>,
    journal: Arc<Mutex<Journal>>,
    live: watch::Receiver<Arc<Live>>,
    photo_slots: Arc<Semaphore>,
    swipe_lane: tokio::sync::Mutex<()>,
    shutdown: Shutdown,
    stats: Stats,
    heartbeat: AtomicU64,
    started: Instant,
    dry_run: bool,
    photo_timeout: Duration,
    fatal: Mutex<Option<DaemonError>>,
    /// After a 401: wait for new credentials (SIGHUP) instead of stopping.
    wait_for_credentials: bool,
    credentials_reloaded: tokio::sync::Notify,
}

impl Context {
    fn beat(&self) {
        self.heartbeat
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Sleeps until `deadline` in short steps (keeping the watchdog fed); false if stopping.
    async fn wait_until(&self, deadline: chrono::DateTime<Utc>) -> bool {
        loop {
            let left = (deadline - Utc::now()).to_std().unwrap_or_default();
            if left.is_zero() {
                return true;
            }
            self.beat();
            if !self.shutdown.sleep(left.min(Duration::from_secs(5))).await {
                return false;
            }
        }
    }

    async fn journal<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let journal = Arc::clone(&self.journal);
        tokio::task::spawn_blocking(move || f(&mut journal.lock().expect("journal lock")))
            .await
            .expect("journal writer panicked")
    }

    /// The source refused the credentials: stop (exit code 77), or with `on_unauthorized = "wait"`
    /// wait for a SIGHUP that brings new ones. Returns whether to carry on.
    async fn unauthorized(&self, message: String) -> bool {
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
                _ = tokio::time::sleep(Duration::from_secs(5)) => self.beat(),
            }
        }
    }

    fn fail(&self, e: DaemonError) {
        tracing::error!("{e}");
        self.fatal.lock().expect("fatal lock").get_or_insert(e);
        self.shutdown.trigger();
    }
}

/// Builds the scoring side and pacer from settings.
pub fn build_live(settings: &Settings) -> Result<Live, ScorerError> {
    let options = ScorerOptions {
        library: settings.runtime.library.clone(),
        device: settings.runtime.device,
        require_gpu: settings.runtime.require_gpu,
        intra_threads: settings.runtime.intra_threads,
        limits: Limits {
            max_bytes: settings.pipeline.max_photo_bytes,
            max_pixels: settings.pipeline.max_photo_pixels,
        },
    };
    let scoring = ScoringService::start(
        &settings.model.path,
        &options,
        settings.runtime.scorer_threads,
        settings.runtime.batch_size,
    )?;
    let threshold = settings.model.threshold.unwrap_or(scoring.info().threshold);
    Ok(Live {
        policy: Policy {
            threshold,
            no_photos: settings.policy.no_photos,
        },
        scoring,
        pacer: Arc::new(Pacer::new(&settings.pacing)),
        pass_fraction: settings.pacing.pass_fraction,
    })
}

/// A daemon ready to run: model loaded, journal recovered.
pub struct Daemon {
    ctx: Arc<Context>,
    live_tx: watch::Sender<Arc<Live>>,
    settings: Settings,
    config_path: Option<PathBuf>,
}

impl Daemon {
    /// Loads the model and opens the journal. Nothing is fetched or swiped yet.
    pub fn start(
        settings: Settings,
        config_path: Option<PathBuf>,
        source: Arc<dyn ProfileSource>,
        shutdown: Shutdown,
    ) -> Result<Self, DaemonError> {
        let live = build_live(&settings)?;
        let journal = Journal::open(&settings.state.dir)?;
        tracing::info!(
            source = source.name(),
            model = %settings.model.path.display(),
            sha256 = live.scoring.model_sha256(),
            device = %live.scoring.device(),
            threshold = live.policy.threshold,
            state = %settings.state.dir.display(),
            dry_run = settings.source.dry_run,
            "swipebot ready"
        );
        source.prefer_photo_side(live.scoring.info().input_size);
        let (live_tx, live_rx) = watch::channel(Arc::new(live));
        let ctx = Arc::new(Context {
            source,
            journal: Arc::new(Mutex::new(journal)),
            live: live_rx,
            photo_slots: Arc::new(Semaphore::new(settings.pipeline.photo_concurrency)),
            swipe_lane: tokio::sync::Mutex::new(()),
            shutdown,
            stats: Stats::default(),
            heartbeat: AtomicU64::new(0),
            started: Instant::now(),
            dry_run: settings.source.dry_run,
            photo_timeout: Duration::from_secs(settings.pipeline.photo_timeout_secs),
            fatal: Mutex::new(None),
            wait_for_credentials: settings.source.tinder.on_unauthorized == OnUnauthorized::Wait,
            credentials_reloaded: tokio::sync::Notify::new(),
        });
        Ok(Daemon {
            ctx,
            live_tx,
            settings,
            config_path,
        })
    }

    /// Replaces threshold, pacing and model from the config file (SIGHUP). In-flight profiles finish
    /// with the settings they started with. On any error the running settings stay.
    pub fn reload(&self) {
        match self.ctx.source.reload_credentials() {
            Ok(()) => self.ctx.credentials_reloaded.notify_waiters(),
            Err(e) => tracing::error!("SIGHUP: credentials not reloaded: {e}"),
        }
        let Some(path) = &self.config_path else {
            tracing::warn!("SIGHUP: no config file to reload (started without --config)");
            return;
        };
        // The source is not reloaded: keep the running one (replay's comes from the command line).
        let fresh = match Settings::read(path).and_then(|mut s| {
            s.source = self.settings.source.clone();
            s.validate().map(|()| s)
        }) {
            Ok(s) => s,
            Err(e) => return tracing::error!("SIGHUP: keeping the running settings: {e}"),
        };
        let current = self.ctx.live.borrow().clone();
        let same_model = fresh.model.path == self.settings.model.path
            && std::fs::read(&fresh.model.path)
                .ok()
                .map(|b| swipebot_core::model_info::sha256_hex(&b))
                .as_deref()
                == Some(current.scoring.model_sha256());
        let scoring = if same_model {
            Arc::clone(&current.scoring)
        } else {
            let mut s = self.settings.clone();
            s.model = fresh.model.clone();
            match build_live(&s) {
                Ok(l) => l.scoring,
                Err(e) => return tracing::error!("SIGHUP: keeping the running model: {e}"),
            }
        };
        let threshold = fresh.model.threshold.unwrap_or(scoring.info().threshold);
        let live = Live {
            policy: Policy {
                threshold,
                no_photos: fresh.policy.no_photos,
            },
            scoring,
            pacer: Arc::new(Pacer::new(&fresh.pacing)),
            pass_fraction: fresh.pacing.pass_fraction,
        };
        tracing::info!(
            threshold,
            sha256 = live.scoring.model_sha256(),
            swipes_per_minute = fresh.pacing.swipes_per_minute,
            "SIGHUP: settings reloaded"
        );
        let _ = self.live_tx.send(Arc::new(live));
    }

    /// Seconds since start of the last sign of progress (for the systemd watchdog).
    pub fn heartbeat_age(&self) -> Duration {
        let last = Duration::from_millis(self.ctx.heartbeat.load(Ordering::Relaxed));
        self.ctx.started.elapsed().saturating_sub(last)
    }

    /// Runs until the source is exhausted or a signal arrives; returns the summary.
    pub async fn run(self: Arc<Self>) -> Result<Summary, DaemonError> {
        let ctx = Arc::clone(&self.ctx);
        ctx.beat();
        resolve_unresolved(&ctx).await?;
        let in_flight = Arc::new(Semaphore::new(self.settings.pipeline.profiles_in_flight));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut backoff = Duration::from_secs(1);
        'fetch: while !ctx.shutdown.is_triggered() {
            ctx.beat();
            let fetched = tokio::select! {
                r = ctx.source.candidates() => r,
                _ = ctx.shutdown.wait() => break,
            };
            match fetched {
                Ok(Candidates::Profiles { profiles, rejected }) => {
                    backoff = Duration::from_secs(1);
                    for (id, error) in rejected {
                        record_rejected(&ctx, id, error).await?;
                    }
                    for profile in profiles {
                        if ctx.journal.lock().expect("journal lock").is_decided(&profile.id) {
                            ctx.stats.already_decided.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let permit = tokio::select! {
                            p = Arc::clone(&in_flight).acquire_owned() => p.expect("semaphore open"),
                            _ = ctx.shutdown.wait() => break 'fetch,
                        };
                        let live = ctx.live.borrow().clone();
                        let task_ctx = Arc::clone(&ctx);
                        tasks.spawn(async move {
                            process(&task_ctx, &live, profile).await;
                            drop(permit);
                        });
                        while let Some(done) = tasks.try_join_next() {
                            done.map_err(|e| DaemonError::Internal(e.to_string()))?;
                        }
                    }
                }
                Ok(Candidates::Wait(d)) => {
                    tracing::info!(seconds = d.as_secs(), "no candidates right now; waiting");
                    ctx.wait_until(Utc::now() + d).await;
                }
                Ok(Candidates::Exhausted) => break,
                Err(SourceError::RateLimited { until }) => {
                    tracing::warn!(%until, "rate limited while fetching candidates; waiting");
                    ctx.wait_until(until).await;
                }
                Err(SourceError::Unauthorized(e)) => {
                    if !ctx.unauthorized(e).await {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(retry_in = backoff.as_secs(), "fetching candidates failed: {e}");
                    ctx.wait_until(Utc::now() + backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
            }
        }
        // Drain: all in-flight profiles when the source ended; at most the grace period on a signal.
        let grace = Duration::from_secs(self.settings.pipeline.shutdown_grace_secs);
        let drain = async {
            while let Some(done) = tasks.join_next().await {
                if let Err(e) = done {
                    if !e.is_cancelled() {
                        tracing::error!("profile task failed: {e}");
                    }
                }
                ctx.beat();
            }
        };
        if ctx.shutdown.is_triggered() {
            if tokio::time::timeout(grace, drain).await.is_err() {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "in-flight profiles abandoned at the end of the grace period; they are decided again next run"
                );
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
        } else {
            drain.await;
        }
        if let Some(e) = ctx.fatal.lock().expect("fatal lock").take() {
            return Err(e);
        }
        let s = &ctx.stats;
        Ok(Summary {
            profiles: s.likes.load(Ordering::Relaxed)
                + s.passes.load(Ordering::Relaxed)
                + s.skips.load(Ordering::Relaxed),
            likes: s.likes.load(Ordering::Relaxed),
            passes: s.passes.load(Ordering::Relaxed),
            skips: s.skips.load(Ordering::Relaxed),
            already_decided: s.already_decided.load(Ordering::Relaxed),
            photos_scored: s.photos_scored.load(Ordering::Relaxed),
            photos_failed: s.photos_failed.load(Ordering::Relaxed),
            seconds: ctx.started.elapsed().as_secs_f64(),
            interrupted: ctx.shutdown.is_triggered(),
        })
    }
}

fn count_decision(stats: &Stats, d: Decision) {
    let counter = match d {
        Decision::Like => &stats.likes,
        Decision::Pass => &stats.passes,
        Decision::Skip => &stats.skips,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    stats.profiles.fetch_add(1, Ordering::Relaxed);
}

/// A journal record of a decision taken now with `live`'s threshold and model, not yet sent.
fn new_record(ctx: &Context, live: &Live, profile_id: String, decision: Decision, scores: Vec<PhotoScore>) -> Record {
    Record {
        profile_id,
        decision,
        scores,
        threshold: live.policy.threshold,
        model_sha256: live.scoring.model_sha256().to_string(),
        source: ctx.source.name().to_string(),
        at: Utc::now(),
        sent: false,
        outcome: None,
        error: None,
        dry_run: ctx.dry_run,
        resolved_after_restart: false,
        mixed_pass: false,
    }
}

/// A profile the source could not parse: journaled as a skip with the reason.
async fn record_rejected(ctx: &Context, id: String, error: String) -> Result<(), DaemonError> {
    tracing::warn!(profile = %id, "bad profile skipped: {error}");
    if ctx.journal.lock().expect("journal lock").is_decided(&id) {
        return Ok(());
    }
    let live = ctx.live.borrow().clone();
    let record = Record {
        error: Some(error),
        ..new_record(ctx, &live, id, Decision::Skip, vec![])
    };
    ctx.journal(move |j| j.record(&record)).await?;
    count_decision(&ctx.stats, Decision::Skip);
    Ok(())
}

/// Sends the swipes whose intents a crash left without an acknowledgement.
async fn resolve_unresolved(ctx: &Context) -> Result<(), DaemonError> {
    let unresolved = ctx.journal.lock().expect("journal lock").take_unresolved();
    for mut record in unresolved {
        tracing::info!(profile = %record.profile_id, decision = record.decision.as_str(), "resending a swipe whose acknowledgement was not recorded before the last stop");
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
                record.outcome = Some(outcome);
                record.resolved_after_restart = true;
                ctx.journal(move |j| j.record(&record)).await?;
            }
            SwipeResult::Failed(error) => {
                record.error = Some(error);
                record.resolved_after_restart = true;
                ctx.journal(move |j| j.record(&record)).await?;
            }
            SwipeResult::Abandoned => return Ok(()),
        }
    }
    Ok(())
}

/// Scores one photo: download (bounded, with timeout), decode off the async threads, score.
async fn score_photo(ctx: &Context, live: &Live, profile: &Profile, photo: &str) -> PhotoScore {
    let bytes = {
        let _slot = ctx.photo_slots.acquire().await.expect("semaphore open");
        tokio::time::timeout(ctx.photo_timeout, ctx.source.photo(profile, photo)).await
    };
    let result = match bytes {
        Err(_) => Err(format!("download timed out after {} s", ctx.photo_timeout.as_secs())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(bytes)) => live.scoring.score_photo(bytes).await,
    };
    match result {
        Ok(score) => {
            ctx.stats.photos_scored.fetch_add(1, Ordering::Relaxed);
            PhotoScore::Scored {
                photo: photo.to_string(),
                score,
            }
        }
        Err(error) => {
            ctx.stats.photos_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(profile = %profile.id, photo, "photo ignored: {error}");
            PhotoScore::Failed {
                photo: photo.to_string(),
                error,
            }
        }
    }
}

/// Decides on one profile and acts on it.
async fn process(ctx: &Context, live: &Live, profile: Profile) {
    let start = Instant::now();
    let scores: Vec<PhotoScore> = if profile.placeholder {
        Vec::new()
    } else {
        futures::future::join_all(profile.photos.iter().map(|p| score_photo(ctx, live, &profile, p))).await
    };
    let mut decision = live.policy.decide(&profile, &scores);
    // A share of likes goes out as passes, so the pattern of swipes looks human.
    let mixed_pass =
        decision == Decision::Like && live.pass_fraction > 0.0 && rand::random::<f64>() < live.pass_fraction;
    if mixed_pass {
        decision = Decision::Pass;
    }
    let mut record = Record {
        mixed_pass,
        ..new_record(ctx, live, profile.id.clone(), decision, scores)
    };
    let best = policy::best_score(&record.scores);
    let photos = record.scores.len();
    let log = |sent: bool, matched: bool| {
        tracing::info!(
            profile = %profile.id,
            photos,
            best = best.map(f64::from),
            decision = decision.as_str(),
            sent,
            matched,
            latency_ms = start.elapsed().as_millis() as u64,
            "decided"
        );
    };
    if decision == Decision::Skip || ctx.dry_run {
        let r = record.clone();
        if let Err(e) = ctx.journal(move |j| j.record(&r)).await {
            return ctx.fail(e.into());
        }
        count_decision(&ctx.stats, decision);
        log(false, false);
        ctx.beat();
        return;
    }
    let intent = record.clone();
    if let Err(e) = ctx.journal(move |j| j.record_intent(&intent)).await {
        return ctx.fail(e.into());
    }
    match send_swipe(ctx, live, &profile, decision).await {
        SwipeResult::Sent(outcome) => {
            let matched = outcome.matched;
            record.sent = true;
            record.outcome = Some(outcome);
            if let Err(e) = ctx.journal(move |j| j.record(&record)).await {
                return ctx.fail(e.into());
            }
            count_decision(&ctx.stats, decision);
            log(true, matched);
        }
        SwipeResult::Failed(error) => {
            record.error = Some(error);
            if let Err(e) = ctx.journal(move |j| j.record(&record)).await {
                return ctx.fail(e.into());
            }
            count_decision(&ctx.stats, decision);
            log(false, false);
        }
        // The intent stays in the journal; the swipe is resent on the next start.
        SwipeResult::Abandoned => {}
    }
    ctx.beat();
}

enum SwipeResult {
    Sent(SwipeOutcome),
    Failed(String),
    Abandoned,
}

/// Sends one swipe through the pacer, one at a time, retrying transient failures and waiting out
/// rate limits without calling the source meanwhile.
async fn send_swipe(ctx: &Context, live: &Live, profile: &Profile, decision: Decision) -> SwipeResult {
    let _lane = tokio::select! {
        l = ctx.swipe_lane.lock() => l,
        _ = ctx.shutdown.wait() => return SwipeResult::Abandoned,
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        if ctx.source.is_remote() {
            if decision == Decision::Like {
                loop {
                    let today = ctx
                        .journal
                        .lock()
                        .expect("journal lock")
                        .likes_on(Utc::now().date_naive());
                    if live.pacer.like_allowed(today) {
                        break;
                    }
                    let reset = pacing::next_budget_reset(Utc::now());
                    tracing::info!(until = %reset, budget = live.pacer.daily_like_budget, "daily like budget spent; waiting");
                    if !ctx.wait_until(reset).await {
                        return SwipeResult::Abandoned;
                    }
                }
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
            Err(SourceError::Permanent(e)) => return SwipeResult::Failed(e),
        }
    }
}
