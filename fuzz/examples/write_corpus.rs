//! Writes the seeds into `corpus/<target>/` (run from `fuzz/`: `cargo run --example
//! write_corpus`), so that `cargo fuzz run <target>` starts from valid encodings.

use std::{fs, io, path::Path};

fn write(target: &str, inputs: &[Vec<u8>]) -> io::Result<()> {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir)?;
    for (i, bytes) in inputs.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i}")), bytes)?;
    }
    println!("{}: {} seeds", dir.display(), inputs.len());
    Ok(())
}

fn main() -> io::Result<()> {
    let s = kith_fuzz::seeds();
    write("record", &s.records)?;
    let dm: Vec<Vec<u8>> = [&s.dm_requests[..], &s.sealed_bytes[..], &s.dm_replies[..]].concat();
    write("sealed", &dm)?;
    write("envelope", &s.dm2)?;
    write("sync_request", &s.sync_requests)?;
    write("sync_response", &s.sync_responses)?;
    write("control_request", &s.control_requests)?;
    write("terminal_text", &kith_fuzz::text_seeds())?;
    Ok(())
}
