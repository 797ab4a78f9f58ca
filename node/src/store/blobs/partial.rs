//! Downloads in progress: a partial file written chunk by chunk at its offset, and the
//! verified manifest it resumes from after a restart.

use std::{
    fs,
    os::unix::fs::{FileExt, OpenOptionsExt},
};

use kith_protocol::blob::{BlobHash, VerifiedManifest};

use super::{encode_manifest, io_err, BlobOrigin, BlobStoreError, Blobs, StoreError};

impl Blobs {
    /// Starts (or resumes) a download: records the verified manifest durably enough to
    /// resume after a crash, creates the partial file, and returns which chunks it already
    /// holds (each checked against the manifest). Nothing is started for a blob over the
    /// maximum size.
    ///
    /// # Errors
    /// File or store errors; [`BlobStoreError::TooLarge`].
    pub fn begin_partial(&self, manifest: &VerifiedManifest) -> Result<Vec<bool>, BlobStoreError> {
        self.check_size(manifest.size())?;
        let hash = manifest.hash();
        let path = self.partial_path(&hash);
        {
            let _writer = self.lock()?;
            if !self.store.blob_manifests.contains_key(hash.as_bytes())? {
                self.store.blob_manifests.insert(hash.as_bytes(), encode_manifest(manifest)?)?;
                self.store.blob_manifests.flush()?;
            }
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        file.set_len(manifest.size()).map_err(io_err(&path))?;
        let mut have = Vec::with_capacity(manifest.chunk_count() as usize);
        for index in 0..manifest.chunk_count() {
            let len = manifest.chunk_len(index).unwrap_or(0);
            let mut buf = vec![0u8; len];
            let ok = file.read_exact_at(&mut buf, manifest.chunk_offset(index)).is_ok()
                && manifest.check_chunk(index, &buf).is_ok();
            have.push(ok);
        }
        Ok(have)
    }

    /// The manifest of a download in progress.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn partial_manifest(
        &self,
        hash: &BlobHash,
    ) -> Result<Option<VerifiedManifest>, StoreError> {
        if self.has(hash)? {
            return Ok(None);
        }
        self.stored_manifest(hash)
    }

    /// Writes a chunk that the caller checked against the manifest.
    ///
    /// # Errors
    /// File errors.
    pub fn write_chunk(
        &self,
        manifest: &VerifiedManifest,
        index: u32,
        bytes: &[u8],
    ) -> Result<(), BlobStoreError> {
        let path = self.partial_path(&manifest.hash());
        let file = fs::OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
        file.write_all_at(bytes, manifest.chunk_offset(index)).map_err(io_err(&path))
    }

    /// Completes a download whose every chunk was written: syncs the file, moves it into
    /// place within the quota (evicting if need be; within the budget of blobs fetched on
    /// the node's own initiative when `auto`), forgets the partial state.
    ///
    /// # Errors
    /// File or store errors; [`BlobStoreError::Full`].
    pub fn finish_partial(
        &self,
        manifest: &VerifiedManifest,
        auto: bool,
    ) -> Result<(), BlobStoreError> {
        let hash = manifest.hash();
        let path = self.partial_path(&hash);
        let file = fs::OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        drop(file);
        self.commit(&path, manifest, BlobOrigin::Fetched, auto)
    }

    /// Removes a complete blob now, whoever needs it (a sealed copy once opened).
    ///
    /// # Errors
    /// File or store errors.
    pub fn remove(&self, hash: &BlobHash) -> Result<(), BlobStoreError> {
        let _writer = self.lock()?;
        self.remove_locked(hash)
    }

    /// Abandons a download: its file and partial state go.
    ///
    /// # Errors
    /// Store errors.
    pub fn drop_partial(&self, hash: &BlobHash) -> Result<(), StoreError> {
        let _writer = self.lock()?;
        if !self.has(hash)? {
            let _ = fs::remove_file(self.partial_path(hash));
            self.store.blob_manifests.remove(hash.as_bytes())?;
        }
        Ok(())
    }
}
