//! The daemon: pulls candidates from a [`ProfileSource`], scores every photo, decides, journals, and
//! swipes under the pacer, until the source is exhausted (a replay) or a signal says stop.
//!
//! One concern a file: [`live`] (what SIGHUP swaps), `context` (what the profile tasks share),
//! `profile` (deciding one profile), `swipe` (sending one swipe under the pacer), [`likes`] (the
//! daily like budget and the source's pause on likes), `restart`
//! (resending the swipes a crash left unacknowledged), [`summary`] (counters and the summary),
//! [`status`] (the systemd status line), and this file, the fetch loop and its drain.

mod context;
mod error;
pub mod likes;
pub mod live;
mod profile;
mod restart;
pub mod status;
pub mod summary;
mod swipe;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::{OnUnauthorized, Settings};
use crate::journal::{Claim, Journal, JournalHandle};
use crate::metrics::metrics;
use crate::profile::Decision;
use crate::shutdown::Shutdown;
use crate::source::{Candidates, ProfileSource, Rejected, SourceError};
use crate::vision::service::ScoringService;
use context::{Context, ContextParts, Waits};

pub use error::DaemonError;
pub use live::Live;
pub use summary::Summary;

/// A daemon ready to run: model loaded, journal recovered.
pub struct Daemon {
    /// What the profile tasks share.
    ctx: Arc<Context>,
    /// Puts a new [`Live`] in charge of new profiles (SIGHUP).
    live_tx: watch::Sender<Arc<Live>>,
    /// The settings as started; a reload replaces only `model`, `policy` and `pacing`.
    settings: Settings,
    /// The config file to read again on SIGHUP (none for a replay without `--config`).
    config_path: Option<PathBuf>,
    /// Intents a crash left unacknowledged, resent when the run starts.
    unresolved: std::sync::Mutex<Vec<crate::journal::Record>>,
}

impl Daemon {
    /// Loads the model and opens the journal. Nothing is fetched or swiped yet.
    pub fn start(
        settings: Settings,
        config_path: Option<PathBuf>,
        source: Arc<dyn ProfileSource>,
        shutdown: Shutdown,
    ) -> Result<Self, DaemonError> {
        let live = Live::build(&settings, None)?;
        let (journal, unresolved) = JournalHandle::new(Journal::open(&settings.state.dir)?);
        let now = Utc::now();
        let likes = likes::LikeGate::open(&settings.state.dir, journal.likes_on(now.date_naive()), now)?;
        metrics().source_started(source.name());
        publish(&live);
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
        let (live_tx, live_rx) = watch::channel(Arc::new(live));
        let ctx = Arc::new(Context::new(ContextParts {
            source,
            journal,
            live: live_rx,
            photo_concurrency: settings.pipeline.photo_concurrency,
            shutdown,
            dry_run: settings.source.dry_run,
            photo_timeout: Duration::from_secs(settings.pipeline.photo_timeout_secs),
            max_photos_per_profile: settings.pipeline.max_photos_per_profile,
            wait_for_credentials: settings.source.tinder.on_unauthorized == OnUnauthorized::Wait,
            likes,
            max_engine_failures: settings.pipeline.max_engine_failures,
            waits: Waits {
                floor: Duration::from_secs(settings.source.min_wait_secs),
                ceiling: Duration::from_secs(settings.source.max_wait_secs),
            },
        }));
        let daemon = Daemon {
            ctx,
            live_tx,
            settings,
            config_path,
            unresolved: std::sync::Mutex::new(unresolved),
        };
        daemon.tell_source();
        Ok(daemon)
    }

    /// Puts `live` in charge of new profiles (SIGHUP).
    fn install(&self, live: Live) {
        publish(&live);
        let _ = self.live_tx.send(Arc::new(live));
        self.tell_source();
    }

    /// Tells the source what the model in charge needs of its photos: the one path by which a
    /// source learns of the model, at start and after every reload.
    fn tell_source(&self) {
        let needs = self.ctx.live.borrow().photo_needs();
        self.ctx.source.use_photo_needs(needs);
    }

