//! Names of people: petnames (local names this node's person gave others), the index of
//! profile names by folded form, and the set of people this node knows of.
//!
//! Trees: `petnames` (author -> petname as given), `name_skeletons` (the profile name's
//! [`lookalike_key`], 0xFF, author -> nothing). The name index is written with each newer
//! profile record (under the writer lock, in [`Store::insert`]); readers confirm a hit
//! against the author's current profile, so an entry left behind by a deleted profile
//! finds nothing. The index is derived data: a store without it (or with the older
//! `names` tree, keyed by the folded name only) gets it rebuilt when it is opened.

use std::collections::BTreeSet;

use kith_protocol::{AuthorId, Record, RecordId, RecordKind};

use super::{
    codec::{self, Petname},
    corrupt,
    keys::u64_at,
    Store, StoreError,
};
use crate::names::{lookalike_key, same_petname};

/// Separates the folded name from the author in a `names` key; never appears in UTF-8.
const NAME_END: u8 = 0xFF;

fn name_prefix(folded: &str) -> Vec<u8> {
    let mut key = folded.as_bytes().to_vec();
    key.push(NAME_END);
    key
}

fn name_key(folded: &str, author: &AuthorId) -> Vec<u8> {
    let mut key = name_prefix(folded);
    key.extend_from_slice(author.as_bytes());
    key
}

fn author_at_end(key: &[u8]) -> Option<AuthorId> {
    let start = key.len().checked_sub(32)?;
    let bytes: [u8; 32] = key.get(start..)?.try_into().ok()?;
    Some(AuthorId::from_stored(bytes))
}

impl Store {
    /// Indexes the name of a profile record that is newer than the author's current one
    /// (called by `insert` under the writer lock, before the profile pointer moves).
    pub(super) fn index_profile_name(&self, r: &Record) -> Result<(), StoreError> {
        let RecordKind::Profile { name, .. } = &r.kind else { return Ok(()) };
        if let Some(old) = self.profile(&r.author)? {
            if let RecordKind::Profile { name: old_name, .. } = &old.record.kind {
                self.names.remove(name_key(&lookalike_key(old_name), &r.author))?;
            }
        }
        let key = lookalike_key(name);
        if !key.is_empty() {
            self.names.insert(name_key(&key, &r.author), &[])?;
        }
        Ok(())
    }

