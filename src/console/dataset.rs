//! `swipebot dataset --out DIR`: the labels in force (`labels.jsonl`) as `DIR/like/` and `DIR/nope/`,
//! the folder `train --data DIR` reads. Each labelled photo is hard-linked from the record folder
//! (copied where a link cannot be made, e.g. across file systems) under a name made of its profile
//! id and photo name, so a second run changes only what changed: a photo whose label flipped moves
//! to the other class, one already there is left alone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::profiles::{is_recorded, Profiles};
use super::Places;
use crate::cli::{DatasetArgs, EXIT_FATAL};
use crate::labels::{read_latest, Label, LABELS};
use crate::source::replay::read_bounded;

/// What one export did.
#[derive(Debug, Default, PartialEq)]
pub struct Exported {
    /// Photos hard-linked.
    pub linked: usize,
    /// Photos copied (no hard link possible).
    pub copied: usize,
    /// Photos already in place.
    pub unchanged: usize,
    /// Photos taken out of the other class (their label flipped).
    pub moved: usize,
    /// Labelled photos that could not be exported, and why.
    pub missing: Vec<String>,
    /// Photos in `like/` and in `nope/` afterwards, of those labelled.
    pub counts: [usize; 2],
}

/// A file name from any text: letters, digits, `-`, `_` and `.` kept, the rest `_`.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The dataset file name of a profile's photo: distinct for distinct (id, photo) pairs, keeping the
/// photo's extension (which `train` goes by).
pub fn file_name(profile_id: &str, photo: &str) -> String {
    let key = swipebot_core::model_info::sha256_hex(format!("{profile_id}\n{photo}").as_bytes());
    let ext = Path::new(photo)
        .extension()
        .map(|e| clean(&e.to_string_lossy()))
        .unwrap_or_else(|| "jpg".into());
    let stem = clean(
        Path::new(photo)
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
            .as_ref(),
    );
    format!("{}-{stem}-{}.{ext}", clean(profile_id), &key[..8])
}

/// Whether two files hold the same bytes (the same inode, or equal contents).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) if x.dev() == y.dev() && x.ino() == y.ino() => true,
        (Ok(x), Ok(y)) if x.len() == y.len() => std::fs::read(a).ok() == std::fs::read(b).ok(),
        _ => false,
    }
}

