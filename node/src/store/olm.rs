//! Forward-secret messaging state (issue #17): this node's device and its Olm sessions,
//! and the latest device announcement of each person.
//!
//! Trees: `olm` (`device` -> the device account's pickle, `cert` -> its certificate,
//! `s` || device id -> the pickle of the sessions with that device, `o` || message id ->
//! the sealed `/kith/dm/2` request of an outgoing message, `r` || envelope digest -> the
//! id of the received message it carried, `x` || key -> an end-to-end receipt not sent
//! yet) and `devices`
//! (author -> the latest `Devices` record, like `profiles`). Pickles are sealed by
//! `kith_protocol::olm::pickle` before they get here: the store only keeps bytes. The
//! caller flushes before it lets anything depend on them (an envelope leaving, a receipt).

use kith_protocol::{olm::device::DeviceId, AuthorId, RecordId};

use super::{
    codec::{self, ProfileValue},
    corrupt, Store, StoreError, StoredRecord, DM_ID_LEN,
};

const DEVICE: &[u8] = b"device";
const CERT: &[u8] = b"cert";
const SESSIONS: u8 = b's';
const SEALED: u8 = b'o';
const RECEIVED: u8 = b'r';
const RECEIVED_AT: u8 = b't';
const RECEIPT_OUT: u8 = b'x';

/// A receipt waiting to be sent: its key and its stored bytes.
pub type ReceiptOut = ([u8; 32], Vec<u8>);

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(rest);
    key
}

/// The stored device: its pickle and its certificate's bytes.
pub struct StoredDevice {
    /// The device account's pickle (sealed).
    pub pickle: Vec<u8>,
    /// The certificate's bytes.
    pub cert: Vec<u8>,
}

fn sessions_key(device: &DeviceId) -> Vec<u8> {
    prefixed(SESSIONS, device.as_bytes())
}

impl Store {
    /// The pickle of this node's device account and its certificate's bytes, if made.
    ///
    /// # Errors
    /// Disk errors.
    pub fn olm_device(&self) -> Result<Option<StoredDevice>, StoreError> {
        let (Some(pickle), Some(cert)) = (self.olm.get(DEVICE)?, self.olm.get(CERT)?) else {
            return Ok(None);
        };
        Ok(Some(StoredDevice { pickle: pickle.to_vec(), cert: cert.to_vec() }))
    }

