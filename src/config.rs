//! The daemon's settings: a TOML file (`config/swipebot.toml` documents every key) with
//! `SWIPEBOT__SECTION__KEY` environment overrides, checked in full before anything runs.
//!
//! Unknown keys and out-of-range values are errors that name the key. Secrets never live here: the
//! API token comes from the environment or a credentials file (see the `source` section).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::NoPhotos;
use crate::vision::scorer::Device;

/// Prefix of environment overrides: `SWIPEBOT__PACING__SWIPES_PER_MINUTE=20`.
pub const ENV_PREFIX: &str = "SWIPEBOT";

/// All settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Which model and threshold.
    pub model: ModelSettings,
    /// ONNX Runtime.
    pub runtime: RuntimeSettings,
    /// Where profiles come from.
    pub source: SourceSettings,
    /// How fast swipes go out.
    pub pacing: PacingSettings,
    /// Concurrency and limits of the photo pipeline.
    pub pipeline: PipelineSettings,
    /// The decision rule.
    pub policy: PolicySettings,
    /// Where the journal lives.
    pub state: StateSettings,
    /// Logging.
    pub log: LogSettings,
}

/// `[model]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// The ONNX model exported by `train`.
    pub path: PathBuf,
    /// Decision threshold; unset means the model's recommended threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            path: PathBuf::from("models/swipebot.onnx"),
            threshold: None,
        }
    }
}

/// `[runtime]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    /// ONNX Runtime library; unset means ORT_DYLIB_PATH, then where scripts/setup.sh installs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<PathBuf>,
    /// `cpu` or `cuda`.
    pub device: Device,
    /// With `device = "cuda"`: refuse to start rather than fall back to the CPU.
    pub require_gpu: bool,
    /// Threads inside each ONNX Runtime session.
    pub intra_threads: usize,
    /// Scoring threads, each with its own session.
    pub scorer_threads: usize,
    /// Most photos scored in one batch.
    pub batch_size: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            library: None,
            device: Device::Cpu,
            require_gpu: false,
            intra_threads: 1,
            scorer_threads: 1,
            batch_size: 8,
        }
    }
}

/// Kinds of profile source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Recorded profiles on disk; nothing is sent anywhere.
    #[default]
    Replay,
    /// The Tinder-style HTTP API (`[source.tinder]`).
    Tinder,
}

/// Which recommendations endpoint the HTTP source calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecsApi {
    /// `GET /v2/recs/core`.
    #[default]
    V2,
    /// `GET /user/recs` (the older shape).
    V1,
}

/// What to do when the API refuses the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnauthorized {
    /// Stop with exit code 77 (systemd does not restart it).
    #[default]
    Exit,
    /// Stop swiping and wait for a new token, read again on SIGHUP.
    Wait,
}

/// `[source.tinder]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TinderSettings {
    /// The API's base URL.
    pub base_url: String,
    /// `v2` or `v1` recommendations.
    pub api: RecsApi,
    /// Name of the environment variable holding the token (the token itself never goes here).
    pub token_env: String,
    /// A file holding the token; unset: the systemd credential, else `token_env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Name of the systemd credential (`LoadCredential=NAME:...`) holding the token.
    pub credential_name: String,
    /// User-Agent of every request.
    pub user_agent: String,
    /// Timeout of one API request, in seconds.
    pub request_timeout_secs: u64,
    /// Retries of a request that failed with a 5xx, a timeout or a connection error.
    pub max_retries: u32,
    /// First retry delay in milliseconds; doubled each retry, with jitter.
    pub retry_base_ms: u64,
    /// First wait after empty or timed-out recommendations, in seconds; doubled while they stay empty.
    pub empty_backoff_secs: u64,
    /// Longest wait between empty recommendations, in seconds.
    pub empty_backoff_max_secs: u64,
    /// Wait after a rate limit reported without a time, in seconds.
    pub rate_limit_wait_secs: u64,
    /// Wait after an out-of-likes notice, in seconds.
    pub out_of_likes_wait_secs: u64,
    /// After a 401: `exit` (code 77) or `wait` for a new token on SIGHUP.
    pub on_unauthorized: OnUnauthorized,
}

impl Default for TinderSettings {
    fn default() -> Self {
        TinderSettings {
            base_url: "https://api.gotinder.com".into(),
            api: RecsApi::V2,
            token_env: "SWIPEBOT_API_TOKEN".into(),
            token_file: None,
            credential_name: "swipebot-token".into(),
            user_agent: concat!("swipebot/", env!("CARGO_PKG_VERSION")).into(),
            request_timeout_secs: 15,
            max_retries: 4,
            retry_base_ms: 500,
            empty_backoff_secs: 60,
            empty_backoff_max_secs: 1800,
            rate_limit_wait_secs: 900,
            out_of_likes_wait_secs: 3600,
            on_unauthorized: OnUnauthorized::Exit,
        }
    }
}

