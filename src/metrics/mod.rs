//! What the daemon tells Prometheus: one process-wide set of counters, gauges and histograms
//! ([`registry`]), the `[metrics]` HTTP endpoint that serves them with a health check ([`server`],
//! [`health`]).
//!
//! The set is process-wide, like a log: the source, the scoring threads and the profile tasks count
//! where things happen without a handle passed through every layer, and a process has one page.

pub mod health;
pub mod registry;
pub mod server;

use std::sync::LazyLock;

pub use registry::Metrics;

/// The process's metrics, made on first use.
static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}
