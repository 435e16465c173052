//! One module per command; shared helpers to open the repository.

pub mod backup;
pub mod cat;
pub mod check;
pub mod diff;
pub mod forget;
pub mod init;
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
use stowage_core::repo::cache::{self, IndexCache};
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

/// Opens the repository and loads its index.
pub fn open_indexed(g: &GlobalArgs) -> Result<Arc<IndexedRepo>> {
    let repo = open(g)?;
    load_index(g, &repo)
}

/// The local cache of a repository, unless --no-cache or no cache folder is known.
pub fn cache(g: &GlobalArgs, repo: &Repository) -> Result<Option<IndexCache>> {
    if g.no_cache {
        return Ok(None);
    }
    let Some(dir) = g.cache_dir.clone().or_else(cache::default_cache_dir) else {
        return Ok(None);
    };
    Ok(Some(IndexCache::open(&dir, &repo.config().repository_id)?))
}

struct CacheBar(std::sync::Arc<(AtomicU64, AtomicU64)>);

impl cache::CacheProgress for CacheBar {
    fn index_files(&self, done: usize, total: usize) {
        self.0 .0.store(done as u64, Ordering::Relaxed);
        self.0 .1.store(total as u64, Ordering::Relaxed);
    }
}

/// Loads the index: through the local cache (reading only new index files), or into memory
/// with --no-cache.
pub fn load_index(g: &GlobalArgs, repo: &Arc<Repository>) -> Result<Arc<IndexedRepo>> {
    let Some(mut cache) = cache(g, repo)? else {
        return Ok(Arc::new(repo.load_index()?));
    };
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
    cache.sync(repo, &CacheBar(counts))?;
    drop(bar);
    Ok(Arc::new(IndexedRepo::with_index(
        repo.clone(),
        Box::new(cache),
    )))
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
