//! `swipebot stats`: the journal summed up per day and per model, for a user who wants the figures
//! without reading JSON lines: profiles, likes, passes, skips by reason, swipes sent, matches, like
//! rate, match rate and the spread of photo scores.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::journal::Record;
use crate::profile::Decision;

/// The figures of one group of decisions (a day, a model, or all).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Profiles decided.
    pub profiles: usize,
    /// Liked.
    pub likes: usize,
    /// Passed.
    pub passes: usize,
    /// Skipped, by reason.
    pub skips: BTreeMap<String, usize>,
    /// Swipes the source acknowledged.
    pub sent: usize,
    /// Likes that produced a match.
    pub matches: usize,
    /// Likes among liked and passed profiles.
    pub like_rate: f64,
    /// Matches among likes sent.
    pub match_rate: f64,
    /// Percentiles of the photo scores: p10, p50, p90 (absent with no scored photo).
    pub score_percentiles: Option<[f32; 3]>,
    /// Every scored photo's score, for the percentiles.
    #[serde(skip)]
    scores: Vec<f32>,
    /// Likes the source acknowledged, for the match rate.
    #[serde(skip)]
    likes_sent: usize,
}

impl Figures {
    /// Counts one record in.
    fn add(&mut self, r: &Record) {
        self.profiles += 1;
        match r.decision {
            Decision::Like => self.likes += 1,
            Decision::Pass => self.passes += 1,
            Decision::Skip => {
                *self
                    .skips
                    .entry(r.skip_kind().unwrap_or_default().to_string())
                    .or_default() += 1
            }
        }
        if r.sent {
            self.sent += 1;
            if r.decision == Decision::Like && !r.mixed_pass {
                self.likes_sent += 1;
            }
        }
        if r.outcome.as_ref().is_some_and(|o| o.matched) {
            self.matches += 1;
        }
        self.scores.extend(r.scores.iter().filter_map(|s| s.score()));
    }

    /// Computes the rates and percentiles once every record is in.
    fn finish(&mut self) {
        let decided = self.likes + self.passes;
        self.like_rate = if decided == 0 {
            0.0
        } else {
            self.likes as f64 / decided as f64
        };
        self.match_rate = if self.likes_sent == 0 {
            0.0
        } else {
            self.matches as f64 / self.likes_sent as f64
        };
        self.scores.sort_by(f32::total_cmp);
        self.score_percentiles =
            (!self.scores.is_empty()).then(|| [0.1, 0.5, 0.9].map(|q| percentile(&self.scores, q)));
    }
}

/// The `q` quantile of sorted `values` (nearest rank).
fn percentile(sorted: &[f32], q: f64) -> f32 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The journal's figures: all, per day (UTC, of the decision), per model (SHA-256).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Every decision.
    pub total: Figures,
    /// Per day, `YYYY-MM-DD`.
    pub days: BTreeMap<String, Figures>,
    /// Per model SHA-256.
    pub models: BTreeMap<String, Figures>,
}

/// Sums `records` up.
pub fn stats(records: &[Record]) -> Stats {
    let mut s = Stats::default();
    for r in records {
        s.total.add(r);
        s.days.entry(r.at.format("%Y-%m-%d").to_string()).or_default().add(r);
        if !r.model_sha256.is_empty() {
            s.models.entry(r.model_sha256.clone()).or_default().add(r);
        }
    }
    s.total.finish();
    s.days.values_mut().for_each(Figures::finish);
    s.models.values_mut().for_each(Figures::finish);
    s
}

/// One table row.
fn row(out: &mut String, name: &str, f: &Figures) {
    let skips: usize = f.skips.values().sum();
    let p = f
        .score_percentiles
        .map_or("-".to_string(), |[a, b, c]| format!("{a:.2}/{b:.2}/{c:.2}"));
    let _ = writeln!(
        out,
        "{name:<14} {:>8} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9.1}% {:>9.1}%  {p}",
        f.profiles,
        f.likes,
        f.passes,
        skips,
        f.sent,
        f.matches,
        100.0 * f.like_rate,
        100.0 * f.match_rate
    );
}

