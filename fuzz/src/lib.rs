//! The bodies of kith's fuzz targets, and valid encodings to start from.
//!
//! Each target takes untrusted bytes, decodes them the way the node does, and panics only
//! when a property breaks:
//!
//! - nothing panics, whatever the bytes;
//! - whatever is accepted re-encodes to exactly the bytes given (one encoding per value);
//! - a signed record, a sealed message or a `/kith/dm/2` envelope is accepted only if it
//!   is one of [`seeds`]: the fuzzer holds no key, so anything else that verifies or opens
//!   is a forgery.
//!
//! The cargo-fuzz targets in `fuzz_targets/` call these functions. `node/tests/decoders.rs`
//! includes this file as a module and runs the same bodies under proptest on stable Rust,
//! which is what CI exercises.
//!
//! ```
//! kith_fuzz::record(b"not a record");
//! for bytes in &kith_fuzz::seeds().records {
//!     kith_fuzz::record(bytes);
//! }
//! ```

use std::sync::OnceLock;

use kith_node::api::Request;
use kith_protocol::{
    codec,
    dm::{seal_with_ephemeral, DmReply, DmRequest, MessageId, Plain, Sealed},
    group::{
        membership::{SignedLeave, SignedMembership},
        GroupMessage, SessionShare,
    },
    limits::MAX_DM_TEXT_BYTES,
    mailbox::{MailboxReply, MailboxRequest},
    olm::{
        account::{Device, PeerSessions},
        device::VerifiedDevice,
        envelope::{Dm2Reply, Dm2Request, Envelope},
        pickle::PickleKey,
    },
    record::{RecordId, SignedRecord},
    sync::{Bucket, Query, SyncRequest, SyncResponse, TagCursor, BUCKET_MS},
    Keypair, Post, Record, RecordKind, VerifiedRecord,
};

/// Timestamp of every seed record, ms.
pub const SEED_TIME_MS: u64 = 1_700_000_000_000;

/// The author of the seed records and sender of the seed messages.
pub fn author() -> Keypair {
    Keypair::from_secret_bytes(&[1; 32])
}

/// The recipient of the seed messages: [`sealed`] opens every decoded message with it, so
/// the fuzzer reaches the decryption path.
pub fn recipient() -> Keypair {
    Keypair::from_secret_bytes(&[2; 32])
}

/// Valid encodings of every decoded type, made deterministically.
pub struct Seeds {
    /// Signed records, one of each kind, as one author's log.
    pub records: Vec<Vec<u8>>,
    /// Sealed messages from [`author`] to [`recipient`].
    pub sealed: Vec<Sealed>,
    /// Encoded [`Sealed`] messages.
    pub sealed_bytes: Vec<Vec<u8>>,
    /// Encoded `/kith/dm/1` requests.
    pub dm_requests: Vec<Vec<u8>>,
    /// Encoded `/kith/dm/1` replies.
    pub dm_replies: Vec<Vec<u8>>,
    /// Encoded sync requests.
    pub sync_requests: Vec<Vec<u8>>,
    /// Encoded sync responses.
    pub sync_responses: Vec<Vec<u8>>,
    /// Control requests as JSON.
    pub control_requests: Vec<Vec<u8>>,
    /// `/kith/dm/2` requests, envelopes and replies, encoded.
    pub dm2: Vec<Vec<u8>>,
    /// What opens `/kith/dm/2` envelopes: see [`OlmSeeds`].
    pub olm: OlmSeeds,
}

/// A `/kith/dm/2` conversation from [`author`]'s device to [`recipient`]'s. Olm keys come
/// from the OS random source, so unlike the other seeds these differ from run to run
/// (within one run they are made once).
pub struct OlmSeeds {
    /// The envelopes sealed for the recipient's device: a pre-key message, then a normal
    /// one (after a reply).
    pub envelopes: Vec<Envelope>,
    /// The sender's device certificate.
    pub sender: VerifiedDevice,
    /// The recipient's state before anything arrived and after the first envelope was
    /// opened: (device pickle, sessions pickle), sealed with [`recipient`]'s pickle key.
    pub states: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The seeds, made once.
pub fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds = make_seeds();
        seeds.dm2 = dm2_seeds(&seeds.olm, &seeds.records[2]);
        seeds
    })
}

