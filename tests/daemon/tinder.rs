//! The HTTP source against a real HTTP server on loopback that serves the API fixtures and injects
//! faults, with the real daemon process on top.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use swipebot::journal::{Journal, Record};
use swipebot::profile::{Decision, PhotoScore};

use crate::common;
use crate::common::journal::by_id;
use crate::common::models::untrained_model;
use crate::common::paths::tinder_fixture as fixture;
use crate::common::process::{signal, wait_with_timeout};

/// The API token the daemon is given; it must never show in a log line or a file.
pub(crate) const TOKEN: &str = "tok-3f9a1c7e-secret";

/// The waits the daemon's config scripts (`[source.tinder]`), in seconds as the config takes them;
/// the timing assertions are stated from these. `empty_backoff_secs` (and its maximum): the wait after
/// an empty page of recommendations.
const EMPTY_BACKOFF_SECS: u64 = 1;
/// `rate_limit_wait_secs`: the wait after a rate limit reported inside a 200 body.
const RATE_LIMIT_WAIT_SECS: u64 = 1;
/// `out_of_likes_wait_secs`: the wait after an out-of-likes notice among the recommendations.
const OUT_OF_LIKES_WAIT_SECS: u64 = 1;
/// `source.min_wait_secs`: the floor of every wait the API imposes (Retry-After: 0 and the like).
const MIN_WAIT_SECS: u64 = 1;
/// `retry_base_ms`: the first backoff of a request retried after a 5xx or a timeout.
const RETRY_BASE_MS: u64 = 10;
/// `pipeline.photo_timeout_secs`: how long one photo download may take.
const PHOTO_TIMEOUT_SECS: u64 = 1;
/// The daemon's own first retry after a failed fetch (`Daemon::run`), the one wait no config sets.
const FETCH_RETRY_SECS: u64 = 1;

/// The longest a daemon that is not paused waits before its next call, whatever went wrong.
fn longest_scripted_wait() -> Duration {
    let secs = [
        EMPTY_BACKOFF_SECS,
        RATE_LIMIT_WAIT_SECS,
        OUT_OF_LIKES_WAIT_SECS,
        FETCH_RETRY_SECS,
    ];
    Duration::from_secs(secs.into_iter().max().expect("some waits")) + Duration::from_millis(RETRY_BASE_MS)
}

/// How much later than a scripted wait the daemon may make its next call on a loaded machine.
const SCHEDULING_MARGIN: Duration = Duration::from_secs(2);
/// How much sooner than a scripted wait a call may be seen: the wait is stated in whole seconds or
/// milliseconds and timed by another clock than the server's.
const CLOCK_SLACK: Duration = Duration::from_millis(100);

/// One scripted answer.
#[derive(Clone)]
pub(crate) struct Reply {
    /// HTTP status code.
    status: u16,
    /// The `Content-Type` header.
    content_type: &'static str,
    /// The body as sent.
    pub(crate) body: Vec<u8>,
    /// How long the server waits before answering (a slow server).
    delay: Duration,
    /// Further headers (`Retry-After`).
    headers: Vec<(&'static str, String)>,
    /// Declared body length when it should differ from the real one (a truncated body).
    declared_len: Option<usize>,
    /// A JSON body's `rate_limited_until` is set, when the answer is sent, to this long after that
    /// moment: a limit relative to the call it answers, not to when the test scripted it.
    limited_for: Option<Duration>,
}

impl Reply {
    /// The same answer, sent after `delay` (a slow server).
    pub(crate) fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The same answer with one more header.
    pub(crate) fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    pub(crate) fn json(status: u16, body: &str) -> Self {
        Reply {
            status,
            content_type: "application/json",
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            headers: vec![],
            declared_len: None,
            limited_for: None,
        }
    }
    pub(crate) fn image(body: Vec<u8>) -> Self {
        Reply {
            status: 200,
            content_type: "image/jpeg",
            body,
            delay: Duration::ZERO,
            headers: vec![],
            declared_len: None,
            limited_for: None,
        }
    }
}

/// A request the server saw.
#[derive(Clone, Debug)]
struct Seen {
    /// When its request line and headers had arrived.
    at: Instant,
    /// The request path, with its query.
    path: String,
    /// Its `X-Auth-Token` header.
    token: Option<String>,
}

/// What the fake API answers next, and what it has seen.
#[derive(Default)]
struct State {
    /// Answers to recommendation calls, in order; then an empty page.
    recs: VecDeque<Reply>,
    /// Answers to like calls, in order; then a plain like.
    likes: VecDeque<Reply>,
    /// Photo answers by path under `/photos/`; any other photo is a valid JPEG.
    photos: HashMap<String, Reply>,
    /// Every request, in arrival order.
    seen: Vec<Seen>,
    /// How long every photo without a scripted answer takes to arrive.
    photo_delay: Duration,
}

/// The fake API: a thread per connection, `Connection: close` after each answer.
pub(crate) struct Api {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// Shared with the connection threads.
    state: Arc<Mutex<State>>,
}

impl Api {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let s = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Api { base, state }
    }

