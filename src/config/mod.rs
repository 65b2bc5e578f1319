//! The daemon's settings: a TOML file (`config/swipebot.toml` documents every key) with
//! `SWIPEBOT__SECTION__KEY` environment overrides, checked in full before anything runs.
//!
//! Unknown keys and out-of-range values are errors that name the key. Secrets never live here: the
//! API token comes from the environment or a credentials file (see the `source` section).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod sections;
mod validate;

pub use sections::*;

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
    /// The Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// The local web page (`swipebot console`).
    pub console: ConsoleSettings,
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
            &mut self.console.password_file,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }

    /// Checks every value's range and the keys that depend on each other; the error names the
    /// first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
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
