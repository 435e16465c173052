//! Repository maintenance: retention (`forget`), space reclamation (`prune`) and repair.

pub mod forget;
pub mod prune;
pub mod repair;
