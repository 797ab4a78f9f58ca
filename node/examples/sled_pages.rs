//! What each tree's pages hold in a kith store's sled file (measuring only; vendored sled,
//! `KITH-PATCHES.md` change 44): `cargo run --release -p kith-node --features
//! sled-write-stats --example sled_pages -- <home>/store`. Opens the store's sled file
//! without its flusher (so nothing is cleaned or written while it walks); run it on a
//! copy of a home that no daemon uses.

fn main() {
    let path = std::env::args().nth(1).expect("usage: sled_pages <home>/store");
    let segment_size = std::fs::read_to_string(std::path::Path::new(&path).join("conf"))
        .ok()
        .and_then(|conf| {
            conf.lines()
                .find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse::<usize>().ok())
        })
        .unwrap_or(4 << 20);
    let db = sled::Config::new()
        .path(&path)
        .segment_size(segment_size)
        .cache_capacity(64 << 20)
        .flush_every_ms(None)
        .open()
        .expect("the store's sled file opens");
    for name in db.tree_names() {
        let tree = db.open_tree(&name).expect("the tree opens");
        let stats = tree.kith_page_stats().expect("the tree's pages read");
        println!("{}\t{}", String::from_utf8_lossy(&name), stats);
    }
}
