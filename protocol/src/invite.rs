//! Invite links: how one person hands another what it takes to reach and follow them.
//!
//! An [`Invite`] names its issuer (their id), the addresses their node can be reached at
//! (multiaddrs in their binary form, relayed ones included), the name they go by and
//! when the invite stops being valid. [`Invite::to_link`] encodes it canonically, signs
//! [`INVITE_DOMAIN`] followed by those bytes with the issuer's key, and writes the
//! [`SignedInvite`] in base58 after [`LINK_PREFIX`]:
//!
//! ```
//! use kith_protocol::{identity::Keypair, invite::Invite};
//!
//! let me = Keypair::from_secret_bytes(&[42; 32]);
//! let invite = Invite::new(me.id(), "Alice", vec![], 2_000_000_000_000);
//! let link = invite.to_link(&me).unwrap();
//! assert!(link.starts_with("kith://invite/"));
//! let read = Invite::from_link(&link, 1_700_000_000_000).unwrap();
//! assert_eq!(read, invite);
//! // One character changed: refused.
//! let mut bytes = link.into_bytes();
//! let i = bytes.len() - 10;
//! bytes[i] = if bytes[i] == b'2' { b'3' } else { b'2' };
//! assert!(Invite::from_link(&String::from_utf8(bytes).unwrap(), 0).is_err());
//! ```
//!
//! An invite proves only that the holder of the id's key wrote it: that the addresses
//! were theirs then, and the name is what they call themselves. Who sent the link, and
//! over which channel, is what makes it worth adding.

use bincode::{Decode, Encode};
use thiserror::Error;

use crate::{
    codec::{self, CodecError},
    identity::{AuthorId, Keypair, SignatureError, SIGNATURE_LEN},
    limits::MAX_NAME_BYTES,
};

/// Domain prefix signed before an invite's bytes.
pub const INVITE_DOMAIN: &[u8] = b"kith-invite/1:";
/// What a link starts with (also accepted without it).
pub const LINK_PREFIX: &str = "kith://invite/";
/// The only invite version so far.
pub const INVITE_VERSION: u8 = 1;
/// Most addresses in an invite.
pub const MAX_INVITE_ADDRS: usize = 8;
/// Longest address (binary multiaddr) in an invite, bytes.
pub const MAX_INVITE_ADDR_BYTES: usize = 160;
/// Largest encoded signed invite, bytes: version, id, expiry, the longest name and
/// [`MAX_INVITE_ADDRS`] addresses of [`MAX_INVITE_ADDR_BYTES`] (each with its 8-byte
/// length), and the signature.
pub const MAX_INVITE_BYTES: usize = 1
    + 32
    + 8
    + (8 + MAX_NAME_BYTES)
    + 8
    + MAX_INVITE_ADDRS * (8 + MAX_INVITE_ADDR_BYTES)
    + SIGNATURE_LEN;
/// Longest link text read (base58 of [`MAX_INVITE_BYTES`] plus the prefix and slack).
pub const MAX_LINK_CHARS: usize = 2 * MAX_INVITE_BYTES;

/// Why an invite link was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InviteError {
    /// Not base58 text, or far too long.
    #[error("not a kith invite link")]
    NotALink,
    /// Base58, but not a (canonical, size-bounded) signed invite: cut short or changed.
    #[error("the invite link is damaged (cut short or changed)")]
    Damaged(#[source] CodecError),
    /// Made by a newer kith.
    #[error("invite version {0} is not known to this kith (a newer one made it)")]
    UnknownVersion(u8),
    /// A field over its limit.
    #[error("the invite link is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not match: the link was changed after it was made.
    #[error("the invite link was changed after it was made (its signature does not match)")]
    BadSignature(#[from] SignatureError),
    /// Past its expiry time.
    #[error("the invite expired at {expires} ms since the epoch; ask for a new one")]
    Expired {
        /// When it expired, ms since the epoch.
        expires: u64,
    },
}

/// What an invite says (the unsigned content).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Invite {
    /// [`INVITE_VERSION`].
    pub version: u8,
    /// The issuer.
    pub id: AuthorId,
    /// When it stops being valid, ms since the Unix epoch.
    pub expires: u64,
    /// The issuer's name (their profile name when they made it; may be empty).
    pub name: String,
    /// Addresses of the issuer's node, binary multiaddrs without the final `/p2p/<id>`.
    pub addrs: Vec<Vec<u8>>,
}

