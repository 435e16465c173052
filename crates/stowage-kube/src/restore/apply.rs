//! Carrying out a [`Plan`]: each item read from the backup, prepared by the per-kind rules,
//! changed by the resource modifiers, its owner references re-pointed at the owners' new
//! UIDs, and created, wave by wave (the items of a wave a few at a time). An object that
//! exists already is compared with what the restore would create: equal, it is "unchanged";
//! different, it is patched (`existingResourcePolicy: update`) or left with a warning.
//! CRDs are waited on until Established before anything else is created. With `dry_run`
//! every create and patch is the API server's dry run. At the end, each restored object is
//! read back (a LIST per type and namespace) and compared with what was sent.

use super::compare::{comparable, differences};
use super::plan::{target_namespace, Plan};
use super::source::{read_item, Item, SourceError};
use crate::api::{
    ExistingResourcePolicy, RestoreCounts, RestoreItem, RestoreProblemKind, RestoreSpec,
    RestoreVerification, VolumeOutcome, VolumeResult,
};
use crate::filter::IncludesExcludes;
use crate::pace::Pacer;
use crate::restore_prepare::{prepare, PrepareOptions, Prepared, LABEL_BACKUP, LABEL_RESTORE};
use crate::runlog::RunLog;
use futures::{stream, StreamExt};
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stowage_core::cancel::CancelToken;
use stowage_core::error::{Classified, ErrorClass};
use stowage_core::repo::session::{Indexed, ReadWork};

/// The most problems of each kind kept in the status.
pub const FIRST_PROBLEMS: usize = 10;
/// Items read from the repository at once (and so held in memory at once).
const READ_BATCH: usize = 64;
/// How long a created CRD may take to become Established.
const CRD_ESTABLISHED: Duration = Duration::from_secs(60);
/// How long a restore waits for an object being deleted to go before creating it again.
const DELETION_WAIT: Duration = Duration::from_secs(60);
/// Attempts of one request that fails transiently (throttled, unavailable, timed out).
const ATTEMPTS: u32 = 5;

/// A resource modifier: changes an object of a type (`resource.group`) before it is created,
/// giving how many rules applied, or why a rule failed.
pub type Modifier = dyn Fn(&str, &mut Value) -> Result<usize, String> + Send + Sync;

/// How to carry out a plan.
#[derive(Clone)]
pub struct ApplyOptions {
    /// The restore's name, for the labels and the log.
    pub restore: String,
    /// The backup's name.
    pub backup: String,
    /// The restore's spec.
    pub spec: RestoreSpec,
    /// Items created at once within a wave.
    pub concurrency: usize,
    /// The request rate limit (`--client-qps`).
    pub qps: Option<f64>,
    /// The resource modifiers, if the restore has any.
    pub modifier: Option<Arc<Modifier>>,
    /// Writes the data of the claims just restored, before anything that could use them is
    /// (see [`VolumeData`]); `None`: objects only.
    pub volume_data: Option<Arc<VolumeData>>,
}

/// A claim of the restore, as the wave of claims left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredClaim {
    /// Its namespace in the backup.
    pub backup_namespace: String,
    /// Its namespace in this cluster (after mapping).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Whether this restore created it (an existing claim's data is never overwritten).
    pub created: bool,
}

/// Called once the claims are restored and before any later wave (pods, workloads): writes
/// their data and returns a line per claim with backed-up data. Failed lines are the restore's
/// errors.
pub type VolumeData = dyn Fn(Vec<RestoredClaim>) -> futures::future::BoxFuture<'static, Vec<VolumeResult>>
    + Send
    + Sync;

/// What a run did, item by item; shared with whoever reports progress.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Items done (whatever their outcome).
    pub done: u64,
    /// Items in the plan.
    pub total: u64,
    /// Outcome counts.
    pub counts: RestoreCounts,
    /// The read-back, once done.
    pub verification: Option<RestoreVerification>,
    /// Warning and error counts.
    pub warnings: u32,
    /// Errors: items not restored that should have been.
    pub errors: u32,
    /// The first warnings.
    pub first_warnings: Vec<RestoreItem>,
    /// The first errors.
    pub first_errors: Vec<RestoreItem>,
    /// Every problem, for the restore's record in the repository.
    pub results: super::record::Results,
    /// The volumes whose data the restore wrote (or could not).
    pub volumes: Vec<VolumeResult>,
    /// Files of those volumes read back and found equal to their snapshots.
    pub volume_files_verified: u64,
}

