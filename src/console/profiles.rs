//! The recorded profiles the console shows next to the journal: every profile folder of the record
//! folder (`source.record_dir`, or the replay folder in test mode), by profile id, with the bounds
//! of the replay source. New folders are picked up as the recorder writes them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::profile::Profile;
use crate::source::replay::{read_bounded, PROFILE_FILE};

/// How often the record folder is listed again for new profiles, at most.
const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// One recorded profile: what it says, and the folder its photo files are in.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The profile as recorded (name and bio are written by strangers: escape them).
    pub profile: Profile,
    /// Its folder (inside the record folder).
    pub folder: PathBuf,
}

impl Recorded {
    /// Whether `photo` is one of the profile's photos and a regular file inside its folder once
    /// links are followed: what the console serves (the bytes are checked again when served).
    pub fn can_serve(&self, photo: &str) -> bool {
        is_recorded(photo)
            && self.profile.photos.iter().any(|p| p == photo)
            && match (self.folder.join(photo).canonicalize(), self.folder.canonicalize()) {
                (Ok(real), Ok(folder)) => real.starts_with(folder) && real.is_file(),
                _ => false,
            }
    }
}

/// The record folder, read as far as it has been listed.
#[derive(Debug)]
pub struct Profiles {
    /// The record folder, when there is one.
    root: Option<PathBuf>,
    /// Largest `profile.json` read.
    max_profile_bytes: u64,
    /// Recorded profiles by id (the first folder of an id wins, as in replay).
    by_id: HashMap<String, Recorded>,
    /// Folders already read (or found unreadable), so each is read once.
    seen: HashSet<PathBuf>,
    /// When the folder was last listed.
    listed: Option<Instant>,
    /// The folder's modification time at the last listing: a new profile folder changes it, so an
    /// unchanged one is not listed again (a record folder may hold many thousands).
    modified: Option<std::time::SystemTime>,
}

impl Profiles {
    /// The profiles of `root` (none when `None`); nothing is read before [`Profiles::refresh`].
    pub fn new(root: Option<PathBuf>, max_profile_bytes: u64) -> Self {
        Profiles {
            root,
            max_profile_bytes,
            by_id: HashMap::new(),
            seen: HashSet::new(),
            listed: None,
            modified: None,
        }
    }

    /// The record folder.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Lists the record folder again (at most every 2 s) and reads the profiles of new folders:
    /// folders inside it only (a link out is not followed), each `profile.json` bounded.
    pub fn refresh(&mut self) {
        let Some(root) = &self.root else { return };
        if self.listed.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
            return;
        }
        self.listed = Some(Instant::now());
        let Ok(real_root) = root.canonicalize() else { return };
        let modified = std::fs::metadata(&real_root).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified == self.modified {
            return;
        }
        self.modified = modified;
        let Ok(entries) = std::fs::read_dir(&real_root) else {
            return;
        };
        let mut folders: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !self.seen.contains(p))
            .collect();
        folders.sort();
        for folder in folders {
            if !folder.is_dir() || !folder.canonicalize().is_ok_and(|real| real.starts_with(&real_root)) {
                self.seen.insert(folder);
                continue;
            }
            // A folder the recorder is still writing has no profile.json yet: read again at the
            // next listing, which the folder's unchanged time must not skip.
            let read = read_bounded(&folder, PROFILE_FILE, self.max_profile_bytes)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Profile>(&bytes).ok());
            let Some(profile) = read else {
                self.modified = None;
                continue;
            };
            self.seen.insert(folder.clone());
            self.by_id
                .entry(profile.id.clone())
                .or_insert(Recorded { profile, folder });
        }
    }

    /// The recorded profile of `id`.
    pub fn get(&self, id: &str) -> Option<&Recorded> {
        self.by_id.get(id)
    }

    /// The display name of `id`, if recorded.
    pub fn name(&self, id: &str) -> Option<&str> {
        self.by_id.get(id).map(|r| r.profile.name.as_str())
    }
}

/// Whether a photo is a recorded file (not a URL the recorder was off for).
pub fn is_recorded(photo: &str) -> bool {
    !(photo.starts_with("http://") || photo.starts_with("https://"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::replay::write_profile;

    #[test]
    fn profiles_are_found_by_id_and_new_folders_are_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let profile = |id: &str| Profile {
            id: id.into(),
            name: format!("Name {id}"),
            bio: String::new(),
            photos: vec!["1.jpg".into()],
            placeholder: false,
            extra: Default::default(),
        };
        std::fs::create_dir(dir.path().join("0001")).unwrap();
        write_profile(&dir.path().join("0001"), &profile("p1")).unwrap();
        std::fs::create_dir(dir.path().join("0003")).unwrap();
        let mut profiles = Profiles::new(Some(dir.path().to_path_buf()), 1 << 20);
        profiles.refresh();
        assert_eq!(profiles.name("p1"), Some("Name p1"));
        // A folder whose profile.json comes later is read once it is there.
        write_profile(&dir.path().join("0003"), &profile("p3")).unwrap();
        profiles.listed = None;
        profiles.refresh();
        assert_eq!(profiles.name("p3"), Some("Name p3"));
        std::fs::create_dir(dir.path().join("0002")).unwrap();
        write_profile(&dir.path().join("0002"), &profile("p2")).unwrap();
        profiles.listed = None;
        profiles.refresh();
        let p2 = profiles.get("p2").unwrap();
        assert!(p2.folder.ends_with("0002"));
        assert!(!p2.can_serve("1.jpg"), "listed, but no file");
        std::fs::write(dir.path().join("0002/1.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("0001/2.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("0001/2.jpg"), dir.path().join("0002/link.jpg")).unwrap();
        assert!(p2.can_serve("1.jpg"));
        assert!(
            !p2.can_serve("link.jpg") && !p2.can_serve("../0001/2.jpg"),
            "not listed or out of the folder"
        );
        assert!(!is_recorded("https://example.com/1.jpg") && is_recorded("1.jpg"));
    }
}
