//! Restores: a backup's objects recreated in this cluster.
//!
//! [`source`] reads the backup's snapshot, [`plan`] decides what to do before anything is
//! created (and what the target cluster lacks), [`apply`] creates (or compares and patches)
//! each object in the planned order and verifies the result with [`compare`]. [`run`] is one
//! whole restore, as the controller runs it.

pub mod apply;
pub mod compare;
pub mod plan;
pub mod record;
pub mod source;

use crate::api::RestoreSpec;
use crate::runlog::RunLog;
use apply::{ApplyOptions, Report};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{Api, Client};
use plan::{Lack, TargetState};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stowage_core::cancel::CancelToken;
use stowage_core::error::{Classified, ErrorClass};
use stowage_core::repo::session::{IndexSource, Locked, ReadWork};
use stowage_core::repo::Repository;

/// How long a restore waits for target namespaces that are being deleted to be gone.
pub const TERMINATING_WAIT: Duration = Duration::from_secs(600);

/// One restore to run.
#[derive(Clone)]
pub struct RestoreInput {
    /// The target cluster.
    pub client: Client,
    /// The repository holding the backup.
    pub repo: Arc<Repository>,
    /// Whether the repository's storage is read-only (no lock can be written).
    pub read_only: bool,
    /// The index cache directory (`None`: index in memory).
    pub cache_dir: Option<PathBuf>,
    /// The UID the backup's snapshot is tagged with.
    pub backup_uid: String,
    /// How to apply.
    pub apply: ApplyOptions,
}

/// How a restore ended when it ran to its end.
#[derive(Debug)]
pub struct Finished {
    /// What was done.
    pub report: Report,
    /// What the target lacked (not blocking, or a dry run).
    pub lacks: Vec<Lack>,
    /// The snapshot restored from.
    pub snapshot_id: String,
}

/// Why a restore did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// It was canceled.
    #[error("canceled")]
    Canceled,
    /// It cannot run as asked: every reason (FailedValidation), and what the target lacks.
    #[error("{}", .0.join("; "))]
    Refused(Vec<String>, Vec<Lack>),
    /// Worth running again (the repository or API server was unavailable).
    #[error("{0}")]
    Transient(String),
    /// Not worth running again.
    #[error("{0}")]
    Fatal(String),
}

fn repo_error(what: &str, e: stowage_core::repo::RepoError) -> RestoreError {
    match e.class() {
        ErrorClass::Transient => RestoreError::Transient(format!("{what}: {e}")),
        _ => RestoreError::Fatal(format!("{what}: {e}")),
    }
}

/// What planning needs of the target cluster.
async fn target_state(client: &Client) -> Result<TargetState, RestoreError> {
    let transient = |what: &str, e: kube::Error| {
        RestoreError::Transient(format!("{what}: {}", crate::collect::describe(&e)))
    };
    let discovered = crate::discovery::discover(client)
        .await
        .map_err(|e| RestoreError::Transient(e.to_string()))?;
    let classes: Api<StorageClass> = Api::all(client.clone());
    let storage_classes = classes
        .list(&Default::default())
        .await
        .map_err(|e| transient("listing storage classes", e))?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    let volumes = pvs
        .list_metadata(&Default::default())
        .await
        .map_err(|e| transient("listing persistent volumes", e))?
        .items
        .into_iter()
        .filter_map(|v| v.metadata.name)
        .collect();
    Ok(TargetState {
        catalog: discovered.catalog,
        storage_classes,
        namespaces: namespaces(client).await?,
        volumes,
    })
}

async fn namespaces(
    client: &Client,
) -> Result<std::collections::BTreeMap<String, bool>, RestoreError> {
    let api: Api<Namespace> = Api::all(client.clone());
    Ok(api
        .list(&Default::default())
        .await
        .map_err(|e| {
            RestoreError::Transient(format!(
                "listing namespaces: {}",
                crate::collect::describe(&e)
            ))
        })?
        .items
        .into_iter()
        .filter_map(|n| {
            let terminating = n.metadata.deletion_timestamp.is_some()
                || n.status.and_then(|s| s.phase).as_deref() == Some("Terminating");
            Some((n.metadata.name?, terminating))
        })
        .collect())
}

