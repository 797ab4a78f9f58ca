#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn sled_db() -> Db {
    Db::from(sled::Config::new().temporary(true).open().unwrap())
}

fn entries(it: Iter) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect::<sled::Result<_>>().unwrap()
}

/// One operation on a tree, applied to both backends and compared.
#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<u8>, Vec<u8>),
    /// One, two or three pairs at once (one is a plain insert on sled).
    InsertAll(Vec<(Vec<u8>, Vec<u8>)>),
    Remove(Vec<u8>),
    Get(Vec<u8>),
    Cas(Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>),
    Range(Vec<u8>, Vec<u8>, bool),
    Prefix(Vec<u8>, bool),
    /// Front and back alternately, meeting in the middle.
    Both(Vec<u8>),
    Ends,
    PopMin,
    Clear,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Few distinct bytes, short keys: prefixes and collisions are common, 0xff included.
    prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 0xfe, 0xff]), 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    let value = prop::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        4 => (key(), value.clone()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => prop::collection::vec((key(), value.clone()), 1..4).prop_map(Op::InsertAll),
        2 => key().prop_map(Op::Remove),
        1 => key().prop_map(Op::Get),
        1 => (key(), prop::option::of(value.clone()), prop::option::of(value))
            .prop_map(|(k, o, n)| Op::Cas(k, o, n)),
        2 => (key(), key(), any::<bool>()).prop_map(|(a, b, r)| Op::Range(a, b, r)),
        2 => (key(), any::<bool>()).prop_map(|(p, r)| Op::Prefix(p, r)),
        1 => key().prop_map(Op::Both),
        1 => Just(Op::Ends),
        1 => Just(Op::PopMin),
        1 => Just(Op::Clear),
    ]
}

/// What an operation returned, comparable across backends.
fn run(tree: &Tree, op: &Op) -> String {
    let ivec = |v: Option<IVec>| v.map(|v| v.to_vec());
    let pair = |p: Option<(IVec, IVec)>| p.map(|(k, v)| (k.to_vec(), v.to_vec()));
    match op {
        Op::Insert(k, v) => format!("{:?}", ivec(tree.insert(k, v.clone()).unwrap())),
        Op::InsertAll(pairs) => {
            let pairs: Vec<(&[u8], &[u8])> =
                pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
            tree.insert_all(&pairs).unwrap();
            String::new()
        }
        Op::Remove(k) => format!("{:?}", ivec(tree.remove(k).unwrap())),
        Op::Get(k) => format!("{:?} {}", ivec(tree.get(k).unwrap()), tree.contains_key(k).unwrap()),
        Op::Cas(k, old, new) => {
            let r = tree.compare_and_swap(k, old.as_ref(), new.clone()).unwrap();
            format!("{:?}", r.map_err(|e| (ivec(e.current), ivec(e.proposed))))
        }
        Op::Range(a, b, rev) if *rev => {
            format!("{:?}", entries_rev(tree.range(a.clone()..b.clone())))
        }
        Op::Range(a, b, _) => format!("{:?}", entries(tree.range(a.clone()..=b.clone()))),
        Op::Prefix(p, true) => format!("{:?}", entries_rev(tree.scan_prefix(p))),
        Op::Prefix(p, false) => format!("{:?}", entries(tree.scan_prefix(p))),
        Op::Both(p) => {
            let mut it = tree.scan_prefix(p);
            let mut out = Vec::new();
            for i in 0.. {
                let next = if i % 2 == 0 { it.next() } else { it.next_back() };
                let Some(item) = next else { break };
                out.push(item.unwrap().0.to_vec());
            }
            format!("{out:?}")
        }
        Op::Ends => format!(
            "{:?} {:?} {} {}",
            pair(tree.first().unwrap()),
            pair(tree.iter().next_back().transpose().unwrap()),
            tree.len(),
            tree.is_empty()
        ),
        Op::PopMin => format!("{:?}", pair(tree.pop_min().unwrap())),
        Op::Clear => format!("{:?}", tree.clear().unwrap()),
    }
}

