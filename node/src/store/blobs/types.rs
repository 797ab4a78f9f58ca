//! The blob store's types: errors, who holds a blob, its metadata, limits and counts.

use std::{
    io,
    path::{Path, PathBuf},
};

use bincode::{Decode, Encode};
use kith_protocol::{blob::BlobHash, AuthorId, RecordId};
use thiserror::Error;

use super::super::{codec::Value, StoreError};

/// Why a blob operation failed.
#[derive(Debug, Error)]
pub enum BlobStoreError {
    /// The sled side.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file operation.
    #[error("blob file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Larger than this node's maximum blob size.
    #[error("{size} bytes is more than the largest blob this node accepts ({max} bytes)")]
    TooLarge {
        /// The blob's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// No room within the quota, even after evicting what may be evicted.
    #[error("the blob store is full ({used} of {quota} bytes used by blobs it may not evict)")]
    Full {
        /// Bytes in use.
        used: u64,
        /// The quota.
        quota: u64,
    },
}

impl From<sled::Error> for BlobStoreError {
    fn from(e: sled::Error) -> Self {
        Self::Store(StoreError::Sled(e))
    }
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobStoreError + '_ {
    move |source| BlobStoreError::Io { path: path.to_owned(), source }
}

/// Who needs a blob. A blob with no owner left is collected after a grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOwner {
    /// A public record carries it as an attachment or thumbnail: anyone may fetch it.
    Record(RecordId),
    /// A direct message with `peer` carries it sealed: only `peer` may fetch it.
    Sealed {
        /// The other person of the conversation.
        peer: AuthorId,
        /// The message.
        message: [u8; 16],
    },
    /// The opened (plaintext) file of a direct message with `peer`: never given to anyone.
    Local {
        /// The other person of the conversation.
        peer: AuthorId,
        /// The message.
        message: [u8; 16],
    },
}

const OWNER_RECORD: u8 = 0;
const OWNER_SEALED: u8 = 1;
const OWNER_LOCAL: u8 = 2;

impl BlobOwner {
    pub(in crate::store) fn key(&self, hash: &BlobHash) -> Vec<u8> {
        let mut key = hash.as_bytes().to_vec();
        match self {
            Self::Record(id) => {
                key.push(OWNER_RECORD);
                key.extend_from_slice(id.as_bytes());
            }
            Self::Sealed { peer, message } | Self::Local { peer, message } => {
                key.push(if matches!(self, Self::Sealed { .. }) {
                    OWNER_SEALED
                } else {
                    OWNER_LOCAL
                });
                key.extend_from_slice(peer.as_bytes());
                key.extend_from_slice(message);
            }
        }
        key
    }

    pub(super) fn from_key(key: &[u8]) -> Option<Self> {
        let (&tag, rest) = key.get(32..)?.split_first()?;
        match tag {
            OWNER_RECORD => Some(Self::Record(RecordId::from_bytes(rest.try_into().ok()?))),
            OWNER_SEALED | OWNER_LOCAL => {
                let peer = AuthorId::from_bytes(rest.get(..32)?.try_into().ok()?).ok()?;
                let message: [u8; 16] = rest.get(32..)?.try_into().ok()?;
                Some(if tag == OWNER_SEALED {
                    Self::Sealed { peer, message }
                } else {
                    Self::Local { peer, message }
                })
            }
            _ => None,
        }
    }
}

/// Where a stored blob came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum BlobOrigin {
    /// Made on this node (an attachment of ours, its thumbnail, a file we opened): never
    /// evicted, only collected when nothing refers to it.
    Own,
    /// Fetched from a peer: evicted, least recently used first, when the store is full.
    Fetched,
}

/// What the store knows of a complete blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct BlobMeta {
    /// Its size in bytes.
    pub size: u64,
    /// Where it came from.
    pub origin: BlobOrigin,
    /// When it was stored, ms since the epoch.
    pub added_ms: u64,
    /// When it was last read or served, ms since the epoch (kept to a minute).
    pub used_ms: u64,
    /// Fetched on the node's own initiative (a followed author's thumbnail): counts
    /// against the thumbnail budget.
    pub auto: bool,
}

impl Value for BlobMeta {
    const WHAT: &'static str = "blob metadata";
}

/// How much the blob store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLimits {
    /// The largest blob accepted, bytes.
    pub max_blob: u64,
    /// All blobs together, bytes (blobs this node made count too, but are never evicted).
    pub quota: u64,
    /// Blobs fetched on the node's own initiative (thumbnails), bytes: the oldest go to
    /// make room for new ones.
    pub auto_budget: u64,
}

/// The blob store counts shown by `kith status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobCounts {
    /// Complete blobs.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Downloads in progress.
    pub partial: u64,
    /// Bytes of blobs fetched on the node's own initiative (thumbnails).
    pub auto_bytes: u64,
}
