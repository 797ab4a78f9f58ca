//! Mailboxes (issue #18).
//!
//! - `mailboxes`: author -> seq and id of their latest `Mailboxes` record (like
//!   `profiles`), which names the nodes that hold sealed messages for them while they
//!   are offline.
//! - `mailbox_local`: this node's own choices and observations: `manual` (the holders
//!   the person chose by hand, in order), `excluded` (people never to choose
//!   automatically) and `p` || author -> [`Presence`] (how long each mutual connection
//!   was seen online, which the automatic choice prefers).

use bincode::{Decode, Encode};
use kith_protocol::{AuthorId, RecordId, RecordKind};

use super::{
    codec::{self, ProfileValue, Value},
    Store, StoreError,
};

const MANUAL: &[u8] = b"manual";
const EXCLUDED: &[u8] = b"excluded";
const PRESENCE: u8 = b'p';

/// A list of people kept in `mailbox_local`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
struct People(Vec<AuthorId>);

impl Value for People {
    const WHAT: &'static str = "mailbox choice";
}

/// How much a peer was seen online (`mailbox_local`: `p` || author).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct Presence {
    /// Time connected, summed, ms.
    pub online_ms: u64,
    /// When last seen connected, ms since the Unix epoch.
    pub last_seen_ms: u64,
}

impl Value for Presence {
    const WHAT: &'static str = "presence";
}

fn presence_key(author: &AuthorId) -> Vec<u8> {
    [&[PRESENCE][..], author.as_bytes()].concat()
}

impl Store {
    /// The holders `author` named in their latest `Mailboxes` record (empty when they
    /// named none or published no such record).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn mailboxes_of(&self, author: &AuthorId) -> Result<Vec<AuthorId>, StoreError> {
        let Some(value) = codec::get::<ProfileValue>(&self.mailboxes, author.as_bytes())? else {
            return Ok(Vec::new());
        };
        let record = self.get(&RecordId::from_bytes(value.id))?;
        Ok(match record.map(|r| r.record.kind) {
            Some(RecordKind::Mailboxes { holders }) => holders,
            _ => Vec::new(),
        })
    }

    /// Everyone whose latest `Mailboxes` record names `holder`.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn listing(&self, holder: &AuthorId) -> Result<Vec<AuthorId>, StoreError> {
        let mut out = Vec::new();
        for item in self.mailboxes.iter() {
            let (key, _) = item?;
            let author = <[u8; 32]>::try_from(key.as_ref())
                .ok()
                .and_then(|k| AuthorId::from_bytes(k).ok())
                .ok_or_else(|| super::corrupt("mailboxes key"))?;
            if self.mailboxes_of(&author)?.contains(holder) {
                out.push(author);
            }
        }
        Ok(out)
    }

    fn people(&self, key: &[u8]) -> Result<Vec<AuthorId>, StoreError> {
        Ok(codec::get::<People>(&self.mailbox_local, key)?.unwrap_or_default().0)
    }

    /// The holders the person chose by hand, in order (empty: chosen automatically).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn mailbox_manual(&self) -> Result<Vec<AuthorId>, StoreError> {
        self.people(MANUAL)
    }

    /// Sets the holders chosen by hand (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_mailbox_manual(&self, holders: &[AuthorId]) -> Result<(), StoreError> {
        codec::put(&self.mailbox_local, MANUAL, &People(holders.to_vec()))
    }

    /// The people never to choose automatically.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn mailbox_excluded(&self) -> Result<Vec<AuthorId>, StoreError> {
        self.people(EXCLUDED)
    }

    /// Sets the people never to choose automatically (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_mailbox_excluded(&self, people: &[AuthorId]) -> Result<(), StoreError> {
        codec::put(&self.mailbox_local, EXCLUDED, &People(people.to_vec()))
    }

    /// How much `author` was seen online.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn presence(&self, author: &AuthorId) -> Result<Presence, StoreError> {
        Ok(codec::get(&self.mailbox_local, presence_key(author))?.unwrap_or_default())
    }

    /// Adds `online_ms` of presence of `author`, last seen at `now_ms` (not flushed: an
    /// estimate, losing a little of it in a crash does no harm).
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn add_presence(
        &self,
        author: &AuthorId,
        online_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut presence = self.presence(author)?;
        presence.online_ms = presence.online_ms.saturating_add(online_ms);
        presence.last_seen_ms = presence.last_seen_ms.max(now_ms);
        codec::put(&self.mailbox_local, presence_key(author), &presence)
    }
}