impl Report {
    fn warn(&mut self, item: RestoreItem) {
        self.warnings += 1;
        if self.first_warnings.len() < FIRST_PROBLEMS {
            self.first_warnings.push(item.clone());
        }
        self.results.warnings.push(item);
    }

    fn error(&mut self, item: RestoreItem) {
        self.errors += 1;
        self.counts.failed += 1;
        if self.first_errors.len() < FIRST_PROBLEMS {
            self.first_errors.push(item.clone());
        }
        self.results.errors.push(item);
    }

    fn skip(&mut self, why: &str) {
        self.counts.skipped += 1;
        *self
            .counts
            .skipped_reasons
            .entry(why.to_string())
            .or_default() += 1;
    }
}

/// Why a run stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The restore was canceled.
    #[error("canceled")]
    Canceled,
    /// The repository could not be read.
    #[error("reading the backup: {0}")]
    Source(#[from] SourceError),
    /// A blocking task failed.
    #[error("internal: {0}")]
    Join(String),
}

/// What became of one item.
enum Outcome {
    Created(String),
    Updated(String),
    Unchanged(String),
    Skipped(String),
    /// Left as it is, with a warning; the live object's UID.
    Warned(String, Box<RestoreItem>, String),
    Failed(Box<RestoreItem>),
}

struct Run<'a> {
    client: Client,
    plan: &'a Plan,
    items: &'a [Item],
    session: Arc<Indexed<ReadWork>>,
    opts: &'a ApplyOptions,
    prepare: PrepareOptions,
    status_types: Option<IncludesExcludes>,
    pacer: Pacer,
    log: &'a RunLog,
    /// New UIDs of restored items, for their dependents' owner references.
    uids: Mutex<HashMap<usize, String>>,
    /// Items that exist and were left as they are (not verified: they are not the backup's).
    left_alone: Mutex<std::collections::HashSet<usize>>,
    /// Items this restore created.
    created: Mutex<std::collections::HashSet<usize>>,
    report: Arc<Mutex<Report>>,
}

/// Carries out `plan`, updating `report` as it goes; the report at the end is also returned.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    client: Client,
    plan: &Plan,
    items: &[Item],
    session: Arc<Indexed<ReadWork>>,
    opts: &ApplyOptions,
    log: &RunLog,
    cancel: &CancelToken,
    report: Arc<Mutex<Report>>,
) -> Result<Report, ApplyError> {
    let spec = &opts.spec;
    let status_types = spec.restore_status.as_ref().and_then(|s| {
        (!s.included_resources.is_empty())
            .then(|| {
                IncludesExcludes::new(s.included_resources.clone(), s.excluded_resources.clone())
                    .ok()
            })
            .flatten()
    });
    let run = Run {
        client,
        plan,
        items,
        session,
        opts,
        prepare: PrepareOptions {
            backup: opts.backup.clone(),
            restore: opts.restore.clone(),
            namespace_mapping: spec.namespace_mapping.clone(),
            preserve_node_ports: spec.preserve_node_ports == Some(true),
            keep_status: false,
            storage_class_mapping: spec.storage_class_mapping.clone(),
            volume_names: plan.volume_names.clone(),
        },
        status_types,
        pacer: Pacer::new(opts.qps),
        log,
        uids: Mutex::new(HashMap::new()),
        left_alone: Mutex::new(std::collections::HashSet::new()),
        created: Mutex::new(std::collections::HashSet::new()),
        report,
    };
    {
        let mut r = run.report.lock().unwrap();
        r.total = plan.total();
        for (i, why) in &plan.skipped {
            r.skip(why);
            r.done += 1;
            log.info(&format!("skipped {}: {why}", items[*i].path()));
        }
        for (i, why) in &plan.unreadable {
            r.done += 1;
            log.error(&format!("{}: {why}", items[*i].path()));
            r.error(run.problem(*i, RestoreProblemKind::ReadFailed, why.clone()));
        }
    }
    run.bare_namespaces().await;
    for wave in &plan.waves {
        if cancel.is_canceled() {
            return Err(ApplyError::Canceled);
        }
        run.wave(&wave.items, cancel).await?;
        if wave.group_resource == "customresourcedefinitions.apiextensions.k8s.io"
            && !spec.is_dry_run()
        {
            run.wait_established(&wave.items).await;
        }
        if wave.group_resource == "persistentvolumeclaims" && !spec.is_dry_run() {
            run.volume_data(&wave.items, cancel).await?;
        }
    }
    if !spec.is_dry_run() && spec.verify != Some(false) {
        if cancel.is_canceled() {
            return Err(ApplyError::Canceled);
        }
        let (mut verification, differences) = run.verify(cancel).await?;
        let mut r = run.report.lock().unwrap();
        for v in &r.volumes {
            match v.outcome {
                VolumeOutcome::Completed => verification.volumes_verified += 1,
                VolumeOutcome::Failed | VolumeOutcome::Canceled | VolumeOutcome::Pending => {
                    verification.volumes_failed += 1
                }
                VolumeOutcome::Skipped => {}
            }
        }
        verification.volume_files_verified = r.volume_files_verified;
        r.verification = Some(verification);
        r.results.differences = differences;
    }
    let report = run.report.lock().unwrap().clone();
    Ok(report)
}

