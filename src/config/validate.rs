//! Checking the settings before anything runs: one table of numeric keys and their bounds, then
//! the few checks that relate keys to each other or parse a value.

use crate::config::{ConfigError, Settings, SourceKind};
use crate::source::tinder::{check_base_url, check_credential_name, check_token_host};
use crate::vision::scorer::Device;

/// One numeric key and the closed range its value must lie in.
struct Bound {
    /// The dotted key, as named in errors.
    key: &'static str,
    /// Reads the key's value (as f64: every bound below is exact in it).
    value: fn(&Settings) -> Option<f64>,
    /// Smallest accepted value.
    min: f64,
    /// Largest accepted value.
    max: f64,
}

/// Every numeric key with a range. A key of a section that is not in use (the HTTP source's, with a
/// replay) is still checked, so a config is valid or not whatever `source.kind` says.
const BOUNDS: &[Bound] = &[
    Bound {
        key: "model.threshold",
        value: |s| s.model.threshold.map(f64::from),
        min: 0.0,
        max: 1.0,
    },
    Bound {
        key: "runtime.intra_threads",
        value: |s| Some(s.runtime.intra_threads as f64),
        min: 1.0,
        max: 64.0,
    },
    Bound {
        key: "runtime.scorer_threads",
        value: |s| Some(s.runtime.scorer_threads as f64),
        min: 1.0,
        max: 16.0,
    },
    Bound {
        key: "runtime.batch_size",
        value: |s| Some(s.runtime.batch_size as f64),
        min: 1.0,
        max: 256.0,
    },
    Bound {
        key: "source.batch",
        value: |s| Some(s.source.batch as f64),
        min: 1.0,
        max: 100.0,
    },
    Bound {
        key: "source.min_wait_secs",
        value: |s| Some(s.source.min_wait_secs as f64),
        min: 1.0,
        max: 3600.0,
    },
    Bound {
        key: "source.max_wait_secs",
        value: |s| Some(s.source.max_wait_secs as f64),
        min: 60.0,
        max: 604_800.0,
    },
    Bound {
        key: "source.max_body_bytes",
        value: |s| Some(s.source.max_body_bytes as f64),
        min: 65_536.0,
        max: (256u64 << 20) as f64,
    },
    Bound {
        key: "source.tinder.request_timeout_secs",
        value: |s| Some(s.source.tinder.request_timeout_secs as f64),
        min: 1.0,
        max: 300.0,
    },
    Bound {
        key: "source.tinder.max_retries",
        value: |s| Some(f64::from(s.source.tinder.max_retries)),
        min: 0.0,
        max: 10.0,
    },
    Bound {
        key: "source.tinder.retry_base_ms",
        value: |s| Some(s.source.tinder.retry_base_ms as f64),
        min: 1.0,
        max: 60_000.0,
    },
    Bound {
        key: "source.tinder.empty_backoff_secs",
        value: |s| Some(s.source.tinder.empty_backoff_secs as f64),
        min: 1.0,
        max: 86_400.0,
    },
    Bound {
        key: "source.tinder.empty_backoff_max_secs",
        value: |s| Some(s.source.tinder.empty_backoff_max_secs as f64),
        min: 1.0,
        max: 86_400.0,
    },
    Bound {
        key: "source.tinder.rate_limit_wait_secs",
        value: |s| Some(s.source.tinder.rate_limit_wait_secs as f64),
        min: 1.0,
        max: 604_800.0,
    },
    Bound {
        key: "source.tinder.out_of_likes_wait_secs",
        value: |s| Some(s.source.tinder.out_of_likes_wait_secs as f64),
        min: 1.0,
        max: 604_800.0,
    },
    Bound {
        key: "pacing.swipes_per_minute",
        value: |s| Some(f64::from(s.pacing.swipes_per_minute)),
        min: 1.0,
        max: 600.0,
    },
    Bound {
        key: "pacing.jitter",
        value: |s| Some(s.pacing.jitter),
        min: 0.0,
        max: 1.0,
    },
    Bound {
        key: "pacing.daily_like_budget",
        value: |s| Some(s.pacing.daily_like_budget as f64),
        min: 0.0,
        max: 100_000.0,
    },
    Bound {
        key: "pacing.pass_fraction",
        value: |s| Some(s.pacing.pass_fraction),
        min: 0.0,
        max: 1.0,
    },
    Bound {
        key: "pipeline.profiles_in_flight",
        value: |s| Some(s.pipeline.profiles_in_flight as f64),
        min: 1.0,
        max: 64.0,
    },
    Bound {
        key: "pipeline.photo_concurrency",
        value: |s| Some(s.pipeline.photo_concurrency as f64),
        min: 1.0,
        max: 64.0,
    },
    Bound {
        key: "pipeline.photo_timeout_secs",
        value: |s| Some(s.pipeline.photo_timeout_secs as f64),
        min: 1.0,
        max: 600.0,
    },
    Bound {
        key: "pipeline.max_photo_bytes",
        value: |s| Some(s.pipeline.max_photo_bytes as f64),
        min: 1024.0,
        max: (256u64 << 20) as f64,
    },
    Bound {
        key: "pipeline.max_photo_pixels",
        value: |s| Some(s.pipeline.max_photo_pixels as f64),
        min: 1.0,
        max: 400_000_000.0,
    },
    Bound {
        key: "pipeline.decodes_at_once",
        value: |s| Some(s.pipeline.decodes_at_once as f64),
        min: 1.0,
        max: 64.0,
    },
    Bound {
        key: "pipeline.max_photos_per_profile",
        value: |s| Some(s.pipeline.max_photos_per_profile as f64),
        min: 1.0,
        max: 100.0,
    },
    Bound {
        key: "pipeline.max_engine_failures",
        value: |s| Some(f64::from(s.pipeline.max_engine_failures)),
        min: 1.0,
        max: 1000.0,
    },
    Bound {
        key: "pipeline.shutdown_grace_secs",
        value: |s| Some(s.pipeline.shutdown_grace_secs as f64),
        min: 0.0,
        max: 300.0,
    },
    Bound {
        key: "metrics.request_timeout_secs",
        value: |s| Some(s.metrics.request_timeout_secs as f64),
        min: 1.0,
        max: 300.0,
    },
    Bound {
        key: "metrics.max_connections",
        value: |s| Some(s.metrics.max_connections as f64),
        min: 1.0,
        max: 1024.0,
    },
    Bound {
        // hyper reads no request head in less than 8 KiB.
        key: "metrics.max_request_bytes",
        value: |s| Some(s.metrics.max_request_bytes as f64),
        min: 8192.0,
        max: 1_048_576.0,
    },
    Bound {
        key: "metrics.stalled_after_secs",
        value: |s| Some(s.metrics.stalled_after_secs as f64),
        min: 5.0,
        max: 86_400.0,
    },
    Bound {
        key: "console.page_size",
        value: |s| Some(s.console.page_size as f64),
        min: 1.0,
        max: 500.0,
    },
    Bound {
        key: "console.max_body_bytes",
        value: |s| Some(s.console.max_body_bytes as f64),
        min: 1024.0,
        max: 1_048_576.0,
    },
];

