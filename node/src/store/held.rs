//! Envelopes this node holds as a mailbox for others (issue #18, `/kith/mailbox/1`).
//!
//! Tree `held`:
//! - `e` || recipient (32) || position (8, big-endian) -> [`HeldValue`] (who deposited,
//!   when, the envelope): a recipient's envelopes in the order they were deposited, which
//!   is the order a collect reads them in;
//! - `i` || recipient (32) || [`HeldId`] (32) -> position (8, big-endian): the same
//!   envelope deposited twice is held once, and an acknowledgement names it by id.
//!
//! Positions come from the database's id generator, which only rises, across restarts
//! too, so a collector's cursor stays valid. The `i` entry is written after the `e` entry
//! (a crash between them leaves an envelope that a repeated deposit holds twice; the
//! collector drops the second copy by its digest) and removed before it. The caller
//! flushes before it answers `Accepted`.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use kith_protocol::{
    mailbox::{Held, HeldId},
    AuthorId,
};

use super::{
    codec::{self, Value},
    corrupt, Store, StoreError,
};

const ENVELOPE: u8 = b'e';
const INDEX: u8 = b'i';

/// One held envelope as stored.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
struct HeldValue {
    depositor: AuthorId,
    deposited: u64,
    envelope: Vec<u8>,
}

impl Value for HeldValue {
    const WHAT: &'static str = "held envelope";
}

/// How much is held: envelopes and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Envelopes.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Usage {
    /// Adds (or, with `sign` false, takes away) one envelope of `bytes`.
    pub fn add(&mut self, bytes: u64, sign: bool) {
        if sign {
            self.count = self.count.saturating_add(1);
            self.bytes = self.bytes.saturating_add(bytes);
        } else {
            self.count = self.count.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(bytes);
        }
    }
}

/// What is held, by recipient and by depositor, and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldTally {
    /// By recipient.
    pub recipients: BTreeMap<AuthorId, Usage>,
    /// By depositor.
    pub depositors: BTreeMap<AuthorId, Usage>,
    /// Everything.
    pub total: Usage,
}

impl HeldTally {
    /// Counts (or, with `sign` false, uncounts) an envelope of `bytes` for `recipient`
    /// from `depositor`.
    pub fn count(&mut self, recipient: AuthorId, depositor: AuthorId, bytes: u64, sign: bool) {
        self.recipients.entry(recipient).or_default().add(bytes, sign);
        self.depositors.entry(depositor).or_default().add(bytes, sign);
        self.total.add(bytes, sign);
        self.recipients.retain(|_, u| u.count > 0);
        self.depositors.retain(|_, u| u.count > 0);
    }
}

/// An envelope that was held and is removed: whose and from whom, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Whose it was.
    pub recipient: AuthorId,
    /// Who deposited it.
    pub depositor: AuthorId,
    /// Its bytes.
    pub bytes: u64,
}

fn envelope_key(recipient: &AuthorId, position: u64) -> Vec<u8> {
    [&[ENVELOPE][..], recipient.as_bytes(), &position.to_be_bytes()].concat()
}

fn index_key(recipient: &AuthorId, id: &HeldId) -> Vec<u8> {
    [&[INDEX][..], recipient.as_bytes(), id.as_bytes()].concat()
}

/// The recipient and position of an `e` key.
fn parse_envelope_key(key: &[u8]) -> Result<(AuthorId, u64), StoreError> {
    let bad = || corrupt("held envelope key");
    let recipient = key.get(1..33).and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(bad)?;
    let position = key.get(33..41).and_then(|b| <[u8; 8]>::try_from(b).ok()).ok_or_else(bad)?;
    Ok((AuthorId::from_bytes(recipient).map_err(|_| bad())?, u64::from_be_bytes(position)))
}