/// Exports the labels of `state_dir` over the profiles of `record_dir` into `out`.
pub fn export(state_dir: &Path, profiles: &Profiles, out: &Path, max_photo_bytes: u64) -> Result<Exported, String> {
    let labels = read_latest(&state_dir.join(LABELS))?;
    let mut done = Exported::default();
    for class in [Label::Like, Label::Nope] {
        let dir = out.join(class.as_str());
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut keys: Vec<_> = labels.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for ((id, photo), label) in keys {
        let Some(recorded) = profiles.get(id) else {
            done.missing.push(format!("{id} {photo}: the profile was not recorded"));
            continue;
        };
        if !is_recorded(photo) || !recorded.profile.photos.contains(photo) {
            done.missing
                .push(format!("{id} {photo}: not a recorded photo of the profile"));
            continue;
        }
        // Bounded and confined to the profile's folder, as every read of a recorded photo.
        if let Err(e) = read_bounded(&recorded.folder, photo, max_photo_bytes) {
            done.missing.push(format!("{id} {photo}: {e}"));
            continue;
        }
        let source = recorded.folder.join(photo).canonicalize().map_err(|e| e.to_string())?;
        let name = file_name(id, photo);
        let other = if *label == Label::Like {
            Label::Nope
        } else {
            Label::Like
        };
        let stale = out.join(other.as_str()).join(&name);
        if stale.exists() {
            std::fs::remove_file(&stale).map_err(|e| format!("cannot remove {}: {e}", stale.display()))?;
            done.moved += 1;
        }
        let target = out.join(label.as_str()).join(&name);
        done.counts[usize::from(*label == Label::Nope)] += 1;
        if target.exists() && same_file(&source, &target) {
            done.unchanged += 1;
            continue;
        }
        place(&source, &target, &mut done)?;
    }
    Ok(done)
}

/// Puts `source` at `target` (replacing what is there): a hard link made beside it and renamed
/// over it, else an atomic copy.
fn place(source: &Path, target: &Path, done: &mut Exported) -> Result<(), String> {
    let temp: PathBuf = target.with_extension("partial");
    let _ = std::fs::remove_file(&temp);
    if std::fs::hard_link(source, &temp).is_ok() {
        std::fs::rename(&temp, target).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        done.linked += 1;
    } else {
        let bytes = std::fs::read(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
        swipebot_core::fsutil::write_atomic(target, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        done.copied += 1;
    }
    Ok(())
}

/// Runs `swipebot dataset`.
pub fn run(args: DatasetArgs) -> ExitCode {
    let places = match Places::resolve(&args.state) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    let Some(record_dir) = places.record_dir.clone() else {
        eprintln!("error: no recorded photos to export: give --record-dir, or set source.record_dir in the config");
        return ExitCode::from(EXIT_FATAL);
    };
    let mut profiles = Profiles::new(Some(record_dir), places.settings.source.max_body_bytes);
    profiles.refresh();
    match export(
        &places.state_dir,
        &profiles,
        &args.out,
        places.settings.pipeline.max_photo_bytes,
    ) {
        Ok(done) => {
            for why in &done.missing {
                eprintln!("warning: not exported: {why}");
            }
            println!(
                "dataset {}: {} like, {} nope ({} linked, {} copied, {} unchanged, {} moved to the other class, {} not exported)",
                args.out.display(),
                done.counts[0],
                done.counts[1],
                done.linked,
                done.copied,
                done.unchanged,
                done.moved,
                done.missing.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::LabelStore;
    use crate::profile::Profile;
    use crate::source::replay::write_profile;

    #[test]
    fn export_links_is_idempotent_and_follows_a_flipped_label() {
        let dir = tempfile::tempdir().unwrap();
        let (state, rec, out) = (dir.path().join("state"), dir.path().join("rec"), dir.path().join("out"));
        std::fs::create_dir_all(&state).unwrap();
        let folder = rec.join("0001");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("1.jpg"), b"\xFF\xD8\xFFone").unwrap();
        std::fs::write(folder.join("2.jpg"), b"\xFF\xD8\xFFtwo").unwrap();
        let profile = Profile {
            id: "p/1".into(),
            name: String::new(),
            bio: String::new(),
            photos: vec!["1.jpg".into(), "2.jpg".into(), "https://cdn.example/3.jpg".into()],
            placeholder: false,
            extra: Default::default(),
        };
        write_profile(&folder, &profile).unwrap();
        let mut profiles = Profiles::new(Some(rec), 1 << 20);
        profiles.refresh();
        let mut labels = LabelStore::open(&state).unwrap();
        labels
            .add(
                "p/1",
                &[
                    ("1.jpg".into(), Label::Like),
                    ("2.jpg".into(), Label::Nope),
                    ("https://cdn.example/3.jpg".into(), Label::Like),
                ],
            )
            .unwrap();
        let first = export(&state, &profiles, &out, 1 << 20).unwrap();
        assert_eq!(
            (first.linked, first.unchanged, first.missing.len()),
            (2, 0, 1),
            "{first:?}"
        );
        let liked = out.join("like").join(file_name("p/1", "1.jpg"));
        assert_eq!(std::fs::read(&liked).unwrap(), b"\xFF\xD8\xFFone");
        assert!(!file_name("p/1", "1.jpg").contains('/'));
        let again = export(&state, &profiles, &out, 1 << 20).unwrap();
        assert_eq!((again.linked, again.unchanged), (0, 2), "{again:?}");
        labels.add("p/1", &[("1.jpg".into(), Label::Nope)]).unwrap();
        let flipped = export(&state, &profiles, &out, 1 << 20).unwrap();
        assert_eq!((flipped.moved, flipped.counts), (1, [0, 2]), "{flipped:?}");
        assert!(!liked.exists() && out.join("nope").join(file_name("p/1", "1.jpg")).exists());
    }
}
