//! Mailboxes (issue #18): the latest `Mailboxes` record of each author (`mailboxes`:
//! author -> seq and id of that record, like `profiles`), which names the nodes that
//! hold sealed messages for them while they are offline.

use kith_protocol::{AuthorId, RecordId, RecordKind};

use super::{
    codec::{self, ProfileValue},
    Store, StoreError,
};

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
}
