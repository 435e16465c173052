//! One module per command; shared helpers to open the repository.

pub mod agent;
pub mod backup;
pub mod cat;
pub mod check;
pub mod controller;
pub mod diff;
pub mod forget;
pub mod init;
pub mod k8s;
pub mod key;
pub mod ls;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod snapshots;
pub mod stats;

use super::{location, password, Cli, Command, GlobalArgs};
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use stowage_core::backend::Backend;
use stowage_core::repo::cache;
use stowage_core::repo::session::{IndexSource, Indexed, Locked, ReadWork, Work};
use stowage_core::repo::{IndexedRepo, Repository};

/// Dispatches a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Cat(a) => cat::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Stats(a) => stats::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Key(a) => key::run(g, a),
        Command::Forget(a) => forget::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Repair(a) => repair::run(g, a),
        Command::Unlock(a) => repair::unlock(g, a),
        // Dispatched by `cli::main` before: it has its own parser and runtime.
        Command::K8s(_) => unreachable!("stowage k8s is run by cli::main"),
        Command::Controller(a) => controller::run(a),
        Command::Agent(a) => agent::run(a),
    }
}

/// The backend named by -r/--repo or STOWAGE_REPOSITORY, with the -o options.
pub fn backend(g: &GlobalArgs) -> Result<Arc<dyn Backend>> {
    open_backend(g, false)
}

/// Like [`backend`]; `create_bucket` lets `init` create a missing bucket.
pub fn open_backend(g: &GlobalArgs, create_bucket: bool) -> Result<Arc<dyn Backend>> {
    let loc = g
        .repo
        .as_deref()
        .context("no repository given: use -r/--repo or set STOWAGE_REPOSITORY")?;
    let opts = location::OpenOptions {
        options: g.options.clone(),
        create_bucket,
    };
    location::open_location(loc, &opts)
}

/// Opens the repository with the password.
pub fn open(g: &GlobalArgs) -> Result<Arc<Repository>> {
    let backend = backend(g)?;
    let pw = password::get(g)?;
    Ok(Arc::new(Repository::open(backend, pw.as_bytes())?))
}

/// Opens the repository for a listing (ls, diff, stats, cat): a read session without a lock,
/// with its index loaded.
pub fn open_indexed(g: &GlobalArgs) -> Result<Arc<IndexedRepo>> {
    let repo = open(g)?;
    let session = load_index(g, Locked::<ReadWork>::without_lock(&repo))?;
    Ok(session.indexed().clone())
}

/// Where the index comes from: the local cache (`--cache-dir` or the default folder), or
/// memory with `--no-cache`.
pub fn index_source(g: &GlobalArgs) -> IndexSource {
    if g.no_cache {
        IndexSource::Memory
    } else {
        IndexSource::cache_or_memory(g.cache_dir.clone())
    }
}

struct CacheBar(std::sync::Arc<(AtomicU64, AtomicU64)>);

impl cache::CacheProgress for CacheBar {
    fn index_files(&self, done: usize, total: usize) {
        self.0 .0.store(done as u64, Ordering::Relaxed);
        self.0 .1.store(total as u64, Ordering::Relaxed);
    }
}

/// Loads the index of a locked session from [`index_source`], with a progress bar for index
/// files read into the cache.
pub fn load_index<W: Work>(g: &GlobalArgs, session: Locked<W>) -> Result<Indexed<W>> {
    let counts = std::sync::Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let bar = {
        let c = counts.clone();
        super::progress::Progress::start(!g.quiet && !g.json, move || {
            let (done, total) = (c.0.load(Ordering::Relaxed), c.1.load(Ordering::Relaxed));
            (
                done,
                (total > 0).then_some(total),
                "index files read into the cache".into(),
            )
        })
    };
    let indexed = session.load_index(&index_source(g), &CacheBar(counts))?;
    drop(bar);
    Ok(indexed)
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
