//! Build script: records where `scripts/setup.sh` puts the ONNX Runtime library, so the binaries find it
//! without configuration, and the git commit the binaries were built from (`swipebot --version`).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // The last place the scorer looks for libonnxruntime (after the config key and ORT_DYLIB_PATH).
    let default_ort = Path::new(&manifest_dir).join(".venv/lib/swipebot/libonnxruntime.so");
    println!("cargo:rustc-env=SWIPEBOT_DEFAULT_ORT_DYLIB={}", default_ort.display());
    println!(
        "cargo:rustc-env=SWIPEBOT_GIT_COMMIT={}",
        git_commit(Path::new(&manifest_dir))
    );
}

/// The commit being built: `SWIPEBOT_GIT_COMMIT` when a packager sets it, else git's HEAD, else the
/// `node:` line of `.git_archival.txt`, which `git archive` fills in (`.gitattributes`:
/// export-subst) so a release tarball without `.git` still knows its commit, else `unknown`.
fn git_commit(root: &Path) -> String {
    println!("cargo:rerun-if-env-changed=SWIPEBOT_GIT_COMMIT");
    if let Ok(commit) = std::env::var("SWIPEBOT_GIT_COMMIT") {
        if !commit.trim().is_empty() {
            return commit.trim().to_string();
        }
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Only this repository's own git: a tarball unpacked inside another checkout is not that one.
    let own = git(&["rev-parse", "--show-toplevel"])
        .and_then(|top| Path::new(&top).canonicalize().ok())
        .is_some_and(|top| root.canonicalize().is_ok_and(|r| r == top));
    if let Some(head) = git(&["rev-parse", "HEAD"]).filter(|_| own) {
        // Built again when HEAD moves: the file HEAD, the branch it names, and packed refs (only
        // files that exist: cargo takes a missing one for a change at every build).
        let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
        watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
        for path in watched {
            if let Some(p) = git(&["rev-parse", "--git-path", &path]).map(|p| root.join(p)) {
                if p.is_file() {
                    println!("cargo:rerun-if-changed={}", p.display());
                }
            }
        }
        return head;
    }
    println!("cargo:rerun-if-changed=.git_archival.txt");
    let archival = std::fs::read_to_string(root.join(".git_archival.txt")).unwrap_or_default();
    archival
        .lines()
        .find_map(|l| l.strip_prefix("node:"))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.contains("$Format"))
        .unwrap_or("unknown")
        .to_string()
}
