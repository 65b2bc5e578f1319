//! `swipebot console` in a real browser (headless chromium through chromedriver): the decisions page
//! set against the journal the daemon wrote on a replay, label mode driven by the keyboard, the
//! labels file it writes, `swipebot dataset` and `train` on the export, and a hostile profile that
//! stays text. Screenshots of the decisions page and label mode are saved under
//! `target/tmp/console/`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use swipebot::journal::Journal;
use swipebot::labels::{read_latest, Label, LabelLine};
use swipebot::profile::{Decision, Profile};

use crate::common::models::untrained_model;
use crate::common::paths::bin;
use crate::webdriver::{keys, Driver};

/// The hostile text of the last profile's name and bio.
const HOSTILE_BIO: &str = "<script>alert(1)</script>";
/// A name that would run a script if it were markup.
const HOSTILE_NAME: &str = "<img src=x onerror=\"document.title='pwned'\">";
/// A token as the daemon's API token would be set: the console must never show it.
const API_TOKEN: &str = "api-token-that-must-never-reach-the-page";

/// A running `swipebot console`, stopped when dropped.
struct Console {
    /// The process.
    child: Child,
    /// `http://127.0.0.1:PORT`.
    base: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the console on a free port and reads its address from its first lines.
fn console(state: &Path, profiles: &Path) -> Console {
    let child = Command::new(bin("swipebot"))
        .args(["console", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .arg("--record-dir")
        .arg(profiles)
        .env("SWIPEBOT_API_TOKEN", API_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    started(child)
}

/// Waits for a console started with a piped stdout to print its address.
fn started(mut child: Child) -> Console {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the console prints its address").unwrap();
        if let Some(url) = line.strip_prefix("swipebot console on ") {
            break url.trim_end_matches('/').to_string();
        }
    };
    Console { child, base }
}

/// Writes the demo profiles plus a hostile one (its photo a copy of a demo photo).
fn profiles(dir: &Path) -> PathBuf {
    let out = Command::new(bin("swipebot"))
        .args(["demo-data", "--per-class", "1", "--profiles", "10", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let profiles = dir.join("profiles");
    let hostile = profiles.join("hostile");
    std::fs::create_dir_all(&hostile).unwrap();
    std::fs::copy(profiles.join("0000/0.jpg"), hostile.join("1.jpg")).unwrap();
    // A photo named out of its folder, and a link out of it: neither is ever read.
    std::os::unix::fs::symlink(profiles.join("0001/0.jpg"), hostile.join("link.jpg")).unwrap();
    let profile = Profile {
        id: "hostile".into(),
        name: HOSTILE_NAME.into(),
        bio: HOSTILE_BIO.into(),
        photos: vec!["1.jpg".into(), "../0000/0.jpg".into(), "link.jpg".into()],
        placeholder: false,
        extra: Default::default(),
    };
    swipebot::source::replay::write_profile(&hostile, &profile).unwrap();
    profiles
}

/// What the decisions page shows, read in the browser in one script.
const CARDS: &str = r#"return Array.from(document.querySelectorAll('article.card')).map(a => ({
  id: a.dataset.profileId,
  decision: a.dataset.decision,
  name: a.querySelector('.name').textContent,
  bio: (a.querySelector('.bio') || {}).textContent || null,
  skip: (a.querySelector('.skip-reason') || {}).textContent || null,
  photos: Array.from(a.querySelectorAll('figure.photo')).map(f => ({
    photo: f.dataset.photo,
    score: f.dataset.score,
    text: (f.querySelector('.score') || {}).textContent || null,
    deciding: f.classList.contains('deciding'),
    loaded: !!f.querySelector('img') && f.querySelector('img').complete && f.querySelector('img').naturalWidth > 0,
  })),
}));"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_journal_labels_by_keyboard_and_exports_a_dataset_train_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let profiles = profiles(d);
    let model = untrained_model(&d.join("models"), 64, true);
    let state = d.join("state");
    let out = Command::new(bin("swipebot"))
        .arg("replay")
        .arg(&profiles)
        .arg("--model")
        .arg(&model)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let journal = Journal::read_all(&state).unwrap();
    assert!(journal.len() >= 10, "{journal:?}");

    let console = console(&state, &profiles);
    let driver = Driver::start().await;
    let browser = driver.session().await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    // This run's screenshots only.
    let _ = std::fs::remove_dir_all(&shots);

    // The decisions page: every record, newest first, each photo's score as journaled.
    browser.goto(&format!("{}/", console.base)).await;
    // The photos load lazily, as they scroll into view: all of them now.
    browser
        .eval("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; }); return null")
        .await;
    browser
        .wait_for(
            "return Array.from(document.images).every(i => i.complete)",
            "the photos to load",
        )
        .await;
    let cards: Vec<Value> = serde_json::from_value(browser.eval(CARDS).await).unwrap();
    let newest_first: Vec<&str> = journal.iter().rev().map(|r| r.profile_id.as_str()).collect();
    let shown: Vec<&str> = cards.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(shown, newest_first);
    let mut photos_seen = 0;
    for (card, record) in cards.iter().zip(journal.iter().rev()) {
        assert_eq!(card["decision"], record.decision.as_str(), "{card}");
        // A skip says why: a broken profile with its error, or no photo.
        match (&record.error, record.decision) {
            (Some(error), _) => assert!(card["skip"].as_str().unwrap().contains(error.as_str()), "{card}"),
            (None, Decision::Skip) => assert!(card["skip"].as_str().is_some_and(|s| !s.is_empty()), "{card}"),
            (None, _) => assert_eq!(card["skip"], Value::Null, "{card}"),
        }
        let photos = card["photos"].as_array().unwrap();
        assert_eq!(photos.len(), record.scores.len(), "{card}");
        let best = record
            .scores
            .iter()
            .filter_map(|s| s.score())
            .fold(f32::NEG_INFINITY, f32::max);
        for (shown, score) in photos.iter().zip(&record.scores) {
            match score.score() {
                Some(value) => {
                    let on_page: f32 = shown["score"].as_str().unwrap().parse().unwrap();
                    assert_eq!(on_page, value, "{card}");
                    assert_eq!(shown["text"], format!("{value:.3}"), "{card}");
                    assert_eq!(
                        shown["deciding"],
                        record.decision != Decision::Skip && value == best,
                        "{card}"
                    );
                    assert_eq!(shown["loaded"], true, "the recorded photo loads: {card}");
                    photos_seen += 1;
                }
                None => assert_eq!(shown["score"], "", "{card}"),
            }
        }
    }
    assert!(photos_seen >= 10, "{cards:?}");
    let totals: Vec<String> = serde_json::from_value(
        browser
            .eval("return Array.from(document.querySelectorAll('tr.total td')).map(t => t.textContent)")
            .await,
    )
    .unwrap();
    let count = |d: Decision| journal.iter().filter(|r| r.decision == d).count().to_string();
    assert_eq!(
        totals[1..5],
        [
            journal.len().to_string(),
            count(Decision::Like),
            count(Decision::Pass),
            count(Decision::Skip)
        ]
    );

    // The hostile profile: shown as text, nothing of it runs.
    let hostile = cards
        .iter()
        .find(|c| c["id"] == "hostile")
        .expect("the hostile profile is shown");
    assert_eq!(hostile["bio"], HOSTILE_BIO);
    assert_eq!(hostile["name"], HOSTILE_NAME);
    assert_eq!(browser.alert().await, None);
    let page = browser
        .eval("return [document.title, document.scripts.length, document.querySelectorAll('img[src=\"x\"]').length, document.documentElement.outerHTML]")
        .await;
    assert_eq!(page[0], "Decisions · swipebot console");
    assert_eq!(
        (page[1].as_u64(), page[2].as_u64()),
        (Some(1), Some(0)),
        "only the console's own script"
    );
    assert!(!page[3].as_str().unwrap().contains(API_TOKEN));
    browser.screenshot(&shots.join("decisions.png")).await;

    // A profile's own page: the same card, large.
    browser.goto(&format!("{}/profile?id=hostile", console.base)).await;
    let large = browser
        .eval("const c = document.querySelectorAll('article.card.large'); return [c.length, c[0].querySelector('.bio').textContent, document.scripts.length]")
        .await;
    assert_eq!(large, serde_json::json!([1, HOSTILE_BIO, 1]));

    // The filter and the search.
    browser.goto(&format!("{}/?decision=like", console.base)).await;
    let liked: Vec<Value> = serde_json::from_value(browser.eval(CARDS).await).unwrap();
    assert_eq!(liked.len().to_string(), count(Decision::Like));
    browser.goto(&format!("{}/?q=DEMO%203", console.base)).await;
    let found: Vec<Value> = serde_json::from_value(browser.eval(CARDS).await).unwrap();
    assert_eq!(found.iter().map(|c| c["name"].clone()).collect::<Vec<_>>(), ["Demo 3"]);

    // Label mode: the profile nearest the threshold comes first.
    let nearest = journal
        .iter()
        .filter(|r| r.scores.iter().any(|s| s.score().is_some()))
        .min_by(|a, b| {
            let distance = |r: &swipebot::journal::Record| {
                r.scores
                    .iter()
                    .filter_map(|s| s.score())
                    .fold(f32::NEG_INFINITY, f32::max)
                    - r.threshold
            };
            distance(a)
                .abs()
                .total_cmp(&distance(b).abs())
                .then_with(|| a.profile_id.cmp(&b.profile_id))
        })
        .unwrap();
    browser.goto(&format!("{}/label", console.base)).await;
    let current = "return document.querySelector('main.label').dataset.profileId";
    let photos_here =
        "return Array.from(document.querySelectorAll('main.label figure.labellable')).map(f => f.dataset.photo)";
    let mut expected: HashMap<(String, String), Label> = HashMap::new();
    let mut labelled = Vec::new();
    for step in 0..4 {
        let id = browser.eval(current).await.as_str().unwrap().to_string();
        if step == 0 {
            assert_eq!(id, nearest.profile_id, "near-threshold profiles first");
        }
        let photos: Vec<String> = serde_json::from_value(browser.eval(photos_here).await).unwrap();
        assert!(!photos.is_empty(), "{id}");
        match step {
            0 => {
                // Like the first photo, take it back, nope it; like the rest one by one. With one
                // photo, the like is saved and the next profile shown at once: the undo goes back
                // to this profile, whose label the nope then replaces.
                let here = |same: bool| {
                    format!(
                        "return document.querySelector('main.label') !== null && (document.querySelector('main.label').dataset.profileId === {}) === {same}",
                        serde_json::to_string(&id).unwrap()
                    )
                };
                browser.press(keys::RIGHT).await;
                if photos.len() == 1 {
                    browser.wait_for(&here(false), "the next profile").await;
                    browser.press(keys::BACKSPACE).await;
                    browser.wait_for(&here(true), "the undo, back to the profile").await;
                } else {
                    browser
                        .wait_for(
                            "return document.querySelector('figure.labellable').dataset.label === 'like'",
                            "a like",
                        )
                        .await;
                    browser.press(keys::BACKSPACE).await;
                    browser
                        .wait_for(
                            "return document.querySelector('figure.labellable').dataset.label === ''",
                            "the undo",
                        )
                        .await;
                }
                browser.press(keys::LEFT).await;
                expected.insert((id.clone(), photos[0].clone()), Label::Nope);
                for photo in &photos[1..] {
                    browser.press(keys::RIGHT).await;
                    expected.insert((id.clone(), photo.clone()), Label::Like);
                }
            }
            1 => {
                // Photo by photo: like the first, nope the rest.
                browser.press(keys::RIGHT).await;
                expected.insert((id.clone(), photos[0].clone()), Label::Like);
                for photo in &photos[1..] {
                    browser.press(keys::LEFT).await;
                    expected.insert((id.clone(), photo.clone()), Label::Nope);
                }
            }
            _ => {
                // A whole profile at once: nope, then like.
                let (key, label) = if step == 2 {
                    (keys::DOWN, Label::Nope)
                } else {
                    (keys::UP, Label::Like)
                };
                browser.press(key).await;
                for photo in &photos {
                    expected.insert((id.clone(), photo.clone()), label);
                }
            }
        }
        browser
            .wait_for(
                &format!("return document.querySelector('main.label') !== null && document.querySelector('main.label').dataset.profileId !== {}", serde_json::to_string(&id).unwrap()),
                "the next profile",
            )
            .await;
        labelled.push(id);
    }
    // Enter on a profile without labels moves on and writes nothing.
    let before_enter = std::fs::read(state.join("labels.jsonl")).unwrap();
    let id = browser
        .eval(current)
        .await
        .as_str()
        .expect("profiles left to label")
        .to_string();
    browser.press(keys::ENTER).await;
    browser
        .wait_for(
            &format!(
                "const m = document.querySelector('main.label'); return m !== null && m.dataset.profileId !== {}",
                serde_json::to_string(&id).unwrap()
            ),
            "the profile after an Enter",
        )
        .await;
    assert_eq!(std::fs::read(state.join("labels.jsonl")).unwrap(), before_enter);

    // Label mode at work, for the README: a profile of three photos, the first liked (not saved
    // until the last is labelled, and never here).
    browser.goto(&format!("{}/label?id=demo0002", console.base)).await;
    browser.press(keys::RIGHT).await;
    browser
        .wait_for(
            "const f = document.querySelectorAll('figure.labellable'); return f.length === 3 && f[1].classList.contains('current') && f[0].dataset.label === 'like'",
            "the second photo of demo0002",
        )
        .await;
    browser.screenshot(&shots.join("label.png")).await;
    let unique: std::collections::HashSet<&String> = labelled.iter().collect();
    assert_eq!(unique.len(), labelled.len(), "each profile comes once: {labelled:?}");

    // labels.jsonl: exactly what was pressed, in the shared format, each line timed.
    let labels_file = state.join("labels.jsonl");
    assert_eq!(read_latest(&labels_file).unwrap(), expected);
    for line in std::fs::read_to_string(&labels_file).unwrap().lines() {
        let parsed: LabelLine = serde_json::from_str(line).unwrap();
        assert!(parsed.at.is_some(), "{line}");
    }

    // Cross-site and out-of-folder requests are refused, and change nothing.
    let http = reqwest::Client::new();
    let before = std::fs::read(&labels_file).unwrap();
    let body = serde_json::json!({"profile_id": labelled[0], "labels": [{"photo": "0.jpg", "label": "like"}]});
    for origin in [None, Some("http://evil.example")] {
        let mut request = http.post(format!("{}/api/labels", console.base)).json(&body);
        if let Some(o) = origin {
            request = request.header("Origin", o);
        }
        assert_eq!(request.send().await.unwrap().status(), 403, "{origin:?}");
    }
    assert_eq!(std::fs::read(&labels_file).unwrap(), before);
    let served = http
        .get(format!("{}/photo?id=hostile&photo=1.jpg", console.base))
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    for photo in ["../0000/0.jpg", "link.jpg", "profile.json", "/etc/passwd"] {
        let url = format!("{}/photo?id=hostile&photo={}", console.base, photo.replace('/', "%2F"));
        assert_eq!(http.get(url).send().await.unwrap().status(), 404, "{photo}");
    }
    let rebound = http
        .get(format!("{}/", console.base))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 421);
    let csp = http.get(format!("{}/", console.base)).send().await.unwrap();
    let csp = csp.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    // A decision journaled while the console runs (as the daemon would) is on the next page.
    let late = swipebot::journal::Record {
        scores: vec![swipebot::profile::PhotoScore::Scored {
            photo: "0.jpg".into(),
            score: 0.25,
        }],
        threshold: 0.4,
        ..swipebot::journal::Record::new("late-arrival", Decision::Pass, "replay")
    };
    Journal::open(&state).unwrap().record(&late).unwrap();
    browser.goto(&format!("{}/", console.base)).await;
    let first: Vec<Value> = serde_json::from_value(browser.eval(CARDS).await).unwrap();
    assert_eq!(first.len(), journal.len() + 1);
    assert_eq!(first[0]["id"], "late-arrival");
    assert_eq!(first[0]["photos"][0]["text"], "0.250");
    drop(browser);
    drop(console);

