//! Kubeconfig files, self-contained (certificates and keys inline, base64 as the format wants),
//! so one can be copied elsewhere on the machine and still work. They are written as JSON, which
//! is YAML too: kubectl, client-go and kube-rs all read it.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::error::{ClusterError, Result};
use super::pki;

/// How a kubeconfig's user authenticates.
pub(crate) enum Credentials<'a> {
    /// A client certificate and its key, both PEM.
    ClientCert { cert_pem: &'a str, key_pem: &'a str },
    /// A bearer token (a service account's, from the TokenRequest API).
    Token(&'a str),
}

/// Writes a kubeconfig for `server` (trusting `ca_pem`) with one context, `name`, as the
/// current one. The file is replaced atomically, so a reader never sees half of it.
pub(crate) fn write(
    path: &Path,
    name: &str,
    server: &str,
    ca_pem: &str,
    creds: Credentials<'_>,
) -> Result<()> {
    let user = match creds {
        Credentials::ClientCert { cert_pem, key_pem } => serde_json::json!({
            "client-certificate-data": BASE64.encode(cert_pem),
            "client-key-data": BASE64.encode(key_pem),
        }),
        Credentials::Token(token) => serde_json::json!({ "token": token }),
    };
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": {
            "server": server,
            "certificate-authority-data": BASE64.encode(ca_pem),
        }}],
        "users": [{ "name": name, "user": user }],
        "contexts": [{ "name": name, "context": { "cluster": name, "user": name } }],
        "current-context": name,
    });
    let text = serde_json::to_string_pretty(&config).expect("a JSON value serialises");
    let tmp = path.with_extension("tmp");
    pki::write(&tmp, &(text + "\n"))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| ClusterError::io(format!("renaming {} into place", tmp.display()), e))
}

/// A client for the cluster a kubeconfig file points at (its current context).
pub async fn client(path: &Path) -> Result<kube::Client> {
    let config = config(path).await?;
    Ok(kube::Client::try_from(config)?)
}

/// The client configuration of a kubeconfig file (its current context).
pub async fn config(path: &Path) -> Result<kube::Config> {
    let err = |source| ClusterError::Kubeconfig {
        path: PathBuf::from(path),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(err)?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(err)
}
