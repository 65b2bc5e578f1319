//! The metric families and the one place each is updated. Label values come from closed lists
//! (decisions, photo results, swipe answers, endpoints, HTTP status codes), so no outside input can
//! make the page grow without bound.

use std::time::Duration;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::profile::Decision;
use crate::vision::error::PhotoError;
use swipebot_core::preprocess::PreprocessError;

/// What became of one photo, as the `result` label of `swipebot_photos_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoResult {
    /// Scored by the model.
    Scored,
    /// Not delivered: an HTTP or file error, a refused address, a download over the byte cap, a timeout.
    DownloadError,
    /// Delivered, but the decoder gave up on it (corrupt, cut short).
    DecodeError,
    /// Over `pipeline.max_photo_bytes` or `pipeline.max_photo_pixels` when decoded.
    TooLarge,
    /// Not a JPEG, PNG or WebP image at all.
    NotAnImage,
    /// The scoring engine failed on it (the profile stays undecided).
    EngineError,
}

impl PhotoResult {
    /// Every result, for the series that start at zero.
    pub const ALL: [PhotoResult; 6] = [
        PhotoResult::Scored,
        PhotoResult::DownloadError,
        PhotoResult::DecodeError,
        PhotoResult::TooLarge,
        PhotoResult::NotAnImage,
        PhotoResult::EngineError,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PhotoResult::Scored => "scored",
            PhotoResult::DownloadError => "download_error",
            PhotoResult::DecodeError => "decode_error",
            PhotoResult::TooLarge => "too_large",
            PhotoResult::NotAnImage => "not_an_image",
            PhotoResult::EngineError => "engine_error",
        }
    }

    /// The result a photo error stands for.
    pub fn of(e: &PhotoError) -> PhotoResult {
        match e {
            PhotoError::Read(_) | PhotoError::Fetch(_) | PhotoError::TimedOut { .. } => PhotoResult::DownloadError,
            PhotoError::Decode(PreprocessError::TooManyBytes { .. } | PreprocessError::TooManyPixels { .. }) => {
                PhotoResult::TooLarge
            }
            PhotoError::Decode(PreprocessError::UnknownFormat | PreprocessError::Empty) => PhotoResult::NotAnImage,
            PhotoError::Decode(_) => PhotoResult::DecodeError,
            PhotoError::NotFinite { .. } | PhotoError::Engine(_) => PhotoResult::EngineError,
        }
    }
}

/// The source's answer to one swipe, as the `answer` label of `swipebot_swipes_total`.
pub mod answer {
    /// Taken, and a match.
    pub const MATCH: &str = "match";
    /// Taken, no match.
    pub const NO_MATCH: &str = "no_match";
    /// Refused: no likes left for now (the like waits and is sent again).
    pub const OUT_OF_LIKES: &str = "out_of_likes";
    /// Refused: rate limited (sent again after the wait).
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Failed for now (network, 5xx; sent again).
    pub const TRANSIENT: &str = "transient_error";
    /// Refused for good (journaled with the reason).
    pub const REFUSED: &str = "refused";
    /// The token was refused.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Every answer, for the series that start at zero.
    pub const ALL: [&str; 7] = [
        MATCH,
        NO_MATCH,
        OUT_OF_LIKES,
        RATE_LIMITED,
        TRANSIENT,
        REFUSED,
        UNAUTHORIZED,
    ];
}

