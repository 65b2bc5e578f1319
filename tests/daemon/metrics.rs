//! The `[metrics]` endpoint of a running daemon, scraped over loopback: a replay held open by a photo
//! that a loopback server does not deliver until told to, and the HTTP source against the fake API.
//! Every page must pass Debian's `promtool check metrics`, and its counters must agree with the
//! journal (and with the requests the fake API saw).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swipebot::journal::Record;
use swipebot::profile::{Decision, PhotoScore, Profile};

use crate::common;
use crate::common::journal::journaled;
use crate::common::process::wait_with_timeout;
use crate::tinder::{Reply, World};

/// One sample of a page: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// The sample's name (`swipebot_photos_total`, `..._bucket`).
    pub(crate) name: String,
    /// Its labels.
    pub(crate) labels: BTreeMap<String, String>,
    /// Its value.
    pub(crate) value: f64,
}

/// A scraped page, parsed.
pub(crate) struct Page {
    /// The text as served.
    pub(crate) text: String,
    /// Its samples.
    pub(crate) samples: Vec<Sample>,
}

impl Page {
    /// The sum of the samples named `name` whose labels include all of `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The one sample named `name` with `labels`; panics when it is not on the page.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}\n{}", self.text);
        found[0].value
    }
}

/// Parses the Prometheus text format: every line not a comment is `name{k="v",...} value`.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => (
                name.to_string(),
                parse_labels(rest.strip_suffix('}').expect("labels end in }")),
            ),
        };
        out.push(Sample { name, labels, value });
    }
    out
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "a quoted value in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("a dangling escape in {text}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// `GET path` on `addr` over a plain TCP connection; returns the status code, the headers
/// (lower-cased names) and the body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {raw:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// Scrapes `/metrics` at `addr`, checks the answer (200, the text format's content type, accepted by
/// `promtool check metrics`) and parses it.
pub(crate) fn scrape(addr: SocketAddr) -> Page {
    let (status, headers, text) = get(addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(content_type, Some("text/plain; version=0.0.4"));
    promtool_accepts(&text);
    Page {
        samples: parse(&text),
        text,
    }
}

/// Panics unless `promtool check metrics` (Debian package `prometheus`; .ci/run installs it) accepts
/// `page`, lint included.
pub(crate) fn promtool_accepts(page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool is needed: `apt-get install prometheus` ({e})"));
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused the page: {}{}\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The address the daemon's log says the endpoint serves on (`metrics.listen` with port 0).
pub(crate) fn endpoint_in(log: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains("serving metrics"))?;
    let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
    addr.parse().ok()
}

/// The photos of `records` that were scored, and those that failed.
fn photo_counts(records: &[&Record]) -> (usize, usize) {
    let all = records.iter().flat_map(|r| &r.scores);
    let scored = all.clone().filter(|p| matches!(p, PhotoScore::Scored { .. })).count();
    (scored, all.count() - scored)
}

/// The decision counters of `source` on `page` agree with `records`, and so do the swipes sent.
fn assert_counters_match(page: &Page, records: &[&Record], source: &str) {
    for decision in [Decision::Like, Decision::Pass, Decision::Skip] {
        let journaled = records.iter().filter(|r| r.decision == decision).count();
        let counted = page.value(
            "swipebot_profiles_decided_total",
            &[("decision", decision.as_str()), ("source", source)],
        );
        assert_eq!(counted as usize, journaled, "{decision:?}\n{}", page.text);
        if decision != Decision::Skip {
            let sent = records.iter().filter(|r| r.decision == decision && r.sent).count();
            let acknowledged = page.sum(
                "swipebot_swipes_total",
                &[("kind", decision.as_str()), ("answer", "match")],
            ) + page.sum(
                "swipebot_swipes_total",
                &[("kind", decision.as_str()), ("answer", "no_match")],
            );
            assert_eq!(acknowledged as usize, sent, "{decision:?} swipes\n{}", page.text);
        }
    }
    let (scored, failed) = photo_counts(records);
    assert_eq!(
        page.value("swipebot_photos_total", &[("result", "scored")]) as usize,
        scored
    );
    let failures =
        page.sum("swipebot_photos_total", &[]) - page.value("swipebot_photos_total", &[("result", "scored")]);
    assert_eq!(failures as usize, failed, "{}", page.text);
    // Every decided photo went through decoding and every batch through the histograms.
    assert!(page.value("swipebot_inference_batch_size_count", &[]) >= 1.0);
    assert!(page.value("swipebot_inference_batch_size_sum", &[]) >= scored as f64);
    assert!(page.value("swipebot_photo_decode_seconds_count", &[]) >= scored as f64);
    let sha = &records[0].model_sha256;
    assert_eq!(
        page.sum("swipebot_model_info", &[("sha256", sha)]),
        1.0,
        "{}",
        page.text
    );
    assert_eq!(page.value("swipebot_scoring_device_info", &[("device", "cpu")]), 1.0);
}

/// The endpoint at `addr` (with `max_connections = 2`, `request_timeout_secs = 2` and the default
/// `max_request_bytes`) closes a connection over the limit at once, an idle one after the timeout,
/// and refuses a request head over the limit.
fn assert_endpoint_is_bounded(addr: SocketAddr) {
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Accepted, and holding both slots.
    std::thread::sleep(Duration::from_millis(300));
    let read_all = |mut conn: TcpStream, limit: Duration| {
        conn.set_read_timeout(Some(limit)).unwrap();
        let mut got = Vec::new();
        match conn.read_to_end(&mut got) {
            Ok(_) => Ok(String::from_utf8_lossy(&got).into_owned()),
            Err(e) => Err(e),
        }
    };
    let third = TcpStream::connect(addr).unwrap();
    let answer = read_all(third, Duration::from_secs(1));
    assert!(
        matches!(&answer, Ok(a) if a.is_empty()),
        "a third connection is closed at once: {answer:?}"
    );
    let started = Instant::now();
    for conn in idle {
        let answer = read_all(conn, Duration::from_secs(10)).expect("closed within the timeout");
        assert!(!answer.contains(" 200 "), "{answer}");
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "idle connections last the timeout"
    );
    let mut big = TcpStream::connect(addr).unwrap();
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    // The server may close before reading it all.
    let _ = big.write_all(head.as_bytes());
    let answer = read_all(big, Duration::from_secs(10)).unwrap_or_default();
    assert!(!answer.contains(" 200 "), "a 20 kB head is refused: {answer}");
    // Slots free again.
    assert_eq!(get(addr, "/healthz").0, 200);
}

/// A photo server on loopback that holds every request until [`Held::release`], then answers
/// with a JPEG.
struct Held {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// Closed to release the held requests.
    release: Option<mpsc::Sender<()>>,
    /// Requests that have arrived.
    arrived: Arc<Mutex<usize>>,
}

impl Held {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let arrived = Arc::new(Mutex::new(0));
        let count = Arc::clone(&arrived);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (released, count) = (Arc::clone(&released), Arc::clone(&count));
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        line.clear();
                    }
                    *count.lock().unwrap() += 1;
                    // Returns once the sender is dropped.
                    let _ = released.lock().unwrap().recv();
                    let jpeg = swipebot_core::synth::jpeg(&swipebot_core::synth::photo(true, 96, 96, 3), 85);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        jpeg.len()
                    );
                    let _ = conn.write_all(head.as_bytes());
                    let _ = conn.write_all(&jpeg);
                });
            }
        });
        Held {
            base,
            release: Some(release),
            arrived,
        }
    }

    fn release(&mut self) {
        self.release.take();
    }
}

