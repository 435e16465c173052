//! `BackupStorageLocation`: where a repository lives and how to reach it (Velero's
//! `BackupStorageLocation`, plus the repository password Velero keeps elsewhere).
//!
//! Every Secret a location names is read from the location's own namespace.
//!
//! Credentials (`spec.credential`), the one format supported: the selected Secret key holds an
//! AWS shared-credentials file, exactly what Velero's AWS plugin reads:
//!
//! ```text
//! [default]
//! aws_access_key_id = AKIA...
//! aws_secret_access_key = ...
//! aws_session_token = ...        # optional
//! ```
//!
//! The profile is `config.profile` (default `default`); [`read_credentials_file`]
//! reads it. A Secret with separate `aws_access_key_id` / `aws_secret_access_key` keys is not
//! supported: a `SecretKeySelector` names one key, and Velero users already have the file form.
//! With no `credential`, the controller uses its own environment (the default AWS chain).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::SecretKeySelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// Keys of [`BackupStorageLocationSpec::config`] that the S3 provider reads (Velero's AWS
/// plugin's names). Other keys are kept but ignored.
pub mod config_keys {
    /// AWS region of the bucket. Required by AWS itself; most S3-compatible servers accept any.
    pub const REGION: &str = "region";
    /// Endpoint URL of an S3-compatible server (`https://minio.example:9000`); unset for AWS.
    pub const S3_URL: &str = "s3Url";
    /// `"true"`: path-style requests (`https://host/bucket/key`), which most S3-compatible
    /// servers need.
    pub const S3_FORCE_PATH_STYLE: &str = "s3ForcePathStyle";
    /// `"true"`: do not verify the server's TLS certificate. For tests only.
    pub const INSECURE_SKIP_TLS_VERIFY: &str = "insecureSkipTLSVerify";
    /// The profile of the credentials file to use (default `default`).
    pub const PROFILE: &str = "profile";
}

/// Where a repository lives: an S3 bucket (and prefix) or a directory, and the Secrets needed
/// to open it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stowage.dev",
    version = "v1alpha1",
    kind = "BackupStorageLocation",
    plural = "backupstoragelocations",
    singular = "backupstoragelocation",
    shortname = "bsl",
    namespaced,
    status = "BackupStorageLocationStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "A place where Stowage keeps a backup repository (Velero's BackupStorageLocation).",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Bucket","type":"string","jsonPath":".spec.objectStorage.bucket"}"#,
    printcolumn = r#"{"name":"Access Mode","type":"string","jsonPath":".spec.accessMode"}"#,
    printcolumn = r#"{"name":"Last Validated","type":"date","jsonPath":".status.lastValidationTime"}"#,
    printcolumn = r#"{"name":"Default","type":"boolean","jsonPath":".spec.default"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocationSpec {
    /// The kind of storage: `s3` (any S3-compatible server) or `filesystem`. Velero's `aws` and
    /// `velero.io/aws` are read as `s3`.
    pub provider: Provider,
    /// Bucket and prefix, for `provider: s3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_storage: Option<ObjectStorage>,
    /// Provider settings, Velero's names: `region`, `s3Url`, `s3ForcePathStyle`,
    /// `insecureSkipTLSVerify`, `profile`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The directory, for `provider: filesystem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemLocation>,
    /// The S3 credentials: a key of a Secret in this namespace holding an AWS credentials file
    /// (see the module documentation). Unset: the controller's own environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SecretKeySelector>,
    /// The repository password: a key of a Secret in this namespace. Required in practice: a
    /// location without it cannot open its repository and is `Unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_password: Option<SecretKeySelector>,
    /// Backups without `spec.storageLocation` go to the location marked default.
    #[serde(default)]
    pub default: bool,
    /// `ReadOnly` refuses new backups and deletions; restores still work (a migration target).
    #[serde(default)]
    pub access_mode: AccessMode,
    /// How often to sync backups found in the repository into Backup objects (Go duration);
    /// `0` disables sync; unset: the controller's default (1m in Velero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_sync_period: Option<String>,
    /// How often to check the location is reachable (Go duration); `0` disables; unset: the
    /// controller's default (1m in Velero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_frequency: Option<String>,
}

