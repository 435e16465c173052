use super::super::{progress::Progress, GlobalArgs, EXIT_INCOMPLETE};
use anyhow::{Context, Result};
use std::path::PathBuf;
use stowage_core::backup::source::{Excludes, MetadataPrefetch};
use stowage_core::backup::{self, BackupError, BackupOptions, BackupSource, ParentChoice};
use stowage_core::progress::{Control, ProgressEvent};
use stowage_core::repo::session::BackupWork;
use stowage_core::util::human_bytes;

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up
    #[arg(required_unless_present = "stdin")]
    pub paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record instead of this machine's
    #[arg(long)]
    pub host: Option<String>,
    /// Skip paths matching this glob (repeatable); without '/' it matches names anywhere
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
    /// Read exclude globs from a file, one per line
    #[arg(long = "exclude-file")]
    pub exclude_files: Vec<PathBuf>,
    /// Do not cross file system boundaries
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Back up standard input as a single file
    #[arg(long, conflicts_with = "paths")]
    pub stdin: bool,
    /// File name for --stdin
    #[arg(long, default_value = "stdin", requires = "stdin")]
    pub stdin_filename: String,
    /// Compare with this snapshot instead of the latest of the same host and paths
    #[arg(long)]
    pub parent: Option<String>,
    /// Read every file even if the parent says it is unchanged
    #[arg(long)]
    pub force: bool,
    /// Worker threads (default: number of cores); twice as many threads read files
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Read files through the page cache only. By default files larger than 16 KiB that are
    /// not already cached are read with direct I/O: less CPU, and the page cache (charged to
    /// the node agent's memory cgroup on Kubernetes) is left to the workloads
    #[arg(long)]
    pub no_direct_io: bool,
}

pub fn run(g: &GlobalArgs, a: BackupArgs) -> Result<u8> {
    let mut excludes = a.excludes.clone();
    for f in &a.exclude_files {
        excludes.extend(
            Excludes::read_file(f)
                .with_context(|| format!("reading exclude file {}", f.display()))?,
        );
    }
    Excludes::new(&excludes).map_err(anyhow::Error::msg)?;
    for p in &a.paths {
        std::fs::symlink_metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    }
    // The file system's metadata is read while the password's key is derived and the index
    // loaded; the walk then finds it cached.
    let _prefetch =
        (!a.stdin).then(|| MetadataPrefetch::start(a.paths.clone(), &excludes, a.one_file_system));
    let opened = super::open(g)?;
    let session = super::load_index(g, opened.lock::<BackupWork>()?)?;
    let parent = if let Some(p) = &a.parent {
        ParentChoice::Id(session.repo().find_snapshot(p)?.0)
    } else {
        ParentChoice::Latest
    };
    let opts = BackupOptions {
        tags: a.tags.clone(),
        hostname: a.host.clone(),
        excludes,
        one_file_system: a.one_file_system,
        parent,
        force_read: a.force,
        threads: a.threads,
        no_direct_io: a.no_direct_io,
    };
    let bar = Progress::new(!g.quiet && !g.json);
    let show = |e: &ProgressEvent| {
        // The total is shown once the walk has found everything.
        let total = e.bytes_expected.filter(|_| !e.counting);
        let msg = format!("{} files, {} new", e.files_done, human_bytes(e.bytes_added));
        bar.update(e.bytes_done, total, msg);
    };
    let control = Control::new().with_progress(&show);
    // Standard input is the CLI's to read: the engine takes any stream.
    let mut stdin = std::io::stdin().lock();
    let source = if a.stdin {
        BackupSource::Stream {
            name: a.stdin_filename.clone(),
            reader: &mut stdin,
        }
    } else {
        BackupSource::Paths(a.paths.clone())
    };
    let report = backup::run(&session, source, &opts, &control);
    drop(bar);
    if session.finish() {
        tracing::warn!("the backup lock could not always be refreshed");
    }
    let report = match report {
        Err(e @ BackupError::BadName { .. }) if a.stdin => {
            return Err(anyhow::Error::new(e).context("--stdin-filename"))
        }
        r => r?,
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let s = &report.snapshot.summary;
    if g.json {
        super::print_json(&serde_json::json!({
            "snapshot_id": report.snapshot_id,
            "parent": report.parent,
            "incomplete": report.snapshot.incomplete,
            "warnings": report.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            "summary": s,
        }))?;
    } else {
        if !g.quiet {
            println!(
                "files: {} new, {} changed, {} unchanged; dirs: {} new, {} changed, {} unchanged",
                s.files_new,
                s.files_changed,
                s.files_unchanged,
                s.dirs_new,
                s.dirs_changed,
                s.dirs_unchanged
            );
        }
        println!(
            "snapshot {} saved: {} files, {} total, {} read, {} added ({} stored) in {:.1}s{}",
            report.snapshot_id.short(),
            s.total_files,
            human_bytes(s.total_bytes),
            human_bytes(s.bytes_read),
            human_bytes(s.bytes_added),
            human_bytes(s.bytes_added_stored),
            s.duration_secs,
            if report.snapshot.incomplete {
                format!(
                    " (INCOMPLETE: {} entries could not be read)",
                    report.warnings.len()
                )
            } else {
                String::new()
            }
        );
    }
    Ok(if report.snapshot.incomplete {
        EXIT_INCOMPLETE
    } else {
        0
    })
}
