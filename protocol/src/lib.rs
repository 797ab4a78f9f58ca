//! kith-protocol: everything of kith that crosses the wire, with no I/O.
//!
//! - [`identity`]: a person's ed25519 key pair and id (their libp2p peer id);
//! - [`record`]: signed public records (posts, profiles, follows...) and their ids;
//! - [`tags`] and [`mentions`]: what is parsed out of post text;
//! - [`topic`]: gossip topic names;
//! - [`blob`]: pictures and files by BLAKE3 hash, their manifests, chunks, the
//!   `/kith/blob/1` exchange and the sealing of private blobs;
//! - [`attachment`]: what a post or message says about the files it carries;
//! - [`invite`]: signed, expiring invite links (id, addresses, name);
//! - [`dm`]: end-to-end encrypted ("sealed") direct messages and the `/kith/dm/1` reply;
//! - [`olm`]: forward-secret direct messages between certified devices (`/kith/dm/2`);
//! - [`codec`]: the one canonical, size-limited encoding;
//! - [`unicode`]: the pinned Unicode character data validation depends on;
//! - [`limits`]: every size and count limit.
//!
//! ```
//! use kith_protocol::{identity::Keypair, record::{Post, Record, RecordKind, VerifiedRecord}};
//!
//! let me = Keypair::from_secret_bytes(&[42; 32]);
//! let post = Record {
//!     author: me.id(),
//!     seq: 1,
//!     prev: None,
//!     timestamp: 1_700_000_000_000,
//!     kind: RecordKind::Post(Post {
//!         text: "hello #kith".into(),
//!         reply_to: None,
//!         mentions: vec![],
//!         expires_at: None,
//!         attachments: vec![],
//!     }),
//! };
//! let signed = post.sign(&me).unwrap();
//! let received = VerifiedRecord::from_bytes(signed.bytes()).unwrap();
//! assert_eq!(received.id(), signed.id());
//! assert_eq!(received.record().tags()[0].as_str(), "kith");
//! ```
#![deny(missing_docs)]

pub mod attachment;
pub mod blob;
pub mod codec;
pub mod dm;
pub mod group;
pub mod identity;
pub mod invite;
pub mod limits;
pub mod mailbox;
pub mod mentions;
pub mod olm;
mod random_id;
pub mod record;
pub mod sync;
pub mod tags;
pub mod topic;
pub mod unicode;

pub use identity::{AuthorId, Keypair};
pub use record::{Post, Record, RecordId, RecordKind, VerifiedRecord};
pub use tags::Tag;
pub use topic::Topic;
