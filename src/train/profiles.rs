//! The threshold for the decision the daemon makes: a profile is liked when **any** of its photos
//! scores at or above the threshold. A threshold chosen photo by photo likes too many profiles: each
//! extra photo is another chance of a false like. So the validation photos are dealt into simulated
//! profiles and the threshold is chosen, and measured, on them.
//!
//! A simulated profile is one class (the photos of one person share their label): its photos are
//! drawn with replacement from the validation photos of that class, as many as a profile has (a
//! fixed `--photos-per-profile`, or drawn from the numbers of photos of recorded profiles,
//! `--profiles DIR`), and the share of LIKE profiles is the validation split's share of LIKE photos.
//! Its score under the any-photo rule is the highest of its photos' scores. Everything is seeded.

use std::path::Path;

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::calibrate::Confusion;

/// Profiles simulated from the validation photos.
pub const SIMULATED_PROFILES: usize = 4000;

/// How many photos the simulated profiles have.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileSizes {
    /// Where the numbers come from: `--photos-per-profile K` or the recorded-profiles folder.
    pub source: String,
    /// `(photos, profiles)`: how many profiles have that many photos (at least one photo each).
    pub counts: Vec<(usize, usize)>,
}

impl ProfileSizes {
    /// The most photos a profile counts with: the daemon's `pipeline.max_photos_per_profile`
    /// default scores no more.
    pub const MAX_PHOTOS: usize = 9;
    /// The most recorded profiles read from `--profiles`.
    pub const MAX_PROFILES: usize = 100_000;
    /// The largest `profile.json` read, in bytes.
    pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

    /// Every profile has `k` photos.
    pub fn fixed(k: usize) -> Self {
        ProfileSizes {
            source: format!("--photos-per-profile {k}"),
            counts: vec![(k.clamp(1, Self::MAX_PHOTOS), 1)],
        }
    }

    /// The numbers of photos of the recorded profiles in `dir` (the replay format: one folder a
    /// profile with a `profile.json` listing its `photos`). Profiles with no photo are left out
    /// (the daemon skips them), longer ones count [`Self::MAX_PHOTOS`]; unreadable ones are left out.
    pub fn from_recorded(dir: &Path) -> anyhow::Result<Self> {
        let entries = std::fs::read_dir(dir).with_context(|| {
            format!(
                "--profiles {}: cannot read the folder (give a folder of recorded profiles, the replay format)",
                dir.display()
            )
        })?;
        let mut by_size = [0usize; Self::MAX_PHOTOS + 1];
        for entry in entries.take(Self::MAX_PROFILES) {
            let Ok(entry) = entry else { continue };
            let file = entry.path().join("profile.json");
            let Ok(meta) = std::fs::metadata(&file) else { continue };
            if !meta.is_file() || meta.len() > Self::MAX_PROFILE_BYTES {
                continue;
            }
            let Ok(bytes) = std::fs::read(&file) else { continue };
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if value.get("placeholder").and_then(serde_json::Value::as_bool) == Some(true) {
                continue;
            }
            let photos = value
                .get("photos")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len);
            if photos > 0 {
                by_size[photos.min(Self::MAX_PHOTOS)] += 1;
            }
        }
        let counts: Vec<(usize, usize)> = by_size
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(k, &n)| (k, n))
            .collect();
        if counts.is_empty() {
            bail!(
                "--profiles {}: no recorded profile with photos found (expected sub-folders with a profile.json \
                 listing `photos`); use --photos-per-profile instead",
                dir.display()
            );
        }
        Ok(ProfileSizes {
            source: dir.display().to_string(),
            counts,
        })
    }

    /// Mean photos a profile.
    pub fn mean(&self) -> f64 {
        let (photos, profiles) = self.counts.iter().fold((0, 0), |(p, n), &(k, c)| (p + k * c, n + c));
        photos as f64 / profiles.max(1) as f64
    }

    /// Draws a number of photos from the distribution.
    fn draw(&self, rng: &mut StdRng) -> usize {
        let total: usize = self.counts.iter().map(|&(_, n)| n).sum();
        let mut pick = rng.random_range(0..total.max(1));
        for &(k, n) in &self.counts {
            if pick < n {
                return k;
            }
            pick -= n;
        }
        self.counts.last().map_or(1, |&(k, _)| k)
    }
}

