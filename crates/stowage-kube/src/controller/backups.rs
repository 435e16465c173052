//! Backups: validated (`FailedValidation` with every problem), queued (`Queued` with a
//! position; at most `concurrent_backups` at once, and never two whose namespaces overlap), run
//! (`InProgress`, progress patched every few seconds), and ended: `Completed`,
//! `PartiallyFailed` (with the first errors in the status and all of them in the repository),
//! `Failed` (with the reason) or `Canceled`.
//!
//! A backup found `InProgress` that this process is not running was left by a controller that
//! died: if its snapshot was written, the backup is adopted from the snapshot's
//! `metadata/backup.json`; otherwise it runs again (objects already stored deduplicate), up to
//! `max_attempts` runs in all, then it is `Failed` with that reason. None stays `InProgress`.

use super::{locations, volumes, Context, ReconcileError, Running};
use crate::api::{Backup, BackupPhase, BackupStatus};
use crate::collect::Progress;
use crate::discovery::Discovered;
use crate::layout::{self, files};
use crate::run::{self, RunError};
use crate::runlog::RunLog;
use crate::validate::{validate_backup, LocationCheck, ValidatedBackup};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Api;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use stowage_core::cancel::CancelToken;
use stowage_core::repo::session::{IndexSource, ReadWork};

/// How long a backup waits in `New` for its location's first validation before it fails
/// validation.
const LOCATION_GRACE: Duration = Duration::from_secs(120);
/// How often a running backup's progress is written.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// How often a queued backup looks again for its turn (it is also woken by changes).
const QUEUE_RECHECK: Duration = Duration::from_secs(5);

fn api(ctx: &Context) -> Api<Backup> {
    Api::namespaced(ctx.client.clone(), &ctx.opts.namespace)
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Every member of a Backup's status, so that a merge patch can clear those now unset.
const STATUS_MEMBERS: [&str; 18] = [
    "phase",
    "validationErrors",
    "progress",
    "warnings",
    "errors",
    "firstWarnings",
    "firstErrors",
    "failureReason",
    "startTimestamp",
    "completionTimestamp",
    "expiration",
    "snapshotId",
    "bytesAdded",
    "formatVersion",
    "volumes",
    "queuePosition",
    "attempt",
    "observedGeneration",
];

/// Writes `status` through the status subresource.
async fn write_status(ctx: &Context, name: &str, status: &BackupStatus) -> Result<(), kube::Error> {
    super::write_exact_status(&api(ctx), name, status, &STATUS_MEMBERS).await
}

/// Writes the status that ends a run, until it is written.
async fn write_final_status(ctx: &Context, name: &str, status: &BackupStatus) {
    super::write_final_exact_status(&api(ctx), name, status, &STATUS_MEMBERS).await
}

pub(super) fn error_policy(
    backup: Arc<Backup>,
    err: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(backup = ?backup.metadata.name, "reconcile failed, retrying: {err}");
    Action::requeue(Duration::from_secs(5))
}

pub(super) async fn reconcile(
    backup: Arc<Backup>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if backup.metadata.deletion_timestamp.is_some() {
        if let Some(uid) = &backup.metadata.uid {
            if let Some(r) = ctx.running.lock().unwrap().get(uid) {
                r.cancel.cancel();
            }
        }
        return Ok(Action::await_change());
    }
    let uid = backup.metadata.uid.clone().unwrap_or_default();
    let status = backup.status.clone().unwrap_or_default();
    let cancel = backup.spec.cancel_requested();
    // A Backup synced from a repository is a record of a backup made elsewhere (its status
    // follows its creation): never run here.
    let synced = backup
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(super::BACKUP_UID_ANNOTATION));
    if synced {
        return Ok(Action::await_change());
    }
    match backup.phase() {
        BackupPhase::New if cancel => {
            end_canceled(&ctx, &backup, status, "canceled before it started").await
        }
        BackupPhase::New => validate(&ctx, &backup, status).await,
        BackupPhase::Queued if cancel => {
            end_canceled(&ctx, &backup, status, "canceled while queued").await
        }
        BackupPhase::Queued => try_start(&ctx, &backup, status).await,
        BackupPhase::InProgress => {
            let running = ctx
                .running
                .lock()
                .unwrap()
                .get(&uid)
                .map(|r| r.cancel.clone());
            match running {
                Some(token) => {
                    if cancel {
                        token.cancel();
                    }
                    Ok(Action::await_change())
                }
                None if cancel => {
                    end_canceled(
                        &ctx,
                        &backup,
                        status,
                        "canceled; its run had stopped with the controller",
                    )
                    .await
                }
                None => resume(&ctx, &backup, status).await,
            }
        }
        // Ended, or being deleted (a later issue): nothing to do until it changes.
        _ => Ok(Action::await_change()),
    }
}

