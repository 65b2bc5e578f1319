//! The HTTP source's photo downloads against servers on 127.0.0.1: where the token goes (the API's
//! origin and listed hosts only, never across a redirect to another origin) and which addresses a
//! photo may come from.

use super::*;
use crate::source::test_server::{Reply, TestServer};

/// The token the tests' source sends.
const TOKEN: &str = "tok-unit-3f9a-secret";
/// The first bytes of a JPEG file: what the photo servers answer.
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF";

/// A source for an API at `base` that sends the token to `token_hosts` too. Nothing here calls the
/// API itself: only photos are fetched.
fn source(base: &str, token_hosts: &[&str], allow_private: bool) -> TinderSource {
    let settings = TinderSettings {
        base_url: base.into(),
        token_hosts: token_hosts.iter().map(|h| h.to_string()).collect(),
        max_retries: 0,
        ..Default::default()
    };
    TinderSource::new(
        &settings,
        Token::new(TOKEN),
        Duration::from_secs(5),
        1 << 20,
        allow_private,
    )
    .unwrap()
}

/// A profile to fetch photos for (the HTTP source does not look at it).
fn someone() -> Profile {
    serde_json::from_str(r#"{"id": "u1", "photos": []}"#).unwrap()
}

/// A server that answers every path with a JPEG.
fn photo_server() -> TestServer {
    TestServer::start(|_| Reply::ok(Some("image/jpeg"), JPEG))
}

/// The token each request to `server` carried, in order.
fn tokens(server: &TestServer) -> Vec<Option<String>> {
    server
        .requests()
        .iter()
        .map(|r| r.header("x-auth-token").map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_token_goes_to_the_api_origin_and_listed_hosts_only() {
    let api = photo_server();
    let other = photo_server();
    let src = source(&api.url(""), &[], false);
    let got = src.photo(&someone(), &api.url("/photos/a.jpg")).await.unwrap();
    assert_eq!(got, JPEG);
    assert_eq!(
        tokens(&api),
        [Some(TOKEN.to_string())],
        "the API's origin gets the token"
    );
    // Another port is another origin; `localhost` is another host than `127.0.0.1`.
    src.photo(&someone(), &other.url("/b.jpg")).await.unwrap();
    assert_eq!(tokens(&other), [None], "another port got the token");
    let by_name = format!("http://localhost:{}/c.jpg", api.addr.port());
    src.photo(&someone(), &by_name).await.unwrap();
    assert_eq!(tokens(&api)[1], None, "another host name got the token");
    // A listed host gets it.
    let listed = source(&api.url(""), &["localhost"], false);
    listed
        .photo(&someone(), &format!("http://localhost:{}/d.jpg", other.addr.port()))
        .await
        .unwrap();
    assert_eq!(
        tokens(&other)[1].as_deref(),
        Some(TOKEN),
        "a listed host did not get the token"
    );
}

#[tokio::test]
async fn a_redirect_to_another_origin_never_carries_the_token() {
    let elsewhere = photo_server();
    let away = elsewhere.url("/x.jpg");
    let api = TestServer::start(move |r| match r.path.as_str() {
        "/photos/away.jpg" => Reply::redirect(&away),
        "/photos/moved.jpg" => Reply::redirect("/photos/here.jpg"),
        _ => Reply::ok(Some("image/jpeg"), JPEG),
    });
    let src = source(&api.url(""), &[], false);
    let err = src.photo(&someone(), &api.url("/photos/away.jpg")).await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Permanent(e) if e.contains("not followed") && e.contains(&elsewhere.url("/x.jpg"))),
        "{err:?}"
    );
    assert!(
        tokens(&elsewhere).iter().all(Option::is_none),
        "the token followed a redirect to another origin"
    );
    // Within the API's origin a redirect is followed, token and all.
    assert_eq!(
        src.photo(&someone(), &api.url("/photos/moved.jpg")).await.unwrap(),
        JPEG
    );
    let seen = api.requests();
    assert_eq!(seen.last().unwrap().path, "/photos/here.jpg");
    assert_eq!(seen.last().unwrap().header("x-auth-token"), Some(TOKEN));
}

#[tokio::test]
async fn photos_on_private_addresses_are_refused_unless_the_api_is_on_one_or_they_are_allowed() {
    let photos = photo_server();
    let port = photos.addr.port();
    let urls = [
        format!("http://127.0.0.1:{port}/a.jpg"),
        format!("http://2130706433:{port}/a.jpg"),
        format!("http://localhost:{port}/a.jpg"),
    ];
    // An API on a public name (never called here): its photos must be public too.
    let public = source("https://api.gotinder.com", &[], false);
    for u in &urls {
        match public.photo(&someone(), u).await {
            Err(SourceError::Permanent(e)) => assert!(
                e.contains("127.0.0.1") && e.contains("source.allow_private_photo_hosts"),
                "{u}: {e}"
            ),
            other => panic!("{u} must be refused, got {other:?}"),
        }
    }
    assert!(
        photos.requests().is_empty(),
        "a private address was reached: {:?}",
        photos.requests()
    );
    // Allowed by the user, or because the API itself is on loopback.
    let allowed = source("https://api.gotinder.com", &[], true);
    let api = photo_server();
    let beside_the_api = source(&api.url(""), &[], false);
    for src in [&allowed, &beside_the_api] {
        for u in &urls {
            assert_eq!(src.photo(&someone(), u).await.unwrap(), JPEG, "{u}");
        }
    }
    assert_eq!(
        tokens(&photos),
        vec![None; 6],
        "photos off the API's origin go without the token"
    );
}

#[tokio::test]
async fn an_api_body_over_the_cap_fails_that_call_only() {
    let big = format!(r#"{{"data": {{"results": [], "pad": "{}"}}}}"#, "x".repeat(300_000));
    let server = TestServer::start(move |_| Reply::ok(Some("application/json"), big.as_bytes()));
    let capped = source(&server.url(""), &[], false).with_max_body_bytes(100_000);
    let err = capped.candidates().await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Transient(m) if m.contains("source.max_body_bytes")),
        "{err}"
    );
    // Under the cap, the same body is read (and is an empty page of recommendations).
    let roomy = source(&server.url(""), &[], false).with_max_body_bytes(1 << 20);
    assert!(matches!(roomy.candidates().await, Ok(Candidates::Wait(_))));
}

#[test]
fn retry_after_reads_seconds_and_dates_and_nothing_else() {
    let at = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, v.parse().unwrap());
        retry_after(&h)
    };
    let now = Utc::now();
    let in_two = at("2").unwrap();
    assert!(in_two >= now + chrono::Duration::seconds(2) && in_two < now + chrono::Duration::seconds(4));
    assert_eq!(at("Thu, 01 Jan 1970 00:00:00 GMT").unwrap().timestamp(), 0);
    // Malformed: no time at all (the caller waits its default, a minute); a zero or past time is
    // floored by the daemon (source.min_wait_secs).
    assert_eq!(at("soon"), None);
    assert!(at("0").unwrap() <= Utc::now());
}