    /// Reads the credentials again, then replaces threshold, pacing and model from the config file
    /// (SIGHUP). In-flight profiles finish with the settings they started with. On any error the
    /// running settings stay.
    pub fn reload(&self) {
        match self.ctx.source.reload_credentials() {
            Ok(()) => self.ctx.credentials_reloaded.notify_waiters(),
            Err(e) => tracing::error!("SIGHUP: credentials not reloaded: {e}"),
        }
        let Some(path) = &self.config_path else {
            tracing::warn!("SIGHUP: no config file to reload (started without --config)");
            return;
        };
        // Only model, policy and pacing are reloaded; the rest (the source above all: a replay's
        // comes from the command line) stays as started.
        let fresh = match Settings::read(path).and_then(|fresh| {
            let s = Settings {
                model: fresh.model,
                policy: fresh.policy,
                pacing: fresh.pacing,
                ..self.settings.clone()
            };
            s.validate().map(|()| s)
        }) {
            Ok(s) => s,
            Err(e) => return tracing::error!("SIGHUP: keeping the running settings: {e}"),
        };
        let current = self.ctx.live.borrow().clone();
        let live = match Live::build(&fresh, Some(&current)) {
            Ok(l) => l,
            Err(e) => return tracing::error!("SIGHUP: keeping the running model: {e}"),
        };
        tracing::info!(
            threshold = live.policy.threshold,
            sha256 = live.scoring.model_sha256(),
            swipes_per_minute = fresh.pacing.swipes_per_minute,
            "SIGHUP: settings reloaded"
        );
        self.install(live);
    }

    /// How long ago the pipeline last showed progress (for the systemd watchdog).
    pub fn heartbeat_age(&self) -> Duration {
        self.ctx.heartbeat_age()
    }

    /// The scoring threads of the model in charge (the health check asks them).
    pub fn scoring(&self) -> Arc<ScoringService> {
        Arc::clone(&self.ctx.live.borrow().scoring)
    }

    /// The counts so far (the status line; the summary at the end of a run).
    pub fn summary(&self) -> Summary {
        self.ctx.stats.summary(
            self.ctx.started.elapsed().as_secs_f64(),
            self.ctx.shutdown.is_triggered(),
        )
    }

    /// Runs until the source is exhausted or a signal arrives; returns the summary.
    pub async fn run(self: Arc<Self>) -> Result<Summary, DaemonError> {
        let ctx = Arc::clone(&self.ctx);
        ctx.beat();
        let unresolved = std::mem::take(&mut *self.unresolved.lock().expect("unresolved lock"));
        restart::resolve_unresolved(&ctx, unresolved).await?;
        let mut tasks: JoinSet<()> = JoinSet::new();
        self.fetch(&ctx, &mut tasks).await?;
        self.drain(&ctx, &mut tasks).await;
        if let Some(e) = ctx.take_fatal() {
            return Err(e);
        }
        Ok(self.summary())
    }

