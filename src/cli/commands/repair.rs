use super::super::GlobalArgs;
use anyhow::Result;
use stowage_core::maintenance::repair;
use stowage_core::repo::lock;
use stowage_core::repo::session::{BackupWork, Locked, PruneWork};

#[derive(clap::Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers
    Index,
    /// Rewrite snapshots without the files and directories whose data is missing
    Snapshots {
        /// Only report what would be dropped
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {}

pub fn run(g: &GlobalArgs, cmd: RepairCommand) -> Result<u8> {
    let repo = super::open(g)?;
    match cmd {
        RepairCommand::Index => {
            let r = repair::repair_index(&repo.lock::<PruneWork>()?)?;
            if g.json {
                super::print_json(&r)?;
            } else {
                for p in &r.unreadable_packs {
                    eprintln!("warning: unreadable pack {p}");
                }
                println!(
                    "rebuilt the index from {} packs ({} blobs): wrote {} index files, removed {}",
                    r.packs, r.blobs, r.index_files_written, r.index_files_removed
                );
            }
        }
        RepairCommand::Snapshots { dry_run } => {
            // A dry run writes nothing, not even a lock.
            let r = if dry_run {
                repair::plan_snapshot_repair(&super::load_index(g, Locked::without_lock(&repo))?)?
            } else {
                repair::repair_snapshots(&super::load_index(g, repo.lock::<BackupWork>()?)?)?
            };
            if g.json {
                super::print_json(&r)?;
            } else {
                for d in &r.dropped {
                    println!("dropped {d}");
                }
                for (old, new) in &r.rewritten {
                    if dry_run {
                        println!("would rewrite snapshot {}", old.short());
                    } else {
                        println!("snapshot {} rewritten as {}", old.short(), new.short());
                    }
                }
                println!(
                    "checked {} snapshots, {} {}",
                    r.snapshots_checked,
                    r.rewritten.len(),
                    if dry_run { "need repair" } else { "repaired" }
                );
            }
        }
    }
    Ok(0)
}

pub fn unlock(g: &GlobalArgs, _a: UnlockArgs) -> Result<u8> {
    let repo = super::open(g)?;
    let n = lock::remove_stale_locks(&repo)?;
    println!("removed {n} stale locks");
    Ok(0)
}
