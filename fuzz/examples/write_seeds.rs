//! Writes the valid seed inputs of every target (made with the library and the fixed fuzzing
//! keys) to `corpus/<target>/seed-<n>`, so the fuzzer starts past the MAC checks:
//! `cargo run --example write_seeds` (from `fuzz/`).

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in stowage_fuzz::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        let seeds = stowage_fuzz::seeds(target);
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s)?;
        }
        println!("{}: {} seeds", dir.display(), seeds.len());
    }
    Ok(())
}
