//! Running the daemon as a process: settings, logging, the tokio runtime, signals, systemd
//! notifications and exit codes. Kept apart from [`crate::daemon`] so tests can drive the daemon
//! in-process and the binary stays thin.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::ReplayArgs;
use crate::config::{ConfigError, LogFormat, Settings, SourceKind};
use crate::daemon::{status, Daemon, DaemonError};
use crate::logging;
use crate::metrics;
use crate::shutdown::Shutdown;
use crate::source::recorder::RecordingSource;
use crate::source::replay::ReplaySource;
use crate::source::tinder::{self, TinderSource};
use crate::source::{ProfileSource, SetupError};
use crate::vision::scorer::{Scorer, ScorerError};

/// Exit code for a configuration error (sysexits' EX_CONFIG): systemd does not restart on it.
pub const EXIT_CONFIG: u8 = 78;
/// Exit code when the source refused the credentials (EX_NOPERM).
pub const EXIT_UNAUTHORIZED: u8 = 77;
/// Exit code for any other failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a failure that may pass by itself (sysexits' EX_TEMPFAIL): a full disk, a journal
/// write that failed, another daemon on the state directory. systemd restarts on it.
pub const EXIT_TEMPFAIL: u8 = 75;

/// The exit code for a daemon error: temporary journal trouble is 75 (restart later), a model or
/// runtime that cannot be loaded 78 (needs a person), a refused token 77.
fn exit_code(e: &DaemonError, at_start: bool) -> u8 {
    match e {
        DaemonError::Journal(j) if j.is_temporary() => EXIT_TEMPFAIL,
        DaemonError::Unauthorized(_) => EXIT_UNAUTHORIZED,
        // A model that scores nothing needs a person, not a restart.
        DaemonError::Engine(_) => EXIT_CONFIG,
        _ if at_start => EXIT_CONFIG,
        _ => EXIT_FAILURE,
    }
}

/// How often the systemd status line is brought up to date.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Prints a configuration error (in `format`) and returns its exit code.
fn config_error(e: &dyn std::fmt::Display, format: LogFormat) -> ExitCode {
    logging::fatal(format, e);
    ExitCode::from(EXIT_CONFIG)
}

/// `swipebot check-config`: the pre-flight to run before starting the service. Validates every
/// key, then does what `run` does before its first fetch (builds the source with its token, loads
/// the model on the requested device and checks it, takes the state directory's lock) and prints
/// the effective settings, after a TOML comment naming the device that will score (and, when CUDA
/// was asked for but cannot be used, why). Exit 0 only when `run` would start; else 78, naming the key.
pub fn check_config(path: PathBuf) -> ExitCode {
    match Settings::load(&path).and_then(|s| preflight(&s).map(|device| (s, device))) {
        Ok((s, device)) => {
            println!("# scoring device: {device}");
            print!("{}", s.to_toml());
            ExitCode::SUCCESS
        }
        Err(e) => config_error(&e, LogFormat::Text),
    }
}

/// What `run` needs beyond valid keys, each failure named by the key that fixes it. Returns the
/// device the model was loaded on, with the reason when that is the CPU although CUDA was asked for.
fn preflight(settings: &Settings) -> Result<String, ConfigError> {
    make_source(settings).map_err(|e| match e {
        SetupError::Config { key, message } => ConfigError::Invalid { key, message },
        other => ConfigError::Invalid {
            key: "source.kind",
            message: other.to_string(),
        },
    })?;
    let options = crate::daemon::live::scorer_options(settings);
    let scorer = Scorer::load(&settings.model.path, &options).map_err(|e| {
        let key = match &e {
            ScorerError::Runtime(_) => "runtime.library",
            ScorerError::GpuUnavailable(_) => "runtime.require_gpu",
            _ => "model.path",
        };
        ConfigError::Invalid {
            key,
            message: e.to_string(),
        }
    })?;
    crate::journal::check_dir(&settings.state.dir).map_err(|e| ConfigError::Invalid {
        key: "state.dir",
        message: e.to_string(),
    })?;
    if let Some(listen) = &settings.metrics.listen {
        let addr = crate::metrics::server::parse_listen(listen).map_err(|message| ConfigError::Invalid {
            key: "metrics.listen",
            message,
        })?;
        std::net::TcpListener::bind(addr).map_err(|e| ConfigError::Invalid {
            key: "metrics.listen",
            message: format!("cannot listen on {addr}: {e} (another process on that port?)"),
        })?;
    }
    crate::logging::filter(&settings.log.level).map_err(|e| ConfigError::Invalid {
        key: "log.level",
        message: e.to_string(),
    })?;
    Ok(match scorer.fallback_reason() {
        Some(reason) => format!("{} (CUDA was asked for but cannot be used: {reason})", scorer.device()),
        None => scorer.device().to_string(),
    })
}