/// An invite with the issuer's signature over [`INVITE_DOMAIN`] and its encoding.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignedInvite {
    /// The content.
    pub invite: Invite,
    /// The issuer's signature.
    pub signature: [u8; SIGNATURE_LEN],
}

impl Invite {
    /// An invite of the current version.
    pub fn new(id: AuthorId, name: &str, addrs: Vec<Vec<u8>>, expires: u64) -> Self {
        Self { version: INVITE_VERSION, id, expires, name: name.to_owned(), addrs }
    }

    fn check(&self) -> Result<(), InviteError> {
        if self.version != INVITE_VERSION {
            return Err(InviteError::UnknownVersion(self.version));
        }
        if self.name.len() > MAX_NAME_BYTES {
            return Err(InviteError::Malformed("name too long"));
        }
        if self.addrs.len() > MAX_INVITE_ADDRS {
            return Err(InviteError::Malformed("too many addresses"));
        }
        if self.addrs.iter().any(|a| a.is_empty() || a.len() > MAX_INVITE_ADDR_BYTES) {
            return Err(InviteError::Malformed("address length"));
        }
        Ok(())
    }

    /// Signs the invite with `keypair` (which must be the issuer's) and writes the link.
    ///
    /// # Errors
    /// [`InviteError::Malformed`] for a field over its limit; [`InviteError::BadSignature`]
    /// when `keypair` is not the issuer's.
    pub fn to_link(&self, keypair: &Keypair) -> Result<String, InviteError> {
        self.check()?;
        if keypair.id() != self.id {
            return Err(InviteError::BadSignature(SignatureError::BadSignature));
        }
        let body = codec::encode(self).map_err(InviteError::Damaged)?;
        let signature = keypair.sign(INVITE_DOMAIN, &body);
        let signed = codec::encode(&SignedInvite { invite: self.clone(), signature })
            .map_err(InviteError::Damaged)?;
        Ok(format!("{LINK_PREFIX}{}", bs58::encode(signed).into_string()))
    }