/// Waits (at most [`TERMINATING_WAIT`]) until none of `wanted` is being deleted.
async fn wait_for_namespaces(
    client: &Client,
    wanted: &BTreeSet<String>,
    log: &RunLog,
    cancel: &CancelToken,
) -> Result<(), RestoreError> {
    let deadline = tokio::time::Instant::now() + TERMINATING_WAIT;
    let mut said = false;
    loop {
        let live = namespaces(client).await?;
        let busy: Vec<&String> = wanted
            .iter()
            .filter(|ns| live.get(*ns) == Some(&true))
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        if !said {
            log.info(&format!("waiting for namespaces being deleted: {busy:?}"));
            said = true;
        }
        if tokio::time::Instant::now() > deadline {
            let lacks: Vec<Lack> = busy
                .iter()
                .map(|ns| Lack {
                    blocking: true,
                    message: format!(
                        "namespace {ns} is still being deleted after {}s",
                        TERMINATING_WAIT.as_secs()
                    ),
                })
                .collect();
            return Err(RestoreError::Refused(
                lacks.iter().map(|l| l.message.clone()).collect(),
                lacks,
            ));
        }
        if cancel.is_canceled() {
            return Err(RestoreError::Canceled);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Runs one restore: the backup's snapshot found and listed, the target looked at, the plan
/// made (refused when the target lacks what it needs, unless it is a dry run), then carried
/// out. `report` is updated as it goes.
pub async fn run(
    input: RestoreInput,
    log: &RunLog,
    cancel: &CancelToken,
    report: Arc<Mutex<Report>>,
) -> Result<Finished, RestoreError> {
    let spec: RestoreSpec = input.apply.spec.clone();
    let (session, snapshot_id, items) = {
        let repo = input.repo.clone();
        let uid = input.backup_uid.clone();
        let read_only = input.read_only;
        let cache = input.cache_dir.clone();
        tokio::task::spawn_blocking(move || {
            let (id, snapshot) = crate::layout::find_snapshot(&repo, &uid)
                .map_err(|e| repo_error("listing snapshots", e))?
                .ok_or_else(|| {
                    RestoreError::Fatal(format!(
                        "the repository has no snapshot of this backup (UID {uid})"
                    ))
                })?;
            let locked = match read_only {
                true => Locked::without_lock(&repo),
                false => repo
                    .lock::<ReadWork>()
                    .map_err(|e| repo_error("locking the repository", e))?,
            };
            let source = match cache {
                Some(dir) => IndexSource::Cache(dir),
                None => IndexSource::Memory,
            };
            let session = Arc::new(
                locked
                    .load_index(&source, &())
                    .map_err(|e| repo_error("reading the index", e))?,
            );
            let items = source::list_items(&session, &snapshot)
                .map_err(|e| RestoreError::Fatal(e.to_string()))?;
            Ok::<_, RestoreError>((session, id.to_hex(), items))
        })
        .await
        .map_err(|e| RestoreError::Fatal(format!("reading the backup panicked: {e}")))??
    };
    log.info(&format!(
        "restoring from snapshot {snapshot_id}: {} objects in the backup",
        items.len()
    ));
    // The namespaces the restore may write to (by the namespace filter): those being deleted
    // are waited for; others are none of its business.
    let filter = crate::filter::IncludesExcludes::new(
        spec.included_namespaces.clone(),
        spec.excluded_namespaces.clone(),
    )
    .unwrap_or_else(|_| crate::filter::IncludesExcludes::everything());
    let targets: BTreeSet<String> = items
        .iter()
        .filter_map(|i| match (&i.namespace, i.group_resource.as_str()) {
            (Some(ns), _) => Some(ns),
            (None, "namespaces") => Some(&i.name),
            _ => None,
        })
        .filter(|ns| filter.should_include(ns))
        .map(|ns| plan::target_namespace(&spec, ns).to_string())
        .collect();
    wait_for_namespaces(&input.client, &targets, log, cancel).await?;
    let target = target_state(&input.client).await?;
    let (plan, items) = {
        let session = session.clone();
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || {
            let plan = plan::plan(&spec, &items, &target, |item| {
                source::read_item(&session, item)
            });
            (plan, items)
        })
        .await
        .map_err(|e| RestoreError::Fatal(format!("planning panicked: {e}")))?
    };
    let plan = plan.map_err(|e| match e {
        plan::PlanError::Refused(refused) => RestoreError::Refused(refused.0, Vec::new()),
        plan::PlanError::Repo(e) => repo_error("reading the backup", e),
    })?;
    for lack in &plan.lacks {
        log.warn(&format!("the target cluster lacks {}", lack.message));
    }
    if !spec.is_dry_run() && plan.lacks.iter().any(|l| l.blocking) {
        return Err(RestoreError::Refused(
            plan.lacks
                .iter()
                .filter(|l| l.blocking)
                .map(|l| format!("the target cluster lacks {}", l.message))
                .collect(),
            plan.lacks.clone(),
        ));
    }
    log.info(&format!(
        "plan: {} objects in {} waves, {} skipped",
        plan.total() as usize - plan.skipped.len(),
        plan.waves.len(),
        plan.skipped.len()
    ));
    let report = apply::execute(
        input.client.clone(),
        &plan,
        &items,
        session,
        &input.apply,
        log,
        cancel,
        report,
    )
    .await
    .map_err(|e| match e {
        apply::ApplyError::Canceled => RestoreError::Canceled,
        other => RestoreError::Fatal(other.to_string()),
    })?;
    Ok(Finished {
        report,
        lacks: plan.lacks,
        snapshot_id,
    })
}
