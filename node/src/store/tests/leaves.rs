//! The vendored sled's leaf sizes (node/vendor/sled/KITH-PATCHES.md): a leaf splits above
//! 64 entries (sled 0.34.7: 16) or, holding more than 8, above 4 KiB of keys and values,
//! and merges, as before, below 4. Many thousands of keys split leaves again and again,
//! deleting most of them merges leaves, and the tree must read back exactly after each
//! step and after reopening: with small values (leaves split on their count), values of a
//! few hundred bytes (on their bytes), and values that grow in place from a few bytes to
//! more than the budget alone (leaves written under the count rule that a later write
//! makes too big, as in a store written before the byte budget). And a leaf read from the
//! log, whose keys and values share one buffer, reads back the same.

use std::path::Path;

use super::super::SEGMENT_BYTES;

const KEYS: u64 = 20_000;

fn open(path: &Path) -> sled::Db {
    super::open_sled(&sled::Config::new().path(path).segment_size(SEGMENT_BYTES))
}

fn value(k: u64) -> Vec<u8> {
    // Values of a few hundred bytes, like the records tree's, varying in length.
    bytes(k, 100 + (k % 300) as usize)
}

fn bytes(k: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (k as usize + i) as u8).collect()
}

/// Every entry of `tree` in order, checked against `expected` keys and their values.
fn assert_holds(tree: &sled::Tree, expected: &[u64]) {
    assert_holds_with(tree, expected, value);
}

