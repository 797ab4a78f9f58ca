//! The strict signature check behind [`super::AuthorId::verify`], made cheaper in two
//! ways that do not change what it accepts:
//!
//! - decoded author keys are cached (decoding a key is a field exponentiation, about a
//!   tenth of a verification, and the same authors sign most records a node sees);
//! - `R` is not decoded. ed25519-dalek's `verify_strict` decodes `R` only to refuse one of
//!   small order, then compares the canonical encoding of the recomputed `R` with the
//!   signature's bytes. When those bytes are equal they are the canonical encoding of a
//!   point, so that point is of small order exactly when the bytes are one of the eight
//!   canonical encodings of the small-order points. Comparing with those eight gives the
//!   same answer without the decoding (a second field exponentiation).
//!
//! The rest is `verify_strict`'s: canonical `S`, a key not of small order, and the
//! cofactorless equation compared by encoding. The Wycheproof vectors and the tests below
//! hold the two to the same answers.
//!
//! A check done ahead of need on a spare thread ([`memo::remembering`]) is remembered, so
//! the same check soon after costs a hash (see [`memo`]).

pub(crate) mod memo;

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock, PoisonError},
};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::{SignatureError, PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// Decoded keys kept, at most; the cache starts over when full.
const KEY_CACHE: usize = 4096;

/// The canonical encodings of the eight points of small order (the torsion subgroup).
const SMALL_ORDER: [[u8; 32]; 8] = [
    unhex("0100000000000000000000000000000000000000000000000000000000000000"),
    unhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    unhex("0000000000000000000000000000000000000000000000000000000000000080"),
    unhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    unhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    unhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    unhex("0000000000000000000000000000000000000000000000000000000000000000"),
    unhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
];

const fn unhex(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lower-case hex digit"),
        }
    }
    let s = s.as_bytes();
    assert!(s.len() == 64, "32 bytes of hex");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

fn cache() -> &'static Mutex<HashMap<[u8; PUBLIC_KEY_LEN], VerifyingKey>> {
    static KEYS: OnceLock<Mutex<HashMap<[u8; PUBLIC_KEY_LEN], VerifyingKey>>> = OnceLock::new();
    KEYS.get_or_init(Default::default)
}

/// The decoded key, if it is a point not of small order.
fn key(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<VerifyingKey, SignatureError> {
    // The map holds only finished entries, so a panic elsewhere cannot leave it wrong.
    if let Some(key) = cache().lock().unwrap_or_else(PoisonError::into_inner).get(bytes) {
        return Ok(*key);
    }
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| SignatureError::BadKey)?;
    if key.is_weak() {
        return Err(SignatureError::BadKey);
    }
    let mut keys = cache().lock().unwrap_or_else(PoisonError::into_inner);
    if keys.len() >= KEY_CACHE {
        keys.clear();
    }
    keys.insert(*bytes, key);
    Ok(key)
}

