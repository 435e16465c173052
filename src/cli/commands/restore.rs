use super::super::{progress::Progress, GlobalArgs};
use anyhow::{bail, Result};
use std::path::PathBuf;
use stowage_core::progress::{Control, ProgressEvent};
use stowage_core::repo::session::{Locked, ReadWork};
use stowage_core::restore::{self, RestoreOptions, RestoreTarget};
use stowage_core::util::human_bytes;

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// SNAPSHOT or SNAPSHOT:SUBPATH (id, id prefix or "latest")
    pub snapshot: String,
    /// Directory to restore into
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Only restore paths matching this glob, and what is below them (repeatable)
    #[arg(long = "include", short = 'i')]
    pub includes: Vec<String>,
    /// Skip paths matching this glob (repeatable)
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
    /// Restore into a target that is not empty, replacing what is in the way
    #[arg(long)]
    pub overwrite: bool,
    /// Re-read every restored file and check it against the snapshot
    #[arg(long)]
    pub verify: bool,
    /// Leave runs of zeros (64 KiB or more) in files as holes: the files become sparse, even
    /// where the originals were not. Without it, such runs are allocated without being written
    /// (same bytes and disk usage as the original, less to write)
    #[arg(long)]
    pub sparse: bool,
    /// Take no lock (for a read-only repository; prune may then delete what is being read)
    #[arg(long)]
    pub no_lock: bool,
    /// Show what would be restored (files, bytes, data to fetch) without writing anything
    #[arg(long)]
    pub plan: bool,
}

pub fn run(g: &GlobalArgs, a: RestoreArgs) -> Result<u8> {
    let (snap_spec, subpath) = match a.snapshot.split_once(':') {
        Some((s, p)) => (s.to_string(), Some(p.to_string())),
        None => (a.snapshot.clone(), None),
    };
    let opened = super::open(g)?;
    // A reader's lock keeps prune from deleting packs (repacked ones) while we read them.
    let locked = if a.no_lock {
        Locked::without_lock(&opened)
    } else {
        opened.lock::<ReadWork>()?
    };
    let session = super::load_index(g, locked)?;
    let (id, snap) = session.repo().find_snapshot(&snap_spec)?;
    let opts = RestoreOptions {
        subpath,
        includes: a.includes.clone(),
        excludes: a.excludes.clone(),
        overwrite: a.overwrite,
        verify: a.verify,
        zeros: if a.sparse {
            restore::Zeros::Hole
        } else {
            restore::Zeros::Allocate
        },
    };
    if a.plan {
        let plan = restore::plan(&session, &snap, &opts)?;
        let t = plan.totals();
        if g.json {
            super::print_json(&serde_json::json!({ "snapshot_id": id, "plan": t }))?;
        } else {
            println!(
                "plan: restore snapshot {} to {}: {} files, {} dirs, {} other, {}; read {} blobs ({}) from {} packs",
                id.short(),
                a.target.display(),
                t.files,
                t.dirs,
                t.other,
                human_bytes(t.bytes),
                t.blobs,
                human_bytes(t.stored_bytes),
                t.packs
            );
        }
        return Ok(0);
    }
    let bar = Progress::new(!g.quiet && !g.json);
    let show = |e: &ProgressEvent| {
        bar.update(
            e.bytes_done,
            e.bytes_expected.filter(|&t| t > 0),
            String::new(),
        )
    };
    let control = Control::new().with_progress(&show);
    let target = RestoreTarget::Directory(a.target.clone());
    let report = restore::run(&session, &snap, target, &opts, &control);
    drop(bar);
    let report = report?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if g.json {
        super::print_json(&serde_json::json!({
            "snapshot_id": id,
            "files": report.files,
            "dirs": report.dirs,
            "other": report.other,
            "bytes": report.bytes,
            "verified_files": report.verified_files,
            "errors": report.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {} other, {}{}",
            id.short(),
            a.target.display(),
            report.files,
            report.dirs,
            report.other,
            human_bytes(report.bytes),
            if a.verify {
                format!(", {} files verified", report.verified_files)
            } else {
                String::new()
            }
        );
    }
    if !report.warnings.is_empty() {
        bail!("restore finished with {} errors", report.warnings.len());
    }
    Ok(0)
}
