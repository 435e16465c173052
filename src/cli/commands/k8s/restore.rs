//! `stowage k8s restore ...`: Velero's `velero restore` commands for Stowage's Restore objects.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{anyhow, bail, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Api;
use stowage_kube::api::{
    ExistingResourcePolicy, ResourceModifierRef, Restore, RestoreItem, RestorePhase, RestoreSpec,
    RestoreStatusSpec,
};

use stowage_kube::layout;
use stowage_kube::restore::record::Results;

use super::output::{self, ListFormat, ObjectFormat, Table};
use super::parse::{self, OrSelectors};
use super::repository::BackupRecords;
use super::{connect, K8sGlobal, Kube, FIELD_MANAGER};

/// `stowage k8s restore ...`.
#[derive(clap::Subcommand, Debug)]
pub enum RestoreCommand {
    /// Create a restore (or, with -o, print it without creating it)
    Create(Box<CreateArgs>),
    /// List restores
    Get(GetArgs),
    /// Show a restore's spec and status (counts, verification, first problems); --details
    /// adds every problem from its record in the repository
    Describe(DescribeArgs),
    /// Print a finished restore's log from the repository
    Logs(NameArg),
    /// Delete a Restore object (restored objects stay)
    Delete(DeleteArgs),
    /// Ask the controller to stop a running restore
    Cancel(NameArg),
}

/// `restore create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The restore's name; default `<backup>-<YYYYMMDDHHMMSS>`
    pub name: Option<String>,
    /// The backup to restore
    #[arg(
        long,
        value_name = "BACKUP",
        required_unless_present = "from_schedule",
        conflicts_with = "from_schedule"
    )]
    pub from_backup: Option<String>,
    /// Restore the latest Completed backup of this schedule
    #[arg(long, value_name = "SCHEDULE")]
    pub from_schedule: Option<String>,
    /// Namespaces of the backup to restore (globs); default all
    #[arg(long, value_delimiter = ',', value_name = "NS,...")]
    pub include_namespaces: Vec<String>,
    /// Namespaces to leave out (globs)
    #[arg(long, value_delimiter = ',', value_name = "NS,...")]
    pub exclude_namespaces: Vec<String>,
    /// Resources to restore (pods, deployments.apps, ...); default all
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE,...")]
    pub include_resources: Vec<String>,
    /// Resources to leave out
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE,...")]
    pub exclude_resources: Vec<String>,
    /// Restore cluster-scoped resources: true all of the backup's, false none; unset: for a
    /// restore of all namespaces, and the related ones otherwise
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub include_cluster_resources: Option<bool>,
    /// Only objects matching this label selector: 'k=v,k2 in (a,b),!k3'
    #[arg(short = 'l', long, value_parser = parse::label_selector, conflicts_with = "or_selector")]
    pub selector: Option<LabelSelector>,
    /// Objects matching any of these selectors, separated by " or "
    #[arg(long, value_parser = parse::or_label_selectors)]
    pub or_selector: Option<OrSelectors>,
    /// Restore namespace a into b: a:b,c:d
    #[arg(long, value_delimiter = ',', value_parser = mapping, value_name = "OLD:NEW,...")]
    pub namespace_mappings: Vec<(String, String)>,
    /// Use storage class new where the backup has old: old:new,...
    #[arg(long, value_delimiter = ',', value_parser = mapping, value_name = "OLD:NEW,...")]
    pub storage_class_mappings: Vec<(String, String)>,
    /// Restore persistent volumes (false: claims provision new ones)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub restore_volumes: Option<bool>,
    /// Keep Services' node ports
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub preserve_nodeports: Option<bool>,
    /// none (leave existing objects, warn when they differ) or update (patch them)
    #[arg(long, value_parser = policy, value_name = "POLICY")]
    pub existing_resource_policy: Option<ExistingResourcePolicy>,
    /// Resources whose status is restored too
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE,...")]
    pub status_include_resources: Vec<String>,
    /// Resources whose status is not restored
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE,...")]
    pub status_exclude_resources: Vec<String>,
    /// A ConfigMap of resource modifier rules (in the controller's namespace)
    #[arg(long, value_name = "CONFIGMAP")]
    pub resource_modifier_configmap: Option<String>,
    /// The order of types: 'a,b,c' or 'a,b,-,y,z' (high, then low priority)
    #[arg(long, value_name = "LIST")]
    pub restore_resource_priorities: Option<String>,
    /// Report what would be created, updated, skipped or refused, changing nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not read the restored objects back to compare them with the backup
    #[arg(long)]
    pub no_verify: bool,
    /// Labels of the Restore object: k=v,k2=v2
    #[arg(long, value_delimiter = ',', value_parser = parse::key_value, value_name = "K=V,...")]
    pub labels: Vec<(String, String)>,
    /// Wait until the restore has finished; exit 1 unless it Completed
    #[arg(long, conflicts_with = "output")]
    pub wait: bool,
    /// Print the Restore instead of creating it
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ObjectFormat>,
}