    /// The fetch loop: asks the source for candidates and starts a task per new profile, at most
    /// `pipeline.profiles_in_flight` at once, until the source is exhausted or shutdown. Every wait
    /// the source causes lies between `source.min_wait_secs` and `source.max_wait_secs`.
    async fn fetch(&self, ctx: &Arc<Context>, tasks: &mut JoinSet<()>) -> Result<(), DaemonError> {
        let in_flight = Arc::new(Semaphore::new(self.settings.pipeline.profiles_in_flight));
        let mut backoff = ctx.waits.floor;
        while !ctx.shutdown.is_triggered() {
            ctx.beat();
            let fetched = tokio::select! {
                r = ctx.patiently(ctx.source.candidates(), ctx.source.longest_call()) => r,
                _ = ctx.shutdown.wait() => break,
            };
            let mut nothing_new = false;
            match fetched {
                Ok(Candidates::Profiles { profiles, rejected }) => {
                    nothing_new = rejected.is_empty();
                    for rejected in rejected {
                        record_rejected(ctx, rejected).await?;
                    }
                    for profile in profiles {
                        if !claim(ctx, &profile.id) {
                            continue;
                        }
                        nothing_new = false;
                        let permit = tokio::select! {
                            p = Arc::clone(&in_flight).acquire_owned() => p.expect("semaphore open"),
                            _ = ctx.shutdown.wait() => {
                                ctx.journal.release(&profile.id);
                                return Ok(());
                            }
                        };
                        let live = ctx.live.borrow().clone();
                        let task_ctx = Arc::clone(ctx);
                        let in_flight = metrics().in_flight();
                        tasks.spawn(async move {
                            let _in_flight = in_flight;
                            let id = profile.id.clone();
                            profile::process(&task_ctx, &live, profile).await;
                            // Recorded (or left as an intent) by now, unless abandoned or stopped.
                            task_ctx.journal.release(&id);
                            drop(permit);
                        });
                        while let Some(done) = tasks.try_join_next() {
                            done.map_err(|e| DaemonError::Internal(e.to_string()))?;
                        }
                    }
                }
                Ok(Candidates::Wait(d)) => {
                    let d = ctx.waits.clamp(d);
                    tracing::info!(seconds = d.as_secs(), "no candidates right now; waiting");
                    ctx.wait_until(Utc::now() + d).await;
                }
                Ok(Candidates::Exhausted) => break,
                Err(SourceError::RateLimited { until }) => {
                    tracing::warn!(%until, "rate limited while fetching candidates; waiting");
                    ctx.wait_for_source(until).await;
                }
                Err(SourceError::OutOfLikes { until }) => {
                    // Likes stop until then; recommendations (and passes) go on after a pause.
                    ctx.likes.pause(ctx.waits.deadline(until, Utc::now()))?;
                    nothing_new = true;
                }
                Err(SourceError::Unauthorized(e)) => {
                    if !ctx.unauthorized(e).await {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(retry_in = backoff.as_secs(), "fetching candidates failed: {e}");
                    ctx.wait_until(Utc::now() + backoff).await;
                    backoff = ctx.waits.clamp((backoff * 2).min(Duration::from_secs(300)));
                    continue;
                }
            }
            if nothing_new && ctx.source.is_remote() {
                // A batch of nothing but profiles already decided or in flight is as good as an
                // empty one: asking again at once would only hammer the API.
                tracing::info!(retry_in = backoff.as_secs(), "nothing new from the source; waiting");
                ctx.wait_until(Utc::now() + backoff).await;
                backoff = ctx.waits.clamp((backoff * 2).min(Duration::from_secs(300)));
            } else {
                backoff = ctx.waits.floor;
            }
        }
        Ok(())
    }

    /// Waits for the in-flight profiles: all of them when the source ended; at most
    /// `pipeline.shutdown_grace_secs` on a signal, after which the rest are abandoned (their
    /// intents, if any, are resent next start).
    async fn drain(&self, ctx: &Context, tasks: &mut JoinSet<()>) {
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
        if !ctx.shutdown.is_triggered() {
            return drain.await;
        }
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "in-flight profiles abandoned at the end of the grace period; they are decided again next run"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// Shows `live`'s model, device and like budget on the metrics page (at start and after a reload).
fn publish(live: &Live) {
    let info = live.scoring.info();
    metrics().model(
        live.scoring.model_sha256(),
        info.input_size,
        info.recipe.channels.count() as u32,
        &live.scoring.device().to_string(),
    );
    metrics().like_budget(live.pacer.daily_like_budget);
}

/// Claims a profile the source offered; false (counted, logged at debug) when it was decided before
/// or is being decided now, so the same profile is never decided or swiped twice.
fn claim(ctx: &Context, id: &str) -> bool {
    match ctx.journal.claim(id) {
        Claim::New => true,
        Claim::Decided => {
            ctx.stats.already_decided();
            metrics().dropped("already_decided");
            tracing::debug!(profile = %id, "offered again after it was decided; dropped");
            false
        }
        Claim::InFlight => {
            ctx.stats.repeat();
            metrics().dropped("in_flight");
            tracing::debug!(profile = %id, "offered again while being decided; dropped");
            false
        }
    }
}

/// A profile the source could not parse: journaled as a skip with the reason.
async fn record_rejected(ctx: &Context, rejected: Rejected) -> Result<(), DaemonError> {
    let Rejected { id, reason } = rejected;
    tracing::warn!(profile = %id, "bad profile skipped: {reason}");
    // Never journal a skip over a profile that is decided or being decided under the same id.
    if ctx.journal.claim(&id) != Claim::New {
        return Ok(());
    }
    let live = ctx.live.borrow().clone();
    let record = crate::journal::Record {
        error: Some(reason),
        ..ctx.new_record(&live, id, Decision::Skip, vec![])
    };
    Ok(ctx.record(record).await?)
}
