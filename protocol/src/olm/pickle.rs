//! Olm state encrypted at rest.
//!
//! A node keeps its device's account and its sessions only as pickles sealed with a
//! [`PickleKey`], derived from the person's identity key with HKDF-SHA256 (salt
//! [`PICKLE_KDF_SALT`], info [`PICKLE_KEY_INFO`]). Each pickle gets its own key: HKDF with
//! the pickle key as input, a fresh random 32-byte salt and the pickle's label (what it
//! is: the device, or the sessions with one given device) as info; it encrypts the JSON of
//! the vodozemac pickle with ChaCha20-Poly1305 (zero nonce: each key seals one pickle),
//! with the version and label as associated data. So a pickle opens only with the
//! identity key that sealed it and only as what it was sealed as: the sessions of one
//! device put in place of another's are refused.
//!
//! ```text
//! pickle = 0x01 || salt (32 random bytes) || ChaCha20-Poly1305(key, nonce 0, aad, json)
//! key    = HKDF-SHA256(salt = "kith-pickle/1", IKM = pickle key, info = salt || label)
//! aad    = 0x01 || label
//! ```

use std::fmt;

use serde::{de::DeserializeOwned, Serialize};
use zeroize::Zeroizing;

use super::OlmError;
use crate::{
    dm::{aead_open, aead_seal, hkdf_sha256, AEAD_KEY_LEN, AEAD_NONCE_LEN},
    identity::Keypair,
    limits::MAX_PICKLE_BYTES,
};

/// The HKDF salt of pickle keys; it names the format and version.
pub const PICKLE_KDF_SALT: &[u8] = b"kith-pickle/1";

/// The HKDF info that derives the pickle key from the identity key's seed.
pub const PICKLE_KEY_INFO: &[u8] = b"kith olm state at rest";

/// The version byte of a pickle.
pub const PICKLE_VERSION: u8 = 1;

/// Length of a pickle's random salt.
const SALT_LEN: usize = 32;

/// The key Olm state is sealed with at rest, derived from the identity key. Zeroized on
/// drop, never printed.
pub struct PickleKey(Zeroizing<[u8; AEAD_KEY_LEN]>);

impl fmt::Debug for PickleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PickleKey(..)")
    }
}

impl PickleKey {
    /// The pickle key of `identity`.
    ///
    /// # Errors
    /// None in practice (HKDF refuses only over-long outputs).
    pub fn derive(identity: &Keypair) -> Result<Self, OlmError> {
        let mut key = Zeroizing::new([0u8; AEAD_KEY_LEN]);
        hkdf_sha256(
            PICKLE_KDF_SALT,
            identity.secret_bytes().as_slice(),
            PICKLE_KEY_INFO,
            key.as_mut(),
        )?;
        Ok(Self(key))
    }

    /// The key of one pickle.
    fn pickle_key(
        &self,
        salt: &[u8],
        label: &[u8],
    ) -> Result<Zeroizing<[u8; AEAD_KEY_LEN]>, OlmError> {
        let mut key = Zeroizing::new([0u8; AEAD_KEY_LEN]);
        hkdf_sha256(PICKLE_KDF_SALT, self.0.as_slice(), &[salt, label].concat(), key.as_mut())?;
        Ok(key)
    }

    /// Serializes `value` as JSON and seals it under `label`.
    pub(crate) fn seal_json<T: Serialize>(
        &self,
        label: &[u8],
        value: &T,
    ) -> Result<Vec<u8>, OlmError> {
        let json = Zeroizing::new(
            serde_json::to_vec(value).map_err(|e| OlmError::Malformed(format!("pickle: {e}")))?,
        );
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(OlmError::Random)?;
        let key = self.pickle_key(&salt, label)?;
        let aad = [&[PICKLE_VERSION][..], label].concat();
        let sealed = aead_seal(&key, &[0; AEAD_NONCE_LEN], &aad, &json)?;
        let bytes = [&[PICKLE_VERSION][..], &salt, &sealed].concat();
        if bytes.len() > MAX_PICKLE_BYTES {
            return Err(OlmError::TooLarge { len: bytes.len(), max: MAX_PICKLE_BYTES });
        }
        Ok(bytes)
    }

    /// Opens a pickle sealed under `label` and deserializes its JSON.
    pub(crate) fn open_json<T: DeserializeOwned>(
        &self,
        label: &[u8],
        bytes: &[u8],
    ) -> Result<T, OlmError> {
        if bytes.len() > MAX_PICKLE_BYTES {
            return Err(OlmError::TooLarge { len: bytes.len(), max: MAX_PICKLE_BYTES });
        }
        let (version, rest) = bytes.split_first().ok_or(OlmError::Pickle)?;
        let (salt, sealed) = rest.split_at_checked(SALT_LEN).ok_or(OlmError::Pickle)?;
        if *version != PICKLE_VERSION {
            return Err(OlmError::Pickle);
        }
        let key = self.pickle_key(salt, label)?;
        let aad = [&[PICKLE_VERSION][..], label].concat();
        let json = Zeroizing::new(
            aead_open(&key, &[0; AEAD_NONCE_LEN], &aad, sealed).map_err(|_| OlmError::Pickle)?,
        );
        serde_json::from_slice(&json).map_err(|_| OlmError::Pickle)
    }

    /// Seals `bytes` under `label` as a pickle (other state at rest: a group key share
    /// kept to be sealed again on a new Olm session, issue #19).
    ///
    /// # Errors
    /// [`OlmError::Random`], [`OlmError::TooLarge`].
    pub fn seal_bytes(&self, label: &[u8], bytes: &[u8]) -> Result<Vec<u8>, OlmError> {
        self.seal_json(label, &bytes)
    }

    /// Opens what [`PickleKey::seal_bytes`] sealed under `label`.
    ///
    /// # Errors
    /// [`OlmError::Pickle`] for a wrong key, label or changed bytes; [`OlmError::TooLarge`].
    pub fn open_bytes(&self, label: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OlmError> {
        self.open_json::<Vec<u8>>(label, sealed).map(Zeroizing::new)
    }
}
