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
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// How many colour channels the model reads: the original recipe used grayscale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    /// One channel: ITU-R BT.601 luma, the Y that JPEG stores and that Pillow's `L` mode (which the
    /// original experiment's DIGITS used) computes from RGB.
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
    /// The data ends before the image does (a download cut short): decoders fill the rest with
    /// grey, which would be scored as if it were the photo.
    #[error("the image data ends early (a download cut short?)")]
    Truncated,
}

/// Decodes an encoded image within `limits`, with its EXIF orientation applied, for a model that
/// reads `channels`. For grayscale, a YCbCr or grayscale JPEG is decoded straight to its luma plane:
/// the decoder skips the colour planes and the colour conversion, which halves the cost of a photo.
pub fn decode(bytes: &[u8], limits: &Limits, channels: Channels) -> Result<DynamicImage, PreprocessError> {
    let len = bytes.len() as u64;
    if len > limits.max_bytes {
        return Err(PreprocessError::TooManyBytes {
            bytes: len,
            max: limits.max_bytes,
        });
    }
    let is_jpeg = bytes.starts_with(&[0xFF, 0xD8, 0xFF]);
    if is_jpeg && jpeg_cut_short(bytes) {
        return Err(PreprocessError::Truncated);
    }
    if channels == Channels::Gray && is_jpeg {
        if let Some(image) = decode_jpeg_luma(bytes, limits)? {
            return Ok(image);
        }
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
    check_dimensions(width, height, limits)?;
    let mut image_limits = image::Limits::default();
    // Eight bytes a pixel covers 16-bit RGBA, the widest layout these formats decode to, plus slack.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(1 << 20));
    decoder
        .set_limits(image_limits)
        .map_err(|e| PreprocessError::Corrupt(e.to_string()))?;
    // A broken EXIF block must not cost the photo: fall back to no rotation.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| PreprocessError::Corrupt(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Whether a JPEG was cut short inside its scan data: it has a start-of-scan marker but no
/// end-of-image marker after the last one (an EXIF thumbnail's own end marker comes before the main
/// scans, so it does not count). Both can only appear as markers: in scan data every 0xFF byte is
/// followed by 0x00 or a restart marker. A file that never reaches a scan is left to the decoder,
/// which calls it corrupt.
fn jpeg_cut_short(bytes: &[u8]) -> bool {
    let has_scan = |b: &[u8]| b.windows(2).any(|w| w == [0xFF, 0xDA]);
    // A whole file ends with its end marker: found at once from the end, nothing to scan after it.
    match bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]) {
        Some(end) => has_scan(&bytes[end..]),
        None => has_scan(bytes),
    }
}

/// Rejects an empty image or one over the pixel limit, before any pixel is decoded.
fn check_dimensions(width: u32, height: u32, limits: &Limits) -> Result<(), PreprocessError> {
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
    Ok(())
}

/// A JPEG decoded to its luma plane (with the decoder settings the image crate uses), or `None` when
/// its colour space has no luma plane to take (CMYK, YCCK, Adobe RGB): the caller then decodes to
/// RGB and converts.
fn decode_jpeg_luma(bytes: &[u8], limits: &Limits) -> Result<Option<DynamicImage>, PreprocessError> {
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| PreprocessError::Corrupt(e.to_string());
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(corrupt)?;
    let (Some((width, height)), Some(space)) = (decoder.dimensions(), decoder.input_colorspace()) else {
        return Ok(None);
    };
    let (width, height) = (width as u32, height as u32);
    check_dimensions(width, height, limits)?;
    if !matches!(space, ColorSpace::YCbCr | ColorSpace::Luma) {
        return Ok(None);
    }
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(ColorSpace::Luma));
    let orientation = decoder
        .exif()
        .and_then(|exif| Orientation::from_exif_chunk(exif))
        .unwrap_or(Orientation::NoTransforms);
    let pixels = decoder.decode().map_err(corrupt)?;
    let gray = image::GrayImage::from_raw(width, height, pixels)
        .ok_or_else(|| PreprocessError::Corrupt("the decoder returned fewer pixels than the image has".into()))?;
    let mut image = DynamicImage::ImageLuma8(gray);
    image.apply_orientation(orientation);
    Ok(Some(image))
}

