use super::super::{progress::Progress, GlobalArgs};
use anyhow::{bail, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use stowage_core::check::{self, CheckOptions, CheckProgress, Subset};
use stowage_core::repo::session::{Locked, ReadWork};
use stowage_core::util::human_bytes;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Read and verify every blob of every pack
    #[arg(long)]
    pub read_data: bool,
    /// Read and verify a part of the packs: N/M (part N of M) or P% (a random share)
    #[arg(long, value_name = "N/M|P%")]
    pub read_data_subset: Option<String>,
    /// Take no lock (for a read-only repository; prune may then delete what is being read)
    #[arg(long)]
    pub no_lock: bool,
}

pub fn run(g: &GlobalArgs, a: CheckArgs) -> Result<u8> {
    let subset: Option<Subset> = a.read_data_subset.as_deref().map(str::parse).transpose()?;
    let repo = super::open(g)?;
    // A reader's lock keeps prune from deleting packs while they are being verified.
    let session = if a.no_lock {
        Locked::without_lock(&repo)
    } else {
        repo.lock::<ReadWork>()?
    };
    let progress = Arc::new(CheckProgress::default());
    let bar = {
        let p = progress.clone();
        Progress::start(!g.quiet && !g.json, move || {
            (
                p.bytes_read.load(Ordering::Relaxed),
                None,
                format!("{} packs", p.packs_checked.load(Ordering::Relaxed)),
            )
        })
    };
    let report = check::run(
        &session,
        &CheckOptions {
            read_data: a.read_data,
            read_data_subset: subset,
        },
        &progress,
    );
    drop(bar);
    let report = report?;
    if g.json {
        super::print_json(&serde_json::json!({
            "ok": report.is_ok(),
            "snapshots": report.snapshots,
            "trees": report.trees,
            "packs": report.packs,
            "blobs": report.blobs,
            "unreferenced_packs": report.unreferenced_packs,
            "packs_read": report.packs_read,
            "damaged_snapshots": report.damaged_snapshots,
            "errors": report.errors,
        }))?;
    } else {
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        if !report.damaged_snapshots.is_empty() {
            eprintln!(
                "damaged snapshots (use `stowage repair snapshots` to keep what is intact): {}",
                report
                    .damaged_snapshots
                    .iter()
                    .map(|s| stowage_core::util::short_name(s))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if !report.unreferenced_packs.is_empty() {
            println!(
                "{} packs are not referenced by any index (left by interrupted backups; prune removes them)",
                report.unreferenced_packs.len()
            );
        }
        println!(
            "checked {} snapshots, {} trees, {} packs, {} blobs{}: {}",
            report.snapshots,
            report.trees,
            report.packs,
            report.blobs,
            if a.read_data {
                format!(
                    ", read {}",
                    human_bytes(progress.bytes_read.load(Ordering::Relaxed))
                )
            } else {
                String::new()
            },
            if report.is_ok() {
                "no errors".to_string()
            } else {
                format!("{} ERRORS", report.errors.len())
            }
        );
    }
    if !report.is_ok() {
        bail!("the repository has {} errors", report.errors.len());
    }
    Ok(0)
}
