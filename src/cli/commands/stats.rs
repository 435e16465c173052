use super::super::GlobalArgs;
use anyhow::Result;
use stowage_core::inspect;
use stowage_core::util::human_bytes;

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Only these snapshots (default: all)
    pub snapshots: Vec<String>,
}

pub fn run(g: &GlobalArgs, a: StatsArgs) -> Result<u8> {
    let repo = super::open_indexed(g)?;
    let snaps = if a.snapshots.is_empty() {
        repo.repo().list_snapshots()?
    } else {
        a.snapshots
            .iter()
            .map(|s| repo.repo().find_snapshot(s))
            .collect::<Result<_, _>>()?
    };
    // Named snapshots count every tree; over all snapshots, a tree already counted is not
    // walked again.
    let s = inspect::stats(&repo, &snaps, !a.snapshots.is_empty())?;
    if g.json {
        super::print_json(&s)?;
        return Ok(0);
    }
    println!("snapshots:          {}", s.snapshots);
    println!("files:              {}", s.files);
    println!("restore size:       {}", human_bytes(s.restore_size));
    println!("unique blobs:       {}", s.unique_blobs);
    println!(
        "deduplicated size:  {} (ratio {:.2}x)",
        human_bytes(s.raw_data_size),
        s.dedup_ratio
    );
    println!(
        "stored size:        {} (compression {:.2}x)",
        human_bytes(s.stored_data_size),
        s.compression_ratio
    );
    println!(
        "pack files total:   {}",
        human_bytes(s.repository_pack_bytes)
    );
    Ok(0)
}
