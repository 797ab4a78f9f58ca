//! Attachments: turning files into blobs for a post or message (sealing them for a
//! message), opening the sealed files a message brought, `kith blob get`, and how
//! attachments are shown.
//!
//! Everything here that touches files blocks: it runs on blocking threads.

use std::{
    fs,
    io::{self, Read},
    path::{Path, PathBuf},
};

use kith_protocol::{
    attachment::{Attachment, FileName, ImageInfo, MimeType, SealedAttachment, Thumbnail},
    blob::{sealed_len, BlobHash, BlobKey, BlobSealer, KeyRole},
    limits::{BLOB_SEGMENT_BYTES, MAX_ATTACHMENTS},
    AuthorId,
};
use tokio::sync::watch;

use super::{blobs::FetchHint, Node};
use crate::{
    api::{ApiError, AttachmentEntry, Response},
    media,
    store::{BlobOrigin, BlobOwner, Blobs, DmRecord, Store},
};

/// Messages of a conversation whose missing attachments are fetched when the other
/// person connects.
const RESUME_MESSAGES: usize = 50;

/// How a file or blob size reads for people: `512 B`, `12.5 KiB`, `3.2 MiB` (the CLI
/// shows sizes with it too).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("B"))
    }
}

/// An attachment as the control API shows it.
pub(crate) fn entry_of(store: &Store, a: &Attachment) -> AttachmentEntry {
    AttachmentEntry {
        hash: a.hash.to_string(),
        name: a.name.as_str().to_owned(),
        mime: a.mime.as_str().to_owned(),
        size: a.size,
        dimensions: a.image.as_ref().map(|i| (i.width, i.height)),
        thumbnail: a.thumbnail().map(|t| t.hash.to_string()),
        local: store.has_blob(&a.hash),
    }
}

/// The MIME type of a file that is not a picture kith processes, from its name.
fn mime_of(name: &FileName) -> MimeType {
    mime_guess::from_path(name.as_str())
        .first()
        .and_then(|m| MimeType::new(m.essence_str()).ok())
        .unwrap_or_else(MimeType::octet_stream)
}

/// Reads `path` into the blob store as an own blob and describes it. A JPEG, PNG or WebP
/// (known by its first bytes, whatever its name) is shared without its metadata and gets
/// a thumbnail (`media`). Refuses what is not a readable regular file, a file over the
/// node's maximum blob size, and a picture that is too large or cannot be read, with a
/// message that names the file.
pub(crate) fn prepare_file(blobs: &Blobs, path: &Path) -> Result<Attachment, String> {
    let shown = path.display();
    if !path.is_absolute() {
        return Err(format!("{shown}: not an absolute path"));
    }
    let meta = fs::metadata(path).map_err(|e| format!("cannot attach {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("cannot attach {shown}: not a regular file"));
    }
    let max = blobs.limits().max_blob;
    if meta.len() > max {
        return Err(format!(
            "cannot attach {shown}: it is {}, and the largest file this node sends is {} \
             (max_blob_mb in config.toml)",
            human_size(meta.len()),
            human_size(max)
        ));
    }
    let name = FileName::sanitized(
        &path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    );
    let mut file = fs::File::open(path).map_err(|e| format!("cannot attach {shown}: {e}"))?;
    let mut head = [0u8; 32];
    let n = file.read(&mut head).map_err(|e| format!("cannot attach {shown}: {e}"))?;
    if let Some(format) = media::Format::sniff(head.get(..n).unwrap_or_default()) {
        let mut bytes = head.get(..n).unwrap_or_default().to_vec();
        file.read_to_end(&mut bytes).map_err(|e| format!("cannot attach {shown}: {e}"))?;
        return prepare_picture(blobs, bytes, format, name)
            .map_err(|e| format!("cannot attach {shown}: {e}"));
    }
    let mut source = io::Cursor::new(head.get(..n).unwrap_or_default().to_vec()).chain(file);
    let manifest = blobs
        .import(&mut source, BlobOrigin::Own)
        .map_err(|e| format!("cannot attach {shown}: {e}"))?;
    Ok(Attachment {
        hash: manifest.hash(),
        size: manifest.size(),
        mime: mime_of(&name),
        name,
        image: None,
    })
}

/// Stores what is shared of a picture (no metadata) and its thumbnail as own blobs.
fn prepare_picture(
    blobs: &Blobs,
    bytes: Vec<u8>,
    format: media::Format,
    name: FileName,
) -> Result<Attachment, String> {
    let picture = media::prepare(bytes, format).map_err(|e| e.to_string())?;
    let manifest = blobs.put_own(&picture.bytes).map_err(|e| e.to_string())?;
    let thumbnail = match &picture.thumbnail {
        Some(t) => {
            let stored = blobs.put_own(&t.bytes).map_err(|e| e.to_string())?;
            Some(Thumbnail {
                hash: stored.hash(),
                size: u32::try_from(stored.size()).map_err(|e| e.to_string())?,
                width: t.width,
                height: t.height,
            })
        }
        None => None,
    };
    Ok(Attachment {
        hash: manifest.hash(),
        size: manifest.size(),
        mime: MimeType::new(picture.format.mime()).map_err(|e| e.to_string())?,
        name,
        image: Some(ImageInfo { width: picture.width, height: picture.height, thumbnail }),
    })
}

/// Reads a file in segments and yields them sealed: the bytes of the sealed blob.
struct Sealing<R> {
    source: R,
    sealer: BlobSealer,
    segments: u64,
    next: u64,
    buffer: Vec<u8>,
    at: usize,
}

impl<R: Read> Read for Sealing<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buffer.len() {
            if self.next == self.segments {
                return Ok(0);
            }
            let mut plain = vec![0u8; BLOB_SEGMENT_BYTES];
            let mut filled = 0;
            while filled < plain.len() {
                match self.source.read(plain.get_mut(filled..).unwrap_or_default())? {
                    0 => break,
                    n => filled += n,
                }
            }
            plain.truncate(filled);
            let last = self.next + 1 == self.segments;
            self.buffer =
                self.sealer.seal_segment(self.next, last, &plain).map_err(io::Error::other)?;
            self.at = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buffer.len() - self.at);
        out.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(self.buffer.get(self.at..self.at + n).unwrap_or_default());
        self.at += n;
        Ok(n)
    }
}

