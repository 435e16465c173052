//! Using a running test cluster, whether this process started it ([`super::Cluster`] derefs to
//! a [`ClusterAccess`]) or another one did (`scripts/cluster.sh`, the suite's shared cluster):
//! the admin client and kubeconfig, identities minted on demand, the components' logs.
//!
//! A cluster directory holds `kubeconfig` (admin, group `system:masters`), `pki/` (see
//! [`super::pki`]), `logs/<component>.log` and `kubeconfigs/` (the components' and the minted
//! ones). Minted kubeconfigs get a unique file name each, so concurrent tests never overwrite one
//! another's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

use super::error::{ClusterError, Result};
use super::kubeconfig::{self, Credentials};
use super::pki::PkiFiles;
use super::process::log_tail;

/// How long a minted service-account token is valid: longer than any test run.
const TOKEN_SECONDS: i64 = 24 * 3600;

/// A running cluster as its users see it.
#[derive(Clone)]
pub struct ClusterAccess {
    dir: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    client: kube::Client,
}

impl std::fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("dir", &self.dir)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl ClusterAccess {
    /// Opens the cluster whose admin kubeconfig is `kubeconfig`, which must be the `kubeconfig`
    /// file of a cluster directory (minting identities needs the directory's `pki/`).
    pub async fn open(kubeconfig: &Path) -> Result<Self> {
        let dir = kubeconfig
            .parent()
            .filter(|d| PkiFiles::in_dir(&d.join("pki")).client_ca_key.exists())
            .ok_or_else(|| ClusterError::NotAClusterDir {
                path: kubeconfig.to_path_buf(),
                reason: "no pki/client-ca.key beside the kubeconfig".into(),
            })?
            .to_path_buf();
        let config = kubeconfig::config(kubeconfig).await?;
        let server = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let client = kube::Client::try_from(config)?;
        Ok(ClusterAccess {
            dir,
            kubeconfig: kubeconfig.to_path_buf(),
            server,
            client,
        })
    }

    pub(crate) fn new(
        dir: PathBuf,
        kubeconfig: PathBuf,
        server: String,
        client: kube::Client,
    ) -> Self {
        ClusterAccess {
            dir,
            kubeconfig,
            server,
            client,
        }
    }

    /// A client authenticated as the cluster's admin (group `system:masters`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig, for `kubectl --kubeconfig` or `KUBECONFIG`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's URL, `https://127.0.0.1:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Writes a kubeconfig that authenticates as `user` in `groups` (at most two) with a client
    /// certificate, and returns its path. RBAC decides what it may do: bind roles to the user or
    /// a group first.
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let pki = self.pki();
        let (cert_pem, key_pem) = pki.client_cert(user, groups)?;
        let path = self.minted_path("user", user)?;
        kubeconfig::write(
            &path,
            "stowage-test",
            &self.server,
            &self.serving_ca_pem()?,
            Credentials::ClientCert {
                cert_pem: &cert_pem,
                key_pem: &key_pem,
            },
        )?;
        Ok(path)
    }

    /// Writes a kubeconfig that authenticates as the existing ServiceAccount `namespace/name`,
    /// with a token from the TokenRequest API (as a pod of that account would have), and
    /// returns its path.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(TOKEN_SECONDS),
                ..Default::default()
            }),
            ..Default::default()
        };
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await?;
        let token = issued.status.and_then(|s| s.token).unwrap_or_default();
        let path = self.minted_path("sa", &format!("{namespace}-{name}"))?;
        kubeconfig::write(
            &path,
            "stowage-test",
            &self.server,
            &self.serving_ca_pem()?,
            Credentials::Token(&token),
        )?;
        Ok(path)
    }

    /// The last `lines` lines of every component's log, each under a heading.
    pub fn log_tails(&self, lines: usize) -> String {
        let logs = self.dir.join("logs");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&logs)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        let mut out = String::new();
        for path in names {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            out += &format!(
                "----- {name} (last {lines} lines) -----\n{}\n",
                log_tail(&path, lines)
            );
        }
        if out.is_empty() {
            out = format!("(no component logs in {})\n", logs.display());
        }
        out
    }

    fn pki(&self) -> PkiFiles {
        PkiFiles::in_dir(&self.dir.join("pki"))
    }

    fn serving_ca_pem(&self) -> Result<String> {
        let path = self.pki().serving_ca_cert;
        std::fs::read_to_string(&path)
            .map_err(|e| ClusterError::io(format!("reading {}", path.display()), e))
    }

    /// A fresh path under `kubeconfigs/` for a minted identity.
    fn minted_path(&self, kind: &str, name: &str) -> Result<PathBuf> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = self.dir.join("kubeconfigs");
        std::fs::create_dir_all(&dir)
            .map_err(|e| ClusterError::io(format!("creating {}", dir.display()), e))?;
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Ok(dir.join(format!(
            "{kind}-{safe}-{}-{n}.kubeconfig",
            std::process::id()
        )))
    }
}
