//! Attachments: what a post or a direct message says about each file it carries.
//!
//! An [`Attachment`] names a blob by hash and gives its size, [`MimeType`], [`FileName`]
//! and, for a picture, its dimensions and a small thumbnail's blob. A public post carries
//! attachments whose blobs are the files themselves. A direct message carries
//! [`SealedAttachment`]s inside its sealed content: the same description of the file
//! (hashes of the plaintext), plus the random key and the hashes of the encrypted blobs
//! that anyone may fetch (see [`crate::blob::seal_blob`]).
//!
//! File names and MIME types are checked when they are made and when they are decoded, so
//! a decoded attachment never carries a path, a control character or an empty name.

use std::fmt;

use bincode::{
    de::Decoder,
    enc::Encoder,
    error::{DecodeError, EncodeError},
    Decode, Encode,
};
use thiserror::Error;

use crate::{
    blob::{BlobHash, BlobKey},
    limits::{
        MAX_BLOB_BYTES, MAX_FILE_NAME_BYTES, MAX_MIME_BYTES, MAX_THUMBNAIL_BYTES,
        MAX_THUMBNAIL_SIDE,
    },
};

/// Why an attachment, a file name or a MIME type was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AttachmentError {
    /// An empty file name, `.` or `..`.
    #[error("empty file name")]
    EmptyName,
    /// A file name over [`MAX_FILE_NAME_BYTES`].
    #[error("file name of {0} bytes exceeds the limit of {MAX_FILE_NAME_BYTES}")]
    NameTooLong(usize),
    /// A file name with a path separator or a control character.
    #[error("file name contains {0:?}")]
    BadNameChar(char),
    /// A MIME type that is not `type/subtype` in lower-case token characters.
    #[error("not a MIME type: {0:?}")]
    BadMime(String),
    /// A blob size over the protocol's limit.
    #[error("attachment of {0} bytes exceeds the limit of {MAX_BLOB_BYTES}")]
    TooLarge(u64),
    /// An image with a zero dimension, or a thumbnail that is too large.
    #[error("bad image description: {0}")]
    BadImage(&'static str),
}

/// A file's name as shown to people and used for saving: 1 to [`MAX_FILE_NAME_BYTES`]
/// bytes of UTF-8 with no `/`, `\` or control character, and not `.` or `..`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FileName(String);

impl FileName {
    /// Checks a name.
    ///
    /// # Errors
    /// [`AttachmentError::EmptyName`], [`AttachmentError::NameTooLong`],
    /// [`AttachmentError::BadNameChar`].
    pub fn new(name: impl Into<String>) -> Result<Self, AttachmentError> {
        let name = name.into();
        if name.is_empty() || name == "." || name == ".." {
            return Err(AttachmentError::EmptyName);
        }
        if name.len() > MAX_FILE_NAME_BYTES {
            return Err(AttachmentError::NameTooLong(name.len()));
        }
        if let Some(bad) = name.chars().find(|c| *c == '/' || *c == '\\' || c.is_control()) {
            return Err(AttachmentError::BadNameChar(bad));
        }
        Ok(Self(name))
    }

    /// A usable name made from any text (a path's last part, say): separators and control
    /// characters become `_`, the length is cut at a character boundary, and an empty
    /// result becomes `file`.
    pub fn sanitized(text: &str) -> Self {
        let mut name: String = text
            .chars()
            .map(|c| if c == '/' || c == '\\' || c.is_control() { '_' } else { c })
            .collect();
        let mut end = name.len().min(MAX_FILE_NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
        Self::new(name).unwrap_or_else(|_| Self("file".into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A MIME type, `type/subtype`: lower-case ASCII letters, digits and `!#$&-^_.+`, at most
/// [`MAX_MIME_BYTES`] bytes, no parameters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MimeType(String);

impl MimeType {
    /// Checks a MIME type (upper case is folded to lower case first).
    ///
    /// # Errors
    /// [`AttachmentError::BadMime`].
    pub fn new(text: &str) -> Result<Self, AttachmentError> {
        let lower = text.to_ascii_lowercase();
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b)
                })
        };
        match lower.split_once('/') {
            Some((kind, sub)) if lower.len() <= MAX_MIME_BYTES && token(kind) && token(sub) => {
                Ok(Self(lower))
            }
            _ => Err(AttachmentError::BadMime(text.chars().take(80).collect())),
        }
    }

    /// `application/octet-stream`: bytes of unknown kind.
    pub fn octet_stream() -> Self {
        Self("application/octet-stream".into())
    }

    /// The type.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is an `image/...` type.
    pub fn is_image(&self) -> bool {
        self.0.starts_with("image/")
    }
}

macro_rules! checked_string_codec {
    ($ty:ident, $check:expr) => {
        impl Encode for $ty {
            fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
                self.0.encode(encoder)
            }
        }

        impl<C> Decode<C> for $ty {
            fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
                let text = String::decode(decoder)?;
                let checked: Result<Self, AttachmentError> = $check(&text);
                match checked {
                    // The decoded text must be the canonical form, or it would re-encode
                    // differently.
                    Ok(value) if value.0 == text => Ok(value),
                    Ok(_) => {
                        Err(DecodeError::OtherString(format!("{} not canonical", stringify!($ty))))
                    }
                    Err(e) => Err(DecodeError::OtherString(e.to_string())),
                }
            }
        }

        bincode::impl_borrow_decode!($ty);

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), self.0)
            }
        }
    };
}

checked_string_codec!(FileName, |t: &str| FileName::new(t));
checked_string_codec!(MimeType, MimeType::new);

