//! Restores: validated (`FailedValidation` with every problem: the spec's own, the backup's,
//! the modifiers', and what the target cluster lacks), run (`InProgress`, progress patched
//! every few seconds), and ended: `Completed`, `PartiallyFailed` (items that could not be
//! restored, the first ones in the status), `Failed` (with the reason) or `Canceled`.
//!
//! A restore found `InProgress` that this process is not running was left by a controller
//! that died: it runs again from the start, which is safe (objects it already created are
//! recognised by their restore label and counted as created, never duplicated), up to
//! `max_attempts` runs in all. None stays `InProgress`.

use super::{volumes, Context, ReconcileError};
use crate::api::{Backup, BackupPhase, Restore, RestorePhase, RestoreProgress, RestoreStatus};
use crate::restore::apply::{ApplyOptions, Modifier, Report, VolumeData};
use crate::restore::{self, RestoreError, RestoreInput};
use crate::restore_modifiers::ResourceModifiers;
use crate::runlog::RunLog;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Api;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stowage_core::cancel::CancelToken;

/// How often a running restore's progress is written.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// Label of backups made by a schedule (Velero's `velero.io/schedule-name`).
pub const SCHEDULE_LABEL: &str = "stowage.dev/schedule-name";
/// Annotation of a Backup object synced from a repository: the UID its snapshot is tagged
/// with (the object's own UID is that of the copy).
pub const BACKUP_UID_ANNOTATION: &str = "stowage.dev/backup-uid";
/// Items a restore creates at once within a wave.
const CONCURRENCY: usize = 8;

