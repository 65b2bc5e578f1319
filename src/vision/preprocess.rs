//! Preprocessing, defined once: the same bytes become the same pixels in `train` and in the daemon.
//!
//! The recipe follows the original experiment: decode, apply the EXIF orientation, convert to grayscale
//! (or RGB), take the central square and resize it to `square` x `square` (256 by default; `train`
//! caches images at this stage), then crop `crop` x `crop` (224 by default): at random for training,
//! in the centre for validation and scoring. Pixel values stay in 0..=255: the model graph subtracts
//! its own mean and applies its own scale.

use std::borrow::Cow;
use std::io::Cursor;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageReader};

/// How many colour channels the model reads: the original recipe used grayscale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    /// One channel, luma.
    Gray,
    /// Three channels, red, green and blue.
    Rgb,
}

impl Channels {
    /// The number of channels.
    pub fn count(self) -> usize {
        match self {
            Channels::Gray => 1,
            Channels::Rgb => 3,
        }
    }

    /// The channel mode for a channel count, if it is one the model supports (1 or 3).
    pub fn from_count(count: usize) -> Option<Self> {
        match count {
            1 => Some(Channels::Gray),
            3 => Some(Channels::Rgb),
            _ => None,
        }
    }
}

/// Bounds on what an image may cost before it is decoded, against huge files and decompression bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded size accepted, in bytes.
    pub max_bytes: u64,
    /// Largest decoded size accepted, in pixels (width times height).
    pub max_pixels: u64,
}

impl Default for Limits {
    /// 20 MiB and 40 megapixels: far above any profile photo, far below what would exhaust memory.
    fn default() -> Self {
        Limits {
            max_bytes: 20 * 1024 * 1024,
            max_pixels: 40_000_000,
        }
    }
}

/// The geometry of preprocessing: central square resized to `square`, then a `crop` x `crop` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    /// Side of the resized central square (256 in the original recipe).
    pub square: u32,
    /// Side of the crop the network reads (224 in the original recipe).
    pub crop: u32,
    /// Colour channels the network reads.
    pub channels: Channels,
}

/// The one resize filter this recipe uses; named in the model metadata so a model can say so.
pub const FILTER: &str = "bilinear";

impl Recipe {
    /// The recipe for a network input of `crop` pixels, keeping the original 256/224 ratio.
    pub fn for_input(crop: u32, channels: Channels) -> Self {
        Recipe {
            square: (crop * 8).div_ceil(7),
            crop,
            channels,
        }
    }

    /// The recipe as written in the model metadata (`swipebot.resize`), e.g.
    /// `square=256,crop=224,filter=bilinear`.
    pub fn describe(&self) -> String {
        format!("square={},crop={},filter={FILTER}", self.square, self.crop)
    }

    /// Reads a recipe written by [`Recipe::describe`]; the channel count comes from its own key.
    pub fn parse(text: &str, channels: Channels) -> Result<Self, String> {
        let (mut square, mut crop, mut filter) = (None, None, None);
        for part in text.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=value"))?;
            match key.trim() {
                "square" => square = Some(value.trim().parse::<u32>().map_err(|e| format!("square: {e}"))?),
                "crop" => crop = Some(value.trim().parse::<u32>().map_err(|e| format!("crop: {e}"))?),
                "filter" => filter = Some(value.trim().to_string()),
                other => return Err(format!("unknown resize key `{other}`")),
            }
        }
        let square = square.ok_or("missing `square`")?;
        let crop = crop.ok_or("missing `crop`")?;
        match filter.as_deref() {
            Some(FILTER) => {}
            Some(other) => return Err(format!("filter `{other}` is not supported (only `{FILTER}`)")),
            None => return Err("missing `filter`".to_string()),
        }
        if crop == 0 || crop > square {
            return Err(format!("crop {crop} must be between 1 and square {square}"));
        }
        Ok(Recipe { square, crop, channels })
    }

    /// Values in one network input (channels x crop x crop).
    pub fn input_len(&self) -> usize {
        self.channels.count() * (self.crop as usize) * (self.crop as usize)
    }
}

/// Why an image could not be turned into pixels. The caller names the image (path, URL or photo id).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreprocessError {
    /// The encoded file is larger than [`Limits::max_bytes`].
    #[error("image is {bytes} bytes, over the limit of {max} bytes")]
    TooManyBytes {
        /// Size of the encoded image.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The decoded image would be larger than [`Limits::max_pixels`].
    #[error(
        "image is {width}x{height} pixels, over the limit of {max} pixels (a decompression bomb or an oversized photo)"
    )]
    TooManyPixels {
        /// Width as declared by the file.
        width: u32,
        /// Height as declared by the file.
        height: u32,
        /// The limit.
        max: u64,
    },
    /// The bytes are empty or of no format this build decodes.
    #[error("not a JPEG, PNG or WebP image")]
    UnknownFormat,
    /// The decoder rejected the bytes.
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// The image has no pixels.
    #[error("image has no pixels")]
    Empty,
}

