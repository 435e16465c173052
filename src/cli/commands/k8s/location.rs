//! `stowage k8s backup-location ...`: Velero's `velero backup-location` commands for Stowage's
//! BackupStorageLocation objects.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{anyhow, bail, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::SecretKeySelector;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Api;
use stowage_kube::api::{
    AccessMode, BackupStorageLocation, BackupStorageLocationSpec, FilesystemLocation,
    LocationPhase, ObjectStorage, Provider,
};

use super::output::{self, ListFormat, ObjectFormat, Table};
use super::parse;
use super::{connect, usage, K8sGlobal, Kube, FIELD_MANAGER};

/// `stowage k8s backup-location ...`.
#[derive(clap::Subcommand, Debug)]
pub enum LocationCommand {
    /// Create a backup storage location (or, with -o, print it without creating it)
    Create(Box<CreateArgs>),
    /// List backup storage locations
    Get(GetArgs),
    /// Show a location's spec and status
    Describe(DescribeArgs),
    /// Delete a BackupStorageLocation object (the repository and its data are kept)
    Delete(DeleteArgs),
}

/// `--provider`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderArg {
    /// An S3-compatible object store
    S3,
    /// A directory
    Filesystem,
}

/// `--access-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessModeArg {
    /// Backups are written and deleted
    #[value(name = "ReadWrite")]
    ReadWrite,
    /// Backups are only read
    #[value(name = "ReadOnly")]
    ReadOnly,
}

/// `backup-location create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The location's name
    pub name: String,
    /// The kind of storage
    #[arg(long, value_enum)]
    pub provider: ProviderArg,
    /// The bucket (s3)
    #[arg(long)]
    pub bucket: Option<String>,
    /// A key prefix inside the bucket (s3)
    #[arg(long)]
    pub prefix: Option<String>,
    /// Provider settings: region=..,s3Url=..,s3ForcePathStyle=true,insecureSkipTLSVerify=..,profile=..
    #[arg(long, value_delimiter = ',', value_parser = parse::key_value, value_name = "K=V,...")]
    pub config: Vec<(String, String)>,
    /// The Secret key holding an AWS credentials file (s3)
    #[arg(long, value_parser = parse::secret_ref, value_name = "SECRET=KEY")]
    pub credential: Option<SecretKeySelector>,
    /// The Secret key holding PEM CA certificates for the endpoint (s3)
    #[arg(long, value_parser = parse::secret_ref, value_name = "SECRET=KEY")]
    pub cacert_secret: Option<SecretKeySelector>,
    /// The repository directory, an absolute path (filesystem)
    #[arg(long, value_name = "DIR")]
    pub path: Option<String>,
    /// The Secret key holding the repository password
    #[arg(long, value_parser = parse::secret_ref, value_name = "SECRET=KEY")]
    pub password_secret: SecretKeySelector,
    /// Make this the default location (the others stop being default)
    #[arg(long)]
    pub default: bool,
    /// ReadOnly refuses new backups and deletions
    #[arg(long, value_enum, default_value = "ReadWrite")]
    pub access_mode: AccessModeArg,
    /// How often the controller checks the location (Go duration; 0 disables)
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    pub validation_frequency: Option<String>,
    /// How often backups in the repository are synced into Backup objects (0 disables)
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    pub backup_sync_period: Option<String>,
    /// Labels of the object: k=v,k2=v2
    #[arg(long, value_delimiter = ',', value_parser = parse::key_value, value_name = "K=V,...")]
    pub labels: Vec<(String, String)>,
    /// Wait until the controller has validated the location; exit 1 if Unavailable
    #[arg(long, conflicts_with = "output")]
    pub wait: bool,
    /// Print the object instead of creating it
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ObjectFormat>,
}

/// `backup-location get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Locations to show; default all
    pub names: Vec<String>,
    /// json, yaml or wide
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ListFormat>,
}

/// `backup-location describe`.
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The location
    pub name: String,
    /// Print the object instead
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ObjectFormat>,
}

