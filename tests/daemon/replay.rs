//! The daemon end to end, as real processes on real files: `swipebot replay` and `swipebot run` with a
//! model made by the real `train`, the journal on disk, signals and `kill -9`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use swipebot::journal::{Journal, DECISIONS, PENDING};
use swipebot::profile::{Decision, PhotoScore, Profile};

use crate::common;
use crate::common::journal::journaled;
use crate::common::process::{signal, wait_with_timeout};

/// A model and a folder of demo profiles in a temporary folder, with the commands that use them.
struct Setup {
    /// Holds everything; removed at the end of the test.
    dir: tempfile::TempDir,
    /// The untrained 64x64 grayscale model.
    model: PathBuf,
    /// The recorded profiles (`swipebot::demo`): one folder each, plus a broken one.
    profiles: PathBuf,
}

impl Setup {
    /// A model and `profiles` demo profiles.
    fn new(profiles: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = common::models::untrained_model(dir.path(), 64, true);
        swipebot::demo::write(
            &dir.path().join("demo"),
            swipebot::demo::DemoSize { per_class: 0, profiles },
        )
        .unwrap();
        Setup {
            profiles: dir.path().join("demo/profiles"),
            model,
            dir,
        }
    }

    /// A state folder of this setup, by name.
    fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `swipebot replay` on the profiles with the model, journaling into `state`.
    fn replay_cmd(&self, state: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(common::paths::bin("swipebot"));
        cmd.args([
            "replay",
            self.profiles.to_str().unwrap(),
            "--model",
            self.model.to_str().unwrap(),
        ]);
        cmd.args(["--state-dir", state.to_str().unwrap()]);
        cmd.args(extra);
        cmd
    }

    /// Runs [`Setup::replay_cmd`] to the end.
    fn replay(&self, state: &Path, extra: &[&str]) -> Output {
        self.replay_cmd(state, extra).output().unwrap()
    }