/// A check that failed: `key` and what is wrong with it.
fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Checks every value's range, then the keys that depend on each other; the error names the first
/// bad key.
pub(super) fn validate(s: &Settings) -> Result<(), ConfigError> {
    for b in BOUNDS {
        if let Some(v) = (b.value)(s) {
            // NaN fails both comparisons, so it is refused too.
            if !(v >= b.min && v <= b.max) {
                return Err(invalid(
                    b.key,
                    format!("must be between {} and {}, got {v}", b.min, b.max),
                ));
            }
        }
    }
    if s.runtime.require_gpu && s.runtime.device != Device::Cuda {
        return Err(invalid("runtime.require_gpu", "needs runtime.device = \"cuda\""));
    }
    if s.source.kind == SourceKind::Replay && s.source.replay_dir.is_none() {
        return Err(invalid(
            "source.replay_dir",
            "is required when source.kind = \"replay\"",
        ));
    }
    if s.source.min_wait_secs > s.source.max_wait_secs {
        return Err(invalid(
            "source.min_wait_secs",
            format!(
                "must be at most source.max_wait_secs ({}), got {}",
                s.source.max_wait_secs, s.source.min_wait_secs
            ),
        ));
    }
    let t = &s.source.tinder;
    if t.empty_backoff_secs > t.empty_backoff_max_secs {
        return Err(invalid(
            "source.tinder.empty_backoff_secs",
            format!(
                "must be at most source.tinder.empty_backoff_max_secs ({}), got {}",
                t.empty_backoff_max_secs, t.empty_backoff_secs
            ),
        ));
    }
    if let Err(message) = check_credential_name(&t.credential_name) {
        return Err(invalid("source.tinder.credential_name", message));
    }
    if let Some(message) = t.token_hosts.iter().find_map(|h| check_token_host(h).err()) {
        return Err(invalid("source.tinder.token_hosts", message));
    }
    if s.source.kind == SourceKind::Tinder {
        let url = reqwest::Url::parse(&t.base_url);
        let Ok(url) = url else {
            return Err(invalid(
                "source.tinder.base_url",
                format!("`{}` is not an http(s) URL", t.base_url),
            ));
        };
        if let Err(message) = check_base_url(&url) {
            return Err(invalid("source.tinder.base_url", message));
        }
        if t.token_env.is_empty() {
            return Err(invalid("source.tinder.token_env", "must name an environment variable"));
        }
    }
    if let Some(listen) = &s.metrics.listen {
        if let Err(message) = crate::metrics::server::parse_listen(listen) {
            return Err(invalid("metrics.listen", message));
        }
    }
    if let Err(message) = crate::metrics::server::parse_listen(&s.console.listen) {
        return Err(invalid("console.listen", message));
    }
    if tracing_subscriber::EnvFilter::try_new(&s.log.level).is_err() {
        return Err(invalid(
            "log.level",
            format!(
                "`{}` is not a valid filter (try `info` or `swipebot=debug`)",
                s.log.level
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_numeric_key_has_a_bound() {
        fn leaves(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        leaves(&key, v, out);
                    }
                }
                toml::Value::Integer(_) | toml::Value::Float(_) => out.push(prefix.to_string()),
                _ => {}
            }
        }
        let mut numeric = Vec::new();
        let defaults: toml::Value = toml::from_str(&Settings::default().to_toml()).unwrap();
        leaves("", &defaults, &mut numeric);
        numeric.push("model.threshold".into());
        let bounded: Vec<&str> = BOUNDS.iter().map(|b| b.key).collect();
        let missing: Vec<&String> = numeric.iter().filter(|k| !bounded.contains(&k.as_str())).collect();
        assert!(missing.is_empty(), "numeric keys without a range check: {missing:?}");
    }

    #[test]
    fn every_bound_refuses_the_value_just_outside_it_and_names_its_key() {
        for b in BOUNDS {
            let ok = Settings {
                source: crate::config::SourceSettings {
                    replay_dir: Some("p".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            assert_eq!(validate(&ok), Ok(()), "the defaults are valid");
            // Find a value outside the range by probing the getter with a settings value that
            // sets this key: done through TOML, the way a user writes it.
            let (section, key) = b.key.rsplit_once('.').unwrap();
            let outside = if b.min > 0.0 { b.min - 1.0 } else { b.max + 1.0 };
            // Integer keys take `5`, float keys `5.0`: try the one, then the other.
            let parsed = [format!("{}", outside as i64), format!("{outside:?}")]
                .iter()
                .map(|v| toml::from_str::<Settings>(&format!("[{section}]\n{key} = {v}\n")))
                .find_map(Result::ok);
            let Some(mut s) = parsed else {
                // Only a negative value for an unsigned key is refused by the parser itself.
                assert!(outside < 0.0, "{} = {outside} does not parse", b.key);
                continue;
            };
            s.source.replay_dir = Some("p".into());
            match validate(&s) {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, b.key),
                other => panic!("{} = {outside}: expected an error naming the key, got {other:?}", b.key),
            }
        }
    }

    /// Settings for the HTTP source, otherwise the defaults.
    fn tinder() -> Settings {
        let mut s = Settings::default();
        s.source.kind = SourceKind::Tinder;
        s
    }

    /// The key named by `validate`'s error, or `None` when the settings pass.
    fn failing_key(s: &Settings) -> Option<&'static str> {
        match validate(s) {
            Ok(()) => None,
            Err(ConfigError::Invalid { key, .. }) => Some(key),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn a_credential_name_cannot_leave_the_credentials_directory() {
        for bad in ["/etc/swipebot/token", "../token", "..", "a/../../b", "sub/token", ""] {
            let mut s = tinder();
            s.source.tinder.credential_name = bad.into();
            assert_eq!(failing_key(&s), Some("source.tinder.credential_name"), "{bad:?}");
        }
        let mut s = tinder();
        s.source.tinder.credential_name = "swipebot-token.v2".into();
        assert_eq!(failing_key(&s), None);
    }

    #[test]
    fn the_token_never_goes_over_plain_http_off_this_machine_and_token_hosts_are_bare_names() {
        for (base, ok) in [
            ("https://api.gotinder.com", true),
            ("http://127.0.0.1:8080", true),
            ("http://[::1]:8080", true),
            ("http://localhost:8080/api", true),
            ("http://api.gotinder.com", false),
            ("http://192.168.1.10:8080", false),
            ("ftp://api.gotinder.com", false),
        ] {
            let mut s = tinder();
            s.source.tinder.base_url = base.into();
            let want = (!ok).then_some("source.tinder.base_url");
            assert_eq!(failing_key(&s), want, "{base}");
        }
        for (host, ok) in [
            ("images-ssl.gotinder.com", true),
            ("Images-SSL.gotinder.com.", true),
            ("https://images-ssl.gotinder.com", false),
            ("images-ssl.gotinder.com:443", false),
            ("images-ssl.gotinder.com/x", false),
            ("user@images-ssl.gotinder.com", false),
            ("", false),
        ] {
            let mut s = tinder();
            s.source.tinder.token_hosts = vec![host.into()];
            let want = (!ok).then_some("source.tinder.token_hosts");
            assert_eq!(failing_key(&s), want, "{host:?}");
        }
    }
}