/// `backup-location delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The location
    pub name: String,
    /// Do not ask
    #[arg(long)]
    pub confirm: bool,
}

/// Runs a `backup-location` command.
pub async fn run(g: &K8sGlobal, c: LocationCommand) -> Result<u8> {
    match c {
        LocationCommand::Create(a) => create(g, *a).await,
        LocationCommand::Get(a) => get(g, a).await,
        LocationCommand::Describe(a) => describe(g, a).await,
        LocationCommand::Delete(a) => delete(g, a).await,
    }
}

fn api(kube: &Kube) -> Api<BackupStorageLocation> {
    Api::namespaced(kube.client.clone(), &kube.namespace)
}

/// The object `create` makes from its flags; refuses flags of the other provider.
pub fn build(a: &CreateArgs, namespace: &str) -> Result<BackupStorageLocation> {
    let (provider, object_storage, filesystem) = match a.provider {
        ProviderArg::S3 => {
            if a.path.is_some() {
                return Err(usage(
                    "--path is for --provider filesystem; s3 uses --bucket",
                ));
            }
            let bucket = a
                .bucket
                .clone()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| usage("--provider s3 needs --bucket"))?;
            let os = ObjectStorage {
                bucket,
                prefix: a.prefix.clone().filter(|p| !p.is_empty()),
                ca_cert_ref: a.cacert_secret.clone(),
            };
            (Provider::S3, Some(os), None)
        }
        ProviderArg::Filesystem => {
            if a.bucket.is_some() || a.prefix.is_some() || a.cacert_secret.is_some() {
                return Err(usage(
                    "--bucket, --prefix and --cacert-secret are for --provider s3; filesystem uses --path",
                ));
            }
            let path = a
                .path
                .clone()
                .ok_or_else(|| usage("--provider filesystem needs --path"))?;
            if !path.starts_with('/') {
                return Err(usage(format!("--path {path:?} must be an absolute path")));
            }
            (
                Provider::Filesystem,
                None,
                Some(FilesystemLocation { path }),
            )
        }
    };
    let spec = BackupStorageLocationSpec {
        provider,
        object_storage,
        config: a.config.iter().cloned().collect(),
        filesystem,
        credential: a.credential.clone(),
        repository_password: Some(a.password_secret.clone()),
        default: a.default,
        access_mode: match a.access_mode {
            AccessModeArg::ReadWrite => AccessMode::ReadWrite,
            AccessModeArg::ReadOnly => AccessMode::ReadOnly,
        },
        backup_sync_period: a.backup_sync_period.clone(),
        validation_frequency: a.validation_frequency.clone(),
    };
    let mut bsl = BackupStorageLocation::new(&a.name, spec);
    let labels: BTreeMap<String, String> = a.labels.iter().cloned().collect();
    bsl.metadata = ObjectMeta {
        name: Some(a.name.clone()),
        namespace: Some(namespace.to_string()),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    };
    Ok(bsl)
}

async fn create(g: &K8sGlobal, a: CreateArgs) -> Result<u8> {
    let bsl = build(&a, &g.namespace)?;
    if let Some(format) = a.output {
        output::print_object(&bsl, format)?;
        return Ok(0);
    }
    let kube = connect(g).await?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    api(&kube)
        .create(&params, &bsl)
        .await
        .map_err(|e| kube.error(e, "backupstoragelocation", Some(&a.name)))?;
    println!(
        "Backup storage location {:?} configured successfully.",
        a.name
    );
    if a.default {
        unset_other_defaults(&kube, &a.name).await?;
    }
    if !a.wait {
        return Ok(0);
    }
    println!("Waiting for the controller to validate the location...");
    let bsl = wait(&kube, &a.name).await?;
    let status = bsl.status.clone().unwrap_or_default();
    let message = status.message.unwrap_or_default();
    match status.phase {
        Some(LocationPhase::Available) => {
            println!("Backup storage location {:?} is Available.", a.name);
            Ok(0)
        }
        _ => bail!(
            "backup storage location {:?} is Unavailable: {}",
            a.name,
            if message.is_empty() {
                "no message"
            } else {
                &message
            }
        ),
    }
}

