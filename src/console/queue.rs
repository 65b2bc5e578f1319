//! The order of label mode: profiles where the user and the bot most likely disagree come first.
//! First those where a label the user already gave contradicts the photo's score (a liked photo
//! below the threshold, a noped one at or above it), then the rest by how near their best photo
//! scored to the threshold. Only profiles with a scored, recorded photo still unlabelled are in the
//! queue (a photo that could not be scored is not offered: `train` could not read it either).

use std::cmp::Ordering;
use std::collections::HashSet;

use super::index::{Entry, JournalIndex};
use super::label_store::LabelStore;
use super::profiles::{is_recorded, Profiles};
use crate::labels::Label;

/// Where a profile stands in the queue: smaller comes first.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    /// 0 when a label contradicts a score, else 1.
    agreement: u8,
    /// Distance of the best score from the threshold.
    distance: f32,
    /// The profile id, so the order is total.
    id: String,
}

impl Key {
    /// The order of two keys.
    fn cmp(&self, other: &Key) -> Ordering {
        self.agreement
            .cmp(&other.agreement)
            .then(self.distance.total_cmp(&other.distance))
            .then_with(|| self.id.cmp(&other.id))
    }
}

/// The key of an entry: reads its record only when the user has labelled some of its photos.
fn key(entry: &Entry, index: &JournalIndex, labels: &LabelStore, labelled: &HashSet<&str>) -> Key {
    let mut agreement = 1;
    if labelled.contains(&*entry.profile_id) {
        if let Ok(record) = index.record(entry) {
            let contradicts = record.scores.iter().any(|s| {
                let (photo, score) = match s {
                    crate::profile::PhotoScore::Scored { photo, score } => (photo, *score),
                    crate::profile::PhotoScore::Failed { .. } => return false,
                };
                match labels.get(&entry.profile_id, photo) {
                    Some(Label::Like) => score < record.threshold,
                    Some(Label::Nope) => score >= record.threshold,
                    None => false,
                }
            });
            if contradicts {
                agreement = 0;
            }
        }
    }
    Key {
        agreement,
        distance: entry.best.map_or(f32::INFINITY, |b| (b - entry.threshold).abs()),
        id: entry.profile_id.to_string(),
    }
}

/// The next profile to label: the first of the queue after `after` (wrapping around to the start,
/// `after` itself excluded), or the first of all. `None` when nothing is left to label.
pub fn next(index: &JournalIndex, profiles: &Profiles, labels: &LabelStore, after: Option<&str>) -> Option<String> {
    let labelled: HashSet<&str> = labels.latest().keys().map(|(id, _)| id.as_str()).collect();
    let after_key = after
        .and_then(|id| index.entry(id))
        .map(|e| key(e, index, labels, &labelled));
    let mut first: Option<Key> = None;
    let mut next_after: Option<Key> = None;
    for (i, entry) in index.entries().iter().enumerate() {
        let last_of_id = index
            .entry(&entry.profile_id)
            .is_some_and(|e| std::ptr::eq(e, &index.entries()[i]));
        if !last_of_id || entry.best.is_none() || after == Some(&*entry.profile_id) {
            continue;
        }
        let Some(recorded) = profiles.get(&entry.profile_id) else {
            continue;
        };
        let open = entry.scored.iter().any(|p| {
            is_recorded(p)
                && recorded.profile.photos.iter().any(|q| q == &**p)
                && labels.get(&entry.profile_id, p).is_none()
        });
        if !open {
            continue;
        }
        let k = key(entry, index, labels, &labelled);
        if first.as_ref().is_none_or(|f| k.cmp(f) == Ordering::Less) {
            first = Some(k.clone());
        }
        if let Some(a) = &after_key {
            if k.cmp(a) == Ordering::Greater && next_after.as_ref().is_none_or(|n| k.cmp(n) == Ordering::Less) {
                next_after = Some(k);
            }
        }
    }
    next_after.or(first).map(|k| k.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, Record};
    use crate::profile::{Decision, PhotoScore, Profile};
    use crate::source::replay::write_profile;

    #[test]
    fn contradicted_then_near_threshold_profiles_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let (state, rec) = (dir.path().join("state"), dir.path().join("rec"));
        let mut journal = Journal::open(&state).unwrap();
        for (id, score) in [("far", 0.95), ("near", 0.52), ("mid", 0.7), ("wrong", 0.9)] {
            let record = Record {
                scores: vec![
                    PhotoScore::Scored {
                        photo: "1.jpg".into(),
                        score,
                    },
                    PhotoScore::Scored {
                        photo: "2.jpg".into(),
                        score: 0.1,
                    },
                ],
                threshold: 0.5,
                ..Record::new(id, Decision::Like, "replay")
            };
            journal.record(&record).unwrap();
            let folder = rec.join(id);
            std::fs::create_dir_all(&folder).unwrap();
            let profile = Profile {
                id: id.into(),
                name: String::new(),
                bio: String::new(),
                photos: vec!["1.jpg".into(), "2.jpg".into()],
                placeholder: false,
                extra: Default::default(),
            };
            write_profile(&folder, &profile).unwrap();
        }
        let mut index = JournalIndex::new(&state);
        index.refresh().unwrap();
        let mut profiles = Profiles::new(Some(rec), 1 << 20);
        profiles.refresh();
        let mut labels = LabelStore::open(&state).unwrap();
        assert_eq!(next(&index, &profiles, &labels, None).as_deref(), Some("near"));
        assert_eq!(next(&index, &profiles, &labels, Some("near")).as_deref(), Some("mid"));
        assert_eq!(next(&index, &profiles, &labels, Some("wrong")).as_deref(), Some("far"));
        assert_eq!(
            next(&index, &profiles, &labels, Some("far")).as_deref(),
            Some("near"),
            "wraps"
        );
        // The user noped the photo the bot liked most: that profile comes first now.
        labels.add("wrong", &[("1.jpg".into(), Label::Nope)]).unwrap();
        assert_eq!(next(&index, &profiles, &labels, None).as_deref(), Some("wrong"));
        // Fully labelled profiles leave the queue.
        labels.add("wrong", &[("2.jpg".into(), Label::Nope)]).unwrap();
        labels
            .add("near", &[("1.jpg".into(), Label::Like), ("2.jpg".into(), Label::Nope)])
            .unwrap();
        assert_eq!(next(&index, &profiles, &labels, None).as_deref(), Some("mid"));
    }
}
