//! Finding and loading the ONNX Runtime shared library.
//!
//! swipebot never downloads ONNX Runtime: `scripts/setup.sh` installs it from the PyPI wheel
//! (`onnxruntime`, or `onnxruntime-gpu` on CUDA hosts) into the project's `.venv`. The library is looked
//! for, in order, at the path given in the config (`runtime.library`), at `ORT_DYLIB_PATH`, then where
//! the setup script puts it. A path that was given but does not exist is an error, not a reason to look
//! further: the user asked for that file.
//!
//! ONNX Runtime's own messages go through tracing, under the target [`LOG_TARGET`], one level lower
//! than ONNX Runtime rates them (its info is our debug, its verbose our trace): at the default
//! `log.level = "info"` only its warnings and errors come through, not the hundreds of lines it
//! writes while loading a model. `SWIPEBOT_LOG=info,onnxruntime=debug` brings its info lines back.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::environment::Environment;
use ort::logging::LogLevel;
use tracing::Level;

/// The tracing target of ONNX Runtime's own messages (what `SWIPEBOT_LOG` directives name).
pub const LOG_TARGET: &str = "onnxruntime";

/// Where the setup script installs the library, fixed at build time.
pub const DEFAULT_LIBRARY: &str = env!("SWIPEBOT_DEFAULT_ORT_DYLIB");

/// What the user should run when the library is missing.
const HOW_TO_INSTALL: &str = "install it with `scripts/setup.sh` (`scripts/setup.sh --gpu` on CUDA hosts), \
or point `runtime.library` in the config or the ORT_DYLIB_PATH environment variable at libonnxruntime.so";

/// ONNX Runtime could not be found or loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No library file at the chosen path.
    #[error("ONNX Runtime library not found at {path} (from {origin}): {HOW_TO_INSTALL}", path = path.display())]
    NotFound {
        /// The path looked at.
        path: PathBuf,
        /// Which setting gave that path.
        origin: &'static str,
    },
    /// The file exists but could not be loaded as ONNX Runtime.
    #[error("could not load ONNX Runtime from {path}: {message}; {HOW_TO_INSTALL}", path = path.display())]
    Load {
        /// The library path.
        path: PathBuf,
        /// What the loader said.
        message: String,
    },
}

/// Picks the library path: the configured one, then `env_value` (ORT_DYLIB_PATH), then `default`.
pub fn locate(
    configured: Option<&Path>,
    env_value: Option<PathBuf>,
    default: &Path,
) -> Result<(PathBuf, &'static str), RuntimeError> {
    let (path, origin) = match (configured, env_value) {
        (Some(path), _) => (path.to_path_buf(), "config key runtime.library"),
        (None, Some(path)) if !path.as_os_str().is_empty() => (path, "ORT_DYLIB_PATH"),
        _ => (default.to_path_buf(), "the default location of scripts/setup.sh"),
    };
    if path.is_file() {
        Ok((path, origin))
    } else {
        Err(RuntimeError::NotFound { path, origin })
    }
}

/// The process-wide ONNX Runtime environment, loaded once from the first path asked for.
static ENVIRONMENT: OnceLock<Result<(PathBuf, Environment), String>> = OnceLock::new();

/// The least severe ONNX Runtime message passed on to tracing, chosen when the environment was built.
static LOG_LEVEL: OnceLock<LogLevel> = OnceLock::new();

/// The least severe ONNX Runtime message worth producing, given what tracing shows for
/// [`LOG_TARGET`] now: verbose when it shows trace, info when it shows debug, else warnings.
pub fn wanted_log_level() -> LogLevel {
    if tracing::enabled!(target: LOG_TARGET, Level::TRACE) {
        LogLevel::Verbose
    } else if tracing::enabled!(target: LOG_TARGET, Level::DEBUG) {
        LogLevel::Info
    } else {
        LogLevel::Warning
    }
}

/// The level chosen for ONNX Runtime's messages when the environment was built; `None` before.
pub fn log_level() -> Option<LogLevel> {
    LOG_LEVEL.get().copied()
}

/// The tracing level an ONNX Runtime message of `severity` is logged at: one step down for its
/// chatter (verbose to trace, info to debug), the same for warnings and errors.
pub fn tracing_level(severity: LogLevel) -> Level {
    match severity {
        LogLevel::Verbose => Level::TRACE,
        LogLevel::Info => Level::DEBUG,
        LogLevel::Warning => Level::WARN,
        LogLevel::Error | LogLevel::Fatal => Level::ERROR,
    }
}

/// Passes one ONNX Runtime message on to tracing, unless it is less severe than `min`. ONNX Runtime
/// calls this from whichever thread logs (the loading thread, the scoring threads).
fn forward(min: LogLevel, severity: LogLevel, category: &str, id: &str, location: &str, message: &str) {
    if severity < min {
        return;
    }
    match tracing_level(severity) {
        Level::TRACE => tracing::trace!(target: LOG_TARGET, category, id, location, "{message}"),
        Level::DEBUG => tracing::debug!(target: LOG_TARGET, category, id, location, "{message}"),
        Level::WARN => tracing::warn!(target: LOG_TARGET, category, id, location, "{message}"),
        _ => tracing::error!(target: LOG_TARGET, category, id, location, "{message}"),
    }
}