/// Simulated profiles: each one's highest photo score and whether it is a LIKE profile.
#[derive(Debug, Clone, Default)]
pub struct Simulated {
    /// The highest LIKE probability among the profile's photos (the any-photo rule's score).
    pub scores: Vec<f64>,
    /// Whether the profile is a LIKE one.
    pub like: Vec<bool>,
}

/// Deals the validation photos (LIKE probabilities `p`, labels `like`) into [`SIMULATED_PROFILES`]
/// profiles of `sizes` photos, seeded by `seed`. Empty when there are no photos.
pub fn simulate(p: &[f64], like: &[bool], sizes: &ProfileSizes, seed: u64) -> Simulated {
    let likes: Vec<f64> = p.iter().zip(like).filter(|(_, &l)| l).map(|(&p, _)| p).collect();
    let nopes: Vec<f64> = p.iter().zip(like).filter(|(_, &l)| !l).map(|(&p, _)| p).collect();
    let mut sim = Simulated::default();
    if p.is_empty() {
        return sim;
    }
    let n_like = (SIMULATED_PROFILES as f64 * likes.len() as f64 / p.len() as f64).round() as usize;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7072_6f66_696c_6573);
    for i in 0..SIMULATED_PROFILES {
        let is_like = i < n_like;
        let pool = if is_like { &likes } else { &nopes };
        if pool.is_empty() {
            continue;
        }
        let k = sizes.draw(&mut rng);
        let score = (0..k)
            .map(|_| pool[rng.random_range(0..pool.len())])
            .fold(f64::NEG_INFINITY, f64::max);
        sim.scores.push(score);
        sim.like.push(is_like);
    }
    sim
}

/// Accuracy, precision, recall and F1 of the LIKE decisions at a threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Decisions that were right.
    pub accuracy: f64,
    /// Of the likes, the share that were LIKE (1 when nothing was liked).
    pub precision: f64,
    /// Of the LIKE ones, the share that were liked.
    pub recall: f64,
    /// Harmonic mean of precision and recall (LIKE F1).
    pub f1: f64,
}

impl Rates {
    /// The rates of `c`.
    pub fn of(c: &Confusion) -> Self {
        let liked = c.true_like + c.false_like;
        let like = c.true_like + c.false_nope;
        Rates {
            accuracy: c.accuracy(),
            precision: if liked == 0 {
                1.0
            } else {
                c.true_like as f64 / liked as f64
            },
            recall: if like == 0 {
                0.0
            } else {
                c.true_like as f64 / like as f64
            },
            f1: c.like_f1(),
        }
    }
}

/// How the threshold does on simulated profiles under the any-photo rule (`threshold.profile` in
/// `report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    /// Mean photos a simulated profile.
    pub photos_per_profile: f64,
    /// `--photos-per-profile K` or the `--profiles` folder.
    pub sizes_from: String,
    /// Profiles simulated.
    pub profiles: usize,
    /// Counts of profile decisions.
    pub confusion: Confusion,
    /// Rates of profile decisions.
    #[serde(flatten)]
    pub rates: Rates,
}