/// `swipebot run --config FILE`.
pub fn run(config: PathBuf, log_format: Option<LogFormat>) -> ExitCode {
    let settings = match Settings::load(&config) {
        Ok(s) => s,
        Err(e) => return config_error(&e, log_format.unwrap_or_default()),
    };
    serve(settings, Some(config), log_format)
}

/// `swipebot replay DIR`: the config file (or defaults) with the command line's overrides.
pub fn replay(args: ReplayArgs) -> ExitCode {
    // Validated once the command line has completed it: the file need not name a replay folder.
    let early_format = args.log_format.unwrap_or_default();
    let mut settings = match &args.config {
        Some(path) => match Settings::read(path) {
            Ok(s) => s,
            Err(e) => return config_error(&e, early_format),
        },
        None => Settings::default(),
    };
    settings.source.kind = SourceKind::Replay;
    settings.source.replay_dir = Some(args.dir.clone());
    if let Some(m) = args.model {
        settings.model.path = m;
    }
    if let Some(d) = args.state_dir {
        settings.state.dir = d;
    }
    if args.threshold.is_some() {
        settings.model.threshold = args.threshold;
    }
    if let Err(e) = settings.validate() {
        return config_error(&e, args.log_format.unwrap_or(settings.log.format));
    }
    if let Some(note) = decided_by_another(&settings) {
        eprintln!("note: {note}");
    }
    serve(settings, args.config, args.log_format)
}