/// The kind of storage behind a location.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// An S3-compatible object store.
    #[default]
    #[serde(alias = "aws", alias = "velero.io/aws")]
    S3,
    /// A directory seen at the same path by the controller and the node agents (an NFS mount,
    /// or a single-node test cluster).
    Filesystem,
}

// By hand: the API server must accept Velero's spellings too, which a derive leaves out.
impl JsonSchema for Provider {
    fn schema_name() -> Cow<'static, str> {
        "Provider".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "enum": ["s3", "filesystem", "aws", "velero.io/aws"],
        })
    }
}

/// The bucket side of an S3 location (Velero's `objectStorage`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorage {
    /// The bucket name.
    pub bucket: String,
    /// A key prefix inside the bucket, without leading or trailing `/`; the repository lives
    /// under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A Secret key (this namespace) holding PEM CA certificates to trust for the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_ref: Option<SecretKeySelector>,
}

/// The directory of a filesystem location.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesystemLocation {
    /// Absolute path of the repository directory.
    pub path: String,
}

/// Whether backups may be written to a location.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    /// Backups are written and deleted.
    #[default]
    ReadWrite,
    /// Backups are read (restores, sync) but never written or deleted.
    ReadOnly,
}

/// What the controller last found out about a location.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocationStatus {
    /// `Available` once the repository was opened; `Unavailable` with a `message` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LocationPhase>,
    /// Why the location is unavailable (credentials removed from the text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the location was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_validation_time: Option<Time>,
    /// When backups in the repository were last synced into Backup objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_time: Option<Time>,
    /// The access mode the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<AccessMode>,
}

/// Whether a location can be used.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LocationPhase {
    /// The repository was reached and opened.
    Available,
    /// The repository could not be reached or opened; see `status.message`.
    Unavailable,
}

/// Keys read from an AWS shared-credentials file: the S3 backend's static credentials.
pub use stowage_s3::StaticCredentials as S3Credentials;

/// Why a credentials file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The file has no `[profile]` section.
    #[error("the credentials file has no [{0}] profile")]
    NoProfile(String),
    /// The profile lacks a required key.
    #[error("profile [{profile}] of the credentials file has no {key}")]
    MissingKey {
        /// The profile read.
        profile: String,
        /// The missing key.
        key: &'static str,
    },
}

/// Reads `profile` from the text of an AWS shared-credentials file (INI: `[profile]` sections of
/// `key = value` lines, `#` and `;` comments). The section may also be written
/// `[profile name]`, as in `~/.aws/config`.
pub fn read_credentials_file(text: &str, profile: &str) -> Result<S3Credentials, CredentialsError> {
    let mut in_profile = false;
    let mut found = false;
    let mut keys: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            let name = section.strip_prefix("profile ").map_or(section, str::trim);
            in_profile = name == profile;
            found |= in_profile;
            continue;
        }
        if in_profile {
            if let Some((k, v)) = line.split_once('=') {
                keys.insert(k.trim(), v.trim());
            }
        }
    }
    if !found {
        return Err(CredentialsError::NoProfile(profile.to_string()));
    }
    let get = |key: &'static str| {
        keys.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string())
            .ok_or(CredentialsError::MissingKey {
                profile: profile.to_string(),
                key,
            })
    };
    Ok(S3Credentials {
        access_key_id: get("aws_access_key_id")?,
        secret_access_key: get("aws_secret_access_key")?,
        session_token: get("aws_session_token").ok(),
    })
}

impl BackupStorageLocationSpec {
    /// The credentials-file profile to read: `config.profile`, else `default`.
    pub fn profile(&self) -> &str {
        self.config
            .get(config_keys::PROFILE)
            .map_or("default", String::as_str)
    }

