//! Blobs in the store: pictures and files as files under the home, with their metadata in
//! sled.
//!
//! Files: `<dir>/<hash hex>` for a complete blob, `<dir>/partial/<hash hex>` for one being
//! fetched (written chunk by chunk at its offset), `<dir>/tmp/` for files being imported.
//! Trees: `blobs` (hash -> [`BlobMeta`]), `blob_refs` (hash, owner -> nothing: who needs
//! the blob, see [`BlobOwner`]), `blob_lru` (last use, hash -> nothing, for blobs this
//! node fetched: the eviction order) and `blob_manifests` (hash -> the verified manifest
//! of every blob held or being fetched: served without rehashing the file, and what a
//! download in progress resumes from after a restart; a manifest without metadata is a
//! download in progress).
//!
//! A complete blob's file is written and synced, then renamed into place, then its
//! metadata is inserted: the metadata is the commit point, and a file without it is
//! removed by [`Blobs::collect`]. Every method does blocking file I/O: call them off the
//! async threads.

use std::{
    fs,
    io::{self, Read, Write},
    os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use kith_protocol::{
    blob::{BlobHash, Manifest, ManifestBuilder, VerifiedManifest},
    codec,
    limits::{BLOB_CHUNK_BYTES, MAX_BLOB_REPLY_BYTES},
};

use super::{codec as values, corrupt, Store, StoreError};

use types::io_err;
pub use types::{BlobCounts, BlobLimits, BlobMeta, BlobOrigin, BlobOwner, BlobStoreError};

/// How seldom a blob's last-use time is rewritten, ms.
const TOUCH_EVERY_MS: u64 = 60_000;

/// The blob store: files under one folder, metadata in the node's sled store. Cheap to
/// clone.
#[derive(Clone)]
pub struct Blobs {
    store: Store,
    dir: PathBuf,
    /// Changed while the node runs by [`Blobs::set_limits`].
    limits: Arc<Mutex<BlobLimits>>,
    /// Bytes of complete blobs.
    used: Arc<AtomicU64>,
    /// Bytes of complete blobs fetched on the node's own initiative.
    auto_used: Arc<AtomicU64>,
    /// Serialises changes to the metadata, the quota count and the files.
    writer: Arc<Mutex<()>>,
    /// Numbers temporary files.
    next_tmp: Arc<AtomicU64>,
}

fn lru_key(used_ms: u64, hash: &BlobHash) -> Vec<u8> {
    let mut key = used_ms.to_be_bytes().to_vec();
    key.extend_from_slice(hash.as_bytes());
    key
}

fn encode_meta(meta: &BlobMeta) -> Result<Vec<u8>, StoreError> {
    values::encode(meta)
}

fn encode_manifest(manifest: &VerifiedManifest) -> Result<Vec<u8>, StoreError> {
    codec::encode(&manifest.to_manifest()).map_err(|e| corrupt(&e.to_string()))
}

fn decode_meta(bytes: &[u8]) -> Result<BlobMeta, StoreError> {
    values::decode(bytes)
}

fn make_dir(path: &Path) -> Result<(), BlobStoreError> {
    fs::create_dir_all(path).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_err(path))
}