    /// Reads a link: base58 (white space anywhere, as chats wrap long lines, and the
    /// prefix optional), size, canonical encoding, version and limits, signature, and
    /// expiry against `now_ms`.
    ///
    /// # Errors
    /// [`InviteError`], each saying what is wrong.
    pub fn from_link(text: &str, now_ms: u64) -> Result<Self, InviteError> {
        if text.len() > MAX_LINK_CHARS {
            return Err(InviteError::NotALink);
        }
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let payload = compact.strip_prefix(LINK_PREFIX).unwrap_or(&compact);
        let bytes = bs58::decode(payload).into_vec().map_err(|_| InviteError::NotALink)?;
        if bytes.is_empty() {
            return Err(InviteError::NotALink);
        }
        let signed: SignedInvite =
            codec::decode::<_, MAX_INVITE_BYTES>(&bytes).map_err(InviteError::Damaged)?;
        signed.invite.check()?;
        let body = codec::encode(&signed.invite).map_err(InviteError::Damaged)?;
        signed.invite.id.verify(INVITE_DOMAIN, &body, &signed.signature)?;
        if signed.invite.expires <= now_ms {
            return Err(InviteError::Expired { expires: signed.invite.expires });
        }
        Ok(signed.invite)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> (Keypair, Invite) {
        let kp = Keypair::from_secret_bytes(&[7; 32]);
        // /ip4/192.0.2.1/tcp/4001 and /ip4/192.0.2.1/udp/4001/quic-v1
        let tcp = vec![4, 192, 0, 2, 1, 6, 0x0f, 0xa1];
        let quic = vec![4, 192, 0, 2, 1, 0x91, 0x02, 0x0f, 0xa1, 0xcc, 0x03];
        let invite = Invite::new(kp.id(), "Alice", vec![tcp, quic], 10_000);
        (kp, invite)
    }

    #[test]
    fn round_trip_short_enough_for_a_chat() {
        let (kp, invite) = sample();
        let link = invite.to_link(&kp).unwrap();
        assert!(link.len() < 260, "{} chars: {link}", link.len());
        assert_eq!(Invite::from_link(&link, 9_999).unwrap(), invite);
        // Wrapped by a chat, or pasted without the prefix.
        let (head, tail) = link.split_at(40);
        assert_eq!(Invite::from_link(&format!(" {head}\n {tail} "), 0).unwrap(), invite);
        let bare = link.strip_prefix(LINK_PREFIX).unwrap();
        assert_eq!(Invite::from_link(bare, 0).unwrap(), invite);
    }

    #[test]
    fn refusals() {
        let (kp, invite) = sample();
        let link = invite.to_link(&kp).unwrap();
        assert_eq!(Invite::from_link(&link, 10_000), Err(InviteError::Expired { expires: 10_000 }));
        assert_eq!(Invite::from_link("kith://invite/0OIl", 0), Err(InviteError::NotALink));
        assert_eq!(Invite::from_link("", 0), Err(InviteError::NotALink));
        assert!(matches!(
            Invite::from_link(&link[..link.len() - 5], 0),
            Err(InviteError::Damaged(_))
        ));
        // Every field changed after signing is caught by the signature.
        let other = Keypair::from_secret_bytes(&[8; 32]);
        let signed = |inv: &Invite, sig: [u8; SIGNATURE_LEN]| {
            let bytes = codec::encode(&SignedInvite { invite: inv.clone(), signature: sig });
            format!("{LINK_PREFIX}{}", bs58::encode(bytes.unwrap()).into_string())
        };
        let good = kp.sign(INVITE_DOMAIN, &codec::encode(&invite).unwrap());
        let mut later = invite.clone();
        later.expires += 1;
        let mut renamed = invite.clone();
        renamed.name = "Mallory".into();
        let mut moved = invite.clone();
        moved.addrs.pop();
        let mut stolen = invite.clone();
        stolen.id = other.id();
        for changed in [later, renamed, moved, stolen] {
            assert!(
                matches!(
                    Invite::from_link(&signed(&changed, good), 0),
                    Err(InviteError::BadSignature(_))
                ),
                "{changed:?}"
            );
        }
        // Signing for someone else is refused; limits hold on both ends.
        assert!(invite.to_link(&other).is_err());
        let mut big = invite.clone();
        big.addrs = vec![vec![1; 8]; MAX_INVITE_ADDRS + 1];
        assert_eq!(big.to_link(&kp), Err(InviteError::Malformed("too many addresses")));
        let mut future = invite.clone();
        future.version = 2;
        let sig = kp.sign(INVITE_DOMAIN, &codec::encode(&future).unwrap());
        assert_eq!(
            Invite::from_link(&signed(&future, sig), 0),
            Err(InviteError::UnknownVersion(2))
        );
    }

    #[test]
    fn the_largest_invite_fits_the_limit() {
        let kp = Keypair::from_secret_bytes(&[9; 32]);
        let invite = Invite::new(
            kp.id(),
            &"n".repeat(MAX_NAME_BYTES),
            vec![vec![0xab; MAX_INVITE_ADDR_BYTES]; MAX_INVITE_ADDRS],
            u64::MAX,
        );
        let link = invite.to_link(&kp).unwrap();
        assert!(link.len() <= MAX_LINK_CHARS);
        assert_eq!(Invite::from_link(&link, 0).unwrap(), invite);
    }
}