fn seed_records(me: &Keypair, other: &Keypair) -> Vec<VerifiedRecord> {
    let target = RecordId::from_bytes([5; 32]);
    let kinds = vec![
        RecordKind::Profile { name: "fuzz".into(), bio: "a seed".into() },
        RecordKind::Post(Post {
            text: "hello #kith @someone".into(),
            reply_to: Some(target),
            mentions: vec![other.id()],
            expires_at: Some(SEED_TIME_MS + 60_000),
            attachments: vec![],
        }),
        RecordKind::Follow { target: other.id() },
        RecordKind::Unfollow { target: other.id() },
        RecordKind::Reaction { target, emoji: "🦀".into() },
        RecordKind::Repost { target },
        RecordKind::Delete { target },
    ];
    let mut out: Vec<VerifiedRecord> = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let record = Record {
            author: me.id(),
            seq: i as u64 + 1,
            prev: out.last().map(VerifiedRecord::id),
            timestamp: SEED_TIME_MS + i as u64,
            kind,
        };
        out.push(record.sign(me).expect("seed records are well formed"));
    }
    out
}

fn make_seeds() -> Seeds {
    let (me, you) = (author(), recipient());
    let records = seed_records(&me, &you);
    let follow = records[2].bytes().to_vec();
    let sealed: Vec<Sealed> = ["hi", &"x".repeat(300), ""]
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let plain = Plain {
                id: MessageId::from_bytes([i as u8 + 1; 16]),
                timestamp: SEED_TIME_MS,
                text: (*text).to_owned(),
                attachments: vec![],
            };
            seal_with_ephemeral(&me, &you.id(), &plain, [i as u8 + 10; 32])
                .expect("seed messages seal")
        })
        .collect();
    let sealed_bytes = sealed.iter().map(|s| s.to_bytes().expect("seed encodes")).collect();
    let dm_requests = sealed
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let proof = (i % 2 == 0).then(|| follow.clone());
            DmRequest { sealed: s.clone(), follow_proof: proof }.to_bytes().expect("encodes")
        })
        .collect();
    let id = MessageId::from_bytes([1; 16]);
    let dm_replies = [
        DmReply::Delivered { id },
        DmReply::refused(Some(id), "not a mutual connection"),
        DmReply::refused(None, ""),
    ]
    .iter()
    .map(|r| r.to_bytes().expect("encodes"))
    .collect();
    let mut bucket = Bucket::empty(Bucket::start_of(SEED_TIME_MS));
    bucket.add(&records[1].id());
    let cursor = TagCursor { timestamp: SEED_TIME_MS, id: records[1].id() };
    let record_bytes: Vec<Vec<u8>> = records.iter().map(|r| r.bytes().to_vec()).collect();
    let sync_requests = [
        Query::Author { author: me.id(), after: 3 },
        Query::Tag {
            tag: "kith".into(),
            since: SEED_TIME_MS - BUCKET_MS,
            buckets: vec![bucket, Bucket::empty(bucket.start + BUCKET_MS)],
            after: Some(cursor),
        },
        Query::Offer { records: record_bytes[..2].to_vec() },
    ]
    .into_iter()
    .map(|query| SyncRequest { query }.to_bytes().expect("encodes"))
    .collect();
    let sync_responses = [
        SyncResponse { records: record_bytes.clone(), more: true, next: Some(cursor) },
        SyncResponse { records: vec![], more: false, next: None },
    ]
    .iter()
    .map(|r| r.to_bytes().expect("encodes"))
    .collect();
    let control_requests = control_seed_requests(&me, &records[1].id())
        .iter()
        .map(|r| serde_json::to_vec(r).expect("a request serialises"))
        .collect();
    Seeds {
        records: record_bytes,
        sealed,
        sealed_bytes,
        dm_requests,
        dm_replies,
        sync_requests,
        sync_responses,
        control_requests,
        dm2: Vec::new(),
        olm: olm_seeds(&me, &you),
    }
}

