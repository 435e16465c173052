//! The Kubernetes side of Stowage: the `stowage.dev/v1alpha1` custom resources, the collector
//! that reads objects from the API server, the restorer that recreates them, and the
//! controller that turns Backup and Restore objects into repository snapshots and back. The engine is reached through `stowage-core`'s session API only.

pub mod agent;
pub mod api;
pub mod collect;
pub mod controller;
pub mod crds;
pub mod discovery;
pub mod filter;
pub mod layout;
pub mod metrics;
pub mod pace;
pub mod restore;
pub mod restore_modifiers;
pub mod restore_order;
pub mod restore_prepare;
pub mod run;
pub mod runlog;
pub mod store;
pub mod validate;
pub mod volumes;
