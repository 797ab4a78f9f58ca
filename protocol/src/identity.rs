//! Identities: a person's ed25519 key pair and the public id derived from it.
//!
//! A person's id is the libp2p `PeerId` of their ed25519 public key (`12D3KooW...`), so the
//! same string names the author of a record and the node to dial. All signature checks go
//! through [`AuthorId::verify`], the one place a later multi-device or rotation scheme
//! would change.

mod keys;

use std::{fmt, str::FromStr};

use bincode::{Decode, Encode};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use thiserror::Error;
use zeroize::Zeroizing;

/// Length of an ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an ed25519 secret key seed.
pub const SECRET_KEY_LEN: usize = 32;
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an X25519 public or secret key (the Diffie-Hellman form of an identity key).
pub const X25519_KEY_LEN: usize = 32;
/// What comes before the key in the 38 bytes of a canonical peer id: the identity
/// multihash (code 0, length 36) of the protobuf `PublicKey` (field 1 = 1, Ed25519; field 2,
/// 32 bytes).
pub const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// Why an id or key was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The text is not a libp2p peer id.
    #[error("not a peer id: {0}")]
    NotPeerId(String),
    /// The peer id is not derived from an ed25519 key (kith uses only ed25519).
    #[error("peer id does not carry an ed25519 public key")]
    NotEd25519,
    /// The peer id carries an ed25519 key, but not in the one form kith accepts: the 38
    /// bytes `00 24 08 01 12 20 || key` (another protobuf encoding of the same key).
    #[error("peer id is not in its canonical form")]
    NotCanonical,
    /// The 32 bytes are not a valid ed25519 public key.
    #[error("invalid ed25519 public key")]
    BadKey,
}

/// Why a signature was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The author's public key is not a usable ed25519 key (malformed or of small order).
    #[error("invalid author key")]
    BadKey,
    /// The signature does not verify (strictly) for this key and message.
    #[error("bad signature")]
    BadSignature,
}

/// A person's public identity: their ed25519 public key, shown as a libp2p peer id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct AuthorId([u8; PUBLIC_KEY_LEN]);

impl AuthorId {
    /// Wraps public key bytes, checking that they are a valid ed25519 point.
    ///
    /// # Errors
    /// [`IdError::BadKey`] when the bytes do not decode to a curve point.
    pub fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Result<Self, IdError> {
        if !valid_cache::knows(&bytes) {
            VerifyingKey::from_bytes(&bytes).map_err(|_| IdError::BadKey)?;
            valid_cache::remember(&bytes);
        }
        Ok(Self(bytes))
    }

    /// Wraps public key bytes this node checked before it stored them (keys of its own
    /// indexes), without checking them again: the check decompresses a curve point, which
    /// costs more than the read. Bytes from anywhere else go through [`Self::from_bytes`];
    /// an invalid key that got here anyway fails where it is used ([`Self::verify`],
    /// [`Self::to_peer_id`]) and shows as invalid.
    pub fn from_stored(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// The libp2p peer id of this identity.
    ///
    /// # Errors
    /// [`IdError::BadKey`] when the bytes are not a valid key (only possible for ids decoded
    /// from the wire and not yet verified).
    pub fn to_peer_id(&self) -> Result<libp2p_identity::PeerId, IdError> {
        if valid_cache::knows(&self.0) {
            // A key known valid: its canonical peer id, without decoding the point again.
            let canonical = [PEER_ID_PREFIX.as_slice(), self.0.as_slice()].concat();
            if let Ok(peer) = libp2p_identity::PeerId::from_bytes(&canonical) {
                return Ok(peer);
            }
        }
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0)
            .map_err(|_| IdError::BadKey)?;
        valid_cache::remember(&self.0);
        Ok(libp2p_identity::PublicKey::from(key).to_peer_id())
    }

