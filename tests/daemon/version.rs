//! `swipebot --version`, after any subcommand: the version, the commit it was built from (also from
//! a release tarball, through `.git_archival.txt`), the ONNX Runtime library and its version, and
//! the model contract.

use std::process::Command;

use crate::common;

/// `swipebot ARGS` with `env`; returns stdout, after checking it exited 0.
fn version(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(common::paths::bin("swipebot"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of the `name: value` line of `report`.
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no `{name}:` line in\n{report}"))
}

/// The commit this checkout is at: git's HEAD, or a release tarball's `.git_archival.txt`.
fn checkout_commit() -> String {
    let root = common::paths::repo_root();
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success());
    match head {
        Some(out) => String::from_utf8(out.stdout).unwrap().trim().to_string(),
        None => {
            let archival = std::fs::read_to_string(root.join(".git_archival.txt")).unwrap();
            archival
                .lines()
                .find_map(|l| l.strip_prefix("node: "))
                .unwrap()
                .trim()
                .to_string()
        }
    }
}

#[test]
fn every_subcommand_reports_version_commit_onnx_runtime_and_contract() {
    let top = version(&["--version"], &[]);
    assert_eq!(line(&top, "swipebot"), env!("CARGO_PKG_VERSION"));
    assert_eq!(line(&top, "commit"), checkout_commit());
    assert_eq!(
        line(&top, "model contract"),
        swipebot_core::model_info::CONTRACT_VERSION.to_string()
    );
    // The wheel's library, asked for its version: `1.x.y at PATH (from …)`.
    let ort = line(&top, "onnxruntime");
    let (v, rest) = ort.split_once(" at ").unwrap_or_else(|| panic!("{ort}"));
    assert!(
        v.starts_with("1.") && v.split('.').all(|p| p.parse::<u32>().is_ok()),
        "{ort}"
    );
    assert!(rest.contains("libonnxruntime"), "{ort}");
    // With the CPU wheel of the test environment, CUDA is not usable, and the line says why.
    let cuda = line(&top, "cuda");
    assert!(
        cuda.starts_with("not usable")
            && cuda.contains("has no CUDA provider")
            && cuda.contains("scripts/setup.sh --gpu"),
        "{cuda}"
    );
    // The same report after each subcommand, whatever it requires.
    for sub in [
        "run",
        "replay",
        "check-config",
        "score",
        "demo-data",
        "compare",
        "stats",
    ] {
        assert_eq!(version(&[sub, "--version"], &[]), top, "{sub}");
    }
    assert_eq!(version(&["score", "-V"], &[]), top);
    // A library that is not there is named, not a failure of --version.
    let missing = version(&["--version"], &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")]);
    let ort = line(&missing, "onnxruntime");
    assert!(
        ort.starts_with("not found") && ort.contains("/nonexistent/libonnxruntime.so"),
        "{ort}"
    );
}

#[test]
fn a_release_tarball_carries_its_commit_for_the_build() {
    let root = common::paths::repo_root();
    let attributes = std::fs::read_to_string(root.join(".gitattributes")).unwrap();
    assert!(
        attributes.lines().any(|l| l.trim() == ".git_archival.txt export-subst"),
        "{attributes}"
    );
    if !root.join(".git").exists() {
        // Unpacked from a tarball: the file holds the commit itself.
        let archival = std::fs::read_to_string(root.join(".git_archival.txt")).unwrap();
        assert!(!archival.contains("$Format"), "{archival}");
        return;
    }
    // `git archive` (what makes a release tarball) fills in the commit, and the build script, run
    // in the unpacked tarball (no .git), gives the binary that commit.
    let unpacked = tempfile::tempdir().unwrap();
    let archive = Command::new("git")
        .args(["archive", "--format=tar", "HEAD", "build.rs", ".git_archival.txt"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(archive.status.success(), "{}", String::from_utf8_lossy(&archive.stderr));
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(unpacked.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut tar.stdin.take().unwrap(), &archive.stdout).unwrap();
    assert!(tar.wait().unwrap().success());
    let script = unpacked.path().join("build-script");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let built = Command::new(rustc)
        .args(["--edition", "2021", "-o"])
        .arg(&script)
        .arg(unpacked.path().join("build.rs"))
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let out = Command::new(&script)
        .env("CARGO_MANIFEST_DIR", unpacked.path())
        .env_remove("SWIPEBOT_GIT_COMMIT")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let head = checkout_commit();
    assert!(
        said.contains(&format!("cargo:rustc-env=SWIPEBOT_GIT_COMMIT={head}\n")),
        "the build script in a tarball of {head} said:\n{said}"
    );
}
