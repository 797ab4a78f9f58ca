//! Keeps `docs/protocol.md` honest: recomputes its test vector and checks its layout rules
//! against the implementation, reading the values from the document itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kith_protocol::{
    attachment::{Attachment, FileName, ImageInfo, MimeType, Thumbnail},
    blob::{open_blob, seal_blob, BlobHash, BlobKey, KeyRole, Manifest},
    codec,
    identity::{AuthorId, Keypair},
    record::{Post, Record, RecordId, RecordKind, VerifiedRecord, RECORD_DOMAIN},
    tags::Tag,
    topic::Topic,
};
use sha2::{Digest, Sha256};

const DOC: &str = include_str!("../../docs/protocol.md");

/// The text between two marker lines of the document.
fn section(begin: &str, end: &str) -> &'static str {
    let start = DOC.find(begin).unwrap_or_else(|| panic!("{begin} not in docs/protocol.md"));
    let rest = &DOC[start + begin.len()..];
    &rest[..rest.find(end).unwrap_or_else(|| panic!("{end} not in docs/protocol.md"))]
}

/// The values of the vector block: a label line, then indented lines to concatenate.
fn doc_value(label: &str) -> String {
    doc_value_in(("<!-- doc-vectors:begin -->", "<!-- doc-vectors:end -->"), label)
}

type Block = (&'static str, &'static str);

/// The blob vectors of section 15.6.
const BLOB_BLOCK: Block = ("<!-- blob-vectors:begin -->", "<!-- blob-vectors:end -->");

fn doc_hex_in(block: Block, label: &str) -> Vec<u8> {
    hex::decode(doc_value_in(block, label)).unwrap_or_else(|e| panic!("{label}: {e}"))
}

fn doc_value_in(block: Block, label: &str) -> String {
    let block = section(block.0, block.1);
    let mut lines = block.lines().skip_while(|line| *line != label);
    assert_eq!(lines.next(), Some(label), "label {label:?} not in the vector block");
    lines.take_while(|line| line.starts_with("    ")).map(str::trim).collect()
}

fn doc_hex(label: &str) -> Vec<u8> {
    hex::decode(doc_value(label)).unwrap_or_else(|e| panic!("{label}: {e}"))
}

fn doc_key() -> Keypair {
    Keypair::from_secret_bytes(&doc_hex("secret seed").try_into().unwrap())
}

fn doc_record() -> Record {
    Record {
        author: doc_key().id(),
        seq: 1,
        prev: None,
        timestamp: 1_700_000_000_000,
        kind: RecordKind::Post(Post {
            text: "hello #kith".into(),
            reply_to: None,
            mentions: vec![],
            expires_at: None,
            attachments: vec![],
        }),
    }
}

#[test]
fn seed_is_the_documented_one() {
    assert_eq!(doc_hex("secret seed"), [1u8; 32]);
}

#[test]
fn identity_values_match() {
    let id = doc_key().id();
    assert_eq!(doc_hex("public key"), id.as_bytes());
    assert_eq!(doc_hex("peer id bytes"), id.to_peer_id().unwrap().to_bytes());
    assert_eq!(doc_value("author id (text)"), id.to_string());
    assert_eq!(doc_value("author id (text)").parse::<AuthorId>().unwrap(), id);
    let mut expected_peer_bytes = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    expected_peer_bytes.extend_from_slice(id.as_bytes());
    assert_eq!(doc_hex("peer id bytes"), expected_peer_bytes);
}

#[test]
fn record_values_match() {
    let record = doc_record();
    assert_eq!(doc_hex("domain"), RECORD_DOMAIN);
    assert_eq!(RECORD_DOMAIN, b"kith-record/1:");
    let body = codec::encode(&record).unwrap();
    assert_eq!(hex::encode(&body), hex::encode(doc_hex("record bytes (82 bytes)")));
    assert_eq!(body.len(), 82);

    let signed = record.clone().sign(&doc_key()).unwrap();
    assert_eq!(hex::encode(signed.signature()), doc_value("signature"));
    assert_eq!(hex::encode(signed.bytes()), doc_value("signed bytes (146 bytes)"));
    assert_eq!(signed.bytes().len(), 146);
    assert_eq!(signed.id().to_string(), doc_value("record id"));
    let tags: Vec<String> = record.tags().iter().map(ToString::to_string).collect();
    assert_eq!(tags, ["kith"]);
}