/// The kube API of an object's type, from its `apiVersion` and `kind` and the plural of its
/// group-resource.
fn api_resource(group_resource: &str, object: &Value) -> ApiResource {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let plural = group_resource
        .split_once('.')
        .map_or(group_resource, |(r, _)| r);
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .into(),
        plural: plural.into(),
    }
}

/// Whether an error is worth sending the request again.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// For an existing service account: the merge patch adding the backed-up `secrets` and
/// `imagePullSecrets` it lacks (`None` when it has them all), as Velero merges accounts.
fn merge_account(desired: &Value, live: &Value) -> Option<Value> {
    let mut patch = serde_json::Map::new();
    for key in ["secrets", "imagePullSecrets"] {
        let have: Vec<Value> = live
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut merged = have.clone();
        for r in desired
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !have.iter().any(|h| h.get("name") == r.get("name")) {
                merged.push(r.clone());
            }
        }
        if merged.len() != have.len() {
            patch.insert(key.into(), Value::Array(merged));
        }
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

/// For an existing volume left `Released` by the deleted claim the restore recreates: the
/// patch that frees it (the old claim's UID and version go), so the restored claim binds it.
fn release_volume(desired: &Value, live: &Value) -> Option<Value> {
    let phase = live.pointer("/status/phase").and_then(Value::as_str);
    let same_claim = ["namespace", "name"].iter().all(|k| {
        live.pointer(&format!("/spec/claimRef/{k}"))
            == desired.pointer(&format!("/spec/claimRef/{k}"))
    });
    let stale = live.pointer("/spec/claimRef/uid").is_some();
    (phase == Some("Released") && same_claim && stale)
        .then(|| json!({"spec": {"claimRef": {"uid": null, "resourceVersion": null}}}))
}

/// Keys of a config map's or secret's `data` / `binaryData` that the live object has and the
/// backup does not: for those kinds, an extra key is a difference.
/// As `(field, key)`.
fn extra_data_keys<'a>(desired: &Value, live: &'a Value) -> Vec<(&'static str, &'a str)> {
    let mut out = Vec::new();
    for field in ["data", "binaryData"] {
        if let Some(Value::Object(live_data)) = live.get(field) {
            for key in live_data.keys() {
                if desired.get(field).and_then(|d| d.get(key)).is_none() {
                    out.push((field, key.as_str()));
                }
            }
        }
    }
    out
}

