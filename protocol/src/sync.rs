//! History sync (`/kith/sync/1`): the wire types of one request and its response.
//!
//! Gossip reaches only nodes that are online. A node asks a peer for what it misses, one
//! query per request:
//!
//! - [`Query::Author`]: "I hold this author's log without gaps up to `after`": the peer
//!   answers with the records after it, in seq order. Any peer may serve any author's
//!   records: they are signed, and the receiver verifies them like gossip.
//! - [`Query::Tag`]: range-based reconciliation by time buckets: the asker summarises
//!   what it holds for the tag since `since` as one [`Bucket`] (count and XOR fingerprint
//!   of record ids) per [`BUCKET_MS`] of time; the peer answers with its records from
//!   every bucket whose summary differs, in (timestamp, id) order, from `after` on.
//!
//! - [`Query::Profile`]: "send me this author's current profile record": the answer
//!   holds it, or nothing. So a node learns the name of someone it shows without fetching
//!   their log.
//!
//! Every answer is bounded by [`MAX_SYNC_RECORDS`] and [`MAX_SYNC_RESPONSE_BYTES`] and
//! carries a cursor to continue from when there is more.

use bincode::{Decode, Encode};
use thiserror::Error;

use crate::{
    codec::{self, CodecError},
    identity::AuthorId,
    record::RecordId,
};

/// Width of a reconciliation bucket (one hour), ms.
pub const BUCKET_MS: u64 = 3_600_000;
/// Most buckets in one tag query (30 days of hours is 720).
pub const MAX_SYNC_BUCKETS: usize = 1024;
/// Most records in one response.
pub const MAX_SYNC_RECORDS: usize = 256;
/// Most records in one offer.
pub const MAX_OFFER_RECORDS: usize = 32;
/// Most authors in one [`Query::Digest`].
pub const MAX_DIGEST_AUTHORS: usize = 2048;
/// Most tags in one [`Query::Digest`].
pub const MAX_DIGEST_TAGS: usize = 128;
/// Largest encoded request, bytes (an offer of [`MAX_OFFER_RECORDS`] records fits).
pub const MAX_SYNC_REQUEST_BYTES: usize = 320 * 1024;
/// Largest encoded response, bytes (the responder stops adding records before this).
pub const MAX_SYNC_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why sync bytes were refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SyncError {
    /// Not a valid, size-bounded encoding.
    #[error("sync message: {0}")]
    Codec(#[from] CodecError),
    /// Over a count limit.
    #[error("sync message over a limit: {0}")]
    Limit(&'static str),
}

/// A summary of the records one side holds in one time bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Bucket {
    /// Start of the bucket (a multiple of [`BUCKET_MS`]).
    pub start: u64,
    /// Records in it.
    pub count: u32,
    /// XOR of the first 16 bytes of their ids.
    pub fingerprint: [u8; 16],
}

impl Bucket {
    /// The start of the bucket holding `timestamp`.
    pub fn start_of(timestamp: u64) -> u64 {
        timestamp - timestamp % BUCKET_MS
    }

    /// An empty bucket starting at `start`.
    pub fn empty(start: u64) -> Self {
        Self { start, count: 0, fingerprint: [0; 16] }
    }

    /// Adds a record id to the summary.
    pub fn add(&mut self, id: &RecordId) {
        self.count = self.count.saturating_add(1);
        for (f, b) in self.fingerprint.iter_mut().zip(id.as_bytes()) {
            *f ^= b;
        }
    }
}

impl Bucket {
    /// One summary of many buckets (count and XOR of every id in them; `start` 0): two
    /// different sets of honest records have the same summary with odds of 2^-128.
    pub fn summary(buckets: &[Bucket]) -> Bucket {
        let mut sum = Bucket::empty(0);
        for b in buckets {
            sum.count = sum.count.saturating_add(b.count);
            for (f, x) in sum.fingerprint.iter_mut().zip(b.fingerprint) {
                *f ^= x;
            }
        }
        sum
    }
}

/// The answer to a [`Query::Digest`]: the positions of the entries that differ,
/// authors first (`0..authors.len()`), then tags (`authors.len()..`), ascending.
/// `answered` is always true: a peer from before this query answers it with an empty
/// [`SyncResponse`], whose bytes do not decode as this type.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DigestResponse {
    /// Positions of the entries the peer would send something for.
    pub differ: Vec<u32>,
    /// Always true.
    pub answered: bool,
}