    /// The identity behind a libp2p peer id, if it carries an ed25519 key in the canonical
    /// form: exactly the 38 bytes `00 24 08 01 12 20 || key` (identity multihash of the
    /// protobuf `PublicKey { Type = Ed25519, Data = key }`, fields in order, nothing else),
    /// so that one id has one text.
    ///
    /// # Errors
    /// [`IdError::NotEd25519`] for peer ids of other key types or hashed keys,
    /// [`IdError::NotCanonical`] for another encoding of an ed25519 key,
    /// [`IdError::BadKey`] for bytes that are not a curve point.
    pub fn from_peer_id(peer: &libp2p_identity::PeerId) -> Result<Self, IdError> {
        // The canonical form of a key known valid: taken without decoding the point.
        let bytes = peer.to_bytes();
        if let Some(key) = bytes.strip_prefix(PEER_ID_PREFIX.as_slice()) {
            if let Ok(key) = <[u8; PUBLIC_KEY_LEN]>::try_from(key) {
                if valid_cache::knows(&key) {
                    return Ok(Self(key));
                }
            }
        }
        let multihash = peer.as_ref();
        // Code 0 is the identity multihash: the digest is the protobuf-encoded public key.
        if multihash.code() != 0 {
            return Err(IdError::NotEd25519);
        }
        let key = libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest())
            .map_err(|_| IdError::NotEd25519)?
            .try_into_ed25519()
            .map_err(|_| IdError::NotEd25519)?;
        let id = Self::from_bytes(key.to_bytes())?;
        if peer.to_bytes() != [PEER_ID_PREFIX.as_slice(), id.0.as_slice()].concat() {
            return Err(IdError::NotCanonical);
        }
        Ok(id)
    }

    /// Verifies `signature` over `domain || message` with this key, strictly: non-canonical
    /// signatures and small-order keys are refused (RFC 8032 plus the malleability checks).
    ///
    /// # Errors
    /// [`SignatureError::BadKey`] or [`SignatureError::BadSignature`].
    pub fn verify(
        &self,
        domain: &[u8],
        message: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<(), SignatureError> {
        verify_key(&self.0, domain, message, signature)
    }

    /// The X25519 public key of this identity: the Montgomery form (`u` coordinate) of the
    /// ed25519 point, as libsodium's `crypto_sign_ed25519_pk_to_curve25519` computes it. Used
    /// by [`crate::dm`], so that an id alone is enough to write to someone.
    ///
    /// # Errors
    /// [`IdError::BadKey`] when the bytes are not a curve point, or the point is of small
    /// order (its X25519 form would give an all-zero shared secret).
    pub fn to_x25519(&self) -> Result<[u8; X25519_KEY_LEN], IdError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| IdError::BadKey)?;
        if key.is_weak() {
            return Err(IdError::BadKey);
        }
        Ok(key.to_montgomery().to_bytes())
    }
}

/// Verifies `signature` over `domain || message` with any ed25519 public key (a person's,
/// or a device's: [`crate::olm::device`]), as strictly as [`AuthorId::verify`].
///
/// # Errors
/// [`SignatureError::BadKey`] or [`SignatureError::BadSignature`].
pub(crate) fn verify_key(
    key: &[u8; PUBLIC_KEY_LEN],
    domain: &[u8],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), SignatureError> {
    keys::verify_strict(key, &[domain, message].concat(), signature)
}

/// Runs `f` with the signatures it finds valid remembered for a while, so that the same
/// check soon after (on any thread) costs a hash instead of a verification (see
/// `keys/memo.rs`).
pub(crate) fn remembering<T>(f: impl FnOnce() -> T) -> T {
    keys::memo::remembering(f)
}

/// Public keys recently found to be valid curve points, so that an id turned into its
/// peer id (its text) and back, many times for each message, does not decode the point
/// each time (a square root, about 15 µs). Whether 32 bytes decode never changes, so a
/// key found here is valid; one pushed out is checked again. A small table, one slot per
/// key's first byte.
mod valid_cache {
    use std::sync::Mutex;

    use super::PUBLIC_KEY_LEN;

    /// A page of a feed shows tens of people out of the thousands a store knows: enough
    /// slots that they stay (about 135 kB).
    const SLOTS: usize = 4096;

    static VALID: Mutex<[Option<[u8; PUBLIC_KEY_LEN]>; SLOTS]> = Mutex::new([None; SLOTS]);

    fn slot(key: &[u8; PUBLIC_KEY_LEN]) -> usize {
        usize::from(u16::from_le_bytes([key[0], key[1]])) % SLOTS
    }

    /// Whether `key` was found valid (and is still in the table).
    pub(super) fn knows(key: &[u8; PUBLIC_KEY_LEN]) -> bool {
        VALID.lock().is_ok_and(|table| table[slot(key)] == Some(*key))
    }

