//! The Tinder-style HTTP source: candidates from `GET /v2/recs/core` (or the older `GET /user/recs`),
//! likes through `GET /like/{id}`, passes through `GET /pass/{id}`, with the token in `X-Auth-Token`.
//!
//! It behaves like a careful human client: retries with exponential backoff and jitter on 5xx,
//! timeouts and connection errors; HTTP 429 honours `Retry-After`; rate limits reported inside HTTP 200
//! bodies, out-of-likes notices and `rate_limited_until` become [`SourceError::RateLimited`], so the
//! daemon waits without calling again; empty or timed-out recommendations back off; a 401 is
//! [`SourceError::Unauthorized`]. A malformed body fails that call only. The token is never logged.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

use crate::config::{RecsApi, TinderSettings};
use crate::profile::{Decision, Profile, SwipeOutcome};
use crate::source::{photo, Candidates, ProfileSource, SourceError};

/// The header that carries the token.
pub const AUTH_HEADER: &str = "X-Auth-Token";

/// An API token. Its `Debug` never shows it, and it is only ever put in a header marked sensitive.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a token, trimming the whitespace a file or variable may add.
    pub fn new(token: &str) -> Self {
        Token(token.trim().to_string())
    }

    fn header(&self) -> Result<HeaderValue, SourceError> {
        let mut v = HeaderValue::from_str(&self.0)
            .map_err(|_| SourceError::Unauthorized("the API token contains characters a header cannot carry".into()))?;
        v.set_sensitive(true);
        Ok(v)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where a token comes from: a file (systemd `LoadCredential`), else an environment variable.
pub fn load_token(settings: &TinderSettings) -> Result<Token, String> {
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|d| std::path::Path::new(&d).join(&settings.credential_name))
        .filter(|p| p.is_file());
    if let Some(path) = settings.token_file.clone().or(credential) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        if text.trim().is_empty() {
            return Err(format!("the token file {} is empty", path.display()));
        }
        return Ok(Token::new(&text));
    }
    match std::env::var(&settings.token_env) {
        Ok(t) if !t.trim().is_empty() => Ok(Token::new(&t)),
        _ => Err(format!(
            "no API token: set the environment variable {} or source.tinder.token_file (under systemd: LoadCredential={})",
            settings.token_env, settings.credential_name
        )),
    }
}

/// What one recommendations body means.
#[derive(Debug, PartialEq)]
pub enum Recs {
    /// Profiles (placeholders included, marked) and the results that could not be read.
    Profiles(Vec<Profile>, Vec<(String, String)>),
    /// Nothing to show now (empty, `recs timeout`, `recs exhausted`, nobody around).
    Empty(String),
    /// Rate limited, said inside a 200 body.
    RateLimited,
    /// Out of likes, said inside the results.
    OutOfLikes,
}