/// One default at a time, as `velero backup-location set --default` keeps it.
async fn unset_other_defaults(kube: &Kube, name: &str) -> Result<()> {
    let all = api(kube)
        .list(&ListParams::default())
        .await
        .map_err(|e| kube.error(e, "backupstoragelocation", None))?;
    let patch = serde_json::json!({ "spec": { "default": false } });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    for other in all.items.iter().filter(|l| l.spec.default) {
        let other_name = other.metadata.name.clone().unwrap_or_default();
        if other_name == name {
            continue;
        }
        api(kube)
            .patch(&other_name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| kube.error(e, "backupstoragelocation", Some(&other_name)))?;
        println!("Backup storage location {other_name:?} is no longer the default.");
    }
    Ok(())
}

async fn wait(kube: &Kube, name: &str) -> Result<BackupStorageLocation> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api(kube), config).boxed();
    let mut seen = false;
    loop {
        let event = events
            .try_next()
            .await
            .map_err(|e| anyhow!("watching backup storage location {name:?}: {e}"))?
            .ok_or_else(|| anyhow!("the watch of backup storage location {name:?} ended"))?;
        let bsl = match event {
            watcher::Event::Apply(b) | watcher::Event::InitApply(b) => b,
            watcher::Event::Delete(_) => {
                bail!("backup storage location {name:?} was deleted while waiting")
            }
            watcher::Event::InitDone if !seen => bail!(
                "backupstoragelocation {name:?} not found in namespace {}",
                kube.namespace
            ),
            watcher::Event::Init | watcher::Event::InitDone => continue,
        };
        seen = true;
        if bsl.status.as_ref().and_then(|s| s.phase).is_some() {
            return Ok(bsl);
        }
    }
}

async fn fetch(kube: &Kube, name: &str) -> Result<BackupStorageLocation> {
    api(kube)
        .get(name)
        .await
        .map_err(|e| kube.error(e, "backupstoragelocation", Some(name)))
}

async fn get(g: &K8sGlobal, a: GetArgs) -> Result<u8> {
    let kube = connect(g).await?;
    let items = match a.names.is_empty() {
        true => {
            let mut list = api(&kube)
                .list(&ListParams::default())
                .await
                .map_err(|e| kube.error(e, "backupstoragelocation", None))?
                .items;
            list.sort_by(|x, y| x.metadata.name.cmp(&y.metadata.name));
            list
        }
        false => {
            let mut list = Vec::new();
            for n in &a.names {
                list.push(fetch(&kube, n).await?);
            }
            list
        }
    };
    if let Some(format) = a.output.and_then(ListFormat::object) {
        output::print_objects(&items, a.names.len() == 1, format)?;
        return Ok(0);
    }
    if items.is_empty() {
        eprintln!(
            "No backup storage locations found in namespace {}.",
            kube.namespace
        );
        return Ok(0);
    }
    print!("{}", table(&items));
    Ok(0)
}

/// Where the repository is: `bucket/prefix`, or the directory.
fn where_text(spec: &BackupStorageLocationSpec) -> String {
    match (&spec.object_storage, &spec.filesystem) {
        (Some(os), _) => match os.prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => format!("{}/{p}", os.bucket),
            None => os.bucket.clone(),
        },
        (None, Some(fs)) => fs.path.clone(),
        (None, None) => String::new(),
    }
}

fn provider_text(p: Provider) -> &'static str {
    match p {
        Provider::S3 => "s3",
        Provider::Filesystem => "filesystem",
    }
}

fn phase_text(bsl: &BackupStorageLocation) -> String {
    match bsl.status.as_ref().and_then(|s| s.phase) {
        Some(p) => format!("{p:?}"),
        None => "Unknown".into(),
    }
}