/// Opens a sealed blob segment by segment: the bytes of the file.
struct Opening<R> {
    source: R,
    sealer: BlobSealer,
    segments: u64,
    next: u64,
    buffer: Vec<u8>,
    at: usize,
}

impl<R: Read> Read for Opening<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buffer.len() {
            if self.next == self.segments {
                return Ok(0);
            }
            let mut sealed = vec![0u8; BLOB_SEGMENT_BYTES + kith_protocol::dm::AEAD_TAG_LEN];
            let mut filled = 0;
            while filled < sealed.len() {
                match self.source.read(sealed.get_mut(filled..).unwrap_or_default())? {
                    0 => break,
                    n => filled += n,
                }
            }
            sealed.truncate(filled);
            let last = self.next + 1 == self.segments;
            self.buffer = self
                .sealer
                .open_segment(self.next, last, &sealed)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.at = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buffer.len() - self.at);
        out.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(self.buffer.get(self.at..self.at + n).unwrap_or_default());
        self.at += n;
        Ok(n)
    }
}

fn segments(size: u64) -> u64 {
    size.div_ceil(BLOB_SEGMENT_BYTES as u64).max(1)
}

/// Seals an own blob under `key` for `role` into a new own blob; its hash.
fn seal_into(
    blobs: &Blobs,
    key: &BlobKey,
    role: KeyRole,
    plain: &BlobHash,
    size: u64,
) -> Result<BlobHash, String> {
    let file =
        fs::File::open(blobs.path(plain)).map_err(|e| format!("sealing an attachment: {e}"))?;
    let sealer = BlobSealer::new(key, role).map_err(|e| e.to_string())?;
    let mut reader = Sealing {
        source: file,
        sealer,
        segments: segments(size),
        next: 0,
        buffer: Vec::new(),
        at: 0,
    };
    let manifest = blobs
        .import(&mut reader, BlobOrigin::Own)
        .map_err(|e| format!("sealing an attachment: {e}"))?;
    Ok(manifest.hash())
}

