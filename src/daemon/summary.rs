//! Counting what a run did, and the summary printed at its end.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::profile::Decision;

/// Counters the profile tasks update as they go; read once for the [`Summary`].
#[derive(Debug, Default)]
pub struct Stats {
    /// Profiles liked.
    likes: AtomicU64,
    /// Profiles passed.
    passes: AtomicU64,
    /// Profiles skipped (placeholders, no scorable photo, broken profiles).
    skips: AtomicU64,
    /// Profiles the source offered again that an earlier run had decided.
    already_decided: AtomicU64,
    /// Profiles the source offered again while they were being decided, or twice in one batch.
    repeats: AtomicU64,
    /// Photos scored.
    photos_scored: AtomicU64,
    /// Photos that could not be downloaded, decoded or scored.
    photos_failed: AtomicU64,
}

impl Stats {
    /// Counts one profile decided.
    pub fn decided(&self, decision: Decision) {
        let counter = match decision {
            Decision::Like => &self.likes,
            Decision::Pass => &self.passes,
            Decision::Skip => &self.skips,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one profile dropped because it was decided before.
    pub fn already_decided(&self) {
        self.already_decided.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one profile dropped because it is being decided right now.
    pub fn repeat(&self) {
        self.repeats.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one photo scored (`true`) or failed (`false`).
    pub fn photo(&self, scored: bool) {
        let counter = if scored {
            &self.photos_scored
        } else {
            &self.photos_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts as a summary of a run of `seconds`.
    pub fn summary(&self, seconds: f64, interrupted: bool) -> Summary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (likes, passes, skips) = (get(&self.likes), get(&self.passes), get(&self.skips));
        Summary {
            profiles: likes + passes + skips,
            likes,
            passes,
            skips,
            already_decided: get(&self.already_decided),
            repeats: get(&self.repeats),
            photos_scored: get(&self.photos_scored),
            photos_failed: get(&self.photos_failed),
            seconds,
            interrupted,
        }
    }
}

/// What a run did, printed at its end.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Profiles decided in this run.
    pub profiles: u64,
    /// Of which liked.
    pub likes: u64,
    /// Of which passed.
    pub passes: u64,
    /// Of which skipped.
    pub skips: u64,
    /// Profiles seen again that an earlier run had decided.
    pub already_decided: u64,
    /// Profiles offered again while they were being decided (or twice in one batch): dropped.
    pub repeats: u64,
    /// Photos scored.
    pub photos_scored: u64,
    /// Photos that could not be downloaded or decoded.
    pub photos_failed: u64,
    /// Wall time of the run in seconds.
    pub seconds: f64,
    /// Whether the run ended on a signal rather than at the end of the source.
    pub interrupted: bool,
}

impl Summary {
    /// Photos scored per second of wall time.
    pub fn photos_per_second(&self) -> f64 {
        self.photos_scored as f64 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "profiles {} (like {}, pass {}, skip {}; {} already decided), repeats dropped {}, photos scored {}, photos failed {}, {:.1} photos/s over {:.1} s{}",
            self.profiles,
            self.likes,
            self.passes,
            self.skips,
            self.already_decided,
            self.repeats,
            self.photos_scored,
            self.photos_failed,
            self.photos_per_second(),
            self.seconds,
            if self.interrupted { " (interrupted)" } else { "" }
        )
    }
}
