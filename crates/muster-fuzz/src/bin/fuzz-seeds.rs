//! Writes the seed corpus of every target: `cargo run -p muster-fuzz --bin fuzz-seeds [DIR]`
//! (default `crates/muster-fuzz/corpus`).

fn main() -> std::io::Result<()> {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/corpus").into());
    let n = muster_fuzz::seeds::write(std::path::Path::new(&root))?;
    println!("wrote {n} seeds under {root}");
    Ok(())
}