    /// Stores the pickle of this node's device account and its certificate's bytes (not
    /// flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_olm_device(&self, pickle: &[u8], cert: &[u8]) -> Result<(), StoreError> {
        self.olm.insert(CERT, cert)?;
        self.olm.insert(DEVICE, pickle)?;
        Ok(())
    }

    /// The pickle of the sessions with `device`, if any.
    ///
    /// # Errors
    /// Disk errors.
    pub fn olm_sessions(&self, device: &DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.olm.get(sessions_key(device))?.map(|v| v.to_vec()))
    }

    /// Stores the pickle of the sessions with `device` (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_olm_sessions(&self, device: &DeviceId, pickle: &[u8]) -> Result<(), StoreError> {
        self.olm.insert(sessions_key(device), pickle)?;
        Ok(())
    }

    /// Stores the pickle of the sessions with `device` and, when a message started a
    /// session (a one-time key spent, the fallback key used), the device's pickle with
    /// it, at once: a crash keeps both or neither, so a session is never kept without
    /// the device state that matches it (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_olm_opened(
        &self,
        device: &DeviceId,
        sessions: &[u8],
        own: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let key = sessions_key(device);
        let mut pairs: Vec<(&[u8], &[u8])> = vec![(&key, sessions)];
        if let Some(pickle) = own {
            pairs.push((DEVICE, pickle));
        }
        self.olm.insert_all(&pairs)?;
        Ok(())
    }

    /// The sealed `/kith/dm/2` request of outgoing message `id`, if it was sealed.
    ///
    /// # Errors
    /// Disk errors.
    pub fn olm_sealed(&self, id: &[u8; DM_ID_LEN]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.olm.get(prefixed(SEALED, id))?.map(|v| v.to_vec()))
    }

    /// Stores (`Some`) or forgets the sealed request of outgoing message `id` (not
    /// flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_olm_sealed(
        &self,
        id: &[u8; DM_ID_LEN],
        request: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        match request {
            Some(bytes) => self.olm.insert(prefixed(SEALED, id), bytes)?,
            None => self.olm.remove(prefixed(SEALED, id))?,
        };
        Ok(())
    }

    /// The id of the message that the envelope of `digest` carried, if it was accepted.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn olm_received(&self, digest: &[u8; 32]) -> Result<Option<[u8; DM_ID_LEN]>, StoreError> {
        let Some(value) = self.olm.get(prefixed(RECEIVED, digest))? else { return Ok(None) };
        let id = <[u8; DM_ID_LEN]>::try_from(value.as_ref()).map_err(|_| corrupt("digest"))?;
        Ok(Some(id))
    }

    /// Remembers that the envelope of `digest` carried message `id`, accepted at `now`
    /// (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_olm_received(
        &self,
        digest: &[u8; 32],
        id: &[u8; DM_ID_LEN],
        now: u64,
    ) -> Result<(), StoreError> {
        // The time index first: a crash that keeps it alone only prunes nothing.
        let mut by_time = now.to_be_bytes().to_vec();
        by_time.extend_from_slice(digest);
        self.olm.insert(prefixed(RECEIVED_AT, &by_time), &[][..])?;
        self.olm.insert(prefixed(RECEIVED, digest), id)?;
        Ok(())
    }

    /// Forgets the digests of envelopes accepted before `before` (ms), oldest first, at
    /// most `max` of them (not flushed). Returns how many were forgotten.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn prune_olm_received(&self, before: u64, max: usize) -> Result<usize, StoreError> {
        let mut pruned = 0;
        for entry in self.olm.scan_prefix([RECEIVED_AT]) {
            let (key, _) = entry?;
            let (at, digest) = key
                .get(1..)
                .and_then(|rest| rest.split_at_checked(8))
                .ok_or_else(|| corrupt("digest time"))?;
            let at = u64::from_be_bytes(at.try_into().map_err(|_| corrupt("digest time"))?);
            if at >= before || pruned >= max {
                break;
            }
            self.olm.remove(prefixed(RECEIVED, digest))?;
            self.olm.remove(&key)?;
            pruned += 1;
        }
        Ok(pruned)
    }

    /// Stores (`Some`) or forgets an end-to-end receipt waiting to be sent, by `key`
    /// (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_olm_receipt_out(
        &self,
        key: &[u8; 32],
        receipt: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        match receipt {
            Some(bytes) => self.olm.insert(prefixed(RECEIPT_OUT, key), bytes)?,
            None => self.olm.remove(prefixed(RECEIPT_OUT, key))?,
        };
        Ok(())
    }

    /// Every end-to-end receipt waiting to be sent: (key, bytes), at most `max`.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn olm_receipts_out(&self, max: usize) -> Result<Vec<ReceiptOut>, StoreError> {
        let mut out = Vec::new();
        for entry in self.olm.scan_prefix([RECEIPT_OUT]).take(max) {
            let (key, value) = entry?;
            let key: [u8; 32] = key
                .get(1..)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| corrupt("receipt key"))?;
            out.push((key, value.to_vec()));
        }
        Ok(out)
    }

    /// How many accepted envelopes are remembered by their digest.
    ///
    /// # Errors
    /// Disk errors.
    pub fn olm_received_count(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        for entry in self.olm.scan_prefix([RECEIVED]) {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    /// The latest `Devices` record of `author`, if known.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn devices(&self, author: &AuthorId) -> Result<Option<StoredRecord>, StoreError> {
        let Some(value) = codec::get::<ProfileValue>(&self.devices, author.as_bytes())? else {
            return Ok(None);
        };
        self.get(&RecordId::from_bytes(value.id))
    }
}
