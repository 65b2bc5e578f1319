//! Synthetic photos with a visual rule a CNN can learn: LIKE photos carry vertical stripes, NOPE
//! photos horizontal ones, each with random frequency, phase, contrast, tint and noise. They stand in
//! for real photos in the demo, the tests and the benchmarks, so nothing has to be downloaded.

use std::path::Path;

use image::{ImageEncoder, Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Renders one synthetic photo of `width` x `height` for class `like`, deterministically from `seed`.
pub fn photo(like: bool, width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = StdRng::seed_from_u64(seed);
    let period = rng.random_range(10.0..28.0f32);
    let phase = rng.random_range(0.0..std::f32::consts::TAU);
    let contrast = rng.random_range(50.0..100.0f32);
    let base = rng.random_range(80.0..170.0f32);
    let tint = [
        rng.random_range(0.8..1.2f32),
        rng.random_range(0.8..1.2f32),
        rng.random_range(0.8..1.2f32),
    ];
    let scale = width.min(height) as f32 / 256.0;
    RgbImage::from_fn(width, height, |x, y| {
        let t = if like { x } else { y } as f32 / scale;
        let v = base + contrast * (t / period * std::f32::consts::TAU + phase).sin();
        let noise = rng.random_range(-20.0..20.0f32);
        Rgb(tint.map(|k| (v * k + noise).clamp(0.0, 255.0) as u8))
    })
}

/// Encodes an image as JPEG at the given quality.
pub fn jpeg(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding to memory cannot fail");
    out
}

/// Writes a labelled dataset: `per_class` JPEGs in each of `dir/like` and `dir/nope`.
pub fn write_dataset(dir: &Path, per_class: usize, size: u32, seed: u64) -> std::io::Result<()> {
    for (class, like) in [("like", true), ("nope", false)] {
        let class_dir = dir.join(class);
        std::fs::create_dir_all(&class_dir)?;
        for i in 0..per_class {
            let s = seed
                .wrapping_mul(1_000_003)
                .wrapping_add(i as u64 * 2 + u64::from(like));
            std::fs::write(
                class_dir.join(format!("{class}-{i:04}.jpg")),
                jpeg(&photo(like, size, size, s), 90),
            )?;
        }
    }
    Ok(())
}