/// Polls `what` every 50 ms until it gives a value, for at most `limit`.
fn eventually<T>(limit: Duration, mut what: impl FnMut() -> Option<T>, failure: impl Fn() -> String) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = what() {
            return v;
        }
        assert!(start.elapsed() < limit, "{}", failure());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a profile at `dir/name` whose one photo is the held server's.
fn held_profile(dir: &Path, held: &Held) {
    let folder = dir.join("9999-held");
    std::fs::create_dir_all(&folder).unwrap();
    let profile = Profile {
        id: "held".into(),
        name: "Held".into(),
        bio: String::new(),
        photos: vec![format!("{}/held.jpg", held.base)],
        placeholder: false,
        extra: Default::default(),
    };
    swipebot::source::replay::write_profile(&folder, &profile).unwrap();
}

#[test]
fn a_running_replay_serves_metrics_promtool_accepts_that_agree_with_the_journal_and_health_that_tells_a_stall() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::models::untrained_model(dir.path(), 64, true);
    swipebot::demo::write(
        &dir.path().join("demo"),
        swipebot::demo::DemoSize {
            per_class: 0,
            profiles: 8,
        },
    )
    .unwrap();
    let profiles = dir.path().join("demo/profiles");
    let mut held = Held::start();
    held_profile(&profiles, &held);
    let others = std::fs::read_dir(&profiles).unwrap().count() - 1;
    let state = dir.path().join("state");
    let config = dir.path().join("swipebot.toml");
    std::fs::write(
        &config,
        "[source]\nallow_private_photo_hosts = true\n[pipeline]\nphoto_timeout_secs = 120\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\nstalled_after_secs = 5\nmax_connections = 2\n\
         request_timeout_secs = 2\n",
    )
    .unwrap();
    let mut child = Command::new(common::paths::bin("swipebot"))
        .args(["replay", profiles.to_str().unwrap(), "--model", model.to_str().unwrap()])
        .args([
            "--state-dir",
            state.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (log, reader) = common::process::collect_stderr(&mut child);
    let show = || log.lock().unwrap().clone();
    let addr = eventually(Duration::from_secs(60), || endpoint_in(&log.lock().unwrap()), show);

    // Every profile but the held one decided, the held one waiting for its photo.
    eventually(
        Duration::from_secs(60),
        || (journaled(&state).len() == others && *held.arrived.lock().unwrap() == 1).then_some(()),
        show,
    );
    let (status, _, body) = get(addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"), "{}", show());
    let page = scrape(addr);
    let records: Vec<Record> = journaled(&state).into_values().collect();
    assert_counters_match(&page, &records.iter().collect::<Vec<_>>(), "replay");
    assert_eq!(page.value("swipebot_profiles_in_flight", &[]), 1.0, "the held profile");
    // The demo's broken photo and missing photo.
    assert_eq!(page.value("swipebot_photos_total", &[("result", "decode_error")]), 1.0);
    assert_eq!(
        page.value("swipebot_photos_total", &[("result", "download_error")]),
        1.0
    );
    let commit = page
        .samples
        .iter()
        .find(|s| s.name == "swipebot_build_info")
        .map(|s| s.labels["commit"].clone());
    assert!(commit.is_some_and(|c| !c.is_empty()), "{}", page.text);

    assert_endpoint_is_bounded(addr);

    // Nothing moves while the photo is held: after metrics.stalled_after_secs the loop is stalled.
    let (status, body) = eventually(
        Duration::from_secs(30),
        || {
            let (status, _, body) = get(addr, "/healthz");
            (status != 200).then_some((status, body))
        },
        show,
    );
    assert_eq!(status, 503);
    assert!(
        body.contains("stalled") && body.contains("metrics.stalled_after_secs"),
        "{body}"
    );
    let (status, _, _) = get(addr, "/nothing-here");
    assert_eq!(status, 404);

    held.release();
    let status = wait_with_timeout(&mut child, Duration::from_secs(60));
    reader.join().unwrap();
    assert!(status.success(), "{}", show());
    assert_eq!(journaled(&state).len(), others + 1);
}

#[test]
fn the_http_source_counts_its_requests_as_the_api_saw_them_and_its_swipes_as_journaled() {
    let world = World::new();
    let api = &world.api;
    // A rate limit first (waited out), then three profiles; afterwards empty pages.
    api.push_recs(Reply::json(429, "{}").with_header("Retry-After", "1"));
    api.push_recs(api.recs("v2_recs_core.json"));
    api.push_like(Reply::json(200, &common::paths::tinder_fixture("like_match.json")));
    let daemon = world.start(&[("SWIPEBOT__METRICS__LISTEN", "127.0.0.1:0")]);
    let addr = eventually(Duration::from_secs(60), || endpoint_in(&daemon.log()), || daemon.log());
    eventually(
        Duration::from_secs(60),
        || (daemon.records().len() == 3).then_some(()),
        || daemon.log(),
    );
    let page = scrape(addr);
    let seen_recs = api.calls("/v2/recs/core").len() as f64;
    let records = daemon.records();
    let (code, _, log) = daemon.stop_after(3, Duration::from_secs(30));
    assert_eq!(code, 0, "{log}");

    assert_counters_match(&page, &records.iter().collect::<Vec<_>>(), "tinder");
    for kind in ["like", "pass"] {
        let calls = api.calls(&format!("/{kind}/")).len() as f64;
        assert_eq!(
            page.sum("swipebot_api_requests_total", &[("endpoint", kind)]),
            calls,
            "{kind}\n{}",
            page.text
        );
        assert_eq!(page.sum("swipebot_swipes_total", &[("kind", kind)]), calls);
    }
    assert_eq!(
        page.value("swipebot_swipes_total", &[("kind", "like"), ("answer", "match")]),
        1.0
    );
    // The page was taken between two calls for recommendations, or during one.
    let recs = page.sum("swipebot_api_requests_total", &[("endpoint", "recs")]);
    assert!(
        recs == seen_recs || recs + 1.0 == seen_recs,
        "{recs} counted, {seen_recs} seen\n{}",
        page.text
    );
    assert_eq!(
        page.value(
            "swipebot_api_requests_total",
            &[("endpoint", "recs"), ("status", "429")]
        ),
        1.0
    );
    assert_eq!(page.value("swipebot_rate_limit_waits_total", &[]), 1.0);
    assert_eq!(
        page.value("swipebot_rate_limited_until_seconds", &[]),
        0.0,
        "the wait is over"
    );
    let likes = records
        .iter()
        .filter(|r| r.decision == Decision::Like && r.sent)
        .count() as f64;
    assert_eq!(page.value("swipebot_likes_today", &[]), likes);
    assert_eq!(page.value("swipebot_daily_like_budget", &[]), 100.0);
    assert!(page.value("swipebot_photo_download_seconds_count", &[]) >= 1.0);
    assert!(page.value("swipebot_decision_latency_seconds_count", &[]) >= 3.0);
}

#[test]
fn a_metrics_address_that_cannot_be_served_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::models::untrained_model(dir.path(), 64, true);
    std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    let config = |listen: &str| {
        let path = dir.path().join("swipebot.toml");
        std::fs::write(
            &path,
            format!(
                "[model]\npath = {model:?}\n[source]\nreplay_dir = {:?}\n[state]\ndir = {:?}\n\
                 [metrics]\nlisten = {listen:?}\n",
                dir.path().join("profiles"),
                dir.path().join("state")
            ),
        )
        .unwrap();
        path
    };
    for (command, listen, says) in [
        ("check-config", taken.as_str(), taken.as_str()),
        ("run", taken.as_str(), taken.as_str()),
        ("check-config", "localhost:9464", "not an IP address"),
    ] {
        let out = Command::new(common::paths::bin("swipebot"))
            .args([command, "--config"])
            .arg(config(listen))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{command} {listen}: {stderr}");
        assert!(
            stderr.contains("metrics.listen") && stderr.contains(says),
            "{command} {listen}: {stderr}"
        );
    }
    drop(busy);
}