fn mapping(input: &str) -> Result<(String, String), String> {
    match input.split_once(':') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => Err(format!("{input:?} is not OLD:NEW")),
    }
}

fn policy(input: &str) -> Result<ExistingResourcePolicy, String> {
    match input {
        "none" => Ok(ExistingResourcePolicy::None),
        "update" => Ok(ExistingResourcePolicy::Update),
        other => Err(format!("{other:?} is not none or update")),
    }
}

/// `restore get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Restores to show; default all
    pub names: Vec<String>,
    /// Only restores with these labels
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// json, yaml or wide
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ListFormat>,
}

/// `restore describe`.
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The restore
    pub name: String,
    /// Also list every warning, error and difference from the restore's record
    #[arg(long)]
    pub details: bool,
    /// Print the object instead
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ObjectFormat>,
}

/// A command on one restore.
#[derive(clap::Args, Debug)]
pub struct NameArg {
    /// The restore
    pub name: String,
}

/// `restore delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The restore
    pub name: String,
    /// Do not ask
    #[arg(long)]
    pub confirm: bool,
}

/// Runs a `restore` command.
pub async fn run(g: &K8sGlobal, c: RestoreCommand) -> Result<u8> {
    match c {
        RestoreCommand::Create(a) => create(g, *a).await,
        RestoreCommand::Get(a) => get(g, a).await,
        RestoreCommand::Describe(a) => describe(g, a).await,
        RestoreCommand::Logs(a) => logs(g, a).await,
        RestoreCommand::Delete(a) => delete(g, a).await,
        RestoreCommand::Cancel(a) => cancel(g, a).await,
    }
}

fn api(kube: &Kube) -> Api<Restore> {
    Api::namespaced(kube.client.clone(), &kube.namespace)
}

/// The Restore `restore create` submits.
pub fn build(a: &CreateArgs, namespace: &str, now: chrono::DateTime<chrono::Utc>) -> Restore {
    let status_types = (!a.status_include_resources.is_empty()).then(|| RestoreStatusSpec {
        included_resources: a.status_include_resources.clone(),
        excluded_resources: a.status_exclude_resources.clone(),
    });
    let spec = RestoreSpec {
        backup_name: a.from_backup.clone(),
        schedule_name: a.from_schedule.clone(),
        included_namespaces: a.include_namespaces.clone(),
        excluded_namespaces: a.exclude_namespaces.clone(),
        included_resources: a.include_resources.clone(),
        excluded_resources: a.exclude_resources.clone(),
        include_cluster_resources: a.include_cluster_resources,
        label_selector: a.selector.clone(),
        or_label_selectors: a.or_selector.clone().map(|s| s.0).unwrap_or_default(),
        namespace_mapping: a.namespace_mappings.iter().cloned().collect(),
        storage_class_mapping: a.storage_class_mappings.iter().cloned().collect(),
        restore_p_vs: a.restore_volumes,
        preserve_node_ports: a.preserve_nodeports,
        existing_resource_policy: a.existing_resource_policy,
        restore_status: status_types,
        resource_modifier: a
            .resource_modifier_configmap
            .clone()
            .map(|name| ResourceModifierRef {
                kind: Some("ConfigMap".into()),
                name,
            }),
        resource_priorities: a.restore_resource_priorities.clone(),
        dry_run: a.dry_run.then_some(true),
        verify: a.no_verify.then_some(false),
        cancel: None,
    };
    let name = a.name.clone().unwrap_or_else(|| {
        let from = a
            .from_backup
            .as_deref()
            .or(a.from_schedule.as_deref())
            .unwrap_or("restore");
        format!("{from}-{}", now.format("%Y%m%d%H%M%S"))
    });
    let mut restore = Restore::new(&name, spec);
    let labels: BTreeMap<String, String> = a.labels.iter().cloned().collect();
    restore.metadata = ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    };
    restore
}