fn olm_seeds(me: &Keypair, you: &Keypair) -> OlmSeeds {
    let key = PickleKey::derive(you).expect("derives");
    let (mut a, mut b) = (Device::new(), Device::new());
    let a_cert = a.certify(me, SEED_TIME_MS).expect("certifies");
    let b_cert = b.certify(you, SEED_TIME_MS).expect("certifies");
    let prekey = b.fallback_prekey(SEED_TIME_MS).expect("fallback");
    // Each side's sessions with the other's device (both directions).
    let (mut with_b, mut with_a) = (PeerSessions::new(b_cert.id()), PeerSessions::new(a_cert.id()));
    let plain = |n: u8, text: &str| Plain {
        id: MessageId::from_bytes([n; 16]),
        timestamp: SEED_TIME_MS,
        text: text.into(),
        attachments: vec![],
    };
    let snapshot = |b: &Device, with_a: &PeerSessions| {
        (b.pickle(&key).expect("pickles"), with_a.pickle(&key).expect("pickles"))
    };
    let mut states = vec![snapshot(&b, &with_a)];
    let first = a.seal(me, &mut with_b, &b_cert, Some(&prekey), &plain(1, "hi")).expect("seals");
    b.open(&mut with_a, &a_cert, &first).expect("opens");
    let reply = b.seal(you, &mut with_a, &a_cert, None, &plain(2, "hello")).expect("seals");
    states.push(snapshot(&b, &with_a));
    a.open(&mut with_b, &b_cert, &reply).expect("opens");
    let long = "x".repeat(300);
    let second = a.seal(me, &mut with_b, &b_cert, None, &plain(3, &long)).expect("seals");
    OlmSeeds { envelopes: vec![first, second], sender: a_cert, states }
}

fn dm2_seeds(olm: &OlmSeeds, follow: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, envelope) in olm.envelopes.iter().enumerate() {
        out.push(envelope.to_bytes().expect("encodes"));
        let proof = (i == 0).then(|| follow.to_vec());
        let request = Dm2Request::Deliver { envelope: envelope.clone(), follow_proof: proof };
        out.push(request.to_bytes().expect("encodes"));
    }
    out.push(Dm2Request::Claim { device: olm.sender.id() }.to_bytes().expect("encodes"));
    for reply in [
        Dm2Reply::Receipt(DmReply::Delivered { id: MessageId::from_bytes([1; 16]) }),
        Dm2Reply::NewSession,
        Dm2Reply::Claimed(None),
    ] {
        out.push(reply.to_bytes().expect("encodes"));
    }
    out
}

fn control_seed_requests(me: &Keypair, post: &RecordId) -> Vec<Request> {
    let (id, post) = (me.id().to_string(), post.to_string());
    vec![
        Request::Id,
        Request::Status,
        Request::Dial { addr: "/ip4/127.0.0.1/tcp/1".into() },
        Request::Post {
            text: "hi #kith".into(),
            reply_to: Some(post.clone()),
            expires_in_ms: Some(5),
            attach: vec!["/tmp/a.png".into()],
        },
        Request::Thread { id: post.clone() },
        Request::React { id: post.clone(), emoji: "🦀".into() },
        Request::Delete { id: post },
        Request::Block { id: id.clone() },
        Request::Notifications { live: false, unread: false, limit: None },
        Request::Feed {
            tag: Some("kith".into()),
            author: Some(id.clone()),
            limit: Some(10),
            live: false,
            before: None,
        },
        Request::ProfileSet { name: Some("n".into()), bio: None },
        Request::MsgSend { to: id.clone(), text: "hello".into(), attach: vec![] },
        Request::BlobGet { hash: "ab".repeat(32), out: Some("/tmp/x".into()) },
        Request::MsgThread { peer: id, limit: Some(3) },
        Request::Sync,
    ]
}

