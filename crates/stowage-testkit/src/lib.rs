//! Test tooling for Stowage, never shipped with it. [`cluster`] starts a real Kubernetes control
//! plane (the upstream components, built from source by `scripts/testenv.sh`) on loopback.

pub mod cluster;