impl DigestResponse {
    /// Encodes the answer.
    ///
    /// # Errors
    /// [`SyncError::Limit`] if over a limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SyncError> {
        if self.differ.len() > MAX_DIGEST_AUTHORS + MAX_DIGEST_TAGS {
            return Err(SyncError::Limit("digest entries"));
        }
        Ok(codec::encode(self)?)
    }

    /// Decodes an answer (an empty [`SyncResponse`] from an older peer is refused).
    ///
    /// # Errors
    /// [`SyncError`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SyncError> {
        let response: Self = codec::decode::<_, MAX_SYNC_RESPONSE_BYTES>(bytes)?;
        if response.differ.len() > MAX_DIGEST_AUTHORS + MAX_DIGEST_TAGS {
            return Err(SyncError::Limit("digest entries"));
        }
        if !response.answered {
            return Err(SyncError::Limit("not an answer to a digest"));
        }
        Ok(response)
    }
}

/// Where a tag answer stopped: the last (timestamp, id) sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TagCursor {
    /// Timestamp of the last record sent.
    pub timestamp: u64,
    /// Its id.
    pub id: RecordId,
}

/// One sync query.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Query {
    /// Records of `author` with seq greater than `after`.
    Author {
        /// Whose log.
        author: AuthorId,
        /// The asker holds seq 1..=after without gaps.
        after: u64,
    },
    /// Posts with hashtag `tag` the asker may miss.
    Tag {
        /// The normalised tag.
        tag: String,
        /// Only records at or after this time, ms.
        since: u64,
        /// The asker's buckets (only non-empty ones; missing means empty).
        buckets: Vec<Bucket>,
        /// Continue after this record.
        after: Option<TagCursor>,
    },
    /// Records the sender thinks the receiver wants (its own recent records on a topic
    /// the receiver just subscribed to). The answer is empty.
    Offer {
        /// Signed records, each verified by the receiver.
        records: Vec<Vec<u8>>,
    },
    /// The author's current profile record, if the peer holds one (the answer holds at
    /// most that one record).
    Profile {
        /// Whose profile.
        author: AuthorId,
    },
    /// "Here is what I hold; which of these would you send me something for?": one
    /// question for a whole periodic round, so that a round with nothing new is one
    /// small exchange per peer. The answer is a [`DigestResponse`].
    Digest {
        /// Authors whose log the asker holds without gaps, with its last seq: the peer
        /// names those of which it holds a later seq.
        authors: Vec<(AuthorId, u64)>,
        /// Tag summaries from `since` on.
        since: u64,
        /// Tags with the asker's summary of all its posts with the tag from the bucket
        /// of `since` on ([`Bucket::summary`]): the peer names those whose summary
        /// differs from its own.
        tags: Vec<(String, Bucket)>,
    },
}

/// A request on `/kith/sync/1`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SyncRequest {
    /// What is asked.
    pub query: Query,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SyncResponse {
    /// Signed records, each to be verified by the asker.
    pub records: Vec<Vec<u8>>,
    /// For an author query: there may be more after the last record sent.
    pub more: bool,
    /// For a tag query: continue from here.
    pub next: Option<TagCursor>,
}

impl SyncRequest {
    /// Encodes the request.
    ///
    /// # Errors
    /// [`SyncError::Limit`] if over a count limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SyncError> {
        self.check()?;
        Ok(codec::encode(self)?)
    }

    /// Decodes a request: size checked before decoding, then the count limits.
    ///
    /// # Errors
    /// [`SyncError`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SyncError> {
        let request: Self = codec::decode::<_, MAX_SYNC_REQUEST_BYTES>(bytes)?;
        request.check()?;
        Ok(request)
    }

    fn check(&self) -> Result<(), SyncError> {
        if let Query::Offer { records } = &self.query {
            if records.len() > MAX_OFFER_RECORDS {
                return Err(SyncError::Limit("offered records"));
            }
        }
        if let Query::Digest { authors, tags, .. } = &self.query {
            if authors.len() > MAX_DIGEST_AUTHORS || tags.len() > MAX_DIGEST_TAGS {
                return Err(SyncError::Limit("digest entries"));
            }
            if tags.iter().any(|(tag, _)| tag.len() > 4 * crate::limits::MAX_TAG_CHARS) {
                return Err(SyncError::Limit("tag"));
            }
        }
        if let Query::Tag { buckets, tag, .. } = &self.query {
            if buckets.len() > MAX_SYNC_BUCKETS {
                return Err(SyncError::Limit("buckets"));
            }
            if tag.len() > 4 * crate::limits::MAX_TAG_CHARS {
                return Err(SyncError::Limit("tag"));
            }
        }
        Ok(())
    }
}