/// Loads ONNX Runtime (once per process) and returns its environment and the library it came from.
pub fn environment(configured: Option<&Path>) -> Result<&'static (PathBuf, Environment), RuntimeError> {
    let (path, _origin) = locate(
        configured,
        std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        Path::new(DEFAULT_LIBRARY),
    )?;
    let loaded = ENVIRONMENT.get_or_init(|| {
        let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
        // ONNX Runtime starts its logger at its most verbose; the logger drops what is below `min`
        // from the start, and once built the environment stops producing it at all.
        let min = *LOG_LEVEL.get_or_init(wanted_log_level);
        let env = builder
            .with_name("swipebot")
            // No telemetry events. ONNX Runtime's usage database under ~/.cache is turned off only by
            // ORT_DISABLE_TELEMETRY=1 in the environment before it loads (the systemd unit sets it).
            .with_telemetry(false)
            .with_logger(Arc::new(
                move |severity, category: &str, id: &str, location: &str, message: &str| {
                    forward(min, severity, category, id, location, message);
                },
            ))
            .build()
            .map_err(|e| e.to_string())?;
        env.set_log_level(min);
        tracing::debug!(library = %path.display(), log_level = ?min, "loaded ONNX Runtime");
        Ok((path.clone(), env))
    });
    match loaded {
        Ok(env) => {
            if env.0 != path {
                tracing::warn!(asked = %path.display(), loaded = %env.0.display(), "ONNX Runtime is already loaded from another file; using it");
            }
            Ok(env)
        }
        Err(message) => Err(RuntimeError::Load {
            path,
            message: message.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_config_then_env_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let [a, b, c] = ["a.so", "b.so", "c.so"].map(|n| {
            let p = dir.path().join(n);
            std::fs::write(&p, b"x").unwrap();
            p
        });
        assert_eq!(locate(Some(&a), Some(b.clone()), &c).unwrap().0, a);
        assert_eq!(locate(None, Some(b.clone()), &c).unwrap().0, b);
        assert_eq!(locate(None, None, &c).unwrap().0, c);
    }

    #[test]
    fn a_missing_library_says_where_it_looked_and_what_to_run() {
        let err = locate(None, Some("/nowhere/libonnxruntime.so".into()), Path::new("/x")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nowhere/libonnxruntime.so"), "{text}");
        assert!(text.contains("ORT_DYLIB_PATH"), "{text}");
        assert!(text.contains("scripts/setup.sh"), "{text}");
        let err = locate(None, None, Path::new("/nowhere/default.so")).unwrap_err();
        assert!(err.to_string().contains("default location"), "{err}");
    }

    /// What a subscriber wrote, shared with the test that reads it.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        /// Runs `f` with a text subscriber filtered by `directives` (as `log.level` or
        /// `SWIPEBOT_LOG`) on this thread, and returns what `f` returned and the lines written.
        fn run<T>(directives: &str, f: impl FnOnce() -> T) -> (T, Vec<String>) {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            let value = tracing::subscriber::with_default(subscriber, f);
            let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
            (value, text.lines().map(str::to_string).collect())
        }
    }

    /// ONNX Runtime's level follows what tracing shows for its target: warnings at the default
    /// level, its info at debug, everything at trace; its info and verbose messages are logged one
    /// level lower than it rates them.
    #[test]
    fn onnx_runtime_messages_go_through_tracing_one_level_down() {
        for (directives, level) in [
            ("info", LogLevel::Warning),
            ("warn", LogLevel::Warning),
            ("debug", LogLevel::Info),
            ("info,onnxruntime=trace", LogLevel::Verbose),
            ("debug,onnxruntime=warn", LogLevel::Warning),
        ] {
            let (wanted, _) = Captured::run(directives, wanted_log_level);
            assert_eq!(wanted, level, "with {directives}");
        }
        assert_eq!(tracing_level(LogLevel::Verbose), Level::TRACE);
        assert_eq!(tracing_level(LogLevel::Info), Level::DEBUG);
        assert_eq!(tracing_level(LogLevel::Warning), Level::WARN);
        assert_eq!(tracing_level(LogLevel::Fatal), Level::ERROR);

        let ((), lines) = Captured::run("trace", || {
            forward(LogLevel::Warning, LogLevel::Info, "cat", "", "a.cc:1", "dropped info");
            forward(
                LogLevel::Warning,
                LogLevel::Warning,
                "cat",
                "",
                "b.cc:2",
                "kept warning",
            );
            forward(LogLevel::Info, LogLevel::Info, "cat", "", "c.cc:3", "kept info");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("WARN onnxruntime") && lines[0].contains("kept warning"),
            "{lines:?}"
        );
        assert!(lines[0].contains("b.cc:2"), "the location is kept: {lines:?}");
        assert!(
            lines[1].contains("DEBUG onnxruntime") && lines[1].contains("kept info"),
            "{lines:?}"
        );
    }

    /// Building the environment at the default level (info) writes none of ONNX Runtime's info
    /// lines, under either target it could use, and leaves ONNX Runtime at warnings.
    #[test]
    fn building_the_environment_at_the_default_level_writes_no_onnx_runtime_info() {
        let (built, lines) = Captured::run("info", || environment(None).map(|_| ()));
        built.expect("ONNX Runtime at its default location (scripts/setup.sh)");
        assert_eq!(log_level(), Some(LogLevel::Warning));
        let chatter: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("onnxruntime:") || l.contains("ort::logging:"))
            .filter(|l| !l.contains(" WARN ") && !l.contains(" ERROR "))
            .collect();
        assert!(chatter.is_empty(), "ONNX Runtime's info came through: {chatter:#?}");
    }
}