/// The text report: a table per day and per model, then the skip reasons.
pub fn text(s: &Stats) -> String {
    let mut out = String::new();
    let header = format!(
        "{:<14} {:>8} {:>6} {:>6} {:>6} {:>6} {:>7} {:>10} {:>10}  {}\n",
        "", "profiles", "likes", "passes", "skips", "sent", "matches", "like rate", "match rate", "scores p10/p50/p90"
    );
    out.push_str(&header);
    for (day, f) in &s.days {
        row(&mut out, day, f);
    }
    row(&mut out, "all", &s.total);
    if !s.models.is_empty() {
        out.push_str("\nper model\n");
        out.push_str(&header);
        for (sha, f) in &s.models {
            row(&mut out, &sha[..sha.len().min(12)], f);
        }
    }
    if !s.total.skips.is_empty() {
        let reasons: Vec<String> = s.total.skips.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "\nskips: {}", reasons.join(", "));
    }
    out
}

/// Runs `swipebot stats`: reads the journal of `--state-dir` (or of the config's `state.dir`) and
/// prints the figures. Exit 0, or 2 when the journal cannot be read (named).
pub fn run(args: crate::cli::StatsArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let fatal = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::from(crate::cli::EXIT_FATAL)
    };
    let dir = match (&args.state_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(config)) => match crate::config::Settings::load(config) {
            Ok(s) => s.state.dir,
            Err(e) => return fatal(&e),
        },
        (None, None) => return fatal(&"give --state-dir DIR or --config FILE"),
    };
    if !dir.is_dir() {
        return fatal(&format!(
            "no state directory at {} (check --state-dir, or state.dir in the config)",
            dir.display()
        ));
    }
    let records = match crate::journal::Journal::read_all(&dir) {
        Ok(r) => r,
        Err(e) => return fatal(&e),
    };
    let s = stats(&records);
    if args.json {
        println!("{}", serde_json::to_string(&s).expect("the figures serialise"));
    } else {
        print!("{}", text(&s));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{PhotoScore, SwipeOutcome};

    fn record(id: &str, d: Decision, scores: &[f32], sent: bool, matched: bool, day: u32) -> Record {
        let mut r = Record::new(id, d, "replay");
        r.scores = scores
            .iter()
            .map(|&score| PhotoScore::Scored {
                photo: "p.jpg".into(),
                score,
            })
            .collect();
        r.model_sha256 = if day == 1 { "aaa".into() } else { "bbb".into() };
        r.sent = sent;
        r.outcome = sent.then(|| SwipeOutcome {
            matched,
            ..SwipeOutcome::default()
        });
        r.at = chrono::NaiveDate::from_ymd_opt(2026, 11, day)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc();
        r
    }

    #[test]
    fn figures_per_day_and_model() {
        let records = vec![
            record("a", Decision::Like, &[0.9, 0.1], true, true, 1),
            record("b", Decision::Like, &[0.6], true, false, 1),
            record("c", Decision::Pass, &[0.2, 0.3], true, false, 1),
            record("d", Decision::Skip, &[], false, false, 2),
            record("e", Decision::Pass, &[0.1], false, false, 2),
        ];
        let s = stats(&records);
        assert_eq!(s.total.profiles, 5);
        assert_eq!(
            (s.total.likes, s.total.passes, s.total.sent, s.total.matches),
            (2, 2, 3, 1)
        );
        assert!((s.total.like_rate - 0.5).abs() < 1e-12);
        assert!((s.total.match_rate - 0.5).abs() < 1e-12);
        assert_eq!(s.total.skips.get("placeholder or no photos"), Some(&1));
        let day1 = &s.days["2026-11-01"];
        assert_eq!((day1.profiles, day1.likes), (3, 2));
        assert_eq!(day1.score_percentiles, Some([0.1, 0.3, 0.9]));
        assert_eq!(s.models["bbb"].profiles, 2);
        let text = text(&s);
        assert!(text.contains("2026-11-02") && text.contains("per model"), "{text}");
    }
}
