//! Project Wycheproof's HKDF-SHA256 vectors, run through kith's own [`hkdf_sha256`] (the
//! function that derives every direct message key).
//!
//! A "valid" case must give exactly the expected output; an "invalid" case (an output longer
//! than 255 hash lengths) must be refused. The file has no "acceptable" cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use kith_protocol::dm::{hkdf_sha256, DmError, MAX_HKDF_SHA256_BYTES};
use serde_json::Value;

const VECTORS: &str = include_str!("vectors/hkdf_sha256_test.json");

/// Number of test cases in the file (its `numberOfTests`).
const EXPECTED_CASES: usize = 86;

fn hex_field(value: &Value, field: &str) -> Vec<u8> {
    hex::decode(value[field].as_str().unwrap()).unwrap()
}

#[test]
fn wycheproof_hkdf_sha256() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    assert_eq!(doc["algorithm"], "HKDF-SHA-256");
    assert_eq!(doc["numberOfTests"].as_u64(), Some(EXPECTED_CASES as u64));

    let mut total = 0usize;
    let mut summary: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let mut failures = Vec::new();

    for group in doc["testGroups"].as_array().unwrap() {
        assert_eq!(group["type"], "HkdfTest");
        for case in group["tests"].as_array().unwrap() {
            total += 1;
            let id = case["tcId"].as_u64().unwrap();
            let expected = case["result"].as_str().unwrap();
            let size = usize::try_from(case["size"].as_u64().unwrap()).unwrap();
            let mut out = vec![0u8; size];
            let result = hkdf_sha256(
                &hex_field(case, "salt"),
                &hex_field(case, "ikm"),
                &hex_field(case, "info"),
                &mut out,
            );
            let shown = match &result {
                Ok(()) => "accepted",
                Err(DmError::TooLarge { .. }) => "refused: output too long",
                Err(_) => "refused: other error",
            };
            *summary.entry((expected.to_owned(), shown)).or_default() += 1;
            let fail = |why: &str| format!("tc {id} ({expected}, {}): {why}", case["flags"]);
            match (expected, result) {
                ("valid", Ok(())) => {
                    if out != hex_field(case, "okm") {
                        failures.push(fail("wrong output"));
                    }
                }
                ("invalid", Err(DmError::TooLarge { len, max })) => {
                    assert_eq!((len, max), (size, MAX_HKDF_SHA256_BYTES), "tc {id}");
                    assert!(size > 255 * 32, "tc {id}");
                }
                (_, outcome) => failures.push(fail(&format!("got {outcome:?}"))),
            }
        }
    }

    eprintln!("wycheproof hkdf-sha256: {total} cases; {summary:?}");
    assert_eq!(total, EXPECTED_CASES);
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    let expected_summary: BTreeMap<(String, &str), usize> = [
        (("valid".to_owned(), "accepted"), 83),
        (("invalid".to_owned(), "refused: output too long"), 3),
    ]
    .into_iter()
    .collect();
    assert_eq!(summary, expected_summary);
}
