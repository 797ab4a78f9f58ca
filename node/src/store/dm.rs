//! Direct messages in the store: conversations (per peer, time-ordered), an index of
//! message ids per sender (which also drops replays), and the persistent outbox.
//!
//! Trees: `dm_msgs` (peer, timestamp, id -> message), `dm_index` (sender, id -> the
//! `dm_msgs` key) and `outbox` (id -> peer and sealed bytes). Changes that touch several
//! trees hold the store's writer lock and write their commit point last.

use bincode::{Decode, Encode};
use kith_protocol::{attachment::SealedAttachment, codec, AuthorId};
use serde::{Deserialize, Serialize};

use super::{
    codec::{self as values, Value},
    corrupt, Store, StoreError,
};

/// Length of a direct message id.
pub const DM_ID_LEN: usize = 16;

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(rename_all = "snake_case")]
pub enum DmStatus {
    /// Sent by us, waiting in the outbox.
    Queued,
    /// Sent by us, receipt received.
    Delivered,
    /// Sent by us, refused by the recipient.
    Refused,
    /// Received from the peer.
    Received,
    /// Sent by us, not delivered directly but held by at least one of the recipient's
    /// mailboxes; still in the outbox until the recipient's receipt comes back.
    Held,
}

impl DmStatus {
    /// The status as shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivered => "delivered",
            Self::Refused => "refused",
            Self::Received => "received",
            Self::Held => "held",
        }
    }
}

/// A direct message as stored.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct DmRecord {
    /// Message id (hex).
    pub id: String,
    /// Sender id.
    pub from: String,
    /// Recipient id.
    pub to: String,
    /// Plaintext.
    pub text: String,
    /// When it was written (sent by us) or arrived (received), ms: threads are in this
    /// order.
    pub timestamp: u64,
    /// The sender's own timestamp of a received message, ms (their clock, unchecked).
    pub sent_at: Option<u64>,
    /// Status.
    pub status: DmStatus,
    /// Why it was refused.
    pub reason: Option<String>,
    /// Whether the person has seen it (received messages).
    pub read: bool,
    /// Attached files: each the hex of a canonically encoded [`SealedAttachment`] (the
    /// file's description, its key and its sealed blobs), as the message carried it.
    pub attachments: Vec<String>,
}

impl Value for DmRecord {
    const WHAT: &'static str = "message";
}

/// Largest stored attachment encoding read back.
const MAX_STORED_ATTACHMENT: usize = 4096;

impl DmRecord {
    /// The message's attachments (an undecodable entry, which only a damaged store holds,
    /// is skipped).
    pub fn sealed_attachments(&self) -> Vec<SealedAttachment> {
        self.attachments
            .iter()
            .filter_map(|h| hex::decode(h).ok())
            .filter_map(|b| codec::decode::<SealedAttachment, MAX_STORED_ATTACHMENT>(&b).ok())
            .collect()
    }

