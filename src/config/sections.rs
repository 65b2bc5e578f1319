//! The sections of the config file, one struct each, with their defaults. `config/swipebot.toml`
//! documents every key; [`super::validate`] checks their ranges.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use swipebot_core::preprocess::Limits;

use crate::policy::NoPhotos;
use crate::vision::scorer::Device;

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
    /// Name of the systemd credential (`LoadCredential=NAME:...`) holding the token: a plain name,
    /// looked up inside `$CREDENTIALS_DIRECTORY`.
    pub credential_name: String,
    /// Hosts besides the API's own origin that get the token (https only), e.g. a photo host that
    /// answers 403 without it. Empty by default: photos on other hosts are downloaded without it.
    pub token_hosts: Vec<String>,
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
            token_hosts: Vec::new(),
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
    /// Shortest wait the source can impose, in seconds: a `Retry-After: 0`, a time already past or
    /// a malformed one never makes the daemon call again at once.
    pub min_wait_secs: u64,
    /// Longest wait the source can impose, in seconds: a rate limit a year away is waited out for
    /// this long, then the source is asked again.
    pub max_wait_secs: u64,
    /// Largest API response body or recorded `profile.json` read, in bytes.
    pub max_body_bytes: u64,
    /// Let photo URLs reach loopback, private, link-local and metadata addresses. Off by default,
    /// since photo URLs are written by strangers; an API on such an address allows them anyway.
    pub allow_private_photo_hosts: bool,
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
            min_wait_secs: 5,
            max_wait_secs: 86_400,
            max_body_bytes: crate::source::replay::DEFAULT_MAX_PROFILE_BYTES,
            allow_private_photo_hosts: false,
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
    /// Photos being decoded at once, across all profiles: with `max_photo_pixels` it bounds the
    /// memory decoding can take (each decode up to about 13 bytes a pixel, measured).
    pub decodes_at_once: usize,
    /// Photos scored per profile at most; the rest are journaled as not scored.
    pub max_photos_per_profile: usize,
    /// On SIGTERM, how long in-flight profiles get to finish, in seconds.
    pub shutdown_grace_secs: u64,
    /// Profiles in a row the scoring engine may fail on (a broken model, a scorer gone) before the
    /// daemon stops; such profiles are never journaled.
    pub max_engine_failures: u32,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            profiles_in_flight: 8,
            photo_concurrency: 8,
            photo_timeout_secs: 20,
            // The limits are stated once, in preprocessing, where they are enforced.
            max_photo_bytes: Limits::default().max_bytes,
            max_photo_pixels: Limits::default().max_pixels,
            // One decode overlaps one inference on the CPU, and a bomb-like photo costs up to about
            // 13 bytes a pixel while decoded (benches/memory.rs): the default stays inside the
            // unit's MemoryMax.
            decodes_at_once: 1,
            // The most photos a Tinder profile shows.
            max_photos_per_profile: 9,
            shutdown_grace_secs: 10,
            max_engine_failures: 3,
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

/// `[metrics]`: the Prometheus endpoint (`/metrics`, `/healthz`). Off unless `listen` is set; every
/// request comes from outside, so each connection is bounded in time, size and number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Address and port to serve on, e.g. `127.0.0.1:9464` (port 0 picks a free one, logged at
    /// start); unset means no endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Longest a connection may take, from accepting it to the end of the answer, in seconds.
    pub request_timeout_secs: u64,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers) read, in bytes.
    pub max_request_bytes: usize,
    /// `/healthz` answers 503 when the daemon has shown no sign of life for this long, in seconds
    /// (the unit's `WatchdogSec` is the same idea).
    pub stalled_after_secs: u64,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: None,
            request_timeout_secs: 10,
            max_connections: 8,
            max_request_bytes: 8192,
            stalled_after_secs: 120,
        }
    }
}

/// `[console]`: the local web page of `swipebot console` (decisions, label mode). Everything a
/// browser sends is bounded; any address but loopback needs `password_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Address and port to serve on (an IP address: names are not looked up). Loopback unless
    /// `password_file` is set.
    pub listen: String,
    /// A file holding the console's password (HTTP Basic, any user name): required to listen on
    /// anything but loopback, and then asked for on every request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Profiles on one page of decisions.
    pub page_size: usize,
    /// Largest request body (a profile's labels) read, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            listen: "127.0.0.1:8470".into(),
            password_file: None,
            page_size: 50,
            max_body_bytes: 65_536,
        }
    }
}
