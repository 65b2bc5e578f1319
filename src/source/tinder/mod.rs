//! The Tinder-style HTTP source: candidates from `GET /v2/recs/core` (or the older `GET /user/recs`),
//! likes through `GET /like/{id}`, passes through `GET /pass/{id}`, with the token in `X-Auth-Token`.
//!
//! It behaves like a careful human client: retries with exponential backoff and jitter on 5xx,
//! timeouts and connection errors; HTTP 429 honours `Retry-After` and rate limits reported inside
//! HTTP 200 bodies become [`SourceError::RateLimited`], so the daemon waits without calling again;
//! out-of-likes notices and `rate_limited_until` become [`SourceError::OutOfLikes`] (or a like
//! outcome that says when the next may go), so likes stop while passes go on; empty or timed-out recommendations back off; a 401 is
//! [`SourceError::Unauthorized`]. A malformed body fails that call only. The token is never logged.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

use crate::config::{RecsApi, TinderSettings};
use crate::metrics::metrics;
use crate::profile::{Decision, Profile, SwipeOutcome};
use crate::source::address::AddressPolicy;
use crate::source::{photo, Candidates, PhotoNeeds, ProfileSource, SetupError, SourceError};

mod parse;
#[cfg(test)]
mod photo_tests;
mod token;

pub use parse::{parse_recs, parse_swipe, pick_photo_url, Recs};
pub use token::{check_base_url, check_credential_name, check_token_host, load_token, Token, TokenScope, AUTH_HEADER};

/// The HTTP source.
pub struct TinderSource {
    /// The client of requests that carry the token (the API, photos in [`TokenScope`]): redirects
    /// are followed within the request's origin only.
    http: reqwest::Client,
    /// The client of photo downloads without the token: every hop and address checked.
    photos: reqwest::Client,
    /// Which URLs get the token: the API's origin and `source.tinder.token_hosts`.
    token_scope: TokenScope,
    /// Which addresses photos may come from (private ones only when the API is on one, or allowed).
    photo_addresses: AddressPolicy,
    /// The API's base URL (`source.tinder.base_url`).
    base: reqwest::Url,
    /// The current token; replaced on SIGHUP.
    token: RwLock<Token>,
    /// `[source.tinder]` as started.
    settings: TinderSettings,
    /// Side of the model's input: which processed photo size to download.
    photo_side: AtomicU32,
    /// After a batch of placeholders only: do not ask again before this.
    hold_until: Mutex<Option<DateTime<Utc>>>,
    /// The next wait after empty recommendations; doubles while they stay empty.
    empty_backoff: Mutex<Duration>,
    /// Largest photo downloaded, in bytes (`pipeline.max_photo_bytes`).
    max_photo_bytes: u64,
    /// Largest API body read, in bytes (`source.max_body_bytes`).
    max_body_bytes: u64,
}

