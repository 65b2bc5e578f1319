//! When a like may go out: the daily like budget, counted on the UTC day each like was sent, and a
//! pause the source asked for (out of likes), persisted in the state directory so a restart inside
//! it sends no like either. Passes are not held back by either.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, Utc};

use crate::journal::JournalError;
use crate::metrics::metrics;

/// File in the state directory holding the time likes may resume (RFC 3339), while paused.
pub const LIKES_PAUSED_FILE: &str = "likes_paused_until";

/// Why a like cannot go out now, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LikeHold {
    /// The source said no more likes before this time.
    Paused(DateTime<Utc>),
    /// Today's budget is spent; it starts again at this UTC midnight.
    BudgetSpent(DateTime<Utc>),
}

impl LikeHold {
    /// When the hold ends.
    pub fn until(self) -> DateTime<Utc> {
        match self {
            LikeHold::Paused(t) | LikeHold::BudgetSpent(t) => t,
        }
    }
}

/// The likes sent today and the pause, checked and updated under the swipe lane so that no two
/// likes can both see room for one.
#[derive(Debug)]
pub(crate) struct LikeGate {
    /// `<state>/likes_paused_until`.
    path: PathBuf,
    /// The counts and the pause.
    state: Mutex<GateState>,
}

/// What [`LikeGate`] keeps.
#[derive(Debug)]
struct GateState {
    /// Likes may not go out before this time.
    paused_until: Option<DateTime<Utc>>,
    /// The UTC day `sent_today` counts.
    day: NaiveDate,
    /// Likes acknowledged on `day`.
    sent_today: u64,
}

impl LikeGate {
    /// Opens the gate of state directory `dir`: the pause from its file (a time already past is
    /// ignored), and `sent_today` likes already sent today according to the journal.
    pub fn open(dir: &Path, sent_today: u64, now: DateTime<Utc>) -> Result<Self, JournalError> {
        let path = dir.join(LIKES_PAUSED_FILE);
        let paused_until = match std::fs::read_to_string(&path) {
            Ok(text) => match DateTime::parse_from_rfc3339(text.trim()) {
                Ok(t) => Some(t.with_timezone(&Utc)).filter(|t| *t > now),
                Err(e) => {
                    // Unreadable: the safe reading is that likes are paused for now.
                    tracing::warn!(file = %path.display(), "not a time ({e}); likes stay paused for an hour");
                    Some(now + chrono::Duration::hours(1))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(JournalError::Io { path, source }),
        };
        if let Some(until) = paused_until {
            tracing::warn!(%until, "likes are paused (the source said so before the last stop); passes go on");
        }
        metrics().likes_paused(paused_until);
        metrics().likes_today(sent_today);
        Ok(LikeGate {
            path,
            state: Mutex::new(GateState {
                paused_until,
                day: now.date_naive(),
                sent_today,
            }),
        })
    }

    /// Whether one more like may go out at `now` under `budget` likes a day; if not, why and until
    /// when.
    pub fn hold(&self, now: DateTime<Utc>, budget: u64) -> Option<LikeHold> {
        let mut s = self.state.lock().expect("like gate lock");
        s.roll(now);
        if let Some(until) = s.paused_until.filter(|u| *u > now) {
            return Some(LikeHold::Paused(until));
        }
        if s.paused_until.take().is_some() {
            metrics().likes_paused(None);
        }
        (s.sent_today >= budget).then(|| LikeHold::BudgetSpent(crate::pacing::next_budget_reset(now)))
    }

    /// Counts a like the source acknowledged at `at`.
    pub fn count_sent(&self, at: DateTime<Utc>) {
        let mut s = self.state.lock().expect("like gate lock");
        s.roll(at);
        s.sent_today += 1;
        metrics().likes_today(s.sent_today);
    }

    /// Pauses likes until `until` (a later pause already in force stays), and persists it.
    pub fn pause(&self, until: DateTime<Utc>) -> Result<(), JournalError> {
        let mut s = self.state.lock().expect("like gate lock");
        if s.paused_until.is_some_and(|p| p >= until) {
            return Ok(());
        }
        swipebot_core::fsutil::write_atomic(&self.path, until.to_rfc3339().as_bytes()).map_err(|source| {
            JournalError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        s.paused_until = Some(until);
        metrics().likes_paused(Some(until));
        tracing::warn!(%until, "the source says no more likes until then; likes wait, passes go on");
        Ok(())
    }
}

impl GateState {
    /// Starts a new count at the first call of a new UTC day.
    fn roll(&mut self, now: DateTime<Utc>) {
        if now.date_naive() != self.day {
            self.day = now.date_naive();
            self.sent_today = 0;
            metrics().likes_today(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_budget_counts_likes_by_the_day_they_were_sent() {
        let dir = tempfile::tempdir().unwrap();
        let gate = LikeGate::open(dir.path(), 1, at("2026-11-28T23:59:00Z")).unwrap();
        assert_eq!(gate.hold(at("2026-11-28T23:59:00Z"), 2), None);
        gate.count_sent(at("2026-11-28T23:59:30Z"));
        assert_eq!(
            gate.hold(at("2026-11-28T23:59:40Z"), 2),
            Some(LikeHold::BudgetSpent(at("2026-11-29T00:00:00Z")))
        );
        // A new day, a new budget.
        assert_eq!(gate.hold(at("2026-11-29T00:00:01Z"), 2), None);
    }

    #[test]
    fn a_pause_survives_a_restart_and_ends_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2026-11-28T12:00:00Z");
        let until = at("2026-11-28T13:00:00Z");
        LikeGate::open(dir.path(), 0, now).unwrap().pause(until).unwrap();
        let reopened = LikeGate::open(dir.path(), 0, now).unwrap();
        assert_eq!(reopened.hold(now, 100), Some(LikeHold::Paused(until)));
        // A shorter pause does not cut a longer one short.
        reopened.pause(at("2026-11-28T12:30:00Z")).unwrap();
        assert_eq!(reopened.hold(now, 100), Some(LikeHold::Paused(until)));
        assert_eq!(reopened.hold(at("2026-11-28T13:00:01Z"), 100), None);
        let later = LikeGate::open(dir.path(), 0, at("2026-11-28T13:00:01Z")).unwrap();
        assert_eq!(later.hold(at("2026-11-28T13:00:01Z"), 100), None);
    }
}