/// As [`assert_holds`], with the values `value` gives.
fn assert_holds_with(tree: &sled::Tree, expected: &[u64], value: impl Fn(u64) -> Vec<u8>) {
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

#[test]
fn leaves_split_on_bytes_as_values_grow_and_read_back_after_reopening() {
    const N: u64 = 6_000;
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<u64> = (0..N).collect();
    // Index-like entries of a few bytes: leaves fill to their entry count.
    let small = |k: u64| bytes(k, 8 + (k % 24) as usize);
    // Then every value grows in place: most to 1-3 KiB, every 16th to 20 KiB (alone more
    // than a leaf's budget, so its leaf stops splitting at 9 entries).
    let big =
        |k: u64| bytes(k, if k.is_multiple_of(16) { 20_000 } else { 1_000 + (k % 2_000) as usize });
    {
        let db = open(dir.path());
        let tree = db.open_tree("t").unwrap();
        for i in 0..N {
            let k = (i * 7_919) % N;
            tree.insert(k.to_be_bytes(), small(k)).unwrap();
        }
        assert_holds_with(&tree, &all, small);
        db.flush().unwrap();
    }
    {
        let db = open(dir.path());
        let tree = db.open_tree("t").unwrap();
        assert_holds_with(&tree, &all, small);
        for i in 0..N {
            let k = (i * 7_919) % N;
            assert_eq!(tree.insert(k.to_be_bytes(), big(k)).unwrap().unwrap().to_vec(), small(k));
        }
        assert_holds_with(&tree, &all, big);
        db.flush().unwrap();
    }
    let kept: Vec<u64> = (0..N).filter(|k| k.is_multiple_of(10)).collect();
    {
        let db = open(dir.path());
        let tree = db.open_tree("t").unwrap();
        assert_holds_with(&tree, &all, big);
        for k in (0..N).filter(|k| !k.is_multiple_of(10)) {
            assert!(tree.remove(k.to_be_bytes()).unwrap().is_some());
        }
        assert_holds_with(&tree, &kept, big);
        // Shrinking values back leaves fewer bytes in the same leaves.
        for &k in &kept {
            tree.insert(k.to_be_bytes(), small(k)).unwrap();
        }
        assert_holds_with(&tree, &kept, small);
        db.flush().unwrap();
    }
    let db = open(dir.path());
    let tree = db.open_tree("t").unwrap();
    assert_holds_with(&tree, &kept, small);
}

/// A leaf read from the log shares one buffer among its keys and values (change 3 of
/// KITH-PATCHES.md): keys and values on both sides of `IVec`'s 22-byte inline size,
/// read back through a cache small enough that leaves are evicted and read again while
/// they are being changed, then after reopening.
#[test]
fn leaves_read_from_the_log_share_one_buffer_and_read_back() {
    const N: u64 = 4_000;
    let key = |k: u64| {
        let mut key = bytes(k, (k % 48) as usize);
        key.extend_from_slice(&k.to_be_bytes());
        key
    };
    let first = |k: u64| bytes(k, (k % 64) as usize);
    let second = |k: u64| bytes(k + 1, 10 + (k % 40) as usize);
    let open_small = |path: &Path| {
        super::open_sled(
            &sled::Config::new().path(path).segment_size(SEGMENT_BYTES).cache_capacity(16 * 1024),
        )
    };
    let holds = |tree: &sled::Tree, value: &dyn Fn(u64) -> Vec<u8>, kept: &dyn Fn(u64) -> bool| {
        let mut want: Vec<(Vec<u8>, Vec<u8>)> =
            (0..N).filter(|&k| kept(k)).map(|k| (key(k), value(k))).collect();
        want.sort();
        let got: Vec<(Vec<u8>, Vec<u8>)> = tree
            .iter()
            .map(|kv| {
                let (k, v) = kv.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect();
        assert_eq!(got, want);
        for k in (0..N).step_by(7) {
            assert_eq!(tree.get(key(k)).unwrap().map(|v| v.to_vec()), kept(k).then(|| value(k)));
        }
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open_small(dir.path());
        let tree = db.open_tree("t").unwrap();
        for i in 0..N {
            let k = (i * 7_919) % N;
            tree.insert(key(k), first(k)).unwrap();
        }
        holds(&tree, &first, &|_| true);
        db.flush().unwrap();
    }
    {
        let db = open_small(dir.path());
        let tree = db.open_tree("t").unwrap();
        holds(&tree, &first, &|_| true);
        for i in 0..N {
            let k = (i * 7_919) % N;
            if k.is_multiple_of(3) {
                assert_eq!(tree.remove(key(k)).unwrap().map(|v| v.to_vec()), Some(first(k)));
            } else {
                assert_eq!(
                    tree.insert(key(k), second(k)).unwrap().map(|v| v.to_vec()),
                    Some(first(k))
                );
            }
        }
        holds(&tree, &second, &|k| !k.is_multiple_of(3));
        db.flush().unwrap();
    }
    let db = open_small(dir.path());
    let tree = db.open_tree("t").unwrap();
    holds(&tree, &second, &|k| !k.is_multiple_of(3));
}

/// `insert_sorted` (KITH-PATCHES.md change 7), as the flush writes the authors' counts:
/// runs of ascending keys new and old, spread over many leaves (and growing a leaf far
/// past its split size in one write), read back the same as single inserts would leave
/// them, before and after reopening, and leaves split afterwards as usual.
#[test]
fn sorted_inserts_write_each_leaf_once_and_read_back_after_reopening() {
    const N: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let small = |k: u64| bytes(k, 8 + (k % 24) as usize);
    let pairs = |keys: &[u64], value: &dyn Fn(u64) -> Vec<u8>| -> Vec<(sled::IVec, sled::IVec)> {
        keys.iter().map(|k| (k.to_be_bytes().as_ref().into(), value(*k).into())).collect()
    };
    // Every third key first, then all of them in runs of 500 (new keys between old
    // ones, old keys given new values), then the even ones again with bigger values.
    let thirds: Vec<u64> = (0..N).filter(|k| k.is_multiple_of(3)).collect();
    let all: Vec<u64> = (0..N).collect();
    let grown =
        |k: u64| if k.is_multiple_of(2) { bytes(k, 40 + (k % 60) as usize) } else { small(k) };
    {
        let db = open(dir.path());
        let tree = db.open_tree("t").unwrap();
        tree.insert_sorted(&pairs(&thirds, &small)).unwrap();
        assert_holds_with(&tree, &thirds, small);
        for run in all.chunks(500) {
            tree.insert_sorted(&pairs(run, &small)).unwrap();
        }
        assert_holds_with(&tree, &all, small);
        let evens: Vec<u64> = all.iter().copied().filter(|k| k.is_multiple_of(2)).collect();
        tree.insert_sorted(&pairs(&evens, &grown)).unwrap();
        assert_holds_with(&tree, &all, grown);
        db.flush().unwrap();
    }
    let db = open(dir.path());
    let tree = db.open_tree("t").unwrap();
    assert_holds_with(&tree, &all, grown);
    // Plain writes go on as before over the leaves it wrote.
    for k in (0..N).filter(|k| k.is_multiple_of(5)) {
        tree.remove(k.to_be_bytes()).unwrap();
    }
    let kept: Vec<u64> = all.iter().copied().filter(|k| !k.is_multiple_of(5)).collect();
    assert_holds_with(&tree, &kept, grown);
}

/// Leaves filled at their end (KITH-PATCHES.md change 8: after a run of appends a leaf
/// splits after the last of them, not in the middle): ascending keys, and keys appended
/// to many ranges in turn (like `log`'s authors), with deletes among them, read back
/// the same before and after reopening, and keep reading back after out-of-order writes.
#[test]
fn leaves_filled_at_their_end_split_there_and_read_back_after_reopening() {
    const AUTHORS: u64 = 40;
    const EACH: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    let small = |k: u64| bytes(k, 8 + (k % 24) as usize);
    // Author a's n-th entry: a * 1_000_000 + n, appended round after round.
    let key = |a: u64, n: u64| a * 1_000_000 + n;
    let mut all: Vec<u64> = Vec::new();
    {
        let db = open(dir.path());
        let tree = db.open_tree("t").unwrap();
        let seq = db.open_tree("seq").unwrap();
        for n in 0..EACH {
            for a in 0..AUTHORS {
                tree.insert(key(a, n).to_be_bytes(), small(key(a, n))).unwrap();
                all.push(key(a, n));
            }
        }
        for k in 0..5_000u64 {
            seq.insert(k.to_be_bytes(), small(k)).unwrap();
        }
        all.sort_unstable();
        assert_holds_with(&tree, &all, small);
        let ascending: Vec<u64> = (0..5_000).collect();
        assert_holds_with(&seq, &ascending, small);
        db.flush().unwrap();
    }
    let db = open(dir.path());
    let tree = db.open_tree("t").unwrap();
    assert_holds_with(&tree, &all, small);
    // Out of order now: every 7th entry removed, then a key between each author's
    // first entries.
    for k in all.iter().step_by(7) {
        tree.remove(k.to_be_bytes()).unwrap();
    }
    let mut kept: Vec<u64> =
        all.iter().enumerate().filter(|(i, _)| !i.is_multiple_of(7)).map(|(_, k)| *k).collect();
    for a in (0..AUTHORS).rev() {
        let k = key(a, 0) + 500_000;
        tree.insert(k.to_be_bytes(), small(k)).unwrap();
        kept.push(k);
    }
    kept.sort_unstable();
    assert_holds_with(&tree, &kept, small);
    drop(tree);
    drop(db);
    let db = open(dir.path());
    assert_holds_with(&db.open_tree("t").unwrap(), &kept, small);
}