/// `verify_strict` of ed25519-dalek, answered as it would be (see the module notes).
pub(super) fn verify_strict(
    key_bytes: &[u8; PUBLIC_KEY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), SignatureError> {
    let digest = memo::digest(key_bytes, message, signature);
    if digest.as_ref().is_some_and(memo::knows) {
        return Ok(());
    }
    let key = key(key_bytes)?;
    let r = &signature[..32];
    if SMALL_ORDER.iter().any(|point| point[..] == *r) {
        return Err(SignatureError::BadSignature);
    }
    key.verify(message, &Signature::from_bytes(signature))
        .map_err(|_| SignatureError::BadSignature)?;
    if let Some(digest) = &digest {
        memo::passed(digest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use sha2::{Digest, Sha512};

    use super::*;

    /// The list is the whole torsion subgroup: eight different canonical encodings, each
    /// a point of small order.
    #[test]
    fn small_order_list_is_the_torsion_subgroup() {
        let distinct: std::collections::HashSet<_> = SMALL_ORDER.iter().collect();
        assert_eq!(distinct.len(), 8);
        for bytes in SMALL_ORDER {
            let point = VerifyingKey::from_bytes(&bytes).expect("a point");
            assert!(point.is_weak(), "{bytes:02x?} is not of small order");
            // Canonical: y below p = 2^255 - 19, and no sign bit when x = 0 (y = ±1).
            let mut y = bytes;
            y[31] &= 0x7f;
            let p_minus_1 =
                unhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
            assert!(y.iter().rev().cmp(p_minus_1.iter().rev()).is_le(), "y not reduced");
            let x_is_zero = y == SMALL_ORDER[0] || y == p_minus_1;
            assert!(!(x_is_zero && bytes[31] & 0x80 != 0), "sign bit on x = 0");
        }
    }

    fn strict(key: &VerifyingKey, msg: &[u8], sig: &[u8; 64]) -> bool {
        key.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
    }

    fn ours(key: &VerifyingKey, msg: &[u8], sig: &[u8; 64]) -> bool {
        verify_strict(key.as_bytes(), msg, sig).is_ok()
    }

    /// A signature whose `R` is the identity point (nonce 0): valid under the plain
    /// equation, refused by `verify_strict` because `R` is of small order.
    fn identity_r_signature(sk: &SigningKey, msg: &[u8]) -> [u8; 64] {
        use curve25519_dalek::Scalar;
        let r = SMALL_ORDER[0];
        let a = sk.verifying_key().to_bytes();
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new().chain_update(r).chain_update(a).chain_update(msg).finalize().into(),
        );
        let s = k * sk.to_scalar();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    #[test]
    fn same_answers_as_verify_strict() {
        let sk = SigningKey::from_bytes(&[9u8; 32]);
        let vk = sk.verifying_key();
        let msg = b"kith record body";
        let good = sk.sign(msg).to_bytes();
        assert!(strict(&vk, msg, &good) && ours(&vk, msg, &good));
        // Cached key, second time.
        assert!(ours(&vk, msg, &good));
        // Any flipped bit: refused by both.
        for i in 0..64 {
            let mut bad = good;
            bad[i] ^= 1 << (i % 8);
            assert_eq!(strict(&vk, msg, &bad), ours(&vk, msg, &bad), "bit in byte {i}");
            assert!(!ours(&vk, msg, &bad));
        }
        assert!(!ours(&vk, b"another body", &good));
        // R of small order with a valid plain equation: refused by both.
        let sneaky = identity_r_signature(&sk, msg);
        assert!(vk.verify(msg, &Signature::from_bytes(&sneaky)).is_ok(), "plain check passes");
        assert!(!strict(&vk, msg, &sneaky));
        assert!(!ours(&vk, msg, &sneaky));
        // Every small-order R, and a non-canonical one (y + p of the identity's y = 1).
        let mut non_canonical =
            unhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        non_canonical[31] &= 0x7f;
        for r in SMALL_ORDER.iter().chain([&non_canonical]) {
            let mut sig = good;
            sig[..32].copy_from_slice(r);
            assert_eq!(strict(&vk, msg, &sig), ours(&vk, msg, &sig));
            assert!(!ours(&vk, msg, &sig));
        }
        // A small-order key: refused as a bad key, whatever the signature.
        for bytes in SMALL_ORDER {
            assert_eq!(verify_strict(&bytes, msg, &good), Err(SignatureError::BadKey));
        }
    }

    /// A check made while remembering is remembered only when it passed, and only for
    /// exactly the bytes checked; a remembered check answers without the verification.
    #[test]
    fn checks_ahead_are_remembered_for_exactly_what_passed() {
        let sk = SigningKey::from_bytes(&[11u8; 32]);
        let key = sk.verifying_key().to_bytes();
        let msg = b"a record checked ahead";
        let good = sk.sign(msg).to_bytes();
        let mut bad = good;
        bad[40] ^= 4;
        let digest = |m: &[u8], s: &[u8; 64]| memo::remembering(|| memo::digest(&key, m, s));
        let (good_digest, bad_digest) = (digest(msg, &good), digest(msg, &bad));
        let good_digest = good_digest.expect("hashed while remembering");
        let bad_digest = bad_digest.expect("hashed while remembering");
        assert!(!memo::knows(&good_digest));
        assert_eq!(
            memo::remembering(|| verify_strict(&key, msg, &bad)),
            Err(SignatureError::BadSignature)
        );
        assert!(!memo::knows(&bad_digest), "a failed check is not remembered");
        assert_eq!(verify_strict(&key, msg, &good), Ok(()));
        assert!(!memo::knows(&good_digest), "not remembered without being asked");
        assert_eq!(memo::remembering(|| verify_strict(&key, msg, &good)), Ok(()));
        assert!(memo::knows(&good_digest));
        assert_eq!(verify_strict(&key, msg, &good), Ok(()));
        // The same signature on other bytes, or other bytes of signature: checked again.
        assert_eq!(
            verify_strict(&key, b"a record checked ahead!", &good),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(verify_strict(&key, msg, &bad), Err(SignatureError::BadSignature));
        let other = SigningKey::from_bytes(&[12u8; 32]).verifying_key().to_bytes();
        assert_eq!(verify_strict(&other, msg, &good), Err(SignatureError::BadSignature));
        // What the table holds is the answer: a digest put there (as only a passed check
        // can) answers for its bytes without the verification.
        let forged = digest(b"never signed", &good).expect("hashed");
        memo::remembering(|| memo::passed(&forged));
        assert_eq!(verify_strict(&key, b"never signed", &good), Ok(()));
    }
}
