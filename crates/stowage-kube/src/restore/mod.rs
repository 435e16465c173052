//! Restores: a backup's objects recreated in this cluster.
//!
//! [`source`] reads the backup's snapshot, [`plan`] decides what to do before anything is
//! created, [`apply`] creates (or compares and patches) each object in the planned order and
//! verifies the result with [`compare`].

pub mod apply;
pub mod compare;
pub mod plan;
pub mod source;