    /// A fixture with its photo URLs pointing at this server.
    pub(crate) fn recs(&self, name: &str) -> Reply {
        let body = fixture(name)
            .replace("https://images-ssl.gotinder.com/", &format!("{}/photos/", self.base))
            .replace("http://images.gotinder.com/", &format!("{}/photos/", self.base));
        Reply::json(200, &body)
    }

    /// Queues an answer to the next recommendations call.
    pub(crate) fn push_recs(&self, r: Reply) {
        self.state.lock().unwrap().recs.push_back(r);
    }

    /// Queues an answer to the next like call.
    pub(crate) fn push_like(&self, r: Reply) {
        self.state.lock().unwrap().likes.push_back(r);
    }

    /// Sets the answer for the photo at `/photos/PATH`.
    fn photo(&self, path: &str, r: Reply) {
        self.state.lock().unwrap().photos.insert(path.to_string(), r);
    }

    /// Makes every photo without a scripted answer take `delay` to arrive.
    pub(crate) fn set_photo_delay(&self, delay: Duration) {
        self.state.lock().unwrap().photo_delay = delay;
    }

    /// Every request so far.
    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Paths of the requests so far that start with `prefix`.
    pub(crate) fn calls(&self, prefix: &str) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.starts_with(prefix))
            .map(|s| s.path)
            .collect()
    }
}

/// Answers one connection: records the request, sends the scripted reply, closes.
fn serve(mut conn: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    // A connection closed before its request line (a client that timed out while connecting under
    // load) is no request: nothing to record.
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut token = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("x-auth-token") {
                token = Some(v.trim().to_string());
            }
        }
    }
    let reply = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            at: Instant::now(),
            path: path.clone(),
            token,
        });
        if path.starts_with("/v2/recs/core") || path.starts_with("/user/recs") {
            s.recs
                .pop_front()
                .unwrap_or_else(|| Reply::json(200, &fixture("v2_recs_core_empty.json")))
        } else if path.starts_with("/like/") {
            s.likes
                .pop_front()
                .unwrap_or_else(|| Reply::json(200, &fixture("like.json")))
        } else if path.starts_with("/pass/") {
            Reply::json(200, &fixture("pass.json"))
        } else if let Some(name) = path.strip_prefix("/photos/") {
            s.photos.get(name).cloned().unwrap_or_else(|| {
                // Every other photo is a valid JPEG.
                Reply {
                    delay: s.photo_delay,
                    ..Reply::image(swipebot_core::synth::jpeg(
                        &swipebot_core::synth::photo(true, 120, 120, name.len() as u64),
                        85,
                    ))
                }
            })
        } else {
            Reply::json(404, "{}")
        }
    };
    std::thread::sleep(reply.delay);
    let mut reply = reply;
    if let Some(limit) = reply.limited_for {
        let mut body: serde_json::Value = serde_json::from_slice(&reply.body).expect("a JSON body to limit");
        let until = SystemTime::now() + limit;
        let millis = until.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
        body["rate_limited_until"] = millis.into();
        reply.body = body.to_string().into_bytes();
    }
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.content_type,
        reply.declared_len.unwrap_or(reply.body.len())
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&reply.body);
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// A `swipebot run` process against the fake API.
pub(crate) struct Daemon {
    /// The process.
    child: Child,
    /// Its state folder (the journal).
    state: PathBuf,
    /// Its stderr (the log) so far, collected by `reader`.
    stderr: Arc<Mutex<String>>,
    /// The thread that reads the log; it ends when the process has exited and closed its stderr.
    reader: Option<JoinHandle<()>>,
}