/// Decodes an encoded image within `limits`, with its EXIF orientation applied.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<DynamicImage, PreprocessError> {
    let len = bytes.len() as u64;
    if len > limits.max_bytes {
        return Err(PreprocessError::TooManyBytes {
            bytes: len,
            max: limits.max_bytes,
        });
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PreprocessError::Corrupt(e.to_string()))?;
    if reader.format().is_none() {
        return Err(PreprocessError::UnknownFormat);
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| PreprocessError::Corrupt(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty);
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(PreprocessError::TooManyPixels {
            width,
            height,
            max: limits.max_pixels,
        });
    }
    let mut image_limits = image::Limits::default();
    // Eight bytes a pixel covers 16-bit RGBA, the widest layout these formats decode to, plus slack.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(1 << 20));
    decoder
        .set_limits(image_limits)
        .map_err(|e| PreprocessError::Corrupt(e.to_string()))?;
    // A broken EXIF block must not cost the photo: fall back to no rotation.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| PreprocessError::Corrupt(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Converts to the recipe's channels and resizes the central square to `square` x `square`.
/// Returns interleaved (HWC) bytes: what `train` caches.
pub fn square_pixels(image: &DynamicImage, recipe: &Recipe) -> Vec<u8> {
    let (width, height) = (image.width(), image.height());
    // Borrow the decoded pixels where they already have the right layout (JPEG decodes to RGB8 or
    // L8); convert only when needed.
    let (buffer, pixel_type) = match (recipe.channels, image) {
        (Channels::Gray, DynamicImage::ImageLuma8(gray)) => (Cow::Borrowed(gray.as_raw().as_slice()), PixelType::U8),
        (Channels::Gray, DynamicImage::ImageRgb8(rgb)) => match luma_coefficients(image) {
            Some(coefficients) => (Cow::Owned(rgb_to_luma(rgb.as_raw(), coefficients)), PixelType::U8),
            None => (Cow::Owned(image.to_luma8().into_raw()), PixelType::U8),
        },
        (Channels::Gray, _) => (Cow::Owned(image.to_luma8().into_raw()), PixelType::U8),
        (Channels::Rgb, DynamicImage::ImageRgb8(rgb)) => (Cow::Borrowed(rgb.as_raw().as_slice()), PixelType::U8x3),
        (Channels::Rgb, _) => (Cow::Owned(image.to_rgb8().into_raw()), PixelType::U8x3),
    };
    let src = ImageRef::new(width, height, &buffer, pixel_type).expect("buffer matches its dimensions");
    let mut dst = Image::new(recipe.square, recipe.square, pixel_type);
    let side = width.min(height) as f64;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop((width as f64 - side) / 2.0, (height as f64 - side) / 2.0, side, side);
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("source and destination share a pixel type");
    dst.into_vec()
}

/// The weights `DynamicImage::to_luma8` gives red, green and blue in this image's colour space,
/// read back exactly by converting unit primaries in float (`None` if the colour space is one the
/// conversion cannot be probed in; the caller then falls back to `to_luma8`).
fn luma_coefficients(image: &DynamicImage) -> Option<[f32; 3]> {
    let primaries = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let mut probe = DynamicImage::ImageRgb32F(image::Rgb32FImage::from_raw(3, 1, primaries)?);
    probe.set_color_space(image.color_space()).ok()?;
    let luma = probe.to_luma32f().into_raw();
    let coefficients = [luma[0], luma[1], luma[2]];
    coefficients.iter().all(|c| c.is_finite()).then_some(coefficients)
}

/// `acc + a * b` exactly as the image crate computes it: fused where its build fuses it.
#[inline(always)]
fn multiply_accumulate(acc: f32, a: f32, b: f32) -> f32 {
    #[cfg(any(
        all(any(target_arch = "x86", target_arch = "x86_64"), target_feature = "fma"),
        all(target_arch = "aarch64", target_feature = "neon")
    ))]
    {
        a.mul_add(b, acc)
    }
    #[cfg(not(any(
        all(any(target_arch = "x86", target_arch = "x86_64"), target_feature = "fma"),
        all(target_arch = "aarch64", target_feature = "neon")
    )))]
    {
        acc + a * b
    }
}