/// When the replay's state directory holds decisions taken by another model, or at another
/// threshold than the one given, the profiles decided there will not be decided again (a profile is
/// never decided twice): says so, and what answers the question the user is likely asking.
fn decided_by_another(settings: &Settings) -> Option<String> {
    let records = crate::journal::Journal::read_all(&settings.state.dir).ok()?;
    let model = std::fs::read(&settings.model.path).ok()?;
    let sha = swipebot_core::model_info::sha256_hex(&model);
    let short = |s: &str| s[..s.len().min(12)].to_string();
    let others: std::collections::BTreeSet<String> = records
        .iter()
        .filter(|r| !r.model_sha256.is_empty() && r.model_sha256 != sha)
        .map(|r| short(&r.model_sha256))
        .collect();
    let thresholds: std::collections::BTreeSet<String> = match settings.model.threshold {
        Some(t) => records
            .iter()
            .filter(|r| r.model_sha256 == sha && (r.threshold - t).abs() > 1e-6)
            .map(|r| format!("{:.3}", r.threshold))
            .collect(),
        None => Default::default(),
    };
    if others.is_empty() && thresholds.is_empty() {
        return None;
    }
    let from = match (others.is_empty(), thresholds.is_empty()) {
        (false, true) => format!("model(s) {}", others.into_iter().collect::<Vec<_>>().join(", ")),
        (true, false) => format!("threshold(s) {}", thresholds.into_iter().collect::<Vec<_>>().join(", ")),
        _ => format!(
            "model(s) {} and threshold(s) {}",
            others.into_iter().collect::<Vec<_>>().join(", "),
            thresholds.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    let replay_dir = settings
        .source
        .replay_dir
        .as_deref()
        .unwrap_or(std::path::Path::new("DIR"));
    Some(format!(
        "{} holds {} decision(s) taken by {from}, not by this model ({}) and threshold: the profiles \
         decided there are not decided again. To see what this model would decide differently, run \
         `swipebot compare {} --model OLD.onnx --model {}`, or replay into a fresh --state-dir.",
        settings.state.dir.display(),
        records.len(),
        short(&sha),
        replay_dir.display(),
        settings.model.path.display()
    ))
}

/// Builds the configured profile source, wrapped in the recorder when `source.record_dir` is set.
fn make_source(settings: &Settings) -> Result<Arc<dyn ProfileSource>, SetupError> {
    let source: Arc<dyn ProfileSource> = match settings.source.kind {
        SourceKind::Replay => {
            let dir = settings.source.replay_dir.as_ref().ok_or(SetupError::Config {
                key: "source.replay_dir",
                message: "is required".into(),
            })?;
            let timeout = Duration::from_secs(settings.pipeline.photo_timeout_secs);
            Arc::new(
                ReplaySource::open(
                    dir,
                    settings.source.batch,
                    settings.pipeline.max_photo_bytes,
                    timeout,
                    settings.source.allow_private_photo_hosts,
                )?
                .with_max_profile_bytes(settings.source.max_body_bytes),
            )
        }
        SourceKind::Tinder => {
            let t = &settings.source.tinder;
            let token = tinder::load_token(t)?;
            let timeout = Duration::from_secs(t.request_timeout_secs);
            Arc::new(
                TinderSource::new(
                    t,
                    token,
                    timeout,
                    settings.pipeline.max_photo_bytes,
                    settings.source.allow_private_photo_hosts,
                )?
                .with_max_body_bytes(settings.source.max_body_bytes),
            )
        }
    };
    match &settings.source.record_dir {
        None => Ok(source),
        Some(dir) => Ok(Arc::new(RecordingSource::new(source, dir)?)),
    }
}

/// Tells systemd something, when running under it (a no-op elsewhere).
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// Runs the daemon to completion and maps the outcome to an exit code.
fn serve(settings: Settings, config_path: Option<PathBuf>, log_format: Option<LogFormat>) -> ExitCode {
    let format = log_format.unwrap_or(settings.log.format);
    if let Err(e) = logging::init(format, &settings.log.level) {
        return config_error(&e, format);
    }
    let fatal = |code: u8, e: &dyn std::fmt::Display| {
        logging::fatal(format, e);
        ExitCode::from(code)
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fatal(EXIT_FAILURE, &format_args!("cannot start the async runtime: {e}")),
    };
    let code = runtime.block_on(async move {
        let shutdown = Shutdown::new();
        if let Err(e) = shutdown.listen_for_signals() {
            return fatal(EXIT_FAILURE, &format_args!("cannot listen for signals: {e}"));
        }
        let source = match make_source(&settings) {
            Ok(s) => s,
            Err(SetupError::Config { key, message }) => {
                return config_error(&ConfigError::Invalid { key, message }, format)
            }
            // No key is at fault, but a restart will not help either: it needs a person.
            Err(e) => return fatal(EXIT_CONFIG, &e),
        };
        let endpoint = match metrics::server::bind(&settings.metrics).await {
            Ok(l) => l,
            Err(message) => {
                let key = "metrics.listen";
                return config_error(&ConfigError::Invalid { key, message }, format);
            }
        };
        let metrics_settings = settings.metrics.clone();
        let daemon = match Daemon::start(settings, config_path, source, shutdown.clone()) {
            Ok(d) => Arc::new(d),
            // A model, runtime or journal that cannot be loaded needs a person, not a restart;
            // a full disk or a state directory in use may pass.
            Err(e) => return fatal(exit_code(&e, true), &e),
        };
        if let Some(listener) = endpoint {
            metrics::server::spawn(listener, Arc::clone(&daemon), &metrics_settings);
        }
        notify(&[sd_notify::NotifyState::Ready]);
        spawn_reload_on_sighup(Arc::clone(&daemon));
        spawn_watchdog(Arc::clone(&daemon));
        spawn_status(Arc::clone(&daemon));
        let result = Arc::clone(&daemon).run().await;
        notify_status(&daemon);
        notify(&[sd_notify::NotifyState::Stopping]);
        match result {
            Ok(summary) => {
                tracing::info!(
                    profiles = summary.profiles,
                    likes = summary.likes,
                    passes = summary.passes,
                    skips = summary.skips,
                    already_decided = summary.already_decided,
                    photos_scored = summary.photos_scored,
                    photos_failed = summary.photos_failed,
                    photos_per_second = summary.photos_per_second(),
                    "summary"
                );
                println!("summary: {summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fatal(exit_code(&e, false), &e),
        }
    });
    // Work still blocking a thread (a read that hangs) must not hold the exit: whatever was to be
    // journaled has been by now.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Sends systemd the status line (`systemctl status` shows it).
fn notify_status(daemon: &Daemon) {
    let m = metrics::metrics();
    let line = status::status_line(
        &daemon.summary(),
        chrono::Utc::now(),
        m.rate_limited_until(),
        m.likes_paused_until(),
    );
    notify(&[sd_notify::NotifyState::Status(&line)]);
}

/// Keeps the systemd status line up to date while the daemon runs (only under systemd).
fn spawn_status(daemon: Arc<Daemon>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    tokio::spawn(async move {
        loop {
            notify_status(&daemon);
            tokio::time::sleep(STATUS_EVERY).await;
        }
    });
}

/// Reloads on SIGHUP (see [`Daemon::reload`]).
fn spawn_reload_on_sighup(daemon: Arc<Daemon>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return tracing::warn!("cannot listen for SIGHUP; reloading is off");
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let d = Arc::clone(&daemon);
            // Loading a model is blocking work.
            let _ = tokio::task::spawn_blocking(move || d.reload()).await;
        }
    });
}

/// Feeds the systemd watchdog while the pipeline shows progress; a stuck pipeline stops feeding it
/// and systemd restarts the service.
fn spawn_watchdog(daemon: Arc<Daemon>) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval / 2).await;
            if daemon.heartbeat_age() < interval {
                notify(&[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!(
                    stalled_secs = daemon.heartbeat_age().as_secs(),
                    "pipeline stalled; no longer feeding the watchdog"
                );
            }
        }
    });
}