/// Converts to the recipe's channels and resizes the central square to `square` x `square`.
/// Returns interleaved (HWC) bytes: what `train` caches.
pub fn square_pixels(image: &DynamicImage, recipe: &Recipe) -> Vec<u8> {
    let (width, height) = (image.width(), image.height());
    // Borrow the decoded pixels where they already have the right layout (JPEG decodes to RGB8 or
    // L8); convert only when needed.
    let (buffer, pixel_type) = match (recipe.channels, image) {
        (Channels::Gray, DynamicImage::ImageLuma8(gray)) => (Cow::Borrowed(gray.as_raw().as_slice()), PixelType::U8),
        // Already one channel (with alpha or 16 bits): no colour to mix.
        (
            Channels::Gray,
            DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_),
        ) => (Cow::Owned(image.to_luma8().into_raw()), PixelType::U8),
        (Channels::Gray, DynamicImage::ImageRgb8(rgb)) => (Cow::Owned(rgb_to_luma(rgb.as_raw())), PixelType::U8),
        (Channels::Gray, _) => (Cow::Owned(rgb_to_luma(image.to_rgb8().as_raw())), PixelType::U8),
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

/// Interleaved RGB8 to ITU-R BT.601 luma in 16-bit fixed point, rounded: the formula of Pillow's
/// `L` mode, and the Y a JPEG encoder stores, so that every format gives the same gray for the same
/// colour as a luma-decoded JPEG.
fn rgb_to_luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            let y = 19595 * u32::from(p[0]) + 38470 * u32::from(p[1]) + 7471 * u32::from(p[2]) + 0x8000;
            (y >> 16) as u8
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
    let image = decode(bytes, limits, recipe.channels)?;
    let square = square_pixels(&image, recipe);
    let offset = centre_offset(recipe);
    crop_to_tensor(&square, recipe, offset, offset, false, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb, RgbImage};

    #[test]
    fn a_jpeg_cut_short_is_an_error_not_a_grey_photo() {
        let img = crate::synth::photo(true, 96, 80, 3);
        let jpeg = crate::synth::jpeg(&img, 90);
        for channels in [Channels::Gray, Channels::Rgb] {
            decode(&jpeg, &Limits::default(), channels).expect("the whole file decodes");
            let cut = &jpeg[..jpeg.len() * 7 / 10];
            assert_eq!(
                decode(cut, &Limits::default(), channels).unwrap_err(),
                PreprocessError::Truncated,
                "{channels:?}"
            );
            // Bytes after the end marker (some cameras append data) are not a truncation.
            let mut trailing = jpeg.clone();
            trailing.extend_from_slice(b"trailing data");
            decode(&trailing, &Limits::default(), channels).expect("trailing bytes are harmless");
        }
    }

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

    fn jpeg(width: u32, height: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| Rgb(f(x, y)));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        bytes
    }

    #[test]
    fn corrupt_unknown_and_oversized_inputs_are_errors() {
        let limits = Limits::default();
        // Both channel modes: grayscale JPEGs take their own decoding path.
        for channels in [Channels::Gray, Channels::Rgb] {
            assert_eq!(
                decode(b"", &limits, channels).unwrap_err(),
                PreprocessError::UnknownFormat
            );
            assert_eq!(
                decode(b"<html>nope</html>", &limits, channels).unwrap_err(),
                PreprocessError::UnknownFormat
            );
            let mut truncated = png(64, 64, |x, y| [x as u8, y as u8, 0]);
            truncated.truncate(truncated.len() / 2);
            assert!(matches!(
                decode(&truncated, &limits, channels),
                Err(PreprocessError::Corrupt(_))
            ));
            let garbage = b"\xFF\xD8\xFF\xE0 garbage garbage garbage";
            assert!(
                matches!(decode(garbage, &limits, channels), Err(PreprocessError::Corrupt(_))),
                "{channels:?}"
            );
            for big in [png(100, 100, |_, _| [1, 2, 3]), jpeg(100, 100, |_, _| [1, 2, 3])] {
                let small = Limits {
                    max_bytes: 10,
                    max_pixels: 1_000_000,
                };
                assert!(matches!(
                    decode(&big, &small, channels),
                    Err(PreprocessError::TooManyBytes { .. })
                ));
                let few = Limits {
                    max_bytes: 1 << 20,
                    max_pixels: 5_000,
                };
                assert!(matches!(
                    decode(&big, &few, channels),
                    Err(PreprocessError::TooManyPixels {
                        width: 100,
                        height: 100,
                        ..
                    })
                ));
            }
        }
    }

    #[test]
    fn gray_is_bt601_luma() {
        // Pillow's `L` values for these colours: round(0.299 R + 0.587 G + 0.114 B).
        let colours = [
            ([255, 0, 0], 76),
            ([0, 255, 0], 150),
            ([0, 0, 255], 29),
            ([128, 64, 32], 79),
            ([255, 255, 255], 255),
            ([0, 0, 0], 0),
        ];
        for (rgb, luma) in colours {
            let image = decode(&png(8, 8, |_, _| rgb), &Limits::default(), Channels::Gray).unwrap();
            let recipe = Recipe {
                square: 4,
                crop: 4,
                channels: Channels::Gray,
            };
            assert_eq!(square_pixels(&image, &recipe), vec![luma; 16], "{rgb:?}");
        }
    }

    #[test]
    fn a_gray_jpeg_decodes_to_its_luma_plane_like_rgb_then_conversion() {
        // A colourful gradient (no channel near 0 or 255, where the RGB decode would clip): chroma is
        // subsampled and discarded by the luma path, yet the result is the luma of the RGB decode
        // within the rounding of the decoders' colour conversion.
        let bytes = jpeg(96, 64, |x, y| [(40 + x) as u8, (40 + 2 * y) as u8, (200 - x - y) as u8]);
        let fast = decode(&bytes, &Limits::default(), Channels::Gray).unwrap();
        let DynamicImage::ImageLuma8(fast) = fast else {
            panic!("the grayscale JPEG path was not taken: {:?}", fast.color());
        };
        let rgb = decode(&bytes, &Limits::default(), Channels::Rgb).unwrap().to_rgb8();
        let slow = rgb_to_luma(rgb.as_raw());
        let diffs: Vec<i32> = fast
            .as_raw()
            .iter()
            .zip(&slow)
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .collect();
        let worst = diffs.iter().max().copied().unwrap();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        assert!(
            worst <= 3 && mean < 1.0,
            "luma plane vs RGB then BT.601: worst {worst}, mean {mean}"
        );
    }

    #[test]
    fn square_pixels_keep_the_generic_conversions() {
        // The borrowed and shortcut paths give what the generic conversions give.
        let rgb = RgbImage::from_fn(40, 30, |x, y| Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8]));
        let luma = image::GrayImage::from_raw(40, 30, rgb_to_luma(rgb.as_raw())).unwrap();
        let image = DynamicImage::ImageRgb8(rgb);
        for channels in [Channels::Gray, Channels::Rgb] {
            let recipe = Recipe {
                square: 16,
                crop: 12,
                channels,
            };
            let expected = match channels {
                Channels::Gray => square_pixels(&DynamicImage::ImageLuma8(luma.clone()), &recipe),
                Channels::Rgb => square_pixels(&DynamicImage::ImageRgba8(image.to_rgba8()), &recipe),
            };
            assert_eq!(square_pixels(&image, &recipe), expected, "{channels:?}");
            // RGBA takes the generic path (convert, then resize).
            let rgba = DynamicImage::ImageRgba8(image.to_rgba8());
            assert_eq!(square_pixels(&rgba, &recipe), expected, "{channels:?} from RGBA");
        }
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 16x8 JPEG rotated by EXIF orientation 6 (90 degrees clockwise) decodes as 8x16.
        let tagged = with_exif_orientation(&jpeg(16, 8, |_, _| [200, 10, 10]), 6);
        for channels in [Channels::Gray, Channels::Rgb] {
            let decoded = decode(&tagged, &Limits::default(), channels).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (8, 16), "{channels:?}");
        }
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