/// `x.round() as u8` (half away from zero, saturating, NaN to 0) without the `roundf` call, so
/// that the loop around it vectorises.
#[inline(always)]
fn round_to_u8(x: f32) -> u8 {
    // NaN stays NaN through `clamp` and truncates to 0, as `as u8` would give.
    let x = x.clamp(0.0, 255.0);
    let whole = x as u32;
    // Exact: `whole` is `x` truncated, so the difference needs no rounding.
    let fraction = x - whole as f32;
    (whole + u32::from(fraction >= 0.5)) as u8
}

/// Interleaved RGB8 to luma, bit for bit what `DynamicImage::to_luma8` computes (each component
/// expanded to 0..=1, weighted sum with the colour space's coefficients, scaled and rounded), in a
/// single pass the compiler vectorises instead of the crate's generic colour-space path.
fn rgb_to_luma(rgb: &[u8], [kr, kg, kb]: [f32; 3]) -> Vec<u8> {
    const UNIT: f32 = 1.0 / u8::MAX as f32;
    rgb.chunks_exact(3)
        .map(|p| {
            let mut luma = 0.0;
            luma = multiply_accumulate(luma, f32::from(p[0]) * UNIT, kr);
            luma = multiply_accumulate(luma, f32::from(p[1]) * UNIT, kg);
            luma = multiply_accumulate(luma, f32::from(p[2]) * UNIT, kb);
            round_to_u8(luma * f32::from(u8::MAX))
        })
        .collect()
}

/// Copies the `crop` x `crop` window at (`left`, `top`) of an interleaved square into planar (CHW)
/// floats in 0..=255, appending to `out`. `mirror` flips it left to right (training augmentation).
pub fn crop_to_tensor(square: &[u8], recipe: &Recipe, left: u32, top: u32, mirror: bool, out: &mut Vec<f32>) {
    let channels = recipe.channels.count();
    let (side, crop) = (recipe.square as usize, recipe.crop as usize);
    let (left, top) = (left as usize, top as usize);
    assert!(
        left + crop <= side && top + crop <= side,
        "crop window outside the square"
    );
    assert_eq!(square.len(), side * side * channels, "square has the wrong size");
    out.reserve(channels * crop * crop);
    for c in 0..channels {
        for y in 0..crop {
            let row = &square[((top + y) * side + left) * channels..][..crop * channels];
            if mirror {
                out.extend((0..crop).rev().map(|x| f32::from(row[x * channels + c])));
            } else {
                out.extend((0..crop).map(|x| f32::from(row[x * channels + c])));
            }
        }
    }
}

/// Offset of the centre crop inside the square.
pub fn centre_offset(recipe: &Recipe) -> u32 {
    (recipe.square - recipe.crop) / 2
}