/// What every test here starts from: a temporary folder, an untrained model in it, the fake API.
pub(crate) struct World {
    /// Holds the model, the config, the state and the recordings; removed at the end.
    dir: tempfile::TempDir,
    /// The untrained 64x64 grayscale model.
    model: PathBuf,
    /// The fake API, with nothing scripted yet.
    pub(crate) api: Api,
}

impl World {
    /// A fresh folder, model and API.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = untrained_model(dir.path(), 64, true);
        World {
            dir,
            model,
            api: Api::start(),
        }
    }

    /// The temporary folder.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `swipebot run` against the API with extra environment variables.
    pub(crate) fn start(&self, env: &[(&str, &str)]) -> Daemon {
        start_daemon(self.path(), &self.model, &self.api, env)
    }
}

/// Starts `swipebot run` on `model` against `api`, in `dir`, with extra environment variables.
fn start_daemon(dir: &Path, model: &Path, api: &Api, env: &[(&str, &str)]) -> Daemon {
    let state = dir.join("state");
    let config = dir.join("swipebot.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = {model:?}\nthreshold = 0.0\n\
             [source]\nkind = \"tinder\"\nrecord_dir = {:?}\nmin_wait_secs = {MIN_WAIT_SECS}\n\
             [source.tinder]\nbase_url = {:?}\nretry_base_ms = {RETRY_BASE_MS}\n\
             empty_backoff_secs = {EMPTY_BACKOFF_SECS}\nempty_backoff_max_secs = {EMPTY_BACKOFF_SECS}\n\
             rate_limit_wait_secs = {RATE_LIMIT_WAIT_SECS}\nout_of_likes_wait_secs = {OUT_OF_LIKES_WAIT_SECS}\n\
             request_timeout_secs = 5\n\
             [pacing]\nswipes_per_minute = 600\njitter = 0.0\n\
             [pipeline]\nphoto_timeout_secs = {PHOTO_TIMEOUT_SECS}\nmax_photo_bytes = 200000\n\
             [state]\ndir = {state:?}\n",
            dir.join("recorded"),
            api.base,
        ),
    )
    .unwrap();
    let mut child = Command::new(common::paths::bin("swipebot"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("SWIPEBOT_API_TOKEN", TOKEN)
        .env("SWIPEBOT_LOG", "debug")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stderr, reader) = crate::common::process::collect_stderr(&mut child);
    Daemon {
        child,
        state,
        stderr,
        reader: Some(reader),
    }
}

impl Daemon {
    /// The journal so far.
    pub(crate) fn records(&self) -> Vec<Record> {
        Journal::read_all(&self.state).unwrap_or_default()
    }

    /// Waits for `n` journal records, then stops the daemon with SIGTERM; returns its exit code.
    pub(crate) fn stop_after(mut self, n: usize, limit: Duration) -> (i32, Vec<Record>, String) {
        let start = Instant::now();
        while self.records().len() < n {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("daemon exited early ({status}): {}", self.stderr.lock().unwrap());
            }
            assert!(
                start.elapsed() < limit,
                "only {} of {n} records after {limit:?}: {}",
                self.records().len(),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        signal(&self.child, "TERM");
        let (code, log) = self.wait(Duration::from_secs(20));
        (code, self.records(), log)
    }

    /// Lets the daemon run for `time`, then stops it with SIGTERM; returns its exit code, the journal
    /// and the log.
    pub(crate) fn stop_after_time(mut self, time: Duration) -> (i32, Vec<Record>, String) {
        std::thread::sleep(time);
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("daemon exited early ({status}): {}", self.log());
        }
        signal(&self.child, "TERM");
        let (code, log) = self.wait(Duration::from_secs(20));
        (code, self.records(), log)
    }

