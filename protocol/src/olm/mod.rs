//! Forward-secret direct messages (`/kith/dm/2`; the node uses it once both sides
//! announced a device, `/kith/dm/1` before): Olm sessions between devices certified by
//! their person.
//!
//! - [`device`]: a device's keys and the certificate its person's identity key signs and
//!   the device counter-signs;
//! - [`prekey`]: signed fallback and one-time keys, the announcement of a person's devices
//!   that travels as a record, and the rotation rules;
//! - [`envelope`]: the `/kith/dm/2` envelope (cleartext device ids around an Olm message
//!   whose padded plaintext carries the sender's identity and the [`crate::dm::Plain`]),
//!   and the request and reply of the exchange;
//! - [`inner`]: what the plaintext carries after its head: a message, a delivery
//!   receipt, ... (one byte of kind, the extension point of the exchange);
//! - [`account`]: the device's Olm account and its sessions with one other device, the
//!   only place that touches vodozemac;
//! - [`pickle`]: account and session state encrypted at rest with a key derived from the
//!   identity key.
//!
//! The construction and byte layouts are in `docs/protocol.md`, section 12.9.
//!
//! ```
//! use kith_protocol::{dm::{MessageId, Plain}, identity::Keypair, olm::account::{Device, PeerSessions}};
//!
//! let (alice, bob) = (Keypair::from_secret_bytes(&[1; 32]), Keypair::from_secret_bytes(&[2; 32]));
//! let (mut a, mut b) = (Device::new(), Device::new());
//! let (a_cert, b_cert) = (a.certify(&alice, 1).unwrap(), b.certify(&bob, 1).unwrap());
//! // Bob's fallback key, as his device announcement carries it.
//! let prekey = b.fallback_prekey(1).unwrap();
//!
//! let mut to_bob = PeerSessions::new(b_cert.id());
//! let plain = Plain { id: MessageId::generate().unwrap(), timestamp: 2, text: "hi".into(), attachments: vec![] };
//! let envelope = a.seal(&alice, &mut to_bob, &b_cert, Some(&prekey), &plain).unwrap();
//!
//! let mut from_alice = PeerSessions::new(a_cert.id());
//! let opened = b.open(&mut from_alice, &a_cert, &envelope).unwrap();
//! assert_eq!(opened.inner, kith_protocol::olm::inner::Inner::Message(plain));
//! ```

pub mod account;
pub mod device;
pub mod envelope;
pub mod inner;
pub mod pickle;
pub mod prekey;

use thiserror::Error;

use crate::{codec::CodecError, dm::DmError, identity::SignatureError};

/// The libp2p protocol name of the forward-secret direct message exchange.
pub const DM2_PROTOCOL: &str = "/kith/dm/2";

/// Why a certificate, prekey, envelope or pickle was refused, or a message could not be
/// sealed or opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OlmError {
    /// Bytes larger than their limit; nothing was decoded.
    #[error("{len} bytes exceed the limit of {max} bytes")]
    TooLarge {
        /// Their length.
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// Not a canonical encoding of the expected type.
    #[error("undecodable: {0}")]
    Codec(#[from] CodecError),
    /// Well encoded, but not well formed (unknown version, wrong shape, bad padding).
    #[error("malformed: {0}")]
    Malformed(String),
    /// A signature of a certificate or prekey does not verify, or a key is unusable.
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    /// A certificate whose device id is not the one its keys give, or a prekey of
    /// another device than the certificate given with it.
    #[error("certificate or prekey does not match its device")]
    DeviceMismatch,
    /// A Curve25519 key that is of small order (gives no shared secret).
    #[error("invalid or low-order Curve25519 key")]
    BadKey,
    /// The envelope is for another device.
    #[error("sealed for another device")]
    WrongRecipient,
    /// The envelope names another sender device than the certificate given, or its
    /// sealed content names another person or other devices than its cleartext.
    #[error("sender does not match the certificate or the envelope")]
    WrongSender,
    /// The message is an exact repeat of one already opened (its message key is spent).
    #[error("already opened (replayed or duplicated message)")]
    Replay,
    /// No session can open the message: the receiver lost or never had the session it
    /// was sealed with, the one-time key it names is spent or unknown, or the message was
    /// tampered with. The sender should start a new session and send it again.
    #[error("no session opens this message")]
    NoSession,
    /// There is no session with this device and no prekey was given to start one.
    #[error("no session with this device and no prekey to start one")]
    NeedPrekey,
    /// The plaintext does not fit (text too long, too many attachments...).
    #[error("message: {0}")]
    Message(#[from] DmError),
    /// A pickle that does not decrypt with this key (wrong identity, tampered, or the
    /// state of another peer device).
    #[error("pickle does not decrypt (wrong key, tampered, or of another device)")]
    Pickle,
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(getrandom::Error),
}

impl OlmError {
    /// Whether the node should replace its session with the sender (the sender starts a
    /// new one from a fresh prekey and sends the message again): true for
    /// [`OlmError::NoSession`].
    pub fn needs_new_session(&self) -> bool {
        matches!(self, Self::NoSession)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;
