//! Reading the API's bodies: recommendations of either version into profiles (with the photo size
//! that suits the model), and what a like or pass answered.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

use crate::profile::{Profile, SwipeOutcome};
use crate::source::{Rejected, SourceError};

/// What one recommendations body means.
#[derive(Debug, PartialEq)]
pub enum Recs {
    /// Profiles (placeholders included, marked) and the results that could not be read.
    Profiles(Vec<Profile>, Vec<Rejected>),
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
    // Sizes come from a stranger's JSON: the area is computed where no width or height can overflow.
    let area = |(w, h, _): &&(u64, u64, &str)| u128::from(*w) * u128::from(*h);
    files
        .iter()
        .filter(|(w, h, _)| *w >= side && *h >= side)
        .min_by_key(area)
        .or_else(|| files.iter().max_by_key(area))
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

/// One user object of a recommendations body as a profile; the error says what is missing.
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
                        rejected.push(Rejected { id, reason: e });
                    }
                }
            }
            _ => rejected.push(Rejected {
                id: format!("result {i}"),
                reason: "neither a user nor a message".into(),
            }),
        }
    }
    if profiles.is_empty() && rejected.is_empty() && out_of_likes {
        return Ok(Recs::OutOfLikes);
    }
    Ok(Recs::Profiles(profiles, rejected))
}

/// What a like or pass answered, read at `now`. `out_of_likes_wait` is how long likes pause when the
/// API says none are left without saying until when (or with a time already past).
///
/// - `rate_limited_until` in the future with no likes left: the like was not taken
///   ([`SourceError::OutOfLikes`]); it is sent again once the time has come.
/// - no likes left otherwise (`likes_remaining: 0`, no time or a past one): the like was taken, and
///   the outcome's `rate_limited_until` says when the next one may go (now + `out_of_likes_wait`).
pub fn parse_swipe(body: &Value, now: DateTime<Utc>, out_of_likes_wait: Duration) -> Result<SwipeOutcome, SourceError> {
    if !body.is_object() {
        return Err(SourceError::Transient("the swipe answer is not a JSON object".into()));
    }
    let until = body["rate_limited_until"]
        .as_i64()
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    let likes_remaining = body["likes_remaining"].as_u64();
    let future = until.filter(|u| *u > now);
    if let Some(until) = future {
        if likes_remaining.unwrap_or(0) == 0 {
            return Err(SourceError::OutOfLikes { until });
        }
    }
    let rate_limited_until = match (future, likes_remaining) {
        (Some(until), _) => Some(until),
        (None, Some(0)) => Some(now + out_of_likes_wait),
        (None, _) => None,
    };
    Ok(SwipeOutcome {
        matched: body["match"].is_object(),
        likes_remaining,
        rate_limited_until,
    })
}

/// The tests' one fixture loader, shared with the integration tests and the benchmarks.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../tests/common/paths.rs"]
mod test_paths;

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture of `tests/fixtures/tinder-api`, parsed.
    fn fixture(name: &str) -> Value {
        serde_json::from_str(&super::test_paths::tinder_fixture(name)).unwrap()
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
    fn photo_sizes_near_the_integer_limits_neither_overflow_nor_panic() {
        let huge = u64::MAX;
        let photo = serde_json::json!({"url": "https://h/original.jpg", "processedFiles": [
            {"width": huge, "height": huge, "url": "https://h/huge.jpg"},
            {"width": 1u64 << 32, "height": 1u64 << 32, "url": "https://h/big.jpg"},
            {"width": 84, "height": 84, "url": "https://h/84.jpg"},
        ]});
        assert_eq!(pick_photo_url(&photo, 224).as_deref(), Some("https://h/big.jpg"));
        assert_eq!(pick_photo_url(&photo, 64).as_deref(), Some("https://h/84.jpg"));
        let only_huge = serde_json::json!({"processedFiles": [
            {"width": huge, "height": 2, "url": "https://h/a.jpg"},
            {"width": huge, "height": huge, "url": "https://h/b.jpg"},
        ]});
        assert_eq!(pick_photo_url(&only_huge, 224).as_deref(), Some("https://h/b.jpg"));
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
        let wait = Duration::from_secs(3600);
        assert_eq!(
            parse_swipe(&fixture("like.json"), now, wait).unwrap(),
            SwipeOutcome {
                matched: false,
                likes_remaining: Some(100),
                rate_limited_until: None
            }
        );
        let m = parse_swipe(&fixture("like_match.json"), now, wait).unwrap();
        assert!(m.matched);
        assert_eq!(m.likes_remaining, Some(99));
        assert!(parse_swipe(&fixture("pass.json"), now, wait).is_ok());
        // Before its time: the like was not taken, likes stop until then.
        let until = DateTime::<Utc>::from_timestamp_millis(1764403200000).unwrap();
        let before = until - chrono::Duration::seconds(1);
        assert!(matches!(
            parse_swipe(&fixture("like_rate_limited.json"), before, wait),
            Err(SourceError::OutOfLikes { until: u }) if u == until
        ));
        // After its time, still no likes left: taken, but the next like waits the configured time.
        let after = until + chrono::Duration::seconds(1);
        let o = parse_swipe(&fixture("like_rate_limited.json"), after, wait).unwrap();
        assert_eq!(o.rate_limited_until, Some(after + wait));
        let o = parse_swipe(&serde_json::json!({"match": false, "likes_remaining": 0}), now, wait).unwrap();
        assert_eq!(o.rate_limited_until, Some(now + wait));
    }
}