impl Store {
    /// Holds `envelope` for `recipient`, deposited by `depositor` at `now` (not flushed).
    /// Returns its id and whether it is new (`false`: it was held already, nothing
    /// changed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn held_put(
        &self,
        recipient: &AuthorId,
        depositor: &AuthorId,
        now: u64,
        envelope: &[u8],
    ) -> Result<(HeldId, bool), StoreError> {
        let id = HeldId::of(envelope);
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        if self.held.contains_key(index_key(recipient, &id))? {
            return Ok((id, false));
        }
        // Positions start at 1: a collect after 0 reads from the start.
        let position = self.db.generate_id()?.saturating_add(1);
        let value =
            HeldValue { depositor: *depositor, deposited: now, envelope: envelope.to_vec() };
        codec::put(&self.held, envelope_key(recipient, position), &value)?;
        self.held.insert(index_key(recipient, &id), position.to_be_bytes().to_vec())?;
        Ok((id, true))
    }

    /// Whether envelope `id` is held for `recipient`.
    ///
    /// # Errors
    /// Disk errors.
    pub fn held_has(&self, recipient: &AuthorId, id: &HeldId) -> Result<bool, StoreError> {
        Ok(self.held.contains_key(index_key(recipient, id))?)
    }

    /// The envelopes held for `recipient` after position `after`, oldest first: at most
    /// `max_items` of them and about `max_bytes` (always at least one), skipping those
    /// deposited before `not_before`. Returns them and whether more are held after the
    /// last one.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn held_after(
        &self,
        recipient: &AuthorId,
        after: u64,
        not_before: u64,
        (max_items, max_bytes): (usize, usize),
    ) -> Result<(Vec<Held>, bool), StoreError> {
        let start = envelope_key(recipient, after.saturating_add(1));
        let end = envelope_key(recipient, u64::MAX);
        let (mut items, mut bytes) = (Vec::new(), 0usize);
        for item in self.held.range(start..=end) {
            let (key, value) = item?;
            let (_, position) = parse_envelope_key(&key)?;
            let value: HeldValue = codec::decode(&value)?;
            if value.deposited < not_before {
                continue;
            }
            let size = value.envelope.len().saturating_add(32);
            if items.len() >= max_items || (!items.is_empty() && bytes + size > max_bytes) {
                return Ok((items, true));
            }
            bytes += size;
            items.push(Held { position, deposited: value.deposited, envelope: value.envelope });
        }
        Ok((items, false))
    }

    /// Stops holding envelope `id` for `recipient`; what was released, if it was held.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn held_remove(
        &self,
        recipient: &AuthorId,
        id: &HeldId,
    ) -> Result<Option<Released>, StoreError> {
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        let Some(position) = self.held.remove(index_key(recipient, id))? else { return Ok(None) };
        let position = <[u8; 8]>::try_from(position.as_ref())
            .map_err(|_| corrupt("held envelope position"))?;
        let key = envelope_key(recipient, u64::from_be_bytes(position));
        let Some(value) = self.held.remove(key)? else { return Ok(None) };
        let value: HeldValue = codec::decode(&value)?;
        let bytes = value.envelope.len() as u64;
        Ok(Some(Released { recipient: *recipient, depositor: value.depositor, bytes }))
    }

    /// Stops holding every envelope deposited before `before`; what was released.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn held_expire(&self, before: u64) -> Result<Vec<Released>, StoreError> {
        let mut old = Vec::new();
        for item in self.held.scan_prefix([ENVELOPE]) {
            let (key, value) = item?;
            let (recipient, position) = parse_envelope_key(&key)?;
            let value: HeldValue = codec::decode(&value)?;
            if value.deposited < before {
                old.push((recipient, position, HeldId::of(&value.envelope)));
            }
        }
        let mut released = Vec::new();
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        for (recipient, position, id) in old {
            // The index entry goes first, and only if it names this copy.
            let index = index_key(&recipient, &id);
            if self.held.get(&index)?.as_deref() == Some(&position.to_be_bytes()[..]) {
                self.held.remove(index)?;
            }
            if let Some(value) = self.held.remove(envelope_key(&recipient, position))? {
                let value: HeldValue = codec::decode(&value)?;
                let bytes = value.envelope.len() as u64;
                released.push(Released { recipient, depositor: value.depositor, bytes });
            }
        }
        Ok(released)
    }

    /// What is held, by recipient and by depositor (a scan of every envelope).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn held_tally(&self) -> Result<HeldTally, StoreError> {
        let mut tally = HeldTally::default();
        for item in self.held.scan_prefix([ENVELOPE]) {
            let (key, value) = item?;
            let (recipient, _) = parse_envelope_key(&key)?;
            let value: HeldValue = codec::decode(&value)?;
            tally.count(recipient, value.depositor, value.envelope.len() as u64, true);
        }
        Ok(tally)
    }
}