async fn create(g: &K8sGlobal, a: CreateArgs) -> Result<u8> {
    let restore = build(&a, &g.namespace, output::now());
    let name = restore.metadata.name.clone().unwrap_or_default();
    if let Some(format) = a.output {
        output::print_object(&restore, format)?;
        return Ok(0);
    }
    let kube = connect(g).await?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    api(&kube)
        .create(&params, &restore)
        .await
        .map_err(|e| kube.error(e, "restore", Some(&name)))?;
    println!("Restore request {name:?} submitted successfully.");
    if !a.wait {
        println!("Run `stowage k8s restore describe {name}` for more details.");
        return Ok(0);
    }
    println!("Waiting for the restore to finish. Ctrl-C stops waiting; the restore goes on.");
    let done = wait(&kube, &name).await?;
    finish(&done)
}

async fn wait(kube: &Kube, name: &str) -> Result<Restore> {
    super::wait_until_done(
        api(kube),
        kube,
        "restore",
        name,
        progress_line,
        |r: &Restore| r.phase().is_terminal(),
    )
    .await
}

fn progress_line(r: &Restore) -> String {
    let status = r.status.clone().unwrap_or_default();
    let mut line = r.phase().to_string();
    if let Some(p) = &status.progress {
        let _ = write!(line, ": items {}/{}", p.items_restored, p.total_items);
    }
    if status.errors + status.warnings > 0 {
        let _ = write!(
            line,
            ", {} errors, {} warnings",
            status.errors, status.warnings
        );
    }
    line
}

/// One line of counts: `12 created, 1 updated, ...`.
fn counts_line(r: &Restore) -> String {
    let c = r
        .status
        .as_ref()
        .and_then(|s| s.counts.clone())
        .unwrap_or_default();
    format!(
        "{} created, {} updated, {} unchanged, {} skipped, {} failed",
        c.created, c.updated, c.unchanged, c.skipped, c.failed
    )
}

fn finish(r: &Restore) -> Result<u8> {
    let name = r.metadata.name.clone().unwrap_or_default();
    let status = r.status.clone().unwrap_or_default();
    let phase = r.phase();
    let mut summary = format!("Restore {name:?} {phase}: {}", counts_line(r));
    if let Some(v) = &status.verification {
        let _ = write!(
            summary,
            "; verified {} of {} objects ({} differ, {} missing)",
            v.matched, v.checked, v.differed, v.missing
        );
    }
    println!("{summary}.");
    match phase {
        RestorePhase::Completed => Ok(0),
        RestorePhase::FailedValidation => Err(anyhow!(
            "restore {name:?} failed validation: {}",
            status.validation_errors.join("; ")
        )),
        RestorePhase::PartiallyFailed => Err(anyhow!(
            "restore {name:?} partially failed: {} items could not be restored; first: {}",
            status.errors,
            status
                .first_errors
                .first()
                .map(item_text)
                .unwrap_or_default()
        )),
        _ => Err(anyhow!(
            "restore {name:?} {phase}: {}",
            status.failure_reason.unwrap_or_default()
        )),
    }
}

