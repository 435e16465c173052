//! From a BackupStorageLocation to an open repository: its Secrets read, its backend built (S3
//! or a directory; behind the read-only decorator when the location is `ReadOnly`), the
//! repository opened with its password, and created on first use when the location may write.

use crate::api::{
    config_keys, read_credentials_file, AccessMode, BackupStorageLocation,
    BackupStorageLocationSpec, Provider,
};
use k8s_openapi::api::core::v1::{Secret, SecretKeySelector};
use kube::{Api, Client};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use stowage_core::backend::local::LocalBackend;
use stowage_core::backend::read_only::ReadOnlyBackend;
use stowage_core::backend::Backend;
use stowage_core::error::{Classified, ErrorClass};
use stowage_core::repo::{InitOptions, RepoError, Repository};
use stowage_s3::{S3Backend, S3Options};

/// Why a location cannot be used. Each names its cause in one line, for the location's status.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// The spec is missing something or says something impossible.
    #[error("{0}")]
    Spec(String),
    /// A Secret the spec names cannot be read.
    #[error("secret {namespace}/{name} key {key:?}: {reason}")]
    Secret {
        /// The location's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The key in it.
        key: String,
        /// Why.
        reason: String,
    },
    /// The store refused or could not be reached (wrong credentials, missing bucket,
    /// unreachable endpoint): the backend's message.
    #[error("storage: {message}")]
    Backend {
        /// The backend's message.
        message: String,
        /// Whether trying again later may help.
        transient: bool,
    },
    /// No key of the repository opens with the password.
    #[error("the repository password is wrong: no key of the repository opens with it")]
    WrongPassword,
    /// A read-only location has no repository, and may not create one.
    #[error("there is no repository at {0}, and a ReadOnly location does not create one")]
    NoRepository(String),
    /// Another repository error.
    #[error("repository: {0}")]
    Repo(#[source] RepoError),
}

impl LocationError {
    /// Whether trying again later may help (the controller retries those with backoff and
    /// says so in the status).
    pub fn transient(&self) -> bool {
        match self {
            LocationError::Backend { transient, .. } => *transient,
            LocationError::Repo(e) => e.class() == ErrorClass::Transient,
            LocationError::Secret { .. } => true,
            _ => false,
        }
    }
}

/// An opened location.
pub struct OpenedLocation {
    /// The repository, keys unlocked.
    pub repo: Arc<Repository>,
    /// Whether the location is `ReadOnly` (the backend refuses writes).
    pub read_only: bool,
    /// Where it is, for messages (`s3:…`, a path).
    pub describe: String,
    /// Whether this opening created the repository.
    pub created: bool,
}

/// Reads one key of a Secret in `namespace`.
pub async fn secret_value(
    client: &Client,
    namespace: &str,
    sel: &SecretKeySelector,
) -> Result<Vec<u8>, LocationError> {
    let err = |reason: String| LocationError::Secret {
        namespace: namespace.to_string(),
        name: sel.name.clone(),
        key: sel.key.clone(),
        reason,
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get(&sel.name).await {
        Ok(s) => s,
        Err(kube::Error::Api(s)) if s.code == 404 => return Err(err("not found".into())),
        Err(e) => return Err(err(crate::collect::describe(&e))),
    };
    secret
        .data
        .and_then(|mut d| d.remove(&sel.key))
        .map(|b| b.0)
        .ok_or_else(|| err("the Secret has no such key".into()))
}

/// Opens (and, for a writable location, creates on first use) the location's repository.
/// `scratch` is a directory the controller owns, for the CA bundle file.
pub async fn open(
    client: &Client,
    bsl: &BackupStorageLocation,
    scratch: &Path,
) -> Result<OpenedLocation, LocationError> {
    let namespace = bsl.metadata.namespace.clone().unwrap_or_default();
    let name = bsl.metadata.name.clone().unwrap_or_default();
    let spec = &bsl.spec;
    let password = match &spec.repository_password {
        Some(sel) => secret_value(client, &namespace, sel).await?,
        None => return Err(LocationError::Spec(
            "spec.repositoryPassword is required: a Secret key holding the repository's password"
                .into(),
        )),
    };
    let password = trim_newline(password);
    let read_only = spec.access_mode == AccessMode::ReadOnly;
    let (backend_spec, describe) = match spec.provider {
        Provider::Filesystem => {
            let path = spec
                .filesystem
                .as_ref()
                .map(|f| f.path.clone())
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| {
                    LocationError::Spec(
                        "provider filesystem needs spec.filesystem.path, an absolute path".into(),
                    )
                })?;
            (BackendSpec::Directory(PathBuf::from(&path)), path)
        }
        Provider::S3 => {
            let s3 = s3_spec(client, &namespace, &name, spec, scratch).await?;
            let describe = s3.0.clone();
            (BackendSpec::S3(s3.0, Box::new(s3.1)), describe)
        }
    };
    let described = describe.clone();
    tokio::task::spawn_blocking(move || {
        open_blocking(backend_spec, &password, read_only, described)
    })
    .await
    .map_err(|e| LocationError::Spec(format!("opening the location panicked: {e}")))?
    .map(|(repo, created)| OpenedLocation {
        repo: Arc::new(repo),
        read_only,
        describe,
        created,
    })
}

