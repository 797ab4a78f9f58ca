//! Keeps the "Direct messages" section of `docs/protocol.md` honest: recomputes its test
//! vector step by step with the crate's own functions, and checks its byte layouts, reading
//! every value from the document itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kith_protocol::{
    codec,
    dm::{
        aead_open, hkdf_sha256, seal_with_ephemeral, x25519_agree, DmRequest, MessageId, Plain,
        Sealed, DM_KDF_SALT, SEALED_HEADER_LEN,
    },
    identity::Keypair,
};
use x25519_dalek::{PublicKey, StaticSecret};

const DOC: &str = include_str!("../../docs/protocol.md");

/// The text between two marker lines of the document.
fn section(begin: &str, end: &str) -> &'static str {
    let start = DOC.find(begin).unwrap_or_else(|| panic!("{begin} not in docs/protocol.md"));
    let rest = &DOC[start + begin.len()..];
    &rest[..rest.find(end).unwrap_or_else(|| panic!("{end} not in docs/protocol.md"))]
}

/// The value of a label in the vector block: indented lines after it, concatenated.
fn doc_value(label: &str) -> String {
    let block = section("<!-- dm-vectors:begin -->", "<!-- dm-vectors:end -->");
    let mut lines = block.lines().skip_while(|line| *line != label);
    assert_eq!(lines.next(), Some(label), "label {label:?} not in the vector block");
    lines.take_while(|line| line.starts_with("    ")).map(str::trim).collect()
}

fn doc_hex(label: &str) -> Vec<u8> {
    hex::decode(doc_value(label)).unwrap_or_else(|e| panic!("{label}: {e}"))
}

fn doc_32(label: &str) -> [u8; 32] {
    doc_hex(label).try_into().unwrap_or_else(|_| panic!("{label} is not 32 bytes"))
}

fn sender() -> Keypair {
    Keypair::from_secret_bytes(&doc_32("sender seed"))
}

fn recipient() -> Keypair {
    Keypair::from_secret_bytes(&doc_32("recipient seed"))
}

fn doc_plain() -> Plain {
    Plain {
        id: MessageId::from_bytes(doc_hex("message id").try_into().unwrap()),
        timestamp: doc_value("timestamp (decimal)").parse().unwrap(),
        text: doc_value("text (UTF-8)"),
        attachments: vec![],
    }
}

#[test]
fn inputs_are_the_documented_ones() {
    assert_eq!(doc_32("sender seed"), [0x01; 32]);
    assert_eq!(doc_32("recipient seed"), [0x02; 32]);
    assert_eq!(doc_32("ephemeral secret"), [0x03; 32]);
    let plain = doc_plain();
    assert_eq!(plain.id.to_string(), "000102030405060708090a0b0c0d0e0f");
    assert_eq!(plain.timestamp, 1_700_000_000_000);
    assert_eq!(plain.text, "hi bob");
}

#[test]
fn keys_match() {
    let (sender, recipient) = (sender(), recipient());
    assert_eq!(doc_hex("sender public key"), sender.id().as_bytes());
    assert_eq!(doc_hex("recipient public key"), recipient.id().as_bytes());
    assert_eq!(doc_hex("sender X25519 secret"), *sender.x25519_secret());
    assert_eq!(doc_32("sender X25519 public key"), sender.id().to_x25519().unwrap());
    assert_eq!(doc_32("recipient X25519 public key"), recipient.id().to_x25519().unwrap());
    // The converted secret and public key are one X25519 key pair.
    for key in [&sender, &recipient] {
        let public = PublicKey::from(&StaticSecret::from(*key.x25519_secret()));
        assert_eq!(public.to_bytes(), key.id().to_x25519().unwrap());
    }
    let ephemeral = PublicKey::from(&StaticSecret::from(doc_32("ephemeral secret")));
    assert_eq!(doc_32("ephemeral public key"), ephemeral.to_bytes());
}

