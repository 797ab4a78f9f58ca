//! The `/kith/blob/1` exchange: a request for a blob's manifest or for one chunk, and the
//! answer.

use bincode::{Decode, Encode};

use super::{BlobHash, Manifest, MAX_CHUNKS};
use crate::{
    codec::{self, CodecError},
    limits::{BLOB_CHUNK_BYTES, MAX_BLOB_REPLY_BYTES, MAX_BLOB_REQUEST_BYTES},
};

// The largest reply, a whole chunk (variant 4, length 8) or the manifest of the largest
// blob (variant 4, size 8, count 8, chaining values), fits the limit.
const _: () = assert!(4 + 8 + BLOB_CHUNK_BYTES <= MAX_BLOB_REPLY_BYTES);
const _: () = assert!(4 + 8 + 8 + 32 * MAX_CHUNKS as usize <= MAX_BLOB_REPLY_BYTES);

/// A request on `/kith/blob/1`. The variant order is part of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum BlobRequest {
    /// The blob's size and chunk hashes.
    Manifest {
        /// Which blob.
        hash: BlobHash,
    },
    /// One chunk of the blob.
    Chunk {
        /// Which blob.
        hash: BlobHash,
        /// Which chunk (0 is the first).
        index: u32,
    },
}

impl BlobRequest {
    /// The canonical encoding.
    ///
    /// # Errors
    /// Only if the codec fails (it does not for this type).
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// Decodes a request: size first, then canonical decoding.
    ///
    /// # Errors
    /// [`CodecError`] for oversized, malformed or non-canonical bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode::<_, MAX_BLOB_REQUEST_BYTES>(bytes)
    }

    /// The blob asked about.
    pub fn hash(&self) -> BlobHash {
        match self {
            Self::Manifest { hash } | Self::Chunk { hash, .. } => *hash,
        }
    }
}

/// The answer on `/kith/blob/1`. The variant order is part of the wire format. The
/// receiver checks a manifest with [`Manifest::verify`] and a chunk with
/// [`super::VerifiedManifest::check_chunk`]; nothing here is trusted.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum BlobReply {
    /// The manifest asked for.
    Manifest(Manifest),
    /// The chunk asked for.
    Chunk(Vec<u8>),
    /// This node does not have the blob, or will not give it to the asker (the same
    /// answer, so that a refusal does not tell what this node holds).
    Missing,
    /// This node is too busy to answer the asker now; ask again later or elsewhere.
    Busy,
}

impl BlobReply {
    /// The canonical encoding, refused over [`MAX_BLOB_REPLY_BYTES`].
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] for a chunk or manifest over the limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        let bytes = codec::encode(self)?;
        if bytes.len() > MAX_BLOB_REPLY_BYTES {
            return Err(CodecError::TooLarge { len: bytes.len(), max: MAX_BLOB_REPLY_BYTES });
        }
        Ok(bytes)
    }

    /// Decodes a reply: size first, then canonical decoding.
    ///
    /// # Errors
    /// [`CodecError`] for oversized, malformed or non-canonical bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode::<_, MAX_BLOB_REPLY_BYTES>(bytes)
    }
}
