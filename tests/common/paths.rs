//! Where things are: the repository, the workspace's binaries, the project's Python and the files the
//! tests read (API fixtures, sample photos).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (where scripts/setup.sh lives), from either package's manifest folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("scripts/setup.sh").exists())
        .expect("tests and benchmarks run inside the repository")
        .to_path_buf()
}

/// A binary of the workspace (`swipebot` or `train`), for tests and benchmarks alike.
///
/// The package that builds the binary gets it from cargo (`CARGO_BIN_EXE_*`, always fresh); the other
/// package finds it next to its own executable, in the same profile folder (`target/debug` for
/// `cargo test`, `target/release` for `cargo bench`), where a plain `cargo test` or `cargo bench` at
/// the root builds it, since every package is a default member. Panics, saying what to build, when it
/// is not there.
pub fn bin(name: &str) -> PathBuf {
    let from_cargo = match name {
        "swipebot" => option_env!("CARGO_BIN_EXE_swipebot"),
        "train" => option_env!("CARGO_BIN_EXE_train"),
        other => panic!("`{other}` is not a binary of this workspace (swipebot, train)"),
    };
    if let Some(path) = from_cargo {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the running executable has a path");
    // target/<profile>/deps/<test or bench> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests and benchmarks run from target/<profile>/deps");
    let path = profile_dir.join(name);
    let package = if name == "train" { "swipebot-train" } else { "swipebot" };
    let release = if profile_dir.ends_with("release") {
        " --release"
    } else {
        ""
    };
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build{release} -p {package}`, or run a plain `cargo test` \
         (or `cargo bench`) at the repository root, which builds every package",
        path.display()
    );
    path
}

/// The project's Python (made by scripts/setup.sh --dev): `$VIRTUAL_ENV/bin/python` when a virtual
/// environment is active (scripts/env.sh sets it), else the repository's `.venv`.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"));
    let p = venv.join("bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh --dev, then `source scripts/env.sh`",
        p.display()
    );
    p
}

/// scikit-image's bundled sample photos (installed by scripts/setup.sh --dev).
pub fn sample_photo_dir() -> PathBuf {
    let out = Command::new(python())
        .args([
            "-c",
            "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('skimage').origin))",
        ])
        .output()
        .expect("the project's Python runs");
    assert!(
        out.status.success(),
        "scikit-image is not installed: run scripts/setup.sh --dev"
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("a UTF-8 path").trim()).join("data")
}

/// A response body of the Tinder-style API, from `tests/fixtures/tinder-api` (its README gives each
/// shape and its provenance).
pub fn tinder_fixture(name: &str) -> String {
    let path = repo_root().join("tests/fixtures/tinder-api").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}
