//! Finding and loading the ONNX Runtime shared library.
//!
//! swipebot never downloads ONNX Runtime: `scripts/setup.sh` installs it from the PyPI wheel
//! (`onnxruntime`, or `onnxruntime-gpu` on CUDA hosts) into the project's `.venv`. The library is looked
//! for, in order, at the path given in the config (`runtime.library`), at `ORT_DYLIB_PATH`, then where
//! the setup script puts it. A path that was given but does not exist is an error, not a reason to look
//! further: the user asked for that file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

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

/// Loads ONNX Runtime (once per process) and returns its environment and the library it came from.
pub fn environment(configured: Option<&Path>) -> Result<&'static (PathBuf, Environment), RuntimeError> {
    let (path, _origin) = locate(
        configured,
        std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        Path::new(DEFAULT_LIBRARY),
    )?;
    let loaded = ENVIRONMENT.get_or_init(|| {
        let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
        let env = builder.with_name("swipebot").build().map_err(|e| e.to_string())?;
        tracing::debug!(library = %path.display(), "loaded ONNX Runtime");
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
}
