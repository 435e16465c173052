//! Stowage: a deduplicating, encrypted backup engine.
//!
//! Layers, each depending only on those above it in this list:
//! - [`backend`]: where files are stored (local directory; S3 later);
//! - [`crypto`], [`chunker`], [`pack`]: keys and sealing, content-defined chunking, pack files;
//! - [`repo`]: config, keys, index, blobs, trees and snapshots;
//! - [`backup`], [`restore`], [`check`], [`maintenance`]: the operations;
//! - the `stowage` binary (`src/main.rs`, `src/cli/`).

pub mod backend;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod crypto;
pub mod id;
pub mod maintenance;
pub mod pack;
pub mod repo;
pub mod restore;
pub mod util;