/// Picks the photo URL to download: the smallest processed size at least `side` pixels on both
/// sides, else the largest processed size, else the original.
pub fn pick_photo_url(photo: &Value, side: u32) -> Option<String> {
    let files: Vec<(u64, u64, &str)> = photo["processedFiles"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| Some((f["width"].as_u64()?, f["height"].as_u64()?, f["url"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let side = u64::from(side);
    files
        .iter()
        .filter(|(w, h, _)| *w >= side && *h >= side)
        .min_by_key(|(w, h, _)| w * h)
        .or_else(|| files.iter().max_by_key(|(w, h, _)| w * h))
        .map(|(_, _, url)| url.to_string())
        .or_else(|| photo["url"].as_str().map(str::to_string))
}

/// Whether a user object is one of the stand-ins the API shows when the recommendations are
/// rate limited; they must never be swiped.
fn is_placeholder(user: &Value) -> bool {
    user["_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("tinder_rate_limited_id"))
        || user["name"] == "Tinder Team"
}

fn user_to_profile(user: &Value, side: u32) -> Result<Profile, String> {
    let id = user["_id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("a user without `_id`")?;
    let photos = match &user["photos"] {
        Value::Array(list) => list.iter().filter_map(|p| pick_photo_url(p, side)).collect(),
        Value::Null => Vec::new(),
        _ => return Err(format!("user {id}: `photos` is not a list")),
    };
    let mut extra = serde_json::Map::new();
    if let Value::Object(fields) = user {
        for (k, v) in fields {
            if !matches!(k.as_str(), "_id" | "name" | "bio" | "photos") {
                extra.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Profile {
        id: id.to_string(),
        name: user["name"].as_str().unwrap_or_default().to_string(),
        bio: user["bio"].as_str().unwrap_or_default().to_string(),
        photos,
        placeholder: is_placeholder(user),
        extra,
    })
}

/// Reads a recommendations body of either API version.
pub fn parse_recs(body: &Value, side: u32) -> Result<Recs, String> {
    if body["meta"]["status"] == 429 || body["error"]["code"] == 42901 || body["error"]["message"] == "RATE_LIMITED" {
        return Ok(Recs::RateLimited);
    }
    if let Some(message) = body["message"].as_str() {
        return Ok(Recs::Empty(message.to_string()));
    }
    if let Some(message) = body["error"]["message"].as_str() {
        return Ok(Recs::Empty(message.to_string()));
    }
    if let Some(timeout) = body["data"]["timeout"].as_str() {
        return Ok(Recs::Empty(format!("timeout: {timeout}")));
    }
    let results = match (&body["data"]["results"], &body["results"]) {
        (Value::Array(r), _) | (_, Value::Array(r)) => r,
        _ => return Err("no `results` list in the recommendations".into()),
    };
    if results.is_empty() {
        return Ok(Recs::Empty("no recommendations".into()));
    }
    let (mut profiles, mut rejected, mut out_of_likes) = (Vec::new(), Vec::new(), false);
    for (i, r) in results.iter().enumerate() {
        match r {
            Value::String(_) => out_of_likes = true,
            Value::Object(_) => {
                // v2 wraps users as {"type": "user", "user": {...}}; v1 lists users directly.
                let user = if r["user"].is_object() { &r["user"] } else { r };
                if r["type"].as_str().is_some_and(|t| t != "user") {
                    continue;
                }
                match user_to_profile(user, side) {
                    Ok(p) => profiles.push(p),
                    Err(e) => {
                        let id = user["_id"]
                            .as_str()
                            .map_or_else(|| format!("result {i}"), str::to_string);
                        rejected.push((id, e));
                    }
                }
            }
            _ => rejected.push((format!("result {i}"), "neither a user nor a message".into())),
        }
    }
    if profiles.is_empty() && rejected.is_empty() && out_of_likes {
        return Ok(Recs::OutOfLikes);
    }
    Ok(Recs::Profiles(profiles, rejected))
}

/// What a like or pass answered.
pub fn parse_swipe(body: &Value, now: DateTime<Utc>) -> Result<SwipeOutcome, SourceError> {
    if !body.is_object() {
        return Err(SourceError::Transient("the swipe answer is not a JSON object".into()));
    }
    let until = body["rate_limited_until"]
        .as_i64()
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    let likes_remaining = body["likes_remaining"].as_u64();
    if let Some(until) = until.filter(|u| *u > now) {
        if likes_remaining.unwrap_or(0) == 0 {
            // The like was not taken: wait until then before calling like again.
            return Err(SourceError::RateLimited { until });
        }
    }
    Ok(SwipeOutcome {
        matched: body["match"].is_object(),
        likes_remaining,
        rate_limited_until: until,
    })
}

/// The HTTP source.
pub struct TinderSource {
    http: reqwest::Client,
    base: reqwest::Url,
    token: RwLock<Token>,
    settings: TinderSettings,
    photo_side: AtomicU32,
    /// After a batch of placeholders only: do not ask again before this.
    hold_until: Mutex<Option<DateTime<Utc>>>,
    empty_backoff: Mutex<Duration>,
    max_photo_bytes: u64,
}

impl std::fmt::Debug for TinderSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TinderSource")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl TinderSource {
    /// A source for `settings` with `token`; photos over `max_photo_bytes` are refused.
    pub fn new(
        settings: &TinderSettings,
        token: Token,
        timeout: Duration,
        max_photo_bytes: u64,
    ) -> Result<Self, String> {
        let base = reqwest::Url::parse(&settings.base_url)
            .map_err(|e| format!("source.tinder.base_url `{}`: {e}", settings.base_url))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "source.tinder.base_url `{}` is not http or https",
                settings.base_url
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(settings.user_agent.clone())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(TinderSource {
            http,
            base,
            token: RwLock::new(token),
            settings: settings.clone(),
            photo_side: AtomicU32::new(224),
            hold_until: Mutex::new(None),
            empty_backoff: Mutex::new(Duration::from_secs(settings.empty_backoff_secs)),
            max_photo_bytes,
        })
    }

    /// Replaces the token (SIGHUP after a 401, with `on_unauthorized = "wait"`).
    pub fn set_token(&self, token: Token) {
        *self.token.write().expect("token lock") = token;
    }

    fn auth_headers(&self) -> Result<HeaderMap, SourceError> {
        let mut h = HeaderMap::new();
        h.insert(AUTH_HEADER, self.token.read().expect("token lock").header()?);
        Ok(h)
    }

    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have paths")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Sleeps before retry `attempt` (0-based): exponential, with +-50% jitter, capped at 30 s.
    async fn backoff(&self, attempt: u32) {
        let base = Duration::from_millis(self.settings.retry_base_ms).saturating_mul(1 << attempt.min(10));
        let jittered = base
            .mul_f64(rand::rng().random_range(0.5..1.5))
            .min(Duration::from_secs(30));
        tokio::time::sleep(jittered).await;
    }

    /// GETs an API path and parses its JSON, retrying what is worth retrying.
    async fn get_json(&self, url: reqwest::Url, what: &str) -> Result<Value, SourceError> {
        let mut attempt = 0;
        loop {
            let result = self.http.get(url.clone()).headers(self.auth_headers()?).send().await;
            let retry_reason = match result {
                Err(e) => format!("{what}: {}", photo::without_url(&e)),
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        return Err(SourceError::Unauthorized(format!("{what}: HTTP {status}")));
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let until = retry_after(response.headers())
                            .unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(60));
                        return Err(SourceError::RateLimited { until });
                    }
                    if status.is_server_error() {
                        format!("{what}: HTTP {status}")
                    } else if !status.is_success() {
                        return Err(SourceError::Permanent(format!("{what}: HTTP {status}")));
                    } else {
                        match response.bytes().await {
                            Err(e) => format!("{what}: {}", photo::without_url(&e)),
                            Ok(body) => {
                                return serde_json::from_slice(&body).map_err(|e| {
                                    SourceError::Transient(format!(
                                        "{what}: malformed JSON body ({e}); will try again later"
                                    ))
                                })
                            }
                        }
                    }
                }
            };
            if attempt >= self.settings.max_retries {
                return Err(SourceError::Transient(format!(
                    "{retry_reason} (gave up after {} retries)",
                    attempt
                )));
            }
            tracing::debug!(attempt, "{retry_reason}; retrying");
            self.backoff(attempt).await;
            attempt += 1;
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Utc::now() + chrono::Duration::seconds(secs.min(86_400) as i64));
    }
    DateTime::parse_from_rfc2822(v).ok().map(|d| d.with_timezone(&Utc))
}

#[async_trait]
impl ProfileSource for TinderSource {
    fn name(&self) -> &str {
        "tinder"
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn prefer_photo_side(&self, side: u32) {
        self.photo_side.store(side, Ordering::Relaxed);
    }

    fn reload_credentials(&self) -> Result<(), String> {
        self.set_token(load_token(&self.settings)?);
        Ok(())
    }

    async fn candidates(&self) -> Result<Candidates, SourceError> {
        if let Some(until) = *self.hold_until.lock().expect("hold lock") {
            let left = (until - Utc::now()).to_std().unwrap_or_default();
            if !left.is_zero() {
                return Ok(Candidates::Wait(left));
            }
        }
        let url = match self.settings.api {
            RecsApi::V2 => self.url(&["v2", "recs", "core"]),
            RecsApi::V1 => self.url(&["user", "recs"]),
        };
        let body = self.get_json(url, "fetching recommendations").await?;
        let side = self.photo_side.load(Ordering::Relaxed);
        let backoff_wait = |reason: &str| {
            let mut b = self.empty_backoff.lock().expect("backoff lock");
            let wait = *b;
            *b = (*b * 2).min(Duration::from_secs(self.settings.empty_backoff_max_secs));
            tracing::info!(wait_secs = wait.as_secs(), "no recommendations ({reason}); backing off");
            Candidates::Wait(wait)
        };
        match parse_recs(&body, side) {
            Err(e) => Err(SourceError::Transient(format!(
                "recommendations: {e}; will try again later"
            ))),
            Ok(Recs::RateLimited) => Err(SourceError::RateLimited {
                until: Utc::now() + chrono::Duration::seconds(self.settings.rate_limit_wait_secs as i64),
            }),
            Ok(Recs::OutOfLikes) => Err(SourceError::RateLimited {
                until: Utc::now() + chrono::Duration::seconds(self.settings.out_of_likes_wait_secs as i64),
            }),
            Ok(Recs::Empty(reason)) => Ok(backoff_wait(&reason)),
            Ok(Recs::Profiles(profiles, rejected)) => {
                *self.empty_backoff.lock().expect("backoff lock") =
                    Duration::from_secs(self.settings.empty_backoff_secs);
                if !profiles.is_empty() && profiles.iter().all(|p| p.placeholder) {
                    let until = Utc::now() + chrono::Duration::seconds(self.settings.rate_limit_wait_secs as i64);
                    tracing::warn!(%until, "only placeholder profiles: recommendations are rate limited");
                    *self.hold_until.lock().expect("hold lock") = Some(until);
                }
                Ok(Candidates::Profiles { profiles, rejected })
            }
        }
    }

    async fn photo(&self, _profile: &Profile, url: &str) -> Result<Vec<u8>, SourceError> {
        if !photo::is_url(url) {
            return Err(SourceError::Permanent(format!("photo `{url}` is not an http(s) URL")));
        }
        let mut attempt = 0;
        loop {
            match photo::fetch(&self.http, url, self.auth_headers()?, self.max_photo_bytes).await {
                Err(SourceError::Transient(e)) if attempt < self.settings.max_retries.min(2) => {
                    tracing::debug!(attempt, "{e}; retrying");
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn swipe(&self, profile: &Profile, decision: Decision) -> Result<SwipeOutcome, SourceError> {
        let action = match decision {
            Decision::Like => "like",
            Decision::Pass => "pass",
            Decision::Skip => return Err(SourceError::Permanent("a skip is never sent".into())),
        };
        let body = self
            .get_json(self.url(&[action, &profile.id]), &format!("{action} {}", profile.id))
            .await?;
        parse_swipe(&body, Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tinder-api");
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn v2_recommendations_become_profiles_with_the_nearest_larger_photo() {
        let Recs::Profiles(profiles, rejected) = parse_recs(&fixture("v2_recs_core.json"), 224).unwrap() else {
            panic!("expected profiles")
        };
        assert!(rejected.is_empty());
        assert_eq!(profiles.len(), 3);
        assert_eq!(profiles[0].id, "000000000000000000000001");
        assert_eq!(profiles[0].photos.len(), 3);
        assert!(profiles[0].photos[0].contains("/320x320_"), "{}", profiles[0].photos[0]);
        assert!(profiles.iter().all(|p| !p.placeholder));
        let Recs::Profiles(small, _) = parse_recs(&fixture("v2_recs_core.json"), 64).unwrap() else {
            panic!()
        };
        assert!(small[0].photos[0].contains("/84x84_"));
        let Recs::Profiles(big, _) = parse_recs(&fixture("v2_recs_core.json"), 1000).unwrap() else {
            panic!()
        };
        assert!(big[0].photos[0].contains("/640x640_"));
    }

    #[test]
    fn every_fixture_shape_is_understood() {
        assert_eq!(
            parse_recs(&fixture("v2_recs_rate_limited.json"), 224).unwrap(),
            Recs::RateLimited
        );
        assert_eq!(
            parse_recs(&fixture("v2_recs_out_of_likes.json"), 224).unwrap(),
            Recs::OutOfLikes
        );
        assert!(matches!(
            parse_recs(&fixture("v2_recs_timeout.json"), 224).unwrap(),
            Recs::Empty(_)
        ));
        assert!(matches!(
            parse_recs(&fixture("v2_recs_core_empty.json"), 224).unwrap(),
            Recs::Empty(_)
        ));
        assert!(
            matches!(parse_recs(&fixture("v1_timeout_recommended_users.json"), 224).unwrap(), Recs::Empty(m) if m == "recs timeout")
        );
        let Recs::Profiles(v1, _) = parse_recs(&fixture("v1_recommended_users.json"), 224).unwrap() else {
            panic!()
        };
        assert!(!v1.is_empty() && v1.iter().all(|p| !p.placeholder));
        let Recs::Profiles(one, _) =
            parse_recs(&fixture("v1_recommended_users_with_one_limit_reached.json"), 224).unwrap()
        else {
            panic!()
        };
        assert_eq!(one.iter().filter(|p| p.placeholder).count(), 1);
        let Recs::Profiles(all, _) =
            parse_recs(&fixture("v1_recommended_users_with_all_limit_reached.json"), 224).unwrap()
        else {
            panic!()
        };
        assert!(all.iter().all(|p| p.placeholder));
        assert!(parse_recs(&serde_json::json!({"data": {}}), 224).is_err());
    }

    #[test]
    fn swipe_answers_are_read() {
        let now = Utc::now();
        assert_eq!(
            parse_swipe(&fixture("like.json"), now).unwrap(),
            SwipeOutcome {
                matched: false,
                likes_remaining: Some(100),
                rate_limited_until: None
            }
        );
        let m = parse_swipe(&fixture("like_match.json"), now).unwrap();
        assert!(m.matched);
        assert_eq!(m.likes_remaining, Some(99));
        assert!(parse_swipe(&fixture("pass.json"), now).is_ok());
        let before = DateTime::<Utc>::from_timestamp_millis(1764403200000 - 1000).unwrap();
        assert!(matches!(
            parse_swipe(&fixture("like_rate_limited.json"), before),
            Err(SourceError::RateLimited { .. })
        ));
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let t = Token::new("secret-token-123\n");
        assert!(!format!("{t:?}").contains("secret"));
        assert!(t.header().unwrap().is_sensitive());
    }
}
