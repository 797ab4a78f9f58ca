//! Device certificates: a person's identity key vouches for a device's Olm keys.
//!
//! A device (one node of a person) has an Olm account with two keys of its own: an
//! Ed25519 key that signs and a Curve25519 key for Diffie-Hellman. Its [`Certificate`]
//! names the person, the device's id (derived from its two keys), the keys and when it
//! was made. The person's identity key signs the certificate ([`CERT_DOMAIN`]), and the
//! device counter-signs it with its own Ed25519 key ([`COUNTER_DOMAIN`]), proving that
//! whoever certified the keys holds them. Only [`SignedCertificate::verify`] makes a
//! [`VerifiedDevice`], the type everything that encrypts to or opens from a device takes.
//!
//! A person may later certify several devices; a sender then encrypts to each of them,
//! and each has its own sessions ([`crate::olm::account::PeerSessions`] are per device).

use std::fmt;

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

use super::OlmError;
use crate::{
    codec,
    identity::{verify_key, AuthorId, PUBLIC_KEY_LEN, SIGNATURE_LEN, X25519_KEY_LEN},
    limits::MAX_DEVICE_CERT_BYTES,
};

/// Domain prefix of the person's signature over a certificate.
pub const CERT_DOMAIN: &[u8] = b"kith-device-cert/1:";

/// Domain prefix of the device's counter-signature over a certificate.
pub const COUNTER_DOMAIN: &[u8] = b"kith-device-countersign/1:";

/// What is hashed, before the two keys, into a device id.
pub const DEVICE_ID_DOMAIN: &[u8] = b"kith-device-id/1:";

/// Length of a device id.
pub const DEVICE_ID_LEN: usize = 16;

/// Length of an encoded [`SignedCertificate`]: person (32), device id (16), keys (64),
/// creation time (8), two signatures (128).
pub const SIGNED_CERT_LEN: usize = 32 + DEVICE_ID_LEN + 64 + 8 + 2 * SIGNATURE_LEN;

const _: () = assert!(SIGNED_CERT_LEN <= MAX_DEVICE_CERT_BYTES);

/// A device's id: the first 16 bytes of SHA-256([`DEVICE_ID_DOMAIN`] || Curve25519 key ||
/// Ed25519 key). Shown as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct DeviceId([u8; DEVICE_ID_LEN]);

impl DeviceId {
    /// Wraps raw id bytes.
    pub fn from_bytes(bytes: [u8; DEVICE_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw id bytes.
    pub fn as_bytes(&self) -> &[u8; DEVICE_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

/// A device's two public keys, from its Olm account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct DeviceKeys {
    /// The Curve25519 key sessions are made with (Olm's "identity key").
    pub curve25519: [u8; X25519_KEY_LEN],
    /// The Ed25519 key that counter-signs the certificate and signs prekeys.
    pub ed25519: [u8; PUBLIC_KEY_LEN],
}

impl DeviceKeys {
    /// The id these keys give.
    pub fn id(&self) -> DeviceId {
        let digest = Sha256::new()
            .chain_update(DEVICE_ID_DOMAIN)
            .chain_update(self.curve25519)
            .chain_update(self.ed25519)
            .finalize();
        let mut id = [0u8; DEVICE_ID_LEN];
        id.copy_from_slice(&digest[..DEVICE_ID_LEN]);
        DeviceId(id)
    }
}

/// The unsigned content of a device certificate.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Certificate {
    /// The person whose device this is (their identity key signs the certificate).
    pub person: AuthorId,
    /// The device's id, [`DeviceKeys::id`] of `keys`.
    pub device: DeviceId,
    /// The device's public keys.
    pub keys: DeviceKeys,
    /// When the certificate was made, ms since the Unix epoch (the person's clock).
    pub created: u64,
}

/// A certificate with the person's signature and the device's counter-signature, as it
/// travels (in a device announcement, [`crate::olm::prekey::Announcement`]).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignedCertificate {
    /// The content.
    pub certificate: Certificate,
    /// Ed25519 signature by `certificate.person` over [`CERT_DOMAIN`] || certificate.
    pub person_signature: [u8; SIGNATURE_LEN],
    /// Ed25519 signature by `certificate.keys.ed25519` over [`COUNTER_DOMAIN`] ||
    /// certificate.
    pub device_signature: [u8; SIGNATURE_LEN],
}

impl SignedCertificate {
    /// Checks the certificate: the device id is the one its keys give, the Curve25519 key
    /// is usable, the person signed it and the device counter-signed it (both strictly).
    /// Does not look at the clock.
    ///
    /// # Errors
    /// [`OlmError::DeviceMismatch`], [`OlmError::BadKey`], [`OlmError::Signature`].
    pub fn verify(self) -> Result<VerifiedDevice, OlmError> {
        let cert = &self.certificate;
        if cert.keys.id() != cert.device {
            return Err(OlmError::DeviceMismatch);
        }
        check_curve25519(&cert.keys.curve25519)?;
        let body = codec::encode(cert)?;
        cert.person.verify(CERT_DOMAIN, &body, &self.person_signature)?;
        verify_key(&cert.keys.ed25519, COUNTER_DOMAIN, &body, &self.device_signature)?;
        Ok(VerifiedDevice(self))
    }

