//! The controller's half of volume data: it decides which volumes a Backup copies
//! ([`crate::volumes::select`]), makes one work item per volume for the agent of the node that
//! mounts it, and waits for the items to end, failing those whose agent has stopped reporting.
//! Restores use the same waiting ([`wait_items`]).
//!
//! Work items are named after their owner and claim, so a controller that restarts in the
//! middle finds the items it made (creating them again is a no-op) and waits for them again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use stowage_core::cancel::CancelToken;

use super::Context;
use crate::agent::HEARTBEAT_PREFIX;
use crate::api::{
    labels, Backup, ObjectRef, VolumeBackup, VolumeBackupSpec, VolumeOutcome, VolumePhase,
    VolumeResult, VolumeWork, VolumeWorkStatus, NODE_LABEL, OWNER_UID_LABEL, VOLUME_STATUS_MEMBERS,
};
use crate::run::RunError;
use crate::validate::ValidatedBackup;
use crate::volumes::{self, Chosen, Inputs, Selection};

/// How often the work items are looked at while waiting.
const POLL: Duration = Duration::from_secs(2);
/// Volume lines kept in a status (all of them are in the repository).
pub const STATUS_VOLUMES: usize = 200;

/// A DNS-label-safe name for a work item of `owner` for the claim `pvc_uid`: readable, and the
/// same every time.
pub fn item_name(prefix: &str, owner: &str, pvc_uid: &str) -> String {
    let hash = blake3::hash(format!("{owner}\0{pvc_uid}").as_bytes()).to_hex();
    let owner: String = owner.chars().take(40).collect();
    let owner = owner.trim_end_matches(['-', '.']);
    format!("{prefix}{owner}-{}", &hash[..10])
}

/// Lists everything of a kind, page by page.
async fn list_all<K>(api: &Api<K>) -> Result<Vec<K>, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut lp = ListParams::default().limit(500);
    loop {
        let page = api.list(&lp).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(page.items);
        match next {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(out),
        }
    }
}

fn transient(what: &str, e: kube::Error) -> RunError {
    RunError::Transient(format!("{what}: {}", crate::collect::describe(&e)))
}

/// Decides which volumes of the Backup's pods are copied.
async fn selection(
    ctx: &Context,
    backup: &Backup,
    validated: &ValidatedBackup,
) -> Result<Selection, RunError> {
    let pods: Vec<Pod> = list_all(&Api::<Pod>::all(ctx.client.clone()))
        .await
        .map_err(|e| transient("listing pods", e))?
        .into_iter()
        .filter(|p| {
            let ns = p.metadata.namespace.as_deref().unwrap_or_default();
            let labels = p.metadata.labels.clone().unwrap_or_default();
            validated.filter.namespace_included(ns)
                && labels.get(labels::EXCLUDE_FROM_BACKUP).map(String::as_str) != Some("true")
                && validated.filter.matches_labels(&labels)
        })
        .collect();
    if pods.is_empty() {
        return Ok(Selection::default());
    }
    let claims = list_all(&Api::<PersistentVolumeClaim>::all(ctx.client.clone()))
        .await
        .map_err(|e| transient("listing claims", e))?
        .into_iter()
        .map(|c| {
            (
                (
                    c.metadata.namespace.clone().unwrap_or_default(),
                    c.metadata.name.clone().unwrap_or_default(),
                ),
                c,
            )
        })
        .collect();
    let volumes = list_all(&Api::<PersistentVolume>::all(ctx.client.clone()))
        .await
        .map_err(|e| transient("listing persistent volumes", e))?
        .into_iter()
        .map(|v| (v.metadata.name.clone().unwrap_or_default(), v))
        .collect();
    Ok(volumes::select(&Inputs {
        pods: &pods,
        claims: &claims,
        volumes: &volumes,
        default_to_fs_backup: backup.spec.default_volumes_to_fs_backup.unwrap_or(false),
        policies: &backup.spec.volume_policies,
    }))
}

fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// Creates a work item unless it exists (made by an earlier run of the same owner).
pub(super) async fn create_item<K>(api: &Api<K>, item: &K) -> Result<(), RunError>
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), item).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(transient("creating a work item", e)),
    }
}