/// `[source]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSettings {
    /// Which source.
    pub kind: SourceKind,
    /// Recorded profiles (`kind = "replay"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_dir: Option<PathBuf>,
    /// Score and journal, but never swipe.
    pub dry_run: bool,
    /// Profiles asked for at a time (replay).
    pub batch: usize,
    /// Save every fetched profile and its photos here, in the replay format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_dir: Option<PathBuf>,
    /// The HTTP source's settings.
    pub tinder: TinderSettings,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            kind: SourceKind::Replay,
            replay_dir: None,
            dry_run: false,
            batch: 10,
            record_dir: None,
            tinder: TinderSettings::default(),
        }
    }
}

/// `[pacing]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacingSettings {
    /// Swipes per minute at most (remote sources only).
    pub swipes_per_minute: u32,
    /// Random extra delay before a swipe, as a fraction of the interval between swipes.
    pub jitter: f64,
    /// Likes per UTC day at most; 0 means no likes at all.
    pub daily_like_budget: u64,
    /// Fraction of likes sent as passes instead, at random, so the swipes look human (0 to 1).
    pub pass_fraction: f64,
}

impl Default for PacingSettings {
    fn default() -> Self {
        PacingSettings {
            swipes_per_minute: 20,
            jitter: 0.5,
            daily_like_budget: 100,
            pass_fraction: 0.0,
        }
    }
}

/// `[pipeline]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Profiles being worked on at once.
    pub profiles_in_flight: usize,
    /// Photo downloads at once.
    pub photo_concurrency: usize,
    /// Timeout of one photo download, in seconds.
    pub photo_timeout_secs: u64,
    /// Largest photo accepted, in bytes.
    pub max_photo_bytes: u64,
    /// Largest photo accepted, in pixels.
    pub max_photo_pixels: u64,
    /// On SIGTERM, how long in-flight profiles get to finish, in seconds.
    pub shutdown_grace_secs: u64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            profiles_in_flight: 8,
            photo_concurrency: 8,
            photo_timeout_secs: 20,
            max_photo_bytes: 20 * 1024 * 1024,
            max_photo_pixels: 40_000_000,
            shutdown_grace_secs: 10,
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Profiles without a scorable photo: `skip` or `pass`.
    pub no_photos: NoPhotos,
}

