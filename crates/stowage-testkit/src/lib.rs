//! Test helpers shared by Stowage's test suites, never shipped: directory-tree manifests and
//! sample data ([`tree`]), a fault-injecting HTTP proxy for the S3 tests ([`fault_proxy`]), and
//! a real Kubernetes control plane (the upstream components, built from source by
//! `scripts/testenv.sh`) started on loopback ([`cluster`]), with a stand-in for the kubelet's
//! volume handling that lays bound PersistentVolumes out on its fake nodes ([`kubelet`]).

pub mod cluster;
pub mod fault_proxy;
pub mod kubelet;
pub mod provisioner;
pub mod tree;