async fn end_canceled(
    ctx: &Context,
    backup: &Backup,
    mut status: BackupStatus,
    why: &str,
) -> Result<Action, ReconcileError> {
    let name = backup.metadata.name.clone().unwrap_or_default();
    status.phase = Some(BackupPhase::Canceled);
    status.failure_reason = Some(why.to_string());
    status.queue_position = None;
    status.completion_timestamp = Some(now());
    write_status(ctx, &name, &status).await?;
    ctx.event(backup, EventType::Normal, "Canceled", why.to_string())
        .await;
    Ok(Action::await_change())
}

/// Checks the spec against the cluster and the location; every problem at once.
async fn validated(
    ctx: &Context,
    backup: &Backup,
) -> Result<(Result<ValidatedBackup, Vec<String>>, bool, Discovered), ReconcileError> {
    let discovered = crate::discovery::discover(&ctx.client)
        .await
        .map_err(|e| ReconcileError(e.to_string()))?;
    let (check, bsl) = locations::resolve(ctx, backup.spec.storage_location.as_deref()).await?;
    // A location created with the backup may not have been validated yet: wait for it.
    let pending = matches!(check, LocationCheck::Unavailable(..))
        && bsl
            .as_ref()
            .and_then(|b| b.status.as_ref())
            .and_then(|s| s.phase)
            .is_none();
    let result = validate_backup(&backup.spec, &discovered.catalog, check);
    Ok((result, pending, discovered))
}

async fn validate(
    ctx: &Context,
    backup: &Backup,
    mut status: BackupStatus,
) -> Result<Action, ReconcileError> {
    let name = backup.metadata.name.clone().unwrap_or_default();
    let (result, pending, _) = validated(ctx, backup).await?;
    match result {
        Err(problems) => {
            let age = backup
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
                .unwrap_or(Duration::ZERO);
            if pending && age < LOCATION_GRACE {
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            status.phase = Some(BackupPhase::FailedValidation);
            status.validation_errors = problems.clone();
            status.completion_timestamp = Some(now());
            write_status(ctx, &name, &status).await?;
            ctx.event(
                backup,
                EventType::Warning,
                "FailedValidation",
                problems.join("; "),
            )
            .await;
            Ok(Action::await_change())
        }
        Ok(_) => {
            status.phase = Some(BackupPhase::Queued);
            status.validation_errors = Vec::new();
            write_status(ctx, &name, &status).await?;
            Ok(Action::requeue(Duration::from_millis(100)))
        }
    }
}

/// The namespaces a backup covers, for the overlap rule: `None` when it may cover any (a glob,
/// or every namespace).
fn covered_namespaces(backup: &Backup) -> Option<Vec<String>> {
    let inc = &backup.spec.included_namespaces;
    if inc.is_empty() || inc.iter().any(|n| n.contains(['*', '?', '['])) {
        return None;
    }
    Some(inc.clone())
}

fn overlap(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.iter().any(|n| b.contains(n)),
        _ => true,
    }
}

