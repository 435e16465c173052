//! One backup run: the collector feeds the engine through a bounded channel (the engine runs
//! on a blocking thread, storing each object as it comes), then the backup's own records go
//! under `metadata/`, and the snapshot is written: all or nothing.

use crate::api::{
    Backup, BackupPhase, BackupStatus, Problem, ProblemKind, VolumeOutcome, VolumeResult,
};
use crate::collect::{
    CollectError, CollectOptions, Collected, Collector, Finding, Progress, Severity,
};
use crate::filter::ResourceCatalog;
use crate::layout::{self, files};
use crate::runlog::RunLog;
use crate::validate::ValidatedBackup;
use std::path::PathBuf;
use std::sync::Arc;
use stowage_core::backup::{
    self, BackupError, BackupOptions, BackupSource, Document, DocumentEvent, ParentChoice,
    ProducerError,
};
use stowage_core::cancel::CancelToken;
use stowage_core::error::{Classified, ErrorClass};
use stowage_core::progress::Control;
use stowage_core::repo::session::{BackupWork, IndexSource};
use stowage_core::repo::Repository;
use tokio::sync::mpsc;

/// Findings kept in the status itself (all of them are in `metadata/results.json`).
pub const FIRST_PROBLEMS: usize = 10;

/// Documents in flight between the collector and the engine.
const CHANNEL_DOCUMENTS: usize = 256;

/// How runs are made.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Listing.
    pub collect: CollectOptions,
    /// The host name recorded in snapshots (the cluster's name).
    pub cluster_name: String,
    /// The index cache's folder; `None`: the index is read into memory.
    pub cache_dir: Option<PathBuf>,
}

/// How a run ended, to be written into the Backup's status.
#[derive(Debug)]
pub struct Outcome {
    /// The final status (phase, counts, first problems, snapshot).
    pub status: BackupStatus,
}

/// Why a run could not produce a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The backup was cancelled; nothing was written that a snapshot refers to.
    #[error("canceled")]
    Canceled,
    /// The repository or the API server failed in a way worth another attempt.
    #[error("{0}")]
    Transient(String),
    /// The backup cannot be made (the message says why).
    #[error("{0}")]
    Fatal(String),
}

fn to_problem(f: &Finding) -> Problem {
    Problem {
        kind: match f.kind {
            "ListFailed" => ProblemKind::ListFailed,
            "GetFailed" => ProblemKind::GetFailed,
            "NamespaceNotFound" => ProblemKind::NamespaceNotFound,
            "RelatedNotFound" => ProblemKind::Skipped,
            _ => ProblemKind::Other,
        },
        resource: f.resource.clone(),
        namespace: f.namespace.clone(),
        name: f.name.clone(),
        message: f.message.clone(),
    }
}