impl ProfileReport {
    /// Measures `threshold` on `sim`, simulated with `sizes`.
    pub fn at(sim: &Simulated, sizes: &ProfileSizes, threshold: f64) -> Self {
        let confusion = Confusion::at(&sim.scores, &sim.like, threshold);
        ProfileReport {
            photos_per_profile: sizes.mean(),
            sizes_from: sizes.source.clone(),
            profiles: sim.scores.len(),
            confusion,
            rates: Rates::of(&confusion),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_scores_its_best_photo_and_profiles_keep_the_class_shares() {
        // Every NOPE photo below 0.5 but one in four at 0.45; LIKE photos at 0.6.
        let p: Vec<f64> = (0..40)
            .map(|i| {
                if i < 10 {
                    0.6
                } else if i % 4 == 0 {
                    0.45
                } else {
                    0.1
                }
            })
            .collect();
        let like: Vec<bool> = (0..40).map(|i| i < 10).collect();
        let sim = simulate(&p, &like, &ProfileSizes::fixed(4), 7);
        assert_eq!(sim.scores.len(), SIMULATED_PROFILES);
        let n_like = sim.like.iter().filter(|&&l| l).count();
        assert_eq!(n_like, SIMULATED_PROFILES / 4);
        assert!(sim
            .scores
            .iter()
            .zip(&sim.like)
            .filter(|(_, &l)| l)
            .all(|(&s, _)| s == 0.6));
        // A NOPE profile of 4 photos holds a 0.45 photo with probability 1 - (1 - 7.5/30)^4 = 0.68.
        let high = sim
            .scores
            .iter()
            .zip(&sim.like)
            .filter(|(&s, &l)| !l && s == 0.45)
            .count();
        let share = high as f64 / (SIMULATED_PROFILES - n_like) as f64;
        assert!((share - 0.68).abs() < 0.05, "{share}");
        assert_eq!(
            simulate(&p, &like, &ProfileSizes::fixed(4), 7).scores,
            sim.scores,
            "seeded"
        );
        assert!(simulate(&[], &[], &ProfileSizes::fixed(4), 7).scores.is_empty());
    }

    #[test]
    fn rates_of_a_confusion() {
        let c = Confusion {
            true_like: 6,
            false_like: 2,
            true_nope: 10,
            false_nope: 2,
        };
        let r = Rates::of(&c);
        assert_eq!((r.accuracy, r.precision, r.recall), (0.8, 0.75, 0.75));
        assert!((r.f1 - 0.75).abs() < 1e-12);
        assert_eq!(Rates::of(&Confusion::default()).precision, 1.0);
    }

    #[test]
    fn sizes_come_from_recorded_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, json: &str| {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("profile.json"), json).unwrap();
        };
        write("a", r#"{"id": "a", "photos": ["1.jpg", "2.jpg"]}"#);
        write("b", r#"{"id": "b", "photos": ["1.jpg", "2.jpg"]}"#);
        write(
            "c",
            r#"{"id": "c", "photos": ["1.jpg", "2.jpg", "3.jpg", "4.jpg", "5.jpg", "6.jpg", "7.jpg", "8.jpg", "9.jpg", "10.jpg", "11.jpg"]}"#,
        );
        write("d", r#"{"id": "d", "photos": []}"#);
        write("e", "not json");
        write("f", r#"{"id": "f", "placeholder": true, "photos": ["1.jpg"]}"#);
        let sizes = ProfileSizes::from_recorded(dir.path()).unwrap();
        assert_eq!(sizes.counts, [(2, 2), (ProfileSizes::MAX_PHOTOS, 1)]);
        assert!((sizes.mean() - 13.0 / 3.0).abs() < 1e-12);
        let mut rng = StdRng::seed_from_u64(1);
        let nines = (0..3000).filter(|_| sizes.draw(&mut rng) == 9).count();
        assert!((900..1100).contains(&nines), "{nines}");

        let empty = tempfile::tempdir().unwrap();
        let err = ProfileSizes::from_recorded(empty.path()).unwrap_err().to_string();
        assert!(
            err.contains("no recorded profile") && err.contains("--photos-per-profile"),
            "{err}"
        );
        let err = ProfileSizes::from_recorded(&empty.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--profiles") && err.contains("missing"), "{err}");
    }
}