/// Starts a queued backup if its turn has come: backups start in creation order, each when
/// fewer than `concurrent_backups` run and none running covers a namespace it covers.
async fn try_start(
    ctx: &Arc<Context>,
    backup: &Backup,
    mut status: BackupStatus,
) -> Result<Action, ReconcileError> {
    let name = backup.metadata.name.clone().unwrap_or_default();
    let uid = backup.metadata.uid.clone().unwrap_or_default();
    let all = api(ctx).list(&Default::default()).await?.items;
    let mut queued: Vec<&Backup> = all
        .iter()
        .filter(|b| b.phase() == BackupPhase::Queued && !b.spec.cancel_requested())
        .collect();
    queued.sort_by(|a, b| {
        (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            &a.metadata.name,
        )
            .cmp(&(
                b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                &b.metadata.name,
            ))
    });
    // The decision and the reservation of the slot are made under one lock: the controller
    // reconciles different backups at once, and two queued ones must not take the same slot.
    let position = {
        let mut running = ctx.running.lock().unwrap();
        let mut busy: Vec<Option<Vec<String>>> =
            running.values().map(|r| r.namespaces.clone()).collect();
        // Backups InProgress that this process is not running (being resumed) count too.
        for b in all.iter().filter(|b| b.phase() == BackupPhase::InProgress) {
            if !running.contains_key(b.metadata.uid.as_deref().unwrap_or_default()) {
                busy.push(covered_namespaces(b));
            }
        }
        let mut position = 0u32;
        let mut mine = false;
        for q in queued {
            let ns = covered_namespaces(q);
            let fits = busy.len() < ctx.opts.concurrent_backups.max(1)
                && !busy.iter().any(|b| overlap(b, &ns));
            let is_me = q.metadata.uid.as_deref() == Some(uid.as_str());
            if fits && is_me {
                running.insert(
                    uid.clone(),
                    Running {
                        cancel: CancelToken::new(),
                        namespaces: ns,
                    },
                );
                mine = true;
                break;
            }
            if fits {
                // An earlier backup goes first; it is started by its own reconcile.
                busy.push(ns);
            }
            position += 1;
            if is_me {
                break;
            }
        }
        (!mine).then_some(position)
    };
    let Some(position) = position else {
        let started = start(ctx, backup, status).await;
        if !matches!(started, Ok(true)) {
            // It did not launch: give the slot back.
            ctx.running.lock().unwrap().remove(&uid);
        }
        return started.map(|_| Action::await_change());
    };
    if status.queue_position != Some(position) {
        status.queue_position = Some(position);
        write_status(ctx, &name, &status).await?;
    }
    Ok(Action::requeue(QUEUE_RECHECK))
}

/// Starts a backup whose slot is reserved; gives whether it was launched (it is not when it
/// no longer passes validation).
async fn start(
    ctx: &Arc<Context>,
    backup: &Backup,
    mut status: BackupStatus,
) -> Result<bool, ReconcileError> {
    let name = backup.metadata.name.clone().unwrap_or_default();
    // The location or the cluster may have changed while it was queued.
    let Some((validated, discovered)) = revalidate(ctx, backup, &mut status, |problems| {
        (BackupPhase::FailedValidation, None, problems)
    })
    .await?
    else {
        return Ok(false);
    };
    let started = Timestamp::now();
    status.phase = Some(BackupPhase::InProgress);
    status.queue_position = None;
    status.start_timestamp = Some(Time(started));
    let ttl = k8s_openapi::jiff::SignedDuration::try_from(validated.ttl)
        .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX);
    status.expiration = started.checked_add(ttl).ok().map(Time);
    status.attempt = 1;
    write_status(ctx, &name, &status).await?;
    ctx.event(
        backup,
        EventType::Normal,
        "Started",
        format!("backing up into location {}", validated.location),
    )
    .await;
    launch(ctx, backup.clone(), validated, discovered, status);
    Ok(true)
}

/// Validates the backup again before it runs, giving the discovery the run is to use; when it
/// no longer passes, ends it with the phase, failure reason and validation errors `fail` makes
/// of the problems, and gives `None`.
async fn revalidate(
    ctx: &Context,
    backup: &Backup,
    status: &mut BackupStatus,
    fail: impl FnOnce(Vec<String>) -> (BackupPhase, Option<String>, Vec<String>),
) -> Result<Option<(ValidatedBackup, Discovered)>, ReconcileError> {
    let name = backup.metadata.name.clone().unwrap_or_default();
    let (result, _, discovered) = validated(ctx, backup).await?;
    match result {
        Ok(v) => Ok(Some((v, discovered))),
        Err(problems) => {
            let (phase, reason, errors) = fail(problems);
            status.phase = Some(phase);
            status.failure_reason = reason;
            status.validation_errors = errors;
            status.queue_position = None;
            status.completion_timestamp = Some(now());
            write_status(ctx, &name, status).await?;
            Ok(None)
        }
    }
}