fn item_text(p: &RestoreItem) -> String {
    let at = match &p.namespace {
        Some(ns) => format!("{}/{ns}/{}", p.resource, p.name),
        None => format!("{}/{}", p.resource, p.name),
    };
    format!("{at}: {}", p.message)
}

async fn fetch(kube: &Kube, name: &str) -> Result<Restore> {
    api(kube)
        .get(name)
        .await
        .map_err(|e| kube.error(e, "restore", Some(name)))
}

async fn get(g: &K8sGlobal, a: GetArgs) -> Result<u8> {
    let kube = connect(g).await?;
    let items = match a.names.is_empty() {
        true => {
            let mut params = ListParams::default();
            if let Some(s) = &a.selector {
                params = params.labels(s);
            }
            let mut list = api(&kube)
                .list(&params)
                .await
                .map_err(|e| kube.error(e, "restore", None))?
                .items;
            list.sort_by(|x, y| {
                y.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(output::to_chrono)
                    .cmp(
                        &x.metadata
                            .creation_timestamp
                            .as_ref()
                            .map(output::to_chrono),
                    )
                    .then(x.metadata.name.cmp(&y.metadata.name))
            });
            list
        }
        false => {
            let mut list = Vec::new();
            for n in &a.names {
                list.push(fetch(&kube, n).await?);
            }
            list
        }
    };
    if let Some(format) = a.output.and_then(ListFormat::object) {
        output::print_objects(&items, a.names.len() == 1, format)?;
        return Ok(0);
    }
    if items.is_empty() {
        eprintln!("No restores found in namespace {}.", kube.namespace);
        return Ok(0);
    }
    print!("{}", table(&items));
    Ok(0)
}

/// Velero's `restore get` columns, with the item counts.
pub fn table(items: &[Restore]) -> String {
    let now = output::now();
    let mut t = Table::new(&[
        "NAME",
        "BACKUP",
        "STATUS",
        "STARTED",
        "COMPLETED",
        "CREATED",
        "UPDATED",
        "UNCHANGED",
        "SKIPPED",
        "FAILED",
        "WARNINGS",
        "AGE",
    ]);
    for r in items {
        let s = r.status.clone().unwrap_or_default();
        let c = s.counts.clone().unwrap_or_default();
        t.row(vec![
            r.metadata.name.clone().unwrap_or_default(),
            s.backup_name
                .clone()
                .or_else(|| r.spec.backup_name.clone())
                .unwrap_or_default(),
            r.phase().to_string(),
            output::timestamp(s.start_timestamp.as_ref()),
            output::timestamp(s.completion_timestamp.as_ref()),
            c.created.to_string(),
            c.updated.to_string(),
            c.unchanged.to_string(),
            c.skipped.to_string(),
            c.failed.to_string(),
            s.warnings.to_string(),
            output::age(r.metadata.creation_timestamp.as_ref(), now),
        ]);
    }
    t.render()
}

async fn describe(g: &K8sGlobal, a: DescribeArgs) -> Result<u8> {
    let kube = connect(g).await?;
    let restore = fetch(&kube, &a.name).await?;
    if let Some(format) = a.output {
        output::print_object(&restore, format)?;
        return Ok(0);
    }
    print!("{}", describe_text(&restore));
    if a.details {
        let records = BackupRecords::open_restore(&kube, &restore).await?;
        let results: Results = records.read_json(layout::files::RESULTS)?;
        for (title, list) in [
            ("All errors", &results.errors),
            ("All warnings", &results.warnings),
            ("All differences", &results.differences),
        ] {
            if !list.is_empty() {
                println!("{title} ({}):", list.len());
                for p in list {
                    println!("  {}", item_text(p));
                }
            }
        }
        println!(
            "Record:       snapshot {} in {}",
            records.id.short(),
            records.location
        );
    }
    Ok(0)
}

