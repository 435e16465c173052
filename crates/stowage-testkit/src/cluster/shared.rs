//! The test suite's cluster rule. `scripts/test.sh` starts one cluster for the whole run
//! (`scripts/cluster.sh`) and exports its admin kubeconfig as [`KUBECONFIG_ENV`]; every test
//! that needs a cluster takes it through [`shared_cluster`] and works in namespaces of its own
//! ([`TestCluster::namespace`]), so tests run in parallel on it.
//!
//! Without the variable a test is skipped with a notice on stderr, except in CI (`CI` set and
//! not `false`/`0`), where it fails: there the cluster must run. The same rule holds for tests
//! that start clusters of their own and need the binaries ([`binaries_or_skip`]).

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};

use super::access::ClusterAccess;
use super::binaries;
use super::error::{ClusterError, Result};

/// The environment variable holding the shared cluster's admin kubeconfig.
pub const KUBECONFIG_ENV: &str = "STOWAGE_TEST_KUBECONFIG";

/// Whether this is a CI run, where skipping is not allowed.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn skip(what: &str, why: &str) {
    assert!(!ci(), "{why}: in CI the cluster tests must run ({what})");
    eprintln!("NOTICE: cluster test skipped: {why} ({what})");
}

/// The shared cluster, or `None` when the test is to be skipped (see the module comment).
/// Panics in CI when the cluster is missing, and everywhere when it is configured but unusable.
pub async fn shared_cluster() -> Option<TestCluster> {
    let path = match std::env::var_os(KUBECONFIG_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            skip(
                "run scripts/test.sh, which starts one with scripts/cluster.sh",
                &format!("{KUBECONFIG_ENV} is not set"),
            );
            return None;
        }
    };
    match ClusterAccess::open(&path).await {
        Ok(access) => Some(TestCluster { access }),
        Err(e) => panic!("{KUBECONFIG_ENV}={}: {e}", path.display()),
    }
}

/// The binaries' directory for a test that starts its own cluster, or `None` (skip) when they
/// are neither named by `STOWAGE_TESTENV_BIN` nor buildable (no Go) outside CI.
pub fn binaries_or_skip() -> Option<PathBuf> {
    match binaries::locate(None) {
        Ok(dir) => Some(dir),
        Err(ClusterError::Binaries(why)) => {
            skip("scripts/testenv.sh builds them; it needs Go", &why);
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A test's handle on the shared cluster. Dropped while the test panics, it prints the
/// components' log tails, which is usually where a failure's cause is.
pub struct TestCluster {
    access: ClusterAccess,
}

impl TestCluster {
    /// A handle on another cluster (one a test started itself, for a migration between two),
    /// with the same helpers as the shared one's.
    pub async fn open(kubeconfig: &std::path::Path) -> Result<TestCluster> {
        Ok(TestCluster {
            access: ClusterAccess::open(kubeconfig).await?,
        })
    }

    /// Creates a namespace for this test, `PREFIX-<unique suffix>`, and waits until its
    /// `default` ServiceAccount exists (pods cannot be created before it does).
    pub async fn namespace(&self, prefix: &str) -> Result<String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{prefix}-{:x}{:x}-{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let namespaces: Api<Namespace> = Api::all(self.client());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [(
                        "stowage.test/test-namespace".to_string(),
                        "true".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces.create(&PostParams::default(), &ns).await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client(), &name);
        let start = Instant::now();
        while accounts.get_opt("default").await?.is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                return Err(ClusterError::Timeout {
                    what: format!("the default ServiceAccount of namespace {name}"),
                    timeout: Duration::from_secs(60),
                    last: "absent".into(),
                    log_tails: self.access.log_tails(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(name)
    }
}

impl Deref for TestCluster {
    type Target = ClusterAccess;
    fn deref(&self) -> &ClusterAccess {
        &self.access
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "the test failed; the shared cluster's components' logs ({}) end with:\n{}",
                self.access.dir().join("logs").display(),
                self.access.log_tails(40)
            );
        }
    }
}

/// Polls `check` every 100 ms until it returns `Ok`, and returns that value; panics with the
/// last observation (`Err`) after `timeout`. For tests waiting on controllers.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if start.elapsed() > timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
