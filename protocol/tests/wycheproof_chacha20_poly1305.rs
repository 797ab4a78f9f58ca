//! Project Wycheproof's ChaCha20-Poly1305 vectors, run through kith's own [`aead_seal`] and
//! [`aead_open`] (the functions `Sealed::seal` and `Sealed::open` use).
//!
//! A "valid" case must encrypt to exactly the expected ciphertext and tag, and decrypt back
//! to the message. An "invalid" case must be refused: a modified tag by [`aead_open`], and a
//! nonce that is not 12 bytes by the type of the nonce argument (`&[u8; 12]`), so such a
//! nonce cannot reach the cipher at all. The file has no "acceptable" cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use kith_protocol::dm::{aead_open, aead_seal, DmError, AEAD_NONCE_LEN};
use serde_json::Value;

const VECTORS: &str = include_str!("vectors/chacha20_poly1305_test.json");

/// Number of test cases in the file (its `numberOfTests`).
const EXPECTED_CASES: usize = 325;

fn hex_field(value: &Value, field: &str) -> Vec<u8> {
    hex::decode(value[field].as_str().unwrap()).unwrap()
}

#[test]
fn wycheproof_chacha20_poly1305() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    assert_eq!(doc["algorithm"], "CHACHA20-POLY1305");
    assert_eq!(doc["numberOfTests"].as_u64(), Some(EXPECTED_CASES as u64));

    let mut total = 0usize;
    let mut summary: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let mut failures = Vec::new();

    for group in doc["testGroups"].as_array().unwrap() {
        assert_eq!(group["type"], "AeadTest");
        assert_eq!(group["tagSize"], 128);
        for case in group["tests"].as_array().unwrap() {
            total += 1;
            let id = case["tcId"].as_u64().unwrap();
            let expected = case["result"].as_str().unwrap();
            let key: [u8; 32] = hex_field(case, "key").try_into().unwrap();
            let (msg, aad) = (hex_field(case, "msg"), hex_field(case, "aad"));
            let mut ct_tag = hex_field(case, "ct");
            ct_tag.extend(hex_field(case, "tag"));
            let fail = |why: &str| format!("tc {id} ({expected}, {}): {why}", case["flags"]);

            let Ok(nonce) = <[u8; AEAD_NONCE_LEN]>::try_from(hex_field(case, "iv")) else {
                *summary
                    .entry((expected.to_owned(), "refused: nonce not 12 bytes"))
                    .or_default() += 1;
                if expected != "invalid" {
                    failures.push(fail("nonce not 12 bytes"));
                }
                continue;
            };
            let opened = aead_open(&key, &nonce, &aad, &ct_tag);
            let shown = match &opened {
                Ok(_) => "accepted",
                Err(DmError::Decrypt) => "refused: aead_open",
                Err(_) => "refused: other error",
            };
            *summary.entry((expected.to_owned(), shown)).or_default() += 1;
            match (expected, opened) {
                ("valid", Ok(plain)) => {
                    if plain != msg {
                        failures.push(fail("wrong plaintext"));
                    }
                    if aead_seal(&key, &nonce, &aad, &msg).unwrap() != ct_tag {
                        failures.push(fail("aead_seal gave a different ciphertext"));
                    }
                }
                ("invalid", Err(DmError::Decrypt)) => {}
                (_, outcome) => failures.push(fail(&format!("got {outcome:?}"))),
            }
        }
    }

    eprintln!("wycheproof chacha20-poly1305: {total} cases; {summary:?}");
    assert_eq!(total, EXPECTED_CASES);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    let expected_summary: BTreeMap<(String, &str), usize> = [
        (("valid".to_owned(), "accepted"), 256),
        (("invalid".to_owned(), "refused: aead_open"), 60),
        (("invalid".to_owned(), "refused: nonce not 12 bytes"), 9),
    ]
    .into_iter()
    .collect();
    assert_eq!(summary, expected_summary);
}