/// An `InProgress` backup this process is not running: adopt its snapshot, or run it again.
async fn resume(
    ctx: &Arc<Context>,
    backup: &Backup,
    mut status: BackupStatus,
) -> Result<Action, ReconcileError> {
    let name = backup.metadata.name.clone().unwrap_or_default();
    let uid = backup.metadata.uid.clone().unwrap_or_default();
    let Some((validated, discovered)) = revalidate(ctx, backup, &mut status, |problems| {
        let why = format!(
            "the controller restarted during the backup, and it can no longer run: {}",
            problems.join("; ")
        );
        (BackupPhase::Failed, Some(why), Vec::new())
    })
    .await?
    else {
        return Ok(Action::await_change());
    };
    if let Some(repo) = repository(ctx, &validated.location).await {
        let found = tokio::task::spawn_blocking({
            let repo = repo.clone();
            let uid = uid.clone();
            move || -> Option<BackupStatus> {
                let (id, snap) = layout::find_snapshot(&repo, &uid).ok()??;
                let session = repo
                    .lock::<ReadWork>()
                    .ok()?
                    .load_index(&IndexSource::Memory, &())
                    .ok()?;
                let bytes = layout::read_file(&session, &snap, files::BACKUP).ok()?;
                let ended: Backup = serde_json::from_slice(&bytes).ok()?;
                let mut s = ended.status?;
                s.snapshot_id = Some(id.to_hex());
                s.bytes_added = Some(snap.summary.bytes_added_stored);
                Some(s)
            }
        })
        .await
        .ok()
        .flatten();
        if let Some(mut adopted) = found {
            adopted.attempt = status.attempt;
            tracing::info!(backup = %name, "adopting the snapshot a previous controller wrote");
            write_final_status(ctx, &name, &adopted).await;
            ctx.event(
                backup,
                EventType::Normal,
                "Adopted",
                "the snapshot was written before the controller restarted".into(),
            )
            .await;
            return Ok(Action::await_change());
        }
    }
    if status.attempt >= ctx.opts.max_attempts {
        status.phase = Some(BackupPhase::Failed);
        status.failure_reason = Some(format!(
            "the controller stopped during each of the {} runs of this backup",
            status.attempt
        ));
        status.completion_timestamp = Some(now());
        write_status(ctx, &name, &status).await?;
        ctx.event(
            backup,
            EventType::Warning,
            "Failed",
            status.failure_reason.clone().unwrap_or_default(),
        )
        .await;
        return Ok(Action::await_change());
    }
    status.attempt += 1;
    write_status(ctx, &name, &status).await?;
    ctx.event(
        backup,
        EventType::Normal,
        "Resumed",
        format!("run {} after a controller restart", status.attempt),
    )
    .await;
    launch(ctx, backup.clone(), validated, discovered, status);
    Ok(Action::await_change())
}

/// The opened repository of a location, opened now if this process has not yet.
async fn repository(ctx: &Context, location: &str) -> Option<Arc<stowage_core::repo::Repository>> {
    ctx.location(location).await.map(|l| l.repo.clone())
}

