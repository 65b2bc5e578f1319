//! What `swipebot --version` reports: one list of named lines, gathered here, so that whatever else
//! a build should tell about itself is one more line in [`lines`].

use std::path::{Path, PathBuf};

use crate::vision::runtime;

/// The package version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from (build.rs: git, else the release tarball's
/// `.git_archival.txt`, else `unknown`).
pub const GIT_COMMIT: &str = env!("SWIPEBOT_GIT_COMMIT");

/// One line of the report: what it is about, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionLine {
    /// What the line is about (`commit`, `onnxruntime`).
    pub name: &'static str,
    /// What was found.
    pub value: String,
}

/// Every line of the report, in order: version, commit, the ONNX Runtime library that would be
/// loaded (from `ORT_DYLIB_PATH` or the default place; a config's `runtime.library` is not read
/// here) and its version, whether CUDA could score with it (and the first thing missing if not),
/// and the version of the model contract.
pub fn lines() -> Vec<VersionLine> {
    let line = |name, value: String| VersionLine { name, value };
    let library = runtime::locate(
        None,
        std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        Path::new(runtime::DEFAULT_LIBRARY),
    );
    let onnxruntime = match &library {
        Ok((path, origin)) => match library_version(path) {
            Ok(v) => format!("{v} at {} (from {origin})", path.display()),
            Err(e) => format!("unusable: {e}"),
        },
        Err(e) => format!("not found: {e}"),
    };
    // Which device `runtime.device = "cuda"` would get, and why not the GPU when not.
    let cuda = match &library {
        Ok((path, _)) => match crate::vision::cuda::prepare(path) {
            Ok(()) => "usable: the CUDA provider, the CUDA libraries and the driver load; runtime.device = \"cuda\" scores on the GPU".to_string(),
            Err(problem) => format!("not usable, runtime.device = \"cuda\" would score on the CPU: {problem}"),
        },
        Err(_) => "not usable: no ONNX Runtime".to_string(),
    };
    vec![
        line("swipebot", VERSION.to_string()),
        line("commit", GIT_COMMIT.to_string()),
        line("onnxruntime", onnxruntime),
        line("cuda", cuda),
        line(
            "model contract",
            swipebot_core::model_info::CONTRACT_VERSION.to_string(),
        ),
    ]
}

/// The report as printed: `name: value`, one a line.
pub fn render() -> String {
    lines().iter().map(|l| format!("{}: {}\n", l.name, l.value)).collect()
}

/// The version ONNX Runtime's library at `path` reports (`OrtGetApiBase()->GetVersionString()`),
/// read without setting up the runtime the scorer uses.
fn library_version(path: &Path) -> Result<String, String> {
    // SAFETY: loading the library runs its initialisers, as loading it for scoring does; the one
    // function called is ONNX Runtime's C entry point, whose signature `ort::sys` declares.
    unsafe {
        let lib = libloading::Library::new(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> = lib
            .get(b"OrtGetApiBase")
            .map_err(|e| format!("{} is not ONNX Runtime: {e}", path.display()))?;
        let base = get_base();
        if base.is_null() {
            return Err(format!("{} gave no API", path.display()));
        }
        let version = ((*base).GetVersionString)();
        if version.is_null() {
            return Err(format!("{} gave no version", path.display()));
        }
        Ok(std::ffi::CStr::from_ptr(version).to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_onnx_runtime_is_named_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libonnxruntime.so");
        std::fs::write(&fake, b"not a library").unwrap();
        let err = library_version(&fake).unwrap_err();
        assert!(err.contains(&fake.display().to_string()), "{err}");
    }
}