    /// A config file for `swipebot run`, with extra TOML appended.
    fn config(&self, state: &Path, extra: &str) -> PathBuf {
        let path = self.dir.path().join("swipebot.toml");
        let text = format!(
            "[model]\npath = {:?}\n[source]\nreplay_dir = {:?}\n[state]\ndir = {:?}\n{extra}",
            self.model, self.profiles, state
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `swipebot run --config CONFIG`.
    fn run_cmd(&self, config: &Path) -> Command {
        let mut cmd = Command::new(common::paths::bin("swipebot"));
        cmd.args(["run", "--config", config.to_str().unwrap()]);
        cmd
    }

    /// Starts `swipebot run --config CONFIG` in the background with `stdout` (the summary) and
    /// without its log.
    fn spawn_run(&self, config: &Path, stdout: Stdio) -> Child {
        self.run_cmd(config)
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The recorded profile in folder `folder` (`0003`).
    fn profile(&self, folder: &str) -> Profile {
        let text = std::fs::read_to_string(self.profiles.join(folder).join("profile.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Folders of the recorded profiles that parse (all but the broken one).
    fn profile_folders(&self) -> Vec<String> {
        let mut folders: Vec<String> = std::fs::read_dir(&self.profiles)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "zzzz-broken")
            .collect();
        folders.sort();
        folders
    }
}

/// Config for the signal and crash tests: one profile and one photo at a time, so that a run has
/// many steps to be interrupted in.
const ONE_PROFILE_AT_A_TIME: &str = "[pipeline]\nprofiles_in_flight = 1\n[runtime]\nbatch_size = 1\n";

/// Profiles the journal should end up with: every folder, the broken one included.
fn expected_profiles(s: &Setup) -> usize {
    std::fs::read_dir(&s.profiles).unwrap().count()
}

/// The answer the demo intends for profile `id` (`like`, `pass`, `skip`), from its `expected` field.
fn expected_of(s: &Setup, id: &str) -> Option<String> {
    let n: usize = id.strip_prefix("demo")?.parse().ok()?;
    let profile = s.profile(&format!("{n:04}"));
    profile.extra.get("expected")?.as_str().map(str::to_string)
}

/// A mixed profile and a threshold that only the any-photo rule turns into a like: strictly between
/// the mean of the profile's photo scores and its best one, so "all photos at or above" and "mean at
/// or above" both pass it. The scores come from `swipebot score --json` on the profile's photo files;
/// the profile is the one whose best photo stands furthest above its mean. Returns the profile id,
/// the threshold and the profile's scores.
fn any_photo_threshold(s: &Setup) -> (String, f32, Vec<f32>) {
    let mut owner = HashMap::new();
    for folder in s.profile_folders() {
        let profile = s.profile(&folder);
        for photo in &profile.photos {
            let path = s.profiles.join(&folder).join(photo);
            if path.is_file() {
                owner.insert(path.to_str().unwrap().to_string(), profile.id.clone());
            }
        }
    }
    let out = Command::new(common::paths::bin("swipebot"))
        .args(["score", "--json", "--model", s.model.to_str().unwrap()])
        .args(owner.keys())
        .output()
        .unwrap();
    let mut scores: HashMap<String, Vec<f32>> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(score) = v["score"].as_f64() {
            let id = &owner[v["image"].as_str().unwrap()];
            scores.entry(id.clone()).or_default().push(score as f32);
        }
    }
    let (id, photos) = scores
        .into_iter()
        .filter(|(_, p)| p.len() >= 2)
        .max_by(|a, b| spread(&a.1).total_cmp(&spread(&b.1)))
        .expect("the demo has profiles with several scorable photos");
    let mean = photos.iter().sum::<f32>() / photos.len() as f32;
    let best = photos.iter().copied().fold(f32::MIN, f32::max);
    // Far enough apart that the scores' last bits (another batch size in the daemon) cannot matter.
    assert!(
        best - mean > 1e-3,
        "{id}: photo scores {photos:?} too close together for a threshold between them"
    );
    (id, (mean + best) / 2.0, photos)
}

/// How far the best of `scores` stands above their mean.
fn spread(scores: &[f32]) -> f32 {
    let mean = scores.iter().sum::<f32>() / scores.len() as f32;
    scores.iter().copied().fold(f32::MIN, f32::max) - mean
}

#[test]
fn replay_journals_every_profile_with_the_any_photo_rule() {
    let s = Setup::new(16);
    let sha = swipebot_core::model_info::sha256_hex(&std::fs::read(&s.model).unwrap());
    // At 0 every scored profile is a like and at 1 every one a pass, whatever the rule; the threshold
    // between the scores of a mixed profile is where "any photo" differs from "all photos" and "mean".
    let (mixed, between, mixed_scores) = any_photo_threshold(&s);
    let between = between.to_string();
    eprintln!("{mixed}: photo scores {mixed_scores:?}; the any-photo rule alone likes it at {between}");
    for (threshold, expect) in [
        ("0", Some(Decision::Like)),
        ("1", Some(Decision::Pass)),
        (between.as_str(), None),
    ] {
        let state = s.state(&format!("state-{threshold}"));
        let out = s.replay(&state, &["--threshold", threshold]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("summary: profiles {}", expected_profiles(&s))),
            "{stdout}"
        );
        let records = journaled(&state);
        assert_eq!(records.len(), expected_profiles(&s));
        for (id, r) in &records {
            assert_eq!(r.threshold, threshold.parse::<f32>().unwrap());
            assert_eq!(r.source, "replay");
            // The rule itself, on the journaled scores.
            let scored: Vec<f32> = r.scores.iter().filter_map(|p| p.score()).collect();
            match expected_of(&s, id).as_deref() {
                Some("skip") | None => {
                    assert_eq!(r.decision, Decision::Skip, "{id}: {r:?}");
                    assert!(!r.sent);
                }
                Some(_) => {
                    assert!(!scored.is_empty(), "{id} has scorable photos");
                    let any = scored.iter().any(|&x| x >= r.threshold);
                    assert_eq!(
                        r.decision,
                        if any { Decision::Like } else { Decision::Pass },
                        "{id}: {r:?}"
                    );
                    if let Some(expect) = expect {
                        assert_eq!(r.decision, expect, "{id}");
                    }
                    assert!(
                        r.sent && r.outcome.is_some(),
                        "{id}: the replay source acknowledges swipes"
                    );
                    assert_eq!(r.model_sha256, sha);
                }
            }
        }
        if expect.is_none() {
            // The mixed profile, scored by the daemon as `swipebot score` scored it: one photo at or
            // above the threshold, not all of them, a mean below it; so a like by the any-photo rule
            // only.
            let r = &records[&mixed];
            let mut journaled_scores: Vec<f32> = r.scores.iter().filter_map(|p| p.score()).collect();
            let mut cli_scores = mixed_scores.clone();
            journaled_scores.sort_by(f32::total_cmp);
            cli_scores.sort_by(f32::total_cmp);
            assert_eq!(journaled_scores.len(), cli_scores.len(), "{mixed}: {r:?}");
            for (a, b) in journaled_scores.iter().zip(&cli_scores) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "{mixed}: daemon {journaled_scores:?}, score {cli_scores:?}"
                );
            }
            let t = r.threshold;
            let mean = journaled_scores.iter().sum::<f32>() / journaled_scores.len() as f32;
            assert!(
                journaled_scores.iter().any(|&x| x >= t) && !journaled_scores.iter().all(|&x| x >= t) && mean < t,
                "{mixed}: threshold {t} does not separate the rules for scores {journaled_scores:?}"
            );
            assert_eq!(
                r.decision,
                Decision::Like,
                "{mixed}: one photo of {journaled_scores:?} at or above {t} makes a like"
            );
        }
        // The broken cases of the demo set.
        let broken = &records["zzzz-broken"];
        assert!(broken.error.as_deref().unwrap().contains("profile.json"), "{broken:?}");
        let corrupt = &records["demo0005"];
        assert!(corrupt.scores.iter().any(|p| matches!(p, PhotoScore::Failed { photo, error } if photo == "broken.jpg" && error.contains("corrupt"))), "{corrupt:?}");
        let missing = &records["demo0007"];
        assert!(
            missing
                .scores
                .iter()
                .any(|p| matches!(p, PhotoScore::Failed { photo, .. } if photo == "missing.jpg")),
            "{missing:?}"
        );
    }
}

#[test]
fn oversized_photos_are_ignored_with_an_error_and_the_profile_still_decided() {
    let s = Setup::new(2);
    let dir = s.profiles.join("0000");
    std::fs::write(dir.join("bomb.png"), common::images::png_header_only(50_000, 50_000)).unwrap();
    std::fs::write(dir.join("big.jpg"), vec![0xFFu8; 3 << 20]).unwrap();
    let mut profile = s.profile("0000");
    profile.photos.extend(["bomb.png".to_string(), "big.jpg".to_string()]);
    swipebot::source::replay::write_profile(&dir, &profile).unwrap();
    let state = s.state("state");
    let config = s.config(&state, "[pipeline]\nmax_photo_bytes = 2097152\n");
    let out = s.run_cmd(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = &journaled(&state)["demo0000"];
    let errors: HashMap<&str, &str> = r
        .scores
        .iter()
        .filter_map(|p| match p {
            PhotoScore::Failed { photo, error } => Some((photo.as_str(), error.as_str())),
            _ => None,
        })
        .collect();
    assert!(errors["bomb.png"].contains("50000x50000"), "{errors:?}");
    assert!(errors["big.jpg"].contains("over the limit"), "{errors:?}");
    assert!(
        r.scores.iter().any(|p| p.score().is_some()),
        "the good photo was still scored: {r:?}"
    );
    assert_ne!(r.decision, Decision::Skip);
}

#[test]
fn a_restart_does_not_decide_again() {
    let s = Setup::new(10);
    let state = s.state("state");
    assert!(s.replay(&state, &[]).status.success());
    let before = std::fs::read(state.join(DECISIONS)).unwrap();
    let out = s.replay(&state, &[]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "summary: profiles 0 (like 0, pass 0, skip 0; {} already decided)",
            expected_profiles(&s) - 1
        )),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(state.join(DECISIONS)).unwrap(),
        before,
        "the journal is unchanged"
    );
}

