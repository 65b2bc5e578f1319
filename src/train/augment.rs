//! Photo augmentation for training (`--augment photo`): each training image is a new view of its
//! cached square, so a few thousand photos stand for many more. Neither recipe uses it by default:
//! on the quality benchmark's photos the resampled views lost to plain crops and mirrors within 15
//! epochs (README, quality).
//!
//! One affine map per image takes the network input back into the square: a region of 60% to 100% of
//! the square's area with an aspect ratio between 3:4 and 4:3 (a scale and aspect crop), rotated by up
//! to 10 degrees about its centre and mirrored half of the time, sampled bilinearly (edges repeated);
//! then brightness and contrast are each scaled by a factor in [0.8, 1.2]. Validation and the daemon
//! keep the plain centre crop of [`swipebot_core::preprocess`]: augmentation exists only here.
//! [`batch`] assembles a training batch with the augmentation a recipe names.

use rand::rngs::StdRng;
use rand::Rng;
use swipebot_core::preprocess::Recipe;
use tch::{Device, Tensor};

use crate::data::Sample;
use crate::recipe::Augment;
use crate::training;

/// Smallest share of the square's area a training view covers.
pub const MIN_AREA: f64 = 0.6;
/// Largest aspect-ratio change (width over height, and its inverse).
pub const MAX_ASPECT: f64 = 4.0 / 3.0;
/// Largest rotation, in degrees, either way.
pub const MAX_ROTATION_DEGREES: f64 = 10.0;
/// Largest relative change of brightness and of contrast, either way.
pub const MAX_JITTER: f64 = 0.2;

/// The random choices of one view, drawn by [`View::draw`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// Centre of the region, in square pixels.
    pub centre: (f64, f64),
    /// Width and height of the region, in square pixels.
    pub size: (f64, f64),
    /// Rotation in radians.
    pub angle: f64,
    /// Left-right mirror.
    pub mirror: bool,
    /// Brightness factor.
    pub brightness: f64,
    /// Contrast factor (about the image's mean).
    pub contrast: f64,
}

impl View {
    /// Draws a view of a square of side `side`.
    pub fn draw(side: u32, rng: &mut StdRng) -> View {
        let side = f64::from(side);
        let area = rng.random_range(MIN_AREA..=1.0) * side * side;
        let aspect = rng.random_range(-MAX_ASPECT.ln()..=MAX_ASPECT.ln()).exp();
        let w = (area * aspect).sqrt().min(side);
        let h = (area / aspect).sqrt().min(side);
        let cx = rng.random_range(w / 2.0..=side - w / 2.0);
        let cy = rng.random_range(h / 2.0..=side - h / 2.0);
        let max_angle = MAX_ROTATION_DEGREES.to_radians();
        View {
            centre: (cx, cy),
            size: (w, h),
            angle: rng.random_range(-max_angle..=max_angle),
            mirror: rng.random_bool(0.5),
            brightness: rng.random_range(1.0 - MAX_JITTER..=1.0 + MAX_JITTER),
            contrast: rng.random_range(1.0 - MAX_JITTER..=1.0 + MAX_JITTER),
        }
    }

    /// The view that is the centre crop: no rotation, mirror or jitter (for tests).
    pub fn centre_crop(recipe: &Recipe) -> View {
        let (side, crop) = (f64::from(recipe.square), f64::from(recipe.crop));
        View {
            centre: (side / 2.0, side / 2.0),
            size: (crop, crop),
            angle: 0.0,
            mirror: false,
            brightness: 1.0,
            contrast: 1.0,
        }
    }
}

/// Renders `view` of an interleaved `square` (`recipe.square` pixels a side) as a planar (CHW)
/// `recipe.crop` x `recipe.crop` input in 0..=255, appended to `out`.
pub fn render(square: &[u8], recipe: &Recipe, view: &View, out: &mut Vec<f32>) {
    let channels = recipe.channels.count();
    let side = recipe.square as usize;
    let crop = recipe.crop as usize;
    assert_eq!(square.len(), side * side * channels, "square has the wrong size");
    let (sin, cos) = view.angle.sin_cos();
    let (sx, sy) = (view.size.0 / crop as f64, view.size.1 / crop as f64);
    let max = (side - 1) as f64;
    let start = out.len();
    out.resize(start + channels * crop * crop, 0.0);
    let planes = &mut out[start..];
    let mut sums = vec![0f64; channels];
    for v in 0..crop {
        for u in 0..crop {
            // Offset from the view's centre, in square pixels, before rotation.
            let mut dx = (u as f64 + 0.5 - crop as f64 / 2.0) * sx;
            let dy = (v as f64 + 0.5 - crop as f64 / 2.0) * sy;
            if view.mirror {
                dx = -dx;
            }
            let x = (view.centre.0 + cos * dx - sin * dy - 0.5).clamp(0.0, max);
            let y = (view.centre.1 + sin * dx + cos * dy - 0.5).clamp(0.0, max);
            let (x0, y0) = (x.floor() as usize, y.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(side - 1), (y0 + 1).min(side - 1));
            let (fx, fy) = (x - x0 as f64, y - y0 as f64);
            for c in 0..channels {
                let at = |xx: usize, yy: usize| f64::from(square[(yy * side + xx) * channels + c]);
                let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
                let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
                let value = (top * (1.0 - fy) + bottom * fy) * view.brightness;
                sums[c] += value;
                planes[c * crop * crop + v * crop + u] = value as f32;
            }
        }
    }
    let n = (crop * crop) as f64;
    for (c, plane) in planes.chunks_exact_mut(crop * crop).enumerate() {
        let mean = sums[c] / n;
        for p in plane {
            *p = ((f64::from(*p) - mean) * view.contrast + mean).clamp(0.0, 255.0) as f32;
        }
    }
}

