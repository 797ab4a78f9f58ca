//! What each tree's pages hold in a kith store's sled file (measuring only; vendored sled,
//! `KITH-PATCHES.md` change 45): `cargo run --release -p kith-node --features
//! sled-write-stats --example sled_pages -- <home>/store`. Opens the store's sled file
//! without its flusher (so nothing is cleaned or written while it walks); run it on a
//! copy of a home that no daemon uses.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: sled_pages <home>/store")?;
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
        .open()?;
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let stats = tree.kith_page_stats()?;
        println!("{}\t{}", String::from_utf8_lossy(&name), stats);
    }
    Ok(())
}