fn entries_rev(it: Iter) -> Vec<(Vec<u8>, Vec<u8>)> {
    entries_from(it.rev())
}

fn entries_from(it: impl Iterator<Item = sled::Result<(IVec, IVec)>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect::<sled::Result<_>>().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every tree operation the store uses answers the same on sled and in memory.
    #[test]
    fn memory_answers_as_sled_does(ops in prop::collection::vec(op(), 1..60)) {
        let (disk, memory) = (sled_db(), Db::memory());
        let (a, b) = (disk.open_tree("t").unwrap(), memory.open_tree("t").unwrap());
        for op in &ops {
            prop_assert_eq!(run(&a, op), run(&b, op), "after {:?}", op);
        }
        prop_assert_eq!(entries(a.iter()), entries(b.iter()));
    }
}

#[test]
fn a_crash_keeps_only_what_was_flushed() {
    let db = Db::memory();
    let (t, u) = (db.open_tree("t").unwrap(), db.open_tree("u").unwrap());
    t.insert(b"kept", &b"1"[..]).unwrap();
    t.insert(b"changed", &b"old"[..]).unwrap();
    t.insert(b"removed", &b"x"[..]).unwrap();
    db.insert(b"default", &b"d"[..]).unwrap();
    let first_id = db.generate_id().unwrap();
    assert!(db.flush().unwrap() > 0);
    t.insert(b"changed", &b"new"[..]).unwrap();
    t.remove(b"removed").unwrap();
    t.insert(b"lost", &b"y"[..]).unwrap();
    u.insert(b"lost too", &b"z"[..]).unwrap();
    db.remove(b"default").unwrap();
    let live = entries(t.iter());
    assert_eq!(live.len(), 3, "live reads see every write");

    let after = Db::from_image(db.image().unwrap());
    let t = after.open_tree("t").unwrap();
    let kept: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"changed".to_vec(), b"old".to_vec()),
        (b"kept".to_vec(), b"1".to_vec()),
        (b"removed".to_vec(), b"x".to_vec()),
    ];
    assert_eq!(entries(t.iter()), kept);
    assert!(after.open_tree("u").unwrap().is_empty());
    assert_eq!(after.get(b"default").unwrap().map(|v| v.to_vec()), Some(b"d".to_vec()));
    assert!(after.generate_id().unwrap() > first_id, "ids never go back");
    // A restarted store flushes and crashes like the first.
    t.insert(b"again", &b"2"[..]).unwrap();
    after.flush().unwrap();
    let again = Db::from_image(after.image().unwrap());
    assert_eq!(again.open_tree("t").unwrap().len(), 4);
}

#[test]
fn trees_are_listed_and_dropped_like_sleds() {
    for db in [sled_db(), Db::memory()] {
        assert_eq!(db.tree_names(), vec![IVec::from(DEFAULT_TREE)]);
        db.open_tree("a").unwrap().insert(b"k", &b"v"[..]).unwrap();
        assert_eq!(db.tree_names().len(), 2);
        assert!(db.drop_tree("a").unwrap());
        assert!(!db.drop_tree("a").unwrap());
        assert!(db.open_tree("a").unwrap().is_empty());
        assert!(db.drop_tree(DEFAULT_TREE).is_err());
        let (one, two) = (db.generate_id().unwrap(), db.generate_id().unwrap());
        assert!(two > one);
    }
}

#[test]
fn an_iterator_sees_writes_made_while_it_runs() {
    let db = Db::memory();
    let t = db.open_tree("t").unwrap();
    for k in [1u8, 3, 5] {
        t.insert([k], &[k][..]).unwrap();
    }
    let mut it = t.iter();
    assert_eq!(it.next().unwrap().unwrap().0, [1u8]);
    t.insert([2u8], &[2u8][..]).unwrap();
    t.remove([3u8]).unwrap();
    let rest: Vec<Vec<u8>> = it.map(|e| e.unwrap().0.to_vec()).collect();
    assert_eq!(rest, [vec![2u8], vec![5u8]]);
}