/// Copies the Backup's volumes: returns a line per volume, ended. Canceling `cancel` cancels
/// the items still running and waits for them to stop.
pub(super) async fn back_up(
    ctx: &Arc<Context>,
    backup: &Backup,
    validated: &ValidatedBackup,
    cancel: &CancelToken,
    on_progress: impl Fn(&[VolumeResult]),
) -> Result<Vec<VolumeResult>, RunError> {
    let selection = selection(ctx, backup, validated).await?;
    if selection.chosen.is_empty() {
        return Ok(selection.results);
    }
    let name = backup.name_any();
    let uid = backup.metadata.uid.clone().unwrap_or_default();
    let api: Api<VolumeBackup> = Api::namespaced(ctx.client.clone(), &ctx.opts.namespace);
    let mut items: Vec<(String, &Chosen)> = Vec::new();
    for chosen in &selection.chosen {
        let item_name = item_name("", &name, &chosen.pvc.uid);
        let mut item = VolumeBackup::new(
            &item_name,
            VolumeBackupSpec {
                backup_name: name.clone(),
                node: chosen.node.clone(),
                pod: chosen.pod.clone(),
                volume: chosen.volume.clone(),
                pvc: chosen.pvc.clone(),
                persistent_volume: chosen.persistent_volume.clone(),
                volume_mode: chosen.mode,
                storage_location: validated.location.clone(),
                parent_snapshot: None,
                tags: Vec::new(),
                cancel: None,
            },
        );
        item.metadata.namespace = Some(ctx.opts.namespace.clone());
        item.metadata.owner_references = Some(vec![owner_reference(backup)]);
        item.metadata.labels = Some(
            [
                (NODE_LABEL.to_string(), chosen.node.clone()),
                (OWNER_UID_LABEL.to_string(), uid.clone()),
                (labels::BACKUP_NAME.to_string(), name.clone()),
            ]
            .into(),
        );
        create_item(&api, &item).await?;
        items.push((item_name, chosen));
    }
    let names: Vec<String> = items.iter().map(|(n, _)| n.clone()).collect();
    let mut results = selection.results.clone();
    let ended = wait_items::<VolumeBackup>(ctx, &uid, &names, cancel, |statuses| {
        fill(&mut results, &items, statuses);
        on_progress(&results);
    })
    .await?;
    fill(&mut results, &items, &ended);
    if cancel.is_canceled() {
        return Err(RunError::Canceled);
    }
    Ok(results)
}

/// Writes the items' states into the volume lines.
fn fill(
    results: &mut [VolumeResult],
    items: &[(String, &Chosen)],
    statuses: &HashMap<String, VolumeWorkStatus>,
) {
    for (name, chosen) in items {
        let Some(line) = results.iter_mut().find(|r| {
            r.namespace == chosen.pvc.namespace && r.pvc.as_deref() == Some(&chosen.pvc.name)
        }) else {
            continue;
        };
        let Some(status) = statuses.get(name) else {
            continue;
        };
        line.outcome = outcome(status.phase.unwrap_or_default());
        line.snapshot_id = status.snapshot_id.clone();
        line.bytes = status.progress.as_ref().map(|p| p.bytes_done);
        line.reason = match line.outcome {
            VolumeOutcome::Completed => None,
            _ => status.message.clone(),
        };
    }
}

/// A work item's phase as a volume's outcome.
pub fn outcome(phase: VolumePhase) -> VolumeOutcome {
    match phase {
        VolumePhase::Completed => VolumeOutcome::Completed,
        VolumePhase::Failed => VolumeOutcome::Failed,
        VolumePhase::Canceled => VolumeOutcome::Canceled,
        _ => VolumeOutcome::Pending,
    }
}

