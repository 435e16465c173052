//! `stowage agent`: the node agent. One runs on every node (a DaemonSet); each carries out the
//! VolumeBackups and VolumeRestores labelled with its node's name, reading and writing the
//! volumes through the kubelet's directory ([`kubelet`]) with the engine ([`job`]).
//!
//! - **Taking an item.** A `New` item is taken (`Accepted`, with the attempt counted) and waits
//!   for one of `concurrency` slots; its message says it is queued. With a slot it is
//!   `InProgress`, its progress written every `progress_every`, and it ends `Completed`,
//!   `Failed` (with the reason) or `Canceled`.
//! - **Restarts.** An item left `Accepted` or `InProgress` by an agent that stopped is taken
//!   again by the next one: a backup whose snapshot was already written adopts it, any other run
//!   starts over and the repository deduplicates what was uploaded. After `max_attempts` runs
//!   it fails with that reason. None stays running forever: the controller fails items whose
//!   agent's heartbeat ([`HEARTBEAT_PREFIX`] Lease) stops.
//! - **Cancel.** `spec.cancel` stops a queued or running item; it ends `Canceled` and a backup
//!   records no snapshot.
//! - **Security.** Only items of its own node are watched; every path is resolved inside the
//!   kubelet root; the engine never follows a symlink inside a volume.

pub mod job;
pub mod kubelet;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use stowage_core::cancel::CancelToken;
use stowage_core::progress::{Control, ProgressEvent};
use tokio::sync::Semaphore;

use crate::api::{
    VolumeBackup, VolumeMode, VolumePhase, VolumeProgress, VolumeRestore, VolumeWork,
    VolumeWorkStatus, NODE_LABEL, VOLUME_STATUS_MEMBERS,
};
use crate::metrics::{AgentMetrics, Kind, Outcome};
use crate::store::OpenedLocation;
use job::JobError;
use kubelet::{KubeletPathError, KubeletRoot};

