//! This node's device (issue #17, `docs/protocol.md` section 12): its Olm account, made
//! the first time the node sends or accepts a direct message, kept in the store only as
//! a pickle sealed with a key derived from the identity key, its certificate, and the
//! announcement (record kind `Devices`) that carries the certificate and the fallback
//! key to mutual connections. The fallback key is rotated on a timer and after a first
//! message used it ([`Device::maintain`]); each rotation publishes a new announcement.

use kith_protocol::{
    olm::{
        account::Device,
        device::{SignedCertificate, VerifiedDevice},
        pickle::PickleKey,
        prekey::{Announcement, DeviceEntry},
        OlmError,
    },
    AuthorId, RecordKind,
};

use crate::{core::Context, store::StoreError};

/// How often the device's keys are looked at (rotation, forgetting an old fallback key).
pub(crate) const MAINTAIN_EVERY_MS: u64 = 3_600_000;

/// Why the device could not be loaded, made or stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeviceError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Keys, pickles or certificates failed (none happens with a working random source).
    #[error("device: {0}")]
    Olm(#[from] OlmError),
    /// A deposit could not be sealed.
    #[error("deposit: {0}")]
    Mailbox(#[from] kith_protocol::mailbox::MailboxError),
}

/// This node's device with its certificate and the key its pickles are sealed with.
pub(crate) struct Local {
    pub(crate) device: Device,
    pub(crate) cert: VerifiedDevice,
    pub(crate) key: PickleKey,
}

impl Local {
    /// The device stored in `cx`'s store; or, when there is none (or its pickle does
    /// not open with this identity) and `create`, a new one, stored (not flushed: the
    /// announcement's flush covers it). `Ok(None)`: none stored and not `create`.
    pub(crate) fn load(cx: &Context, create: bool, now: u64) -> Result<Option<Self>, DeviceError> {
        let key = PickleKey::derive(&cx.keys)?;
        if let Some(stored) = cx.store.olm_device()? {
            let (pickle, cert) = (stored.pickle, stored.cert);
            let opened = Device::from_pickle(&pickle, &key).and_then(|device| {
                let cert = SignedCertificate::from_bytes(&cert)?;
                if cert.id() != device.id() || cert.person() != cx.me {
                    return Err(OlmError::DeviceMismatch);
                }
                Ok(Self { device, cert, key })
            });
            match opened {
                Ok(local) => return Ok(Some(local)),
                Err(error) if create => {
                    tracing::warn!(%error, "the stored device does not open: making a new one");
                }
                Err(error) => {
                    tracing::warn!(%error, "the stored device does not open");
                    return Ok(None);
                }
            }
        } else if !create {
            return Ok(None);
        }
        let device = Device::new();
        let cert = device.certify(&cx.keys, now)?;
        let local = Self { device, cert, key: PickleKey::derive(&cx.keys)? };
        local.save(cx)?;
        tracing::info!(device = %local.cert.id(), "made this node's device");
        Ok(Some(local))
    }

    /// Stores the device's pickle and certificate (not flushed).
    pub(crate) fn save(&self, cx: &Context) -> Result<(), DeviceError> {
        let pickle = self.device.pickle(&self.key)?;
        cx.store.set_olm_device(&pickle, &self.cert.signed().to_bytes()?)?;
        Ok(())
    }

    /// The announcement of this device with its current fallback key (made now if
    /// there is none yet: the caller saves the device afterwards).
    pub(crate) fn announcement(&mut self, now: u64) -> Result<Announcement, DeviceError> {
        let fallback = self.device.fallback_prekey(now)?;
        Ok(Announcement {
            devices: vec![DeviceEntry { certificate: self.cert.signed().clone(), fallback }],
        })
    }
}

/// Whether `me`'s latest announcement in the store is `wanted`.
pub(crate) fn published(
    cx: &Context,
    me: &AuthorId,
    wanted: &Announcement,
) -> Result<bool, StoreError> {
    Ok(cx
        .store
        .devices(me)?
        .is_some_and(|r| matches!(&r.record.kind, RecordKind::Devices(a) if a == wanted)))
}
