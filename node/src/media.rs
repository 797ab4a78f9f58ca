//! Pictures: what is shared of a JPEG, PNG or WebP, and its thumbnail.
//!
//! A picture is decoded under limits (its declared size is checked before any pixel is
//! decoded, so a small file that claims a huge picture, a decompression bomb, is refused
//! without the memory). The camera's EXIF orientation is applied. What is shared carries
//! no metadata: EXIF (which holds the GPS position, the camera and the time), XMP, text
//! chunks and comments are removed. When the picture needs no rotation, they are removed
//! from the file as it is, without decoding and encoding the image again (no loss of
//! quality); when it does, the rotated picture is encoded anew, which writes no metadata.
//! The thumbnail is a JPEG of at most [`THUMBNAIL_SIDE`] pixels a side.

use std::io::Cursor;

use image::{
    codecs::{jpeg::JpegEncoder, png::PngEncoder},
    metadata::Orientation,
    DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits,
};
use img_parts::{jpeg::Jpeg, png::Png, webp::WebP, Bytes, ImageEXIF};
use kith_protocol::limits::MAX_THUMBNAIL_BYTES;
use thiserror::Error;

/// Largest picture processed, in pixels (40 megapixels: any phone camera's photo).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Longest side of a picture processed, in pixels.
pub const MAX_SIDE: u32 = 20_000;
/// Most memory the decoder may take for one picture, bytes.
const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;
/// Longest side of a thumbnail, pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// JPEG quality of a rotated picture encoded anew.
const REENCODE_QUALITY: u8 = 90;
/// JPEG qualities tried for a thumbnail, until one fits [`MAX_THUMBNAIL_BYTES`].
const THUMBNAIL_QUALITIES: [u8; 3] = [80, 60, 40];

/// Why a picture could not be processed.
#[derive(Debug, Error)]
pub enum MediaError {
    /// The picture claims more pixels than allowed (a decompression bomb, or simply too
    /// big).
    #[error(
        "the picture is {width}x{height} pixels; kith takes pictures of at most \
         {MAX_PIXELS} pixels and {MAX_SIDE} pixels a side"
    )]
    TooManyPixels {
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
    },
    /// Not a picture this node can read (damaged, or a variant of the format it does not
    /// know).
    #[error("not a picture kith can read: {0}")]
    Undecodable(String),
}

/// The formats kith processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// WebP.
    Webp,
}

impl Format {
    /// The format of a file from its first bytes, if it is one kith processes.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        match image::guess_format(head).ok()? {
            ImageFormat::Jpeg => Some(Self::Jpeg),
            ImageFormat::Png => Some(Self::Png),
            ImageFormat::WebP => Some(Self::Webp),
            _ => None,
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Png => ImageFormat::Png,
            Self::Webp => ImageFormat::WebP,
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }
}

/// A thumbnail: JPEG bytes and size.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    /// The JPEG.
    pub bytes: Vec<u8>,
    /// Width, pixels.
    pub width: u16,
    /// Height, pixels.
    pub height: u16,
}

/// A picture ready to share.
#[derive(Debug, Clone)]
pub struct Picture {
    /// What is shared: the file without its metadata, or the rotated picture encoded anew.
    pub bytes: Vec<u8>,
    /// The format of `bytes`.
    pub format: Format,
    /// Width as shown, pixels.
    pub width: u32,
    /// Height as shown, pixels.
    pub height: u32,
    /// Its thumbnail, when one fits the limits.
    pub thumbnail: Option<Thumbnail>,
}

fn undecodable(e: impl std::fmt::Display) -> MediaError {
    MediaError::Undecodable(e.to_string())
}

/// Decodes `bytes` of `format` under the limits; the picture (orientation applied) and
/// the orientation found.
fn decode(bytes: &[u8], format: Format) -> Result<(DynamicImage, Orientation), MediaError> {
    let reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (width, height) = decoder.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(MediaError::TooManyPixels { width, height });
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    decoder.set_limits(limits).map_err(undecodable)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    image.apply_orientation(orientation);
    Ok((image, orientation))
}