/// `/kith/sync/1` records and gossip: [`VerifiedRecord::from_bytes`], then what the node
/// does with an accepted record.
pub fn record(data: &[u8]) {
    let Ok(rec) = VerifiedRecord::from_bytes(data) else { return };
    assert!(
        seeds().records.iter().any(|s| s == data),
        "accepted a record nobody signed: {data:02x?}"
    );
    assert_eq!(rec.bytes(), data);
    assert_eq!(rec.id(), RecordId::of_bytes(data));
    let signed = SignedRecord { record: rec.record().clone(), signature: *rec.signature() };
    assert_eq!(codec::encode(&signed).ok().as_deref(), Some(data), "not canonical");
    assert!(VerifiedRecord::from_bytes_with_id(data, &rec.id()).is_ok());
    let _ = rec.record().check_time(0);
    let _ = rec.record().check_time(u64::MAX);
    let _ = rec.record().tags();
}

fn check_sealed(sealed: &Sealed) {
    if let Ok(plain) = sealed.open(&recipient()) {
        assert!(seeds().sealed.contains(sealed), "opened a message nobody sealed: {sealed:?}");
        assert!(plain.text.len() <= MAX_DM_TEXT_BYTES);
    }
}

/// `/kith/dm/1`: [`DmRequest::from_bytes`] (with its follow record verified and its message
/// opened by [`recipient`]), [`Sealed::from_bytes`] and [`DmReply::from_bytes`].
pub fn sealed(data: &[u8]) {
    if let Ok(request) = DmRequest::from_bytes(data) {
        assert_eq!(request.to_bytes().ok().as_deref(), Some(data), "not canonical");
        check_sealed(&request.sealed);
        if let Some(proof) = &request.follow_proof {
            record(proof);
        }
    }
    if let Ok(sealed) = Sealed::from_bytes(data) {
        assert_eq!(sealed.to_bytes().ok().as_deref(), Some(data), "not canonical");
        check_sealed(&sealed);
    }
    if let Ok(reply) = DmReply::from_bytes(data) {
        assert_eq!(reply.to_bytes().ok().as_deref(), Some(data), "not canonical");
    }
}

/// Opens `envelope` with each recorded state of the recipient's device: it opens only if
/// it is one of the seeds (the fuzzer holds no key), and then within the limits. Whether
/// it opened with any state.
pub fn check_envelope(envelope: &Envelope) -> bool {
    let olm = &seeds().olm;
    let key = PickleKey::derive(&recipient()).expect("derives");
    let mut opened_any = false;
    for (device, sessions) in &olm.states {
        let mut device = Device::from_pickle(device, &key).expect("seed state restores");
        let mut sessions = PeerSessions::from_pickle(sessions, &key, olm.sender.id())
            .expect("seed state restores");
        if let Ok(opened) = device.open(&mut sessions, &olm.sender, envelope) {
            assert!(
                olm.envelopes.contains(envelope),
                "opened an envelope nobody sealed: {envelope:?}"
            );
            if let kith_protocol::olm::inner::Inner::Message(plain) = &opened.inner {
                assert!(plain.text.len() <= MAX_DM_TEXT_BYTES);
            }
            assert_eq!(opened.sender, author().id());
            opened_any = true;
        }
    }
    opened_any
}

/// `/kith/dm/2`: [`Dm2Request::from_bytes`] (its follow record verified, its envelope
/// opened), [`Envelope::from_bytes`] and [`Dm2Reply::from_bytes`]. What decodes
/// re-encodes to the same bytes.
pub fn envelope(data: &[u8]) {
    if let Ok(request) = Dm2Request::from_bytes(data) {
        assert_eq!(request.to_bytes().ok().as_deref(), Some(data), "not canonical");
        if let Dm2Request::Deliver { envelope, follow_proof } = &request {
            check_envelope(envelope);
            if let Some(proof) = follow_proof {
                record(proof);
            }
        }
    }
    if let Ok(envelope) = Envelope::from_bytes(data) {
        assert_eq!(envelope.to_bytes().ok().as_deref(), Some(data), "not canonical");
        check_envelope(&envelope);
    }
    if let Ok(reply) = Dm2Reply::from_bytes(data) {
        assert_eq!(reply.to_bytes().ok().as_deref(), Some(data), "not canonical");
    }
}

/// `/kith/sync/1` requests: [`SyncRequest::from_bytes`], and offered records verified.
pub fn sync_request(data: &[u8]) {
    let Ok(request) = SyncRequest::from_bytes(data) else { return };
    assert_eq!(request.to_bytes().ok().as_deref(), Some(data), "not canonical");
    if let Query::Offer { records } = &request.query {
        records.iter().for_each(|r| record(r));
    }
}