/// Seals a prepared attachment (and its thumbnail) for a message, under a fresh key.
pub(crate) fn seal_attachment(
    blobs: &Blobs,
    attachment: Attachment,
) -> Result<SealedAttachment, String> {
    let key = BlobKey::generate().map_err(|e| format!("random: {e}"))?;
    let sealed = seal_into(blobs, &key, KeyRole::Content, &attachment.hash, attachment.size)?;
    let sealed_thumbnail = match attachment.thumbnail() {
        Some(t) => Some(seal_into(blobs, &key, KeyRole::Thumbnail, &t.hash, u64::from(t.size))?),
        None => None,
    };
    Ok(SealedAttachment { attachment, key, sealed, sealed_thumbnail })
}

/// Opens the sealed blob `sealed` (already in the store) into the own blob of the file it
/// must be, checking the result's hash. The sealed copy is removed either way.
fn open_into(
    blobs: &Blobs,
    key: &BlobKey,
    role: KeyRole,
    sealed: &BlobHash,
    expected: &BlobHash,
    size: u64,
) -> Result<(), String> {
    let result = (|| {
        let file = fs::File::open(blobs.path(sealed))
            .map_err(|e| format!("opening an attachment: {e}"))?;
        let sealer = BlobSealer::new(key, role).map_err(|e| e.to_string())?;
        let mut reader = Opening {
            source: file,
            sealer,
            segments: segments(size),
            next: 0,
            buffer: Vec::new(),
            at: 0,
        };
        let manifest = blobs
            .import(&mut reader, BlobOrigin::Own)
            .map_err(|e| format!("opening an attachment: {e}"))?;
        if manifest.hash() != *expected {
            let _ = blobs.remove(&manifest.hash());
            return Err(format!(
                "attachment {expected}: the sender's file does not match its description"
            ));
        }
        Ok(())
    })();
    let _ = blobs.remove(sealed);
    result
}

/// The owners of a message's blobs: the sealed ones may go to `peer`, the files not.
fn own_message_blobs(
    blobs: &Blobs,
    peer: AuthorId,
    message: [u8; 16],
    a: &SealedAttachment,
) -> Result<(), String> {
    let err = |e: crate::store::StoreError| format!("store: {e}");
    let local = BlobOwner::Local { peer, message };
    let sealed = BlobOwner::Sealed { peer, message };
    blobs.add_owner(&a.attachment.hash, local).map_err(err)?;
    blobs.add_owner(&a.sealed, sealed).map_err(err)?;
    if let Some(t) = a.attachment.thumbnail() {
        blobs.add_owner(&t.hash, local).map_err(err)?;
    }
    if let Some(t) = a.sealed_thumbnail {
        blobs.add_owner(&t, sealed).map_err(err)?;
    }
    Ok(())
}