#[test]
fn documented_bytes_verify() {
    let bytes = doc_hex("signed bytes (146 bytes)");
    let id: RecordId = doc_value("record id").parse().unwrap();
    let received = VerifiedRecord::from_bytes_with_id(&bytes, &id).unwrap();
    assert_eq!(received.record(), &doc_record());
    assert_eq!(Sha256::digest(&bytes).as_slice(), id.as_bytes());
    let mut message = doc_hex("domain");
    message.extend(doc_hex("record bytes (82 bytes)"));
    let signature: [u8; 64] = doc_hex("signature").try_into().unwrap();
    assert_eq!(doc_record().author.verify(b"", &message, &signature), Ok(()));
}

#[test]
fn annotated_layout_adds_up() {
    let block = section("<!-- doc-layout:begin -->", "<!-- doc-layout:end -->");
    let mut bytes = Vec::new();
    let mut rows = 0;
    for line in block.lines() {
        let mut words = line.split_whitespace();
        let (Some(offset), Some(hex)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(offset) = offset.parse::<usize>() else {
            continue;
        };
        assert_eq!(offset, bytes.len(), "offset of row {line:?}");
        bytes.extend(hex::decode(hex).unwrap());
        rows += 1;
    }
    assert_eq!(rows, 10);
    assert_eq!(bytes, codec::encode(&doc_record()).unwrap());
}

/// An encoder written from the rules of section 1 of the document, independent of bincode.
#[derive(Default)]
struct Spec(Vec<u8>);

impl Spec {
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn u32(self, n: u32) -> Self {
        self.raw(&n.to_le_bytes())
    }
    fn u64(self, n: u64) -> Self {
        self.raw(&n.to_le_bytes())
    }
    fn string(self, s: &str) -> Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    fn none(self) -> Self {
        self.raw(&[0])
    }
    fn some(self) -> Self {
        self.raw(&[1])
    }
}

#[test]
fn every_kind_follows_the_documented_layout() {
    let key = doc_key();
    let other = Keypair::from_secret_bytes(&[2; 32]).id();
    let third = Keypair::from_secret_bytes(&[3; 32]).id();
    let target = RecordId::from_bytes([0xee; 32]);
    let prev = RecordId::from_bytes([0xdd; 32]);
    let header = |variant: u32| {
        Spec::default()
            .raw(key.id().as_bytes())
            .u64(2)
            .some()
            .raw(prev.as_bytes())
            .u64(0x0102_0304_0506_0708)
            .u32(variant)
    };
    let cases = [
        (
            RecordKind::Post(Post {
                text: "héllo".into(),
                reply_to: Some(target),
                mentions: vec![other, third],
                expires_at: Some(42),
                attachments: vec![],
            }),
            header(0)
                .string("héllo")
                .some()
                .raw(target.as_bytes())
                .u64(2)
                .raw(other.as_bytes())
                .raw(third.as_bytes())
                .some()
                .u64(42),
        ),
        (
            RecordKind::Post(Post {
                text: "x".into(),
                reply_to: None,
                mentions: vec![],
                expires_at: None,
                attachments: vec![],
            }),
            header(0).string("x").none().u64(0).none(),
        ),
        (
            RecordKind::Profile { name: "Al".into(), bio: String::new() },
            header(1).string("Al").string(""),
        ),
        (RecordKind::Follow { target: other }, header(2).raw(other.as_bytes())),
        (RecordKind::Unfollow { target: other }, header(3).raw(other.as_bytes())),
        (
            RecordKind::Reaction { target, emoji: "👍".into() },
            header(4).raw(target.as_bytes()).string("👍"),
        ),
        (RecordKind::Repost { target }, header(5).raw(target.as_bytes())),
        (RecordKind::Delete { target }, header(6).raw(target.as_bytes())),
        (
            RecordKind::Post(Post {
                text: String::new(),
                reply_to: None,
                mentions: vec![],
                expires_at: None,
                attachments: vec![doc_attachment()],
            }),
            header(7)
                .string("")
                .none()
                .u64(0)
                .none()
                .u64(1)
                .raw(&doc_hex_in(BLOB_BLOCK, "blob hash"))
                .u64(614_400)
                .string("image/png")
                .string("cat.png")
                .some()
                .u32(640)
                .u32(480)
                .some()
                .raw(BlobHash::of(b"thumb").as_bytes())
                .u32(5)
                .raw(&320u16.to_le_bytes())
                .raw(&240u16.to_le_bytes()),
        ),
    ];
    for (kind, expected) in cases {
        let name = kind.name();
        let record = Record {
            author: key.id(),
            seq: 2,
            prev: Some(prev),
            timestamp: 0x0102_0304_0506_0708,
            kind,
        };
        let body = codec::encode(&record).unwrap();
        assert_eq!(hex::encode(&body), hex::encode(&expected.0), "{name}");
        // SignedRecord = record bytes || signature, the id is SHA-256 of that.
        let signed = record.sign(&key).unwrap();
        let mut whole = expected.0.clone();
        whole.extend_from_slice(signed.signature());
        assert_eq!(signed.bytes(), whole.as_slice(), "{name}");
        assert_eq!(signed.id().as_bytes().as_slice(), Sha256::digest(&whole).as_slice());
    }
}

#[test]
fn documented_examples_hold() {
    // Section 4: id text forms.
    let id = RecordId::from_bytes([0xab; 32]);
    assert_eq!(id.to_string(), "ab".repeat(32));
    assert_eq!(format!(" {} ", "AB".repeat(32)).parse::<RecordId>(), Ok(id));
    // Section 6: hashtag examples.
    let tags = |text: &str| -> Vec<String> {
        kith_protocol::tags::extract_tags(text).iter().map(ToString::to_string).collect()
    };
    assert_eq!(tags("hello #Rust and #rust, #P2P!"), ["rust", "p2p"]);
    assert!(tags("a#b ##x #123").is_empty());
    assert_eq!(tags("#a#b #1st"), ["a", "1st"]);
    // Section 6: marks, numbers and case by the pinned Unicode 18 tables.
    assert_eq!(tags("#cafe\u{301} #café"), ["café"]);
    assert_eq!(tags("#x\u{301}y"), ["x"]);
    assert_eq!(tags("#नमस्ते"), ["नमस"]);
    assert!(tags("#½ #٣٣").is_empty());
    assert_eq!(tags("#ΟΔΟΣ #İ"), ["οδος"]);
    // New in Unicode 18: U+0558 is a letter (lower case U+0567), U+A7DD lower-cases to ɷ.
    assert_eq!(tags("#a\u{558}b #\u{a7dd}"), ["a\u{567}b", "\u{277}"]);
    // Section 9: topic names.
    let author = doc_key().id();
    assert_eq!(Topic::Author(author).to_string(), format!("kith/1/author/{author}"));
    let rust = Tag::parse("rust").unwrap();
    assert_eq!(Topic::Tag(rust.clone()).to_string(), "kith/1/tag/rust");
    assert_eq!(Topic::parse("kith/1/tag/rust"), Some(Topic::Tag(rust)));
    assert_eq!(Topic::parse("kith/1/tag/Rust"), None);
    assert_eq!(Topic::parse("kith/1/tag/#rust"), None);
}

fn doc_blob_bytes() -> Vec<u8> {
    assert_eq!(
        doc_value_in(BLOB_BLOCK, "blob bytes (decimal rule)"),
        "614400 bytes, byte i = i mod 251"
    );
    (0..614_400usize).map(|i| (i % 251) as u8).collect()
}

fn doc_attachment() -> Attachment {
    Attachment {
        hash: BlobHash::of(&doc_blob_bytes()),
        size: 614_400,
        mime: MimeType::new("image/png").unwrap(),
        name: FileName::new("cat.png").unwrap(),
        image: Some(ImageInfo {
            width: 640,
            height: 480,
            thumbnail: Some(Thumbnail {
                hash: BlobHash::of(b"thumb"),
                size: 5,
                width: 320,
                height: 240,
            }),
        }),
    }
}

#[test]
fn blob_vectors_match() {
    let bytes = doc_blob_bytes();
    let (hash, manifest) = Manifest::build(&bytes);
    assert_eq!(hash.as_bytes().as_slice(), doc_hex_in(BLOB_BLOCK, "blob hash"));
    assert_eq!(codec::encode(&manifest.to_manifest()).unwrap(), doc_hex_in(BLOB_BLOCK, "manifest"));
    // The documented manifest verifies and checks every chunk of the documented bytes.
    let received: Manifest = codec::decode::<_, 1024>(&doc_hex_in(BLOB_BLOCK, "manifest")).unwrap();
    let verified = received.verify(&hash).unwrap();
    for (index, chunk) in (0u32..).zip(bytes.chunks(256 * 1024)) {
        verified.check_chunk(index, chunk).unwrap();
    }

    let key = BlobKey::from_bytes(doc_hex_in(BLOB_BLOCK, "blob key").try_into().unwrap());
    let sealed = doc_hex_in(BLOB_BLOCK, "sealed blob of \"hello blob\" (content role)");
    assert_eq!(seal_blob(&key, KeyRole::Content, b"hello blob").unwrap(), sealed);
    assert_eq!(open_blob(&key, KeyRole::Content, &sealed).unwrap(), b"hello blob");
}

#[test]
fn attached_post_vector_matches() {
    let record = Record {
        author: doc_key().id(),
        seq: 1,
        prev: None,
        timestamp: 1_700_000_000_000,
        kind: RecordKind::Post(Post {
            text: "a picture".into(),
            reply_to: None,
            mentions: vec![],
            expires_at: None,
            attachments: vec![doc_attachment()],
        }),
    };
    let body = codec::encode(&record).unwrap();
    assert_eq!(
        hex::encode(&body),
        hex::encode(doc_hex_in(BLOB_BLOCK, "attached post bytes (210 bytes)"))
    );
    assert_eq!(body.len(), 210);
    let signed = record.clone().sign(&doc_key()).unwrap();
    assert_eq!(
        hex::encode(signed.signature()),
        doc_value_in(BLOB_BLOCK, "attached post signature")
    );
    assert_eq!(signed.id().to_string(), doc_value_in(BLOB_BLOCK, "attached post id"));
    let received = VerifiedRecord::from_bytes(signed.bytes()).unwrap();
    assert_eq!(received.record(), &record);
}

/// Section 17.4: the invite link of the document's key.
#[test]
fn invite_vector() {
    use kith_protocol::invite::{Invite, INVITE_DOMAIN};
    const BLOCK: Block = ("<!-- invite-vectors:begin -->", "<!-- invite-vectors:end -->");
    let key = doc_key();
    assert_eq!(doc_value_in(BLOCK, "issuer"), key.id().to_string());
    // /ip4/192.0.2.1/tcp/4001 and /ip4/192.0.2.1/udp/4001/quic-v1, binary multiaddrs.
    let tcp = vec![4, 192, 0, 2, 1, 6, 0x0f, 0xa1];
    let quic = vec![4, 192, 0, 2, 1, 0x91, 0x02, 0x0f, 0xa1, 0xcc, 0x03];
    let invite = Invite::new(key.id(), "Alice", vec![tcp, quic], 1_800_000_000_000);
    let body = codec::encode(&invite).unwrap();
    assert_eq!(body, doc_hex_in(BLOCK, "encoded invite (what is signed after the domain)"));
    let signature = key.sign(INVITE_DOMAIN, &body);
    assert_eq!(signature.to_vec(), doc_hex_in(BLOCK, "signature"));
    let link = doc_value_in(BLOCK, "link");
    assert_eq!(invite.to_link(&key).unwrap(), link);
    assert_eq!(Invite::from_link(&link, 1_700_000_000_000).unwrap(), invite);
}

/// Section 10.1: more records of the document's key, after the post of section 10: a
/// reply with a mention (seq 2), a follow (seq 3) and a delete of the reply (seq 4), each
/// dated one second after the one before.
fn more_records() -> Vec<(&'static str, Record)> {
    let key = doc_key();
    let other = Keypair::from_secret_bytes(&[2; 32]).id();
    let mut prev = doc_record().sign(&key).unwrap().id();
    let post = prev;
    let mut out = Vec::new();
    let mut next = |name, kind| {
        let seq = out.len() as u64 + 2;
        let timestamp = 1_700_000_000_000 + 1_000 * (seq - 1);
        let record = Record { author: key.id(), seq, prev: Some(prev), timestamp, kind };
        prev = record.clone().sign(&key).unwrap().id();
        out.push((name, record));
        prev
    };
    let reply = next(
        "reply",
        RecordKind::Post(Post {
            text: format!("@{other} welcome to #kith"),
            reply_to: Some(post),
            mentions: vec![other],
            expires_at: None,
            attachments: vec![],
        }),
    );
    next("follow", RecordKind::Follow { target: other });
    next("delete", RecordKind::Delete { target: reply });
    out
}

#[test]
fn more_record_vectors_match() {
    const BLOCK: Block = ("<!-- record-vectors:begin -->", "<!-- record-vectors:end -->");
    for (name, record) in more_records() {
        let body = codec::encode(&record).unwrap();
        let signed = record.clone().sign(&doc_key()).unwrap();
        let label = format!("{name} record bytes ({} bytes)", body.len());
        assert_eq!(hex::encode(&body), hex::encode(doc_hex_in(BLOCK, &label)), "{name}");
        assert_eq!(
            hex::encode(signed.signature()),
            doc_value_in(BLOCK, &format!("{name} signature"))
        );
        assert_eq!(signed.id().to_string(), doc_value_in(BLOCK, &format!("{name} id")));
        // The documented bytes are a valid record as they stand.
        let mut whole = doc_hex_in(BLOCK, &label);
        whole.extend(doc_hex_in(BLOCK, &format!("{name} signature")));
        let received = VerifiedRecord::from_bytes(&whole).unwrap();
        assert_eq!(received.record(), &record, "{name}");
        received.record().check_mentions().unwrap();
    }
}