    /// Sets the message's attachments.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] only if an attachment cannot be encoded.
    pub fn set_attachments(&mut self, list: &[SealedAttachment]) -> Result<(), StoreError> {
        self.attachments = list
            .iter()
            .map(|a| codec::encode(a).map(hex::encode).map_err(|e| corrupt(&e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

/// One conversation in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The other person.
    pub peer: AuthorId,
    /// The latest message.
    pub last: DmRecord,
    /// Received messages not yet read.
    pub unread: u64,
}

/// A message waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct OutboxEntry {
    /// Message id.
    pub id: [u8; DM_ID_LEN],
    /// Recipient public key.
    pub peer: [u8; 32],
    /// The sealed request bytes, ready to send.
    pub request: Vec<u8>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Where it stands in the outbox: messages to one peer are delivered in this order
    /// (set by [`Store::dm_insert`]).
    pub order: u64,
}

impl Value for OutboxEntry {
    const WHAT: &'static str = "outbox entry";
}

fn conv_key(peer: &AuthorId, timestamp: u64, id: &[u8; DM_ID_LEN]) -> Vec<u8> {
    let mut key = peer.as_bytes().to_vec();
    key.extend_from_slice(&timestamp.to_be_bytes());
    key.extend_from_slice(id);
    key
}

fn index_key(sender: &AuthorId, id: &[u8; DM_ID_LEN]) -> Vec<u8> {
    let mut key = sender.as_bytes().to_vec();
    key.extend_from_slice(id);
    key
}

impl Store {
    /// The message `id` sent by `sender`, if stored.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn dm_get(
        &self,
        sender: &AuthorId,
        id: &[u8; DM_ID_LEN],
    ) -> Result<Option<DmRecord>, StoreError> {
        let Some(ckey) = self.dm_index.get(index_key(sender, id))? else { return Ok(None) };
        self.dm_msgs.get(ckey)?.map(|v| values::decode(&v)).transpose()
    }

    /// Whether a message `id` from `sender` is already stored (a replay or a retry).
    ///
    /// # Errors
    /// Disk errors.
    pub fn dm_seen(&self, sender: &AuthorId, id: &[u8; DM_ID_LEN]) -> Result<bool, StoreError> {
        Ok(self.dm_index.contains_key(index_key(sender, id))?)
    }

    /// Stores a message in the conversation with `peer`; with `outbox`, also queues its
    /// request bytes for delivery. Returns `false` (and changes nothing) if the message
    /// (`sender`, `id`) is already stored.
    ///
    /// # Errors
    /// Disk errors.
    pub fn dm_insert(
        &self,
        peer: &AuthorId,
        sender: &AuthorId,
        id: &[u8; DM_ID_LEN],
        message: &DmRecord,
        outbox: Option<&OutboxEntry>,
    ) -> Result<bool, StoreError> {
        let ckey = conv_key(peer, message.timestamp, id);
        let ikey = index_key(sender, id);
        let value = values::encode(message)?;
        let queued = match outbox {
            Some(entry) => Some(values::encode(&OutboxEntry {
                order: self.db.generate_id()?,
                ..entry.clone()
            })?),
            None => None,
        };
        // The index entry is the commit point (it is what marks the message as seen).
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        if self.dm_index.contains_key(&ikey)? {
            return Ok(false);
        }
        self.dm_msgs.insert(ckey.as_slice(), value)?;
        if let Some(q) = queued {
            self.outbox.insert(&id[..], q)?;
        }
        self.dm_index.insert(ikey, ckey)?;
        let inserted = true;
        Ok(inserted)
    }

    /// Sets the status of our own message `id` (sent by `me`); a final status
    /// (delivered, refused) also takes it out of the outbox (queued and held do not).
    /// Returns the updated record.
    ///
    /// # Errors
    /// Disk errors; [`StoreError::Corrupt`] if the record is unreadable.
    pub fn dm_set_status(
        &self,
        me: &AuthorId,
        id: &[u8; DM_ID_LEN],
        status: DmStatus,
        reason: Option<String>,
    ) -> Result<Option<DmRecord>, StoreError> {
        let ikey = index_key(me, id);
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        let Some(ckey) = self.dm_index.get(&ikey)? else { return Ok(None) };
        let Some(old) = self.dm_msgs.get(&ckey)? else { return Ok(None) };
        let mut record: DmRecord = values::decode(&old)?;
        record.status = status;
        record.reason = reason;
        values::put(&self.dm_msgs, ckey, &record)?;
        // A crash before this line only means one more (deduplicated) delivery attempt.
        if !matches!(status, DmStatus::Queued | DmStatus::Held) {
            self.outbox.remove(&id[..])?;
        }
        let updated = Some(record);
        Ok(updated)
    }

    /// Records another delivery attempt for an outbox entry.
    ///
    /// # Errors
    /// Disk errors.
    pub fn dm_outbox_attempted(&self, id: &[u8; DM_ID_LEN]) -> Result<(), StoreError> {
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        if let Some(v) = self.outbox.get(id)? {
            let mut entry: OutboxEntry = values::decode(&v)?;
            entry.attempts = entry.attempts.saturating_add(1);
            values::put(&self.outbox, id, &entry)?;
        }
        Ok(())
    }

    /// Everything waiting in the outbox, oldest first.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn dm_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut all: Vec<OutboxEntry> =
            self.outbox.iter().map(|item| values::decode(&item?.1)).collect::<Result<_, _>>()?;
        all.sort_by_key(|e| e.order);
        Ok(all)
    }

    /// Number of messages waiting in the outbox.
    pub fn dm_outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// The last `limit` messages with `peer`, oldest first.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn dm_thread(&self, peer: &AuthorId, limit: usize) -> Result<Vec<DmRecord>, StoreError> {
        let mut out: Vec<DmRecord> = Vec::new();
        for item in self.dm_msgs.scan_prefix(peer.as_bytes()).rev() {
            if out.len() == limit {
                break;
            }
            let (key, value) = item?;
            let record: DmRecord = values::decode(&value)?;
            if self.committed(&key, &record)? {
                out.push(record);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Whether the message `record`, stored at `key` in `dm_msgs`, was committed: its
    /// index entry, written last by [`Store::dm_insert`], names it. A kill between the
    /// writes leaves the thread's copy (and maybe an outbox entry) without one: such a
    /// copy is not shown, and its outbox entry goes ([`Store::dm_drop_uncommitted`]), so
    /// a message is either shown and delivered or neither. A message received again is
    /// written again at the same key and committed then.
    fn committed(&self, key: &[u8], record: &DmRecord) -> Result<bool, StoreError> {
        let id: [u8; DM_ID_LEN] = key
            .len()
            .checked_sub(DM_ID_LEN)
            .and_then(|at| key.get(at..))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("dm key"))?;
        let sender: AuthorId = record.from.parse().map_err(|_| corrupt("dm sender"))?;
        Ok(self.dm_index.get(index_key(&sender, &id))?.is_some_and(|at| at == key))
    }

    /// Drops the outbox entries of messages from `me` that were never committed (a kill
    /// came between [`Store::dm_insert`]'s writes): they are not in any thread, so they
    /// are not delivered either. Run when the store opens; returns how many went.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn dm_drop_uncommitted(&self, me: &AuthorId) -> Result<usize, StoreError> {
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        let mut uncommitted = Vec::new();
        for item in self.outbox.iter() {
            let (key, _) = item?;
            let id: [u8; DM_ID_LEN] = key.as_ref().try_into().map_err(|_| corrupt("outbox key"))?;
            if !self.dm_index.contains_key(index_key(me, &id))? {
                uncommitted.push(id);
            }
        }
        for id in &uncommitted {
            self.outbox.remove(id)?;
        }
        Ok(uncommitted.len())
    }

    /// Marks every received message from `peer` as read.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn dm_mark_read(&self, peer: &AuthorId) -> Result<(), StoreError> {
        let _writer = self.writer.lock().map_err(|_| corrupt("writer lock poisoned"))?;
        for item in self.dm_msgs.scan_prefix(peer.as_bytes()) {
            let (key, value) = item?;
            let mut record: DmRecord = values::decode(&value)?;
            if record.status == DmStatus::Received && !record.read {
                record.read = true;
                values::put(&self.dm_msgs, key, &record)?;
            }
        }
        Ok(())
    }