impl Node {
    async fn on_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Blobs) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let blobs = self.inner.blobs.clone();
        tokio::task::spawn_blocking(move || f(blobs))
            .await
            .map_err(|e| format!("task failed: {e}"))?
    }

    /// Turns files into attachments (own blobs), at most [`MAX_ATTACHMENTS`].
    pub(super) async fn prepare_attachments(
        &self,
        paths: Vec<String>,
    ) -> Result<Vec<Attachment>, String> {
        if paths.len() > MAX_ATTACHMENTS {
            return Err(format!("at most {MAX_ATTACHMENTS} attachments per post or message"));
        }
        let mut out = Vec::new();
        for path in paths {
            out.push(
                self.on_blocking(move |blobs| prepare_file(&blobs, &PathBuf::from(path))).await?,
            );
        }
        Ok(out)
    }

    /// Announces in the DHT that this node has the public blobs of `attachments`.
    pub(super) async fn provide_attachments(&self, attachments: &[Attachment]) {
        for a in attachments {
            for hash in std::iter::once(a.hash).chain(a.thumbnail().map(|t| t.hash)) {
                self.inner.net.provide(super::blobs::provider_key(&hash)).await;
            }
        }
    }

    /// Seals prepared attachments for a message to `peer` and records who needs which
    /// blob.
    pub(super) async fn seal_attachments(
        &self,
        peer: AuthorId,
        message: [u8; 16],
        list: Vec<Attachment>,
    ) -> Result<Vec<SealedAttachment>, String> {
        self.on_blocking(move |blobs| {
            list.into_iter()
                .map(|a| {
                    let sealed = seal_attachment(&blobs, a)?;
                    own_message_blobs(&blobs, peer, message, &sealed)?;
                    Ok(sealed)
                })
                .collect()
        })
        .await
    }

    /// Records who needs the blobs of a received message and fetches and opens them in
    /// the background (sealed blobs come from the sender).
    pub(super) fn receive_attachments(
        &self,
        sender: AuthorId,
        record: &DmRecord,
        message: [u8; 16],
    ) {
        let list = record.sealed_attachments();
        if list.is_empty() {
            return;
        }
        for a in &list {
            if let Err(error) = own_message_blobs(&self.inner.blobs, sender, message, a) {
                tracing::error!(%error, "cannot record a message's attachments");
            }
        }
        let node = self.clone();
        self.spawn(async move {
            for a in list {
                if let Err(error) = node.open_attachment(sender, &a, None).await {
                    tracing::info!(%sender, %error, "attachment not fetched yet");
                }
            }
        });
    }

    /// Fetches the attachments of the latest messages with `peer` that did not come yet
    /// (the sender was offline, or this node restarted): called when `peer` connects.
    pub(super) async fn resume_attachments(&self, peer: AuthorId) {
        let Ok(thread) = self.inner.store.dm_thread(&peer, RESUME_MESSAGES) else { return };
        for record in thread {
            for a in record.sealed_attachments() {
                if self.inner.blobs.has(&a.attachment.hash).unwrap_or(true) {
                    continue;
                }
                if let Err(error) = self.open_attachment(peer, &a, None).await {
                    tracing::info!(%peer, %error, "attachment not fetched yet");
                }
            }
        }
    }

    /// Fetches a message attachment's sealed blobs from `peer` and opens them.
    async fn open_attachment(
        &self,
        peer: AuthorId,
        a: &SealedAttachment,
        progress: Option<watch::Sender<(u32, u32)>>,
    ) -> Result<(), String> {
        let sources: Vec<libp2p::PeerId> = peer.to_peer_id().ok().into_iter().collect();
        let mut parts = vec![(KeyRole::Content, a.sealed, a.attachment.hash, a.attachment.size)];
        if let (Some(thumb), Some(sealed)) = (a.attachment.thumbnail(), a.sealed_thumbnail) {
            parts.push((KeyRole::Thumbnail, sealed, thumb.hash, u64::from(thumb.size)));
        }
        for (role, sealed, plain, size) in parts {
            if self.inner.blobs.has(&plain).unwrap_or(false) {
                continue;
            }
            self.inner.blobs.check_size(size).map_err(|e| format!("attachment {plain}: {e}"))?;
            let hint =
                FetchHint { size: Some(sealed_len(size)), sources: sources.clone(), auto: false };
            let progress = if role == KeyRole::Content { progress.clone() } else { None };
            self.fetch_blob(sealed, hint, progress).await.map_err(|e| e.to_string())?;
            let key = a.key.clone();
            self.on_blocking(move |blobs| open_into(&blobs, &key, role, &sealed, &plain, size))
                .await?;
        }
        Ok(())
    }

    /// The attachment of a message (sent or received) that `hash` is the file or
    /// thumbnail of, with the other person of that conversation.
    fn message_attachment(&self, hash: &BlobHash) -> Option<(AuthorId, SealedAttachment)> {
        let store = &self.inner.store;
        for owner in self.inner.blobs.owners(hash).ok()? {
            let BlobOwner::Local { peer, message } = owner else { continue };
            for sender in [peer, self.inner.me] {
                let Ok(Some(record)) = store.dm_get(&sender, &message) else { continue };
                let found = record.sealed_attachments().into_iter().find(|a| {
                    a.attachment.hash == *hash
                        || a.attachment.thumbnail().is_some_and(|t| t.hash == *hash)
                });
                if let Some(a) = found {
                    return Some((peer, a));
                }
            }
        }
        None
    }

    /// The size a public record says `hash` has, if one of ours carries it.
    fn public_size(&self, hash: &BlobHash) -> Option<u64> {
        for owner in self.inner.blobs.owners(hash).ok()? {
            let BlobOwner::Record(id) = owner else { continue };
            let Ok(Some(stored)) = self.inner.store.get(&id) else { continue };
            let kith_protocol::RecordKind::Post(post) = stored.record.kind else { continue };
            for a in post.attachments {
                if a.hash == *hash {
                    return Some(a.size);
                }
                if let Some(t) = a.thumbnail().filter(|t| t.hash == *hash) {
                    return Some(u64::from(t.size));
                }
            }
        }
        None
    }

    /// `kith blob get`: fetches `hash` if this node does not hold it (a message's file
    /// from the other person of the conversation, sealed, then opened; anything else from
    /// whoever has it) and saves it to `out` if given.
    pub(crate) async fn blob_get(
        &self,
        hash: &str,
        out: Option<String>,
        progress: Option<watch::Sender<(u32, u32)>>,
    ) -> Result<Response, ApiError> {
        let hash: BlobHash = hash
            .parse()
            .map_err(|e: kith_protocol::blob::BlobHashError| ApiError::invalid(e.to_string()))?;
        if let Some(out) = &out {
            if !Path::new(out).is_absolute() {
                return Err(ApiError::invalid(format!("{out}: not an absolute path")));
            }
        }
        if !self.inner.blobs.has(&hash).map_err(|e| ApiError::internal(e.to_string()))? {
            match self.message_attachment(&hash) {
                Some((peer, a)) => {
                    self.open_attachment(peer, &a, progress).await.map_err(ApiError::unavailable)?
                }
                None => {
                    let hint = FetchHint {
                        size: self.public_size(&hash),
                        sources: Vec::new(),
                        auto: false,
                    };
                    self.fetch_blob(hash, hint, progress)
                        .await
                        .map_err(|e| ApiError::unavailable(e.to_string()))?;
                }
            }
        }
        let (size, path) = self
            .on_blocking(move |blobs| {
                let meta =
                    blobs.meta(&hash).map_err(|e| e.to_string())?.ok_or("the blob went away")?;
                let _ = blobs.touch(&hash);
                let stored = blobs.path(&hash);
                let Some(out) = out else { return Ok((meta.size, stored)) };
                let out = PathBuf::from(out);
                let tmp = out.with_file_name(format!(".{}.kith-part", hash));
                fs::copy(&stored, &tmp).and_then(|_| fs::rename(&tmp, &out)).map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    format!("cannot write {}: {e}", out.display())
                })?;
                Ok((meta.size, out))
            })
            .await
            .map_err(ApiError::internal)?;
        Ok(Response::Blob { hash: hash.to_string(), size, path: path.display().to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(12_800), "12.5 KiB");
        assert_eq!(human_size(25 << 20), "25.0 MiB");
    }

    #[test]
    fn streamed_sealing_matches_the_protocol_and_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s")).unwrap();
        let limits =
            crate::store::BlobLimits { max_blob: 1 << 30, quota: 1 << 30, auto_budget: 1 << 20 };
        let blobs = Blobs::open(&store, &dir.path().join("b"), limits).unwrap();
        for len in [0usize, 10, BLOB_SEGMENT_BYTES, 3 * BLOB_SEGMENT_BYTES + 7] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let hash = blobs.put_own(&plain).unwrap().hash();
            let key = BlobKey::from_bytes([3; 32]);
            let sealed = seal_into(&blobs, &key, KeyRole::Content, &hash, len as u64).unwrap();
            let expected = kith_protocol::blob::seal_blob(&key, KeyRole::Content, &plain).unwrap();
            assert_eq!(fs::read(blobs.path(&sealed)).unwrap(), expected, "{len}");
            blobs.remove(&hash).unwrap();
            open_into(&blobs, &key, KeyRole::Content, &sealed, &hash, len as u64).unwrap();
            assert_eq!(fs::read(blobs.path(&hash)).unwrap(), plain);
            assert!(!blobs.has(&sealed).unwrap());
        }
        // A wrong key opens nothing and leaves nothing.
        let plain = vec![1u8; 100];
        let hash = blobs.put_own(&plain).unwrap().hash();
        let sealed =
            seal_into(&blobs, &BlobKey::from_bytes([1; 32]), KeyRole::Content, &hash, 100).unwrap();
        blobs.remove(&hash).unwrap();
        let wrong =
            open_into(&blobs, &BlobKey::from_bytes([2; 32]), KeyRole::Content, &sealed, &hash, 100);
        assert!(wrong.is_err());
        assert!(!blobs.has(&hash).unwrap());
    }
}