/// Waits until every named item has ended; returns their final statuses. Items whose agent's
/// heartbeat has been silent for `agent_timeout` (or whose node is gone) are failed here with
/// that reason; canceling `cancel` asks every item still running to stop.
pub(super) async fn wait_items<K>(
    ctx: &Arc<Context>,
    owner_uid: &str,
    names: &[String],
    cancel: &CancelToken,
    mut on_progress: impl FnMut(&HashMap<String, VolumeWorkStatus>),
) -> Result<HashMap<String, VolumeWorkStatus>, RunError>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + VolumeWork
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + HasWorkStatus,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ctx.opts.namespace);
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.opts.namespace);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let started = Instant::now();
    let mut cancel_sent = false;
    // One paged LIST of the owner's items per poll, however many volumes there are.
    let owned = ListParams::default()
        .labels(&format!("{OWNER_UID_LABEL}={owner_uid}"))
        .limit(500);
    loop {
        let mut by_name: HashMap<String, K> = HashMap::new();
        let mut lp = owned.clone();
        loop {
            let page = api
                .list(&lp)
                .await
                .map_err(|e| transient("listing work items", e))?;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            by_name.extend(page.items.into_iter().map(|i| (i.name_any(), i)));
            match next {
                Some(c) => lp = owned.clone().continue_token(&c),
                None => break,
            }
        }
        let mut statuses = HashMap::new();
        let mut open = Vec::new();
        for name in names {
            match by_name.remove(name) {
                Some(item) => {
                    let status = item.work_status();
                    if !item.phase().is_terminal() {
                        open.push(item);
                    }
                    statuses.insert(name.clone(), status);
                }
                None => {
                    statuses.insert(
                        name.clone(),
                        VolumeWorkStatus {
                            phase: Some(VolumePhase::Failed),
                            message: Some("the work item was deleted".into()),
                            ..VolumeWorkStatus::default()
                        },
                    );
                }
            }
        }
        on_progress(&statuses);
        if open.is_empty() {
            return Ok(statuses);
        }
        if cancel.is_canceled() && !cancel_sent {
            for item in &open {
                let patch = serde_json::json!({"spec": {"cancel": true}});
                let _ = api
                    .patch(
                        &item.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await;
            }
            cancel_sent = true;
        }
        // Each node's agent looked at once per poll.
        let mut silence: HashMap<String, Option<String>> = HashMap::new();
        for item in &open {
            let node = item.node().to_string();
            let why = match silence.get(&node) {
                Some(w) => w.clone(),
                None => {
                    let w = silent_agent(ctx, &leases, &nodes, item, started).await;
                    silence.insert(node, w.clone());
                    w
                }
            };
            if let Some(why) = why {
                let mut status = item.work_status();
                status.phase = Some(VolumePhase::Failed);
                status.message = Some(why);
                status.completion_timestamp = Some(Time(Timestamp::now()));
                super::write_exact_status(&api, &item.name_any(), &status, &VOLUME_STATUS_MEMBERS)
                    .await
                    .map_err(|e| transient("failing a work item", e))?;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Why the item's agent is taken for gone, if it is: its heartbeat Lease has not been renewed
/// for `agent_timeout` (or never was, for that long since the wait began).
async fn silent_agent<K: VolumeWork>(
    ctx: &Context,
    leases: &Api<Lease>,
    nodes: &Api<Node>,
    item: &K,
    started: Instant,
) -> Option<String> {
    let timeout = ctx.opts.agent_timeout;
    let node = item.node();
    let lease = leases
        .get_opt(&format!("{HEARTBEAT_PREFIX}{node}"))
        .await
        .ok()?;
    let renewed = lease
        .and_then(|l| l.spec)
        .and_then(|s| s.renew_time)
        .map(|t| t.0);
    let silent_for = match renewed {
        Some(t) => Timestamp::now().duration_since(t).unsigned_abs(),
        None => started.elapsed(),
    };
    if silent_for < timeout {
        return None;
    }
    let secs = timeout.as_secs();
    Some(match nodes.get_opt(node).await {
        Ok(None) => format!("node {node} is gone, and no agent has reported from it for {secs}s"),
        _ => format!(
            "the agent of node {node} has not reported for {secs}s (heartbeat lease \
             {HEARTBEAT_PREFIX}{node}); is the stowage agent running there?"
        ),
    })
}

/// Access to a work item's status, for code that serves both kinds.
pub(super) trait HasWorkStatus {
    fn work_status(&self) -> VolumeWorkStatus;
}

impl HasWorkStatus for VolumeBackup {
    fn work_status(&self) -> VolumeWorkStatus {
        self.status.clone().unwrap_or_default()
    }
}

impl HasWorkStatus for crate::api::VolumeRestore {
    fn work_status(&self) -> VolumeWorkStatus {
        self.status.clone().unwrap_or_default()
    }
}

/// The reference a work item keeps to a pod or claim.
pub fn object_ref<K: Resource>(obj: &K) -> ObjectRef {
    ObjectRef {
        namespace: obj.meta().namespace.clone().unwrap_or_default(),
        name: obj.meta().name.clone().unwrap_or_default(),
        uid: obj.meta().uid.clone().unwrap_or_default(),
    }
}

/// What a restore's volume-data step needs besides the claims.
pub(super) struct RestoreData {
    /// The Restore.
    pub restore: crate::api::Restore,
    /// The storage location the backup is in.
    pub location: String,
    /// Its repository.
    pub repo: Arc<stowage_core::repo::Repository>,
    /// Whether it is read-only.
    pub read_only: bool,
    /// The index cache.
    pub cache_dir: Option<std::path::PathBuf>,
    /// The backup's snapshot tag UID.
    pub backup_uid: String,
    /// Stops the step.
    pub cancel: CancelToken,
}

/// The backup's volume lines, from its `metadata/volume-snapshots.json`.
async fn backed_up_volumes(data: &RestoreData) -> Result<Vec<VolumeResult>, String> {
    let repo = data.repo.clone();
    let (uid, cache, read_only) = (
        data.backup_uid.clone(),
        data.cache_dir.clone(),
        data.read_only,
    );
    tokio::task::spawn_blocking(move || -> Result<Vec<VolumeResult>, String> {
        use stowage_core::repo::session::{IndexSource, Locked, ReadWork};
        let (_, snap) = crate::layout::find_snapshot(&repo, &uid)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no snapshot of backup UID {uid}"))?;
        let locked = if read_only {
            Locked::<ReadWork>::without_lock(&repo)
        } else {
            repo.lock::<ReadWork>().map_err(|e| e.to_string())?
        };
        let source = cache.map_or(IndexSource::Memory, IndexSource::Cache);
        let session = locked.load_index(&source, &()).map_err(|e| e.to_string())?;
        let bytes =
            crate::layout::read_file(&session, &snap, crate::layout::files::VOLUME_SNAPSHOTS)
                .map_err(|e| e.to_string())?;
        session.finish();
        if bytes.len() > 64 << 20 {
            return Err("metadata/volume-snapshots.json is larger than 64 MiB".into());
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("metadata/volume-snapshots.json: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A helper pod being used to mount one restored claim.
struct Helper {
    line: usize,
    pod: String,
    namespace: String,
    item: String,
}

/// The helper pod that holds a restored claim mounted while its node's agent writes it: no
/// service account token, tolerates every taint, and does nothing but wait.
fn helper_pod(
    ctx: &Context,
    name: &str,
    claim: &str,
    mode: crate::api::VolumeMode,
    restore_uid: &str,
) -> Pod {
    let (mounts, devices) = match mode {
        crate::api::VolumeMode::Filesystem => (
            serde_json::json!([{"name": "data", "mountPath": "/data"}]),
            serde_json::Value::Null,
        ),
        crate::api::VolumeMode::Block => (
            serde_json::Value::Null,
            serde_json::json!([{"name": "data", "devicePath": "/dev/data"}]),
        ),
    };
    let mut container = serde_json::json!({
        "name": "hold", "image": ctx.opts.helper_image,
        "command": ["sleep", "86400"],
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "1m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}}
    });
    if !mounts.is_null() {
        container["volumeMounts"] = mounts;
    }
    if !devices.is_null() {
        container["volumeDevices"] = devices;
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"stowage.dev/restore-helper": restore_uid}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}],
            "containers": [container],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        }
    }))
    .expect("the helper pod is a valid Pod")
}

/// Writes the data of the restored claims that have some in the backup, through helper pods
/// and the node agents, and reads it back. Returns a line per claim with data.
pub(super) async fn restore_data(
    ctx: &Arc<Context>,
    data: &RestoreData,
    claims: Vec<crate::restore::apply::RestoredClaim>,
) -> Vec<VolumeResult> {
    let backed_up: Vec<VolumeResult> = match backed_up_volumes(data).await {
        Ok(v) => v,
        Err(why) => {
            return claims
                .iter()
                .map(|c| failed_line(c, format!("the backup's volume list cannot be read: {why}")))
                .collect();
        }
    };
    let mut lines: Vec<VolumeResult> = Vec::new();
    let mut wanted = Vec::new();
    for claim in &claims {
        let Some(source) = backed_up.iter().find(|v| {
            v.namespace == claim.backup_namespace
                && v.pvc.as_deref() == Some(&claim.name)
                && v.outcome == VolumeOutcome::Completed
                && v.snapshot_id.is_some()
        }) else {
            continue;
        };
        let mut line = source.clone();
        line.namespace = claim.namespace.clone();
        line.outcome = VolumeOutcome::Pending;
        line.reason = None;
        line.pod = None;
        if !claim.created {
            line.outcome = VolumeOutcome::Skipped;
            line.method = crate::api::VolumeMethod::Skipped;
            line.reason =
                Some("the claim existed before the restore; its data was left as it is".into());
            lines.push(line);
            continue;
        }
        wanted.push(lines.len());
        lines.push(line);
    }
    if wanted.is_empty() {
        return lines;
    }
    let restore_name = data.restore.name_any();
    let restore_uid = data.restore.metadata.uid.clone().unwrap_or_default();
    // Helper pods first, all at once: the scheduler binds each claim as its pod is placed.
    let mut helpers: Vec<Helper> = Vec::new();
    for &i in &wanted {
        let line = &lines[i];
        let claim = line.pvc.clone().unwrap_or_default();
        let pod_name = item_name(
            "stowage-restore-",
            &restore_name,
            &format!("{}/{claim}", line.namespace),
        );
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &line.namespace);
        let pod = helper_pod(ctx, &pod_name, &claim, line.volume_mode, &restore_uid);
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                lines[i].outcome = VolumeOutcome::Failed;
                lines[i].reason = Some(format!(
                    "creating the helper pod: {}",
                    crate::collect::describe(&e)
                ));
                continue;
            }
        }
        helpers.push(Helper {
            line: i,
            pod: pod_name,
            namespace: line.namespace.clone(),
            item: String::new(),
        });
    }
    // Each helper placed and its claim bound: then the work item for that node's agent.
    let api: Api<crate::api::VolumeRestore> =
        Api::namespaced(ctx.client.clone(), &ctx.opts.namespace);
    let deadline = Instant::now() + ctx.opts.agent_timeout;
    for h in &mut helpers {
        let line = &mut lines[h.line];
        let claim_name = line.pvc.clone().unwrap_or_default();
        let placed = wait_placed(
            ctx,
            &h.namespace,
            &h.pod,
            &claim_name,
            deadline,
            &data.cancel,
        )
        .await;
        let (pod, claim) = match placed {
            Ok(p) => p,
            Err(why) => {
                line.outcome = VolumeOutcome::Failed;
                line.reason = Some(why);
                continue;
            }
        };
        let item_name = item_name(
            "",
            &restore_name,
            claim.metadata.uid.as_deref().unwrap_or_default(),
        );
        let mut item = crate::api::VolumeRestore::new(
            &item_name,
            crate::api::VolumeRestoreSpec {
                restore_name: restore_name.clone(),
                node: pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
                pod: object_ref(&pod),
                volume: "data".into(),
                pvc: object_ref(&claim),
                persistent_volume: claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.clone())
                    .unwrap_or_default(),
                volume_mode: line.volume_mode,
                storage_location: data.location.clone(),
                snapshot_id: line.snapshot_id.clone().unwrap_or_default(),
                cancel: None,
            },
        );
        item.metadata.namespace = Some(ctx.opts.namespace.clone());
        item.metadata.owner_references = Some(vec![owner_reference(&data.restore)]);
        item.metadata.labels = Some(
            [
                (NODE_LABEL.to_string(), item.spec.node.clone()),
                (OWNER_UID_LABEL.to_string(), restore_uid.clone()),
            ]
            .into(),
        );
        match create_item(&api, &item).await {
            Ok(()) => h.item = item_name,
            Err(e) => {
                line.outcome = VolumeOutcome::Failed;
                line.reason = Some(e.to_string());
            }
        }
    }
    let names: Vec<String> = helpers
        .iter()
        .filter(|h| !h.item.is_empty())
        .map(|h| h.item.clone())
        .collect();
    match wait_items::<crate::api::VolumeRestore>(ctx, &restore_uid, &names, &data.cancel, |_| {})
        .await
    {
        Ok(statuses) => {
            for h in &helpers {
                let Some(status) = statuses.get(&h.item) else {
                    continue;
                };
                let line = &mut lines[h.line];
                line.outcome = outcome(status.phase.unwrap_or_default());
                line.bytes = status.progress.as_ref().map(|p| p.bytes_done);
                line.verified_files = status.verified_files;
                line.pod = None;
                line.reason = match line.outcome {
                    VolumeOutcome::Completed => Some(format!(
                        "{} files verified against snapshot {}",
                        status.verified_files.unwrap_or(0),
                        line.snapshot_id
                            .as_deref()
                            .map_or("", |s| &s[..s.len().min(8)])
                    )),
                    _ => status.message.clone(),
                };
                line.method = crate::api::VolumeMethod::FileSystem;
            }
        }
        Err(e) => {
            for h in &helpers {
                if lines[h.line].outcome == VolumeOutcome::Pending {
                    lines[h.line].outcome = VolumeOutcome::Failed;
                    lines[h.line].reason = Some(e.to_string());
                }
            }
        }
    }
    // The helpers go before any workload is restored: a ReadWriteOnce claim must be free.
    for h in &helpers {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &h.namespace);
        let _ = pods
            .delete(&h.pod, &kube::api::DeleteParams::default())
            .await;
    }
    for h in &helpers {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &h.namespace);
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until && matches!(pods.get_opt(&h.pod).await, Ok(Some(_))) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    lines
}