/// The name prefix of each agent's heartbeat Lease (`stowage-agent-<node>`), renewed every
/// [`HEARTBEAT_EVERY`] in the agent's namespace.
pub const HEARTBEAT_PREFIX: &str = "stowage-agent-";
/// How often the heartbeat is renewed.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// This node's name (the work items' `spec.node`).
    pub node: String,
    /// The namespace of the controller, its storage locations and the work items.
    pub namespace: String,
    /// The kubelet's root directory on this node, as mounted into the agent.
    pub kubelet_root: PathBuf,
    /// Volumes copied at once; the rest wait, `Accepted`.
    pub concurrency: usize,
    /// A directory of its own (the index cache, CA bundles).
    pub work_dir: PathBuf,
    /// Recorded as the volume snapshots' host.
    pub cluster_name: String,
    /// How often a running item's progress is written.
    pub progress_every: Duration,
    /// Runs of one item (agent restarts, transient failures) before it fails.
    pub max_attempts: u32,
    /// How long a restore waits for the kubelet to mount the helper pod's volume, and a backup
    /// for the pod's volume to be found.
    pub mount_wait: Duration,
    /// The agent's name in statuses and Events (its pod's name).
    pub agent_name: String,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None`: not served.
    pub metrics_address: Option<std::net::SocketAddr>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            node: String::new(),
            namespace: "stowage".into(),
            kubelet_root: PathBuf::from("/var/lib/kubelet"),
            concurrency: 2,
            work_dir: std::env::temp_dir().join("stowage-agent"),
            cluster_name: "kubernetes".into(),
            progress_every: Duration::from_secs(2),
            max_attempts: 5,
            mount_wait: Duration::from_secs(120),
            agent_name: String::new(),
            metrics_address: None,
        }
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No node name.
    #[error("the node name is empty (set --node, or NODE_NAME from the downward API)")]
    NoNode,
    /// The work directory could not be made.
    #[error("work directory {0}: {1}")]
    WorkDir(PathBuf, #[source] std::io::Error),
    /// The kubelet root is not there.
    #[error("kubelet root: {0}")]
    KubeletRoot(#[source] KubeletPathError),
    /// The CRDs are missing or unreadable.
    #[error("the stowage.dev work item CRDs are not installed or not readable: {0}")]
    Crds(String),
    /// The metrics address could not be bound.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// What the reconcilers of both kinds of item share.
struct Agent {
    client: Client,
    opts: AgentOptions,
    root: KubeletRoot,
    slots: Arc<Semaphore>,
    /// Items this process is carrying out, by UID.
    running: Mutex<HashMap<String, CancelToken>>,
    /// Opened repositories by location name, with the location's generation.
    repos: Mutex<HashMap<String, (i64, Arc<OpenedLocation>)>>,
    recorder: Recorder,
    metrics: Arc<AgentMetrics>,
}

/// A reconcile failed (the API server refused a read or a write); retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AgentReconcileError(String);

impl From<kube::Error> for AgentReconcileError {
    fn from(e: kube::Error) -> Self {
        AgentReconcileError(crate::collect::describe(&e))
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// The outcome of one run, for the status.
struct Finished {
    snapshot_id: Option<String>,
    parent: Option<String>,
    bytes_added: Option<u64>,
    verified_files: Option<u64>,
    bytes: u64,
    files: u64,
    warnings: Vec<String>,
    note: String,
}

/// A kind of work item: what differs between backing up and restoring a volume.
trait WorkItem:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + VolumeWork
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// "volume backup" or "volume restore", for messages.
    const WHAT: &'static str;
    /// Its kind in the metrics.
    const KIND: Kind;
    fn work_status(&self) -> VolumeWorkStatus;
    fn location(&self) -> &str;
    fn pod_uid(&self) -> &str;
    fn volume_dir(&self) -> &str;
    fn mode(&self) -> VolumeMode;
    /// Runs the engine's side on this thread (a blocking one).
    fn carry_out(
        &self,
        agent: &Agent,
        location: &OpenedLocation,
        path: PathBuf,
        control: &Control<'_>,
    ) -> Result<Finished, JobError>;
}

impl WorkItem for VolumeBackup {
    const WHAT: &'static str = "volume backup";
    const KIND: Kind = Kind::Backup;
    fn work_status(&self) -> VolumeWorkStatus {
        self.status.clone().unwrap_or_default()
    }
    fn location(&self) -> &str {
        &self.spec.storage_location
    }
    fn pod_uid(&self) -> &str {
        &self.spec.pod.uid
    }
    fn volume_dir(&self) -> &str {
        &self.spec.persistent_volume
    }
    fn mode(&self) -> VolumeMode {
        self.spec.volume_mode
    }
    fn carry_out(
        &self,
        agent: &Agent,
        location: &OpenedLocation,
        path: PathBuf,
        control: &Control<'_>,
    ) -> Result<Finished, JobError> {
        if location.read_only {
            return Err(JobError::Fatal(format!(
                "the storage location {} is ReadOnly",
                self.spec.storage_location
            )));
        }
        let spec = &self.spec;
        let uid = self.metadata.uid.clone().unwrap_or_default();
        let mut tags = vec![
            format!("{}{}", job::TAG_WORK_ITEM, uid),
            format!("{}{}", job::TAG_PVC_UID, spec.pvc.uid),
            format!("{}{}/{}", job::TAG_PVC, spec.pvc.namespace, spec.pvc.name),
            format!("{}{}", job::TAG_MODE, spec.volume_mode),
            format!("{}{}", crate::layout::TAG_NAME, spec.backup_name),
        ];
        tags.extend(spec.tags.iter().cloned());
        let done = job::back_up(
            &job::BackupJob {
                repo: location.repo.clone(),
                path,
                mode: spec.volume_mode,
                work_uid: uid,
                pvc_uid: spec.pvc.uid.clone(),
                tags,
                hostname: agent.opts.cluster_name.clone(),
                parent: spec.parent_snapshot.clone(),
                cache: Some(agent.opts.work_dir.join("cache")),
            },
            control,
        )?;
        Ok(Finished {
            note: format!(
                "{} files, {} bytes, {} added{}",
                done.files,
                done.bytes,
                done.bytes_added,
                if done.adopted {
                    " (written by an earlier run)"
                } else {
                    ""
                }
            ),
            snapshot_id: Some(done.snapshot_id),
            parent: done.parent,
            bytes_added: Some(done.bytes_added),
            verified_files: None,
            bytes: done.bytes,
            files: done.files,
            warnings: done.warnings,
        })
    }
}

impl WorkItem for VolumeRestore {
    const WHAT: &'static str = "volume restore";
    const KIND: Kind = Kind::Restore;
    fn work_status(&self) -> VolumeWorkStatus {
        self.status.clone().unwrap_or_default()
    }
    fn location(&self) -> &str {
        &self.spec.storage_location
    }
    fn pod_uid(&self) -> &str {
        &self.spec.pod.uid
    }
    fn volume_dir(&self) -> &str {
        &self.spec.persistent_volume
    }
    fn mode(&self) -> VolumeMode {
        self.spec.volume_mode
    }
    fn carry_out(
        &self,
        agent: &Agent,
        location: &OpenedLocation,
        path: PathBuf,
        control: &Control<'_>,
    ) -> Result<Finished, JobError> {
        let done = job::restore(
            &job::RestoreJob {
                repo: location.repo.clone(),
                snapshot_id: self.spec.snapshot_id.clone(),
                path,
                mode: self.spec.volume_mode,
                cache: Some(agent.opts.work_dir.join("cache")),
                read_only: location.read_only,
            },
            control,
        )?;
        Ok(Finished {
            note: format!(
                "{} files, {} bytes written; {} files verified",
                done.files, done.bytes, done.verified_files
            ),
            snapshot_id: Some(self.spec.snapshot_id.clone()),
            parent: None,
            bytes_added: None,
            verified_files: Some(done.verified_files),
            bytes: done.bytes,
            files: done.files,
            warnings: done.warnings,
        })
    }
}

impl Agent {
    fn api<K: WorkItem>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.opts.namespace)
    }

    async fn write_status<K: WorkItem>(
        &self,
        name: &str,
        status: &VolumeWorkStatus,
    ) -> Result<(), kube::Error> {
        crate::controller::write_exact_status(
            &self.api::<K>(),
            name,
            status,
            &VOLUME_STATUS_MEMBERS,
        )
        .await
    }

    async fn write_final_status<K: WorkItem>(&self, name: &str, status: &VolumeWorkStatus) {
        crate::controller::write_final_exact_status(
            &self.api::<K>(),
            name,
            status,
            &VOLUME_STATUS_MEMBERS,
        )
        .await
    }

    async fn event<K: WorkItem>(&self, item: &K, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &item.object_ref(&())).await {
            tracing::warn!("publishing event {reason}: {e}");
        }
    }

    /// A location's repository, opened now if not yet (or its spec changed since).
    async fn location(&self, name: &str) -> Result<Arc<OpenedLocation>, JobError> {
        let api: Api<crate::api::BackupStorageLocation> =
            Api::namespaced(self.client.clone(), &self.opts.namespace);
        let bsl = match api.get_opt(name).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Err(JobError::Fatal(format!(
                    "the storage location {name} does not exist"
                )))
            }
            Err(e) => {
                return Err(JobError::Transient(format!(
                    "reading the storage location {name}: {}",
                    crate::collect::describe(&e)
                )))
            }
        };
        let generation = bsl.metadata.generation.unwrap_or(0);
        if let Some((g, opened)) = self.repos.lock().unwrap().get(name) {
            if *g == generation {
                return Ok(opened.clone());
            }
        }
        let opened = crate::store::open(&self.client, &bsl, &self.opts.work_dir)
            .await
            .map_err(|e| {
                JobError::Transient(format!("opening the storage location {name}: {e}"))
            })?;
        let opened = Arc::new(opened);
        self.repos
            .lock()
            .unwrap()
            .insert(name.to_string(), (generation, opened.clone()));
        Ok(opened)
    }

    /// The item's volume under the kubelet root, waiting up to `mount_wait` for the kubelet to
    /// mount it.
    async fn volume_path<K: WorkItem>(
        &self,
        item: &K,
        cancel: &CancelToken,
    ) -> Result<PathBuf, JobError> {
        let deadline = Instant::now() + self.opts.mount_wait;
        loop {
            match self
                .root
                .volume(item.pod_uid(), item.volume_dir(), item.mode())
            {
                Ok(p) => return Ok(p),
                Err(KubeletPathError::NotMounted { .. }) if Instant::now() < deadline => {}
                Err(e) => return Err(JobError::Fatal(e.to_string())),
            }
            if cancel.is_canceled() {
                return Err(JobError::Canceled);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Runs the agent until the process is stopped.
pub async fn run(client: Client, opts: AgentOptions) -> Result<(), AgentError> {
    if opts.node.is_empty() {
        return Err(AgentError::NoNode);
    }
    std::fs::create_dir_all(opts.work_dir.join("cache"))
        .map_err(|e| AgentError::WorkDir(opts.work_dir.clone(), e))?;
    let root = KubeletRoot::new(&opts.kubelet_root).map_err(AgentError::KubeletRoot)?;
    let backups: Api<VolumeBackup> = Api::namespaced(client.clone(), &opts.namespace);
    let restores: Api<VolumeRestore> = Api::namespaced(client.clone(), &opts.namespace);
    let mine = format!("{NODE_LABEL}={}", opts.node);
    let lp = kube::api::ListParams::default().labels(&mine).limit(1);
    for check in [
        backups.list(&lp).await.map(drop),
        restores.list(&lp).await.map(drop),
    ] {
        check.map_err(|e| AgentError::Crds(crate::collect::describe(&e)))?;
    }
    let reporter = Reporter {
        controller: "stowage-agent".into(),
        instance: Some(opts.agent_name.clone()),
    };
    let metrics = Arc::new(AgentMetrics::new(&opts.node));
    if let Some(addr) = opts.metrics_address {
        let m = metrics.clone();
        let bound = crate::metrics::serve(addr, Arc::new(move || m.encode())).await?;
        tracing::info!(address = %bound, "serving metrics on /metrics");
    }
    let agent = Arc::new(Agent {
        metrics,
        recorder: Recorder::new(client.clone(), reporter),
        slots: Arc::new(Semaphore::new(opts.concurrency.max(1))),
        client,
        root,
        opts,
        running: Mutex::new(HashMap::new()),
        repos: Mutex::new(HashMap::new()),
    });
    tracing::info!(node = %agent.opts.node, root = %agent.opts.kubelet_root.display(), "agent started");
    let watch = watcher::Config::default().labels(&mine);
    let backup_loop = Controller::new(backups, watch.clone())
        .run(reconcile::<VolumeBackup>, error_policy, agent.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("volume backup reconcile: {e}");
            }
        });
    let restore_loop = Controller::new(restores, watch)
        .run(reconcile::<VolumeRestore>, error_policy, agent.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("volume restore reconcile: {e}");
            }
        });
    tokio::join!(backup_loop, restore_loop, heartbeat(agent.clone()));
    Ok(())
}

/// Renews this agent's Lease every [`HEARTBEAT_EVERY`], so the controller can tell a node whose
/// agent is gone from one that is busy.
async fn heartbeat(agent: Arc<Agent>) {
    let leases: Api<Lease> = Api::namespaced(agent.client.clone(), &agent.opts.namespace);
    let name = format!("{HEARTBEAT_PREFIX}{}", agent.opts.node);
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tick.tick().await;
        let body = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "labels": {NODE_LABEL: agent.opts.node}},
            "spec": {
                "holderIdentity": agent.opts.agent_name,
                "leaseDurationSeconds": HEARTBEAT_EVERY.as_secs() * 3,
                "renewTime": MicroTime(Timestamp::now()),
            }
        });
        let pp = PatchParams::apply("stowage-agent").force();
        if let Err(e) = leases.patch(&name, &pp, &Patch::Apply(&body)).await {
            tracing::warn!("renewing the heartbeat lease {name}: {e}");
        }
    }
}

fn error_policy<K: WorkItem>(item: Arc<K>, err: &AgentReconcileError, _a: Arc<Agent>) -> Action {
    tracing::warn!(item = %item.name_any(), "reconcile failed, retrying: {err}");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile<K: WorkItem>(
    item: Arc<K>,
    agent: Arc<Agent>,
) -> Result<Action, AgentReconcileError> {
    if item.node() != agent.opts.node {
        return Ok(Action::await_change());
    }
    let name = item.name_any();
    let uid = item.meta().uid.clone().unwrap_or_default();
    let phase = item.phase();
    if phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let gone = item.meta().deletion_timestamp.is_some();
    let running = agent.running.lock().unwrap().get(&uid).cloned();
    if let Some(token) = running {
        if item.cancel_requested() || gone {
            token.cancel();
            if phase != VolumePhase::Canceling && !gone {
                let mut status = item.work_status();
                status.phase = Some(VolumePhase::Canceling);
                status.message = Some("cancel requested; stopping".into());
                agent.write_status::<K>(&name, &status).await?;
            }
        }
        return Ok(Action::await_change());
    }
    if gone {
        return Ok(Action::await_change());
    }
    let mut status = item.work_status();
    if item.cancel_requested() || phase == VolumePhase::Canceling {
        status.phase = Some(VolumePhase::Canceled);
        status.message = Some(match phase {
            VolumePhase::New | VolumePhase::Accepted => "canceled before it started".into(),
            _ => "canceled; its run had stopped with the agent".into(),
        });
        status.completion_timestamp = Some(now());
        agent.write_status::<K>(&name, &status).await?;
        return Ok(Action::await_change());
    }
    // New, or left Accepted / InProgress by an agent that stopped: take it (again).
    if status.attempt >= agent.opts.max_attempts {
        status.phase = Some(VolumePhase::Failed);
        status.message = Some(format!(
            "the agent stopped during each of the {} runs of this {}",
            status.attempt,
            K::WHAT
        ));
        status.completion_timestamp = Some(now());
        agent.write_status::<K>(&name, &status).await?;
        agent
            .event(
                &*item,
                EventType::Warning,
                "Failed",
                status.message.clone().unwrap_or_default(),
            )
            .await;
        return Ok(Action::await_change());
    }
    let resumed = phase != VolumePhase::New;
    status.attempt += 1;
    status.phase = Some(VolumePhase::Accepted);
    status.agent = Some(agent.opts.agent_name.clone());
    status.accepted_timestamp = Some(now());
    status.message = Some(format!(
        "queued: waiting for one of this node's {} slots",
        agent.opts.concurrency.max(1)
    ));
    agent.write_status::<K>(&name, &status).await?;
    if resumed {
        agent
            .event(
                &*item,
                EventType::Normal,
                "Resumed",
                format!("run {} after an agent restart", status.attempt),
            )
            .await;
    }
    agent.metrics.queued(K::KIND);
    let token = CancelToken::new();
    agent
        .running
        .lock()
        .unwrap()
        .insert(uid.clone(), token.clone());
    let item = (*item).clone();
    let agent2 = agent.clone();
    tokio::spawn(async move {
        let final_status = carry_out(&agent2, &item, status, &token).await;
        agent2.write_final_status::<K>(&name, &final_status).await;
        agent2.running.lock().unwrap().remove(&uid);
        let phase = final_status.phase.unwrap_or_default();
        let type_ = if phase == VolumePhase::Completed {
            EventType::Normal
        } else {
            EventType::Warning
        };
        agent2
            .event(
                &item,
                type_,
                &phase.to_string(),
                final_status.message.clone().unwrap_or_default(),
            )
            .await;
    });
    Ok(Action::await_change())
}

/// Waits for a slot, then runs the item to its end (retrying transient failures); returns the
/// final status.
async fn carry_out<K: WorkItem>(
    agent: &Arc<Agent>,
    item: &K,
    mut status: VolumeWorkStatus,
    cancel: &CancelToken,
) -> VolumeWorkStatus {
    let name = item.name_any();
    let canceled = |mut status: VolumeWorkStatus, why: &str| {
        status.phase = Some(VolumePhase::Canceled);
        status.message = Some(why.into());
        status.completion_timestamp = Some(now());
        status
    };
    let permit = loop {
        tokio::select! {
            p = agent.slots.clone().acquire_owned() => break p.expect("the semaphore is never closed"),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if cancel.is_canceled() {
                    agent.metrics.dequeued(K::KIND);
                    return canceled(status, "canceled while queued");
                }
            }
        }
    };
    agent.metrics.started(K::KIND);
    let began = Instant::now();
    status.phase = Some(VolumePhase::InProgress);
    status.start_timestamp = Some(now());
    status.message = None;
    if let Err(e) = agent.write_status::<K>(&name, &status).await {
        tracing::debug!(item = %name, "status: {e}");
    }
    let mut delay = Duration::from_secs(2);
    let result = loop {
        match run_once(agent, item, &status, cancel).await {
            Err(JobError::Transient(msg)) if status.attempt < agent.opts.max_attempts => {
                tracing::warn!(item = %name, "run {} failed, trying again: {msg}", status.attempt);
                status.attempt += 1;
                status.message = Some(format!("retrying after: {msg}"));
                let _ = agent.write_status::<K>(&name, &status).await;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                if cancel.is_canceled() {
                    break Err(JobError::Canceled);
                }
            }
            other => break other,
        }
    };
    drop(permit);
    status.completion_timestamp = Some(now());
    let (outcome, bytes) = match &result {
        Ok(done) => (Outcome::Completed, done.bytes),
        Err(JobError::Canceled) => (Outcome::Canceled, 0),
        Err(_) => (Outcome::Failed, 0),
    };
    agent
        .metrics
        .ended(K::KIND, outcome, bytes, began.elapsed());
    match result {
        Ok(done) => {
            status.phase = Some(VolumePhase::Completed);
            status.snapshot_id = done.snapshot_id;
            status.parent_snapshot = done.parent;
            status.bytes_added = done.bytes_added;
            status.verified_files = done.verified_files;
            status.progress = Some(VolumeProgress {
                bytes_done: done.bytes,
                bytes_total: done.bytes,
                files_done: done.files,
                files_total: done.files,
            });
            status.warnings = u32::try_from(done.warnings.len()).unwrap_or(u32::MAX);
            let mut message = done.note;
            if let Some(first) = done.warnings.first() {
                message.push_str(&format!(
                    "; {} entries could not be copied, first: {first}",
                    done.warnings.len()
                ));
            }
            status.message = Some(message);
            status
        }
        Err(JobError::Canceled) => canceled(status, "canceled on request (spec.cancel)"),
        Err(JobError::Transient(msg) | JobError::Fatal(msg)) => {
            status.phase = Some(VolumePhase::Failed);
            status.message = Some(msg);
            status
        }
    }
}

/// One run: find the volume, open the location, run the engine on a blocking thread while its
/// progress is written every `progress_every`.
async fn run_once<K: WorkItem>(
    agent: &Arc<Agent>,
    item: &K,
    status: &VolumeWorkStatus,
    cancel: &CancelToken,
) -> Result<Finished, JobError> {
    let name = item.name_any();
    let path = agent.volume_path(item, cancel).await?;
    let location = agent.location(item.location()).await?;
    let progress: Arc<Mutex<Option<ProgressEvent>>> = Arc::new(Mutex::new(None));
    let task = {
        let agent = agent.clone();
        let item = item.clone();
        let cancel = cancel.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            let sink = |e: &ProgressEvent| *progress.lock().unwrap() = Some(e.clone());
            let control = Control {
                cancel,
                progress: Some(&sink),
                interval: Duration::from_millis(500),
            };
            item.carry_out(&agent, &location, path, &control)
        })
    };
    tokio::pin!(task);
    let mut tick = tokio::time::interval(agent.opts.progress_every);
    tick.tick().await;
    loop {
        tokio::select! {
            r = &mut task => {
                return r.map_err(|e| JobError::Fatal(format!("the {} panicked: {e}", K::WHAT)))?;
            }
            _ = tick.tick() => {
                let Some(e) = progress.lock().unwrap().clone() else { continue };
                let mut s = status.clone();
                s.progress = Some(VolumeProgress {
                    bytes_done: e.bytes_done,
                    bytes_total: e.bytes_expected.unwrap_or(0),
                    files_done: e.files_done,
                    files_total: e.files_expected.unwrap_or(0),
                });
                if let Err(e) = agent.write_status::<K>(&name, &s).await {
                    tracing::debug!(item = %name, "progress: {e}");
                }
            }
        }
    }
}
