use super::super::GlobalArgs;
use anyhow::Result;
use std::sync::Arc;
use stowage_core::maintenance::prune::{self, PruneOptions};
use stowage_core::repo::session::{Locked, PruneWork};
use stowage_core::repo::Repository;
use stowage_core::util::human_bytes;

#[derive(clap::Args, Debug, Clone)]
pub struct PruneArgs {
    /// Repack partly used packs until unused space is at most this % of used space
    #[arg(long, default_value_t = 5.0)]
    pub max_unused: f64,
    /// Read at most this many MiB of packs to repack
    #[arg(long)]
    pub max_repack_size: Option<u64>,
    /// Show the plan without changing anything
    #[arg(long = "plan", alias = "prune-dry-run")]
    pub plan: bool,
}

pub fn run(g: &GlobalArgs, a: PruneArgs) -> Result<u8> {
    let repo = super::open(g)?;
    run_on(g, &repo, &a)
}

pub fn run_on(g: &GlobalArgs, repo: &Arc<Repository>, a: &PruneArgs) -> Result<u8> {
    let opts = PruneOptions {
        max_unused_percent: a.max_unused,
        max_repack_bytes: a.max_repack_size.map(|m| m << 20),
        // Prune's temporary index database goes beside the cache (it can be as large as the
        // cache); with --no-cache, into the system's temporary folder ($TMPDIR).
        work_dir: if g.no_cache {
            None
        } else {
            g.cache_dir
                .clone()
                .or_else(stowage_core::repo::cache::default_cache_dir)
        },
    };
    // --plan shows what would happen and writes nothing, not even a lock.
    let r = if a.plan {
        prune::plan(&Locked::without_lock(repo), &opts)?
            .totals()
            .clone()
    } else {
        prune::run(&repo.lock::<PruneWork>()?, &opts)?
    };
    if g.json {
        super::print_json(&r)?;
        return Ok(0);
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    println!(
        "{} snapshots, {} packs ({}): {} used, {} unused",
        r.snapshots,
        r.packs,
        human_bytes(r.pack_bytes),
        human_bytes(r.used_bytes),
        human_bytes(r.unused_bytes)
    );
    println!(
        "{}: condemn {} packs ({}), of which {} are repacked ({} read, {} blobs copied)",
        if r.dry_run { "plan" } else { "done" },
        r.condemned_packs,
        human_bytes(r.condemned_bytes),
        r.repacked_packs,
        human_bytes(r.repacked_bytes),
        r.blobs_copied
    );
    if !r.dry_run {
        println!(
            "deleted {} packs ({}); {} condemned packs wait for running backups; {} rescued",
            r.deleted_packs,
            human_bytes(r.deleted_bytes),
            r.waiting_packs,
            r.rescued_packs
        );
    }
    Ok(0)
}
