//! `stowage controller`: the reconcilers of BackupStorageLocations, Backups and Restores in
//! one namespace.
//!
//! Every reconciler is idempotent and reads the state it acts on from the object: a Backup's
//! phase says what is left to do, so a controller that restarts picks up where the last one
//! stopped (a backup that was `InProgress` is run again, or adopted when its snapshot was
//! already written). Status is written through the status subresource only.

mod backups;
mod locations;
mod restores;
mod sync;
mod volumes;

pub use restores::{BACKUP_UID_ANNOTATION, SCHEDULE_LABEL};
pub use volumes::STATUS_VOLUMES;

use crate::collect::CollectOptions;
use crate::run::RunOptions;
use crate::store::OpenedLocation;
use futures::StreamExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stowage_core::cancel::CancelToken;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// The namespace whose Backups and storage locations it serves.
    pub namespace: String,
    /// Backups running at once (Velero's `--concurrent-backups`, default 1).
    pub concurrent_backups: usize,
    /// A directory of its own (CA bundles of locations, the index cache).
    pub work_dir: PathBuf,
    /// Recorded as the snapshots' host.
    pub cluster_name: String,
    /// Listing.
    pub collect: CollectOptions,
    /// How often locations are validated when their spec does not say (1m).
    pub validation_frequency: Duration,
    /// Runs of one backup (first run, controller restarts, transient failures) before it is
    /// Failed.
    pub max_attempts: u32,
    /// Whether the index is cached on disk (under `work_dir`) rather than read into memory.
    pub index_cache: bool,
    /// How long a node agent's heartbeat may be silent before its unfinished work items fail.
    pub agent_timeout: Duration,
    /// The image of the helper pods that mount restored claims for the node agents.
    pub helper_image: String,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            namespace: "stowage".into(),
            concurrent_backups: 1,
            work_dir: std::env::temp_dir().join("stowage-controller"),
            cluster_name: "kubernetes".into(),
            collect: CollectOptions::default(),
            validation_frequency: Duration::from_secs(60),
            max_attempts: 3,
            index_cache: true,
            agent_timeout: Duration::from_secs(300),
            helper_image: DEFAULT_HELPER_IMAGE.into(),
        }
    }
}

/// The default image of restore helper pods: anything that can `sleep` will do; the helper only
/// holds the claim mounted while the node agent writes it.
pub const DEFAULT_HELPER_IMAGE: &str = "busybox:1.36";

/// Why the controller could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Its work directory could not be made.
    #[error("work directory {0}: {1}")]
    WorkDir(PathBuf, #[source] std::io::Error),
    /// The CRDs are not installed (or not readable with the controller's rights).
    #[error("the stowage.dev CRDs are not installed or not readable: {0} (install them with `stowage k8s crds --apply`)")]
    Crds(String),
}

/// A backup this process is running.
struct Running {
    cancel: CancelToken,
    /// The namespaces it covers (`None`: every namespace), for the overlap rule.
    namespaces: Option<Vec<String>>,
}

/// What the reconcilers share.
pub(crate) struct Context {
    client: Client,
    opts: ControllerOptions,
    recorder: Recorder,
    /// Running backups by UID.
    running: Mutex<HashMap<String, Running>>,
    /// Running restores by UID.
    restores: Mutex<HashMap<String, CancelToken>>,
    /// Opened repositories by location name, with the location's generation.
    repos: Mutex<HashMap<String, (i64, Arc<OpenedLocation>)>>,
    /// The generation each location was last validated at.
    validated: Mutex<HashMap<String, i64>>,
}

impl Context {
    fn run_options(&self) -> RunOptions {
        RunOptions {
            collect: self.opts.collect.clone(),
            cluster_name: self.opts.cluster_name.clone(),
            cache_dir: self
                .opts
                .index_cache
                .then(|| self.opts.work_dir.join("cache")),
        }
    }