enum BackendSpec {
    Directory(PathBuf),
    S3(String, Box<S3Options>),
}

fn open_blocking(
    spec: BackendSpec,
    password: &[u8],
    read_only: bool,
    describe: String,
) -> Result<(Repository, bool), LocationError> {
    let backend: Arc<dyn Backend> = match spec {
        BackendSpec::Directory(path) => {
            if !path.is_dir() {
                return Err(LocationError::Backend {
                    message: format!(
                        "{} is not a directory the controller can see",
                        path.display()
                    ),
                    transient: true,
                });
            }
            wrap(LocalBackend::new(path), read_only)
        }
        BackendSpec::S3(location, opts) => {
            let b = S3Backend::open(&location, *opts).map_err(|e| LocationError::Backend {
                transient: e.class() == ErrorClass::Transient,
                message: e.to_string(),
            })?;
            wrap(b, read_only)
        }
    };
    match Repository::open(backend.clone(), password) {
        Ok(r) => Ok((r, false)),
        Err(RepoError::NotARepository(_)) if read_only => {
            Err(LocationError::NoRepository(describe))
        }
        Err(RepoError::NotARepository(_)) => {
            match Repository::init(backend.clone(), password, &InitOptions::default()) {
                Ok(r) => Ok((r, true)),
                // Another controller replica won the race: open what it made.
                Err(RepoError::AlreadyInitialized(_)) => Repository::open(backend, password)
                    .map(|r| (r, false))
                    .map_err(classify),
                Err(e) => Err(classify(e)),
            }
        }
        Err(e) => Err(classify(e)),
    }
}

fn wrap<B: Backend + 'static>(b: B, read_only: bool) -> Arc<dyn Backend> {
    match read_only {
        true => Arc::new(ReadOnlyBackend::new(b)),
        false => Arc::new(b),
    }
}

fn classify(e: RepoError) -> LocationError {
    match e {
        RepoError::WrongPassword => LocationError::WrongPassword,
        RepoError::Backend(b) => LocationError::Backend {
            transient: b.class() == ErrorClass::Transient,
            message: b.to_string(),
        },
        other => LocationError::Repo(other),
    }
}

fn trim_newline(mut v: Vec<u8>) -> Vec<u8> {
    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        v.pop();
    }
    v
}

/// The S3 location string and options of a spec: bucket and prefix, Velero's `config` keys,
/// the CA bundle and the credentials from their Secrets (else the pod's identity through the
/// standard AWS chain).
async fn s3_spec(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: &BackupStorageLocationSpec,
    scratch: &Path,
) -> Result<(String, S3Options), LocationError> {
    let os = spec
        .object_storage
        .as_ref()
        .ok_or_else(|| LocationError::Spec("provider s3 needs spec.objectStorage.bucket".into()))?;
    if os.bucket.is_empty() {
        return Err(LocationError::Spec(
            "spec.objectStorage.bucket is empty".into(),
        ));
    }
    let prefix = os
        .prefix
        .as_deref()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty());
    let tail = match prefix {
        Some(p) => format!("{}/{p}", os.bucket),
        None => os.bucket.clone(),
    };
    let location = match spec.config.get(config_keys::S3_URL) {
        Some(url) => format!("s3:{}/{tail}", url.trim_end_matches('/')),
        None => format!("s3://{tail}"),
    };
    let mut opts = S3Options {
        region: spec.config.get(config_keys::REGION).cloned(),
        retries: 2,
        timeout: Duration::from_secs(20),
        ..S3Options::default()
    };
    if spec.config.contains_key(config_keys::S3_FORCE_PATH_STYLE) {
        opts.path_style = Some(
            spec.config_bool(config_keys::S3_FORCE_PATH_STYLE)
                .map_err(LocationError::Spec)?,
        );
    }
    opts.insecure_tls = spec
        .config_bool(config_keys::INSECURE_SKIP_TLS_VERIFY)
        .map_err(LocationError::Spec)?;
    if let Some(sel) = &os.ca_cert_ref {
        let pem = secret_value(client, namespace, sel).await?;
        let path = scratch.join(format!("ca-{namespace}-{name}.pem"));
        std::fs::write(&path, pem).map_err(|e| {
            LocationError::Spec(format!("writing the CA bundle to {}: {e}", path.display()))
        })?;
        opts.ca_bundle = Some(path);
    }
    if let Some(sel) = &spec.credential {
        let text = secret_value(client, namespace, sel).await?;
        let text = String::from_utf8_lossy(&text);
        let c = read_credentials_file(&text, spec.profile()).map_err(|e| {
            LocationError::Spec(format!("credential {}/{}: {e}", sel.name, sel.key))
        })?;
        opts.credentials = Some(c);
    }
    Ok((location, opts))
}
