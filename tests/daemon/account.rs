//! Running it on a real account: the API's rhythm (every wait has a floor, a batch of nothing new
//! backs off, out of likes stops likes but not passes, across restarts), the daily like budget to the
//! like, and exactly one swipe per profile however often the API repeats it. Each against the fake
//! API on loopback, with the real daemon process.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::journal::by_id;
use crate::tinder::{Reply, World, U1, U2, U3};

/// The core fixture's three users, with their ids changed so that a state directory that decided
/// the originals sees them as new.
fn other_users(world: &World) -> Reply {
    let body = String::from_utf8(world.api.recs("v2_recs_core.json").body).unwrap();
    Reply::json(200, &body.replace("00000000000000000000000", "99999999999999999999999"))
}

#[test]
fn retry_after_zero_or_a_past_date_never_makes_a_storm() {
    let w = World::new();
    // `Retry-After: 0` and a date already past, again and again (a malformed value falls back to a
    // minute's wait, so it is not among them).
    for i in 0..500 {
        let value = if i % 2 == 0 {
            "0"
        } else {
            "Thu, 01 Jan 1970 00:00:00 GMT"
        };
        w.api
            .push_recs(Reply::json(429, "{}").with_header("Retry-After", value));
    }
    let run = Duration::from_secs(4);
    let (code, _, log) = w.start(&[]).stop_after_time(run);
    assert_eq!(code, 0, "{log}");
    // min_wait_secs = 1 in the test config: at most one call a second, plus the first.
    let calls = w.api.calls("/v2/recs").len();
    assert!(calls >= 2, "the daemon kept asking ({calls} calls)");
    assert!(calls <= run.as_secs() as usize + 2, "{calls} calls in {run:?}: a storm");
}

#[test]
fn a_batch_of_profiles_already_decided_backs_off_like_an_empty_one() {
    let w = World::new();
    for _ in 0..200 {
        w.api.push_recs(w.api.recs("v2_recs_core.json"));
    }
    let run = Duration::from_secs(6);
    let (code, records, log) = w.start(&[]).stop_after_time(run);
    assert_eq!(code, 0, "{log}");
    assert_eq!(by_id(records).len(), 3);
    // The floor is 1 s, doubling while nothing is new: far fewer calls than seconds x anything.
    let calls = w.api.calls("/v2/recs").len();
    assert!(calls <= 6, "{calls} calls in {run:?} for nothing new");
    for id in [U1, U2, U3] {
        assert_eq!(w.api.calls(&format!("/like/{id}")).len(), 1, "{id} liked once");
    }
}

#[test]
fn a_profile_repeated_while_in_flight_or_in_one_batch_is_swiped_once() {
    let w = World::new();
    // Photos take a while, so the profiles are still in flight when the API offers them again.
    w.api.set_photo_delay(Duration::from_millis(1500));
    let core: serde_json::Value = serde_json::from_slice(&w.api.recs("v2_recs_core.json").body).unwrap();
    let mut doubled = core.clone();
    let results = doubled["data"]["results"].as_array_mut().unwrap();
    results.extend(results.clone());
    w.api.push_recs(Reply::json(200, &doubled.to_string()));
    for _ in 0..20 {
        w.api.push_recs(Reply::json(200, &core.to_string()));
    }
    let daemon = w.start(&[
        ("SWIPEBOT__PIPELINE__PHOTO_TIMEOUT_SECS", "10"),
        ("SWIPEBOT__SOURCE__TINDER__EMPTY_BACKOFF_SECS", "1"),
    ]);
    let (code, records, log) = daemon.stop_after_time(Duration::from_secs(6));
    assert_eq!(code, 0, "{log}");
    assert_eq!(records.len(), 3, "one record a profile: {records:?}");
    for id in [U1, U2, U3] {
        assert_eq!(w.api.calls(&format!("/like/{id}")).len(), 1, "{id} liked once: {log}");
    }
    assert!(
        log.contains("offered again while being decided"),
        "repeats are logged at debug"
    );
}

#[test]
fn out_of_likes_stops_likes_not_passes_and_a_restart_inside_it_sends_no_like() {
    let w = World::new();
    // Run 1: out of likes (for 60 s), then three profiles that the threshold makes passes.
    w.api.push_recs(Reply::json(
        200,
        &crate::common::paths::tinder_fixture("v2_recs_out_of_likes.json"),
    ));
    w.api.push_recs(w.api.recs("v2_recs_core.json"));
    let env = [
        ("SWIPEBOT__SOURCE__TINDER__OUT_OF_LIKES_WAIT_SECS", "60"),
        ("SWIPEBOT__MODEL__THRESHOLD", "1.0"),
    ];
    let (code, records, log) = w.start(&env).stop_after(3, Duration::from_secs(30));
    assert_eq!(code, 0, "{log}");
    assert!(records
        .iter()
        .all(|r| r.sent && r.decision == swipebot::profile::Decision::Pass));
    assert_eq!(w.api.calls("/pass/").len(), 3, "passes go on while likes are paused");
    assert!(w.path().join("state/likes_paused_until").exists());
    // Run 2, restarted inside the pause: three new profiles that the threshold makes likes.
    w.api.push_recs(other_users(&w));
    let (code, _, log) = w
        .start(&[("SWIPEBOT__MODEL__THRESHOLD", "0.0")])
        .stop_after_time(Duration::from_secs(4));
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        w.api.calls("/like/"),
        Vec::<String>::new(),
        "no like inside the pause: {log}"
    );
    assert!(log.contains("likes are paused"), "{log}");
}