    /// A location's opened repository, opened now if this process has not yet (or its spec
    /// changed since); `None` when it cannot be opened (logged).
    async fn location(&self, location: &str) -> Option<Arc<OpenedLocation>> {
        let api: Api<crate::api::BackupStorageLocation> =
            Api::namespaced(self.client.clone(), &self.opts.namespace);
        let bsl = api.get_opt(location).await.ok()??;
        let generation = bsl.metadata.generation.unwrap_or(0);
        if let Some((g, opened)) = self.repos.lock().unwrap().get(location) {
            if *g == generation {
                return Some(opened.clone());
            }
        }
        match crate::store::open(&self.client, &bsl, &self.opts.work_dir).await {
            Ok(opened) => {
                let opened = Arc::new(opened);
                self.repos
                    .lock()
                    .unwrap()
                    .insert(location.to_string(), (generation, opened.clone()));
                Some(opened)
            }
            Err(e) => {
                tracing::warn!(location, "opening the location: {e}");
                None
            }
        }
    }

    /// Publishes an event on `obj`; a failure to publish is logged, never fatal.
    async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!("publishing event {reason}: {e}");
        }
    }
}

/// Runs the controller until the process is stopped.
pub async fn run(client: Client, opts: ControllerOptions) -> Result<(), ControllerError> {
    std::fs::create_dir_all(opts.work_dir.join("cache"))
        .map_err(|e| ControllerError::WorkDir(opts.work_dir.clone(), e))?;
    let backups: Api<crate::api::Backup> = Api::namespaced(client.clone(), &opts.namespace);
    let locations: Api<crate::api::BackupStorageLocation> =
        Api::namespaced(client.clone(), &opts.namespace);
    let restores: Api<crate::api::Restore> = Api::namespaced(client.clone(), &opts.namespace);
    for check in [
        backups.list(&Default::default()).await.map(drop),
        locations.list(&Default::default()).await.map(drop),
        restores.list(&Default::default()).await.map(drop),
    ] {
        check.map_err(|e| ControllerError::Crds(crate::collect::describe(&e)))?;
    }
    let reporter = Reporter {
        controller: "stowage-controller".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        opts,
        running: Mutex::new(HashMap::new()),
        restores: Mutex::new(HashMap::new()),
        repos: Mutex::new(HashMap::new()),
        validated: Mutex::new(HashMap::new()),
    });
    tracing::info!(namespace = %ctx.opts.namespace, "controller started");
    let location_loop = Controller::new(locations, watcher::Config::default())
        .run(locations::reconcile, locations::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("location reconcile: {e}");
            }
        });
    let backup_loop = Controller::new(backups, watcher::Config::default())
        .run(backups::reconcile, backups::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("backup reconcile: {e}");
            }
        });
    let restore_loop = Controller::new(restores, watcher::Config::default())
        .run(restores::reconcile, restores::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("restore reconcile: {e}");
            }
        });
    tokio::join!(location_loop, backup_loop, restore_loop);
    Ok(())
}

/// The merge patch that makes an object's status exactly `status`: the members of `members`
/// that it lacks become `null`, so a merge patch clears what is now unset.
fn exact_status_patch(status: &impl serde::Serialize, members: &[&str]) -> serde_json::Value {
    let mut body = serde_json::to_value(status).expect("a status serialises");
    if let Some(map) = body.as_object_mut() {
        for member in members {
            map.entry(*member).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "status": body })
}

/// Writes `status` (exactly, see [`exact_status_patch`]) through the status subresource.
pub(crate) async fn write_exact_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl serde::Serialize,
    members: &[&str],
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = exact_status_patch(status, members);
    api.patch_status(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(body),
    )
    .await
    .map(drop)
}

/// Writes the status that ends a run until it is written, or the object is gone: the end of a
/// run must not be lost to an API server outage, or the object would stay in a running phase
/// with nothing left to end it.
pub(crate) async fn write_final_exact_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl serde::Serialize,
    members: &[&str],
) where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut delay = Duration::from_millis(500);
    for attempt in 1.. {
        match write_exact_status(api, name, status, members).await {
            Ok(()) => return,
            Err(kube::Error::Api(s)) if s.code == 404 => return,
            Err(e) => {
                tracing::warn!(
                    object = name,
                    "writing the final status (attempt {attempt}): {e}"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// A reconciler's error: the API server refused a read or a write (retried with backoff).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReconcileError(String);

impl From<kube::Error> for ReconcileError {
    fn from(e: kube::Error) -> Self {
        ReconcileError(crate::collect::describe(&e))
    }
}
