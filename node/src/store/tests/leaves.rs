//! The vendored sled's leaf sizes (node/vendor/sled/KITH-PATCHES.md): a leaf splits at
//! more entries than sled 0.34.7's 16 and merges, as before, below 4. Many thousands of
//! keys split leaves again and again, deleting most of them merges leaves, and the tree
//! must read back exactly after each step and after reopening.

use std::path::Path;

use super::super::SEGMENT_BYTES;

const KEYS: u64 = 20_000;

fn open(path: &Path) -> sled::Db {
    sled::Config::new().path(path).segment_size(SEGMENT_BYTES).open().unwrap()
}

fn value(k: u64) -> Vec<u8> {
    // Values of a few hundred bytes, like the records tree's, varying in length.
    let len = 100 + (k % 300) as usize;
    (0..len).map(|i| (k as usize + i) as u8).collect()
}

/// Every entry of `tree` in order, checked against `expected` keys and their values.
fn assert_holds(tree: &sled::Tree, expected: &[u64]) {
    let got: Vec<(u64, Vec<u8>)> = tree
        .iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (u64::from_be_bytes(k.as_ref().try_into().unwrap()), v.to_vec())
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    for ((k, v), want) in got.iter().zip(expected) {
        assert_eq!(k, want);
        assert_eq!(v, &value(*want), "value of key {k}");
    }
    // Point reads and a range from the middle find the same entries.
    for &k in expected.iter().step_by(97) {
        assert_eq!(tree.get(k.to_be_bytes()).unwrap().unwrap().to_vec(), value(k));
    }
    if let Some(&mid) = expected.get(expected.len() / 2) {
        let from: Vec<u64> = tree
            .range(mid.to_be_bytes()..)
            .keys()
            .map(|k| u64::from_be_bytes(k.unwrap().as_ref().try_into().unwrap()))
            .collect();
        assert_eq!(from, expected[expected.len() / 2..]);
    }
}

#[test]
fn leaves_split_and_merge_and_read_back_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    // Keys inserted out of order (a stride coprime to KEYS), so splits happen everywhere.
    let all: Vec<u64> = (0..KEYS).collect();
    {
        let db = open(dir.path());
        let tree = db.open_tree("t").unwrap();
        for i in 0..KEYS {
            let k = (i * 7_919) % KEYS;
            tree.insert(k.to_be_bytes(), value(k)).unwrap();
        }
        assert_holds(&tree, &all);
        db.flush().unwrap();
    }
    let kept: Vec<u64> = (0..KEYS).filter(|k| k % 50 == 0).collect();
    {
        let db = open(dir.path());
        let tree = db.open_tree("t").unwrap();
        assert_holds(&tree, &all);
        for k in (0..KEYS).filter(|k| k % 50 != 0) {
            assert!(tree.remove(k.to_be_bytes()).unwrap().is_some());
        }
        assert_holds(&tree, &kept);
        db.flush().unwrap();
    }
    let db = open(dir.path());
    let tree = db.open_tree("t").unwrap();
    assert_holds(&tree, &kept);
    // The thinned tree takes new keys between the kept ones.
    for k in (0..KEYS).filter(|k| k % 50 == 25) {
        tree.insert(k.to_be_bytes(), value(k)).unwrap();
    }
    let grown: Vec<u64> = (0..KEYS).filter(|k| k % 25 == 0).collect();
    assert_holds(&tree, &grown);
}
