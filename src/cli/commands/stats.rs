use super::super::GlobalArgs;
use anyhow::Result;
use std::collections::HashSet;
use stowage_core::backend::FileKind;
use stowage_core::id::{BlobType, Id};
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
    let (mut files, mut restore_size) = (0u64, 0u64);
    let mut trees: HashSet<Id> = HashSet::new();
    let mut blobs: HashSet<(BlobType, Id)> = HashSet::new();
    for (_, s) in &snaps {
        // Restore size counts every file of every snapshot, as a restore would write it.
        let mut stack = vec![s.tree];
        while let Some(t) = stack.pop() {
            let first_visit = trees.insert(t);
            blobs.insert((BlobType::Tree, t));
            for n in repo.read_tree(&t)?.nodes {
                if n.has_content() {
                    files += 1;
                    restore_size += n.size;
                    blobs.extend(n.content.iter().map(|id| (BlobType::Data, *id)));
                }
                if let Some(sub) = n.subtree {
                    if first_visit || !a.snapshots.is_empty() {
                        stack.push(sub);
                    }
                }
            }
        }
    }
    let (mut raw, mut stored) = (0u64, 0u64);
    for (t, id) in &blobs {
        if let Some(loc) = repo.index().get(*t, id) {
            raw += loc.raw_length as u64;
            stored += loc.length as u64;
        }
    }
    let pack_bytes: u64 = repo
        .repo()
        .backend()
        .list(FileKind::Pack)?
        .iter()
        .map(|f| f.size)
        .sum();
    if g.json {
        super::print_json(&serde_json::json!({
            "snapshots": snaps.len(),
            "files": files,
            "restore_size": restore_size,
            "unique_blobs": blobs.len(),
            "raw_data_size": raw,
            "stored_data_size": stored,
            "repository_pack_bytes": pack_bytes,
            "dedup_ratio": if raw > 0 { restore_size as f64 / raw as f64 } else { 0.0 },
            "compression_ratio": if stored > 0 { raw as f64 / stored as f64 } else { 0.0 },
        }))?;
        return Ok(0);
    }
    println!("snapshots:          {}", snaps.len());
    println!("files:              {files}");
    println!("restore size:       {}", human_bytes(restore_size));
    println!("unique blobs:       {}", blobs.len());
    println!(
        "deduplicated size:  {} (ratio {:.2}x)",
        human_bytes(raw),
        if raw > 0 {
            restore_size as f64 / raw as f64
        } else {
            0.0
        }
    );
    println!(
        "stored size:        {} (compression {:.2}x)",
        human_bytes(stored),
        if stored > 0 {
            raw as f64 / stored as f64
        } else {
            0.0
        }
    );
    println!("pack files total:   {}", human_bytes(pack_bytes));
    Ok(0)
}
