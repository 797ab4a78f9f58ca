//! Who needs a blob, who may be served it, and collecting the blobs nobody needs.

use std::fs;

use kith_protocol::{blob::BlobHash, AuthorId};

use super::{io_err, BlobOwner, BlobStoreError, Blobs, StoreError};

impl Blobs {
    /// Records that `owner` needs `hash`.
    ///
    /// # Errors
    /// Disk errors.
    pub fn add_owner(&self, hash: &BlobHash, owner: BlobOwner) -> Result<(), StoreError> {
        self.store.blob_refs.insert(owner.key(hash), &[])?;
        Ok(())
    }

    /// Who needs `hash`.
    ///
    /// # Errors
    /// Disk errors.
    pub fn owners(&self, hash: &BlobHash) -> Result<Vec<BlobOwner>, StoreError> {
        let mut out = Vec::new();
        for key in self.store.blob_refs.scan_prefix(hash.as_bytes()).keys() {
            out.extend(BlobOwner::from_key(&key?));
        }
        Ok(out)
    }

    /// Whether `peer` may fetch `hash` from this node: a public record this node holds
    /// carries it, or it is a sealed attachment of a message with `peer`. Plaintext of a
    /// private attachment is never given out.
    ///
    /// # Errors
    /// Disk errors.
    pub fn may_serve(&self, hash: &BlobHash, peer: &AuthorId) -> Result<bool, StoreError> {
        for owner in self.owners(hash)? {
            match owner {
                BlobOwner::Record(id) if self.store.has(&id)? => return Ok(true),
                BlobOwner::Sealed { peer: p, .. } if p == *peer => return Ok(true),
                _ => {}
            }
        }
        Ok(false)
    }

    /// Collects blobs no one needs: complete blobs and downloads with no owner left (or
    /// whose only owners are records that are gone) not stored, used or written within
    /// `grace_ms`, and complete blobs' files without metadata. Returns how many blobs
    /// went.
    ///
    /// # Errors
    /// File or store errors.
    pub fn collect(&self, now_ms: u64, grace_ms: u64) -> Result<usize, BlobStoreError> {
        let mut gone = 0;
        let hashes: Vec<BlobHash> = self
            .store
            .blobs
            .iter()
            .keys()
            .filter_map(|k| k.ok().and_then(|k| <[u8; 32]>::try_from(&k[..]).ok()))
            .map(BlobHash::from_bytes)
            .collect();
        for hash in hashes {
            let _writer = self.lock()?;
            let Some(meta) = self.meta(&hash)? else { continue };
            if now_ms.saturating_sub(meta.added_ms.max(meta.used_ms)) < grace_ms
                || self.needed(&hash)?
            {
                continue;
            }
            self.remove_locked(&hash)?;
            gone += 1;
        }
        let partial: Vec<BlobHash> = self
            .store
            .blob_manifests
            .iter()
            .keys()
            .filter_map(|k| k.ok().and_then(|k| <[u8; 32]>::try_from(&k[..]).ok()))
            .map(BlobHash::from_bytes)
            .collect();
        for hash in partial {
            if self.has(&hash)? {
                continue;
            }
            // A download written to within the grace period may be one in progress.
            let recent = fs::metadata(self.partial_path(&hash))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_millis() < u128::from(grace_ms));
            if !recent && !self.needed(&hash)? {
                self.drop_partial(&hash)?;
                gone += 1;
            }
        }
        // Files that never got their metadata (a crash between rename and insert).
        let _writer = self.lock()?;
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))?.flatten() {
            let Ok(hash) = entry.file_name().to_string_lossy().parse::<BlobHash>() else {
                continue;
            };
            if !self.has(&hash)? {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(gone)
    }

    /// Whether anyone still needs `hash`: an owner that is not a record gone from the
    /// store. Owners that are gone records are removed on the way.
    fn needed(&self, hash: &BlobHash) -> Result<bool, StoreError> {
        let mut needed = false;
        for owner in self.owners(hash)? {
            match owner {
                BlobOwner::Record(id) if !self.store.has(&id)? => {
                    self.store.blob_refs.remove(owner.key(hash))?;
                }
                _ => needed = true,
            }
        }
        Ok(needed)
    }
}