fn failed_line(c: &crate::restore::apply::RestoredClaim, why: String) -> VolumeResult {
    VolumeResult {
        namespace: c.namespace.clone(),
        pvc: Some(c.name.clone()),
        outcome: VolumeOutcome::Failed,
        reason: Some(why),
        ..VolumeResult::default()
    }
}

/// Waits until the helper pod is on a node and its claim is bound; returns both.
async fn wait_placed(
    ctx: &Context,
    namespace: &str,
    pod: &str,
    claim: &str,
    deadline: Instant,
    cancel: &CancelToken,
) -> Result<(Pod, PersistentVolumeClaim), String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    loop {
        let p = pods
            .get_opt(pod)
            .await
            .map_err(|e| crate::collect::describe(&e))?;
        let c = claims
            .get_opt(claim)
            .await
            .map_err(|e| crate::collect::describe(&e))?;
        let Some(p) = p else {
            return Err(format!("the helper pod {namespace}/{pod} was deleted"));
        };
        let Some(c) = c else {
            return Err(format!("the claim {namespace}/{claim} was deleted"));
        };
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
            && c.spec
                .as_ref()
                .and_then(|s| s.volume_name.as_ref())
                .is_some();
        if node.is_some() && bound {
            return Ok((p, c));
        }
        if cancel.is_canceled() {
            return Err("canceled".into());
        }
        if Instant::now() >= deadline {
            let why = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
                .and_then(|c| c.message.clone())
                .unwrap_or_default();
            return Err(format!(
                "the helper pod {namespace}/{pod} was not {} in {}s{}",
                if node.is_none() {
                    "scheduled"
                } else {
                    "given a bound claim"
                },
                ctx.opts.agent_timeout.as_secs(),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_names_are_stable_short_and_distinct() {
        let a = item_name("", "nightly", "uid-1");
        assert_eq!(a, item_name("", "nightly", "uid-1"));
        assert_ne!(a, item_name("", "nightly", "uid-2"));
        assert!(a.starts_with("nightly-"));
        let long = item_name("r-", &"x".repeat(250), "u");
        assert!(long.len() <= 63, "{long}");
        assert!(
            !item_name("", "a-------------------------------------------b", "u").contains("--")
        );
    }
}