/// Every metric of the process, registered in one registry.
pub struct Metrics {
    /// The registry the page is gathered from.
    registry: Registry,
    /// `swipebot_profiles_decided_total{decision, source}`: profiles journaled.
    decided: IntCounterVec,
    /// `swipebot_profiles_dropped_total{reason}`: profiles offered again and dropped.
    dropped: IntCounterVec,
    /// `swipebot_photos_total{result}`.
    photos: IntCounterVec,
    /// `swipebot_swipes_total{kind, answer}`: every swipe call and how the source answered it.
    swipes: IntCounterVec,
    /// `swipebot_api_requests_total{endpoint, status}`: HTTP requests to the API and their status
    /// code (`error` when no answer came).
    api_requests: IntCounterVec,
    /// `swipebot_api_retries_total{endpoint}`: requests sent again after a failure.
    api_retries: IntCounterVec,
    /// `swipebot_rate_limit_waits_total`: waits imposed by a rate limit.
    rate_limit_waits: IntCounter,
    /// `swipebot_rate_limited_until_seconds`: end of the rate-limit wait under way (Unix time), 0
    /// when none.
    rate_limited_until: IntGauge,
    /// `swipebot_likes_paused_until_seconds`: end of the source's pause on likes (Unix time), 0
    /// when none.
    likes_paused_until: IntGauge,
    /// `swipebot_likes_today`: likes the source acknowledged this UTC day.
    likes_today: IntGauge,
    /// `swipebot_daily_like_budget`: `pacing.daily_like_budget` in force.
    like_budget: IntGauge,
    /// `swipebot_profiles_in_flight`: profiles being decided now.
    in_flight: IntGauge,
    /// `swipebot_last_decision_timestamp_seconds`: when the last profile was journaled (Unix
    /// time); the start time until then, so "no decision for an hour" can be alerted on.
    last_decision: IntGauge,
    /// `swipebot_photo_download_seconds`: fetching one photo's bytes.
    download: Histogram,
    /// `swipebot_photo_decode_seconds`: decoding and preprocessing one photo.
    decode: Histogram,
    /// `swipebot_inference_seconds`: one batch through ONNX Runtime.
    inference: Histogram,
    /// `swipebot_inference_batch_size`: photos in one batch.
    batch_size: Histogram,
    /// `swipebot_decision_latency_seconds`: from taking a profile on to its decision (photos
    /// fetched and scored, rule applied), before any swipe waits for the pacer.
    latency: Histogram,
    /// `swipebot_model_info{sha256, input_size, channels}`: 1 for the model in charge.
    model: IntGaugeVec,
    /// `swipebot_scoring_device_info{device}`: 1 for the device ONNX Runtime scores on.
    device: IntGaugeVec,
    /// `swipebot_build_info{version, commit}`: 1.
    build: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registers a metric made from `made` (the names are fixed, so a failure is a bug).
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, made: prometheus::Result<M>) -> M {
    let metric = made.expect("a valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

/// A histogram's options.
fn histogram(name: &str, help: &str, buckets: &[f64]) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
}

impl Metrics {
    /// Every family registered, the label sets known up front at zero.
    pub fn new() -> Self {
        let r = Registry::new();
        let counters =
            |name: &str, help: &str, labels: &[&str]| register(&r, IntCounterVec::new(Opts::new(name, help), labels));
        let gauge = |name: &str, help: &str| register(&r, IntGauge::new(name, help));
        let infos =
            |name: &str, help: &str, labels: &[&str]| register(&r, IntGaugeVec::new(Opts::new(name, help), labels));
        let seconds = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        let m = Metrics {
            decided: counters(
                "swipebot_profiles_decided_total",
                "Profiles decided and journaled, by decision and source.",
                &["decision", "source"],
            ),
            dropped: counters(
                "swipebot_profiles_dropped_total",
                "Profiles offered again and dropped: decided before, or being decided now.",
                &["reason"],
            ),
            photos: counters("swipebot_photos_total", "Photos, by what became of them.", &["result"]),
            swipes: counters(
                "swipebot_swipes_total",
                "Swipes sent to the source, by kind and the source's answer.",
                &["kind", "answer"],
            ),
            api_requests: counters(
                "swipebot_api_requests_total",
                "HTTP requests to the API, by endpoint and status code (error: no answer).",
                &["endpoint", "status"],
            ),
            api_retries: counters(
                "swipebot_api_retries_total",
                "API requests and photo downloads sent again after a failure.",
                &["endpoint"],
            ),
            rate_limit_waits: register(
                &r,
                IntCounter::new("swipebot_rate_limit_waits_total", "Waits a rate limit of the source imposed."),
            ),
            rate_limited_until: gauge(
                "swipebot_rate_limited_until_seconds",
                "End of the rate-limit wait under way, Unix time; 0 when not rate limited.",
            ),
            likes_paused_until: gauge(
                "swipebot_likes_paused_until_seconds",
                "End of the source's pause on likes (out of likes), Unix time; 0 when likes may go out.",
            ),
            likes_today: gauge("swipebot_likes_today", "Likes the source acknowledged this UTC day."),
            like_budget: gauge("swipebot_daily_like_budget", "Likes allowed per UTC day (pacing.daily_like_budget)."),
            in_flight: gauge("swipebot_profiles_in_flight", "Profiles being decided now."),
            last_decision: gauge(
                "swipebot_last_decision_timestamp_seconds",
                "When the last profile was journaled, Unix time (the start time before the first).",
            ),
            download: register(&r, histogram("swipebot_photo_download_seconds", "Time to fetch one photo.", &seconds)),
            decode: register(
                &r,
                histogram("swipebot_photo_decode_seconds", "Time to decode and preprocess one photo.", &seconds),
            ),
            inference: register(
                &r,
                histogram("swipebot_inference_seconds", "Time of one batch through ONNX Runtime.", &seconds),
            ),
            batch_size: register(
                &r,
                histogram(
                    "swipebot_inference_batch_size",
                    "Photos scored in one batch.",
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                ),
            ),
            latency: register(
                &r,
                histogram(
                    "swipebot_decision_latency_seconds",
                    "Time from taking a profile on to its decision, photos fetched and scored (swipe waits not included).",
                    &seconds,
                ),
            ),
            model: infos(
                "swipebot_model_info",
                "The model in charge: its SHA-256, input side and channels.",
                &["sha256", "input_size", "channels"],
            ),
            device: infos(
                "swipebot_scoring_device_info",
                "The device ONNX Runtime scores on (cpu after a CUDA fallback).",
                &["device"],
            ),
            build: infos(
                "swipebot_build_info",
                "The build: version and git commit.",
                &["version", "commit"],
            ),
            registry: r,
        };
        for result in PhotoResult::ALL {
            m.photos.with_label_values(&[result.as_str()]);
        }
        for reason in ["already_decided", "in_flight"] {
            m.dropped.with_label_values(&[reason]);
        }
        for kind in ["like", "pass"] {
            for a in answer::ALL {
                m.swipes.with_label_values(&[kind, a]);
            }
        }
        m.build
            .with_label_values(&[crate::version::VERSION, crate::version::GIT_COMMIT])
            .set(1);
        m.last_decision.set(chrono::Utc::now().timestamp());
        m
    }

    /// The page, in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// The `Content-Type` of [`Metrics::encode`]'s page.
    pub fn content_type(&self) -> &'static str {
        prometheus::TEXT_FORMAT
    }

    /// Makes the decision series of `source` start at zero.
    pub fn source_started(&self, source: &str) {
        for decision in [Decision::Like, Decision::Pass, Decision::Skip] {
            self.decided.with_label_values(&[decision.as_str(), source]);
        }
    }

    /// A profile was journaled with `decision`.
    pub fn decided(&self, decision: Decision, source: &str) {
        self.decided.with_label_values(&[decision.as_str(), source]).inc();
        self.last_decision.set(chrono::Utc::now().timestamp());
    }

    /// A profile offered again was dropped: `already_decided` or `in_flight`.
    pub fn dropped(&self, reason: &'static str) {
        self.dropped.with_label_values(&[reason]).inc();
    }

    /// One photo ended as `result`.
    pub fn photo(&self, result: PhotoResult) {
        self.photos.with_label_values(&[result.as_str()]).inc();
    }

    /// The source answered a swipe of `decision` with `answer` (one of [`answer`]).
    pub fn swipe(&self, decision: Decision, answer: &'static str) {
        self.swipes.with_label_values(&[decision.as_str(), answer]).inc();
    }

    /// One API request to `endpoint` ended with HTTP `status`, or with no answer (`None`).
    pub fn api_request(&self, endpoint: &'static str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.api_requests.with_label_values(&[endpoint, &status]).inc();
    }

    /// A request to `endpoint` is sent again.
    pub fn api_retry(&self, endpoint: &'static str) {
        self.api_retries.with_label_values(&[endpoint]).inc();
    }

    /// A rate-limit wait until `until` begins.
    pub fn rate_limit_wait(&self, until: chrono::DateTime<chrono::Utc>) {
        self.rate_limit_waits.inc();
        self.rate_limited_until
            .set(self.rate_limited_until.get().max(until.timestamp()));
    }

    /// A rate-limit wait until `until` is over: the gauge goes back to 0 unless a later one began.
    pub fn rate_limit_over(&self, until: chrono::DateTime<chrono::Utc>) {
        if self.rate_limited_until.get() <= until.timestamp() {
            self.rate_limited_until.set(0);
        }
    }

    /// When the rate-limit wait under way ends, if one is.
    pub fn rate_limited_until(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let t = self.rate_limited_until.get();
        (t > 0).then(|| chrono::DateTime::from_timestamp(t, 0)).flatten()
    }

    /// Likes are paused until `until` (`None`: not paused).
    pub fn likes_paused(&self, until: Option<chrono::DateTime<chrono::Utc>>) {
        self.likes_paused_until.set(until.map_or(0, |u| u.timestamp()));
    }

    /// When the source's pause on likes ends, if there is one.
    pub fn likes_paused_until(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let t = self.likes_paused_until.get();
        (t > 0).then(|| chrono::DateTime::from_timestamp(t, 0)).flatten()
    }

    /// Likes acknowledged this UTC day.
    pub fn likes_today(&self, n: u64) {
        self.likes_today.set(n as i64);
    }

    /// The daily like budget in force.
    pub fn like_budget(&self, n: u64) {
        self.like_budget.set(n as i64);
    }

    /// A profile is taken on; it counts as in flight until the guard is dropped.
    pub fn in_flight(&'static self) -> InFlight {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// One photo's bytes took `d` to arrive.
    pub fn download_time(&self, d: Duration) {
        self.download.observe(d.as_secs_f64());
    }

    /// One photo took `d` to decode and preprocess.
    pub fn decode_time(&self, d: Duration) {
        self.decode.observe(d.as_secs_f64());
    }

    /// One batch of `photos` took `d` through ONNX Runtime.
    pub fn inference(&self, photos: usize, d: Duration) {
        self.inference.observe(d.as_secs_f64());
        self.batch_size.observe(photos as f64);
    }

    /// A profile was decided `d` after it was taken on.
    pub fn decision_latency(&self, d: Duration) {
        self.latency.observe(d.as_secs_f64());
    }

    /// The model in charge and the device it scores on (at start and after a reload).
    pub fn model(&self, sha256: &str, input_size: u32, channels: u32, device: &str) {
        self.model.reset();
        self.model
            .with_label_values(&[sha256, &input_size.to_string(), &channels.to_string()])
            .set(1);
        self.device.reset();
        self.device.with_label_values(&[device]).set(1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A profile in flight; dropping it (the task ended, or was aborted) counts it out.
#[derive(Debug)]
pub struct InFlight(&'static IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_every_family_and_label_values_are_escaped() {
        let m = Metrics::new();
        m.source_started("replay");
        m.decided(Decision::Like, "replay");
        m.model("ab\"c\\d", 64, 1, "cpu");
        let page = m.encode();
        for family in [
            "swipebot_profiles_decided_total",
            "swipebot_photos_total",
            "swipebot_swipes_total",
            "swipebot_photo_download_seconds",
            "swipebot_inference_batch_size",
            "swipebot_build_info",
        ] {
            assert!(page.contains(&format!("# TYPE {family} ")), "{family} missing:\n{page}");
        }
        assert!(
            page.contains(r#"swipebot_profiles_decided_total{decision="like",source="replay"} 1"#),
            "{page}"
        );
        assert!(page.contains(r#"sha256="ab\"c\\d""#), "{page}");
    }

    #[test]
    fn a_rate_limit_gauge_falls_back_only_when_the_latest_wait_is_over() {
        let m = Metrics::new();
        let t = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
        m.rate_limit_wait(t(2_000));
        m.rate_limit_wait(t(1_000));
        m.rate_limit_over(t(1_000));
        assert_eq!(m.rate_limited_until(), Some(t(2_000)));
        m.rate_limit_over(t(2_000));
        assert_eq!(m.rate_limited_until(), None);
    }
}
