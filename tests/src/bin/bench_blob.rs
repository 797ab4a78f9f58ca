//! Blob benchmark: transfer throughput between two in-process nodes on 127.0.0.1, and the
//! time to prepare a photo for sharing (metadata removed, thumbnail made).
//!
//! Throughput: node A posts `--files` random files of `--mib` MiB each (at most the node's
//! 25 MiB blob limit); B fetches each from A (`fetch_blob_from`: manifest, then every
//! chunk checked against it and written to disk), one file after another; prints MiB/s
//! over all of them. Pictures: a `--width` x `--height` JPEG photo with EXIF (GPS) made
//! here goes through `media::prepare` `--pictures` times; prints the median. Run with
//! `scripts/bench-blob [--files N] [--mib M] [--pictures P] [--json]`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kith_node::{
    api::{Request, Response},
    media,
};
use kith_protocol::blob::BlobHash;
use kith_tests::{bench::arg, pictures, TestNode};

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

async fn throughput(files: usize, mib: usize) -> (f64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let a = TestNode::start("bench-a").await;
    let b = TestNode::start("bench-b").await;
    b.dial(&a).await;
    let mut hashes = Vec::new();
    for i in 0..files {
        let bytes = random_bytes(mib << 20, i as u64 + 1);
        hashes.push(BlobHash::of(&bytes));
        let path = dir.path().join(format!("f{i}.bin"));
        std::fs::write(&path, &bytes).unwrap();
        let post = Request::Post {
            text: format!("file {i}"),
            reply_to: None,
            expires_in_ms: None,
            attach: vec![path.display().to_string()],
        };
        assert!(matches!(a.ok(post).await, Response::Record { .. }));
    }
    let source = vec![a.id().to_peer_id().unwrap()];
    let started = Instant::now();
    for hash in &hashes {
        b.node.fetch_blob_from(hash, source.clone()).await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = (files * mib) as f64;
    a.stop().await;
    b.stop().await;
    (total / elapsed.as_secs_f64(), elapsed)
}

fn picture_time(width: u32, height: u32, rounds: usize) -> (Duration, usize, usize) {
    let photo = pictures::jpeg_with_gps_sized(width, height);
    let mut times = Vec::new();
    let mut thumb = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let picture = media::prepare(photo.clone(), media::Format::Jpeg).unwrap();
        times.push(started.elapsed());
        thumb = picture.thumbnail.map_or(0, |t| t.bytes.len());
    }
    times.sort();
    (times[times.len() / 2], photo.len(), thumb)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let files: usize = arg("--files", 8);
    let mib: usize = arg("--mib", 25);
    let pictures: usize = arg("--pictures", 5);
    let width: u32 = arg("--width", 4000);
    let height: u32 = arg("--height", 3000);
    let json = std::env::args().any(|a| a == "--json");
    let (rate, elapsed) = throughput(files, mib).await;
    let (median, photo_bytes, thumb_bytes) = picture_time(width, height, pictures);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "files": files, "mib_each": mib, "seconds": elapsed.as_secs_f64(),
                "mib_per_s": rate, "picture": format!("{width}x{height}"),
                "picture_bytes": photo_bytes, "prepare_ms_median": median.as_secs_f64() * 1000.0,
                "thumbnail_bytes": thumb_bytes,
            })
        );
    } else {
        println!(
            "blob transfer: {files} x {mib} MiB in {:.2} s = {rate:.0} MiB/s (loopback, one source)",
            elapsed.as_secs_f64()
        );
        println!(
            "picture: {width}x{height} JPEG ({} KiB) prepared (EXIF removed, {} B thumbnail) \
             in {:.0} ms (median of {pictures})",
            photo_bytes / 1024,
            thumb_bytes,
            median.as_secs_f64() * 1000.0
        );
    }
}