/// A training batch: the images of `samples` varied as `augment` says (drawing from `rng`), with
/// their labels, as [`training::batch`] returns them.
pub fn batch(
    samples: &[&Sample],
    recipe: &Recipe,
    augment: Augment,
    rng: &mut StdRng,
    device: Device,
) -> (Tensor, Tensor) {
    if augment == Augment::CropMirror {
        return training::batch(samples, recipe, Some(rng), device);
    }
    let mut data = Vec::with_capacity(samples.len() * recipe.input_len());
    for s in samples {
        let view = View::draw(recipe.square, rng);
        render(&s.pixels, recipe, &view, &mut data);
    }
    training::to_tensors(&data, samples, recipe, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use swipebot_core::preprocess::{self, Channels};

    fn gradient(recipe: &Recipe) -> Vec<u8> {
        let (side, ch) = (recipe.square as usize, recipe.channels.count());
        (0..side * side * ch)
            .map(|i| ((i / ch) % side * 255 / side + (i % ch) * 3) as u8)
            .collect()
    }

    #[test]
    fn the_identity_view_is_the_centre_crop() {
        for channels in [Channels::Gray, Channels::Rgb] {
            let recipe = Recipe::for_input(32, channels);
            let square = gradient(&recipe);
            let mut want = Vec::new();
            let o = preprocess::centre_offset(&recipe);
            preprocess::crop_to_tensor(&square, &recipe, o, o, false, &mut want);
            let mut got = Vec::new();
            render(&square, &recipe, &View::centre_crop(&recipe), &mut got);
            assert_eq!(got.len(), want.len());
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            // The square is an odd number of pixels wider than the crop: half-pixel interpolation.
            assert!(worst <= 4.5, "{channels:?}: {worst}");
        }
    }

    #[test]
    fn views_vary_stay_in_range_and_are_seeded() {
        let recipe = Recipe::for_input(32, Channels::Gray);
        let square = gradient(&recipe);
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let view = View::draw(recipe.square, &mut rng);
            let mut out = Vec::new();
            render(&square, &recipe, &view, &mut out);
            (view, out)
        };
        let (a, pa) = draw(1);
        assert_eq!(draw(1), (a, pa.clone()), "same seed, same view");
        let mut mirrors = 0;
        for seed in 0..200 {
            let (v, p) = draw(seed);
            let side = f64::from(recipe.square);
            let area = v.size.0 * v.size.1 / (side * side);
            assert!((MIN_AREA - 1e-9..=1.0 + 1e-9).contains(&area), "{v:?}");
            assert!(v.angle.abs() <= MAX_ROTATION_DEGREES.to_radians() + 1e-12);
            assert!((0.8..=1.2).contains(&v.brightness) && (0.8..=1.2).contains(&v.contrast));
            assert!(p.iter().all(|x| (0.0..=255.0).contains(x)));
            mirrors += usize::from(v.mirror);
        }
        assert!((60..=140).contains(&mirrors), "{mirrors} mirrors in 200");
        assert_ne!(draw(2).1, pa);
    }

    #[test]
    fn a_mirrored_view_of_a_left_right_gradient_runs_the_other_way() {
        let recipe = Recipe::for_input(32, Channels::Gray);
        let square = gradient(&recipe);
        let mut view = View::centre_crop(&recipe);
        let mut plain = Vec::new();
        render(&square, &recipe, &view, &mut plain);
        view.mirror = true;
        let mut mirrored = Vec::new();
        render(&square, &recipe, &view, &mut mirrored);
        assert!(plain[0] < plain[31] && mirrored[0] > mirrored[31]);
        assert!((plain[0] - mirrored[31]).abs() < 1e-3);
    }
}