    /// Builds the name index from the profiles when it is empty (a store written before
    /// the index existed).
    pub(super) fn backfill_names(&self) -> Result<(), StoreError> {
        if !self.names.is_empty() || self.profiles.is_empty() {
            return Ok(());
        }
        for item in self.profiles.iter() {
            let (key, _) = item?;
            let Some(author) = author_at_end(&key) else { continue };
            if let Some(p) = self.profile(&author)? {
                if let RecordKind::Profile { name, .. } = &p.record.kind {
                    let key = lookalike_key(name);
                    if !key.is_empty() {
                        self.names.insert(name_key(&key, &author), &[])?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Empties the name index, as in a store written before it existed (for tests).
    #[cfg(test)]
    pub(crate) fn clear_name_index(&self) -> Result<(), StoreError> {
        Ok(self.names.clear()?)
    }

    /// The current display name of `author`, if a profile with a non-empty name is known.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn display_name(&self, author: &AuthorId) -> Result<Option<String>, StoreError> {
        Ok(self.profile(author)?.and_then(|p| match p.record.kind {
            RecordKind::Profile { name, .. } if !name.is_empty() => Some(name),
            _ => None,
        }))
    }

    /// People whose current profile name looks like `name` (equal
    /// [`lookalike_key`]s), with that name; at most `limit`.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn people_looking_like(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<(AuthorId, String)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.holders_of_key(&lookalike_key(name), None, |who, current| {
            out.push((who, current));
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Calls `found` with each person (other than `except`) whose current profile name
    /// has the look-alike `key`, and that name, while it returns true. The name index
    /// can hold entries left by older names: each is confirmed against the profile.
    fn holders_of_key(
        &self,
        key: &str,
        except: Option<&AuthorId>,
        mut found: impl FnMut(AuthorId, String) -> bool,
    ) -> Result<(), StoreError> {
        // A name that folds to nothing is in no index entry.
        if key.is_empty() {
            return Ok(());
        }
        for item in self.names.scan_prefix(name_prefix(key)) {
            let (k, _) = item?;
            let who = author_at_end(&k).ok_or_else(|| corrupt("name key"))?;
            if except == Some(&who) {
                continue;
            }
            if let Some(current) = self.display_name(&who)? {
                if lookalike_key(&current) == key && !found(who, current) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Whether the display name of `author` looks like the name of another known person
    /// or like a petname given to someone else (see [`lookalike_key`]). `false` without
    /// a display name.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn looks_like_another(&self, author: &AuthorId) -> Result<bool, StoreError> {
        let Some(name) = self.display_name(author)? else { return Ok(false) };
        let petnames = self.petnames()?;
        let keys: Vec<(AuthorId, String)> =
            petnames.iter().map(|(who, p)| (*who, lookalike_key(p))).collect();
        self.name_looks_like_another(author, &name, &keys)
    }

    /// [`Store::looks_like_another`] for `author`, whose display name `name` the caller
    /// read, with the [`lookalike_key`] of every petname given (`petname_keys`, by whom
    /// it names): a page that shows many people reads and folds the petnames once. Reads
    /// no profile of `author`'s, and folds `name` once.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn name_looks_like_another(
        &self,
        author: &AuthorId,
        name: &str,
        petname_keys: &[(AuthorId, String)],
    ) -> Result<bool, StoreError> {
        let key = lookalike_key(name);
        let mut another = false;
        self.holders_of_key(&key, Some(author), |_, _| {
            another = true;
            false
        })?;
        if another {
            return Ok(true);
        }
        Ok(petname_keys.iter().any(|(who, p)| who != author && *p == key))
    }

    /// Sets (or with `None` removes) the petname of `author`.
    ///
    /// # Errors
    /// Disk errors.
    pub fn set_petname(&self, author: &AuthorId, petname: Option<&str>) -> Result<(), StoreError> {
        match petname {
            Some(p) => codec::put(&self.petnames, author.as_bytes(), &Petname(p.to_owned()))?,
            None => {
                self.petnames.remove(author.as_bytes())?;
            }
        }
        Ok(())
    }

    /// The petname of `author`, if given.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn petname(&self, author: &AuthorId) -> Result<Option<String>, StoreError> {
        Ok(codec::get::<Petname>(&self.petnames, author.as_bytes())?.map(|p| p.0))
    }

    /// Every petname, by author.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn petnames(&self) -> Result<Vec<(AuthorId, String)>, StoreError> {
        let mut out = Vec::new();
        for item in self.petnames.iter() {
            let (key, value) = item?;
            let bytes: [u8; 32] = key.as_ref().try_into().map_err(|_| corrupt("petname key"))?;
            let author = AuthorId::from_bytes(bytes).map_err(|_| corrupt("petname key"))?;
            out.push((author, codec::decode::<Petname>(&value)?.0));
        }
        Ok(out)
    }

    /// Whom the petname `name` (any case) names.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn petname_owner(&self, name: &str) -> Result<Option<AuthorId>, StoreError> {
        Ok(self.petnames()?.into_iter().find(|(_, p)| same_petname(p, name)).map(|(a, _)| a))
    }

    /// Ids of stored records whose hex form starts with `hex_prefix` (lower-case hex
    /// digits), at most `limit`.
    ///
    /// # Errors
    /// Disk errors.
    pub fn records_with_prefix(
        &self,
        hex_prefix: &str,
        limit: usize,
    ) -> Result<Vec<RecordId>, StoreError> {
        let whole = hex_prefix.len() / 2;
        let bytes = hex::decode(hex_prefix.get(..whole * 2).unwrap_or_default())
            .map_err(|_| corrupt("record id prefix"))?;
        self.records.ids_with_prefix(&bytes, |id| id.to_string().starts_with(hex_prefix), limit)
    }

    /// Everyone this node knows of: authors of stored records, people followed or
    /// following, remembered peers and people with a petname.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn known_people(&self) -> Result<BTreeSet<AuthorId>, StoreError> {
        let mut out = BTreeSet::new();
        // Distinct authors of the log: one seek per author, past all their entries.
        let mut from = Vec::new();
        while let Some(item) = self.log.range(from.as_slice()..).next() {
            let (key, _) = item?;
            let bytes: [u8; 32] =
                key.get(..32).and_then(|b| b.try_into().ok()).ok_or_else(|| corrupt("log key"))?;
            if let Ok(author) = AuthorId::from_bytes(bytes) {
                out.insert(author);
            }
            // The first key after every (author, seq): author followed by nine 0xFF bytes
            // sorts after any 40-byte key of this author.
            from = bytes.to_vec();
            from.extend_from_slice(&[0xFF; 9]);
            if u64_at(&key, 32).is_none() {
                return Err(corrupt("log key"));
            }
        }
        // Both sides of every follow relation (the followers tree mirrors this one).
        for item in self.follows.iter() {
            let (key, _) = item?;
            for half in [key.get(..32), key.get(32..64)] {
                let Some(bytes) = half.and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
                    continue;
                };
                if let Ok(author) = AuthorId::from_bytes(bytes) {
                    out.insert(author);
                }
            }
        }
        for item in self.peers.iter() {
            let (key, _) = item?;
            if let Some(author) =
                std::str::from_utf8(&key).ok().and_then(|s| s.parse::<AuthorId>().ok())
            {
                out.insert(author);
            }
        }
        out.extend(self.petnames()?.into_iter().map(|(a, _)| a));
        Ok(out)
    }
}