fn api(ctx: &Context) -> Api<Restore> {
    Api::namespaced(ctx.client.clone(), &ctx.opts.namespace)
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Every member of a Restore's status, so that a merge patch can clear those now unset.
const STATUS_MEMBERS: [&str; 18] = [
    "phase",
    "validationErrors",
    "backupName",
    "snapshotId",
    "progress",
    "counts",
    "verification",
    "volumes",
    "targetLacks",
    "warnings",
    "errors",
    "firstWarnings",
    "firstErrors",
    "failureReason",
    "startTimestamp",
    "completionTimestamp",
    "recordSnapshotId",
    "attempt",
];

async fn write_status(
    ctx: &Context,
    name: &str,
    status: &RestoreStatus,
) -> Result<(), kube::Error> {
    super::write_exact_status(&api(ctx), name, status, &STATUS_MEMBERS).await
}

/// Writes the status that ends a run, until it is written.
async fn write_final_status(ctx: &Context, name: &str, status: &RestoreStatus) {
    super::write_final_exact_status(&api(ctx), name, status, &STATUS_MEMBERS).await
}

pub(super) fn error_policy(
    restore: Arc<Restore>,
    err: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(restore = ?restore.metadata.name, "reconcile failed, retrying: {err}");
    Action::requeue(Duration::from_secs(5))
}

pub(super) async fn reconcile(
    restore: Arc<Restore>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let uid = restore.metadata.uid.clone().unwrap_or_default();
    let running = ctx.restores.lock().unwrap().get(&uid).cloned();
    if restore.metadata.deletion_timestamp.is_some() {
        if let Some(token) = running {
            token.cancel();
        }
        return Ok(Action::await_change());
    }
    let status = restore.status.clone().unwrap_or_default();
    let cancel = restore.spec.cancel_requested();
    match restore.phase() {
        RestorePhase::New if cancel => {
            end(
                &ctx,
                &restore,
                status,
                RestorePhase::Canceled,
                "canceled before it started",
            )
            .await
        }
        RestorePhase::New => start(&ctx, &restore, status, 1).await,
        RestorePhase::InProgress => match running {
            Some(token) => {
                if cancel {
                    token.cancel();
                }
                Ok(Action::await_change())
            }
            None if cancel => {
                end(
                    &ctx,
                    &restore,
                    status,
                    RestorePhase::Canceled,
                    "canceled; its run had stopped with the controller",
                )
                .await
            }
            None if status.attempt >= ctx.opts.max_attempts => {
                let why = format!(
                    "the controller stopped during each of the {} runs of this restore",
                    status.attempt
                );
                end(&ctx, &restore, status, RestorePhase::Failed, &why).await
            }
            None => {
                let attempt = status.attempt + 1;
                ctx.event(
                    &*restore,
                    EventType::Normal,
                    "Resumed",
                    format!("run {attempt} after a controller restart"),
                )
                .await;
                start(&ctx, &restore, status, attempt).await
            }
        },
        _ => Ok(Action::await_change()),
    }
}

async fn end(
    ctx: &Context,
    restore: &Restore,
    mut status: RestoreStatus,
    phase: RestorePhase,
    why: &str,
) -> Result<Action, ReconcileError> {
    let name = restore.metadata.name.clone().unwrap_or_default();
    status.phase = Some(phase);
    status.failure_reason = Some(why.to_string());
    status.completion_timestamp = Some(now());
    write_status(ctx, &name, &status).await?;
    let type_ = match phase {
        RestorePhase::Canceled => EventType::Normal,
        _ => EventType::Warning,
    };
    ctx.event(restore, type_, &phase.to_string(), why.to_string())
        .await;
    Ok(Action::await_change())
}

async fn fail_validation(
    ctx: &Context,
    restore: &Restore,
    mut status: RestoreStatus,
    problems: Vec<String>,
) -> Result<Action, ReconcileError> {
    let name = restore.metadata.name.clone().unwrap_or_default();
    status.phase = Some(RestorePhase::FailedValidation);
    status.validation_errors = problems.clone();
    status.completion_timestamp = Some(now());
    write_status(ctx, &name, &status).await?;
    ctx.event(
        restore,
        EventType::Warning,
        "FailedValidation",
        problems.join("; "),
    )
    .await;
    Ok(Action::await_change())
}

/// The backup a restore names (directly, or as its schedule's latest completed one).
async fn backup_of(
    ctx: &Context,
    restore: &Restore,
) -> Result<Result<Backup, String>, ReconcileError> {
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &ctx.opts.namespace);
    if let Some(name) = &restore.spec.backup_name {
        return Ok(match backups.get_opt(name).await? {
            Some(b) => Ok(b),
            None => Err(format!("backup {name} not found")),
        });
    }
    let schedule = restore.spec.schedule_name.clone().unwrap_or_default();
    let list = backups
        .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={schedule}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|b| b.phase() == BackupPhase::Completed)
        .max_by_key(|b| {
            b.status
                .as_ref()
                .and_then(|s| s.start_timestamp.clone())
                .map(|t| t.0)
        })
        .ok_or_else(|| format!("schedule {schedule} has no Completed backup")))
}

/// The resource modifiers a restore names, parsed.
async fn modifiers(
    ctx: &Context,
    restore: &Restore,
) -> Result<Result<Option<ResourceModifiers>, String>, ReconcileError> {
    let Some(r) = &restore.spec.resource_modifier else {
        return Ok(Ok(None));
    };
    if r.kind
        .as_deref()
        .is_some_and(|k| !k.eq_ignore_ascii_case("configmap"))
    {
        return Ok(Err(format!(
            "resourceModifier: kind {:?} is not supported (only ConfigMap)",
            r.kind.as_deref().unwrap_or_default()
        )));
    }
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.opts.namespace);
    let Some(map) = maps.get_opt(&r.name).await? else {
        return Ok(Err(format!(
            "resourceModifier: ConfigMap {} not found",
            r.name
        )));
    };
    let data = map.data.unwrap_or_default();
    Ok(crate::restore_modifiers::from_config_map_data(&data)
        .map(Some)
        .map_err(|e| format!("resourceModifier: ConfigMap {}: {e}", r.name)))
}