    /// Conversations, most recent first.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn dm_conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        let mut out: Vec<Conversation> = Vec::new();
        for item in self.dm_msgs.iter() {
            let (key, value) = item?;
            let peer_bytes: [u8; 32] =
                key.get(..32).and_then(|b| b.try_into().ok()).ok_or_else(|| corrupt("dm key"))?;
            let peer = AuthorId::from_bytes(peer_bytes).map_err(|_| corrupt("dm key"))?;
            let record: DmRecord = values::decode(&value)?;
            if !self.committed(&key, &record)? {
                continue;
            }
            let unread = u64::from(record.status == DmStatus::Received && !record.read);
            match out.last_mut() {
                Some(conv) if conv.peer == peer => {
                    conv.unread += unread;
                    conv.last = record;
                }
                _ => out.push(Conversation { peer, last: record, unread }),
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.last.timestamp));
        Ok(out)
    }

    /// Number of direct messages stored.
    pub fn dm_count(&self) -> u64 {
        self.dm_msgs.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use kith_protocol::Keypair;

    use super::*;

    fn msg(id: u8, from: &AuthorId, to: &AuthorId, ts: u64, status: DmStatus) -> DmRecord {
        DmRecord {
            id: hex::encode([id; DM_ID_LEN]),
            from: from.to_string(),
            to: to.to_string(),
            text: format!("m{id}"),
            timestamp: ts,
            sent_at: None,
            status,
            reason: None,
            read: false,
            attachments: vec![],
        }
    }

    #[test]
    fn outbox_conversations_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let me = Keypair::from_secret_bytes(&[1; 32]).id();
        let bob = Keypair::from_secret_bytes(&[2; 32]).id();
        let carol = Keypair::from_secret_bytes(&[3; 32]).id();
        let entry = OutboxEntry {
            id: [1; 16],
            peer: *bob.as_bytes(),
            request: vec![9],
            attempts: 0,
            order: 0,
        };
        assert!(store
            .dm_insert(&bob, &me, &[1; 16], &msg(1, &me, &bob, 10, DmStatus::Queued), Some(&entry))
            .unwrap());
        assert!(store
            .dm_insert(&bob, &bob, &[2; 16], &msg(2, &bob, &me, 20, DmStatus::Received), None)
            .unwrap());
        // A replay of bob's message is not stored again.
        assert!(!store
            .dm_insert(&bob, &bob, &[2; 16], &msg(2, &bob, &me, 20, DmStatus::Received), None)
            .unwrap());
        assert!(store.dm_seen(&bob, &[2; 16]).unwrap());
        // The same id from another sender is another message.
        assert!(!store.dm_seen(&carol, &[2; 16]).unwrap());
        assert!(store
            .dm_insert(&carol, &carol, &[2; 16], &msg(2, &carol, &me, 5, DmStatus::Received), None)
            .unwrap());

        // The outbox numbers its entries in the order they came.
        let queued = store.dm_outbox().unwrap();
        assert_eq!(queued, vec![OutboxEntry { order: queued[0].order, ..entry }]);
        store.dm_outbox_attempted(&[1; 16]).unwrap();
        assert_eq!(store.dm_outbox().unwrap()[0].attempts, 1);
        let updated = store.dm_set_status(&me, &[1; 16], DmStatus::Delivered, None).unwrap();
        assert_eq!(updated.unwrap().status, DmStatus::Delivered);
        assert!(store.dm_outbox().unwrap().is_empty());

        let convs = store.dm_conversations().unwrap();
        assert_eq!(convs.len(), 2);
        assert_eq!(convs[0].peer, bob);
        assert_eq!(convs[0].unread, 1);
        assert_eq!(convs[0].last.text, "m2");
        let thread = store.dm_thread(&bob, 10).unwrap();
        assert_eq!(thread.iter().map(|m| m.timestamp).collect::<Vec<_>>(), [10, 20]);
        store.dm_mark_read(&bob).unwrap();
        assert_eq!(store.dm_conversations().unwrap()[0].unread, 0);
        assert_eq!(store.dm_thread(&bob, 1).unwrap()[0].text, "m2");
        assert_eq!(store.dm_count(), 3);
    }

    /// A kill between [`Store::dm_insert`]'s writes (the index entry is written last):
    /// what was written before it is not shown, its outbox entry goes, and a message
    /// received again is stored and shown once.
    #[test]
    fn a_message_cut_before_its_index_is_neither_shown_nor_sent() {
        let store = Store::open_memory().unwrap();
        let me = Keypair::from_secret_bytes(&[1; 32]).id();
        let bob = Keypair::from_secret_bytes(&[2; 32]).id();
        let entry = |n: u8| OutboxEntry {
            id: [n; 16],
            peer: *bob.as_bytes(),
            request: vec![n],
            attempts: 0,
            order: u64::from(n),
        };
        let whole = msg(1, &me, &bob, 10, DmStatus::Queued);
        assert!(store.dm_insert(&bob, &me, &[1; 16], &whole, Some(&entry(1))).unwrap());
        // Cut after the thread's copy.
        let copy_only = msg(2, &me, &bob, 20, DmStatus::Queued);
        values::put(&store.dm_msgs, conv_key(&bob, 20, &[2; 16]), &copy_only).unwrap();
        // Cut after the thread's copy and the outbox entry.
        let queued = msg(3, &me, &bob, 30, DmStatus::Queued);
        values::put(&store.dm_msgs, conv_key(&bob, 30, &[3; 16]), &queued).unwrap();
        values::put(&store.outbox, [3; 16], &entry(3)).unwrap();
        // Bob's message, cut after the thread's copy (no receipt went: he sends it again).
        let received = msg(4, &bob, &me, 40, DmStatus::Received);
        values::put(&store.dm_msgs, conv_key(&bob, 40, &[4; 16]), &received).unwrap();

        assert_eq!(store.dm_thread(&bob, 10).unwrap(), std::slice::from_ref(&whole));
        assert_eq!(store.dm_thread(&bob, 1).unwrap(), std::slice::from_ref(&whole));
        let convs = store.dm_conversations().unwrap();
        assert_eq!((convs.len(), &convs[0].last, convs[0].unread), (1, &whole, 0));

        assert_eq!(store.dm_drop_uncommitted(&me).unwrap(), 1);
        let left: Vec<[u8; 16]> = store.dm_outbox().unwrap().iter().map(|e| e.id).collect();
        assert_eq!(left, [[1; 16]]);
        assert_eq!(store.dm_drop_uncommitted(&me).unwrap(), 0);

        assert!(!store.dm_seen(&bob, &[4; 16]).unwrap());
        assert!(store.dm_insert(&bob, &bob, &[4; 16], &received, None).unwrap());
        assert_eq!(store.dm_thread(&bob, 10).unwrap(), [whole, received]);
        assert_eq!(store.dm_conversations().unwrap()[0].unread, 1);
    }
}
