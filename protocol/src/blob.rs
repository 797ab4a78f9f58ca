//! Blobs: pictures and files, named by the BLAKE3 hash of their bytes.
//!
//! A blob travels in chunks of [`BLOB_CHUNK_BYTES`]. Each chunk at an aligned offset is a
//! whole subtree of BLAKE3's hash tree, so a blob's [`Manifest`] (its size and one
//! chaining value per chunk) can be checked against the blob's hash alone
//! ([`Manifest::verify`]), and every chunk against its chaining value as it arrives
//! ([`VerifiedManifest::check_chunk`]). A peer that sends a wrong byte is caught at the
//! chunk it sent, never after a whole download. The hash is the ordinary BLAKE3 hash of the
//! file (what `b3sum` prints).
//!
//! ```
//! use kith_protocol::blob::{BlobHash, Manifest};
//!
//! let bytes: Vec<u8> = (0..600 * 1024).map(|i| (i % 251) as u8).collect();
//! let (hash, manifest) = Manifest::build(&bytes);
//! assert_eq!(hash, BlobHash::of(&bytes));
//! // What a peer sends is checked against the hash, then each chunk against the manifest.
//! let received = Manifest { size: manifest.size(), cvs: manifest.cvs().to_vec() };
//! let verified = received.verify(&hash).unwrap();
//! assert_eq!(verified.chunk_count(), 3);
//! assert!(verified.check_chunk(1, &bytes[256 * 1024..512 * 1024]).is_ok());
//! // Another chunk's bytes, or the end cut short, do not pass.
//! assert!(verified.check_chunk(0, &bytes[256 * 1024..512 * 1024]).is_err());
//! assert!(verified.check_chunk(2, &bytes[..10]).is_err());
//! ```

mod seal;
mod wire;

use std::{fmt, str::FromStr};

use bincode::{Decode, Encode};
use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use thiserror::Error;

use crate::limits::{BLOB_CHUNK_BYTES, MAX_BLOB_BYTES};

pub use seal::{
    open_blob, plain_len, seal_blob, sealed_len, BlobKey, BlobSealer, KeyRole, BLOB_KDF_SALT,
};
pub use wire::{BlobReply, BlobRequest};

/// The libp2p protocol name of the blob exchange.
pub const BLOB_PROTOCOL: &str = "/kith/blob/1";

/// Length of a blob hash.
pub const BLOB_HASH_LEN: usize = 32;

/// [`BLOB_CHUNK_BYTES`] as a `u64`.
const CHUNK: u64 = BLOB_CHUNK_BYTES as u64;

/// The most chunks a blob of [`MAX_BLOB_BYTES`] has.
pub const MAX_CHUNKS: u64 = MAX_BLOB_BYTES.div_ceil(CHUNK);

// A chunk is a whole number of BLAKE3 chunks (1 KiB) and a power of two, so chunks at
// aligned offsets are whole subtrees of the hash tree.
const _: () = assert!(BLOB_CHUNK_BYTES.is_power_of_two() && BLOB_CHUNK_BYTES >= blake3::CHUNK_LEN);
// Chunk indexes fit a u32.
const _: () = assert!(MAX_CHUNKS <= u32::MAX as u64);

/// A blob's name: the BLAKE3 hash of its bytes. Shown as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct BlobHash([u8; BLOB_HASH_LEN]);

impl BlobHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps raw hash bytes.
    pub fn from_bytes(bytes: [u8; BLOB_HASH_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw hash bytes.
    pub fn as_bytes(&self) -> &[u8; BLOB_HASH_LEN] {
        &self.0
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", &hex::encode(self.0)[..12])
    }
}

/// Why a blob hash string was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("not a blob hash (64 hex digits): {0:?}")]
pub struct BlobHashError(pub String);

impl FromStr for BlobHash {
    type Err = BlobHashError;

    /// Parses 64 hex digits of either case, ignoring surrounding white space.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; BLOB_HASH_LEN];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| BlobHashError(s.to_owned()))?;
        Ok(Self(out))
    }
}