    /// Waits until `done` holds (polling), panicking with the log after a minute.
    pub(crate) fn wait_for(&self, what: &str, done: impl Fn(&Daemon) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {what} after a minute: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log so far.
    pub(crate) fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit, then for the whole of its log; returns its exit code (-1 for a
    /// signal) and the log.
    fn wait(&mut self, limit: Duration) -> (i32, String) {
        let status = wait_with_timeout(&mut self.child, limit);
        self.reader
            .take()
            .expect("the log is read once")
            .join()
            .expect("the log reader does not panic");
        let log = self.stderr.lock().unwrap().clone();
        (status.code().unwrap_or(-1), log)
    }
}

/// The errors of a record's photos that failed.
fn errors(r: &Record) -> Vec<String> {
    r.scores
        .iter()
        .filter_map(|p| match p {
            PhotoScore::Failed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

/// Panics if [`TOKEN`] is in `log` or in any file under `dir`.
fn assert_no_token_anywhere(dir: &Path, log: &str) {
    assert!(!log.contains(TOKEN), "the token leaked into the logs");
    fn walk(p: &Path) {
        for e in std::fs::read_dir(p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p);
            } else if let Ok(text) = std::fs::read(&p) {
                assert!(
                    !String::from_utf8_lossy(&text).contains(TOKEN),
                    "the token leaked into {}",
                    p.display()
                );
            }
        }
    }
    walk(dir);
}

/// The three users of `v2_recs_core.json`.
pub(crate) const U1: &str = "000000000000000000000001";
pub(crate) const U2: &str = "000000000000000000000002";
pub(crate) const U3: &str = "000000000000000000000003";

#[test]
fn faulty_photos_are_ignored_likes_are_exact_and_recordings_replay_the_same() {
    let world = World::new();
    let api = &world.api;
    api.push_recs(api.recs("v2_recs_core.json"));
    // The 84x84 size is the nearest above the model's 64: the source must pick it.
    let p = |user: &str, n: u32| format!("{user}/84x84_000{}0000-0000-4000-8000-00000000000{n}.jpg", &user[23..]);
    let corrupt = Reply::image(b"\xFF\xD8\xFF\xE0 garbage garbage".to_vec());
    let html = Reply {
        content_type: "text/html",
        ..Reply::json(200, "<html>Access denied</html>")
    };
    let truncated = Reply {
        declared_len: Some(50_000),
        ..Reply::image(vec![0xFF; 300])
    };
    let oversized = Reply::image(vec![0xFF; 300_000]);
    let slow = Reply {
        delay: Duration::from_secs(PHOTO_TIMEOUT_SECS) + SCHEDULING_MARGIN,
        ..Reply::image(vec![0xFF; 10])
    };
    api.photo(&p(U1, 0), corrupt);
    api.photo(&p(U1, 1), html);
    api.photo(&p(U2, 0), truncated);
    api.photo(&p(U3, 0), oversized);
    api.photo(&p(U3, 1), slow);

    let daemon = world.start(&[]);
    let (code, records, log) = daemon.stop_after(3, Duration::from_secs(60));
    assert_eq!(code, 0, "{log}");
    let r = by_id(records);
    assert_eq!(r.len(), 3, "every fetched profile reaches the journal");
    assert_eq!(r[U1].decision, Decision::Like, "{:?}", r[U1]);
    let e1 = errors(&r[U1]).join(" | ");
    assert!(e1.contains("corrupt") && e1.contains("text/html"), "{e1}");
    assert_eq!(
        r[U2].decision,
        Decision::Skip,
        "its only photo was truncated: {:?}",
        r[U2]
    );
    assert!(errors(&r[U2])[0].contains("body"), "{:?}", errors(&r[U2]));
    assert_eq!(r[U3].decision, Decision::Like);
    let e3 = errors(&r[U3]).join(" | ");
    assert!(e3.contains("over the limit") && e3.contains("timed out"), "{e3}");

    // Exactly the likes decided, no passes, nothing for the skipped profile.
    let mut likes = api.calls("/like/");
    likes.sort();
    assert_eq!(likes, [format!("/like/{U1}"), format!("/like/{U3}")]);
    assert!(api.calls("/pass/").is_empty());
    // Every request carried the token; photos were the 84x84 ones.
    let seen = api.seen();
    let without: Vec<&str> = seen
        .iter()
        .filter(|s| s.token.as_deref() != Some(TOKEN))
        .map(|s| s.path.as_str())
        .collect();
    assert!(without.is_empty(), "requests without the token: {without:?}");
    assert!(
        api.calls("/photos/").iter().all(|p| p.contains("/84x84_")),
        "{:?}",
        api.calls("/photos/")
    );
    assert_no_token_anywhere(world.path(), &log);

    // The recording replays to the same decisions.
    let recorded = world.path().join("recorded");
    let out = Command::new(common::paths::bin("swipebot"))
        .args([
            "replay",
            recorded.to_str().unwrap(),
            "--model",
            world.model.to_str().unwrap(),
            "--threshold",
            "0",
        ])
        .args(["--state-dir", world.path().join("replayed").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replayed = common::journal::journaled(&world.path().join("replayed"));
    assert_eq!(replayed.len(), 3);
    for (id, rec) in &r {
        assert_eq!(replayed[id].decision, rec.decision, "{id}");
        let scored = |x: &Record| x.scores.iter().filter(|p| p.score().is_some()).count();
        assert_eq!(scored(&replayed[id]), scored(rec), "{id}");
    }
}

#[test]
fn trouble_is_retried_and_rate_limits_are_waited_out_without_calls() {
    let world = World::new();
    let api = &world.api;
    for status in [500, 502, 503] {
        api.push_recs(Reply::json(status, "{\"error\": \"outage\"}"));
    }
    let retry_after = Duration::from_secs(2);
    api.push_recs(Reply::json(429, "{}").with_header("Retry-After", &retry_after.as_secs().to_string()));
    api.push_recs(Reply::json(
        200,
        "{\"data\": {\"results\": [ {\"type\": \"user\", \"user\": ",
    ));
    api.push_recs(Reply::json(200, &fixture("v2_recs_rate_limited.json")));
    api.push_recs(Reply::json(200, &fixture("v2_recs_out_of_likes.json")));
    api.push_recs(Reply::json(200, &fixture("v2_recs_timeout.json")));
    api.push_recs(api.recs("v2_recs_core.json"));
    // The first like says: out of likes for `like_limit` from the moment it is answered.
    let like_limit = Duration::from_secs(3);
    api.push_like(Reply {
        limited_for: Some(like_limit),
        ..Reply::json(200, &fixture("like_rate_limited.json"))
    });
    let daemon = world.start(&[]);
    let (code, records, log) = daemon.stop_after(3, Duration::from_secs(90));
    assert_eq!(code, 0, "{log}");
    assert_eq!(by_id(records).len(), 3);

    let seen = api.seen();
    let recs: Vec<&Seen> = seen.iter().filter(|s| s.path.starts_with("/v2/recs")).collect();
    assert!(recs.len() >= 9, "{recs:?}");
    // Each scripted wait was waited out, then the next call came: no sooner than the wait, and no
    // later than the wait plus the scheduling margin.
    let waited = |from: &Seen, to: &Seen, wait: Duration, what: &str| {
        let gap = to.at - from.at;
        assert!(
            gap >= wait - CLOCK_SLACK,
            "{what}: the next call came after {gap:?}, before {wait:?}"
        );
        assert!(
            gap <= wait + SCHEDULING_MARGIN,
            "{what}: the next call came only after {gap:?}, for a wait of {wait:?}"
        );
    };
    // The 429 (4th call) asked for `retry_after`.
    waited(recs[3], recs[4], retry_after, "Retry-After");
    // Rate limited in a 200 body, then out of likes: each waited its configured time.
    waited(
        recs[5],
        recs[6],
        Duration::from_secs(RATE_LIMIT_WAIT_SECS),
        "rate limit in a 200 body",
    );
    waited(
        recs[6],
        recs[7],
        Duration::from_secs(OUT_OF_LIKES_WAIT_SECS),
        "out of likes",
    );
    // After the rate-limited like, no like call until rate_limited_until; then the like again.
    let likes: Vec<&Seen> = seen.iter().filter(|s| s.path.starts_with("/like/")).collect();
    assert!(likes.len() >= 2, "{likes:?}");
    // The limited like was not taken: it is sent again (the likes waiting for the limit's end may
    // go in any order), and no like at all went out before the limit's end.
    let limited = likes.iter().filter(|l| l.path == likes[0].path).count();
    assert_eq!(limited, 2, "the limited like is sent again, once: {likes:?}");
    waited(likes[0], likes[1], like_limit, "rate_limited_until of a like");
    assert!(log.contains("malformed JSON"), "the malformed body was logged");
    assert_no_token_anywhere(world.path(), &log);
}

#[test]
fn placeholders_are_never_swiped_and_dry_run_never_swipes() {
    let world = World::new();
    let api = &world.api;
    api.push_recs(api.recs("v1_recommended_users_with_one_limit_reached.json"));
    let env = [
        ("SWIPEBOT__SOURCE__DRY_RUN", "true"),
        ("SWIPEBOT__SOURCE__TINDER__API", "v1"),
    ];
    let daemon = world.start(&env);
    let (code, records, log) = daemon.stop_after(2, Duration::from_secs(60));
    assert_eq!(code, 0, "{log}");
    let r = by_id(records);
    assert_eq!(r["user_2_id"].decision, Decision::Skip, "the placeholder is skipped");
    assert!(!r["user_2_id"].sent);
    assert!(r["user_1_id"].dry_run && !r["user_1_id"].sent, "{:?}", r["user_1_id"]);
    assert!(
        api.calls("/like/").is_empty() && api.calls("/pass/").is_empty(),
        "dry run sent a swipe"
    );
    assert!(!api.calls("/user/recs").is_empty(), "the v1 endpoint was used");
    assert_no_token_anywhere(world.path(), &log);
}

#[test]
fn a_refused_token_stops_with_exit_code_77_and_says_what_to_do() {
    let world = World::new();
    let api = &world.api;
    api.push_recs(Reply::json(401, &fixture("unauthorized_401.json")));
    let mut daemon = world.start(&[]);
    let (code, log) = daemon.wait(Duration::from_secs(30));
    assert_eq!(code, 77, "{log}");
    assert!(log.contains("token") && log.contains("restart"), "{log}");
    assert!(api.calls("/like/").is_empty());
    assert_no_token_anywhere(world.path(), &log);
}

#[test]
fn with_on_unauthorized_wait_a_sighup_brings_the_new_token() {
    let world = World::new();
    let api = &world.api;
    api.push_recs(Reply::json(401, &fixture("unauthorized_401.json")));
    api.push_recs(api.recs("v2_recs_core.json"));
    let token_file = world.path().join("token");
    std::fs::write(&token_file, "old-token-1\n").unwrap();
    // A token file must be readable by its owner only.
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let env = [
        ("SWIPEBOT__SOURCE__TINDER__ON_UNAUTHORIZED", "wait"),
        ("SWIPEBOT__SOURCE__TINDER__TOKEN_FILE", token_file.to_str().unwrap()),
    ];
    let daemon = world.start(&env);
    let start = Instant::now();
    while api.calls("/v2/recs").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "no recommendations call");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Paused: no more calls while the token is refused. A daemon that was not paused would call again
    // within the longest wait the config scripts, give or take the scheduling margin.
    std::thread::sleep(longest_scripted_wait() + SCHEDULING_MARGIN);
    assert_eq!(api.calls("/v2/recs").len(), 1, "calls went on after the 401");
    std::fs::write(&token_file, "new-token-2\n").unwrap();
    signal(&daemon.child, "HUP");
    let (code, records, log) = daemon.stop_after(3, Duration::from_secs(60));
    assert_eq!(code, 0, "{log}");
    assert_eq!(by_id(records).len(), 3);
    let seen = api.seen();
    assert_eq!(seen[0].token.as_deref(), Some("old-token-1"));
    assert!(seen[1..].iter().all(|s| s.token.as_deref() == Some("new-token-2")));
    assert!(log.contains("SIGHUP"), "the log says what to do: {log}");
    assert!(!log.contains("old-token-1") && !log.contains("new-token-2"));
}

#[test]
fn sighup_reloads_the_threshold_for_new_profiles() {
    let world = World::new();
    let api = &world.api;
    api.push_recs(api.recs("v2_recs_core.json"));
    let daemon = world.start(&[]);
    daemon.wait_for("three records", |d| d.records().len() >= 3);
    let config = world.path().join("swipebot.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("threshold = 0.0", "threshold = 1.0");
    std::fs::write(&config, text).unwrap();
    signal(&daemon.child, "HUP");
    daemon.wait_for("reload", |d| d.log().contains("settings reloaded"));
    // A second page of new people, decided with the new threshold.
    let page = api.recs("v2_recs_core.json");
    let body = String::from_utf8(page.body.clone())
        .unwrap()
        .replace("\"_id\": \"0000", "\"_id\": \"1000");
    api.push_recs(Reply::json(200, &body));
    let (code, records, log) = daemon.stop_after(6, Duration::from_secs(60));
    assert_eq!(code, 0, "{log}");
    let r = by_id(records);
    for id in [U1, U2, U3] {
        assert_eq!(r[id].threshold, 0.0);
        let new = format!("1000{}", &id[4..]);
        assert_eq!(r[&new].threshold, 1.0, "{new}");
        assert_eq!(r[&new].decision, Decision::Pass, "{new}");
    }
    assert_eq!(api.calls("/pass/").len(), 3);
    assert_eq!(api.calls("/like/").len(), 3);
}

/// The source learns the model's input size at start and again when SIGHUP loads a model of another
/// size: photos are then downloaded at the processed size that suits the new model.
#[test]
fn sighup_to_a_model_of_another_size_fetches_photos_of_that_size() {
    let world = World::new();
    let api = &world.api;
    api.push_recs(api.recs("v2_recs_core.json"));
    let daemon = world.start(&[]);
    daemon.wait_for("three records", |d| d.records().len() >= 3);
    // At input 64, the smallest processed size of at least 64 pixels: 84x84.
    let before = api.calls("/photos/");
    assert!(
        !before.is_empty() && before.iter().all(|p| p.contains("/84x84_")),
        "{before:?}"
    );
    let bigger = untrained_model(&world.path().join("big"), 128, true);
    let config = world.path().join("swipebot.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("path = {:?}", world.model), &format!("path = {bigger:?}"));
    std::fs::write(&config, text).unwrap();
    signal(&daemon.child, "HUP");
    daemon.wait_for("reload", |d| d.log().contains("settings reloaded"));
    let page = String::from_utf8(api.recs("v2_recs_core.json").body)
        .unwrap()
        .replace("\"_id\": \"0000", "\"_id\": \"1000");
    api.push_recs(Reply::json(200, &page));
    let (code, _, log) = daemon.stop_after(6, Duration::from_secs(60));
    assert_eq!(code, 0, "{log}");
    // At input 128: 172x172, for every photo fetched after the reload.
    let after: Vec<String> = api.calls("/photos/").into_iter().skip(before.len()).collect();
    assert!(
        !after.is_empty() && after.iter().all(|p| p.contains("/172x172_")),
        "{after:?}"
    );
}