impl SyncResponse {
    /// Encodes the response.
    ///
    /// # Errors
    /// [`SyncError::Limit`] if over a limit.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SyncError> {
        if self.records.len() > MAX_SYNC_RECORDS {
            return Err(SyncError::Limit("records"));
        }
        let bytes = codec::encode(self)?;
        if bytes.len() > MAX_SYNC_RESPONSE_BYTES {
            return Err(SyncError::Limit("response bytes"));
        }
        Ok(bytes)
    }

    /// Decodes a response: size checked before decoding, then the record count.
    ///
    /// # Errors
    /// [`SyncError`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SyncError> {
        let response: Self = codec::decode::<_, MAX_SYNC_RESPONSE_BYTES>(bytes)?;
        if response.records.len() > MAX_SYNC_RECORDS {
            return Err(SyncError::Limit("records"));
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn round_trips_and_limits() {
        let author = Keypair::from_secret_bytes(&[1; 32]).id();
        let r = SyncRequest { query: Query::Author { author, after: 5 } };
        assert_eq!(SyncRequest::from_bytes(&r.to_bytes().unwrap()).unwrap(), r);
        // A profile question is the variant number (3) and the author.
        let p = SyncRequest { query: Query::Profile { author } };
        let bytes = p.to_bytes().unwrap();
        assert_eq!(bytes[0], 3);
        assert!(bytes.len() < 64, "{}", bytes.len());
        assert_eq!(SyncRequest::from_bytes(&bytes).unwrap(), p);
        let mut b = Bucket::empty(Bucket::start_of(BUCKET_MS * 3 + 17));
        assert_eq!(b.start, BUCKET_MS * 3);
        b.add(&RecordId::from_bytes([1; 32]));
        b.add(&RecordId::from_bytes([1; 32]));
        assert_eq!(b.count, 2);
        assert_eq!(b.fingerprint, [0; 16]);
        let t = SyncRequest {
            query: Query::Tag { tag: "rust".into(), since: 0, buckets: vec![b], after: None },
        };
        assert_eq!(SyncRequest::from_bytes(&t.to_bytes().unwrap()).unwrap(), t);
        let too_many = SyncRequest {
            query: Query::Tag {
                tag: "x".into(),
                since: 0,
                buckets: vec![b; MAX_SYNC_BUCKETS + 1],
                after: None,
            },
        };
        assert!(too_many.to_bytes().is_err());
        let resp = SyncResponse { records: vec![vec![1, 2, 3]], more: true, next: None };
        assert_eq!(SyncResponse::from_bytes(&resp.to_bytes().unwrap()).unwrap(), resp);
        assert!(SyncResponse::from_bytes(&[0xff; 16]).is_err());
    }

    #[test]
    fn digests_round_trip_and_an_old_peers_empty_answer_is_not_one() {
        let author = Keypair::from_secret_bytes(&[1; 32]).id();
        let mut b = Bucket::empty(BUCKET_MS);
        b.add(&RecordId::from_bytes([7; 32]));
        let mut c = Bucket::empty(2 * BUCKET_MS);
        c.add(&RecordId::from_bytes([9; 32]));
        let sum = Bucket::summary(&[b, c]);
        assert_eq!(sum.count, 2);
        assert_eq!(sum.fingerprint, [7 ^ 9; 16]);
        assert_ne!(sum, Bucket::summary(&[b]));
        let d = SyncRequest {
            query: Query::Digest {
                authors: vec![(author, 12)],
                since: 5,
                tags: vec![("rust".into(), sum)],
            },
        };
        let bytes = d.to_bytes().unwrap();
        assert_eq!(bytes[0], 4);
        assert_eq!(SyncRequest::from_bytes(&bytes).unwrap(), d);
        let too_many = SyncRequest {
            query: Query::Digest {
                authors: vec![(author, 1); MAX_DIGEST_AUTHORS + 1],
                since: 0,
                tags: Vec::new(),
            },
        };
        assert!(too_many.to_bytes().is_err());
        let answer = DigestResponse { differ: vec![0, 3], answered: true };
        assert_eq!(DigestResponse::from_bytes(&answer.to_bytes().unwrap()).unwrap(), answer);
        // What a node from before digests answers: an empty sync response.
        let empty = SyncResponse { records: Vec::new(), more: false, next: None };
        assert!(DigestResponse::from_bytes(&empty.to_bytes().unwrap()).is_err());
        let unanswered = DigestResponse { differ: Vec::new(), answered: false };
        assert!(DigestResponse::from_bytes(&codec::encode(&unanswered).unwrap()).is_err());
    }
}
