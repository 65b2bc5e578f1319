//! `swipebot compare` and `swipebot stats` through the real binary, set against what the daemon
//! itself journals when it replays the same profiles with the same models.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use swipebot::journal::Journal;
use swipebot::profile::Decision;

use crate::common::models::untrained_model;
use crate::common::paths::bin;

/// Runs `swipebot` with `args` and returns its output.
fn swipebot(args: &[&str]) -> Output {
    Command::new(bin("swipebot")).args(args).output().unwrap()
}

/// Runs a command that must succeed and returns its stdout.
fn ok(args: &[&str]) -> String {
    let out = swipebot(args);
    assert!(
        out.status.success(),
        "swipebot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `swipebot compare --json` with `args`, parsed.
fn compare(args: &[&str]) -> Value {
    let mut all = vec!["compare", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(&all)).unwrap()
}

/// Borrows each of `args`.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Replays `profiles` with `model` at `threshold` into `state` and returns the journal by id.
fn replay(profiles: &Path, model: &Path, threshold: f64, state: &Path) -> (Output, HashMap<String, Decision>) {
    let out = swipebot(&[
        "replay",
        profiles.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--threshold",
        &threshold.to_string(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let journal = Journal::read_all(state)
        .unwrap()
        .into_iter()
        .map(|r| (r.profile_id, r.decision))
        .collect();
    (out, journal)
}

/// A run's decisions by profile id.
fn decisions(c: &Value, run: usize) -> HashMap<String, Decision> {
    let ids = c["profile_ids"].as_array().unwrap();
    let decisions = c["runs"][run]["decisions"].as_array().unwrap();
    ids.iter()
        .zip(decisions)
        .map(|(id, d)| {
            (
                id.as_str().unwrap().to_string(),
                serde_json::from_value(d.clone()).unwrap(),
            )
        })
        .collect()
}

/// The demo's recorded profiles (`count` of them) in a temporary folder, and two untrained models
/// that score them differently (grayscale and RGB, input 64).
fn demo(count: usize) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    ok(&[
        "demo-data",
        "--out",
        d.to_str().unwrap(),
        "--per-class",
        "2",
        "--profiles",
        &count.to_string(),
    ]);
    let a = untrained_model(&d.join("models"), 64, true);
    let b = untrained_model(&d.join("models"), 64, false);
    (dir, d.join("profiles"), a, b)
}

#[test]
fn compare_decides_as_the_daemon_does_caches_scores_and_measures_labels() {
    let (dir, profiles, a, b) = demo(24);
    let d = dir.path();
    // A profile whose photo was never recorded: compare must not fetch it.
    let remote = profiles.join("remote");
    std::fs::create_dir(&remote).unwrap();
    std::fs::write(
        remote.join("profile.json"),
        r#"{"id":"remote","name":"R","photos":["http://127.0.0.1:9/never.jpg"]}"#,
    )
    .unwrap();
    let cache = d.join("cache");
    let (a_s, b_s, cache_s, profiles_s) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        cache.to_str().unwrap(),
        profiles.to_str().unwrap(),
    );

    // First run at each model's own threshold: every photo scored once a model, then cached.
    // Both models over the profiles with the test's cache, and `extra` arguments.
    let both = |extra: &[&str]| -> Vec<String> {
        let mut args = vec![profiles_s, "--model", a_s, "--model", b_s, "--cache-dir", cache_s];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect()
    };
    let first = compare(&strs(&both(&[])));
    let photos = first["photos"].as_u64().unwrap();
    assert!(photos > 20, "{first}");
    for m in first["models"].as_array().unwrap() {
        assert_eq!(m["cached"], 0, "{m}");
        // Each content once (the demo reuses some photos); the remote photo and the demo's
        // deliberately broken photos have no score.
        assert!(m["scored"].as_u64().unwrap() > photos / 2, "{m}");
        assert!(m["failed"].as_u64().unwrap() >= 1, "{m}");
        let sha = m["sha256"].as_str().unwrap();
        assert!(cache.join(format!("{sha}.jsonl")).is_file(), "a cache file per model");
    }
    let remote_index = first["profile_ids"]
        .as_array()
        .unwrap()
        .iter()
        .position(|id| id == "remote")
        .unwrap();
    assert_eq!(
        first["runs"][0]["decisions"][remote_index], "skip",
        "an unrecorded photo is not fetched"
    );

    // A threshold in the middle of A's best scores makes both decisions happen.
    let mut best: Vec<f64> = first["models"][0]["best_scores"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    best.sort_by(f64::total_cmp);
    let t = (best[best.len() / 2] + best[best.len() / 2 - 1]) / 2.0;
    let t_s = t.to_string();
    let second = compare(&strs(&both(&["--threshold", &t_s])));
    for (m, was) in second["models"]
        .as_array()
        .unwrap()
        .iter()
        .zip(first["models"].as_array().unwrap())
    {
        assert_eq!(m["scored"], 0, "the second run scores nothing: {m}");
        // Every recorded photo came from the cache (not the remote one, nor the demo's missing file).
        let cached = m["cached"].as_u64().unwrap();
        assert!(cached >= was["scored"].as_u64().unwrap() && cached < photos, "{m}");
        assert_eq!(
            m["best_scores"], was["best_scores"],
            "the cache gives back the same scores"
        );
    }

    // The daemon, replaying the same profiles with each model at t, decides exactly the same. The
    // demo's unreadable profile.json, which the daemon journals as a skip under its folder's name,
    // is listed by compare as unreadable and left out of its figures.
    let unreadable = second["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    let broken = Path::new(unreadable[0][0].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let without_broken = |(_, mut journal): (Output, HashMap<String, Decision>)| {
        assert_eq!(journal.remove(&broken), Some(Decision::Skip));
        journal
    };
    let journal_a = without_broken(replay(&profiles, &a, t, &d.join("state-a")));
    let journal_b = without_broken(replay(&profiles, &b, t, &d.join("state-b")));
    assert_eq!(decisions(&second, 0), journal_a);
    assert_eq!(decisions(&second, 1), journal_b);
    let flipped: BTreeSet<String> = journal_a
        .iter()
        .filter(|(id, decision)| journal_b[*id] != **decision)
        .map(|(id, _)| id.clone())
        .collect();
    let reported: BTreeSet<String> = second["runs"][1]["flips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["profile_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reported, flipped);
    assert!(
        !flipped.is_empty(),
        "two different models flip some profile at a median threshold"
    );
    let likes = journal_a.values().filter(|&&d| d == Decision::Like).count();
    assert_eq!(second["runs"][0]["likes"], likes);

    // Labels that say exactly what A decides: A agrees fully, B disagrees on the flipped profiles.
    let labels = d.join("labels.jsonl");
    let mut text = String::new();
    for record in Journal::read_all(&d.join("state-a")).unwrap() {
        for score in &record.scores {
            if let swipebot::profile::PhotoScore::Scored { photo, score } = score {
                let label = if f64::from(*score) >= t { "like" } else { "nope" };
                text.push_str(&format!(
                    "{{\"profile_id\":{:?},\"photo\":{:?},\"label\":\"{label}\",\"at\":\"2026-11-29T00:00:00Z\"}}\n",
                    record.profile_id, photo
                ));
            }
        }
    }
    std::fs::write(&labels, text).unwrap();
    let labelled = compare(&strs(&both(&[
        "--threshold",
        &t_s,
        "--labels",
        labels.to_str().unwrap(),
    ])));
    let agree_a = &labelled["runs"][0]["agreement"];
    assert_eq!(agree_a["profiles"]["accuracy"], 1.0, "{agree_a}");
    assert_eq!(agree_a["photos"]["accuracy"], 1.0, "{agree_a}");
    assert_eq!(agree_a["profiles"]["roc_auc"], 1.0, "{agree_a}");
    let agree_b = &labelled["runs"][1]["agreement"]["profiles"];
    let n = agree_b["count"].as_f64().unwrap();
    // Flipped skips (none here: both models score the same photos) aside, each flip is one error.
    let expected = 1.0 - flipped.len() as f64 / n;
    assert!(
        (agree_b["accuracy"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{agree_b}"
    );

    // The HTML page shows the flipped profiles, with a stranger's name as inert text.
    let victim = flipped.iter().next().unwrap();
    let folder = std::fs::read_dir(&profiles)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p.join("profile.json"))
                .is_ok_and(|t| serde_json::from_str::<Value>(&t).is_ok_and(|v| v["id"] == victim.as_str()))
        })
        .unwrap();
    let mut profile: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("profile.json")).unwrap()).unwrap();
    profile["name"] = "<script>alert(1)</script>".into();
    std::fs::write(folder.join("profile.json"), profile.to_string()).unwrap();
    let html = d.join("compare.html");
    let mut args = vec!["compare".to_string()];
    args.extend(both(&["--threshold", &t_s, "--html", html.to_str().unwrap()]));
    let text = ok(&strs(&args));
    assert!(text.contains(&format!("{} flip(s)", flipped.len())), "{text}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "escaped");
    assert!(!page.contains("<script"), "no script of any kind");
    assert!(
        page.contains(&format!("data-profile=\"{victim}\"")),
        "the flipped profile is shown"
    );

    // compare never wrote to a journal or into the profiles.
    assert_eq!(
        Journal::read_all(&d.join("state-a")).unwrap().len(),
        journal_a.len() + 1
    );
}

#[test]
fn stats_sum_the_journal_and_a_replay_over_another_models_decisions_points_to_compare() {
    let (dir, profiles, a, b) = demo(12);
    let d = dir.path();
    let state = d.join("state");
    let (first, journal) = replay(&profiles, &a, 0.5, &state);
    assert!(!String::from_utf8_lossy(&first.stderr).contains("note:"));

    let stats: Value = serde_json::from_str(&ok(&["stats", "--state-dir", state.to_str().unwrap(), "--json"])).unwrap();
    let count = |d: Decision| journal.values().filter(|&&x| x == d).count();
    assert_eq!(stats["total"]["profiles"], journal.len());
    assert_eq!(stats["total"]["likes"], count(Decision::Like));
    assert_eq!(stats["total"]["passes"], count(Decision::Pass));
    let skips: u64 = stats["total"]["skips"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(skips as usize, count(Decision::Skip));
    let models = stats["models"].as_object().unwrap();
    assert_eq!(models.len(), 1);
    // Profiles skipped before any scoring (a broken profile.json) carry no model.
    let with_model = Journal::read_all(&state)
        .unwrap()
        .iter()
        .filter(|r| !r.model_sha256.is_empty())
        .count();
    assert_eq!(models.values().next().unwrap()["profiles"], with_model);
    assert_eq!(stats["days"].as_object().unwrap().len(), 1);
    let text = ok(&["stats", "--state-dir", state.to_str().unwrap()]);
    assert!(text.lines().any(|l| l.starts_with("all ")), "{text}");

    // The same state directory with another model: nothing new is decided, and it says why.
    let (again, after) = replay(&profiles, &b, 0.5, &state);
    assert_eq!(after, journal, "no profile decided twice");
    let stderr = String::from_utf8_lossy(&again.stderr);
    let a_sha = models.keys().next().unwrap();
    assert!(
        stderr.contains("note:") && stderr.contains("swipebot compare") && stderr.contains(&a_sha[..12]),
        "{stderr}"
    );
    let missing = swipebot(&["stats", "--state-dir", d.join("nowhere").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
}
