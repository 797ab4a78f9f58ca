#![allow(clippy::unwrap_used)]

use img_parts::png::PngChunk;

use super::*;

/// A little-endian EXIF block (with the `Exif\0\0` header JPEG uses) holding an
/// orientation and a GPS position of 52°31'N.
pub(crate) fn exif_with_gps(orientation: u16) -> Vec<u8> {
    let mut t = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
    let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value);
    };
    // IFD0 at 8: orientation, GPS pointer (GPS IFD at 38).
    t.extend_from_slice(&2u16.to_le_bytes());
    let o = orientation.to_le_bytes();
    entry(&mut t, 0x0112, 3, 1, [o[0], o[1], 0, 0]);
    entry(&mut t, 0x8825, 4, 1, 38u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD at 38: latitude ref "N", latitude (3 rationals at 68).
    t.extend_from_slice(&2u16.to_le_bytes());
    entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0");
    entry(&mut t, 0x0002, 5, 3, 68u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    for (n, d) in [(52u32, 1u32), (31, 1), (0, 1)] {
        t.extend_from_slice(&n.to_le_bytes());
        t.extend_from_slice(&d.to_le_bytes());
    }
    t
}

/// A `width` x `height` picture with a gradient, so that orientation can be seen.
pub(crate) fn gradient(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width.max(1)) as u8, (y * 255 / height.max(1)) as u8, 128])
    }))
}

/// A JPEG of `image` carrying `exif` (TIFF bytes) in an APP1 segment, and a comment.
pub(crate) fn jpeg_with_exif(image: &DynamicImage, exif: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90).encode_image(image).unwrap();
    let mut jpeg = Jpeg::from_bytes(Bytes::from(out)).unwrap();
    jpeg.set_exif(Some(Bytes::copy_from_slice(exif)));
    let comment =
        img_parts::jpeg::JpegSegment::new_with_contents(0xFE, Bytes::from_static(b"shot at home"));
    jpeg.segments_mut().insert(1, comment);
    jpeg.encoder().bytes().to_vec()
}

/// A PNG of `image`.
pub(crate) fn png(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_with_encoder(PngEncoder::new(&mut out)).unwrap();
    out
}

fn exif_of(bytes: &[u8], format: Format) -> Option<Vec<u8>> {
    let reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    reader.into_decoder().unwrap().exif_metadata().unwrap()
}

#[test]
fn jpeg_gps_is_removed_losslessly() {
    let image = gradient(64, 48);
    let file = jpeg_with_exif(&image, &exif_with_gps(1));
    assert!(exif_of(&file, Format::Jpeg).is_some());
    let picture = prepare(file.clone(), Format::Jpeg).unwrap();
    assert_eq!(picture.format, Format::Jpeg);
    assert_eq!((picture.width, picture.height), (64, 48));
    assert!(exif_of(&picture.bytes, Format::Jpeg).is_none());
    assert!(!picture.bytes.windows(6).any(|w| w == b"Exif\0\0"));
    assert!(!picture.bytes.windows(12).any(|w| w == b"shot at home"));
    // The image data is untouched: the same scan, only the metadata segments are gone.
    let scan = |b: &[u8]| {
        let jpeg = Jpeg::from_bytes(Bytes::copy_from_slice(b)).unwrap();
        jpeg.segments()
            .iter()
            .filter(|s| s.marker() == 0xDA)
            .map(|s| s.clone().encoder().bytes())
            .collect::<Vec<_>>()
    };
    assert_eq!(scan(&file), scan(&picture.bytes));
    assert!(picture.bytes.len() < file.len());
}

#[test]
fn orientation_is_applied_and_metadata_goes_with_it() {
    // 6: the camera was turned; the picture is shown rotated 90 degrees clockwise.
    let file = jpeg_with_exif(&gradient(64, 48), &exif_with_gps(6));
    let picture = prepare(file, Format::Jpeg).unwrap();
    assert_eq!((picture.width, picture.height), (48, 64));
    assert!(exif_of(&picture.bytes, Format::Jpeg).is_none());
    let thumb = picture.thumbnail.unwrap();
    assert!(thumb.height > thumb.width);
}

#[test]
fn png_text_and_exif_chunks_are_removed() {
    let file = png(&gradient(640, 480));
    let mut p = Png::from_bytes(Bytes::from(file)).unwrap();
    p.set_exif(Some(Bytes::from(exif_with_gps(1))));
    let text = PngChunk::new(*b"tEXt", Bytes::from_static(b"Location\0Home, 52.5N"));
    let at = p.chunks().len() - 1;
    p.chunks_mut().insert(at, text);
    let file = p.encoder().bytes().to_vec();
    let picture = prepare(file, Format::Png).unwrap();
    assert_eq!((picture.width, picture.height), (640, 480));
    let kinds: Vec<[u8; 4]> = Png::from_bytes(Bytes::from(picture.bytes.clone()))
        .unwrap()
        .chunks()
        .iter()
        .map(|c| c.kind())
        .collect();
    assert!(!kinds.contains(b"eXIf") && !kinds.contains(b"tEXt"), "{kinds:?}");
    let thumb = picture.thumbnail.unwrap();
    assert_eq!((thumb.width, thumb.height), (320, 240));
    assert!(thumb.bytes.len() <= MAX_THUMBNAIL_BYTES as usize);
    assert_eq!(Format::sniff(&thumb.bytes), Some(Format::Jpeg));
}

#[test]
fn decompression_bombs_are_refused_before_decoding() {
    // A tiny PNG whose header claims 100000 x 100000 pixels.
    let mut p = Png::from_bytes(Bytes::from(png(&gradient(8, 8)))).unwrap();
    let ihdr = p.chunks().iter().position(|c| c.kind() == *b"IHDR").unwrap();
    let mut header = p.chunks()[ihdr].contents().to_vec();
    header[..4].copy_from_slice(&100_000u32.to_be_bytes());
    header[4..8].copy_from_slice(&100_000u32.to_be_bytes());
    p.chunks_mut()[ihdr] = PngChunk::new(*b"IHDR", Bytes::from(header));
    let bomb = p.encoder().bytes().to_vec();
    assert!(bomb.len() < 1024);
    let error = prepare(bomb, Format::Png).unwrap_err();
    assert!(matches!(error, MediaError::TooManyPixels { width: 100_000, height: 100_000 }));
    assert!(error.to_string().contains("100000x100000"), "{error}");
    // Garbage that looks like a PNG is refused too.
    let mut junk = png(&gradient(8, 8));
    junk.truncate(40);
    assert!(matches!(prepare(junk, Format::Png), Err(MediaError::Undecodable(_))));
}

#[test]
fn transparent_pictures_get_white_behind_their_thumbnail() {
    let clear =
        DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(10, 10, image::Rgba([0, 0, 0, 0])));
    let thumb = thumbnail(&clear).unwrap();
    let decoded = image::load_from_memory(&thumb.bytes).unwrap().to_rgb8();
    assert!(decoded.pixels().all(|p| p.0.iter().all(|c| *c > 240)));
}
