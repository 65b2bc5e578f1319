//! Demo material, generated rather than downloaded: a labelled dataset for `train` and a folder of
//! recorded profiles for `swipebot replay`, including the broken cases a real source produces.

use std::path::Path;

use serde_json::json;

use crate::profile::Profile;
use crate::source::replay::{write_profile, PROFILE_FILE};
use swipebot_core::synth;

/// Sizes of the generated material.
#[derive(Debug, Clone, Copy)]
pub struct DemoSize {
    /// Training images per class.
    pub per_class: usize,
    /// Recorded profiles.
    pub profiles: usize,
}

/// Writes `out/dataset/{like,nope}` and `out/profiles`. Profiles alternate between likeable (at least
/// one LIKE-style photo) and not; their `profile.json` carries the intended answer in `expected`.
/// Among them: a profile with a corrupt photo, one with a missing photo, one without photos, a
/// placeholder, and a folder whose `profile.json` is broken.
pub fn write(out: &Path, size: DemoSize) -> std::io::Result<()> {
    synth::write_dataset(&out.join("dataset"), size.per_class, 160, 1)?;
    let profiles = out.join("profiles");
    std::fs::create_dir_all(&profiles)?;
    for i in 0..size.profiles {
        let id = format!("demo{i:04}");
        let dir = profiles.join(format!("{i:04}"));
        std::fs::create_dir_all(&dir)?;
        let likeable = i % 2 == 0;
        let count = 1 + i % 3;
        let mut photos = Vec::new();
        for k in 0..count {
            // A likeable profile has its LIKE-style photo last, so the any-photo rule matters.
            let like_photo = likeable && k == count - 1;
            let name = format!("{k}.jpg");
            let seed = 10_000 + (i * 10 + k) as u64;
            std::fs::write(
                dir.join(&name),
                synth::jpeg(&synth::photo(like_photo, 480, 600, seed), 88),
            )?;
            photos.push(name);
        }
        let mut expected = if likeable { "like" } else { "pass" };
        let mut placeholder = false;
        match i {
            5 => {
                std::fs::write(dir.join("broken.jpg"), b"\xFF\xD8\xFF\xE0 not really a jpeg")?;
                photos.insert(0, "broken.jpg".into());
            }
            7 => photos.push("missing.jpg".into()),
            9 => {
                photos.clear();
                expected = "skip";
            }
            11 => {
                placeholder = true;
                expected = "skip";
            }
            _ => {}
        }
        let mut extra = serde_json::Map::new();
        extra.insert("expected".into(), json!(expected));
        let profile = Profile {
            id,
            name: format!("Demo {i}"),
            bio: "generated for the swipebot demo".into(),
            photos,
            placeholder,
            extra,
        };
        write_profile(&dir, &profile)?;
    }
    if size.profiles > 0 {
        // Deliberately not a profile: cut off in the middle of the JSON.
        let broken = profiles.join("zzzz-broken");
        std::fs::create_dir_all(&broken)?;
        std::fs::write(broken.join(PROFILE_FILE), b"{\"id\": \"broken\", \"photos\": ")?;
    }
    Ok(())
}