/// The `get` table.
pub fn table(items: &[BackupStorageLocation]) -> String {
    let now = output::now();
    let mut t = Table::new(&[
        "NAME",
        "PROVIDER",
        "BUCKET/PATH",
        "PHASE",
        "LAST VALIDATED",
        "ACCESS MODE",
        "DEFAULT",
        "MESSAGE",
    ]);
    for l in items {
        let status = l.status.clone().unwrap_or_default();
        t.row(vec![
            l.metadata.name.clone().unwrap_or_default(),
            provider_text(l.spec.provider).into(),
            where_text(&l.spec),
            phase_text(l),
            match &status.last_validation_time {
                Some(t) => format!("{} ago", output::age(Some(t), now)),
                None => "<never>".into(),
            },
            format!("{:?}", l.spec.access_mode),
            if l.spec.default {
                "true".into()
            } else {
                String::new()
            },
            status.message.unwrap_or_default(),
        ]);
    }
    t.render()
}

fn secret_text(s: Option<&SecretKeySelector>) -> String {
    match s {
        Some(s) => format!("secret {} key {}", s.name, s.key),
        None => "<none>".into(),
    }
}

/// What `describe` prints.
pub fn describe_text(l: &BackupStorageLocation) -> String {
    let spec = &l.spec;
    let status = l.status.clone().unwrap_or_default();
    let mut o = String::new();
    let map = |m: Option<&BTreeMap<String, String>>| match m.filter(|m| !m.is_empty()) {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        None => "<none>".into(),
    };
    let _ = writeln!(
        o,
        "Name:         {}",
        l.metadata.name.clone().unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "Namespace:    {}",
        l.metadata.namespace.clone().unwrap_or_default()
    );
    let _ = writeln!(o, "Labels:       {}", map(l.metadata.labels.as_ref()));
    let _ = writeln!(o, "Annotations:  {}", map(l.metadata.annotations.as_ref()));
    o.push('\n');
    let _ = writeln!(o, "Provider:  {}", provider_text(spec.provider));
    if let Some(os) = &spec.object_storage {
        let _ = writeln!(o, "Bucket:    {}", os.bucket);
        let _ = writeln!(o, "Prefix:    {}", os.prefix.as_deref().unwrap_or("<none>"));
        let _ = writeln!(
            o,
            "CA certificate:  {}",
            secret_text(os.ca_cert_ref.as_ref())
        );
    }
    if let Some(fs) = &spec.filesystem {
        let _ = writeln!(o, "Path:      {}", fs.path);
    }
    let config: BTreeMap<String, String> = spec.config.clone();
    let _ = writeln!(o, "Config:    {}", map(Some(&config)));
    let _ = writeln!(
        o,
        "Credential:           {}",
        secret_text(spec.credential.as_ref())
    );
    let _ = writeln!(
        o,
        "Repository password:  {}",
        secret_text(spec.repository_password.as_ref())
    );
    o.push('\n');
    let _ = writeln!(o, "Default:      {}", spec.default);
    let _ = writeln!(o, "Access Mode:  {:?}", spec.access_mode);
    let _ = writeln!(
        o,
        "Backup Sync Period:    {}",
        spec.backup_sync_period
            .as_deref()
            .unwrap_or("<controller default>")
    );
    let _ = writeln!(
        o,
        "Validation Frequency:  {}",
        spec.validation_frequency
            .as_deref()
            .unwrap_or("<controller default>")
    );
    o.push('\n');
    let _ = writeln!(o, "Phase:           {}", phase_text(l));
    if let Some(m) = &status.message {
        let _ = writeln!(o, "Message:         {m}");
    }
    let _ = writeln!(
        o,
        "Last Validated:  {}",
        output::timestamp(status.last_validation_time.as_ref())
    );
    let _ = writeln!(
        o,
        "Last Synced:     {}",
        output::timestamp(status.last_synced_time.as_ref())
    );
    o
}

async fn describe(g: &K8sGlobal, a: DescribeArgs) -> Result<u8> {
    let kube = connect(g).await?;
    let bsl = fetch(&kube, &a.name).await?;
    match a.output {
        Some(format) => output::print_object(&bsl, format)?,
        None => print!("{}", describe_text(&bsl)),
    }
    Ok(0)
}