/// Validates the restore and launches its run (`attempt`: 1, or the next after a restart).
async fn start(
    ctx: &Arc<Context>,
    restore: &Restore,
    mut status: RestoreStatus,
    attempt: u32,
) -> Result<Action, ReconcileError> {
    let name = restore.metadata.name.clone().unwrap_or_default();
    let mut problems = restore::plan::check_spec(&restore.spec);
    let backup = match backup_of(ctx, restore).await? {
        Ok(b) => Some(b),
        Err(why) => {
            problems.push(why);
            None
        }
    };
    if let Some(b) = &backup {
        let phase = b.phase();
        if !phase.has_snapshot() {
            let bname = b.metadata.name.clone().unwrap_or_default();
            problems.push(match phase.is_terminal() {
                true => format!("backup {bname} ended {phase}: it has nothing to restore"),
                false => format!("backup {bname} is {phase}: restore it once it has completed"),
            });
        }
    }
    let modifiers = match modifiers(ctx, restore).await? {
        Ok(m) => m,
        Err(why) => {
            problems.push(why);
            None
        }
    };
    let location = backup
        .as_ref()
        .and_then(|b| b.spec.storage_location.clone());
    let location = match location {
        Some(l) => Some(l),
        None => super::locations::resolve(ctx, None)
            .await?
            .1
            .and_then(|b| b.metadata.name),
    };
    let opened = match (&location, problems.is_empty()) {
        (Some(l), true) => match ctx.location(l).await {
            Some(o) => Some(o),
            None => {
                problems.push(format!("the storage location {l} cannot be opened"));
                None
            }
        },
        (None, true) => {
            problems.push("the backup names no storage location, and there is no default".into());
            None
        }
        _ => None,
    };
    let (Some(backup), Some(opened), true) = (backup, opened, problems.is_empty()) else {
        return fail_validation(ctx, restore, status, problems).await;
    };
    let backup_name = backup.metadata.name.clone().unwrap_or_default();
    status.phase = Some(RestorePhase::InProgress);
    status.backup_name = Some(backup_name.clone());
    status.start_timestamp = Some(now());
    status.attempt = attempt;
    status.validation_errors = Vec::new();
    write_status(ctx, &name, &status).await?;
    if attempt == 1 {
        ctx.event(
            restore,
            EventType::Normal,
            "Started",
            format!("restoring backup {backup_name}"),
        )
        .await;
    }
    let modifier: Option<Arc<Modifier>> = modifiers.map(|m| {
        let f: Arc<Modifier> = Arc::new(move |gr: &str, obj: &mut serde_json::Value| {
            m.apply(gr, obj).map_err(|e| e.to_string())
        });
        f
    });
    let cache_dir = ctx
        .opts
        .index_cache
        .then(|| ctx.opts.work_dir.join("cache"));
    let backup_uid = backup
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BACKUP_UID_ANNOTATION).cloned())
        .or_else(|| backup.metadata.uid.clone())
        .unwrap_or_default();
    let cancel = CancelToken::new();
    // Volume data is written through the node agents, unless restorePVs is false.
    let volume_data: Option<Arc<VolumeData>> =
        (restore.spec.restore_p_vs != Some(false)).then(|| {
            let data = Arc::new(volumes::RestoreData {
                restore: restore.clone(),
                location: location.clone().unwrap_or_default(),
                repo: opened.repo.clone(),
                read_only: opened.read_only,
                cache_dir: cache_dir.clone(),
                backup_uid: backup_uid.clone(),
                cancel: cancel.clone(),
            });
            let ctx = ctx.clone();
            let hook: Arc<VolumeData> = Arc::new(move |claims| {
                let (ctx, data) = (ctx.clone(), data.clone());
                Box::pin(async move { volumes::restore_data(&ctx, &data, claims).await })
            });
            hook
        });
    let input = RestoreInput {
        client: ctx.client.clone(),
        repo: opened.repo.clone(),
        read_only: opened.read_only,
        cache_dir,
        backup_uid,
        apply: ApplyOptions {
            restore: name.clone(),
            backup: backup_name,
            spec: restore.spec.clone(),
            concurrency: CONCURRENCY,
            qps: ctx.opts.collect.qps,
            modifier,
            volume_data,
        },
    };
    launch(ctx, restore.clone(), input, status, cancel);
    Ok(Action::await_change())
}