    /// Remembers that `key` is valid.
    pub(super) fn remember(key: &[u8; PUBLIC_KEY_LEN]) {
        if let Ok(mut table) = VALID.lock() {
            table[slot(key)] = Some(*key);
        }
    }
}

impl fmt::Display for AuthorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_peer_id() {
            Ok(peer) => write!(f, "{peer}"),
            // Unverified bytes from the wire: show them rather than fail.
            Err(_) => write!(f, "invalid-key:{}", hex::encode(self.0)),
        }
    }
}

impl fmt::Debug for AuthorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorId({self})")
    }
}

impl FromStr for AuthorId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The canonical form, read directly: one point check (or none, for a key known
        // valid) instead of libp2p's two. Anything else, and a bad key (for its precise
        // error), goes through libp2p.
        let mut bytes = [0u8; PEER_ID_PREFIX.len() + PUBLIC_KEY_LEN];
        if let Ok(n) = bs58::decode(s.trim()).onto(&mut bytes[..]) {
            if n == bytes.len() && bytes.starts_with(&PEER_ID_PREFIX) {
                let mut key = [0u8; PUBLIC_KEY_LEN];
                key.copy_from_slice(&bytes[PEER_ID_PREFIX.len()..]);
                if let Ok(id) = Self::from_bytes(key) {
                    return Ok(id);
                }
            }
        }
        parse_through_libp2p(s)
    }
}

/// [`AuthorId::from_str`] through libp2p's parser: every form, and the precise error.
fn parse_through_libp2p(s: &str) -> Result<AuthorId, IdError> {
    let peer = libp2p_identity::PeerId::from_str(s.trim())
        .map_err(|_| IdError::NotPeerId(s.to_owned()))?;
    AuthorId::from_peer_id(&peer)
}

impl TryFrom<&libp2p_identity::PeerId> for AuthorId {
    type Error = IdError;

    fn try_from(peer: &libp2p_identity::PeerId) -> Result<Self, Self::Error> {
        Self::from_peer_id(peer)
    }
}