impl std::fmt::Debug for TinderSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TinderSource")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl TinderSource {
    /// A source for `settings` with `token`; photos over `max_photo_bytes` are refused, and photos
    /// on private addresses too unless `allow_private_photo_hosts` or the API is on one.
    pub fn new(
        settings: &TinderSettings,
        token: Token,
        timeout: Duration,
        max_photo_bytes: u64,
        allow_private_photo_hosts: bool,
    ) -> Result<Self, SetupError> {
        let bad_url = |message: String| SetupError::Config {
            key: "source.tinder.base_url",
            message,
        };
        let base =
            reqwest::Url::parse(&settings.base_url).map_err(|e| bad_url(format!("`{}`: {e}", settings.base_url)))?;
        check_base_url(&base).map_err(bad_url)?;
        let photo_addresses = AddressPolicy::for_api(Some(&base), allow_private_photo_hosts);
        Ok(TinderSource {
            http: token::client(timeout, &settings.user_agent)?,
            photos: photo::client(timeout, Some(&settings.user_agent), photo_addresses)?,
            token_scope: TokenScope::new(&base, &settings.token_hosts),
            photo_addresses,
            base,
            token: RwLock::new(token),
            settings: settings.clone(),
            photo_side: AtomicU32::new(224),
            hold_until: Mutex::new(None),
            empty_backoff: Mutex::new(Duration::from_secs(settings.empty_backoff_secs)),
            max_photo_bytes,
            max_body_bytes: crate::source::replay::DEFAULT_MAX_PROFILE_BYTES,
        })
    }

    /// Sets the largest API body read (`source.max_body_bytes`).
    pub fn with_max_body_bytes(mut self, max: u64) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Replaces the token (SIGHUP after a 401, with `on_unauthorized = "wait"`).
    pub fn set_token(&self, token: Token) {
        *self.token.write().expect("token lock") = token;
    }

    /// The header that carries the current token (marked sensitive, so it is never logged).
    fn auth_headers(&self) -> Result<HeaderMap, SourceError> {
        let mut h = HeaderMap::new();
        h.insert(AUTH_HEADER, self.token.read().expect("token lock").header()?);
        Ok(h)
    }

    /// The API URL of a path under the base URL.
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

    /// GETs an API path and parses its JSON, retrying what is worth retrying; each request is
    /// counted under `endpoint` with its status.
    async fn get_json(&self, url: reqwest::Url, what: &str, endpoint: &'static str) -> Result<Value, SourceError> {
        let mut attempt = 0;
        loop {
            let result = self.http.get(url.clone()).headers(self.auth_headers()?).send().await;
            metrics().api_request(endpoint, result.as_ref().ok().map(|r| r.status().as_u16()));
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
                        match read_capped(response, self.max_body_bytes).await {
                            Err(BodyError::TooLarge) => {
                                return Err(SourceError::Transient(format!(
                                    "{what}: the body is over source.max_body_bytes ({} bytes); will try again later",
                                    self.max_body_bytes
                                )))
                            }
                            Err(BodyError::Broken(e)) => format!("{what}: {}", photo::without_url(&e)),
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
            metrics().api_retry(endpoint);
            self.backoff(attempt).await;
            attempt += 1;
        }
    }
}

/// Why a body could not be read whole.
enum BodyError {
    /// Over the cap: the rest was not read.
    TooLarge,
    /// The connection broke off.
    Broken(reqwest::Error),
}

/// Reads a response body of at most `max` bytes, refusing it as soon as it passes the cap (the
/// declared length is checked first), so a stranger's server cannot make the daemon buffer
/// without bound.
async fn read_capped(mut response: reqwest::Response, max: u64) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Broken)? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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

    fn use_photo_needs(&self, needs: PhotoNeeds) {
        self.photo_side.store(needs.side, Ordering::Relaxed);
    }

    fn longest_call(&self) -> Duration {
        // Every attempt may run into the request timeout, and each retry waits at most 30 s.
        let attempts = self.settings.max_retries + 1;
        (Duration::from_secs(self.settings.request_timeout_secs) + Duration::from_secs(30)) * attempts
    }

    fn reload_credentials(&self) -> Result<(), SourceError> {
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
        let body = self.get_json(url, "fetching recommendations", "recs").await?;
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
            Ok(Recs::OutOfLikes) => Err(SourceError::OutOfLikes {
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
        let parsed = photo::parse_url(url)?;
        // The token goes only where it belongs; every other photo host gets a request without it.
        let with_token = self.token_scope.allows(&parsed);
        let client = if with_token { &self.http } else { &self.photos };
        let mut attempt = 0;
        loop {
            let headers = if with_token {
                self.auth_headers()?
            } else {
                HeaderMap::new()
            };
            match photo::fetch(client, &parsed, headers, self.max_photo_bytes, self.photo_addresses).await {
                Err(SourceError::Transient(e)) if attempt < self.settings.max_retries.min(2) => {
                    tracing::debug!(attempt, "{e}; retrying");
                    metrics().api_retry("photo");
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
            .get_json(
                self.url(&[action, &profile.id]),
                &format!("{action} {}", profile.id),
                action,
            )
            .await?;
        parse_swipe(
            &body,
            Utc::now(),
            Duration::from_secs(self.settings.out_of_likes_wait_secs),
        )
    }
}