/// The whole inference path: encoded bytes to one planar network input (centre crop), appended to `out`.
pub fn prepare(bytes: &[u8], recipe: &Recipe, limits: &Limits, out: &mut Vec<f32>) -> Result<(), PreprocessError> {
    let image = decode(bytes, limits)?;
    let square = square_pixels(&image, recipe);
    let offset = centre_offset(recipe);
    crop_to_tensor(&square, recipe, offset, offset, false, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb, RgbImage};

    fn png(width: u32, height: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| Rgb(f(x, y)));
        let mut bytes = Vec::new();
        image::codecs::png::PngEncoder::new(&mut bytes)
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        bytes
    }

    #[test]
    fn recipe_round_trips_through_its_description() {
        let recipe = Recipe::for_input(224, Channels::Gray);
        assert_eq!(recipe.square, 256);
        assert_eq!(Recipe::parse(&recipe.describe(), Channels::Gray).unwrap(), recipe);
        assert!(Recipe::parse("square=64,crop=96,filter=bilinear", Channels::Gray).is_err());
        assert!(Recipe::parse("square=64,crop=56,filter=lanczos", Channels::Gray).is_err());
    }

    #[test]
    fn uniform_image_stays_uniform_and_has_the_right_shape() {
        let bytes = png(300, 200, |_, _| [90, 90, 90]);
        let recipe = Recipe::for_input(64, Channels::Rgb);
        let mut out = Vec::new();
        prepare(&bytes, &recipe, &Limits::default(), &mut out).unwrap();
        assert_eq!(out.len(), recipe.input_len());
        assert!(
            out.iter().all(|&v| (v - 90.0).abs() < 0.5),
            "values drifted: {:?}",
            &out[..4]
        );
    }

    #[test]
    fn central_square_is_taken_from_a_wide_image() {
        // Left and right thirds black, centre white: the central square is white (the filter may
        // blend a sliver of the black neighbours into its outermost column, outside the crop).
        let bytes = png(300, 100, |x, _| if (100..200).contains(&x) { [255; 3] } else { [0; 3] });
        let recipe = Recipe {
            square: 32,
            crop: 30,
            channels: Channels::Gray,
        };
        let mut out = Vec::new();
        prepare(&bytes, &recipe, &Limits::default(), &mut out).unwrap();
        assert!(out.iter().all(|&v| v > 250.0));
    }

    #[test]
    fn crop_and_mirror_pick_the_right_pixels() {
        let recipe = Recipe {
            square: 4,
            crop: 2,
            channels: Channels::Gray,
        };
        let square: Vec<u8> = (0..16).collect();
        let mut out = Vec::new();
        crop_to_tensor(&square, &recipe, 1, 2, false, &mut out);
        assert_eq!(out, vec![9.0, 10.0, 13.0, 14.0]);
        out.clear();
        crop_to_tensor(&square, &recipe, 1, 2, true, &mut out);
        assert_eq!(out, vec![10.0, 9.0, 14.0, 13.0]);
    }

    #[test]
    fn corrupt_unknown_and_oversized_inputs_are_errors() {
        let limits = Limits::default();
        assert_eq!(decode(b"", &limits).unwrap_err(), PreprocessError::UnknownFormat);
        assert_eq!(
            decode(b"<html>nope</html>", &limits).unwrap_err(),
            PreprocessError::UnknownFormat
        );
        let mut truncated = png(64, 64, |x, y| [x as u8, y as u8, 0]);
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(decode(&truncated, &limits), Err(PreprocessError::Corrupt(_))));
        let big = png(100, 100, |_, _| [1, 2, 3]);
        let small = Limits {
            max_bytes: 10,
            max_pixels: 1_000_000,
        };
        assert!(matches!(
            decode(&big, &small),
            Err(PreprocessError::TooManyBytes { .. })
        ));
        let few = Limits {
            max_bytes: 1 << 20,
            max_pixels: 5_000,
        };
        assert!(matches!(
            decode(&big, &few),
            Err(PreprocessError::TooManyPixels {
                width: 100,
                height: 100,
                ..
            })
        ));
    }

    #[test]
    fn fast_luma_matches_the_image_crate_for_every_colour() {
        // All 2^24 RGB colours, one per pixel: the shortcut must be bit for bit `to_luma8`.
        let all = RgbImage::from_fn(4096, 4096, |x, y| {
            let i = y * 4096 + x;
            Rgb([(i >> 16) as u8, (i >> 8) as u8, i as u8])
        });
        let image = DynamicImage::ImageRgb8(all);
        let coefficients = luma_coefficients(&image).expect("sRGB can be probed");
        let fast = rgb_to_luma(image.as_rgb8().unwrap().as_raw(), coefficients);
        let reference = image.to_luma8().into_raw();
        let differ = fast.iter().zip(&reference).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{differ} colours differ from to_luma8");
    }

    #[test]
    fn rounding_matches_round_as_u8() {
        let edges = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -1.0,
            -0.5,
            -0.0,
            0.0,
            0.49999997,
            0.5,
            0.50000006,
            1.5,
            2.5,
            254.49998,
            254.5,
            255.0,
            255.49998,
            255.5,
            256.0,
            1e10,
        ];
        // Every f32 from -2 to 258 in steps of 2^-12, plus the edges.
        let steps = (0..(260 << 12)).map(|i| -2.0 + i as f32 / 4096.0);
        for x in edges.into_iter().chain(steps) {
            assert_eq!(round_to_u8(x), x.round() as u8, "{x}");
        }
    }

    #[test]
    fn square_pixels_keep_the_generic_conversions() {
        // The borrowed and shortcut paths give what converting with the image crate gives.
        let rgb = RgbImage::from_fn(40, 30, |x, y| Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8]));
        let image = DynamicImage::ImageRgb8(rgb);
        for channels in [Channels::Gray, Channels::Rgb] {
            let recipe = Recipe {
                square: 16,
                crop: 12,
                channels,
            };
            let via_crate = match channels {
                Channels::Gray => DynamicImage::ImageLuma8(image.to_luma8()),
                Channels::Rgb => DynamicImage::ImageRgba8(image.to_rgba8()),
            };
            // RGBA takes the generic path (convert, then resize); luma is already in place.
            let expected = square_pixels(&via_crate, &recipe);
            assert_eq!(square_pixels(&image, &recipe), expected, "{channels:?}");
        }
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 2x1 JPEG rotated by EXIF orientation 6 (90 degrees clockwise) decodes as 1x2.
        let img = RgbImage::from_fn(16, 8, |_, _| Rgb([200, 10, 10]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .write_image(img.as_raw(), 16, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        let tagged = with_exif_orientation(&jpeg, 6);
        let decoded = decode(&tagged, &Limits::default()).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (8, 16));
    }

    /// Inserts an APP1 EXIF segment holding only an orientation tag right after the SOI marker.
    pub(crate) fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // big endian, IFD at offset 8
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }
}