/// Runs the backup on its own task; its end is written to the status there.
fn launch(
    ctx: &Arc<Context>,
    backup: Backup,
    validated: ValidatedBackup,
    discovered: Discovered,
    status: BackupStatus,
) {
    let uid = backup.metadata.uid.clone().unwrap_or_default();
    // A backup started from the queue has its slot reserved already; a resumed one takes it now.
    let cancel = ctx
        .running
        .lock()
        .unwrap()
        .entry(uid.clone())
        .or_insert_with(|| Running {
            cancel: CancelToken::new(),
            namespaces: covered_namespaces(&backup),
        })
        .cancel
        .clone();
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let name = backup.metadata.name.clone().unwrap_or_default();
        let final_status = execute(&ctx, &backup, &validated, discovered, status, cancel).await;
        write_final_status(&ctx, &name, &final_status).await;
        ctx.running.lock().unwrap().remove(&uid);
        let phase = final_status.phase.unwrap_or_default();
        let (type_, note) = match phase {
            BackupPhase::Completed => (
                EventType::Normal,
                format!(
                    "{} items",
                    final_status
                        .progress
                        .as_ref()
                        .map_or(0, |p| p.items_backed_up)
                ),
            ),
            BackupPhase::PartiallyFailed => (
                EventType::Warning,
                format!(
                    "{} errors; first: {}",
                    final_status.errors,
                    final_status
                        .first_errors
                        .first()
                        .map_or("", |p| p.message.as_str())
                ),
            ),
            _ => (
                EventType::Warning,
                final_status.failure_reason.clone().unwrap_or_default(),
            ),
        };
        ctx.event(&backup, type_, &phase.to_string(), note).await;
    });
}

/// One run to its end, retrying transient failures; returns the final status. The first
/// attempt uses the discovery the backup was validated with; a retry discovers again.
async fn execute(
    ctx: &Arc<Context>,
    backup: &Backup,
    validated: &ValidatedBackup,
    discovered: Discovered,
    mut status: BackupStatus,
    cancel: CancelToken,
) -> BackupStatus {
    let name = backup.metadata.name.clone().unwrap_or_default();
    let mut discovered = Some(discovered);
    loop {
        let discovery = match discovered.take() {
            Some(d) => Ok(d),
            None => crate::discovery::discover(&ctx.client).await,
        };
        let outcome = match (repository(ctx, &validated.location).await, discovery) {
            (None, _) => Err(RunError::Transient(format!(
                "the storage location {} cannot be opened",
                validated.location
            ))),
            (_, Err(e)) => Err(RunError::Transient(e.to_string())),
            (Some(repo), Ok(d)) => {
                run_once(ctx, backup, validated, &d, repo, &status, &cancel).await
            }
        };
        match outcome {
            Ok(o) => return o.status,
            Err(RunError::Canceled) => {
                status.phase = Some(BackupPhase::Canceled);
                status.failure_reason =
                    Some("canceled on request (spec.cancel); no snapshot was written".into());
                status.completion_timestamp = Some(now());
                return status;
            }
            Err(RunError::Transient(msg))
                if status.attempt < ctx.opts.max_attempts && !cancel.is_canceled() =>
            {
                tracing::warn!(backup = %name, "run {} failed, trying again: {msg}", status.attempt);
                tokio::time::sleep(Duration::from_secs(5 * u64::from(status.attempt))).await;
                status.attempt += 1;
                let _ = write_status(ctx, &name, &status).await;
            }
            Err(RunError::Transient(msg) | RunError::Fatal(msg)) => {
                status.phase = Some(BackupPhase::Failed);
                status.failure_reason = Some(msg);
                status.completion_timestamp = Some(now());
                return status;
            }
        }
    }
}

