//! The one canonical encoding of everything kith puts on the wire.
//!
//! bincode 2 with a single fixed configuration: little-endian, fixed-width integers, and an
//! allocation limit per call. Fixed-width integers make the encoding canonical (one value,
//! one byte string); [`decode`] still re-encodes what it decoded and refuses anything that
//! differs, so no two byte strings ever decode to the same value. Changing the wire format
//! later means changing this file only.

use bincode::{
    config::{self, Configuration, Fixint, LittleEndian, NoLimit},
    Decode, Encode,
};
use thiserror::Error;

/// The base configuration; decoding adds a byte limit per call.
const CONFIG: Configuration<LittleEndian, Fixint, NoLimit> =
    config::standard().with_little_endian().with_fixed_int_encoding();

/// Why bytes could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The input is larger than the limit for its type; nothing was decoded.
    #[error("input of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed encoding: {0}")]
    Malformed(String),
    /// Bytes were left over after a complete value.
    #[error("{0} trailing bytes after the encoded value")]
    TrailingBytes(usize),
    /// The value decoded, but its encoding is not the canonical one.
    #[error("non-canonical encoding")]
    NonCanonical,
    /// A value could not be encoded (only possible for values over the size limit).
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// Encodes a value canonically.
///
/// # Errors
/// [`CodecError::Encode`] if bincode refuses the value (it does not for kith's types).
pub fn encode<T: Encode>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::encode_to_vec(value, CONFIG).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes exactly one canonically encoded value of at most `MAX` bytes.
///
/// The size is checked on the raw bytes before anything is decoded, and `MAX` is also the
/// decoder's allocation limit, so a hostile length prefix cannot make it allocate.
///
/// # Errors
/// [`CodecError::TooLarge`] before decoding; then malformed, trailing or non-canonical input.
pub fn decode<T: Decode<()> + Encode, const MAX: usize>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX {
        return Err(CodecError::TooLarge { len: bytes.len(), max: MAX });
    }
    let (value, used): (T, usize) = bincode::decode_from_slice(bytes, CONFIG.with_limit::<MAX>())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    if encode(&value)? != bytes {
        return Err(CodecError::NonCanonical);
    }
    Ok(value)
}

/// Decodes one canonically encoded value from the front of `bytes` (reading at most `MAX`
/// bytes) and returns it with the number of bytes it took; what follows is the caller's.
/// For formats that append optional parts to an older one.
///
/// # Errors
/// Malformed or non-canonical input.
pub fn decode_prefix<T: Decode<()> + Encode, const MAX: usize>(
    bytes: &[u8],
) -> Result<(T, usize), CodecError> {
    let window = bytes.get(..bytes.len().min(MAX)).unwrap_or(bytes);
    let (value, used): (T, usize) = bincode::decode_from_slice(window, CONFIG.with_limit::<MAX>())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if Some(encode(&value)?.as_slice()) != window.get(..used) {
        return Err(CodecError::NonCanonical);
    }
    Ok((value, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Encode, Decode, Debug, PartialEq)]
    struct Sample {
        n: u64,
        s: String,
        o: Option<u8>,
    }

    #[test]
    fn round_trip() {
        let v = Sample { n: 7, s: "hé".into(), o: Some(1) };
        let bytes = encode(&v).unwrap();
        assert_eq!(decode::<Sample, 64>(&bytes).unwrap(), v);
    }

    #[test]
    fn oversized_refused_before_decoding() {
        let bytes = vec![0u8; 65];
        assert_eq!(decode::<Sample, 64>(&bytes), Err(CodecError::TooLarge { len: 65, max: 64 }));
    }

    #[test]
    fn trailing_bytes_refused() {
        let mut bytes = encode(&Sample { n: 1, s: String::new(), o: None }).unwrap();
        bytes.push(0);
        assert_eq!(decode::<Sample, 64>(&bytes), Err(CodecError::TrailingBytes(1)));
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        // n, then a string length of u64::MAX.
        let mut bytes = 1u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode::<Sample, 64>(&bytes), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn prefix_decoding_leaves_the_rest() {
        let mut bytes = encode(&Sample { n: 1, s: "a".into(), o: None }).unwrap();
        let len = bytes.len();
        bytes.extend_from_slice(&[7, 7]);
        let (v, used) = decode_prefix::<Sample, 64>(&bytes).unwrap();
        assert_eq!((v.n, used), (1, len));
        assert!(decode_prefix::<Sample, 64>(&bytes[..len - 1]).is_err());
    }

    #[test]
    fn bad_option_tag_refused() {
        let mut bytes = encode(&Sample { n: 1, s: String::new(), o: None }).unwrap();
        let last = bytes.len() - 1;
        bytes[last] = 2;
        assert!(decode::<Sample, 64>(&bytes).is_err());
    }
}
