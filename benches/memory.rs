//! Peak memory under bomb-like profiles: what the default bounds allow, measured.
//!
//! Each profile holds photos of 6300x6300 16-bit RGBA PNG (39.7 megapixels, just under the default
//! `pipeline.max_photo_pixels`; a few MB on disk, 318 MB decoded). The real `swipebot replay`
//! process decides them at the defaults and at other `pipeline.decodes_at_once`, and its peak
//! resident set (`VmHWM`) is printed next to the bound the README states: the peak of the same replay
//! on ordinary photos plus `decodes_at_once x max_photo_pixels x 13` bytes (8 bytes a pixel for the
//! decoded 16-bit RGBA image, the rest for the conversion's copies).
//!
//! `cargo bench --bench memory [-- --profiles N --photos K]` (the untrained model comes from the
//! `train` binary of the same profile: a plain `cargo bench` builds it, or
//! `cargo build --release -p swipebot-train`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use common::bench::BenchArgs;
use swipebot::profile::Profile;
use swipebot::source::replay::write_profile;

/// What one photo being decoded may cost, in bytes a pixel, as the README states it.
const BYTES_PER_DECODED_PIXEL: f64 = 13.0;

/// Side of the bomb-like photos: 6300 x 6300 = 39.69 megapixels, under the default limit of 40.
const SIDE: u32 = 6300;

/// Writes `profiles` recorded profiles of `photos` copies of `photo` into `dir`.
fn profiles_of(dir: &Path, photo: &[u8], name: &str, profiles: usize, photos: usize) {
    for p in 0..profiles {
        let folder = dir.join(format!("{p:04}"));
        std::fs::create_dir_all(&folder).unwrap();
        let names: Vec<String> = (0..photos).map(|k| format!("{k}.{name}")).collect();
        for n in &names {
            std::fs::write(folder.join(n), photo).unwrap();
        }
        let profile = Profile {
            id: format!("bomb{p:04}"),
            name: String::new(),
            bio: String::new(),
            photos: names,
            placeholder: false,
            extra: Default::default(),
        };
        write_profile(&folder, &profile).unwrap();
    }
}

/// Peak resident set, in MiB, of `swipebot replay` on `profiles` with `model`, the defaults and
/// `decodes_at_once` photos decoded at once.
fn peak_mib(dir: &Path, profiles: &Path, model: &Path, decodes_at_once: usize) -> f64 {
    let run = format!("{}-{decodes_at_once}", profiles.file_name().unwrap().to_string_lossy());
    let config = dir.join(format!("{run}.toml"));
    std::fs::write(&config, format!("[pipeline]\ndecodes_at_once = {decodes_at_once}\n")).unwrap();
    let mut replay = Command::new(common::paths::bin("swipebot"));
    replay
        .arg("replay")
        .arg(profiles)
        .arg("--config")
        .arg(&config)
        .arg("--model")
        .arg(model)
        .arg("--state-dir")
        .arg(dir.join(format!("state-{run}")));
    common::process::peak_rss_kib(&mut replay) as f64 / 1024.0
}

fn main() {
    let args = BenchArgs::parse(
        "cargo bench --bench memory -- [--profiles N] [--photos K]",
        &["--profiles", "--photos"],
        &[],
    )
    .and_then(|a| Ok((a.number("--profiles", 4, 1)?, a.number("--photos", 4, 1)?)))
    .unwrap_or_else(|e| {
        eprintln!("memory: {e}");
        std::process::exit(1);
    });
    let (profiles, photos) = args;
    let dir = tempfile::tempdir().unwrap();
    let model = common::models::untrained_model(dir.path(), 224, true);

    // One bomb-like PNG (uniform, so it is small on disk), copied into every profile.
    let bomb = {
        let image = image::ImageBuffer::<image::Rgba<u16>, Vec<u16>>::from_pixel(
            SIDE,
            SIDE,
            image::Rgba([40000, 20000, 9000, 65535]),
        );
        let mut png = std::io::Cursor::new(Vec::new());
        image.write_to(&mut png, image::ImageFormat::Png).unwrap();
        png.into_inner()
    };
    let ordinary = swipebot_core::synth::jpeg(&swipebot_core::synth::photo(true, 640, 800, 1), 90);
    let bombs = dir.path().join("bombs");
    let plain = dir.path().join("plain");
    profiles_of(&bombs, &bomb, "png", profiles, photos);
    profiles_of(&plain, &ordinary, "jpg", profiles, photos);
    let max_pixels = swipebot_core::preprocess::Limits::default().max_pixels as f64;
    println!(
        "memory: {profiles} profiles of {photos} photos, {SIDE}x{SIDE} 16-bit RGBA PNG ({:.1} MB on disk, {:.0} MB decoded), model 224 gray",
        bomb.len() as f64 / 1e6,
        f64::from(SIDE) * f64::from(SIDE) * 8.0 / 1e6
    );
    let base = peak_mib(dir.path(), &plain, &model, 1);
    println!("  ordinary 640x800 JPEGs, defaults: peak {base:.0} MiB");
    for decodes in [1usize, 2, 4] {
        let peak = peak_mib(dir.path(), &bombs, &model, decodes);
        let bound = base + decodes as f64 * max_pixels * BYTES_PER_DECODED_PIXEL / (1024.0 * 1024.0);
        println!(
            "  bomb-like PNGs, decodes_at_once = {decodes}{}: peak {peak:.0} MiB, bound {bound:.0} MiB ({:.2} of it)",
            if decodes == 1 { " (default)" } else { "" },
            peak / bound
        );
    }
}
