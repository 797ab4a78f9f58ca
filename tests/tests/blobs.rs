//! Pictures and files: attached to posts and messages, fetched in checked chunks from
//! whoever has them, never given to peers that should not have them; hostile peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kith_node::api::{AttachmentEntry, Request, Response};
use kith_protocol::blob::{BlobHash, Manifest};
use kith_tests::{
    eventually,
    hostile_blob::{HostileBlobPeer, Mischief},
    pictures, TestNode, DEADLINE,
};

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

async fn post_with(node: &TestNode, text: &str, files: Vec<String>) -> Result<String, String> {
    let request =
        Request::Post { text: text.into(), reply_to: None, expires_in_ms: None, attach: files };
    match node.call(request).await {
        Response::Record { id } => Ok(id),
        Response::Error { message, .. } => Err(message),
        other => panic!("unexpected reply {other:?}"),
    }
}

async fn blob_get(node: &TestNode, hash: &str, out: &Path) -> Result<Vec<u8>, String> {
    let request = Request::BlobGet { hash: hash.into(), out: Some(out.display().to_string()) };
    match node.call(request).await {
        Response::Blob { path, .. } => Ok(std::fs::read(path).unwrap()),
        Response::Error { message, .. } => Err(message),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// The attachments of `who`'s post `id` as `reader` sees them, once the post arrived.
async fn attachments_of(reader: &TestNode, who: &TestNode, id: &str) -> Vec<AttachmentEntry> {
    reader.wait_record(id).await;
    let feed = reader.feed(None, Some(&who.id())).await;
    feed.into_iter().find(|i| i.id == id).unwrap().attachments
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_picture_reaches_a_follower_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (TestNode::start("a").await, TestNode::start("b").await);
    b.dial(&a).await;
    b.follow(&a).await;
    let png = pictures::png(640, 480);
    let id = post_with(&a, "the view", vec![write(dir.path(), "view.png", &png)]).await.unwrap();
    let list = attachments_of(&b, &a, &id).await;
    let [picture] = list.as_slice() else { panic!("{list:?}") };
    assert_eq!((picture.name.as_str(), picture.mime.as_str()), ("view.png", "image/png"));
    assert_eq!((picture.size, picture.dimensions), (png.len() as u64, Some((640, 480))));
    assert_eq!(picture.hash, BlobHash::of(&png).to_string());
    assert!(!picture.local);
    // The thumbnail of a followed author's picture comes on its own, the picture does not.
    let thumb: BlobHash = picture.thumbnail.as_ref().unwrap().parse().unwrap();
    eventually(DEADLINE, "b to fetch the thumbnail", || async {
        b.node.store().has_blob(&thumb).then_some(())
    })
    .await;
    assert!(!b.node.store().has_blob(&picture.hash.parse().unwrap()));
    let got = blob_get(&b, &picture.hash, &dir.path().join("got.png")).await.unwrap();
    assert_eq!(got, png);
    assert!(attachments_of(&b, &a, &id).await[0].local);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pictures_are_shared_without_gps_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (TestNode::start("a").await, TestNode::start("b").await);
    b.dial(&a).await;
    b.follow(&a).await;
    let jpeg = pictures::jpeg_with_gps();
    assert!(jpeg.windows(pictures::GPS_MARKER.len()).any(|w| w == pictures::GPS_MARKER));
    let id = post_with(&a, "", vec![write(dir.path(), "IMG_0001.JPG", &jpeg)]).await.unwrap();
    let list = attachments_of(&b, &a, &id).await;
    let shared = blob_get(&b, &list[0].hash, &dir.path().join("shared.jpg")).await.unwrap();
    assert!(!shared.windows(pictures::GPS_MARKER.len()).any(|w| w == pictures::GPS_MARKER));
    assert!(!shared.windows(6).any(|w| w == b"Exif\0\0"));
    assert_eq!(image::load_from_memory(&shared).unwrap().dimensions_of(), (64, 48));

    let bomb = write(dir.path(), "bomb.png", &pictures::png_bomb());
    let error = post_with(&a, "boom", vec![bomb]).await.unwrap_err();
    assert!(error.contains("bomb.png") && error.contains("100000x100000"), "{error}");
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big).unwrap().set_len(26 << 20).unwrap();
    let error = post_with(&a, "big", vec![big.display().to_string()]).await.unwrap_err();
    assert!(error.contains("big.bin") && error.contains("25.0 MiB"), "{error}");
    let error =
        post_with(&a, "", vec![dir.path().join("nope").display().to_string()]).await.unwrap_err();
    assert!(error.contains("nope"), "{error}");
}

trait Dimensions {
    fn dimensions_of(&self) -> (u32, u32);
}

impl Dimensions for image::DynamicImage {
    fn dimensions_of(&self) -> (u32, u32) {
        (self.width(), self.height())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_attachment_reaches_only_its_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestNode::start("a").await;
    let b = TestNode::start("b").await;
    let c = TestNode::start("c").await;
    b.dial(&a).await;
    c.dial(&a).await;
    a.befriend(&b).await;
    c.follow(&a).await;
    let file = random_bytes(300_000, 1);
    let request = Request::MsgSend {
        to: b.id().to_string(),
        text: "the report".into(),
        attach: vec![write(dir.path(), "report.pdf", &file)],
    };
    let Response::MsgSent { status, .. } = a.ok(request).await else { panic!() };
    assert_eq!(status, "delivered");
    let hash = BlobHash::of(&file);
    eventually(DEADLINE, "b to fetch and open the attachment", || async {
        b.node.store().has_blob(&hash).then_some(())
    })
    .await;
    let thread = b.thread(&a).await;
    let entry = &thread.last().unwrap().attachments[0];
    assert_eq!((entry.name.as_str(), entry.mime.as_str()), ("report.pdf", "application/pdf"));
    assert!(entry.local);
    let got = blob_get(&b, &entry.hash, &dir.path().join("got.pdf")).await.unwrap();
    assert_eq!(got, file);

    // A third node gets neither the file nor the sealed blob anyone could fetch.
    let a_peer = a.id().to_peer_id().unwrap();
    let refused = c.node.fetch_blob_from(&hash, vec![a_peer]).await.unwrap_err();
    assert!(refused.contains("no peer has"), "{refused}");
    let sealed = a
        .node
        .blobs()
        .owners(&hash)
        .unwrap()
        .into_iter()
        .find_map(|_| sealed_hash_of(&a, &hash))
        .unwrap();
    assert!(a.node.store().has_blob(&sealed));
    assert!(c.node.fetch_blob_from(&sealed, vec![a_peer]).await.is_err());
    assert!(blob_get(&c, &hash.to_string(), &dir.path().join("c.pdf")).await.is_err());
    // The recipient keeps the file, not the sealed copy.
    assert!(!b.node.store().has_blob(&sealed));
    // Nothing of the file or the message text is anywhere in the third node's home.
    for needle in [&file[150_000..150_064], b"the report".as_slice()] {
        assert_eq!(c.home_file_containing(needle).await, None);
    }
    // The check can fail: the recipient's home holds both.
    assert!(b.home_file_containing(&file[150_000..150_064]).await.is_some());
    assert!(b.home_file_containing(b"the report").await.is_some());
}

/// The hash of the sealed blob of `a`'s message attachment `file`.
fn sealed_hash_of(a: &TestNode, file: &BlobHash) -> Option<BlobHash> {
    use kith_node::store::BlobOwner;
    let owners = a.node.blobs().owners(file).ok()?;
    owners.into_iter().find_map(|o| match o {
        BlobOwner::Local { message, .. } => {
            let record = a.node.store().dm_get(&a.id(), &message).ok()??;
            record
                .sealed_attachments()
                .into_iter()
                .find(|s| s.attachment.hash == *file)
                .map(|s| s.sealed)
        }
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_chunk_is_refused_and_fetched_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) =
        (TestNode::start("a").await, TestNode::start("b").await, TestNode::start("c").await);
    b.dial(&a).await;
    b.follow(&a).await;
    let file = random_bytes(1 << 20, 2);
    let id = post_with(&a, "data", vec![write(dir.path(), "data.bin", &file)]).await.unwrap();
    let hash = attachments_of(&b, &a, &id).await[0].hash.clone();
    blob_get(&b, &hash, &dir.path().join("b.bin")).await.unwrap();
    // B's copy goes bad on disk in its third chunk.
    let blob: BlobHash = hash.parse().unwrap();
    let path = b.node.blobs().path(&blob);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[600_000] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();

    c.dial(&a).await;
    c.dial(&b).await;
    let b_peer = b.id().to_peer_id().unwrap();
    let a_peer = a.id().to_peer_id().unwrap();
    let size = c.node.fetch_blob_from(&blob, vec![b_peer, a_peer]).await.unwrap();
    assert_eq!(size, file.len() as u64);
    assert_eq!(std::fs::read(c.node.blobs().path(&blob)).unwrap(), file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_peers_cost_a_request_not_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (TestNode::start("a").await, TestNode::start("b").await);
    b.dial(&a).await;
    let file = random_bytes(700_000, 3);
    post_with(&a, "x", vec![write(dir.path(), "x.bin", &file)]).await.unwrap();
    let (hash, manifest) = Manifest::build(&file);
    let a_peer = a.id().to_peer_id().unwrap();

    // An endless reply is cut off at the frame limit; a peer with wrong chunks is dropped.
    let endless = HostileBlobPeer::start(Mischief::Endless).await;
    let liar = HostileBlobPeer::start(Mischief::WrongChunks(manifest.to_manifest())).await;
    for hostile in [&endless, &liar] {
        b.dial_addr(&hostile.addr()).await;
    }
    let sources = vec![endless.peer_id(), liar.peer_id(), a_peer];
    let started = std::time::Instant::now();
    let size = b.node.fetch_blob_from(&hash, sources).await.unwrap();
    assert_eq!(size, file.len() as u64);
    assert_eq!(std::fs::read(b.node.blobs().path(&hash)).unwrap(), file);
    assert!(started.elapsed() < DEADLINE);
    // The liar is not asked again soon: alone, it is not even tried.
    let other = random_bytes(10, 4);
    let (other_hash, _) = Manifest::build(&other);
    assert!(b.node.fetch_blob_from(&other_hash, vec![liar.peer_id()]).await.is_err());

    // Asking A for a blob it holds but no public record carries gets nothing.
    let private = a.node.blobs().put_own(b"not for you").unwrap().hash();
    assert!(b.node.fetch_blob_from(&private, vec![a_peer]).await.is_err());
}