/// The longest encoding of an [`Attachment`]: hash, size, MIME type and name (each with
/// its `u64` length), and a present image description with a present thumbnail.
pub const MAX_ATTACHMENT_BYTES: usize =
    32 + 8 + (8 + MAX_MIME_BYTES) + (8 + MAX_FILE_NAME_BYTES) + 1 + 4 + 4 + 1 + 32 + 4 + 2 + 2;

/// The longest encoding of a [`SealedAttachment`]: the attachment, the key, the sealed
/// hash and a present sealed thumbnail hash.
pub const MAX_SEALED_ATTACHMENT_BYTES: usize = MAX_ATTACHMENT_BYTES + 32 + 32 + 1 + 32;

/// A small picture standing for an image, made by the author's node.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Thumbnail {
    /// The thumbnail's blob (a JPEG).
    pub hash: BlobHash,
    /// Its size in bytes, at most [`MAX_THUMBNAIL_BYTES`].
    pub size: u32,
    /// Its width in pixels, at most [`MAX_THUMBNAIL_SIDE`].
    pub width: u16,
    /// Its height in pixels, at most [`MAX_THUMBNAIL_SIDE`].
    pub height: u16,
}

/// What is known of an attached picture.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ImageInfo {
    /// Width in pixels (as shown: after the camera's orientation is applied).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// A thumbnail, when one could be made.
    pub thumbnail: Option<Thumbnail>,
}

/// One attached file.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Attachment {
    /// The BLAKE3 hash of the file's bytes.
    pub hash: BlobHash,
    /// The file's size in bytes.
    pub size: u64,
    /// Its type.
    pub mime: MimeType,
    /// Its name.
    pub name: FileName,
    /// For a picture: dimensions and thumbnail.
    pub image: Option<ImageInfo>,
}

impl Attachment {
    /// Checks what the types do not: the size limit and the image description.
    ///
    /// # Errors
    /// [`AttachmentError::TooLarge`], [`AttachmentError::BadImage`].
    pub fn check(&self) -> Result<(), AttachmentError> {
        if self.size > MAX_BLOB_BYTES {
            return Err(AttachmentError::TooLarge(self.size));
        }
        if let Some(image) = &self.image {
            if image.width == 0 || image.height == 0 {
                return Err(AttachmentError::BadImage("zero width or height"));
            }
            if let Some(thumb) = &image.thumbnail {
                if thumb.size == 0 || thumb.size > MAX_THUMBNAIL_BYTES {
                    return Err(AttachmentError::BadImage("thumbnail size out of range"));
                }
                if thumb.width == 0
                    || thumb.height == 0
                    || thumb.width > MAX_THUMBNAIL_SIDE
                    || thumb.height > MAX_THUMBNAIL_SIDE
                {
                    return Err(AttachmentError::BadImage("thumbnail dimensions out of range"));
                }
            }
        }
        Ok(())
    }

    /// The thumbnail, if any.
    pub fn thumbnail(&self) -> Option<&Thumbnail> {
        self.image.as_ref().and_then(|i| i.thumbnail.as_ref())
    }
}

/// An attachment of a direct message: the file as described to the recipient, the key its
/// blobs are sealed with, and the hashes of the sealed blobs (what is fetched).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SealedAttachment {
    /// The file (hashes and sizes of the plaintext).
    pub attachment: Attachment,
    /// The random key of this attachment's blobs.
    pub key: BlobKey,
    /// The hash of the sealed file (its size is [`crate::blob::sealed_len`] of the
    /// file's).
    pub sealed: BlobHash,
    /// The hash of the sealed thumbnail, exactly when the attachment has a thumbnail.
    pub sealed_thumbnail: Option<BlobHash>,
}

impl SealedAttachment {
    /// [`Attachment::check`], and a sealed thumbnail exactly when there is a thumbnail.
    ///
    /// # Errors
    /// As [`Attachment::check`]; [`AttachmentError::BadImage`].
    pub fn check(&self) -> Result<(), AttachmentError> {
        self.attachment.check()?;
        if self.attachment.thumbnail().is_some() != self.sealed_thumbnail.is_some() {
            return Err(AttachmentError::BadImage("sealed thumbnail without thumbnail, or none"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn names() {
        for good in ["a.png", "Holiday photo 1.JPG", "ünïcode 📷.jpeg", "..a"] {
            assert_eq!(FileName::new(good).unwrap().as_str(), good);
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", "\u{1b}[31m"] {
            assert!(FileName::new(bad).is_err(), "{bad:?}");
        }
        assert!(FileName::new("x".repeat(MAX_FILE_NAME_BYTES + 1)).is_err());
        assert_eq!(FileName::sanitized("../../etc/passwd").as_str(), ".._.._etc_passwd");
        assert_eq!(FileName::sanitized("").as_str(), "file");
        assert_eq!(FileName::sanitized("é".repeat(100).as_str()).as_str().len(), 128);
    }

    #[test]
    fn mime_types() {
        assert_eq!(MimeType::new("Image/PNG").unwrap().as_str(), "image/png");
        assert!(MimeType::new("image/svg+xml").unwrap().is_image());
        for bad in ["", "image", "image/", "/png", "image/png; charset=x", "a/b/c", "im age/png"] {
            assert!(MimeType::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decoding_checks_names_and_types() {
        let good = codec::encode(&"photo.jpg".to_owned()).unwrap();
        assert_eq!(codec::decode::<FileName, 256>(&good).unwrap().as_str(), "photo.jpg");
        let bad = codec::encode(&"../x".to_owned()).unwrap();
        assert!(codec::decode::<FileName, 256>(&bad).is_err());
        // Upper case would be folded, so it is not the canonical form.
        let upper = codec::encode(&"IMAGE/PNG".to_owned()).unwrap();
        assert!(codec::decode::<MimeType, 256>(&upper).is_err());
    }
}