    /// A boolean `config` entry, read like Go's `strconv.ParseBool` (Velero's plugins do):
    /// `1 t T TRUE true True` and `0 f F FALSE false False`; absent is `false`.
    pub fn config_bool(&self, key: &str) -> Result<bool, String> {
        match self.config.get(key).map(String::as_str) {
            None => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(other) => Err(format!("config.{key} must be true or false, not {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_velero_location_manifest_reads_with_only_the_api_version_changed() {
        let yaml = r#"
apiVersion: stowage.dev/v1alpha1
kind: BackupStorageLocation
metadata:
  name: default
  namespace: velero
spec:
  provider: aws
  default: true
  objectStorage:
    bucket: backups
    prefix: cluster-a
  config:
    region: minio
    s3ForcePathStyle: "true"
    s3Url: http://minio.velero.svc:9000
  credential:
    name: cloud-credentials
    key: cloud
  accessMode: ReadOnly
  backupSyncPeriod: 2m0s
"#;
        let bsl: BackupStorageLocation = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(bsl.spec.provider, Provider::S3);
        assert!(bsl.spec.default);
        assert_eq!(bsl.spec.access_mode, AccessMode::ReadOnly);
        assert_eq!(bsl.spec.object_storage.as_ref().unwrap().bucket, "backups");
        assert_eq!(
            bsl.spec.object_storage.as_ref().unwrap().prefix.as_deref(),
            Some("cluster-a")
        );
        assert_eq!(bsl.spec.credential.as_ref().unwrap().key, "cloud");
        assert_eq!(
            bsl.spec.config_bool(config_keys::S3_FORCE_PATH_STYLE),
            Ok(true)
        );
        assert_eq!(
            bsl.spec.config_bool(config_keys::INSECURE_SKIP_TLS_VERIFY),
            Ok(false)
        );
        assert_eq!(bsl.spec.backup_sync_period.as_deref(), Some("2m0s"));
        assert_eq!(bsl.spec.profile(), "default");
    }

    #[test]
    fn provider_spellings() {
        for (text, want) in [
            ("s3", Provider::S3),
            ("aws", Provider::S3),
            ("velero.io/aws", Provider::S3),
            ("filesystem", Provider::Filesystem),
        ] {
            let got: Provider = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(got, want, "{text}");
        }
        assert!(serde_json::from_value::<Provider>(serde_json::json!("gcp")).is_err());
        assert_eq!(serde_json::to_value(Provider::S3).unwrap(), "s3");
    }

    #[test]
    fn defaults_are_read_write_and_not_default() {
        let spec: BackupStorageLocationSpec = serde_json::from_value(
            serde_json::json!({"provider": "filesystem", "filesystem": {"path": "/repo"}}),
        )
        .unwrap();
        assert_eq!(spec.access_mode, AccessMode::ReadWrite);
        assert!(!spec.default);
        assert_eq!(spec.filesystem.unwrap().path, "/repo");
    }

    #[test]
    fn a_bad_boolean_in_config_is_an_error_naming_the_key() {
        let mut spec = BackupStorageLocationSpec::default();
        spec.config.insert("s3ForcePathStyle".into(), "yes".into());
        let err = spec.config_bool("s3ForcePathStyle").unwrap_err();
        assert!(err.contains("config.s3ForcePathStyle"), "{err}");
    }

    #[test]
    fn credentials_come_from_the_selected_profile() {
        let file = "# comment\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key=s1\n\n[profile other]\naws_access_key_id=AKIA2\naws_secret_access_key = s2\naws_session_token = t2\n";
        let d = read_credentials_file(file, "default").unwrap();
        assert_eq!(
            (d.access_key_id.as_str(), d.secret_access_key.as_str()),
            ("AKIA1", "s1")
        );
        assert_eq!(d.session_token, None);
        let o = read_credentials_file(file, "other").unwrap();
        assert_eq!(o.access_key_id, "AKIA2");
        assert_eq!(o.session_token.as_deref(), Some("t2"));
        assert!(
            !format!("{o:?}").contains("s2"),
            "the secret must not be printed"
        );
        assert_eq!(
            read_credentials_file(file, "missing"),
            Err(CredentialsError::NoProfile("missing".into()))
        );
        assert_eq!(
            read_credentials_file("[default]\naws_access_key_id=a\n", "default"),
            Err(CredentialsError::MissingKey {
                profile: "default".into(),
                key: "aws_secret_access_key"
            })
        );
    }
}
