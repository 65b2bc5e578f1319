//! The line `systemctl status` shows (`STATUS=`): what was decided so far, how fast, and what holds
//! the daemon back (a rate limit, the source's pause on likes).

use chrono::{DateTime, Utc};

use crate::daemon::Summary;

/// The status line for `summary`, given the rate limit and the pause on likes in force at `now`.
pub fn status_line(
    summary: &Summary,
    now: DateTime<Utc>,
    rate_limited_until: Option<DateTime<Utc>>,
    likes_paused_until: Option<DateTime<Utc>>,
) -> String {
    let liked = if summary.profiles == 0 {
        0.0
    } else {
        100.0 * summary.likes as f64 / summary.profiles as f64
    };
    let per_minute = summary.profiles as f64 * 60.0 / summary.seconds.max(1.0);
    let mut line = format!(
        "decided {} (like {}, pass {}, skip {}; {liked:.0}% liked), {per_minute:.1}/min",
        summary.profiles, summary.likes, summary.passes, summary.skips
    );
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    if let Some(until) = rate_limited_until.filter(|u| *u > now) {
        line.push_str(&format!("; rate-limited until {}", time(until)));
    }
    if let Some(until) = likes_paused_until.filter(|u| *u > now) {
        line.push_str(&format!("; likes paused until {}", time(until)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::summary::Stats;
    use crate::profile::Decision;

    #[test]
    fn the_line_counts_rates_and_names_what_holds_the_daemon_back() {
        let stats = Stats::default();
        for d in [Decision::Like, Decision::Pass, Decision::Pass, Decision::Skip] {
            stats.decided(d);
        }
        let summary = stats.summary(120.0, false);
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z").unwrap().to_utc();
        let later = now + chrono::Duration::minutes(30);
        assert_eq!(
            status_line(&summary, now, Some(later), None),
            "decided 4 (like 1, pass 2, skip 1; 25% liked), 2.0/min; rate-limited until 2026-11-29 12:30:00 UTC"
        );
        // A limit already over is not shown.
        let line = status_line(&summary, now, Some(now), Some(later));
        assert!(line.ends_with("; likes paused until 2026-11-29 12:30:00 UTC"), "{line}");
    }
}
