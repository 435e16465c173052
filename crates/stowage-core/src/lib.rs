//! The Stowage engine: a deduplicating, encrypted backup repository and the operations on it.
//! Synchronous, and free of any front end: the `stowage` command line, the node agent and the
//! controller all reach it through this crate's API.
//!
//! Layers, each depending only on those above it in this list:
//! - [`backend`]: where files are stored (the [`backend::Backend`] trait, a local directory;
//!   the S3 backend is the `stowage-s3` crate);
//! - [`crypto`], [`chunker`], [`pack`]: keys and sealing, content-defined chunking, pack files;
//! - [`repo`]: config, keys, index, blobs, trees and snapshots;
//! - [`backup`], [`restore`], [`check`], [`maintenance`]: the operations, which a caller steers
//!   with a [`progress::Control`] (a [`cancel::CancelToken`], progress events) and which report
//!   trouble on single entries as [`warning::Warning`]s;
//! - front ends, in other crates: the `stowage` binary (`src/main.rs`, `src/cli/`).
//!
//! Every error carries an [`error::ErrorClass`].

pub mod backend;
pub mod backup;
pub mod cancel;
pub mod check;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod id;
pub mod inspect;
pub mod maintenance;
pub mod pack;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod sys;
pub mod util;
pub mod walk;
pub mod warning;