/// One attempt, writing its progress to the status every [`PROGRESS_EVERY`].
async fn run_once(
    ctx: &Arc<Context>,
    backup: &Backup,
    validated: &ValidatedBackup,
    discovered: &Discovered,
    repo: Arc<stowage_core::repo::Repository>,
    status: &BackupStatus,
    cancel: &CancelToken,
) -> Result<run::Outcome, RunError> {
    let name = backup.metadata.name.clone().unwrap_or_default();
    let namespace = backup.metadata.namespace.clone().unwrap_or_default();
    let log = RunLog::new(format!("{namespace}/{name}"));
    for w in &discovered.warnings {
        log.warn(&format!("discovery: {w}"));
    }
    // Volume data first: the objects' snapshot, written last, records the volumes' snapshots.
    let volumes = {
        let last_write = std::sync::Mutex::new(std::time::Instant::now() - PROGRESS_EVERY);
        let progress_status = |lines: &[crate::api::VolumeResult]| {
            let mut last = last_write.lock().unwrap();
            if last.elapsed() < PROGRESS_EVERY {
                return;
            }
            *last = std::time::Instant::now();
            let mut s = status.clone();
            s.volumes = lines
                .iter()
                .take(volumes::STATUS_VOLUMES)
                .cloned()
                .collect();
            let ctx = ctx.clone();
            let name = name.clone();
            tokio::spawn(async move {
                if let Err(e) = write_status(&ctx, &name, &s).await {
                    tracing::debug!(backup = %name, "volume progress: {e}");
                }
            });
        };
        volumes::back_up(ctx, backup, validated, cancel, progress_status).await?
    };
    for v in &volumes {
        let what = v.pvc.as_deref().unwrap_or(&v.volume);
        let line = match &v.reason {
            Some(r) => format!("volume {}/{what}: {} ({r})", v.namespace, v.outcome),
            None => format!("volume {}/{what}: {}", v.namespace, v.outcome),
        };
        log.info(&line);
    }
    let progress = Arc::new(Progress::default());
    let opts = ctx.run_options();
    let run = run::run(
        ctx.client.clone(),
        backup,
        validated,
        &discovered.catalog,
        repo,
        status.clone(),
        &opts,
        cancel.clone(),
        progress.clone(),
        &log,
        &volumes,
    );
    tokio::pin!(run);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            r = &mut run => return r,
            _ = tick.tick() => {
                let mut s = status.clone();
                s.volumes = volumes.iter().take(volumes::STATUS_VOLUMES).cloned().collect();
                s.progress = Some(crate::api::BackupProgress {
                    total_items: progress.total.load(Ordering::Relaxed),
                    items_backed_up: progress.done.load(Ordering::Relaxed),
                });
                if let Err(e) = write_status(ctx, &name, &s).await {
                    tracing::debug!(backup = %name, "progress: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_patch_names_every_member() {
        let full = BackupStatus {
            phase: Some(BackupPhase::Completed),
            validation_errors: vec!["x".into()],
            progress: Some(Default::default()),
            warnings: 1,
            errors: 1,
            first_warnings: vec![Default::default()],
            first_errors: vec![Default::default()],
            failure_reason: Some("x".into()),
            start_timestamp: Some(now()),
            completion_timestamp: Some(now()),
            expiration: Some(now()),
            snapshot_id: Some("x".into()),
            bytes_added: Some(1),
            format_version: Some("1".into()),
            volumes: vec![Default::default()],
            queue_position: Some(1),
            attempt: 1,
            observed_generation: Some(1),
        };
        let members: Vec<String> = serde_json::to_value(&full)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut known: Vec<String> = STATUS_MEMBERS.iter().map(|s| s.to_string()).collect();
        known.sort();
        assert_eq!(
            members, known,
            "STATUS_MEMBERS must list every member of BackupStatus"
        );
        let cleared = super::super::exact_status_patch(&BackupStatus::default(), &STATUS_MEMBERS);
        assert!(cleared["status"]["queuePosition"].is_null());
        assert_eq!(
            cleared["status"].as_object().unwrap().len(),
            STATUS_MEMBERS.len()
        );
    }

    #[test]
    fn namespace_overlap_is_conservative() {
        let some = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(!overlap(&some(&["a"]), &some(&["b"])));
        assert!(overlap(&some(&["a", "b"]), &some(&["b"])));
        assert!(overlap(&None, &some(&["b"])));
        assert!(overlap(&some(&["a"]), &None));
    }

    #[test]
    fn globs_and_everything_cover_any_namespace() {
        let mut b = Backup::new("b", Default::default());
        assert_eq!(covered_namespaces(&b), None);
        b.spec.included_namespaces = vec!["web-*".into()];
        assert_eq!(covered_namespaces(&b), None);
        b.spec.included_namespaces = vec!["web".into(), "db".into()];
        assert_eq!(
            covered_namespaces(&b),
            Some(vec!["web".into(), "db".into()])
        );
    }
}
