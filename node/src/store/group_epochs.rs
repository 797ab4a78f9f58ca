//! The membership history of each group, in the `groups` tree (issue #19; admission by
//! the epoch a message was sent in, `docs/protocol.md` 20.7):
//!
//! - `e` || group || epoch -> the signed membership of every epoch this node applied, as
//!   it travels (kept as they come; a store from before has none of the earlier ones);
//! - `l` || group || member || epoch -> the time of the member's signed leave notice
//!   for that epoch (known to the creator, who takes it, and to the member who left).
//!
//! The memberships were verified before they got here; a reader verifies them again.

use super::{corrupt, group::key, Store, StoreError};

const EPOCH: u8 = b'e';
const LEAVE: u8 = b'l';

impl Store {
    /// Keeps the signed membership of `epoch` of `group` (again: replaced by the same
    /// bytes; not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn group_keep_epoch(
        &self,
        group: &[u8; 16],
        epoch: u64,
        signed: &[u8],
    ) -> Result<(), StoreError> {
        self.groups.insert(key(EPOCH, &[group, &epoch.to_be_bytes()]), signed)?;
        Ok(())
    }

    /// The signed memberships of `group` kept here, from epoch `from` on, oldest first.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn group_epochs_from(
        &self,
        group: &[u8; 16],
        from: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let prefix = key(EPOCH, &[group]);
        let start = key(EPOCH, &[group, &from.to_be_bytes()]);
        let mut out = Vec::new();
        for item in self.groups.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let epoch = k.get(prefix.len()..).and_then(|e| <[u8; 8]>::try_from(e).ok());
            let epoch = epoch.ok_or_else(|| corrupt("group epoch key"))?;
            out.push((u64::from_be_bytes(epoch), v.to_vec()));
        }
        Ok(out)
    }

    /// Keeps the time of `member`'s leave notice for `epoch` of `group` (the earliest,
    /// if there are several; not flushed).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn group_keep_leave(
        &self,
        group: &[u8; 16],
        member: &[u8; 32],
        epoch: u64,
        timestamp: u64,
    ) -> Result<(), StoreError> {
        let k = key(LEAVE, &[group, member, &epoch.to_be_bytes()]);
        if let Some(kept) = self.groups.get(&k)? {
            let kept = <[u8; 8]>::try_from(&kept[..]).map_err(|_| corrupt("group leave"))?;
            if u64::from_be_bytes(kept) <= timestamp {
                return Ok(());
            }
        }
        self.groups.insert(k, &timestamp.to_be_bytes()[..])?;
        Ok(())
    }

    /// The earliest time `member` left `group` in epoch `from` or a later one, if it is
    /// known here.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn group_left_since(
        &self,
        group: &[u8; 16],
        member: &[u8; 32],
        from: u64,
    ) -> Result<Option<u64>, StoreError> {
        let prefix = key(LEAVE, &[group, member]);
        let start = key(LEAVE, &[group, member, &from.to_be_bytes()]);
        let mut earliest: Option<u64> = None;
        for item in self.groups.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let at = <[u8; 8]>::try_from(&v[..]).map_err(|_| corrupt("group leave"))?;
            let at = u64::from_be_bytes(at);
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        Ok(earliest)
    }
}
