//! Project Wycheproof's X25519 vectors, run through kith's own [`x25519_agree`] (the function
//! `Sealed::seal` and `Sealed::open` use for every Diffie-Hellman).
//!
//! A "valid" case must give the expected shared secret. The file has no "invalid" cases.
//! Its "acceptable" cases are of two kinds, and the test pins what kith does with each:
//! - the 31 whose shared secret is all zeros (low-order public keys) must be refused;
//! - the 223 others (public keys on the twist, or non-canonical encodings with `u >= p` or
//!   the top bit set) are accepted, and must then give exactly the expected secret, as
//!   RFC 7748 defines it (top bit masked, `u` reduced mod p).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use kith_protocol::dm::{x25519_agree, DmError};
use serde_json::Value;

const VECTORS: &str = include_str!("vectors/x25519_test.json");

/// Number of test cases in the file (its `numberOfTests`).
const EXPECTED_CASES: usize = 518;

fn hex_field(value: &Value, field: &str) -> Vec<u8> {
    hex::decode(value[field].as_str().unwrap()).unwrap()
}

#[test]
fn wycheproof_x25519() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    assert_eq!(doc["algorithm"], "XDH");
    assert_eq!(doc["numberOfTests"].as_u64(), Some(EXPECTED_CASES as u64));

    let mut total = 0usize;
    // (expected result, what kith did) -> count.
    let mut summary: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let mut failures = Vec::new();

    for group in doc["testGroups"].as_array().unwrap() {
        assert_eq!(group["type"], "XdhComp");
        assert_eq!(group["curve"], "curve25519");
        for case in group["tests"].as_array().unwrap() {
            total += 1;
            let id = case["tcId"].as_u64().unwrap();
            let expected = case["result"].as_str().unwrap();
            let flags: Vec<&str> =
                case["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
            // Every key in the file is 32 bytes; a different length would be a type error.
            let secret: [u8; 32] = hex_field(case, "private").try_into().unwrap();
            let public: [u8; 32] = hex_field(case, "public").try_into().unwrap();
            let shared = hex_field(case, "shared");
            let zero_secret = shared.iter().all(|&b| b == 0);
            let outcome = x25519_agree(&secret, &public);
            let shown = match &outcome {
                Ok(_) => "accepted",
                Err(DmError::BadKey) => "refused: all-zero shared secret",
                Err(_) => "refused: other error",
            };
            *summary.entry((expected.to_owned(), shown)).or_default() += 1;
            let fail = |why: &str| format!("tc {id} ({expected}, {flags:?}): {why}");
            match (expected, outcome) {
                ("valid", Ok(got)) | ("acceptable", Ok(got)) => {
                    if got.as_slice() != shared.as_slice() {
                        failures.push(fail("wrong shared secret"));
                    }
                    if zero_secret {
                        failures.push(fail("all-zero shared secret accepted"));
                    }
                }
                ("acceptable", Err(DmError::BadKey)) if zero_secret => {
                    assert!(flags.contains(&"ZeroSharedSecret"), "tc {id}");
                    assert!(flags.contains(&"LowOrderPublic"), "tc {id}");
                }
                (_, Err(e)) => failures.push(fail(&format!("refused: {e}"))),
                (other, _) => failures.push(fail(&format!("unexpected result {other}"))),
            }
        }
    }

    eprintln!("wycheproof x25519: {total} cases; {summary:?}");
    assert_eq!(total, EXPECTED_CASES);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    let expected_summary: BTreeMap<(String, &str), usize> = [
        (("valid".to_owned(), "accepted"), 264),
        (("acceptable".to_owned(), "accepted"), 223),
        (("acceptable".to_owned(), "refused: all-zero shared secret"), 31),
    ]
    .into_iter()
    .collect();
    assert_eq!(summary, expected_summary);
}
