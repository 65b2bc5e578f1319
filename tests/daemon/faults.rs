//! Nothing lost, nothing unbounded: a full disk, two daemons on one state directory, a broken model,
//! and the pre-flight that says whether `run` would start. Real processes, real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use swipebot::journal::Journal;
use swipebot::profile::PhotoScore;

use crate::common::models::untrained_model;
use crate::common::paths::{bin, python};
use crate::tinder::World;

/// Demo profiles (40 and a broken one) and an untrained 64 grayscale model in `dir`.
fn demo(dir: &Path) -> (PathBuf, PathBuf) {
    let out = Command::new(bin("swipebot"))
        .args([
            "demo-data",
            "--out",
            dir.to_str().unwrap(),
            "--per-class",
            "2",
            "--profiles",
            "40",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (dir.join("profiles"), untrained_model(dir, 64, true))
}

/// Runs the project's Python on `script` with `args` (the `onnx` package edits models).
fn python_script(script: &str, args: &[&Path]) {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `model` with every weight of its first convolution set to NaN: what a diverged training run gives.
fn nan_model(model: &Path, out: &Path) {
    python_script(
        "import sys, numpy as np, onnx\nfrom onnx import numpy_helper\nm = onnx.load(sys.argv[1])\n\
         w = max(m.graph.initializer, key=lambda t: int(np.prod(t.dims)))\n\
         a = numpy_helper.to_array(w).copy(); a[:] = np.nan\n\
         w.CopyFrom(numpy_helper.from_array(a, w.name))\nonnx.save(m, sys.argv[2])\n",
        &[model, out],
    );
}

/// `model` whose metadata promises three channels while its graph reads one.
fn mismatched_model(model: &Path, out: &Path) {
    python_script(
        "import sys, onnx\nm = onnx.load(sys.argv[1])\n\
         [setattr(p, 'value', '3') for p in m.metadata_props if p.key == 'swipebot.channels']\n\
         onnx.save(m, sys.argv[2])\n",
        &[model, out],
    );
}

/// `swipebot ARGS` with `env`.
fn swipebot(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin("swipebot"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_rolls_the_journal_back_exits_75_and_a_restart_with_space_finishes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (profiles, model) = demo(dir.path());
    let disk = dir.path().join("disk");
    let kept = dir.path().join("kept");
    std::fs::create_dir_all(&disk).unwrap();
    // A 32 KiB tmpfs, most of it taken by a filler file, in a mount namespace of its own (no root
    // needed where user namespaces are allowed; the mount vanishes with the namespace).
    let script = r#"set -u
mount -t tmpfs -o size=32k tmpfs "$DISK"
head -c 20480 /dev/zero > "$DISK/filler"
"$SWIPEBOT" replay "$PROFILES" --model "$MODEL" --state-dir "$DISK/state" 2>"$KEPT.first.log"
echo "first=$?"
cp -r "$DISK/state" "$KEPT.full"
rm "$DISK/filler"
"$SWIPEBOT" replay "$PROFILES" --model "$MODEL" --state-dir "$DISK/state" 2>"$KEPT.second.log"
echo "second=$?"
cp -r "$DISK/state" "$KEPT.done"
head -c 40960 /dev/zero > "$DISK/filler" 2>/dev/null
"$SWIPEBOT" replay "$PROFILES" --model "$MODEL" --state-dir "$DISK/fresh" 2>"$KEPT.third.log"
echo "third=$?"
"#;
    let out = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", script])
        .env("DISK", &disk)
        .env("KEPT", &kept)
        .env("SWIPEBOT", bin("swipebot"))
        .env("PROFILES", &profiles)
        .env("MODEL", &model)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = |name: &str| std::fs::read_to_string(format!("{}.{name}.log", kept.display())).unwrap_or_default();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("first=75"),
        "a full disk is EX_TEMPFAIL: {stdout}\n{}",
        log("first")
    );
    assert!(stdout.contains("second=0"), "{stdout}\n{}", log("second"));
    // A disk already full at start: also 75, not 78.
    assert!(stdout.contains("third=75"), "{stdout}\n{}", log("third"));
    // The full journal ends on a complete line: no torn record for later appends to follow.
    let full = std::fs::read(kept.with_extension("full").join("decisions.jsonl")).unwrap();
    assert!(
        !full.is_empty() && full.ends_with(b"\n"),
        "{}",
        String::from_utf8_lossy(&full)
    );
    let partial = Journal::read_all(&kept.with_extension("full")).unwrap();
    assert!(
        partial.len() < 41,
        "the disk filled before the end ({} records)",
        partial.len()
    );
    // With space back, every profile is decided exactly once.
    let text = std::fs::read_to_string(kept.with_extension("done").join("decisions.jsonl")).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["profile_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 41, "{}", log("second"));
    assert_eq!(unique.len(), 41, "no profile twice");
    assert!(log("first").contains("rolled back"), "{}", log("first"));
}

#[test]
fn a_second_daemon_on_the_same_state_directory_refuses_naming_the_first() {
    let w = World::new();
    let first = w.start(&[]);
    // The first has its lock once it logs that it is ready.
    first.wait_for("start", |d| d.log().contains("swipebot ready"));
    let second = swipebot(
        &["run", "--config", w.path().join("swipebot.toml").to_str().unwrap()],
        &[("SWIPEBOT_API_TOKEN", "x")],
    );
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    let (code, _, log) = first.stop_after_time(Duration::ZERO);
    assert_eq!(code, 0, "{log}");
}

#[test]
fn a_model_that_scores_nan_stops_the_daemon_before_it_burns_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let (profiles, model) = demo(dir.path());
    let broken = dir.path().join("nan.onnx");
    nan_model(&model, &broken);
    let state = dir.path().join("state");
    let out = swipebot(
        &[
            "replay",
            profiles.to_str().unwrap(),
            "--model",
            broken.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("non-finite"), "{err}");
    let records = Journal::read_all(&state).unwrap();
    assert!(
        records
            .iter()
            .all(|r| !r.scores.iter().any(|s| matches!(s, PhotoScore::Scored { .. }))),
        "no profile was decided on NaN scores: {records:?}"
    );
    assert!(
        records.iter().all(|r| r.decision == swipebot::profile::Decision::Skip),
        "only profiles that needed no score (placeholders, broken files) were journaled: {records:?}"
    );
    // `swipebot score` reports the photos, never a score.
    let photo = profiles.join("0000/0.jpg");
    let out = swipebot(
        &[
            "score",
            "--model",
            broken.to_str().unwrap(),
            "--json",
            photo.to_str().unwrap(),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("non-finite") && !stdout.contains("\"score\""),
        "{stdout}"
    );
}

#[test]
fn a_model_whose_graph_disagrees_with_its_metadata_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let (profiles, model) = demo(dir.path());
    let bad = dir.path().join("bad.onnx");
    mismatched_model(&model, &bad);
    let photo = profiles.join("0000/0.jpg");
    let out = swipebot(
        &["score", "--model", bad.to_str().unwrap(), photo.to_str().unwrap()],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("metadata says 3 channel"), "{err}");
    let state = dir.path().join("state");
    let out = swipebot(
        &[
            "replay",
            profiles.to_str().unwrap(),
            "--model",
            bad.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(78), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(Journal::read_all(&state).unwrap().is_empty(), "no profile burnt");
}

#[test]
fn check_config_passes_only_when_run_would_start_and_names_the_key_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (profiles, model) = demo(dir.path());
    let config = dir.path().join("swipebot.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = {model:?}\n[source]\nreplay_dir = {profiles:?}\n[state]\ndir = {:?}\n",
            dir.path().join("state")
        ),
    )
    .unwrap();
    let check = |env: &[(&str, &str)]| swipebot(&["check-config", "--config", config.to_str().unwrap()], env);
    let ok = check(&[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(stdout.starts_with("# scoring device: cpu\n"), "{stdout}");
    // CUDA asked for with the CPU build of ONNX Runtime: it starts on the CPU and says why.
    let cuda = check(&[("SWIPEBOT__RUNTIME__DEVICE", "cuda")]);
    assert!(cuda.status.success(), "{}", String::from_utf8_lossy(&cuda.stderr));
    let stdout = String::from_utf8_lossy(&cuda.stdout);
    assert!(
        stdout.starts_with("# scoring device: cpu (CUDA was asked for but cannot be used: the ONNX Runtime at ")
            && stdout.contains("has no CUDA provider")
            && stdout.contains("scripts/setup.sh --gpu"),
        "{stdout}"
    );
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, b"").unwrap();
    for (env, key) in [
        (vec![("SWIPEBOT__MODEL__PATH", "/nonexistent/model.onnx")], "model.path"),
        (
            vec![("SWIPEBOT__SOURCE__REPLAY_DIR", "/nonexistent/profiles")],
            "source.replay_dir",
        ),
        (vec![("SWIPEBOT__STATE__DIR", not_a_dir.to_str().unwrap())], "state.dir"),
        (
            vec![("SWIPEBOT__RUNTIME__LIBRARY", "/nonexistent/libonnxruntime.so")],
            "runtime.library",
        ),
        (
            vec![
                ("SWIPEBOT__SOURCE__KIND", "tinder"),
                ("SWIPEBOT__SOURCE__TINDER__BASE_URL", "http://127.0.0.1:9"),
            ],
            "source.tinder.token_env",
        ),
        (
            vec![("SWIPEBOT__SOURCE__TINDER__RATE_LIMIT_WAIT_SECS", "18446744073709551615")],
            "source.tinder.rate_limit_wait_secs",
        ),
        (vec![("SWIPEBOT__SOURCE__MIN_WAIT_SECS", "0")], "source.min_wait_secs"),
        (
            vec![
                ("SWIPEBOT__RUNTIME__DEVICE", "cuda"),
                ("SWIPEBOT__RUNTIME__REQUIRE_GPU", "true"),
            ],
            "runtime.require_gpu",
        ),
    ] {
        let out = check(&env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{env:?}: {err}");
        assert!(err.contains(key), "{env:?} names {key}: {err}");
    }
    // The lock is free again: run starts.
    let out = swipebot(&["run", "--config", config.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn at_most_max_photos_per_profile_are_scored_and_the_rest_journaled_as_not_scored() {
    let dir = tempfile::tempdir().unwrap();
    let (profiles, model) = demo(dir.path());
    // One profile of twelve photos (copies of a demo photo).
    let many = dir.path().join("many");
    let folder = many.join("0000");
    std::fs::create_dir_all(&folder).unwrap();
    let photo = std::fs::read(profiles.join("0000/0.jpg")).unwrap();
    let names: Vec<String> = (0..12).map(|k| format!("{k}.jpg")).collect();
    for n in &names {
        std::fs::write(folder.join(n), &photo).unwrap();
    }
    let profile: swipebot::profile::Profile =
        serde_json::from_value(serde_json::json!({"id": "many", "photos": names})).unwrap();
    swipebot::source::replay::write_profile(&folder, &profile).unwrap();
    let state = dir.path().join("state");
    let out = swipebot(
        &[
            "replay",
            many.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records = Journal::read_all(&state).unwrap();
    assert_eq!(records.len(), 1);
    let scores = &records[0].scores;
    assert_eq!(scores.len(), 12, "every photo is in the record");
    assert!(scores[..9].iter().all(|s| s.score().is_some()), "{scores:?}");
    assert!(
        scores[9..]
            .iter()
            .all(|s| matches!(s, PhotoScore::Failed { error, .. } if error.contains("max_photos_per_profile"))),
        "{scores:?}"
    );
}