/// `/kith/sync/1` responses: [`SyncResponse::from_bytes`], and every record verified.
pub fn sync_response(data: &[u8]) {
    let Ok(response) = SyncResponse::from_bytes(data) else { return };
    assert_eq!(response.to_bytes().ok().as_deref(), Some(data), "not canonical");
    response.records.iter().for_each(|r| record(r));
}

/// `/kith/mailbox/1` requests and replies: [`MailboxRequest::from_bytes`] and
/// [`MailboxReply::from_bytes`]; what decodes is canonical.
pub fn mailbox(data: &[u8]) {
    if let Ok(request) = MailboxRequest::from_bytes(data) {
        assert_eq!(request.to_bytes().ok().as_deref(), Some(data), "request not canonical");
    }
    if let Ok(reply) = MailboxReply::from_bytes(data) {
        assert_eq!(reply.to_bytes().ok().as_deref(), Some(data), "reply not canonical");
    }
}

/// Group structures (being introduced): [`GroupMessage::from_bytes`],
/// [`SessionShare::from_bytes`], [`SignedMembership::from_bytes`] and
/// [`SignedLeave::from_bytes`]; what decodes is canonical.
pub fn group(data: &[u8]) {
    if let Ok(message) = GroupMessage::from_bytes(data) {
        assert_eq!(message.to_bytes().ok().as_deref(), Some(data), "group message not canonical");
    }
    if let Ok(share) = SessionShare::from_bytes(data) {
        assert_eq!(share.to_bytes().ok().as_deref(), Some(data), "key share not canonical");
    }
    if let Ok(membership) = SignedMembership::from_bytes(data) {
        let again = membership.signed().to_bytes().ok();
        assert_eq!(again.as_deref(), Some(data), "membership not canonical");
    }
    let _ = SignedLeave::from_bytes(data);
}

/// The control socket: a frame's JSON as the daemon parses it. What parses round-trips.
pub fn control_request(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<Request>(data) else { return };
    let again = serde_json::to_vec(&request).expect("a parsed request serialises");
    let back: Request = serde_json::from_slice(&again).expect("a serialised request parses");
    assert_eq!(back, request);
}

/// Text from the network on its way to a terminal: [`kith_node::text`]'s three cleaners
/// on any UTF-8 (invalid bytes replaced). Nothing a terminal acts on survives (ESC, DEL,
/// C1 and C0 controls, except `\n` and `\t` in bodies), nor a bidi control; cleaning
/// twice changes nothing; a line is its body flattened.
pub fn terminal_text(data: &[u8]) {
    use kith_node::text;
    let input = String::from_utf8_lossy(data);
    let (body, line, name) = (text::body(&input), text::line(&input), text::name(&input));
    for (out, multiline) in [(&body, true), (&line, false), (&name, false)] {
        for c in out.chars() {
            let control =
                matches!(c, '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}');
            let kept = multiline && (c == '\n' || c == '\t');
            assert!(!control || kept, "control {c:?} survives in {out:?}");
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            assert!(!bidi, "bidi control {c:?} survives in {out:?}");
        }
    }
    assert_eq!(text::body(&body), body);
    assert_eq!(text::line(&line), line);
    assert_eq!(text::name(&name), name);
    assert_eq!(text::line(&body), line);
}

/// Hostile strings to start [`terminal_text`] from.
pub fn text_seeds() -> Vec<Vec<u8>> {
    [
        "plain #kith text",
        "\x1b[31mred\x1b[0m \x1b[2J\x1b[1A",
        "\x1b]0;title\x07\x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\",
        "\x1b]52;c;aGk=\x07 \x1bP1$r\x1b\\ \u{9b}31m \u{9d}0;t\u{9c}",
        "over\rwrite\x08\x7f\r\n\u{2028}\t",
        "ali\u{200b}ce \u{202e}fdp.exe \u{2067}x\u{2069}",
        "👩\u{200d}💻 ❤\u{fe0f}\u{200d}🔥 🏴\u{e0067}\u{e007f}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}
