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
    RestoreVerification,
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
use stowage_core::repo::session::{Indexed, ReadWork};

/// The most problems of each kind kept in the status.
pub const FIRST_PROBLEMS: usize = 10;
/// Items read from the repository at once (and so held in memory at once).
const READ_BATCH: usize = 64;
/// How long a created CRD may take to become Established.
const CRD_ESTABLISHED: Duration = Duration::from_secs(60);
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
}

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
    Warned(String, Box<RestoreItem>),
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
    }
    if !spec.is_dry_run() && spec.verify != Some(false) {
        if cancel.is_canceled() {
            return Err(ApplyError::Canceled);
        }
        let (verification, differences) = run.verify().await?;
        let mut r = run.report.lock().unwrap();
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
                Err(e) => self.log.warn(&format!(
                    "creating namespace {ns}: {}",
                    crate::collect::describe(&e)
                )),
            }
        }
    }

    /// Restores the items of one wave, a few at a time.
    async fn wave(&self, wave: &[usize], cancel: &CancelToken) -> Result<(), ApplyError> {
        for batch in wave.chunks(READ_BATCH) {
            if cancel.is_canceled() {
                return Err(ApplyError::Canceled);
            }
            let objects = self.read_batch(batch).await?;
            let results: Vec<(usize, Outcome)> = stream::iter(objects)
                .map(|(i, object)| async move { (i, self.restore_one(i, object).await) })
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
                    Outcome::Warned(why, problem) => {
                        self.log.warn(&format!("{path}: {}", problem.message));
                        report.skip(&why);
                        report.warn(*problem);
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

    /// Reads items from the repository (a blocking task).
    async fn read_batch(&self, batch: &[usize]) -> Result<Vec<(usize, Value)>, ApplyError> {
        let session = self.session.clone();
        let items: Vec<(usize, Item)> = batch.iter().map(|&i| (i, self.items[i].clone())).collect();
        tokio::task::spawn_blocking(move || {
            items
                .into_iter()
                .map(|(i, item)| Ok((i, read_item(&session, &item)?)))
                .collect::<Result<Vec<_>, SourceError>>()
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
        let mut object = match prepare(gr, object, &opts) {
            Prepared::Create(o) => o,
            Prepared::Skip(why) => return Err(Outcome::Skipped(why.to_string())),
        };
        if let Some(modify) = &self.opts.modifier {
            if let Err(e) = modify(gr, &mut object) {
                return Err(self.failed(i, RestoreProblemKind::ModifierFailed, e));
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
                            self.log.warn(&format!(
                                "{}: writing its status: {}",
                                item.path(),
                                crate::collect::describe(&e)
                            ));
                        }
                    }
                }
                Outcome::Created(created.metadata.uid.unwrap_or_default())
            }
            Err(e) if code(&e) == Some(409) => self.existing(i, &api, &name, &desired).await,
            Err(e) if code(&e) == Some(404) => {
                let message = match (&ns, dry_run) {
                    (Some(ns), true)
                        if self.plan.bare_namespaces.contains(ns) || self.creates_namespace(ns) =>
                    {
                        // Not an error: the namespace would have been created first.
                        return Outcome::Created(String::new());
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
    /// patched, or left with a warning.
    async fn existing(
        &self,
        i: usize,
        api: &Api<DynamicObject>,
        name: &str,
        desired: &Value,
    ) -> Outcome {
        let live = match self.send(|| api.get(name)).await {
            Ok(l) => l,
            Err(e) => {
                return self.failed(
                    i,
                    RestoreProblemKind::CreateFailed,
                    format!(
                        "it exists, and reading it failed: {}",
                        crate::collect::describe(&e)
                    ),
                )
            }
        };
        let uid = live.metadata.uid.clone().unwrap_or_default();
        let ours = live
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_RESTORE))
            == Some(&self.opts.restore);
        let live = serde_json::to_value(&live).unwrap_or(Value::Null);
        let with_status = self.keep_status(&self.items[i].group_resource);
        let diff = differences(desired, &live, with_status);
        if diff.is_empty() {
            return if ours {
                // Created by an earlier run of this restore (the controller restarted).
                Outcome::Created(uid)
            } else {
                Outcome::Unchanged(uid)
            };
        }
        let fields = diff.join(", ");
        match self.opts.spec.existing_resource_policy.unwrap_or_default() {
            ExistingResourcePolicy::None => Outcome::Warned(
                "exists and differs (existingResourcePolicy none)".into(),
                Box::new(self.problem(
                    i,
                    RestoreProblemKind::ExistsDifferent,
                    format!("exists and differs in {fields}; left as it is"),
                )),
            ),
            ExistingResourcePolicy::Update => {
                let mut patch = comparable(desired, false);
                if let Some(labels) = desired.pointer("/metadata/labels") {
                    patch["metadata"]["labels"] = labels.clone();
                }
                let pp = PatchParams {
                    dry_run: self.opts.spec.is_dry_run(),
                    ..PatchParams::default()
                };
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
        }
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

    /// Reads every restored object back and compares it with what the restore sent.
    async fn verify(&self) -> Result<(RestoreVerification, Vec<RestoreItem>), ApplyError> {
        let mut all = Vec::new();
        let restored: Vec<usize> = {
            let uids = self.uids.lock().unwrap();
            let mut v: Vec<usize> = uids.keys().copied().collect();
            v.sort();
            v
        };
        // By type and target namespace: one LIST (in pages) each.
        let mut groups: BTreeMap<(String, Option<String>), Vec<usize>> = BTreeMap::new();
        for i in restored {
            let item = &self.items[i];
            let ns = item
                .namespace
                .as_ref()
                .map(|n| target_namespace(&self.opts.spec, n).to_string());
            groups
                .entry((item.group_resource.clone(), ns))
                .or_default()
                .push(i);
        }
        let mut v = RestoreVerification::default();
        for ((gr, ns), members) in groups {
            let objects = self.read_batch(&members).await?;
            let mut desired_by_name: HashMap<String, (usize, Value)> = HashMap::new();
            for (i, object) in objects {
                if let Ok(d) = self.desired(i, object) {
                    let name = d
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    desired_by_name.insert(name, (i, d));
                }
            }
            let Some((_, (_, sample))) = desired_by_name.iter().next() else {
                continue;
            };
            let api = self.api(&gr, ns.as_deref(), sample);
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
                        self.log.warn(&format!(
                            "verifying {gr}: listing failed: {}",
                            crate::collect::describe(&e)
                        ));
                        break;
                    }
                };
                for live in page.items {
                    let name = live.metadata.name.clone().unwrap_or_default();
                    let Some((i, desired)) = desired_by_name.remove(&name) else {
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
                if continue_token.is_none() {
                    break;
                }
            }
            for (_, (i, _)) in desired_by_name {
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