/// A person's ed25519 key pair. The secret never prints and is zeroized on drop.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// Generates a new key pair from the operating system's random source.
    ///
    /// # Errors
    /// Fails only if the OS random source fails.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut seed = Zeroizing::new([0u8; SECRET_KEY_LEN]);
        getrandom::fill(seed.as_mut())?;
        Ok(Self::from_secret_bytes(&seed))
    }

    /// Rebuilds a key pair from its 32-byte secret seed.
    pub fn from_secret_bytes(seed: &[u8; SECRET_KEY_LEN]) -> Self {
        Self { signing: SigningKey::from_bytes(seed) }
    }

    /// The 32-byte secret seed, for storing in the identity file.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; SECRET_KEY_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The X25519 secret matching [`AuthorId::to_x25519`] of [`Keypair::id`]: the first 32
    /// bytes of SHA-512(seed), i.e. the ed25519 secret scalar before clamping (X25519 clamps
    /// it the same way ed25519 does). This is libsodium's
    /// `crypto_sign_ed25519_sk_to_curve25519`. Used by [`crate::dm`].
    pub fn x25519_secret(&self) -> Zeroizing<[u8; X25519_KEY_LEN]> {
        Zeroizing::new(self.signing.to_scalar_bytes())
    }

    /// The public identity.
    pub fn id(&self) -> AuthorId {
        AuthorId(self.signing.verifying_key().to_bytes())
    }

    /// Signs `domain || message`.
    pub fn sign(&self, domain: &[u8], message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let signed = [domain, message].concat();
        self.signing.sign(&signed).to_bytes()
    }

    /// The same key as a libp2p key pair, for the node's transport identity.
    ///
    /// # Errors
    /// [`IdError::BadKey`] if libp2p refuses the seed (it accepts any 32 bytes).
    pub fn to_libp2p(&self) -> Result<libp2p_identity::Keypair, IdError> {
        let mut seed = self.signing.to_bytes();
        let keypair = libp2p_identity::Keypair::ed25519_from_bytes(&mut seed);
        zeroize::Zeroize::zeroize(&mut seed);
        keypair.map_err(|_| IdError::BadKey)
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair").field("id", &self.id()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_known_valid_convert_as_the_slow_way_does_and_invalid_keys_stay_refused() {
        for seed in 0..40u8 {
            let kp = Keypair::from_secret_bytes(&[seed; 32]);
            let libp2p = kp.to_libp2p().unwrap().public().to_peer_id();
            // The first conversion decodes the point; the later ones use the table.
            for _ in 0..2 {
                assert_eq!(kp.id().to_peer_id().unwrap(), libp2p);
                assert_eq!(AuthorId::from_peer_id(&libp2p), Ok(kp.id()));
                assert_eq!(AuthorId::from_bytes(*kp.id().as_bytes()), Ok(kp.id()));
            }
            // Bytes that are no point, in the same slot as the key just found valid: still
            // refused, and still shown as invalid.
            let mut bad = *kp.id().as_bytes();
            let invalid = (1..=u8::MAX)
                .find_map(|b| {
                    bad[2] = b;
                    VerifyingKey::from_bytes(&bad).is_err().then_some(bad)
                })
                .unwrap();
            assert_eq!(AuthorId::from_bytes(invalid), Err(IdError::BadKey));
            let peer = libp2p_identity::PeerId::from_bytes(
                &[PEER_ID_PREFIX.as_slice(), invalid.as_slice()].concat(),
            )
            .unwrap();
            assert!(AuthorId::from_peer_id(&peer).is_err());
            let unchecked = AuthorId(invalid);
            assert_eq!(unchecked.to_peer_id(), Err(IdError::BadKey));
            assert!(unchecked.to_string().starts_with("invalid-key:"));
        }
    }

    #[test]
    fn id_round_trips_through_peer_id_string() {
        let kp = Keypair::from_secret_bytes(&[7; 32]);
        let text = kp.id().to_string();
        assert!(text.starts_with("12D3KooW"), "{text}");
        assert_eq!(text.parse::<AuthorId>().unwrap(), kp.id());
        assert_eq!(kp.to_libp2p().unwrap().public().to_peer_id().to_string(), text);
    }

    /// The direct reading of the canonical form gives what libp2p's parser gives, and an
    /// id's text is libp2p's, for valid keys, keys that are no point, non-canonical point
    /// encodings and small-order points.
    #[test]
    fn the_short_way_agrees_with_libp2p() {
        let mut keys: Vec<[u8; 32]> =
            (0..50u8).map(|i| *Keypair::from_secret_bytes(&[i; 32]).id().as_bytes()).collect();
        keys.extend((0..19u8).flat_map(|k| [non_canonical_y(k, false), non_canonical_y(k, true)]));
        keys.extend((0..40u8).map(|i| [i.wrapping_mul(37); 32]));
        keys.push([0; 32]);
        let mut valid = 0;
        for key in keys {
            let id = AuthorId::from_stored(key);
            let canonical = peer_text(&[PEER_ID_PREFIX.as_slice(), key.as_slice()].concat());
            if let Ok(peer) = id.to_peer_id() {
                assert_eq!(id.to_string(), peer.to_string());
                assert_eq!(id.to_string(), canonical);
            }
            let parsed = canonical.parse::<AuthorId>();
            assert_eq!(parsed, parse_through_libp2p(&canonical), "{key:?}");
            valid += usize::from(parsed.is_ok());
        }
        assert!(valid >= 50, "{valid}");
    }

    #[test]
    fn bad_ids_refused() {
        assert!(matches!("hello".parse::<AuthorId>(), Err(IdError::NotPeerId(_))));
        assert!("".parse::<AuthorId>().is_err());
        // A sha256-hashed peer id (RSA-style) carries no ed25519 key.
        let hashed = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
        assert_eq!(hashed.parse::<AuthorId>(), Err(IdError::NotEd25519));
    }

    /// Text of the peer id whose bytes are `bytes`.
    fn peer_text(bytes: &[u8]) -> String {
        bs58::encode(bytes).into_string()
    }

    #[test]
    fn only_the_canonical_peer_id_form_is_accepted() {
        let id = Keypair::from_secret_bytes(&[7; 32]).id();
        let key = id.as_bytes();
        let canonical = [PEER_ID_PREFIX.as_slice(), key].concat();
        assert_eq!(peer_text(&canonical).parse::<AuthorId>(), Ok(id));
        // The same key, its protobuf fields in the other order: libp2p takes it as the
        // same key; kith refuses it.
        let reordered = [&[0x00, 0x24, 0x12, 0x20][..], key, &[0x08, 0x01]].concat();
        let peer = libp2p_identity::PeerId::from_bytes(&reordered).unwrap();
        assert_eq!(AuthorId::from_peer_id(&peer), Err(IdError::NotCanonical));
        assert_eq!(peer_text(&reordered).parse::<AuthorId>(), Err(IdError::NotCanonical));
        // An unknown protobuf field after the key: refused too.
        let longer = [&[0x00, 0x26, 0x08, 0x01, 0x12, 0x20][..], key, &[0x18, 0x00]].concat();
        assert_eq!(peer_text(&longer).parse::<AuthorId>(), Err(IdError::NotCanonical));
        // Trailing bytes after the multihash are no peer id at all.
        let trailing = [canonical.as_slice(), &[0]].concat();
        assert!(matches!(peer_text(&trailing).parse::<AuthorId>(), Err(IdError::NotPeerId(_))));
    }

    /// The 32 bytes of `p + k` (little-endian, `p = 2^255 - 19`) with the sign bit `sign`.
    fn non_canonical_y(k: u8, sign: bool) -> [u8; 32] {
        let mut bytes = [0xff; 32];
        bytes[0] = 0xed + k;
        bytes[31] = if sign { 0xff } else { 0x7f };
        bytes
    }

    #[test]
    fn non_canonical_point_encodings_are_read_modulo_p() {
        let mut accepted = Vec::new();
        for k in 0..19u8 {
            for sign in [false, true] {
                let bytes = non_canonical_y(k, sign);
                let Ok(id) = AuthorId::from_bytes(bytes) else { continue };
                // Read as y = k: the same point as the canonical encoding of k, but
                // another id (ids compare by bytes).
                let mut canonical = [0u8; 32];
                canonical[0] = k;
                canonical[31] = if sign { 0x80 } else { 0 };
                let point = VerifyingKey::from_bytes(&bytes).unwrap();
                let same = VerifyingKey::from_bytes(&canonical).unwrap();
                assert!(point.to_edwards() == same.to_edwards(), "k = {k}");
                assert_ne!(id, AuthorId::from_bytes(canonical).unwrap());
                // Small-order points (y = 0, y = 1) sign nothing.
                let weak = point.is_weak();
                assert_eq!(weak, k <= 1, "k = {k}");
                assert_eq!(id.to_x25519().is_err(), weak);
                accepted.push((k, sign));
            }
        }
        // y - p in {0, 1, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18} is on the curve, with either
        // sign bit (x = 0 with the sign bit set, y = 1, included).
        let ks: Vec<u8> = accepted.iter().filter(|(_, sign)| *sign).map(|(k, _)| *k).collect();
        assert_eq!(ks, [0, 1, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18]);
        assert_eq!(accepted.len(), 24);
        // x = 0 with the sign bit set, canonical y = p - 1 (the point of order 2): refused
        // by RFC 8032, decoded here.
        let mut minus_one = [0xff; 32];
        minus_one[0] = 0xec;
        assert!(AuthorId::from_bytes(minus_one).is_ok());
        assert!(VerifyingKey::from_bytes(&minus_one).unwrap().is_weak());
    }

    #[test]
    fn sign_verify_with_domain() {
        let kp = Keypair::from_secret_bytes(&[1; 32]);
        let sig = kp.sign(b"a:", b"msg");
        assert_eq!(kp.id().verify(b"a:", b"msg", &sig), Ok(()));
        assert_eq!(kp.id().verify(b"b:", b"msg", &sig), Err(SignatureError::BadSignature));
        let other = Keypair::from_secret_bytes(&[2; 32]);
        assert_eq!(other.id().verify(b"a:", b"msg", &sig), Err(SignatureError::BadSignature));
    }

    #[test]
    fn debug_never_shows_secret() {
        let kp = Keypair::from_secret_bytes(&[9; 32]);
        let shown = format!("{kp:?}");
        assert!(!shown.contains(&hex::encode([9u8; 32])));
        assert!(!shown.contains("[9, 9"));
    }
}