    // The export: one file a label, a second run changes nothing, and train reads it.
    let dataset = d.join("dataset-out");
    let export = || {
        let out = Command::new(bin("swipebot"))
            .args(["dataset", "--state-dir"])
            .arg(&state)
            .arg("--record-dir")
            .arg(&profiles)
            .arg("--out")
            .arg(&dataset)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let first = export();
    let in_class = |class: &str| std::fs::read_dir(dataset.join(class)).unwrap().count();
    let likes = expected.values().filter(|l| **l == Label::Like).count();
    assert_eq!(
        (in_class("like"), in_class("nope")),
        (likes, expected.len() - likes),
        "{first}"
    );
    assert!(first.contains(&format!("{} linked", expected.len())), "{first}");
    let second = export();
    assert!(
        second.contains(&format!("0 linked, 0 copied, {} unchanged", expected.len())),
        "{second}"
    );
    let trained = d.join("mine.onnx");
    let out = Command::new(bin("train"))
        .arg("--data")
        .arg(&dataset)
        .arg("--out")
        .arg(&trained)
        .args([
            "--epochs",
            "1",
            "--input-size",
            "64",
            "--grayscale",
            "--batch-size",
            "4",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "train: {}", String::from_utf8_lossy(&out.stderr));
    assert!(trained.is_file());
    println!("screenshots in {}", shots.display());
}

#[tokio::test]
async fn off_loopback_the_console_needs_a_password_and_then_asks_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let refused = Command::new(bin("swipebot"))
        .args(["console", "--listen", "0.0.0.0:0", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("console.password_file"), "{stderr}");

    // With a password (from the config, next to its journal and replay folder), every request
    // needs it.
    std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
    std::fs::write(dir.path().join("password"), "a long enough secret\n").unwrap();
    let config = dir.path().join("swipebot.toml");
    std::fs::write(
        &config,
        "[source]\nreplay_dir = \"profiles\"\n[state]\ndir = \"state\"\n[console]\nlisten = \"127.0.0.1:0\"\npassword_file = \"password\"\npage_size = 10\n",
    )
    .unwrap();
    let console = started(
        Command::new(bin("swipebot"))
            .args(["console", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let url = format!("{}/", console.base);
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let wrong = http
        .get(&url)
        .basic_auth("me", Some("not the secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = http
        .get(&url)
        .basic_auth("me", Some("a long enough secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("0</span> profile(s)"));
}
