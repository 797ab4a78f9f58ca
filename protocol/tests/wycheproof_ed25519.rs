//! Project Wycheproof's Ed25519 verification vectors, run through kith's own
//! [`AuthorId::verify`] with an empty domain, so the signed message is exactly the test's `msg`.
//!
//! A "valid" case must verify; an "invalid" case must be refused. A public key that
//! [`AuthorId::from_bytes`] refuses, or a signature that is not 64 bytes, counts as a refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use kith_protocol::identity::{AuthorId, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use serde_json::Value;

const VECTORS: &str = include_str!("vectors/ed25519_test.json");

/// Number of test cases in the file (its `numberOfTests`).
const EXPECTED_CASES: usize = 151;

/// What kith does with one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    /// Refused, with the reason.
    Refused(&'static str),
}

fn run_case(public_key: &[u8], msg: &[u8], sig: &[u8]) -> Outcome {
    let Ok(key) = <[u8; PUBLIC_KEY_LEN]>::try_from(public_key) else {
        return Outcome::Refused("public key not 32 bytes");
    };
    let Ok(author) = AuthorId::from_bytes(key) else {
        return Outcome::Refused("AuthorId::from_bytes refused the key");
    };
    let Ok(sig) = <[u8; SIGNATURE_LEN]>::try_from(sig) else {
        return Outcome::Refused("signature not 64 bytes");
    };
    match author.verify(b"", msg, &sig) {
        Ok(()) => Outcome::Accepted,
        Err(_) => Outcome::Refused("AuthorId::verify refused"),
    }
}

fn hex_field(value: &Value, field: &str) -> Vec<u8> {
    hex::decode(value[field].as_str().unwrap()).unwrap()
}

#[test]
fn wycheproof_ed25519() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    assert_eq!(doc["algorithm"], "EDDSA");
    assert_eq!(doc["numberOfTests"].as_u64(), Some(EXPECTED_CASES as u64));

    let mut total = 0usize;
    // (expected result, "accepted" or the reason for refusal) -> count, for the summary.
    let mut summary: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut acceptable = Vec::new();

    for group in doc["testGroups"].as_array().unwrap() {
        assert_eq!(group["type"], "EddsaVerify");
        assert_eq!(group["publicKey"]["curve"], "edwards25519");
        let public_key = hex_field(&group["publicKey"], "pk");
        for case in group["tests"].as_array().unwrap() {
            total += 1;
            let id = case["tcId"].as_u64().unwrap();
            let comment = case["comment"].as_str().unwrap_or("");
            let expected = case["result"].as_str().unwrap();
            let outcome = run_case(&public_key, &hex_field(case, "msg"), &hex_field(case, "sig"));
            let shown = match outcome {
                Outcome::Accepted => "accepted",
                Outcome::Refused(why) => why,
            };
            *summary.entry((expected.to_owned(), shown.to_owned())).or_default() += 1;
            match (expected, outcome) {
                ("valid", Outcome::Accepted) | ("invalid", Outcome::Refused(_)) => {}
                ("acceptable", _) => acceptable.push(format!("tc {id} ({comment}): {outcome:?}")),
                _ => failures.push(format!(
                    "tc {id} ({comment}, flags {}): expected {expected}, got {outcome:?}",
                    case["flags"]
                )),
            }
        }
    }

    eprintln!("wycheproof ed25519: {total} cases; {summary:?}");
    for line in &acceptable {
        eprintln!("acceptable case: {line}");
    }
    assert_eq!(total, EXPECTED_CASES);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    // This file has no "acceptable" cases; docs/protocol.md says so. If a new copy adds
    // some, decide and document how kith treats them before updating this line.
    assert!(acceptable.is_empty(), "acceptable cases to document:\n{}", acceptable.join("\n"));
    let count = |result: &str| -> usize {
        summary.iter().filter(|((r, _), _)| r == result).map(|(_, n)| n).sum()
    };
    assert_eq!((count("valid"), count("invalid")), (88, 63));
}
