//! Prekeys: the Curve25519 keys a first message to a device is sealed to, and the
//! announcement of a person's devices that carries them.
//!
//! A device signs each prekey it hands out with its certified Ed25519 key
//! ([`PREKEY_DOMAIN`]). Two kinds:
//!
//! - the **fallback key**, one at a time, published in the person's device
//!   [`Announcement`] (a record of their log, [`crate::record::RecordKind::Devices`], so
//!   mutual connections already replicate it and a first message can be written while the
//!   device is offline). It is replaced on a schedule and after it was used
//!   ([`fallback_due`]); the previous one is kept a while for messages already on their
//!   way ([`forget_previous_due`]), then forgotten, so that a first message sealed to it
//!   cannot be opened afterwards by anyone, the device included.
//! - **one-time keys**, claimed from the device while it is online
//!   ([`crate::olm::envelope::Dm2Request::Claim`]); each opens exactly one session and is
//!   deleted by the first message that uses it.

use bincode::{Decode, Encode};

use super::{
    device::{
        check_curve25519, decode_within, encode_within, DeviceId, SignedCertificate, VerifiedDevice,
    },
    OlmError,
};
use crate::{
    codec,
    identity::{verify_key, SIGNATURE_LEN, X25519_KEY_LEN},
    limits::{MAX_DEVICES, MAX_DEVICE_ANNOUNCEMENT_BYTES},
};

/// Domain prefix of a device's signature over a prekey.
pub const PREKEY_DOMAIN: &[u8] = b"kith-prekey/1:";

/// A fallback key is replaced this long after it was made, used or not (7 days).
pub const FALLBACK_ROTATION_MS: u64 = 7 * 24 * 3600 * 1000;

/// After a rotation, the previous fallback key's secret is kept this long (2 days) for
/// first messages already sealed to it, then forgotten.
pub const FALLBACK_GRACE_MS: u64 = 2 * 24 * 3600 * 1000;

/// Which kind of prekey. The variant order is part of the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum PrekeyKind {
    /// The published fallback key.
    Fallback,
    /// A one-time key, handed out by a claim.
    OneTime,
}

/// The unsigned content of a prekey.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Prekey {
    /// The device whose key it is.
    pub device: DeviceId,
    /// Fallback or one-time.
    pub kind: PrekeyKind,
    /// The Curve25519 public key.
    pub key: [u8; X25519_KEY_LEN],
    /// When it was made, ms since the Unix epoch (the device's clock).
    pub created: u64,
}

/// A prekey with its device's signature, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct SignedPrekey {
    /// The content.
    pub prekey: Prekey,
    /// Ed25519 signature by the device's certified key over [`PREKEY_DOMAIN`] || prekey.
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedPrekey {
    /// Checks that `device` made this prekey: it names the device, its key is usable and
    /// the device's certified Ed25519 key signed it (strictly).
    ///
    /// # Errors
    /// [`OlmError::DeviceMismatch`], [`OlmError::BadKey`], [`OlmError::Signature`].
    pub fn verify(&self, device: &VerifiedDevice) -> Result<(), OlmError> {
        if self.prekey.device != device.id() {
            return Err(OlmError::DeviceMismatch);
        }
        check_curve25519(&self.prekey.key)?;
        let body = codec::encode(&self.prekey)?;
        verify_key(&device.keys().ed25519, PREKEY_DOMAIN, &body, &self.signature)?;
        Ok(())
    }
}

/// One certified device and its current fallback key.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DeviceEntry {
    /// The device's certificate.
    pub certificate: SignedCertificate,
    /// Its current fallback key ([`PrekeyKind::Fallback`]).
    pub fallback: SignedPrekey,
}

/// A person's devices, as their [`crate::record::RecordKind::Devices`] record says: one to
/// [`MAX_DEVICES`] entries, each device once. The latest such record of a person counts.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Announcement {
    /// The devices.
    pub devices: Vec<DeviceEntry>,
}

/// A device of an announcement, checked: its certificate and fallback key verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEntry {
    /// The certified device.
    pub device: VerifiedDevice,
    /// Its fallback key, signed by it.
    pub fallback: SignedPrekey,
}

impl Announcement {
    /// The checks that need no keys: 1 to [`MAX_DEVICES`] entries, no device twice,
    /// every prekey a fallback key of its entry's device. Part of a record's field checks.
    ///
    /// # Errors
    /// [`OlmError::Malformed`].
    pub fn check_shape(&self) -> Result<(), OlmError> {
        let n = self.devices.len();
        if n == 0 || n > MAX_DEVICES {
            return Err(OlmError::Malformed(format!("{n} devices (1 to {MAX_DEVICES})")));
        }
        for (i, entry) in self.devices.iter().enumerate() {
            let id = entry.certificate.certificate.device;
            if self.devices.iter().take(i).any(|e| e.certificate.certificate.device == id) {
                return Err(OlmError::Malformed(format!("device {id} listed twice")));
            }
            if entry.fallback.prekey.device != id
                || entry.fallback.prekey.kind != PrekeyKind::Fallback
            {
                return Err(OlmError::Malformed(format!("fallback key of device {id}")));
            }
        }
        Ok(())
    }

    /// Verifies every entry for `person` (the record's author): each certificate is
    /// signed by `person` and counter-signed by its device, each fallback key signed by
    /// its device.
    ///
    /// # Errors
    /// [`OlmError::Malformed`] (shape), [`OlmError::WrongSender`] for a certificate of
    /// another person, or the errors of [`SignedCertificate::verify`] and
    /// [`SignedPrekey::verify`].
    pub fn verify(
        &self,
        person: &crate::identity::AuthorId,
    ) -> Result<Vec<VerifiedEntry>, OlmError> {
        self.check_shape()?;
        self.devices
            .iter()
            .map(|entry| {
                if entry.certificate.certificate.person != *person {
                    return Err(OlmError::WrongSender);
                }
                let device = entry.certificate.clone().verify()?;
                entry.fallback.verify(&device)?;
                Ok(VerifiedEntry { device, fallback: entry.fallback.clone() })
            })
            .collect()
    }

    /// The canonical encoding.
    ///
    /// # Errors
    /// [`OlmError::TooLarge`] over [`MAX_DEVICE_ANNOUNCEMENT_BYTES`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, OlmError> {
        encode_within(self, MAX_DEVICE_ANNOUNCEMENT_BYTES)
    }

    /// Decodes an announcement from outside: size, canonical decoding, shape. Signatures
    /// are checked by [`Announcement::verify`].
    ///
    /// # Errors
    /// [`OlmError::TooLarge`], [`OlmError::Codec`], [`OlmError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OlmError> {
        let announcement: Self = decode_within::<_, MAX_DEVICE_ANNOUNCEMENT_BYTES>(bytes)?;
        announcement.check_shape()?;
        Ok(announcement)
    }
}

/// Whether a device should replace its fallback key now: it was used by a first message
/// since it was published, or it is [`FALLBACK_ROTATION_MS`] old. A replaced key is
/// republished in a new announcement.
pub fn fallback_due(created_ms: u64, used: bool, now_ms: u64) -> bool {
    used || now_ms >= created_ms.saturating_add(FALLBACK_ROTATION_MS)
}

/// Whether a device should now forget the secret of the fallback key it replaced at
/// `rotated_ms`: after [`FALLBACK_GRACE_MS`], so that first messages already sealed to it
/// still open, and no later compromise opens them.
pub fn forget_previous_due(rotated_ms: u64, now_ms: u64) -> bool {
    now_ms >= rotated_ms.saturating_add(FALLBACK_GRACE_MS)
}