/// Why a manifest or a chunk was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// The blob is larger than the protocol allows.
    #[error("blob of {size} bytes exceeds the limit of {MAX_BLOB_BYTES} bytes")]
    TooLarge {
        /// The size claimed.
        size: u64,
    },
    /// The manifest has the wrong number of chaining values for its size.
    #[error("manifest has {got} chunk hashes; a blob of {size} bytes needs {expected}")]
    WrongCount {
        /// The blob's size.
        size: u64,
        /// How many it should have.
        expected: u64,
        /// How many it has.
        got: usize,
    },
    /// The manifest does not hash to the blob's hash.
    #[error("manifest does not match the blob hash")]
    ManifestMismatch,
    /// A chunk index past the end of the blob.
    #[error("chunk {index} is past the end of the blob ({count} chunks)")]
    NoSuchChunk {
        /// The index asked for.
        index: u32,
        /// The blob's chunk count.
        count: u32,
    },
    /// A chunk of the wrong length.
    #[error("chunk {index} is {got} bytes; expected {expected}")]
    ChunkLength {
        /// The chunk.
        index: u32,
        /// Its expected length.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// A chunk whose bytes do not hash to the manifest's value.
    #[error("chunk {index} does not match the blob hash")]
    ChunkMismatch {
        /// The chunk.
        index: u32,
    },
}

/// How many chunks a blob of `size` bytes has: at least one (an empty blob is one empty
/// chunk).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK).max(1)
}

/// A blob's manifest as it travels: its size and, for a blob of more than one chunk, the
/// BLAKE3 chaining value of each chunk (none for a single chunk: the blob hash checks it).
/// Only [`Manifest::verify`] and [`Manifest::build`] make a [`VerifiedManifest`].
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Manifest {
    /// The blob's length in bytes.
    pub size: u64,
    /// The chaining value of each chunk, in order; empty for a single-chunk blob.
    pub cvs: Vec<[u8; 32]>,
}

impl Manifest {
    /// The hash and verified manifest of `bytes`.
    pub fn build(bytes: &[u8]) -> (BlobHash, VerifiedManifest) {
        let mut builder = ManifestBuilder::default();
        for chunk in bytes.chunks(BLOB_CHUNK_BYTES) {
            builder.push(chunk);
        }
        if bytes.is_empty() {
            builder.push(&[]);
        }
        builder.finish()
    }

    /// Checks the manifest against the blob's hash: the size within the protocol's limit,
    /// the number of chaining values for that size, and the hash tree they make. The
    /// chaining values do not pin the exact size within the last chunk: a manifest that
    /// lies about it passes here, and then no last chunk matches it (its length is
    /// checked with its hash), so a download from a liar fails at the last chunk.
    ///
    /// # Errors
    /// [`BlobError::TooLarge`], [`BlobError::WrongCount`], [`BlobError::ManifestMismatch`].
    pub fn verify(self, hash: &BlobHash) -> Result<VerifiedManifest, BlobError> {
        if self.size > MAX_BLOB_BYTES {
            return Err(BlobError::TooLarge { size: self.size });
        }
        let count = chunk_count(self.size);
        let expected = if count == 1 { 0 } else { count };
        if self.cvs.len() as u64 != expected {
            return Err(BlobError::WrongCount { size: self.size, expected, got: self.cvs.len() });
        }
        if count > 1 && root_of(&self.cvs, self.size) != *hash {
            return Err(BlobError::ManifestMismatch);
        }
        Ok(VerifiedManifest { hash: *hash, size: self.size, cvs: self.cvs })
    }
}

/// The chaining value of the subtree of `len` bytes whose chunks have `cvs` (non-root).
fn subtree_cv(cvs: &[ChainingValue], len: u64) -> ChainingValue {
    match cvs {
        [only] => *only,
        _ => {
            let (left, right, left_len) = split(cvs, len);
            merge_subtrees_non_root(
                &subtree_cv(left, left_len),
                &subtree_cv(right, len - left_len),
                Mode::Hash,
            )
        }
    }
}

/// Splits a subtree of at least two chunks where BLAKE3 does: the left part is the largest
/// power-of-two number of 1 KiB chunks smaller than the whole, which (the whole being over
/// one blob chunk) is a whole number of blob chunks.
fn split(cvs: &[ChainingValue], len: u64) -> (&[ChainingValue], &[ChainingValue], u64) {
    let left_len = left_subtree_len(len);
    let at = usize::try_from(left_len / CHUNK).unwrap_or(usize::MAX).min(cvs.len());
    let (left, right) = cvs.split_at(at);
    (left, right, left_len)
}

