//! Pictures for tests: PNGs and JPEGs made here, a JPEG carrying GPS EXIF, a
//! decompression bomb.

use std::io::Cursor;

use image::{codecs::jpeg::JpegEncoder, DynamicImage, ImageFormat, RgbImage};

/// A `width` x `height` picture with a gradient.
pub fn gradient(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width.max(1)) as u8, (y * 255 / height.max(1)) as u8, 90])
    }))
}

/// A PNG of a `width` x `height` gradient.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    gradient(width, height).write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The marker of the GPS position in [`jpeg_with_gps`]'s EXIF (a GPSAreaInformation-like
/// text), to look for in what is shared.
pub const GPS_MARKER: &[u8] = b"52.5200N,13.4050E home";

/// A JPEG (64 x 48) with an EXIF APP1 segment holding a GPS IFD (latitude and a text
/// that says where), as a phone camera writes it.
pub fn jpeg_with_gps() -> Vec<u8> {
    jpeg_with_gps_sized(64, 48)
}

/// [`jpeg_with_gps`] of a `width` x `height` picture.
pub fn jpeg_with_gps_sized(width: u32, height: u32) -> Vec<u8> {
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 90).encode_image(&gradient(width, height)).unwrap();
    // TIFF, little endian: IFD0 (1 entry: GPS pointer to 26), GPS IFD (1 entry: tag
    // 0x001B GPSProcessingMethod as UNDEFINED bytes at 44).
    let mut t = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
    t.extend_from_slice(&1u16.to_le_bytes());
    t.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 26, 0, 0, 0]);
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&1u16.to_le_bytes());
    let n = GPS_MARKER.len() as u32;
    t.extend_from_slice(&[0x1B, 0x00, 7, 0]);
    t.extend_from_slice(&n.to_le_bytes());
    t.extend_from_slice(&44u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(GPS_MARKER);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&t);
    let len = (app1.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A PNG of a few hundred bytes whose header claims 100000 x 100000 pixels.
pub fn png_bomb() -> Vec<u8> {
    let mut bytes = png(8, 8);
    // IHDR data starts at 16: width, height (big endian); then its CRC at 29.
    bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// CRC-32 (IEEE), as PNG chunks use it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