async fn logs(g: &K8sGlobal, a: NameArg) -> Result<u8> {
    let kube = connect(g).await?;
    let restore = fetch(&kube, &a.name).await?;
    if !restore.phase().is_terminal() {
        bail!(
            "restore {:?} is {}, still running: its log is in the repository once it has finished",
            a.name,
            restore.phase()
        );
    }
    let records = BackupRecords::open_restore(&kube, &restore).await?;
    let log = records.read(layout::files::LOG)?;
    use std::io::Write;
    std::io::stdout().write_all(&log)?;
    Ok(0)
}

/// `restore describe`: the spec, then what happened.
pub fn describe_text(r: &Restore) -> String {
    let s = r.status.clone().unwrap_or_default();
    let spec = &r.spec;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Name:         {}",
        r.metadata.name.clone().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Namespace:    {}",
        r.metadata.namespace.clone().unwrap_or_default()
    );
    let _ = writeln!(out, "Phase:        {}", r.phase());
    if let Some(why) = &s.failure_reason {
        let _ = writeln!(out, "Reason:       {why}");
    }
    if !s.validation_errors.is_empty() {
        let _ = writeln!(out, "Validation errors:");
        for e in &s.validation_errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    let from = match (&spec.backup_name, &spec.schedule_name) {
        (Some(b), _) => b.clone(),
        (None, Some(sch)) => format!(
            "latest of schedule {sch}{}",
            s.backup_name
                .as_ref()
                .map(|b| format!(" ({b})"))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let _ = writeln!(out, "Backup:       {from}");
    if let Some(id) = &s.snapshot_id {
        let _ = writeln!(out, "Snapshot:     {id}");
    }
    if spec.is_dry_run() {
        let _ = writeln!(out, "Dry run:      yes (nothing was changed)");
    }
    let _ = writeln!(
        out,
        "Namespaces:   included {}, excluded {}",
        output::list_or(&spec.included_namespaces, "*"),
        output::list_or(&spec.excluded_namespaces, "<none>")
    );
    let _ = writeln!(
        out,
        "Resources:    included {}, excluded {}, cluster-scoped {}",
        output::list_or(&spec.included_resources, "*"),
        output::list_or(&spec.excluded_resources, "<none>"),
        match spec.include_cluster_resources {
            Some(true) => "all",
            Some(false) => "none",
            None => "auto",
        }
    );
    for (title, map) in [
        ("Namespace mapping:", &spec.namespace_mapping),
        ("Storage class mapping:", &spec.storage_class_mapping),
    ] {
        if !map.is_empty() {
            let pairs: Vec<String> = map.iter().map(|(a, b)| format!("{a}:{b}")).collect();
            let _ = writeln!(out, "{title} {}", pairs.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "Existing resource policy: {}",
        match spec.existing_resource_policy.unwrap_or_default() {
            ExistingResourcePolicy::None => "none",
            ExistingResourcePolicy::Update => "update",
        }
    );
    let _ = writeln!(
        out,
        "Started:      {}",
        output::timestamp(s.start_timestamp.as_ref())
    );
    let _ = writeln!(
        out,
        "Completed:    {}",
        output::timestamp(s.completion_timestamp.as_ref())
    );
    if let Some(p) = &s.progress {
        let _ = writeln!(
            out,
            "Items:        {} of {}",
            p.items_restored, p.total_items
        );
    }
    if s.counts.is_some() {
        let _ = writeln!(out, "Outcome:      {}", counts_line(r));
        for (why, n) in s
            .counts
            .as_ref()
            .map(|c| c.skipped_reasons.clone())
            .unwrap_or_default()
        {
            let _ = writeln!(out, "  skipped {n}: {why}");
        }
    }
    if let Some(v) = &s.verification {
        let _ = writeln!(
            out,
            "Verification: {} of {} objects match the backup, {} differ, {} missing",
            v.matched, v.checked, v.differed, v.missing
        );
        if v.volumes_verified + v.volumes_failed > 0 {
            let _ = writeln!(
                out,
                "Volume data: {} volumes written and verified ({} files), {} failed",
                v.volumes_verified, v.volume_files_verified, v.volumes_failed
            );
        }
        for d in &v.first_differences {
            let _ = writeln!(out, "  {}", item_text(d));
        }
    }
    out.push_str(super::backup::volumes_text(&s.volumes).trim_start_matches('\n'));
    if !s.target_lacks.is_empty() {
        let _ = writeln!(out, "The target cluster lacks:");
        for l in &s.target_lacks {
            let _ = writeln!(out, "  {l}");
        }
    }
    for (title, count, list) in [
        ("Errors", s.errors, &s.first_errors),
        ("Warnings", s.warnings, &s.first_warnings),
    ] {
        if count > 0 {
            let _ = writeln!(out, "{title} ({count}):");
            for p in list {
                let _ = writeln!(out, "  {}", item_text(p));
            }
        }
    }
    out
}

async fn delete(g: &K8sGlobal, a: DeleteArgs) -> Result<u8> {
    let kube = connect(g).await?;
    fetch(&kube, &a.name).await?;
    let note = "Only the Restore object is deleted: the objects it restored stay.";
    if !a.confirm {
        super::confirm(&format!("delete restore {:?}", a.name), note)?;
    }
    api(&kube)
        .delete(&a.name, &DeleteParams::default())
        .await
        .map_err(|e| kube.error(e, "restore", Some(&a.name)))?;
    println!("Restore {:?} deleted. {note}", a.name);
    Ok(0)
}

async fn cancel(g: &K8sGlobal, a: NameArg) -> Result<u8> {
    let kube = connect(g).await?;
    let restore = fetch(&kube, &a.name).await?;
    let phase = restore.phase();
    if phase.is_terminal() {
        println!(
            "Restore {:?} has already finished ({phase}): nothing to cancel.",
            a.name
        );
        return Ok(0);
    }
    let patch = serde_json::json!({ "spec": { "cancel": true } });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api(&kube)
        .patch(&a.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| kube.error(e, "restore", Some(&a.name)))?;
    println!(
        "Restore {:?}: cancel requested; the controller stops it and marks it Canceled.",
        a.name
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        c: RestoreCommand,
    }

    fn create_args(args: &[&str]) -> CreateArgs {
        let mut argv = vec!["restore", "create"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().c {
            RestoreCommand::Create(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn create_flags_fill_veleros_restore_fields() {
        let a = create_args(&[
            "r1",
            "--from-backup",
            "nightly",
            "--include-namespaces",
            "a,b",
            "--namespace-mappings",
            "a:a-clone,b:b-clone",
            "--storage-class-mappings",
            "fast:standard",
            "--existing-resource-policy",
            "update",
            "--restore-volumes=false",
            "--dry-run",
        ]);
        let r = build(&a, "stowage", output::now());
        assert_eq!(r.metadata.name.as_deref(), Some("r1"));
        assert_eq!(r.spec.backup_name.as_deref(), Some("nightly"));
        assert_eq!(r.spec.included_namespaces, ["a", "b"]);
        assert_eq!(r.spec.namespace_mapping["b"], "b-clone");
        assert_eq!(r.spec.storage_class_mapping["fast"], "standard");
        assert_eq!(
            r.spec.existing_resource_policy,
            Some(ExistingResourcePolicy::Update)
        );
        assert_eq!(r.spec.restore_p_vs, Some(false));
        assert!(r.spec.is_dry_run());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["spec"]["restorePVs"], false);
    }

    #[test]
    fn a_name_is_made_from_the_backup_and_bad_mappings_are_refused() {
        let a = create_args(&["--from-backup", "nightly"]);
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:20:30Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let r = build(&a, "stowage", at);
        assert_eq!(r.metadata.name.as_deref(), Some("nightly-20261201102030"));
        let mut argv = vec!["restore", "create", "--from-backup", "b"];
        argv.extend(["--namespace-mappings", "nocolon"]);
        assert!(Cli::try_parse_from(argv).is_err());
        assert!(
            Cli::try_parse_from(["restore", "create", "r"]).is_err(),
            "no source"
        );
    }
}
