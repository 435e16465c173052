//! BackupStorageLocations: opened (and their repository created on first use when they may
//! write) on creation, on every spec change and every `validationFrequency`; the outcome is the
//! status: `Available`, or `Unavailable` with the cause. A location that fails is retried on its
//! schedule, never in a tight loop, and never makes the controller exit. An Available location
//! is also synced (see [`super::sync`]) every `backupSyncPeriod`.

use super::{Context, ReconcileError};
use crate::api::{
    parse_duration, AccessMode, BackupStorageLocation, BackupStorageLocationStatus, LocationPhase,
};
use crate::store;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Api;
use std::sync::Arc;
use std::time::Duration;

/// How often a location is validated: its `validationFrequency`, else the controller's
/// default; `None` when validation is disabled (`0`) after the first.
fn frequency(bsl: &BackupStorageLocation, default: Duration) -> Option<Duration> {
    match bsl.spec.validation_frequency.as_deref().map(parse_duration) {
        Some(Ok(d)) if d.is_zero() => None,
        Some(Ok(d)) => Some(d),
        _ => Some(default),
    }
}

pub(super) async fn reconcile(
    bsl: Arc<BackupStorageLocation>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if bsl.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = bsl.metadata.name.clone().unwrap_or_default();
    let generation = bsl.metadata.generation.unwrap_or(0);
    let every = frequency(&bsl, ctx.opts.validation_frequency);
    // Sync runs with validation, so the location is looked at as often as either asks.
    let every = match bsl.spec.backup_sync_period.as_deref().map(parse_duration) {
        Some(Ok(d)) if !d.is_zero() => Some(every.map_or(d, |e| e.min(d))),
        _ => every,
    };
    let status = bsl.status.clone().unwrap_or_default();
    // Our own status writes come back here: only a spec change or the schedule validates.
    let seen = ctx.validated.lock().unwrap().get(&name).copied() == Some(generation);
    if seen {
        if let (Some(last), Some(every)) = (&status.last_validation_time, every) {
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(last.0);
            let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
            if age < every {
                return Ok(Action::requeue(every - age));
            }
        } else if every.is_none() {
            return Ok(Action::await_change());
        }
    }

    let mut problems = Vec::new();
    for (field, value) in [
        ("validationFrequency", &bsl.spec.validation_frequency),
        ("backupSyncPeriod", &bsl.spec.backup_sync_period),
    ] {
        if let Some(Err(e)) = value.as_deref().map(parse_duration) {
            problems.push(format!("spec.{field}: {e}"));
        }
    }
    let (phase, message) = if !problems.is_empty() {
        (LocationPhase::Unavailable, Some(problems.join("; ")))
    } else {
        match store::open(&ctx.client, &bsl, &ctx.opts.work_dir).await {
            Ok(opened) => {
                let message = opened
                    .created
                    .then(|| format!("created a new repository at {}", opened.describe));
                if let Some(created) = &message {
                    ctx.event(
                        &*bsl,
                        EventType::Normal,
                        "RepositoryCreated",
                        created.clone(),
                    )
                    .await;
                }
                ctx.repos
                    .lock()
                    .unwrap()
                    .insert(name.clone(), (generation, Arc::new(opened)));
                (LocationPhase::Available, message)
            }
            Err(e) => {
                ctx.repos.lock().unwrap().remove(&name);
                (LocationPhase::Unavailable, Some(e.to_string()))
            }
        }
    };
    let was = status.phase;
    if was != Some(phase) {
        let (type_, reason) = match phase {
            LocationPhase::Available => (EventType::Normal, "Available"),
            LocationPhase::Unavailable => (EventType::Warning, "Unavailable"),
        };
        ctx.event(
            &*bsl,
            type_,
            reason,
            message
                .clone()
                .unwrap_or_else(|| "repository opened".into()),
        )
        .await;
    }
    if phase == LocationPhase::Unavailable {
        tracing::warn!(location = %name, "unavailable: {}", message.as_deref().unwrap_or(""));
    }
    // Sync, when Available and its period has passed (or on every validation when it is
    // shorter than the validation frequency).
    let sync_every = match bsl.spec.backup_sync_period.as_deref().map(parse_duration) {
        Some(Ok(d)) if d.is_zero() => None,
        Some(Ok(d)) => Some(d),
        _ => Some(super::sync::DEFAULT_PERIOD),
    };
    let mut last_synced = status.last_synced_time.clone();
    if phase == LocationPhase::Available && sync_every.is_some() {
        let repo = ctx
            .repos
            .lock()
            .unwrap()
            .get(&name)
            .map(|(_, o)| o.repo.clone());
        if let Some(repo) = repo {
            match super::sync::sync(&ctx, &bsl, repo).await {
                Ok(_) => last_synced = Some(Time(k8s_openapi::jiff::Timestamp::now())),
                Err(e) => tracing::warn!(location = %name, "sync: {e}"),
            }
        }
    }
    let new_status = BackupStorageLocationStatus {
        phase: Some(phase),
        message,
        last_validation_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        last_synced_time: last_synced,
        access_mode: Some(bsl.spec.access_mode),
    };
    let api: Api<BackupStorageLocation> = Api::namespaced(ctx.client.clone(), &ctx.opts.namespace);
    // `message: null` clears a stale cause.
    let mut body = serde_json::to_value(&new_status).expect("a status serialises");
    if new_status.message.is_none() {
        body["message"] = serde_json::Value::Null;
    }
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": body })),
    )
    .await?;
    ctx.validated.lock().unwrap().insert(name, generation);
    Ok(match (every, sync_every) {
        (Some(a), Some(b)) => Action::requeue(a.min(b)),
        (Some(d), None) | (None, Some(d)) => Action::requeue(d),
        (None, None) => Action::await_change(),
    })
}

pub(super) fn error_policy(
    bsl: Arc<BackupStorageLocation>,
    err: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(location = ?bsl.metadata.name, "reconcile failed, retrying: {err}");
    Action::requeue(Duration::from_secs(10))
}

/// The location a backup names (or the default one), and what the validation needs to know.
pub(super) async fn resolve(
    ctx: &Context,
    wanted: Option<&str>,
) -> Result<
    (
        crate::validate::LocationCheck,
        Option<BackupStorageLocation>,
    ),
    ReconcileError,
> {
    use crate::validate::LocationCheck;
    let api: Api<BackupStorageLocation> = Api::namespaced(ctx.client.clone(), &ctx.opts.namespace);
    let bsl = match wanted {
        Some(name) => api.get_opt(name).await?,
        None => api
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .find(|b| b.spec.default),
    };
    let Some(bsl) = bsl else {
        let name = wanted.unwrap_or("(default)").to_string();
        return Ok((LocationCheck::NotFound(name), None));
    };
    let name = bsl.metadata.name.clone().unwrap_or_default();
    let status = bsl.status.clone().unwrap_or_default();
    let check = if bsl.spec.access_mode == AccessMode::ReadOnly {
        LocationCheck::ReadOnly(name)
    } else if status.phase != Some(LocationPhase::Available) {
        let why = status
            .message
            .clone()
            .unwrap_or_else(|| "not validated yet".into());
        LocationCheck::Unavailable(name, why)
    } else {
        LocationCheck::Ok(name)
    };
    Ok((check, Some(bsl)))
}
