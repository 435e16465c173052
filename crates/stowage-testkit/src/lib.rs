//! Test helpers shared by Stowage's test suites (never shipped): directory-tree manifests and
//! sample data, a fault-injecting HTTP proxy for the S3 tests, and (in `cluster`) a real
//! Kubernetes control plane.

pub mod fault_proxy;
pub mod tree;