async fn delete(g: &K8sGlobal, a: DeleteArgs) -> Result<u8> {
    let kube = connect(g).await?;
    let bsl = fetch(&kube, &a.name).await?;
    let kept = format!(
        "Only the BackupStorageLocation object is deleted: the repository at {} and its backups are kept, and the Backup objects that name it stay.",
        match where_text(&bsl.spec) {
            w if w.is_empty() => "its storage".to_string(),
            w => w,
        }
    );
    if !a.confirm {
        super::confirm(
            &format!("delete backup storage location {:?}", a.name),
            &kept,
        )?;
    }
    api(&kube)
        .delete(&a.name, &DeleteParams::default())
        .await
        .map_err(|e| kube.error(e, "backupstoragelocation", Some(&a.name)))?;
    println!("Backup storage location {:?} deleted. {kept}", a.name);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Result<CreateArgs, clap::Error> {
        let mut argv = vec!["stowage k8s", "backup-location", "create"];
        argv.extend_from_slice(extra);
        super::super::K8sCli::try_parse_from(argv).map(|c| match c.command {
            super::super::K8sSub::BackupLocation(LocationCommand::Create(a)) => *a,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn s3_flags_fill_veleros_fields() {
        let a = args(&[
            "primary",
            "--provider",
            "s3",
            "--bucket",
            "b",
            "--prefix",
            "cluster-a",
            "--config",
            "region=eu-1,s3Url=http://minio:9000,s3ForcePathStyle=true",
            "--credential",
            "cloud=creds",
            "--cacert-secret",
            "ca=ca.pem",
            "--password-secret",
            "repo=password",
            "--default",
            "--access-mode",
            "ReadOnly",
            "--validation-frequency",
            "1m",
            "--backup-sync-period",
            "0",
        ])
        .unwrap();
        let v = serde_json::to_value(build(&a, "stowage").unwrap()).unwrap();
        let s = &v["spec"];
        assert_eq!(s["provider"], "s3");
        assert_eq!(s["objectStorage"]["bucket"], "b");
        assert_eq!(s["objectStorage"]["prefix"], "cluster-a");
        assert_eq!(s["objectStorage"]["caCertRef"]["name"], "ca");
        assert_eq!(s["config"]["s3Url"], "http://minio:9000");
        assert_eq!(s["config"]["s3ForcePathStyle"], "true");
        assert_eq!(s["credential"]["key"], "creds");
        assert_eq!(s["repositoryPassword"]["name"], "repo");
        assert_eq!(s["default"], true);
        assert_eq!(s["accessMode"], "ReadOnly");
        assert_eq!(s["validationFrequency"], "1m0s");
        assert_eq!(s["backupSyncPeriod"], "0s");
    }

    #[test]
    fn provider_specific_flags_are_checked() {
        let fs = |extra: &[&str]| {
            let mut all = vec!["l", "--password-secret", "p=k"];
            all.extend_from_slice(extra);
            build(&args(&all).unwrap(), "ns")
        };
        let ok = fs(&["--provider", "filesystem", "--path", "/data/repo"]).unwrap();
        assert_eq!(ok.spec.filesystem.unwrap().path, "/data/repo");
        for (bad, says) in [
            (vec!["--provider", "filesystem"], "needs --path"),
            (
                vec!["--provider", "filesystem", "--path", "rel"],
                "absolute",
            ),
            (
                vec!["--provider", "filesystem", "--path", "/x", "--bucket", "b"],
                "for --provider s3",
            ),
            (vec!["--provider", "s3"], "needs --bucket"),
            (
                vec!["--provider", "s3", "--bucket", "b", "--path", "/x"],
                "--path is for",
            ),
        ] {
            let err = fs(&bad).unwrap_err();
            assert!(err.downcast_ref::<super::super::UsageError>().is_some());
            assert!(err.to_string().contains(says), "{bad:?}: {err}");
        }
        assert!(
            args(&["l", "--provider", "s3", "--bucket", "b"]).is_err(),
            "password required"
        );
        assert!(args(&["l", "--provider", "gcs", "--password-secret", "p=k"]).is_err());
    }
}