#[test]
fn a_like_answered_with_no_likes_left_pauses_the_next_ones() {
    let w = World::new();
    w.api.push_recs(w.api.recs("v2_recs_core.json"));
    w.api
        .push_like(Reply::json(200, r#"{"match": false, "likes_remaining": 0}"#));
    let daemon = w.start(&[("SWIPEBOT__SOURCE__TINDER__OUT_OF_LIKES_WAIT_SECS", "60")]);
    let (code, records, log) = daemon.stop_after_time(Duration::from_secs(5));
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        w.api.calls("/like/").len(),
        1,
        "one like, then none for the configured wait: {log}"
    );
    assert_eq!(records.len(), 1, "the other likes wait as intents: {records:?}");
}

#[test]
fn the_daily_like_budget_is_exact_under_concurrency() {
    let w = World::new();
    w.api.push_recs(w.api.recs("v2_recs_core.json"));
    // Each like takes a second to be answered, so all three likes are waiting for the swipe lane
    // while the first is in flight: the budget must be checked again inside the lane.
    for _ in 0..3 {
        w.api.push_like(
            Reply::json(200, r#"{"match": false, "likes_remaining": 99}"#).with_delay(Duration::from_secs(1)),
        );
    }
    let daemon = w.start(&[
        ("SWIPEBOT__PACING__DAILY_LIKE_BUDGET", "1"),
        ("SWIPEBOT__PIPELINE__PROFILES_IN_FLIGHT", "8"),
    ]);
    let (code, records, log) = daemon.stop_after_time(Duration::from_secs(5));
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.api.calls("/like/").len(), 1, "budget 1: exactly one like: {log}");
    assert_eq!(records.len(), 1, "{records:?}");
}

#[test]
fn the_watchdog_is_fed_while_the_daemon_waits_on_purpose() {
    let w = World::new();
    w.api.push_recs(w.api.recs("v2_recs_core.json"));
    let socket_path = w.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    seen.lock()
                        .unwrap()
                        .push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into()));
                }
            }
        })
    };
    // One swipe every 20 s: after the first, the daemon waits politely on the pacer.
    let start = Instant::now();
    let daemon = w.start(&[
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "3000000"),
        ("SWIPEBOT__PIPELINE__PROFILES_IN_FLIGHT", "1"),
        ("SWIPEBOT__PACING__SWIPES_PER_MINUTE", "3"),
    ]);
    let (code, _, log) = daemon.stop_after_time(Duration::from_secs(9));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    listener.join().unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("pipeline stalled"), "{log}");
    let pings: Vec<Instant> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    // Fed every half interval (1 s) all along, the pacer's 20 s wait included.
    let late = pings
        .iter()
        .filter(|t| t.duration_since(start) > Duration::from_secs(6))
        .count();
    assert!(
        late >= 2,
        "the watchdog went unfed while waiting: {} pings, {late} late; {log}",
        pings.len()
    );
}

/// Writes an unacknowledged like intent for `id`, as the HTTP source journals it before sending.
fn tinder_intent(state: &std::path::Path, id: &str) {
    let mut journal = swipebot::journal::Journal::open(state).unwrap();
    journal
        .record_intent(&swipebot::journal::Record::new(
            id,
            swipebot::profile::Decision::Like,
            "tinder",
        ))
        .unwrap();
}

#[test]
fn an_intent_is_resent_only_by_its_own_source_and_never_in_a_dry_run() {
    let w = World::new();
    let state = w.path().join("state");
    tinder_intent(&state, U1);
    // A replay on the live source's state directory: the intent is not the replay's to resolve.
    let demo = w.path().join("demo");
    swipebot::demo::write(
        &demo,
        swipebot::demo::DemoSize {
            per_class: 0,
            profiles: 2,
        },
    )
    .unwrap();
    let model = crate::common::models::untrained_model(&w.path().join("m"), 64, true);
    let out = std::process::Command::new(crate::common::paths::bin("swipebot"))
        .args([
            "replay",
            demo.join("profiles").to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ])
        .args(["--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let journaled = |id: &str| {
        swipebot::journal::Journal::read_all(&state)
            .unwrap()
            .into_iter()
            .filter(|r| r.profile_id == id)
            .count()
    };
    assert_eq!(journaled(U1), 0, "the replay marked a tinder intent as sent");
    // A dry run of the live source sends nothing, that intent included.
    let (code, _, log) = w
        .start(&[("SWIPEBOT__SOURCE__DRY_RUN", "true")])
        .stop_after_time(Duration::from_secs(3));
    assert_eq!(code, 0, "{log}");
    assert!(w.api.calls("/like/").is_empty(), "a dry run swiped: {log}");
    assert_eq!(journaled(U1), 0);
    // The live source itself sends it, once, and records it.
    // (The replay's own records are in this journal already: wait for U1's.)
    let live = w.start(&[]);
    live.wait_for("the resent intent", |d| d.records().iter().any(|r| r.profile_id == U1));
    let (code, records, log) = live.stop_after_time(Duration::ZERO);
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.api.calls(&format!("/like/{U1}")).len(), 1, "{log}");
    let r = records
        .iter()
        .find(|r| r.profile_id == U1)
        .expect("the intent was recorded");
    assert!(r.sent && r.resolved_after_restart, "{r:?}");
}