#[test]
fn derivation_steps_match() {
    let (sender, recipient) = (sender(), recipient());
    let (e, big_e) = (doc_32("ephemeral secret"), doc_32("ephemeral public key"));
    let recipient_x = recipient.id().to_x25519().unwrap();
    let sender_x = sender.id().to_x25519().unwrap();

    let es = x25519_agree(&e, &recipient_x).unwrap();
    let ss = x25519_agree(&sender.x25519_secret(), &recipient_x).unwrap();
    assert_eq!(doc_32("es"), es);
    assert_eq!(doc_32("ss"), ss);
    // The recipient's side.
    assert_eq!(x25519_agree(&recipient.x25519_secret(), &big_e).unwrap(), es);
    assert_eq!(x25519_agree(&recipient.x25519_secret(), &sender_x).unwrap(), ss);

    let info = [big_e.as_slice(), sender.id().as_bytes(), recipient.id().as_bytes()].concat();
    assert_eq!(doc_hex("HKDF info (96 bytes)"), info);
    assert_eq!(DM_KDF_SALT, b"kith-dm/1");
    let mut key = [0u8; 32];
    hkdf_sha256(DM_KDF_SALT, &[es, ss].concat(), &info, &mut key).unwrap();
    assert_eq!(doc_32("message key"), key);

    let header = doc_hex("header (97 bytes)");
    assert_eq!(header.len(), SEALED_HEADER_LEN);
    let expected_header =
        [&[1u8][..], sender.id().as_bytes(), recipient.id().as_bytes(), &big_e].concat();
    assert_eq!(header, expected_header);

    let sealed = doc_hex("sealed bytes (377 bytes)");
    assert_eq!(sealed.len(), 377);
    assert_eq!(&sealed[..SEALED_HEADER_LEN], header.as_slice());
    assert_eq!(&sealed[SEALED_HEADER_LEN..SEALED_HEADER_LEN + 8], &272u64.to_le_bytes());
    let padded = aead_open(&key, &[0; 12], &header, &sealed[SEALED_HEADER_LEN + 8..]).unwrap();
    assert_eq!(doc_hex("padded plaintext (256 bytes)"), padded);

    // The padded plaintext: u32 LE length, the canonical Plain, zeros.
    let body = codec::encode(&doc_plain()).unwrap();
    assert_eq!(body.len(), 38);
    let mut expected = 38u32.to_le_bytes().to_vec();
    expected.extend_from_slice(&body);
    expected.resize(256, 0);
    assert_eq!(padded, expected);
}

#[test]
fn sealed_bytes_match() {
    let sealed =
        seal_with_ephemeral(&sender(), &recipient().id(), &doc_plain(), doc_32("ephemeral secret"))
            .unwrap();
    let bytes = sealed.to_bytes().unwrap();
    assert_eq!(hex::encode(&bytes), doc_value("sealed bytes (377 bytes)"));
    assert_eq!(sealed.ephemeral, doc_32("ephemeral public key"));
    // The request without a follow record: the sealed bytes and a 00 byte.
    let request = DmRequest { sealed, follow_proof: None }.to_bytes().unwrap();
    assert!(DOC.contains("followed\nby one `00` byte (378 bytes)"));
    assert_eq!(request, [bytes.as_slice(), &[0]].concat());
    assert_eq!(request.len(), 378);
}

#[test]
fn documented_bytes_open() {
    let received = Sealed::from_bytes(&doc_hex("sealed bytes (377 bytes)")).unwrap();
    assert_eq!(received.sender, sender().id());
    assert_eq!(received.recipient, recipient().id());
    assert_eq!(received.open(&recipient()).unwrap(), doc_plain());
}

/// Rows of `offset hex field`; `00*N` stands for N zero bytes. Returns the bytes and the
/// number of rows.
fn layout_bytes(begin: &str, end: &str) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut rows = 0;
    for line in section(begin, end).lines() {
        let mut words = line.split_whitespace();
        let (Some(offset), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(offset) = offset.parse::<usize>() else {
            continue;
        };
        assert_eq!(offset, bytes.len(), "offset of row {line:?}");
        match value.strip_prefix("00*") {
            Some(count) => bytes.resize(bytes.len() + count.parse::<usize>().unwrap(), 0),
            None => bytes.extend(hex::decode(value).unwrap()),
        }
        rows += 1;
    }
    (bytes, rows)
}

#[test]
fn annotated_layouts_add_up() {
    let (sealed, rows) = layout_bytes("<!-- dm-layout:begin -->", "<!-- dm-layout:end -->");
    assert_eq!(rows, 14);
    assert_eq!(sealed, doc_hex("sealed bytes (377 bytes)"));

    let (padded, rows) =
        layout_bytes("<!-- dm-plain-layout:begin -->", "<!-- dm-plain-layout:end -->");
    assert_eq!(rows, 6);
    assert_eq!(padded, doc_hex("padded plaintext (256 bytes)"));
}