/// JPEG segments kept: everything but APPn and comments, except JFIF (APP0), ICC colour
/// profiles (APP2 `ICC_PROFILE`) and Adobe's colour transform (APP14).
fn keep_jpeg_segment(marker: u8, contents: &[u8]) -> bool {
    match marker {
        0xE0 | 0xEE => true,
        0xE2 => contents.starts_with(b"ICC_PROFILE\0"),
        0xE1 | 0xE3..=0xED | 0xEF | 0xFE => false,
        _ => true,
    }
}

/// The file without its metadata, image data untouched.
fn strip(bytes: Vec<u8>, format: Format) -> Result<Vec<u8>, MediaError> {
    let bytes = Bytes::from(bytes);
    let out = match format {
        Format::Jpeg => {
            let mut jpeg = Jpeg::from_bytes(bytes).map_err(undecodable)?;
            jpeg.segments_mut().retain(|s| keep_jpeg_segment(s.marker(), s.contents()));
            jpeg.encoder().bytes()
        }
        Format::Png => {
            let mut png = Png::from_bytes(bytes).map_err(undecodable)?;
            png.chunks_mut()
                .retain(|c| !matches!(&c.kind(), b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt" | b"tIME"));
            png.encoder().bytes()
        }
        Format::Webp => {
            let mut webp = WebP::from_bytes(bytes).map_err(undecodable)?;
            webp.remove_chunks_by_id(*b"XMP ");
            // Also corrects the header's flags for the chunks left.
            webp.set_exif(None);
            webp.encoder().bytes()
        }
    };
    Ok(out.to_vec())
}

/// Encodes a rotated picture anew: JPEG stays JPEG, others become PNG (lossless).
fn reencode(image: &DynamicImage, format: Format) -> Result<(Vec<u8>, Format), MediaError> {
    let mut out = Vec::new();
    match format {
        Format::Jpeg => {
            let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
            JpegEncoder::new_with_quality(&mut out, REENCODE_QUALITY)
                .encode_image(&rgb)
                .map_err(undecodable)?;
            Ok((out, Format::Jpeg))
        }
        Format::Png | Format::Webp => {
            image.write_with_encoder(PngEncoder::new(&mut out)).map_err(undecodable)?;
            Ok((out, Format::Png))
        }
    }
}

/// The picture flattened onto white (JPEG has no transparency).
fn flatten(image: &DynamicImage) -> image::RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over = |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    })
}

/// A JPEG thumbnail of at most [`THUMBNAIL_SIDE`] a side and [`MAX_THUMBNAIL_BYTES`].
pub fn thumbnail(image: &DynamicImage) -> Option<Thumbnail> {
    let small = image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE);
    let rgb = flatten(&small);
    let (width, height) = (u16::try_from(rgb.width()).ok()?, u16::try_from(rgb.height()).ok()?);
    for quality in THUMBNAIL_QUALITIES {
        let mut out = Vec::new();
        if JpegEncoder::new_with_quality(&mut out, quality).encode_image(&rgb).is_err() {
            return None;
        }
        if out.len() <= MAX_THUMBNAIL_BYTES as usize {
            return Some(Thumbnail { bytes: out, width, height });
        }
    }
    None
}

/// Prepares a picture for sharing: checks and decodes it, removes its metadata (rotating
/// it first if the camera said so) and makes its thumbnail.
///
/// # Errors
/// [`MediaError::TooManyPixels`] before decoding a picture that claims too many pixels;
/// [`MediaError::Undecodable`] for one that cannot be read.
pub fn prepare(bytes: Vec<u8>, format: Format) -> Result<Picture, MediaError> {
    let (image, orientation) = decode(&bytes, format)?;
    let (shared, format) = if orientation == Orientation::NoTransforms {
        (strip(bytes, format)?, format)
    } else {
        reencode(&image, format)?
    };
    // What is shared must still be a picture of the same size.
    let check = ImageReader::with_format(Cursor::new(&shared), format.image_format())
        .into_dimensions()
        .map_err(undecodable)?;
    if check != (image.width(), image.height()) {
        return Err(MediaError::Undecodable(
            "the picture changed while its metadata was removed".into(),
        ));
    }
    Ok(Picture {
        bytes: shared,
        format,
        width: image.width(),
        height: image.height(),
        thumbnail: thumbnail(&image),
    })
}

#[cfg(test)]
mod tests;