/// The root hash of a blob of `len` bytes with at least two chunks of `cvs`.
fn root_of(cvs: &[ChainingValue], len: u64) -> BlobHash {
    let (left, right, left_len) = split(cvs, len);
    let root = merge_subtrees_root(
        &subtree_cv(left, left_len),
        &subtree_cv(right, len - left_len),
        Mode::Hash,
    );
    BlobHash(*root.as_bytes())
}

/// The chaining value of chunk `index` with these bytes.
fn chunk_cv(index: u64, bytes: &[u8]) -> ChainingValue {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(index * CHUNK);
    hasher.update(bytes);
    hasher.finalize_non_root()
}

/// A manifest known to belong to its blob hash: made by [`Manifest::verify`] or by
/// hashing the bytes ([`Manifest::build`], [`ManifestBuilder`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedManifest {
    hash: BlobHash,
    size: u64,
    cvs: Vec<ChainingValue>,
}

impl VerifiedManifest {
    /// The blob's hash.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The chaining values (empty for a single-chunk blob).
    pub fn cvs(&self) -> &[[u8; 32]] {
        &self.cvs
    }

    /// The manifest as it travels.
    pub fn to_manifest(&self) -> Manifest {
        Manifest { size: self.size, cvs: self.cvs.clone() }
    }

    /// How many chunks the blob has.
    pub fn chunk_count(&self) -> u32 {
        u32::try_from(chunk_count(self.size)).unwrap_or(u32::MAX)
    }

    /// The byte offset of chunk `index`.
    pub fn chunk_offset(&self, index: u32) -> u64 {
        u64::from(index) * CHUNK
    }

    /// The length of chunk `index`, if the blob has it.
    pub fn chunk_len(&self, index: u32) -> Option<usize> {
        if index >= self.chunk_count() {
            return None;
        }
        let start = self.chunk_offset(index);
        let len = (self.size - start.min(self.size)).min(CHUNK);
        usize::try_from(len).ok()
    }

    /// Checks chunk `index` against the manifest (its length, then its hash).
    ///
    /// # Errors
    /// [`BlobError::NoSuchChunk`], [`BlobError::ChunkLength`], [`BlobError::ChunkMismatch`].
    pub fn check_chunk(&self, index: u32, bytes: &[u8]) -> Result<(), BlobError> {
        let count = self.chunk_count();
        let expected = self.chunk_len(index).ok_or(BlobError::NoSuchChunk { index, count })?;
        if bytes.len() != expected {
            return Err(BlobError::ChunkLength { index, expected, got: bytes.len() });
        }
        let ok = match self.cvs.get(index as usize) {
            Some(cv) => chunk_cv(u64::from(index), bytes) == *cv,
            // A single-chunk blob: the chunk is the blob.
            None => BlobHash::of(bytes) == self.hash,
        };
        if ok {
            Ok(())
        } else {
            Err(BlobError::ChunkMismatch { index })
        }
    }
}

/// Hashes a blob chunk by chunk (for files read piece by piece): push every chunk in
/// order, each [`BLOB_CHUNK_BYTES`] long except the last, then [`ManifestBuilder::finish`].
#[derive(Default)]
pub struct ManifestBuilder {
    cvs: Vec<ChainingValue>,
    size: u64,
    /// The root hash of the first chunk, in case it is the only one.
    first_root: Option<BlobHash>,
}

impl ManifestBuilder {
    /// Adds the next chunk. Every chunk but the last must be exactly [`BLOB_CHUNK_BYTES`]
    /// long; a short chunk followed by another makes [`ManifestBuilder::finish`] describe
    /// other bytes than those pushed (the caller reads whole chunks).
    pub fn push(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            // Only an empty blob has an empty chunk; BLAKE3 has no empty subtrees.
            return;
        }
        let index = self.cvs.len() as u64;
        if index == 0 {
            self.first_root = Some(BlobHash::of(chunk));
        }
        self.cvs.push(chunk_cv(index, chunk));
        self.size += chunk.len() as u64;
    }

    /// The blob's hash and manifest.
    pub fn finish(self) -> (BlobHash, VerifiedManifest) {
        if self.cvs.len() <= 1 {
            let hash = self.first_root.unwrap_or_else(|| BlobHash::of(&[]));
            return (hash, VerifiedManifest { hash, size: self.size, cvs: Vec::new() });
        }
        let hash = root_of(&self.cvs, self.size);
        (hash, VerifiedManifest { hash, size: self.size, cvs: self.cvs })
    }
}

#[cfg(test)]
mod tests;