fn launch(
    ctx: &Arc<Context>,
    restore: Restore,
    input: RestoreInput,
    status: RestoreStatus,
    cancel: CancelToken,
) {
    let uid = restore.metadata.uid.clone().unwrap_or_default();
    ctx.restores
        .lock()
        .unwrap()
        .insert(uid.clone(), cancel.clone());
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let name = restore.metadata.name.clone().unwrap_or_default();
        let log = RunLog::new(format!("restore {name}"));
        let report = Arc::new(Mutex::new(Report::default()));
        // The run's attempt, shared with the progress writer so that it never writes an old one.
        let attempt = Arc::new(AtomicU32::new(status.attempt));
        // Progress every few seconds; a Restore deleted while it runs is canceled (there is no
        // finalizer: deleting the object is how a user may stop it too).
        let ticker = {
            let ctx = ctx.clone();
            let report = report.clone();
            let name = name.clone();
            let mut status = status.clone();
            let attempt = attempt.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(PROGRESS_EVERY).await;
                    let r = report.lock().unwrap().clone();
                    fill(&mut status, &r);
                    status.attempt = attempt.load(Ordering::Relaxed);
                    if let Err(kube::Error::Api(s)) = write_status(&ctx, &name, &status).await {
                        if s.code == 404 {
                            tracing::info!(restore = %name, "deleted while running: canceling it");
                            cancel.cancel();
                        }
                    }
                }
            })
        };
        let mut status = status;
        let result = loop {
            match restore::run(input.clone(), &log, &cancel, report.clone()).await {
                Err(RestoreError::Transient(msg))
                    if status.attempt < ctx.opts.max_attempts && !cancel.is_canceled() =>
                {
                    tracing::warn!(restore = %name, "run {} failed, trying again: {msg}", status.attempt);
                    log.warn(&format!(
                        "run {} failed, trying again: {msg}",
                        status.attempt
                    ));
                    tokio::time::sleep(Duration::from_secs(5 * u64::from(status.attempt))).await;
                    status.attempt += 1;
                    attempt.store(status.attempt, Ordering::Relaxed);
                    *report.lock().unwrap() = Report::default();
                    let _ = write_status(&ctx, &name, &status).await;
                }
                other => break other,
            }
        };
        ticker.abort();
        let partial = report.lock().unwrap().clone();
        fill(&mut status, &partial);
        status.completion_timestamp = Some(now());
        let (type_, reason, note) = match result {
            Ok(finished) => {
                let r = &finished.report;
                fill(&mut status, r);
                status.snapshot_id = Some(finished.snapshot_id);
                status.target_lacks = finished.lacks.iter().map(|l| l.message.clone()).collect();
                if let Some(v) = &r.verification {
                    status.warnings += (v.differed + v.missing) as u32;
                }
                let phase = match r.errors {
                    0 => RestorePhase::Completed,
                    _ => RestorePhase::PartiallyFailed,
                };
                status.phase = Some(phase);
                let c = &r.counts;
                let note = format!(
                    "{} created, {} updated, {} unchanged, {} skipped, {} failed{}",
                    c.created,
                    c.updated,
                    c.unchanged,
                    c.skipped,
                    c.failed,
                    r.verification.as_ref().map_or(String::new(), |v| format!(
                        "; verified {} of {} ({} differ, {} missing)",
                        v.matched, v.checked, v.differed, v.missing
                    ))
                );
                log.info(&note);
                let type_ = match phase {
                    RestorePhase::Completed => EventType::Normal,
                    _ => EventType::Warning,
                };
                (type_, phase.to_string(), note)
            }
            Err(RestoreError::Canceled) => {
                status.phase = Some(RestorePhase::Canceled);
                status.failure_reason =
                    Some("canceled on request (spec.cancel); objects created before stay".into());
                (EventType::Normal, "Canceled".into(), "canceled".into())
            }
            Err(RestoreError::Refused(problems, lacks)) => {
                status.phase = Some(RestorePhase::FailedValidation);
                status.validation_errors = problems.clone();
                status.target_lacks = lacks.iter().map(|l| l.message.clone()).collect();
                (
                    EventType::Warning,
                    "FailedValidation".into(),
                    problems.join("; "),
                )
            }
            Err(e @ (RestoreError::Transient(_) | RestoreError::Fatal(_))) => {
                status.phase = Some(RestorePhase::Failed);
                status.failure_reason = Some(e.to_string());
                (EventType::Warning, "Failed".into(), e.to_string())
            }
        };
        if status.phase != Some(RestorePhase::FailedValidation) && !input.read_only {
            let mut ended = restore.clone();
            ended.status = Some(status.clone());
            let results = report.lock().unwrap().results.clone();
            let (repo, cache, text) = (input.repo.clone(), input.cache_dir.clone(), log.text());
            let cluster = ctx.opts.cluster_name.clone();
            let written = tokio::task::spawn_blocking(move || {
                restore::record::write(&repo, cache, &ended, &results, &text, &cluster)
            })
            .await;
            match written {
                Ok(Ok(id)) => status.record_snapshot_id = Some(id.to_hex()),
                Ok(Err(e)) => tracing::warn!(restore = %name, "writing the restore's record: {e}"),
                Err(e) => tracing::warn!(restore = %name, "writing the restore's record: {e}"),
            }
        }
        write_final_status(&ctx, &name, &status).await;
        ctx.restores.lock().unwrap().remove(&uid);
        ctx.event(&restore, type_, &reason, note).await;
    });
}

