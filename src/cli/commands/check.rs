use super::super::{progress::Progress, GlobalArgs};
use anyhow::{bail, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use stowage::check::{self, CheckOptions, CheckProgress};
use stowage::util::human_bytes;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Read and verify every blob of every pack
    #[arg(long)]
    pub read_data: bool,
}

pub fn run(g: &GlobalArgs, a: CheckArgs) -> Result<u8> {
    let repo = super::open(g)?;
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
        &repo,
        &CheckOptions {
            read_data: a.read_data,
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
            "errors": report.errors,
        }))?;
    } else {
        for e in &report.errors {
            eprintln!("error: {e}");
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
