//! Circles (posts for chosen friends, issue #19): what their author keeps, in the
//! `groups` tree under prefix `k`: `k` || name -> [`CircleState`]. A circle's Megolm
//! outbound session is kept as a group's is (`o` || circle id), and the inbound sessions
//! of the circles a person is in as a group member's are (`i` || session tag): see
//! `group.rs`.

use bincode::{Decode, Encode};
use kith_protocol::codec;

use super::{corrupt, Store, StoreError};

const CIRCLE: u8 = b'k';

/// Largest stored circle decoded here (64 members and a name).
const MAX_VALUE: usize = 8 * 1024;

/// One of this node's person's circles.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct CircleState {
    /// Its id (never published: members find it inside the ciphertext only).
    pub id: [u8; 16],
    /// One more at each removal: a new epoch needs a new session.
    pub epoch: u64,
    /// The members (this node's person's mutual connections), ascending.
    pub members: Vec<[u8; 32]>,
}

fn circle_key(name: &str) -> Vec<u8> {
    let mut key = vec![CIRCLE];
    key.extend_from_slice(name.as_bytes());
    key
}

impl Store {
    /// Every circle of this node's person, by name.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn circles(&self) -> Result<Vec<(String, CircleState)>, StoreError> {
        let mut out = Vec::new();
        for item in self.groups.scan_prefix([CIRCLE]) {
            let (k, v) = item?;
            let name = k.get(1..).and_then(|n| std::str::from_utf8(n).ok());
            let name = name.ok_or_else(|| corrupt("circle name"))?.to_owned();
            let state =
                codec::decode::<CircleState, MAX_VALUE>(&v).map_err(|_| corrupt("circle"))?;
            out.push((name, state));
        }
        Ok(out)
    }

    /// One circle, by name.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn circle(&self, name: &str) -> Result<Option<CircleState>, StoreError> {
        self.groups
            .get(circle_key(name))?
            .map(|v| codec::decode::<CircleState, MAX_VALUE>(&v).map_err(|_| corrupt("circle")))
            .transpose()
    }

    /// Stores a circle (not flushed).
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_circle(&self, name: &str, state: &CircleState) -> Result<(), StoreError> {
        let bytes = codec::encode(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.groups.insert(circle_key(name), bytes)?;
        Ok(())
    }
}