/// The kind a 404 says is missing (`namespaces` when the object's namespace is).
fn not_found_kind(e: &kube::Error) -> Option<&str> {
    match e {
        kube::Error::Api(s) => s.details.as_ref().map(|d| d.kind.as_str()),
        _ => None,
    }
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl Run<'_> {
    fn problem(&self, i: usize, kind: RestoreProblemKind, message: String) -> RestoreItem {
        let item = &self.items[i];
        RestoreItem {
            kind,
            resource: item.group_resource.clone(),
            namespace: item
                .namespace
                .as_ref()
                .map(|n| target_namespace(&self.opts.spec, n).to_string()),
            name: item.name.clone(),
            message,
        }
    }

    /// The outcome of an item that could not be restored.
    fn failed(&self, i: usize, kind: RestoreProblemKind, message: String) -> Outcome {
        Outcome::Failed(Box::new(self.problem(i, kind, message)))
    }

    fn keep_status(&self, group_resource: &str) -> bool {
        self.status_types
            .as_ref()
            .is_some_and(|t| t.should_include(group_resource))
    }

    fn api(
        &self,
        group_resource: &str,
        namespace: Option<&str>,
        object: &Value,
    ) -> Api<DynamicObject> {
        let ar = api_resource(group_resource, object);
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// Sends a request, again while it fails transiently.
    async fn send<T, F, Fut>(&self, mut request: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            self.pacer.wait().await;
            match request().await {
                Err(e) if attempt < ATTEMPTS && transient(&e) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Makes the target namespaces that the backup has no object for.
    async fn bare_namespaces(&self) {
        let pp = PostParams {
            dry_run: self.opts.spec.is_dry_run(),
            ..PostParams::default()
        };
        for ns in &self.plan.bare_namespaces {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": ns,
                "labels": {LABEL_BACKUP: self.opts.backup, LABEL_RESTORE: self.opts.restore},
            }});
            let api = self.api("namespaces", None, &object);
            let Ok(body) = serde_json::from_value::<DynamicObject>(object) else {
                continue;
            };
            match self.send(|| api.create(&pp, &body)).await {
                Ok(_) => self.log.info(&format!("created namespace {ns}")),
                Err(e) if code(&e) == Some(409) => {}
                Err(e) => {
                    let message = format!(
                        "creating the namespace failed, so its objects cannot be restored: {}",
                        crate::collect::describe(&e)
                    );
                    self.log.error(&format!("namespace {ns}: {message}"));
                    self.report.lock().unwrap().error(RestoreItem {
                        kind: RestoreProblemKind::CreateFailed,
                        resource: "namespaces".into(),
                        namespace: None,
                        name: ns.clone(),
                        message,
                    });
                }
            }
        }
    }

    /// Has the claims' data written (before the pods and workloads of later waves), and
    /// records each volume's outcome.
    async fn volume_data(&self, wave: &[usize], cancel: &CancelToken) -> Result<(), ApplyError> {
        let Some(hook) = self.opts.volume_data.clone() else {
            return Ok(());
        };
        let claims: Vec<RestoredClaim> = {
            let uids = self.uids.lock().unwrap();
            let left_alone = self.left_alone.lock().unwrap();
            let created = self.created.lock().unwrap();
            wave.iter()
                .filter(|i| uids.contains_key(i) || left_alone.contains(i))
                .map(|&i| {
                    let item = &self.items[i];
                    let ns = item.namespace.clone().unwrap_or_default();
                    RestoredClaim {
                        namespace: target_namespace(&self.opts.spec, &ns).to_string(),
                        backup_namespace: ns,
                        name: item.name.clone(),
                        created: created.contains(&i),
                    }
                })
                .collect()
        };
        let lines = hook(claims).await;
        if cancel.is_canceled() {
            return Err(ApplyError::Canceled);
        }
        let mut report = self.report.lock().unwrap();
        for line in &lines {
            let claim = line.pvc.clone().unwrap_or_default();
            let path = format!("volume data of {}/{claim}", line.namespace);
            match line.outcome {
                VolumeOutcome::Completed => self.log.info(&format!("{path}: written and verified")),
                VolumeOutcome::Skipped => self.log.info(&format!(
                    "{path}: skipped ({})",
                    line.reason.as_deref().unwrap_or("")
                )),
                _ => {
                    let why = line.reason.clone().unwrap_or_else(|| "not written".into());
                    self.log.error(&format!("{path}: {why}"));
                    report.error(RestoreItem {
                        kind: RestoreProblemKind::VolumeFailed,
                        resource: "persistentvolumeclaims".into(),
                        namespace: Some(line.namespace.clone()),
                        name: claim,
                        message: format!("volume data: {why}"),
                    });
                    // The claim itself was restored: the error is its data's, not one more item.
                    report.counts.failed -= 1;
                }
            }
        }
        report.volume_files_verified = lines.iter().filter_map(|l| l.verified_files).sum();
        report.volumes = lines;
        Ok(())
    }

    /// Restores the items of one wave, a few at a time.
    async fn wave(&self, wave: &[usize], cancel: &CancelToken) -> Result<(), ApplyError> {
        for batch in wave.chunks(READ_BATCH) {
            if cancel.is_canceled() {
                return Err(ApplyError::Canceled);
            }
            let objects = self.read_batch(batch).await?;
            let results: Vec<(usize, Outcome)> = stream::iter(objects)
                .map(|(i, object)| async move {
                    let outcome = match object {
                        Ok(object) => self.restore_one(i, object).await,
                        Err(why) => self.failed(i, RestoreProblemKind::ReadFailed, why),
                    };
                    (i, outcome)
                })
                .buffer_unordered(self.opts.concurrency.max(1))
                .collect()
                .await;
            let mut report = self.report.lock().unwrap();
            for (i, outcome) in results {
                report.done += 1;
                let path = self.items[i].path();
                match outcome {
                    Outcome::Created(uid) => {
                        report.counts.created += 1;
                        self.uids.lock().unwrap().insert(i, uid);
                        self.created.lock().unwrap().insert(i);
                    }
                    Outcome::Updated(uid) => {
                        report.counts.updated += 1;
                        self.log.info(&format!("updated {path}"));
                        self.uids.lock().unwrap().insert(i, uid);
                    }
                    Outcome::Unchanged(uid) => {
                        report.counts.unchanged += 1;
                        self.uids.lock().unwrap().insert(i, uid);
                    }
                    Outcome::Skipped(why) => {
                        self.log.info(&format!("skipped {path}: {why}"));
                        report.skip(&why);
                    }
                    Outcome::Warned(why, problem, uid) => {
                        self.log.warn(&format!("{path}: {}", problem.message));
                        report.skip(&why);
                        report.warn(*problem);
                        // It exists: its dependents may point at it.
                        self.uids.lock().unwrap().insert(i, uid);
                        self.left_alone.lock().unwrap().insert(i);
                    }
                    Outcome::Failed(problem) => {
                        self.log.error(&format!("{path}: {}", problem.message));
                        report.error(*problem);
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads items from the repository (a blocking task). An object that cannot be read is
    /// that item's error (`Err` with why); the repository failing for now stops the run.
    #[allow(clippy::type_complexity)]
    async fn read_batch(
        &self,
        batch: &[usize],
    ) -> Result<Vec<(usize, Result<Value, String>)>, ApplyError> {
        let session = self.session.clone();
        let items: Vec<(usize, Item)> = batch.iter().map(|&i| (i, self.items[i].clone())).collect();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items {
                match read_item(&session, &item) {
                    Ok(o) => out.push((i, Ok(o))),
                    Err(SourceError::Repo(e)) if e.class() == ErrorClass::Transient => {
                        return Err(SourceError::Repo(e));
                    }
                    Err(e) => out.push((i, Err(e.to_string()))),
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| ApplyError::Join(e.to_string()))?
        .map_err(ApplyError::Source)
    }

    /// What the restore sends for item `i`: prepared, modified, owners re-pointed. `Err` is
    /// the outcome when it is not to be created.
    fn desired(&self, i: usize, object: Value) -> Result<Value, Outcome> {
        let gr = &self.items[i].group_resource;
        let opts = PrepareOptions {
            keep_status: self.keep_status(gr),
            ..self.prepare.clone()
        };
        let item = &self.items[i];
        let body_name = object.pointer("/metadata/name").and_then(Value::as_str);
        if body_name != Some(item.name.as_str()) {
            return Err(self.failed(
                i,
                RestoreProblemKind::ReadFailed,
                format!("the object in the backup is named {body_name:?}, not as its path says"),
            ));
        }
        let mut object = match prepare(gr, object, &opts) {
            Prepared::Create(o) => o,
            Prepared::Skip(why) => return Err(Outcome::Skipped(why.to_string())),
        };
        // Resource modifiers see the object in its backed-up namespace (as Velero's do); then
        // it goes where the path and the mapping say, whatever a rule did to its metadata.
        let target = item
            .namespace
            .as_ref()
            .map(|ns| target_namespace(&self.opts.spec, ns).to_string());
        if let Some(modify) = &self.opts.modifier {
            if let (Some(ns), Some(meta)) = (&item.namespace, object.get_mut("metadata")) {
                meta["namespace"] = Value::String(ns.clone());
            }
            if let Err(e) = modify(gr, &mut object) {
                return Err(self.failed(i, RestoreProblemKind::ModifierFailed, e));
            }
        }
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            match target {
                Some(ns) => meta.insert("namespace".into(), Value::String(ns)),
                None => meta.remove("namespace"),
            };
            if gr != "namespaces" && gr != "persistentvolumes" {
                meta.insert("name".into(), Value::String(item.name.clone()));
            }
        }
        self.repoint_owners(i, &mut object);
        Ok(object)
    }

    /// Owner references to restored objects get their new UIDs; others are dropped (the
    /// garbage collector would delete an object whose owner does not exist).
    fn repoint_owners(&self, i: usize, object: &mut Value) {
        let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        let Some(Value::Array(refs)) = meta.remove("ownerReferences") else {
            return;
        };
        let ns = self.items[i]
            .namespace
            .as_ref()
            .map(|n| target_namespace(&self.opts.spec, n).to_string());
        let uids = self.uids.lock().unwrap();
        let kept: Vec<Value> = refs
            .into_iter()
            .filter_map(|mut r| {
                let av = r.get("apiVersion")?.as_str()?;
                let group = av.rsplit_once('/').map_or("", |(g, _)| g).to_string();
                let kind = r.get("kind")?.as_str()?.to_string();
                let name = r.get("name")?.as_str()?.to_string();
                let owner = self
                    .plan
                    .owners
                    .get(&(group.clone(), kind.clone(), ns.clone(), name.clone()))
                    .or_else(|| self.plan.owners.get(&(group, kind, None, name)))?;
                let uid = uids.get(owner)?;
                r["uid"] = Value::String(uid.clone());
                Some(r)
            })
            .collect();
        if !kept.is_empty() {
            meta.insert("ownerReferences".into(), Value::Array(kept));
        }
    }

    async fn restore_one(&self, i: usize, object: Value) -> Outcome {
        let item = &self.items[i];
        let gr = item.group_resource.as_str();
        let desired = match self.desired(i, object) {
            Ok(d) => d,
            Err(outcome) => return outcome,
        };
        let ns = desired
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = desired
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(&item.name)
            .to_string();
        let api = self.api(gr, ns.as_deref(), &desired);
        let dry_run = self.opts.spec.is_dry_run();
        let body: DynamicObject = match serde_json::from_value(desired.clone()) {
            Ok(b) => b,
            Err(e) => {
                return self.failed(
                    i,
                    RestoreProblemKind::Other,
                    format!("not a Kubernetes object: {e}"),
                )
            }
        };
        let pp = PostParams {
            dry_run,
            ..PostParams::default()
        };
        let keep_status = self.keep_status(gr);
        match self.send(|| api.create(&pp, &body)).await {
            Ok(created) => {
                if keep_status && !dry_run {
                    if let Some(status) = desired.get("status") {
                        let patch = Patch::Merge(json!({ "status": status }));
                        let pp = PatchParams::default();
                        if let Err(e) = self.send(|| api.patch_status(&name, &pp, &patch)).await {
                            let message =
                                format!("writing its status: {}", crate::collect::describe(&e));
                            self.log.warn(&format!("{}: {message}", item.path()));
                            let problem = self.problem(i, RestoreProblemKind::Other, message);
                            self.report.lock().unwrap().warn(problem);
                        }
                    }
                }
                Outcome::Created(created.metadata.uid.unwrap_or_default())
            }
            Err(e) if code(&e) == Some(409) => {
                match self.existing(i, &api, &name, &desired).await {
                    Some(outcome) => outcome,
                    // It was being deleted and is gone now: once more.
                    None => match self.send(|| api.create(&pp, &body)).await {
                        Ok(created) => Outcome::Created(created.metadata.uid.unwrap_or_default()),
                        Err(e) => self.failed(
                            i,
                            RestoreProblemKind::CreateFailed,
                            crate::collect::describe(&e),
                        ),
                    },
                }
            }
            Err(e) if code(&e) == Some(404) && dry_run && self.plan.crds.contains(gr) => {
                // Its CRD would have been created first.
                Outcome::Created(String::new())
            }
            Err(e) if code(&e) == Some(404) => {
                let message = match (&ns, dry_run) {
                    (Some(ns), true)
                        if self.plan.bare_namespaces.contains(ns) || self.creates_namespace(ns) =>
                    {
                        // Not an error: the namespace would have been created first.
                        return Outcome::Created(String::new());
                    }
                    (Some(ns), _) if not_found_kind(&e) == Some("namespaces") => {
                        format!("its namespace {ns} does not exist")
                    }
                    _ => format!(
                        "the cluster has no API for {} {} ({})",
                        desired
                            .get("apiVersion")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        desired.get("kind").and_then(Value::as_str).unwrap_or(""),
                        crate::collect::describe(&e)
                    ),
                };
                self.failed(i, RestoreProblemKind::ApiMissing, message)
            }
            Err(e) => self.failed(
                i,
                RestoreProblemKind::CreateFailed,
                crate::collect::describe(&e),
            ),
        }
    }

    /// Whether the restore creates this target namespace from the backup's object.
    fn creates_namespace(&self, ns: &str) -> bool {
        self.plan.waves.iter().any(|w| {
            w.group_resource == "namespaces"
                && w.items
                    .iter()
                    .any(|&i| target_namespace(&self.opts.spec, &self.items[i].name) == ns)
        })
    }

    /// An object that exists already: the same (or made by an earlier run of this restore),
    /// patched, or left with a warning. `None` when it was being deleted and is now gone (the
    /// caller creates it again).
    async fn existing(
        &self,
        i: usize,
        api: &Api<DynamicObject>,
        name: &str,
        desired: &Value,
    ) -> Option<Outcome> {
        let gr = self.items[i].group_resource.as_str();
        let live = match self.send(|| api.get(name)).await {
            Ok(l) => l,
            Err(e) if code(&e) == Some(404) => return None,
            Err(e) => {
                return Some(self.failed(
                    i,
                    RestoreProblemKind::CreateFailed,
                    format!(
                        "it exists, and reading it failed: {}",
                        crate::collect::describe(&e)
                    ),
                ))
            }
        };
        if live.metadata.deletion_timestamp.is_some() {
            return self.wait_gone(i, api, name).await;
        }
        let uid = live.metadata.uid.clone().unwrap_or_default();
        let ours = live
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_RESTORE))
            == Some(&self.opts.restore);
        let live = serde_json::to_value(&live).unwrap_or(Value::Null);
        let dry_run = self.opts.spec.is_dry_run();
        let pp = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        // Velero's rules for two kinds, whatever the policy: a service account gets the
        // backed-up secrets and pull secrets added to the ones the cluster gave it; a
        // released volume whose claim is being restored is freed for it.
        let special = match gr {
            "serviceaccounts" => merge_account(desired, &live),
            "persistentvolumes" => release_volume(desired, &live),
            _ => None,
        };
        if let Some(patch) = special {
            let body = Patch::Merge(patch);
            return Some(match self.send(|| api.patch(name, &pp, &body)).await {
                Ok(_) => {
                    self.log
                        .info(&format!("merged into {}", self.items[i].path()));
                    Outcome::Updated(uid)
                }
                Err(e) => self.failed(
                    i,
                    RestoreProblemKind::CreateFailed,
                    format!(
                        "it exists; merging into it failed: {}",
                        crate::collect::describe(&e)
                    ),
                ),
            });
        }
        let with_status = self.keep_status(gr);
        let mut diff = differences(desired, &live, with_status);
        let extra = extra_data_keys(desired, &live);
        diff.extend(
            extra.iter().map(|(field, key)| {
                format!("/{field}/{}", key.replace('~', "~0").replace('/', "~1"))
            }),
        );
        if diff.is_empty() {
            return Some(if ours {
                // Created by an earlier run of this restore (the controller restarted).
                Outcome::Created(uid)
            } else {
                Outcome::Unchanged(uid)
            });
        }
        let fields = diff.join(", ");
        Some(
            match self.opts.spec.existing_resource_policy.unwrap_or_default() {
                ExistingResourcePolicy::None => Outcome::Warned(
                    "exists and differs (existingResourcePolicy none)".into(),
                    Box::new(self.problem(
                        i,
                        RestoreProblemKind::ExistsDifferent,
                        format!("exists and differs in {fields}; left as it is"),
                    )),
                    uid,
                ),
                ExistingResourcePolicy::Update => {
                    let mut patch = comparable(desired, false);
                    if let Some(labels) = desired.pointer("/metadata/labels") {
                        patch["metadata"]["labels"] = labels.clone();
                    }
                    // Keys of a config map's or secret's data that the backup does not have go.
                    for (field, key) in &extra {
                        patch[*field][*key] = Value::Null;
                    }
                    let body = Patch::Merge(patch);
                    match self.send(|| api.patch(name, &pp, &body)).await {
                        Ok(_) => Outcome::Updated(uid),
                        Err(e) => self.failed(
                            i,
                            RestoreProblemKind::CreateFailed,
                            format!(
                                "exists and differs in {fields}; patching it failed: {}",
                                crate::collect::describe(&e)
                            ),
                        ),
                    }
                }
            },
        )
    }

    /// Waits (at most [`DELETION_WAIT`]) for an object being deleted to be gone; `None` once it
    /// is (to be created again), else the failure.
    async fn wait_gone(&self, i: usize, api: &Api<DynamicObject>, name: &str) -> Option<Outcome> {
        self.log.info(&format!(
            "{} is being deleted; waiting for it to go",
            self.items[i].path()
        ));
        let deadline = tokio::time::Instant::now() + DELETION_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(None) = api.get_opt(name).await {
                return None;
            }
        }
        Some(self.failed(
            i,
            RestoreProblemKind::CreateFailed,
            format!(
                "an object of that name is being deleted and was still there after {}s",
                DELETION_WAIT.as_secs()
            ),
        ))
    }

    /// Waits until every restored CRD is Established, so that its objects can be created.
    async fn wait_established(&self, wave: &[usize]) {
        let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + CRD_ESTABLISHED;
        for &i in wave {
            let name = &self.items[i].name;
            loop {
                let established = api.get_opt(name).await.ok().flatten().is_some_and(|crd| {
                    crd.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
                if established {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    self.log.warn(&format!(
                        "CRD {name} was not Established within {}s; creating its objects anyway",
                        CRD_ESTABLISHED.as_secs()
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }

    /// Reads every restored object back and compares it with what the restore sent: a LIST
    /// (in pages) per type and target namespace; each page's restored objects are read from
    /// the repository and prepared again then, so memory holds a page at a time.
    async fn verify(
        &self,
        cancel: &CancelToken,
    ) -> Result<(RestoreVerification, Vec<RestoreItem>), ApplyError> {
        let mut all = Vec::new();
        let restored: Vec<usize> = {
            let uids = self.uids.lock().unwrap();
            let left = self.left_alone.lock().unwrap();
            let mut v: Vec<usize> = uids.keys().copied().filter(|i| !left.contains(i)).collect();
            v.sort();
            v
        };
        // By type and target namespace; names to items.
        let mut groups: BTreeMap<(String, Option<String>), HashMap<String, usize>> =
            BTreeMap::new();
        for i in restored {
            let item = &self.items[i];
            let ns = item
                .namespace
                .as_ref()
                .map(|n| target_namespace(&self.opts.spec, n).to_string());
            let name = match item.group_resource.as_str() {
                "namespaces" => target_namespace(&self.opts.spec, &item.name).to_string(),
                "persistentvolumes" => self
                    .plan
                    .volume_names
                    .get(&item.name)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| item.name.clone()),
                _ => item.name.clone(),
            };
            groups
                .entry((item.group_resource.clone(), ns))
                .or_default()
                .insert(name, i);
        }
        let mut v = RestoreVerification::default();
        for ((gr, ns), mut members) in groups {
            if cancel.is_canceled() {
                return Err(ApplyError::Canceled);
            }
            let Some(&first) = members.values().next() else {
                continue;
            };
            // The API of the type, from one of its objects.
            let sample = match self.read_batch(&[first]).await?.pop() {
                Some((_, Ok(o))) => o,
                _ => continue,
            };
            let api = self.api(&gr, ns.as_deref(), &sample);
            let with_status = self.keep_status(&gr);
            let mut continue_token: Option<String> = None;
            loop {
                let mut lp = ListParams::default().limit(500);
                if let Some(t) = &continue_token {
                    lp = lp.continue_token(t);
                }
                let page = match self.send(|| api.list(&lp)).await {
                    Ok(p) => p,
                    Err(e) => {
                        let why = crate::collect::describe(&e);
                        self.log
                            .warn(&format!("verifying {gr}: listing failed: {why}"));
                        v.unverified += members.len() as u64;
                        members.clear();
                        break;
                    }
                };
                let mut found: Vec<(usize, DynamicObject)> = Vec::new();
                for live in page.items {
                    let name = live.metadata.name.clone().unwrap_or_default();
                    if let Some(i) = members.remove(&name) {
                        found.push((i, live));
                    }
                }
                let indexes: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
                let objects: HashMap<usize, Result<Value, String>> =
                    self.read_batch(&indexes).await?.into_iter().collect();
                for (i, live) in found {
                    let Some(Ok(object)) = objects.get(&i).cloned() else {
                        v.unverified += 1;
                        continue;
                    };
                    let Ok(desired) = self.desired(i, object) else {
                        v.unverified += 1;
                        continue;
                    };
                    v.checked += 1;
                    let live = serde_json::to_value(&live).unwrap_or(Value::Null);
                    let diff = differences(&desired, &live, with_status);
                    if diff.is_empty() {
                        v.matched += 1;
                    } else {
                        v.differed += 1;
                        let message = format!("differs from the backup in {}", diff.join(", "));
                        self.log
                            .warn(&format!("verify {}: {message}", self.items[i].path()));
                        let problem = self.problem(i, RestoreProblemKind::Differs, message);
                        if v.first_differences.len() < FIRST_PROBLEMS {
                            v.first_differences.push(problem.clone());
                        }
                        all.push(problem);
                    }
                }
                continue_token = page.metadata.continue_.filter(|t| !t.is_empty());
                if continue_token.is_none() || members.is_empty() {
                    break;
                }
            }
            for (_, i) in members {
                v.checked += 1;
                v.missing += 1;
                self.log.warn(&format!(
                    "verify {}: not found after the restore",
                    self.items[i].path()
                ));
                all.push(self.problem(
                    i,
                    RestoreProblemKind::Differs,
                    "not found after the restore".into(),
                ));
            }
        }
        Ok((v, all))
    }
}