/// Journal lines (intents and records together) a run writes before it is killed, one run each.
/// The first lines of a run are often an intent whose record has not followed yet, so these points
/// land on both sides of the intent-then-record step.
const KILL_AFTER_LINES: [usize; 6] = [1, 2, 3, 5, 8, 13];

/// Lines in `decisions.jsonl` and `pending.jsonl` of `state` together.
fn journal_lines(state: &Path) -> usize {
    common::journal::lines(&state.join(DECISIONS)) + common::journal::lines(&state.join(PENDING))
}

#[test]
fn kill_9_after_n_journal_lines_then_restart_yields_every_profile_exactly_once() {
    let s = Setup::new(60);
    let state = s.state("state");
    let config = s.config(&state, ONE_PROFILE_AT_A_TIME);
    for n in KILL_AFTER_LINES {
        // Recover the journal as the daemon will on start (cut a torn line, keep only unresolved
        // intents), so the lines counted from here on are the ones the next run writes.
        drop(Journal::open(&state).unwrap());
        let base = journal_lines(&state);
        let mut child = s.spawn_run(&config, Stdio::null());
        let start = Instant::now();
        while journal_lines(&state) < base + n {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the run ended ({status}) before it wrote {n} journal lines");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the run wrote no {n} journal lines within 60 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever happened, the journal never holds a profile twice, and the run was cut short.
        let decided = journaled(&state).len();
        assert!(
            decided < expected_profiles(&s),
            "killed after {n} lines, yet all {decided} profiles are decided"
        );
    }
    let out = s.run_cmd(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records = journaled(&state);
    let resent = records.values().filter(|r| r.resolved_after_restart).count();
    let kills = KILL_AFTER_LINES.len();
    eprintln!("{kills} kills after {KILL_AFTER_LINES:?} journal lines; {resent} swipes resent after a restart");
    assert_eq!(
        records.len(),
        expected_profiles(&s),
        "every profile exactly once after {kills} kills"
    );
    assert!(
        records.values().all(|r| r.decision == Decision::Skip || r.sent),
        "every swipe acknowledged"
    );
    let pending = std::fs::read_to_string(state.join(PENDING)).unwrap_or_default();
    drop(Journal::open(&state).unwrap());
    assert!(pending.lines().all(|l| {
        let r: swipebot::journal::Record = serde_json::from_str(l).unwrap();
        records.contains_key(&r.profile_id)
    }));
}

#[test]
fn sigterm_drains_in_flight_work_and_exits_0() {
    let s = Setup::new(120);
    let state = s.state("state");
    let config = s.config(&state, ONE_PROFILE_AT_A_TIME);
    let mut child = s.spawn_run(&config, Stdio::piped());
    let start = Instant::now();
    while common::journal::lines(&state.join(DECISIONS)) < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "no decisions within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(15));
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("(interrupted)"), "{stdout}");
    let partial = journaled(&state).len();
    assert!(
        partial < expected_profiles(&s),
        "SIGTERM came before the end ({partial} decided)"
    );
    // The next start finishes the rest, deciding nothing twice.
    let out = s.run_cmd(&config).output().unwrap();
    assert!(out.status.success());
    assert_eq!(journaled(&state).len(), expected_profiles(&s));
}

#[test]
fn bad_config_keys_and_values_stop_before_anything_runs() {
    let s = Setup::new(2);
    let state = s.state("state");
    let run = |config: &Path, env: &[(&str, &str)]| {
        let mut cmd = s.run_cmd(config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    for (extra, env, needle) in [
        ("[pacing]\nswipes_per_minit = 3\n", vec![], "swipes_per_minit"),
        ("[pacing]\njitter = 1.5\n", vec![], "pacing.jitter"),
        ("[runtime]\ndevice = \"tpu\"\n", vec![], "tpu"),
        (
            "",
            vec![("SWIPEBOT__PACING__SWIPES_PER_MINUTE", "0")],
            "pacing.swipes_per_minute",
        ),
        ("", vec![("SWIPEBOT__SOURCE__TOKEN", "hunter2")], "token"),
    ] {
        let config = s.config(&state, extra);
        let out = run(&config, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{extra:?} {env:?}: {err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(
            !err.contains("hunter2"),
            "a value given as a secret is never echoed: {err}"
        );
        assert!(!state.exists(), "nothing ran, not even the journal");
    }
    // A model that is not there is also a configuration error.
    let config = s.dir.path().join("nomodel.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = \"/nonexistent.onnx\"\n[source]\nreplay_dir = {:?}\n[state]\ndir = {:?}\n",
            s.profiles, state
        ),
    )
    .unwrap();
    let out = run(&config, &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.onnx"));

    // check-config applies environment overrides and prints the effective settings.
    let config = s.config(&state, "");
    let out = Command::new(common::paths::bin("swipebot"))
        .args(["check-config", "--config", config.to_str().unwrap()])
        .env("SWIPEBOT__PACING__SWIPES_PER_MINUTE", "7")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("swipes_per_minute = 7"), "{printed}");
}

/// Environment overrides that complete the documented config file with what `check-config` loads:
/// a real model, replay folder and state folder (its own point to `../models` and `../profiles`).
fn documented_config_env(s: &Setup) -> Vec<(&'static str, String)> {
    vec![
        ("SWIPEBOT__MODEL__PATH", s.model.display().to_string()),
        ("SWIPEBOT__SOURCE__REPLAY_DIR", s.profiles.display().to_string()),
        ("SWIPEBOT__STATE__DIR", s.state("state").display().to_string()),
    ]
}

#[test]
fn the_token_never_reaches_check_config_or_help() {
    let s = Setup::new(1);
    let token = "tok-never-print-me-42";
    let config = common::paths::repo_root().join("config/swipebot.toml");
    for args in [
        vec!["check-config", "--config", config.to_str().unwrap()],
        vec!["--help"],
        vec!["run", "--help"],
        vec!["replay", "--help"],
    ] {
        let out = Command::new(common::paths::bin("swipebot"))
            .args(&args)
            .envs(documented_config_env(&s))
            .env("SWIPEBOT__SOURCE__KIND", "tinder")
            .env("SWIPEBOT_API_TOKEN", token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(token), "{args:?} printed the token");
    }
}

#[test]
fn the_documented_config_file_is_valid() {
    let s = Setup::new(1);
    let out = Command::new(common::paths::bin("swipebot"))
        .args([
            "check-config",
            "--config",
            common::paths::repo_root()
                .join("config/swipebot.toml")
                .to_str()
                .unwrap(),
        ])
        .envs(documented_config_env(&s))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `swipebot replay DIR --config FILE` takes its source from the command line: a config file that names
/// no replay folder (one written for another source, or tuning only) is completed, then validated.
#[test]
fn replay_with_a_config_file_that_names_no_replay_folder() {
    let s = Setup::new(4);
    let state = s.state("state");
    let config = s.dir.path().join("tuning.toml");
    std::fs::write(&config, "[runtime]\nintra_threads = 1\nbatch_size = 4\n").unwrap();
    let out = s.replay(&state, &["--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(journaled(&state).len(), expected_profiles(&s));
    // Still validated: a bad value in that file stops it with exit code 78.
    std::fs::write(&config, "[runtime]\nintra_threads = 0\n").unwrap();
    let out = s.replay(&s.state("other"), &["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runtime.intra_threads"));
}

#[test]
fn json_logs_have_one_decision_line_per_profile() {
    let s = Setup::new(6);
    let state = s.state("state");
    let out = s.replay(&state, &["--log-format", "json"]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decided: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "decided").collect();
    assert_eq!(decided.len(), expected_profiles(&s) - 1, "one line per parsed profile");
    for d in decided {
        assert!(
            d["profile"].is_string() && d["decision"].is_string() && d["latency_ms"].is_number(),
            "{d}"
        );
    }
    assert!(lines
        .iter()
        .any(|l| l["message"] == "summary" && l["profiles"].is_number()));
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let systemd = common::paths::repo_root().join("systemd");
    let cuda = std::fs::read_to_string(systemd.join("cuda.conf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["swipebot.service", "swipebot@.service"] {
        let unit = std::fs::read_to_string(systemd.join(name)).unwrap();
        for key in [
            "Type=notify",
            "WatchdogSec=",
            "Restart=on-failure",
            "StateDirectory=",
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "LoadCredential=",
            // Exit 75 (a full disk, a locked state directory) is restarted; 77 and 78 need a person.
            "RestartPreventExitStatus=77 78",
            "MemoryMax=",
            "TasksMax=",
        ] {
            assert!(unit.contains(key), "{name} lacks {key}");
        }
        // The config's log.level rules: the unit sets no level of its own.
        assert!(!unit.contains("SWIPEBOT_LOG"), "{name} overrides log.level");
        // Stopping waits longer than the largest shutdown_grace_secs the config accepts (300).
        let stop: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} sets TimeoutStopSec in seconds"));
        assert!(stop > 300, "{name}: TimeoutStopSec={stop}");
        if name.contains('@') {
            for key in [
                "StateDirectory=swipebot/%i",
                "/etc/swipebot/%i.toml",
                "LoadCredential=swipebot-token:/etc/swipebot/%i.token",
            ] {
                assert!(unit.contains(key), "{name} lacks {key}");
            }
        }
        // verify checks that ExecStart exists: point it at the binary under test.
        let unit = unit.replace(
            "/opt/swipebot/bin/swipebot",
            common::paths::bin("swipebot").to_str().unwrap(),
        );
        let path = dir.path().join(name);
        std::fs::write(&path, &unit).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze is installed (apt-get install systemd)");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{name}: {said}");
        assert!(out.stderr.is_empty(), "{name}: warnings: {said}");
        // The sandbox: exposure at most 1.5, with and without what a CUDA host relaxes.
        let with_cuda = dir.path().join(format!("cuda-{name}"));
        std::fs::write(&with_cuda, format!("{unit}\n{cuda}")).unwrap();
        for (what, file) in [("as shipped", &path), ("with cuda.conf", &with_cuda)] {
            let out = Command::new("systemd-analyze")
                .args(["security", "--offline=true", "--threshold=15"])
                .arg(file)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            let exposure: f64 = said
                .lines()
                .find_map(|l| l.split("Overall exposure level for ").nth(1))
                .and_then(|rest| rest.split(": ").nth(1))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "{name} {what}: no exposure in {said}{}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            assert!(exposure <= 1.5, "{name} {what}: exposure {exposure}");
            assert!(out.status.success(), "{name} {what}: {said}");
        }
    }
}