/// Copies a report's counts into a status.
fn fill(status: &mut RestoreStatus, r: &Report) {
    status.progress = Some(RestoreProgress {
        total_items: r.total,
        items_restored: r.done,
    });
    status.counts = Some(r.counts.clone());
    status.verification = r.verification.clone();
    status.warnings = r.warnings;
    status.errors = r.errors;
    status.first_warnings = r.first_warnings.clone();
    status.first_errors = r.first_errors.clone();
    status.volumes = r
        .volumes
        .iter()
        .take(super::volumes::STATUS_VOLUMES)
        .cloned()
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_members_list_every_member_of_the_status() {
        let full = RestoreStatus {
            phase: Some(RestorePhase::Completed),
            validation_errors: vec!["x".into()],
            backup_name: Some("b".into()),
            snapshot_id: Some("s".into()),
            progress: Some(RestoreProgress::default()),
            counts: Some(Default::default()),
            verification: Some(Default::default()),
            volumes: vec![Default::default()],
            target_lacks: vec!["y".into()],
            warnings: 1,
            errors: 1,
            first_warnings: vec![Default::default()],
            first_errors: vec![Default::default()],
            failure_reason: Some("z".into()),
            start_timestamp: Some(now()),
            completion_timestamp: Some(now()),
            record_snapshot_id: Some("r".into()),
            attempt: 1,
        };
        let value = serde_json::to_value(&full).unwrap();
        let mut members: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort();
        let mut known = STATUS_MEMBERS.to_vec();
        known.sort();
        assert_eq!(members, known);
        let cleared = super::super::exact_status_patch(&RestoreStatus::default(), &STATUS_MEMBERS);
        assert!(cleared["status"]["recordSnapshotId"].is_null());
    }
}