impl Blobs {
    /// Opens the blob store in `dir` (created, mode 0700), with its metadata in `store`.
    /// Leftover temporary files of an interrupted import are removed.
    ///
    /// # Errors
    /// File or store errors.
    pub fn open(store: &Store, dir: &Path, limits: BlobLimits) -> Result<Self, BlobStoreError> {
        for sub in [dir.to_owned(), dir.join("partial"), dir.join("tmp")] {
            make_dir(&sub)?;
        }
        let tmp = dir.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        let (mut used, mut auto_used) = (0u64, 0u64);
        for item in store.blobs.iter() {
            let meta = decode_meta(&item.map_err(StoreError::from)?.1)?;
            used = used.saturating_add(meta.size);
            if meta.auto {
                auto_used = auto_used.saturating_add(meta.size);
            }
        }
        Ok(Self {
            store: store.clone(),
            dir: dir.to_owned(),
            limits: Arc::new(Mutex::new(limits)),
            used: Arc::new(AtomicU64::new(used)),
            auto_used: Arc::new(AtomicU64::new(auto_used)),
            writer: Arc::new(Mutex::new(())),
            next_tmp: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The limits this store applies.
    pub fn limits(&self) -> BlobLimits {
        *self.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies new limits now: blobs fetched from others are evicted, least recently used
    /// first, until the store fits the new quota and thumbnails their new budget (blobs
    /// this node made are never evicted, so they may stay over a smaller quota).
    ///
    /// # Errors
    /// Disk errors while evicting.
    pub fn set_limits(&self, limits: BlobLimits) -> Result<(), BlobStoreError> {
        let _writer = self.lock()?;
        *self.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
        self.make_room_auto(0)?;
        match self.make_room(0) {
            Err(BlobStoreError::Full { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A folder for files on their way in (uploads, imports); emptied when the store
    /// opens.
    pub fn scratch_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Where a complete blob's file is.
    pub fn path(&self, hash: &BlobHash) -> PathBuf {
        self.dir.join(hash.to_string())
    }

    fn partial_path(&self, hash: &BlobHash) -> PathBuf {
        self.dir.join("partial").join(hash.to_string())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ()>, StoreError> {
        self.writer.lock().map_err(|_| corrupt("blob writer lock poisoned"))
    }

    /// The metadata of a complete blob.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn meta(&self, hash: &BlobHash) -> Result<Option<BlobMeta>, StoreError> {
        self.store.blobs.get(hash.as_bytes())?.map(|v| decode_meta(&v)).transpose()
    }

    /// Whether the store holds the whole blob.
    ///
    /// # Errors
    /// Disk errors.
    pub fn has(&self, hash: &BlobHash) -> Result<bool, StoreError> {
        Ok(self.store.blobs.contains_key(hash.as_bytes())?)
    }

    /// Counts for `kith status`.
    pub fn counts(&self) -> BlobCounts {
        BlobCounts {
            blobs: self.store.blobs.len() as u64,
            bytes: self.used.load(Ordering::SeqCst),
            partial: (self.store.blob_manifests.len() as u64)
                .saturating_sub(self.store.blobs.len() as u64),
            auto_bytes: self.auto_used.load(Ordering::SeqCst),
        }
    }

    /// Refuses a size over the node's maximum.
    ///
    /// # Errors
    /// [`BlobStoreError::TooLarge`].
    pub fn check_size(&self, size: u64) -> Result<(), BlobStoreError> {
        let max = self.limits().max_blob;
        if size > max {
            return Err(BlobStoreError::TooLarge { size, max });
        }
        Ok(())
    }

    /// Stores bytes made on this node (a thumbnail, a sealed attachment) as an own blob.
    ///
    /// # Errors
    /// File or store errors; [`BlobStoreError::TooLarge`].
    pub fn put_own(&self, bytes: &[u8]) -> Result<VerifiedManifest, BlobStoreError> {
        self.import(&mut io::Cursor::new(bytes), BlobOrigin::Own)
    }

    /// Stores a file's bytes read from `source`, hashing them on the way, as a blob of
    /// `origin`. Nothing is stored if reading fails or the bytes pass the maximum size.
    ///
    /// # Errors
    /// File or store errors; [`BlobStoreError::TooLarge`].
    pub fn import(
        &self,
        source: &mut dyn Read,
        origin: BlobOrigin,
    ) -> Result<VerifiedManifest, BlobStoreError> {
        let n = self.next_tmp.fetch_add(1, Ordering::SeqCst);
        let tmp = self.dir.join("tmp").join(format!("{}-{n}", std::process::id()));
        let result = self.import_via(&tmp, source, origin);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn import_via(
        &self,
        tmp: &Path,
        source: &mut dyn Read,
        origin: BlobOrigin,
    ) -> Result<VerifiedManifest, BlobStoreError> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(io_err(tmp))?;
        let mut builder = ManifestBuilder::default();
        let mut chunk = vec![0u8; BLOB_CHUNK_BYTES];
        let mut size = 0u64;
        loop {
            let n = read_full(source, &mut chunk).map_err(io_err(tmp))?;
            size += n as u64;
            self.check_size(size)?;
            let piece = chunk.get(..n).unwrap_or_default();
            builder.push(piece);
            file.write_all(piece).map_err(io_err(tmp))?;
            if n < chunk.len() {
                break;
            }
        }
        file.sync_all().map_err(io_err(tmp))?;
        drop(file);
        let (_, manifest) = builder.finish();
        self.commit(tmp, &manifest, origin, false)?;
        Ok(manifest)
    }

    /// Moves a complete, synced file into place and records it (the commit point), unless
    /// the blob is stored already. Makes room within the quota for a fetched blob first.
    fn commit(
        &self,
        file: &Path,
        manifest: &VerifiedManifest,
        origin: BlobOrigin,
        auto: bool,
    ) -> Result<(), BlobStoreError> {
        let hash = manifest.hash();
        let _writer = self.lock()?;
        if let Some(mut meta) = self.meta(&hash)? {
            let _ = fs::remove_file(file);
            if origin == BlobOrigin::Own && meta.origin != BlobOrigin::Own {
                // We made it too now: it is ours, not a cache entry.
                self.store.blob_lru.remove(lru_key(meta.used_ms, &hash))?;
                meta.origin = BlobOrigin::Own;
                self.store.blobs.insert(hash.as_bytes(), encode_meta(&meta)?)?;
            }
            return Ok(());
        }
        if origin == BlobOrigin::Fetched {
            if auto {
                self.make_room_auto(manifest.size())?;
            }
            self.make_room(manifest.size())?;
        }
        let path = self.path(&hash);
        fs::rename(file, &path).map_err(io_err(&path))?;
        self.store.blob_manifests.insert(hash.as_bytes(), encode_manifest(manifest)?)?;
        let now = crate::node::now_ms();
        let auto = auto && origin == BlobOrigin::Fetched;
        let meta = BlobMeta { size: manifest.size(), origin, added_ms: now, used_ms: now, auto };
        if origin == BlobOrigin::Fetched {
            self.store.blob_lru.insert(lru_key(now, &hash), &[])?;
        }
        self.store.blobs.insert(hash.as_bytes(), encode_meta(&meta)?)?;
        self.used.fetch_add(manifest.size(), Ordering::SeqCst);
        if auto {
            self.auto_used.fetch_add(manifest.size(), Ordering::SeqCst);
        }
        Ok(())
    }

    /// Evicts blobs fetched on the node's own initiative, least recently used first, until
    /// `size` more bytes of them fit the budget. Called with the writer lock held.
    fn make_room_auto(&self, size: u64) -> Result<(), BlobStoreError> {
        let budget = self.limits().auto_budget;
        if size > budget {
            return Err(BlobStoreError::Full {
                used: self.auto_used.load(Ordering::SeqCst),
                quota: budget,
            });
        }
        let mut oldest = self.store.blob_lru.iter().keys();
        while self.auto_used.load(Ordering::SeqCst).saturating_add(size) > budget {
            let Some(key) = oldest.next() else { break };
            let key = key.map_err(StoreError::from)?;
            let Some(hash) = key.get(8..).and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
                continue;
            };
            let hash = BlobHash::from_bytes(hash);
            if self.meta(&hash)?.is_some_and(|m| m.auto) {
                self.remove_locked(&hash)?;
            }
        }
        Ok(())
    }

    /// Evicts fetched blobs, least recently used first, until `size` more bytes fit the
    /// quota. Called with the writer lock held.
    fn make_room(&self, size: u64) -> Result<(), BlobStoreError> {
        let quota = self.limits().quota;
        while self.used.load(Ordering::SeqCst).saturating_add(size) > quota {
            let Some(item) = self.store.blob_lru.iter().next() else {
                return Err(BlobStoreError::Full { used: self.used.load(Ordering::SeqCst), quota });
            };
            let (key, _) = item.map_err(StoreError::from)?;
            self.store.blob_lru.remove(&key)?;
            let Some(hash) = key.get(8..).and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
                continue;
            };
            self.remove_locked(&BlobHash::from_bytes(hash))?;
        }
        Ok(())
    }

    /// Removes a complete blob's file and metadata (its owners stay). Writer lock held.
    fn remove_locked(&self, hash: &BlobHash) -> Result<(), BlobStoreError> {
        if let Some(meta) = self.meta(hash)? {
            if meta.auto {
                let auto = self.auto_used.load(Ordering::SeqCst);
                self.auto_used.fetch_sub(meta.size.min(auto), Ordering::SeqCst);
            }
            self.store.blobs.remove(hash.as_bytes())?;
            self.store.blob_manifests.remove(hash.as_bytes())?;
            self.store.blob_lru.remove(lru_key(meta.used_ms, hash))?;
            self.used.fetch_sub(meta.size.min(self.used.load(Ordering::SeqCst)), Ordering::SeqCst);
            let path = self.path(hash);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BlobStoreError::Io { path, source: e }),
            }
        }
        Ok(())
    }

    /// Notes that a fetched blob was used now (it moves to the back of the eviction
    /// order). Rewritten at most once a minute per blob.
    ///
    /// # Errors
    /// Disk errors.
    pub fn touch(&self, hash: &BlobHash) -> Result<(), StoreError> {
        let _writer = self.lock()?;
        let Some(mut meta) = self.meta(hash)? else { return Ok(()) };
        let now = crate::node::now_ms();
        if now.saturating_sub(meta.used_ms) < TOUCH_EVERY_MS {
            return Ok(());
        }
        if meta.origin == BlobOrigin::Fetched {
            self.store.blob_lru.remove(lru_key(meta.used_ms, hash))?;
            self.store.blob_lru.insert(lru_key(now, hash), &[])?;
        }
        meta.used_ms = now;
        self.store.blobs.insert(hash.as_bytes(), encode_meta(&meta)?)?;
        Ok(())
    }

    /// Reads chunk `index` of a complete blob; `None` when the blob or chunk is not here.
    ///
    /// # Errors
    /// File or store errors.
    pub fn read_chunk(
        &self,
        hash: &BlobHash,
        index: u32,
    ) -> Result<Option<Vec<u8>>, BlobStoreError> {
        let Some(meta) = self.meta(hash)? else { return Ok(None) };
        let start = u64::from(index) * BLOB_CHUNK_BYTES as u64;
        if start >= meta.size && !(index == 0 && meta.size == 0) {
            return Ok(None);
        }
        let len = (meta.size - start).min(BLOB_CHUNK_BYTES as u64) as usize;
        let path = self.path(hash);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BlobStoreError::Io { path, source: e }),
        };
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, start).map_err(io_err(&path))?;
        Ok(Some(buf))
    }

    /// The manifest of a complete blob.
    ///
    /// # Errors
    /// Disk errors or damage.
    pub fn manifest(&self, hash: &BlobHash) -> Result<Option<VerifiedManifest>, StoreError> {
        if !self.has(hash)? {
            return Ok(None);
        }
        self.stored_manifest(hash)
    }

    fn stored_manifest(&self, hash: &BlobHash) -> Result<Option<VerifiedManifest>, StoreError> {
        let Some(bytes) = self.store.blob_manifests.get(hash.as_bytes())? else { return Ok(None) };
        let manifest: Manifest = codec::decode::<_, MAX_BLOB_REPLY_BYTES>(&bytes)
            .map_err(|e| corrupt(&format!("blob manifest: {e}")))?;
        manifest.verify(hash).map(Some).map_err(|e| corrupt(&format!("blob manifest: {e}")))
    }
}

impl Store {
    /// Whether the blob store in this store holds the whole blob `hash`.
    pub fn has_blob(&self, hash: &BlobHash) -> bool {
        self.blobs.contains_key(hash.as_bytes()).unwrap_or(false)
    }
}

/// Reads until `buf` is full or the source ends; how many bytes were read.
fn read_full(source: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

mod owners;
mod partial;
#[cfg(test)]
mod tests;
mod types;