/// Runs one backup into `repo`. `status` is the status as the run started (start time,
/// expiration, attempt); the outcome's status completes it.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: kube::Client,
    backup: &Backup,
    validated: &ValidatedBackup,
    catalog: &ResourceCatalog,
    repo: Arc<Repository>,
    status: BackupStatus,
    opts: &RunOptions,
    cancel: CancelToken,
    progress: Arc<Progress>,
    log: &RunLog,
    volumes: &[VolumeResult],
) -> Result<Outcome, RunError> {
    let namespace = backup.metadata.namespace.clone().unwrap_or_default();
    let name = backup.metadata.name.clone().unwrap_or_default();
    let uid = backup.metadata.uid.clone().unwrap_or_default();
    log.info(&format!(
        "backup {namespace}/{name} (attempt {}) into location {}",
        status.attempt, validated.location
    ));

    // The session first: a repository that cannot be locked fails before anything is listed.
    let cache = opts.cache_dir.clone();
    let session = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || {
            let source = match cache {
                Some(dir) => IndexSource::Cache(dir),
                None => IndexSource::Memory,
            };
            repo.lock::<BackupWork>()?.load_index(&source, &())
        })
        .await
        .map_err(|e| RunError::Fatal(format!("opening the repository panicked: {e}")))?
        .map_err(|e| match e.class() {
            ErrorClass::Transient => RunError::Transient(format!("opening the repository: {e}")),
            _ => RunError::Fatal(format!("opening the repository: {e}")),
        })?
    };

    let (tx, mut rx) = mpsc::channel::<Result<DocumentEvent, ProducerError>>(CHANNEL_DOCUMENTS);
    let engine = {
        let cancel = cancel.clone();
        let backup_opts = BackupOptions {
            tags: vec![
                format!("{}{name}", layout::TAG_NAME),
                format!("{}{uid}", layout::TAG_UID),
            ],
            hostname: Some(opts.cluster_name.clone()),
            parent: ParentChoice::None,
            ..BackupOptions::default()
        };
        let label = layout::label(&namespace, &name);
        tokio::task::spawn_blocking(move || {
            let mut events = std::iter::from_fn(move || rx.blocking_recv());
            let control = Control {
                cancel,
                ..Control::default()
            };
            backup::run(
                &session,
                BackupSource::DocumentStream {
                    label,
                    events: &mut events,
                },
                &backup_opts,
                &control,
            )
        })
    };

    let collector = Collector::new(
        client,
        catalog,
        &validated.filter,
        opts.collect.clone(),
        tx.clone(),
        log,
        cancel.clone(),
        progress.clone(),
    );
    let collected = collector.run().await;
    let collected: Collected = match collected {
        Ok(c) => c,
        Err(e) => {
            drop(tx);
            // The engine's own error, if it stopped first, says more than "sink closed".
            let engine_result = engine.await;
            return Err(match (e, engine_result) {
                (CollectError::Canceled, _) => RunError::Canceled,
                (CollectError::SinkClosed, Ok(Err(be))) => engine_error(be),
                (CollectError::Namespaces(k), _) => RunError::Transient(format!(
                    "listing namespaces: {}",
                    crate::collect::describe(&k)
                )),
                (other, _) => RunError::Fatal(other.to_string()),
            });
        }
    };

    let warnings: Vec<Problem> = collected
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .map(to_problem)
        .collect();
    let mut errors: Vec<Problem> = collected
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(to_problem)
        .collect();
    // A volume whose data could not be copied makes the backup PartiallyFailed.
    errors.extend(
        volumes
            .iter()
            .filter(|v| matches!(v.outcome, VolumeOutcome::Failed | VolumeOutcome::Canceled))
            .map(|v| Problem {
                kind: ProblemKind::WriteFailed,
                resource: Some("persistentvolumeclaims".into()),
                namespace: Some(v.namespace.clone()),
                name: v.pvc.clone(),
                message: format!(
                    "volume data ({}): {}",
                    v.outcome,
                    v.reason.as_deref().unwrap_or("no reason given")
                ),
            }),
    );
    let mut status = status;
    status.phase = Some(match errors.is_empty() {
        true => BackupPhase::Completed,
        false => BackupPhase::PartiallyFailed,
    });
    status.warnings = warnings.len() as u32;
    status.errors = errors.len() as u32;
    status.first_warnings = warnings.iter().take(FIRST_PROBLEMS).cloned().collect();
    status.first_errors = errors.iter().take(FIRST_PROBLEMS).cloned().collect();
    status.progress = Some(crate::api::BackupProgress {
        total_items: collected.items,
        items_backed_up: collected.items,
    });
    status.completion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    status.format_version = Some(layout::FORMAT_VERSION.to_string());
    status.volumes = volumes
        .iter()
        .take(crate::controller::STATUS_VOLUMES)
        .cloned()
        .collect();
    log.info(&format!(
        "collected {} objects in {} namespaces: {} errors, {} warnings",
        collected.items,
        collected.namespaces.len(),
        errors.len(),
        warnings.len()
    ));

    // The records, last: the Backup as it ends, the resource list, the results and the log.
    let mut ended = backup.clone();
    ended.metadata.managed_fields = None;
    ended.status = Some(status.clone());
    let records = [
        (
            files::VERSION,
            format!("{}\n", layout::FORMAT_VERSION).into_bytes(),
        ),
        (files::BACKUP, layout::encode_record(&ended)),
        (
            files::RESOURCE_LIST,
            layout::encode_record(&collected.resource_list),
        ),
        (
            files::RESULTS,
            layout::encode_record(&serde_json::json!({"warnings": warnings, "errors": errors})),
        ),
        (
            files::VOLUME_SNAPSHOTS,
            if volumes.is_empty() {
                b"[]".to_vec()
            } else {
                layout::encode_record(volumes)
            },
        ),
    ];
    for (path, data) in records {
        if tx
            .send(Ok(DocumentEvent::Document(Document::new(path, data))))
            .await
            .is_err()
        {
            break;
        }
    }
    log.info("writing the snapshot");
    let _ = tx
        .send(Ok(DocumentEvent::Document(Document::new(
            files::LOG,
            log.text().into_bytes(),
        ))))
        .await;
    drop(tx);

    let report = match engine.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(engine_error(e)),
        Err(e) => return Err(RunError::Fatal(format!("the backup engine panicked: {e}"))),
    };
    status.snapshot_id = Some(report.snapshot_id.to_hex());
    status.bytes_added = Some(report.snapshot.summary.bytes_added_stored);
    tracing::info!(backup = %format!("{namespace}/{name}"), snapshot = %report.snapshot_id.to_hex(), "snapshot written");
    Ok(Outcome { status })
}

fn engine_error(e: BackupError) -> RunError {
    match e.class() {
        ErrorClass::Canceled => RunError::Canceled,
        ErrorClass::Transient => RunError::Transient(format!("writing the repository: {e}")),
        _ => RunError::Fatal(format!("writing the repository: {e}")),
    }
}