/// `[state]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    /// Directory of the journal (`decisions.jsonl`, `pending.jsonl`).
    pub dir: PathBuf,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            dir: PathBuf::from("state"),
        }
    }
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `swipebot=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The configuration is unusable; names the file or key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// The file cannot be read or parsed, or a key is unknown or of the wrong type.
    #[error("config {path}: {message}", path = path.display())]
    Load {
        /// The config file.
        path: PathBuf,
        /// What the parser said (it names the key).
        message: String,
    },
    /// A key has a value outside its range.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key, e.g. `pacing.jitter`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Settings {
    /// Loads `path` with environment overrides, resolves relative paths against the file's folder,
    /// and validates every value.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let settings = Self::read(path)?;
        settings.validate()?;
        Ok(settings)
    }

    /// [`Settings::load`] without the validation, for callers that complete the settings first
    /// (`swipebot replay DIR` sets the source from its arguments) and then call
    /// [`Settings::validate`] themselves. Unknown keys and values of the wrong type are still errors.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let load_err = |message: String| ConfigError::Load {
            path: path.to_path_buf(),
            message,
        };
        if !path.is_file() {
            return Err(load_err("no such file (start from config/swipebot.toml)".into()));
        }
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        let mut settings: Settings = built.try_deserialize().map_err(|e| load_err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        settings.resolve_paths(base);
        Ok(settings)
    }

    /// Makes relative paths relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.model.path);
        fix(&mut self.state.dir);
        if let Some(p) = self.runtime.library.as_mut() {
            fix(p);
        }
        for p in [
            &mut self.source.replay_dir,
            &mut self.source.record_dir,
            &mut self.source.tinder.token_file,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }

    /// Checks every value's range; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(ok: bool, key: &'static str, message: impl FnOnce() -> String) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    message: message(),
                })
            }
        }
        if let Some(t) = self.model.threshold {
            check((0.0..=1.0).contains(&t), "model.threshold", || {
                format!("must be between 0 and 1, got {t}")
            })?;
        }
        let r = &self.runtime;
        check((1..=64).contains(&r.intra_threads), "runtime.intra_threads", || {
            format!("must be 1 to 64, got {}", r.intra_threads)
        })?;
        check((1..=16).contains(&r.scorer_threads), "runtime.scorer_threads", || {
            format!("must be 1 to 16, got {}", r.scorer_threads)
        })?;
        check((1..=256).contains(&r.batch_size), "runtime.batch_size", || {
            format!("must be 1 to 256, got {}", r.batch_size)
        })?;
        check(
            !r.require_gpu || r.device == Device::Cuda,
            "runtime.require_gpu",
            || "needs runtime.device = \"cuda\"".into(),
        )?;
        let s = &self.source;
        check((1..=100).contains(&s.batch), "source.batch", || {
            format!("must be 1 to 100, got {}", s.batch)
        })?;
        if s.kind == SourceKind::Replay {
            check(s.replay_dir.is_some(), "source.replay_dir", || {
                "is required when source.kind = \"replay\"".into()
            })?;
        }
        if s.kind == SourceKind::Tinder {
            let t = &s.tinder;
            let url = reqwest::Url::parse(&t.base_url);
            check(
                url.as_ref().is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
                "source.tinder.base_url",
                || format!("`{}` is not an http(s) URL", t.base_url),
            )?;
            check(!t.token_env.is_empty(), "source.tinder.token_env", || {
                "must name an environment variable".into()
            })?;
            check(
                (1..=300).contains(&t.request_timeout_secs),
                "source.tinder.request_timeout_secs",
                || format!("must be 1 to 300, got {}", t.request_timeout_secs),
            )?;
            check(t.max_retries <= 10, "source.tinder.max_retries", || {
                format!("must be at most 10, got {}", t.max_retries)
            })?;
            check(
                (1..=60_000).contains(&t.retry_base_ms),
                "source.tinder.retry_base_ms",
                || format!("must be 1 to 60000, got {}", t.retry_base_ms),
            )?;
            check(
                t.empty_backoff_secs >= 1 && t.empty_backoff_secs <= t.empty_backoff_max_secs,
                "source.tinder.empty_backoff_secs",
                || {
                    format!(
                        "must be at least 1 and at most empty_backoff_max_secs, got {}",
                        t.empty_backoff_secs
                    )
                },
            )?;
        }
        let p = &self.pacing;
        check(
            (1..=600).contains(&p.swipes_per_minute),
            "pacing.swipes_per_minute",
            || format!("must be 1 to 600, got {}", p.swipes_per_minute),
        )?;
        check((0.0..=1.0).contains(&p.jitter), "pacing.jitter", || {
            format!("must be between 0 and 1, got {}", p.jitter)
        })?;
        check((0.0..=1.0).contains(&p.pass_fraction), "pacing.pass_fraction", || {
            format!("must be between 0 and 1, got {}", p.pass_fraction)
        })?;
        let q = &self.pipeline;
        check(
            (1..=64).contains(&q.profiles_in_flight),
            "pipeline.profiles_in_flight",
            || format!("must be 1 to 64, got {}", q.profiles_in_flight),
        )?;
        check(
            (1..=64).contains(&q.photo_concurrency),
            "pipeline.photo_concurrency",
            || format!("must be 1 to 64, got {}", q.photo_concurrency),
        )?;
        check(
            (1..=600).contains(&q.photo_timeout_secs),
            "pipeline.photo_timeout_secs",
            || format!("must be 1 to 600, got {}", q.photo_timeout_secs),
        )?;
        check(
            (1024..=(256 << 20)).contains(&q.max_photo_bytes),
            "pipeline.max_photo_bytes",
            || format!("must be 1 KiB to 256 MiB, got {}", q.max_photo_bytes),
        )?;
        check(
            (1..=400_000_000).contains(&q.max_photo_pixels),
            "pipeline.max_photo_pixels",
            || format!("must be 1 to 400000000, got {}", q.max_photo_pixels),
        )?;
        check(q.shutdown_grace_secs <= 300, "pipeline.shutdown_grace_secs", || {
            format!("must be at most 300, got {}", q.shutdown_grace_secs)
        })?;
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level",
            || {
                format!(
                    "`{}` is not a valid filter (try `info` or `swipebot=debug`)",
                    self.log.level
                )
            },
        )?;
        Ok(())
    }

    /// The effective settings as TOML, secrets redacted (there are none in this struct by design;
    /// tokens come from the environment or a credentials file).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("settings serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("swipebot.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load(&write(dir.path(), "[pacing]\nswipes_per_minit = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("swipes_per_minit"), "{err}");
        let err = Settings::load(&write(
            dir.path(),
            "[source]\nreplay_dir = \"p\"\n[pacing]\njitter = 1.5\n",
        ))
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::Invalid {
                key: "pacing.jitter",
                message: "must be between 0 and 1, got 1.5".into()
            }
        );
        let err = Settings::load(&write(
            dir.path(),
            "[source]\nreplay_dir = \"p\"\n[runtime]\ndevice = \"tpu\"\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("tpu"), "{err}");
        let err = Settings::load(&write(dir.path(), "[source]\nkind = \"replay\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.replay_dir"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_config_file_and_round_trip_through_toml() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load(&write(
            dir.path(),
            "[source]\nreplay_dir = \"profiles\"\n[model]\nthreshold = 0.3\n",
        ))
        .unwrap();
        assert_eq!(
            s.source.replay_dir.as_deref(),
            Some(dir.path().join("profiles").as_path())
        );
        assert_eq!(s.model.path, dir.path().join("models/swipebot.onnx"));
        assert_eq!(s.model.threshold, Some(0.3));
        let back: Settings = toml::from_str(&s.to_toml()).unwrap();
        assert_eq!(back, s);
    }
}