    /// Decodes and verifies a certificate from outside: size first, then canonical
    /// decoding, then [`SignedCertificate::verify`].
    ///
    /// # Errors
    /// [`OlmError::TooLarge`], [`OlmError::Codec`], or those of
    /// [`SignedCertificate::verify`].
    pub fn from_bytes(bytes: &[u8]) -> Result<VerifiedDevice, OlmError> {
        let signed: Self = decode_within::<_, MAX_DEVICE_CERT_BYTES>(bytes)?;
        signed.verify()
    }

    /// The canonical encoding ([`SIGNED_CERT_LEN`] bytes).
    ///
    /// # Errors
    /// Only if the codec fails (it does not for this type).
    pub fn to_bytes(&self) -> Result<Vec<u8>, OlmError> {
        Ok(codec::encode(self)?)
    }
}

/// A certificate whose signatures and keys have been checked. Only
/// [`SignedCertificate::verify`] (and so [`crate::olm::account::Device::certify`]) makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDevice(SignedCertificate);

impl VerifiedDevice {
    /// The device's id.
    pub fn id(&self) -> DeviceId {
        self.0.certificate.device
    }

    /// The person the device belongs to.
    pub fn person(&self) -> AuthorId {
        self.0.certificate.person
    }

    /// The device's keys.
    pub fn keys(&self) -> &DeviceKeys {
        &self.0.certificate.keys
    }

    /// When the person certified it (ms, the person's clock).
    pub fn created(&self) -> u64 {
        self.0.certificate.created
    }

    /// The signed certificate, to send on or store.
    pub fn signed(&self) -> &SignedCertificate {
        &self.0
    }
}

/// Refuses a Curve25519 public key of small order: an X25519 agreement with it gives no
/// shared secret (all zeros) whatever the secret scalar.
pub(crate) fn check_curve25519(key: &[u8; X25519_KEY_LEN]) -> Result<(), OlmError> {
    // Any scalar shows it: a contributory result needs a key outside the small subgroup.
    crate::dm::x25519_agree(&[0x55; X25519_KEY_LEN], key).map(drop).map_err(|_| OlmError::BadKey)
}

/// Encodes `value`, refusing an encoding longer than `max` bytes.
pub(crate) fn encode_within<T: Encode>(value: &T, max: usize) -> Result<Vec<u8>, OlmError> {
    let bytes = codec::encode(value)?;
    if bytes.len() > max {
        return Err(OlmError::TooLarge { len: bytes.len(), max });
    }
    Ok(bytes)
}

/// Decodes bytes from outside: the size before anything else, then canonical decoding.
pub(crate) fn decode_within<T: bincode::Decode<()> + Encode, const MAX: usize>(
    bytes: &[u8],
) -> Result<T, OlmError> {
    if bytes.len() > MAX {
        return Err(OlmError::TooLarge { len: bytes.len(), max: MAX });
    }
    Ok(codec::decode::<_, MAX>(bytes)?)
}
