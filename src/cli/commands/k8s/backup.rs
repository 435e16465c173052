//! `stowage k8s backup ...`: Velero's `velero backup` commands for Stowage's Backup objects.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{anyhow, bail, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Api;
use stowage_core::util::human_bytes;
use stowage_kube::api::{Backup, BackupPhase, BackupSpec, Problem, DEFAULT_TTL};
use stowage_kube::layout::files;

use super::output::{self, ListFormat, ObjectFormat, Table};
use super::parse::{self, OrSelectors, OrderedResources};
use super::repository::BackupRecords;
use super::{connect, K8sGlobal, Kube, FIELD_MANAGER};

/// `stowage k8s backup ...`.
#[derive(clap::Subcommand, Debug)]
pub enum BackupCommand {
    /// Create a backup (or, with -o, print it without creating it)
    Create(Box<CreateArgs>),
    /// List backups
    Get(GetArgs),
    /// Show a backup's spec and status; --details adds its records from the repository
    Describe(DescribeArgs),
    /// Print a finished backup's log from the repository
    Logs(NameArg),
    /// Delete a Backup object (its data in the repository is kept)
    Delete(DeleteArgs),
    /// Ask the controller to stop a queued or running backup
    Cancel(NameArg),
}

/// `backup create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The backup's name
    pub name: String,
    /// Namespaces to include (globs); default all
    #[arg(long, value_delimiter = ',', value_name = "NS,...")]
    pub include_namespaces: Vec<String>,
    /// Namespaces to exclude (globs)
    #[arg(long, value_delimiter = ',', value_name = "NS,...")]
    pub exclude_namespaces: Vec<String>,
    /// Resources to include (pods, deployments.apps, ...); default all
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE,...")]
    pub include_resources: Vec<String>,
    /// Resources to exclude
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE,...")]
    pub exclude_resources: Vec<String>,
    /// Cluster-scoped resources to include (`*` for all)
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE,...")]
    pub include_cluster_scoped_resources: Vec<String>,
    /// Cluster-scoped resources to exclude (`*` for all)
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE,...")]
    pub exclude_cluster_scoped_resources: Vec<String>,
    /// Namespace-scoped resources to include; default all
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE,...")]
    pub include_namespace_scoped_resources: Vec<String>,
    /// Namespace-scoped resources to exclude (`*` for all)
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE,...")]
    pub exclude_namespace_scoped_resources: Vec<String>,
    /// Only objects matching this label selector: 'k=v,k2 in (a,b),!k3'
    #[arg(short = 'l', long, value_parser = parse::label_selector, conflicts_with = "or_selector")]
    pub selector: Option<LabelSelector>,
    /// Objects matching any of these selectors, separated by " or ": 'a=b or c in (d,e)'
    #[arg(long, value_parser = parse::or_label_selectors)]
    pub or_selector: Option<OrSelectors>,
    /// Back up cluster-scoped resources: true always, false never; unset: only for a backup
    /// of all namespaces (and related ones)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub include_cluster_resources: Option<bool>,
    /// How long to keep the backup (Go duration: 72h, 720h); default 720h
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// The BackupStorageLocation to write to; default: the default location
    #[arg(long, value_name = "NAME")]
    pub storage_location: Option<String>,
    /// Objects to back up first: 'pods=ns/a,ns/b;persistentvolumes=pv1'
    #[arg(long, value_parser = parse::ordered_resources, value_name = "MAP")]
    pub ordered_resources: Option<OrderedResources>,
    /// A YAML file of volume policies, in Velero's format (a `volumePolicies:` list, or the
    /// list alone): skip or copy volumes by capacity, storage class, CSI driver, claim labels
    #[arg(long, value_parser = read_volume_policies, value_name = "FILE")]
    pub volume_policies: Option<VolumePolicies>,
    /// Copy every pod volume's files unless the pod opts out
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub default_volumes_to_fs_backup: Option<bool>,
    /// Take volume snapshots (false disables them)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub snapshot_volumes: Option<bool>,
    /// Copy the data of CSI snapshots into the repository
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub snapshot_move_data: Option<bool>,
    /// Labels of the Backup object: k=v,k2=v2
    #[arg(long, value_delimiter = ',', value_parser = parse::key_value, value_name = "K=V,...")]
    pub labels: Vec<(String, String)>,
    /// Wait until the backup has finished; exit 1 unless it Completed
    #[arg(long, conflicts_with = "output")]
    pub wait: bool,
    /// Print the Backup instead of creating it
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ObjectFormat>,
}

/// `backup get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Backups to show; default all
    pub names: Vec<String>,
    /// Only backups with these labels
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// json, yaml or wide
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ListFormat>,
}

/// `backup describe`.
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The backup
    pub name: String,
    /// Also read the resource list, results and volume snapshots from the repository
    #[arg(long)]
    pub details: bool,
    /// Print the object instead
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ObjectFormat>,
}

/// A command on one backup.
#[derive(clap::Args, Debug)]
pub struct NameArg {
    /// The backup
    pub name: String,
}

/// `backup delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The backup
    pub name: String,
    /// Do not ask
    #[arg(long)]
    pub confirm: bool,
}

/// Runs a `backup` command.
pub async fn run(g: &K8sGlobal, c: BackupCommand) -> Result<u8> {
    match c {
        BackupCommand::Create(a) => create(g, *a).await,
        BackupCommand::Get(a) => get(g, a).await,
        BackupCommand::Describe(a) => describe(g, a).await,
        BackupCommand::Logs(a) => logs(g, a).await,
        BackupCommand::Delete(a) => delete(g, a).await,
        BackupCommand::Cancel(a) => cancel(g, a).await,
    }
}

fn api(kube: &Kube) -> Api<Backup> {
    Api::namespaced(kube.client.clone(), &kube.namespace)
}

/// Reads a volume-policy file: Velero's resource-policy document (`version`, `volumePolicies`)
/// or the list alone.
fn read_volume_policies(path: &str) -> Result<VolumePolicies, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let value: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let list = match value.get("volumePolicies") {
        Some(list) => list.clone(),
        None => value,
    };
    serde_yaml::from_value(list)
        .map(VolumePolicies)
        .map_err(|e| format!("{path}: volume policies: {e}"))
}

/// The policies of `--volume-policies`.
#[derive(Clone, Debug)]
pub struct VolumePolicies(pub Vec<stowage_kube::api::VolumePolicy>);

/// The Backup `create` makes from its flags (Velero's field names).
pub fn build(a: &CreateArgs, namespace: &str) -> Backup {
    let spec = BackupSpec {
        included_namespaces: a.include_namespaces.clone(),
        excluded_namespaces: a.exclude_namespaces.clone(),
        included_resources: a.include_resources.clone(),
        excluded_resources: a.exclude_resources.clone(),
        include_cluster_resources: a.include_cluster_resources,
        included_cluster_scoped_resources: a.include_cluster_scoped_resources.clone(),
        excluded_cluster_scoped_resources: a.exclude_cluster_scoped_resources.clone(),
        included_namespace_scoped_resources: a.include_namespace_scoped_resources.clone(),
        excluded_namespace_scoped_resources: a.exclude_namespace_scoped_resources.clone(),
        label_selector: a.selector.clone(),
        or_label_selectors: a.or_selector.clone().map(|s| s.0).unwrap_or_default(),
        ordered_resources: a.ordered_resources.clone().map(|o| o.0).unwrap_or_default(),
        ttl: a.ttl.clone(),
        storage_location: a.storage_location.clone(),
        default_volumes_to_fs_backup: a.default_volumes_to_fs_backup,
        snapshot_volumes: a.snapshot_volumes,
        snapshot_move_data: a.snapshot_move_data,
        volume_policies: a.volume_policies.clone().map(|p| p.0).unwrap_or_default(),
        cancel: None,
    };
    let mut backup = Backup::new(&a.name, spec);
    let labels: BTreeMap<String, String> = a.labels.iter().cloned().collect();
    backup.metadata = ObjectMeta {
        name: Some(a.name.clone()),
        namespace: Some(namespace.to_string()),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    };
    backup
}

async fn create(g: &K8sGlobal, a: CreateArgs) -> Result<u8> {
    let mixed_old = !a.include_resources.is_empty()
        || !a.exclude_resources.is_empty()
        || a.include_cluster_resources.is_some();
    let scoped = !a.include_cluster_scoped_resources.is_empty()
        || !a.exclude_cluster_scoped_resources.is_empty()
        || !a.include_namespace_scoped_resources.is_empty()
        || !a.exclude_namespace_scoped_resources.is_empty();
    if mixed_old && scoped {
        return Err(super::usage(
            "--include-resources, --exclude-resources and --include-cluster-resources cannot be combined with the --*-scoped-resources flags",
        ));
    }
    let backup = build(&a, &g.namespace);
    if let Some(format) = a.output {
        output::print_object(&backup, format)?;
        return Ok(0);
    }
    let kube = connect(g).await?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    api(&kube)
        .create(&params, &backup)
        .await
        .map_err(|e| kube.error(e, "backup", Some(&a.name)))?;
    println!("Backup request {:?} submitted successfully.", a.name);
    if !a.wait {
        println!(
            "Run `stowage k8s backup describe {0}` or `stowage k8s backup logs {0}` for more details.",
            a.name
        );
        return Ok(0);
    }
    println!("Waiting for the backup to finish. Ctrl-C stops waiting; the backup goes on.");
    let done = wait(&kube, &a.name).await?;
    finish(&done)
}

/// Watches a backup until its phase is terminal, showing its progress on one line.
async fn wait(kube: &Kube, name: &str) -> Result<Backup> {
    super::wait_until_done(
        api(kube),
        kube,
        "backup",
        name,
        progress_line,
        |b: &Backup| b.phase().is_terminal(),
    )
    .await
}

fn progress_line(b: &Backup) -> String {
    let phase = b.phase();
    let status = b.status.clone().unwrap_or_default();
    let mut line = format!("{phase}");
    if let Some(q) = status
        .queue_position
        .filter(|_| phase == BackupPhase::Queued)
    {
        let _ = write!(line, " (position {q})");
    }
    if let Some(p) = &status.progress {
        let _ = write!(line, ": items {}/{}", p.items_backed_up, p.total_items);
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

/// The summary of a finished backup; exit 0 only when it Completed, with the reason otherwise.
fn finish(b: &Backup) -> Result<u8> {
    let name = b.metadata.name.clone().unwrap_or_default();
    let status = b.status.clone().unwrap_or_default();
    let phase = b.phase();
    let items = status
        .progress
        .as_ref()
        .map(|p| format!("{} of {} items", p.items_backed_up, p.total_items))
        .unwrap_or_else(|| "no items".into());
    let mut summary = format!(
        "Backup {name:?} {phase}: {items}, {} errors, {} warnings",
        status.errors, status.warnings
    );
    if let Some(id) = &status.snapshot_id {
        let _ = write!(summary, ", snapshot {id}");
    }
    if let Some(bytes) = status.bytes_added {
        let _ = write!(summary, ", {} added", human_bytes(bytes));
    }
    println!("{summary}.");
    if phase == BackupPhase::Completed {
        return Ok(0);
    }
    Err(anyhow!("{}", failure_reason(b)))
}

/// Why a finished backup did not complete, in one line.
pub fn failure_reason(b: &Backup) -> String {
    let name = b.metadata.name.clone().unwrap_or_default();
    let status = b.status.clone().unwrap_or_default();
    let logs = format!("run `stowage k8s backup logs {name}`");
    match b.phase() {
        BackupPhase::FailedValidation => format!(
            "backup {name:?} failed validation: {}",
            status.validation_errors.join("; ")
        ),
        BackupPhase::Failed => format!(
            "backup {name:?} failed: {}; {logs}",
            status
                .failure_reason
                .as_deref()
                .unwrap_or("no reason given")
        ),
        BackupPhase::PartiallyFailed => {
            let first: Vec<String> = status.first_errors.iter().take(3).map(problem).collect();
            format!(
                "backup {name:?} partially failed with {} errors{}; {logs}",
                status.errors,
                match first.is_empty() {
                    true => String::new(),
                    false => format!(" (first: {})", first.join("; ")),
                }
            )
        }
        BackupPhase::Canceled => format!("backup {name:?} was canceled"),
        other => format!("backup {name:?} is {other}"),
    }
}

/// One problem on one line: `pods ns/name: message`.
fn problem(p: &Problem) -> String {
    let mut s = String::new();
    if let Some(r) = &p.resource {
        s.push_str(r);
        s.push(' ');
    }
    match (&p.namespace, &p.name) {
        (Some(ns), Some(n)) => {
            let _ = write!(s, "{ns}/{n}");
        }
        (Some(ns), None) => {
            let _ = write!(s, "namespace {ns}");
        }
        (None, Some(n)) => s.push_str(n),
        (None, None) => {}
    }
    let s = s.trim_end().to_string();
    match s.is_empty() {
        true => p.message.clone(),
        false => format!("{s}: {}", p.message),
    }
}

async fn fetch(kube: &Kube, name: &str) -> Result<Backup> {
    api(kube)
        .get(name)
        .await
        .map_err(|e| kube.error(e, "backup", Some(name)))
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
                .map_err(|e| kube.error(e, "backup", None))?
                .items;
            // Newest first, as Velero lists them.
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
        eprintln!("No backups found in namespace {}.", kube.namespace);
        return Ok(0);
    }
    print!("{}", table(&items, a.output == Some(ListFormat::Wide)));
    Ok(0)
}

/// The SELECTOR column: the selector, or the or-selectors joined by " or ".
fn selector_text(spec: &BackupSpec) -> String {
    match (&spec.label_selector, spec.or_label_selectors.is_empty()) {
        (Some(s), _) => parse::format_selector(s),
        (None, false) => spec
            .or_label_selectors
            .iter()
            .map(parse::format_selector)
            .collect::<Vec<_>>()
            .join(" or "),
        (None, true) => "<none>".into(),
    }
}

/// The `get` table, Velero's columns (and with `wide`, TTL, items, snapshot and bytes added).
pub fn table(items: &[Backup], wide: bool) -> String {
    let now = output::now();
    let mut headers = vec![
        "NAME",
        "STATUS",
        "ERRORS",
        "WARNINGS",
        "CREATED",
        "EXPIRES",
        "STORAGE LOCATION",
        "SELECTOR",
    ];
    if wide {
        headers.extend(["TTL", "ITEMS", "SNAPSHOT", "ADDED"]);
    }
    let mut t = Table::new(&headers);
    for b in items {
        let status = b.status.clone().unwrap_or_default();
        let mut phase = b.phase().to_string();
        if b.spec.cancel_requested() && !b.phase().is_terminal() {
            phase.push_str(" (canceling)");
        }
        let mut row = vec![
            b.metadata.name.clone().unwrap_or_default(),
            phase,
            status.errors.to_string(),
            status.warnings.to_string(),
            output::timestamp(b.metadata.creation_timestamp.as_ref()),
            output::until(status.expiration.as_ref(), now),
            b.spec.storage_location.clone().unwrap_or_default(),
            selector_text(&b.spec),
        ];
        if wide {
            row.push(ttl_text(&b.spec));
            row.push(
                status
                    .progress
                    .as_ref()
                    .map(|p| format!("{}/{}", p.items_backed_up, p.total_items))
                    .unwrap_or_default(),
            );
            row.push(status.snapshot_id.clone().unwrap_or_default());
            row.push(status.bytes_added.map(human_bytes).unwrap_or_default());
        }
        t.row(row);
    }
    t.render()
}

fn ttl_text(spec: &BackupSpec) -> String {
    match &spec.ttl {
        Some(t) if stowage_kube::api::parse_duration(t).is_ok_and(|d| !d.is_zero()) => t.clone(),
        _ => format!(
            "{} (default)",
            stowage_kube::api::format_duration(DEFAULT_TTL)
        ),
    }
}

async fn describe(g: &K8sGlobal, a: DescribeArgs) -> Result<u8> {
    let kube = connect(g).await?;
    let backup = fetch(&kube, &a.name).await?;
    if let Some(format) = a.output {
        output::print_object(&backup, format)?;
        return Ok(0);
    }
    print!("{}", describe_text(&backup));
    if a.details {
        print!("\n{}", details_text(&kube, &backup).await);
    }
    Ok(0)
}

fn yes_no_auto(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "auto",
    }
}

fn map_text(m: Option<&BTreeMap<String, String>>) -> String {
    match m.filter(|m| !m.is_empty()) {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n             "),
        None => "<none>".into(),
    }
}

/// What `describe` prints from the object alone (Velero's describer, our fields).
pub fn describe_text(b: &Backup) -> String {
    let name = b.metadata.name.clone().unwrap_or_default();
    let status = b.status.clone().unwrap_or_default();
    let spec = &b.spec;
    let phase = b.phase();
    let mut o = String::new();
    let _ = writeln!(o, "Name:         {name}");
    let _ = writeln!(
        o,
        "Namespace:    {}",
        b.metadata.namespace.clone().unwrap_or_default()
    );
    let _ = writeln!(o, "Labels:       {}", map_text(b.metadata.labels.as_ref()));
    let _ = writeln!(
        o,
        "Annotations:  {}",
        map_text(b.metadata.annotations.as_ref())
    );
    o.push('\n');
    let hint = match phase {
        BackupPhase::Completed
        | BackupPhase::PartiallyFailed
        | BackupPhase::Failed
        | BackupPhase::Canceled => {
            format!(" (run `stowage k8s backup logs {name}` for more information)")
        }
        _ => String::new(),
    };
    let _ = writeln!(o, "Phase:  {phase}{hint}");
    if spec.cancel_requested() && !phase.is_terminal() {
        let _ = writeln!(o, "        cancel requested");
    }
    if let Some(q) = status
        .queue_position
        .filter(|_| phase == BackupPhase::Queued)
    {
        let _ = writeln!(o, "Queue position:  {q}");
    }
    if !status.validation_errors.is_empty() {
        o.push_str("\nValidation errors:\n");
        for e in &status.validation_errors {
            let _ = writeln!(o, "  {e}");
        }
    }
    if let Some(r) = &status.failure_reason {
        let _ = writeln!(o, "Failure reason:  {r}");
    }
    if status.errors > 0 || status.warnings > 0 {
        o.push('\n');
        if status.warnings > 0 {
            let _ = writeln!(o, "Warnings:  {}", status.warnings);
            o.push_str(&problems_by_scope(&status.first_warnings, "  "));
        }
        if status.errors > 0 {
            let _ = writeln!(o, "Errors:  {}", status.errors);
            o.push_str(&problems_by_scope(&status.first_errors, "  "));
        }
        if !status.first_errors.is_empty() || !status.first_warnings.is_empty() {
            let _ = writeln!(
                o,
                "  (the first ones; `stowage k8s backup describe {name} --details` shows all)"
            );
        }
    }
    o.push_str("\nNamespaces:\n");
    let _ = writeln!(
        o,
        "  Included:  {}",
        list_or_star(&spec.included_namespaces)
    );
    let _ = writeln!(
        o,
        "  Excluded:  {}",
        output::list_or(&spec.excluded_namespaces, "<none>")
    );
    o.push_str("\nResources:\n");
    let scoped = !spec.included_cluster_scoped_resources.is_empty()
        || !spec.excluded_cluster_scoped_resources.is_empty()
        || !spec.included_namespace_scoped_resources.is_empty()
        || !spec.excluded_namespace_scoped_resources.is_empty();
    if scoped {
        let _ = writeln!(
            o,
            "  Included cluster-scoped:    {}",
            output::list_or(&spec.included_cluster_scoped_resources, "<none>")
        );
        let _ = writeln!(
            o,
            "  Excluded cluster-scoped:    {}",
            output::list_or(&spec.excluded_cluster_scoped_resources, "<none>")
        );
        let _ = writeln!(
            o,
            "  Included namespace-scoped:  {}",
            list_or_star(&spec.included_namespace_scoped_resources)
        );
        let _ = writeln!(
            o,
            "  Excluded namespace-scoped:  {}",
            output::list_or(&spec.excluded_namespace_scoped_resources, "<none>")
        );
    } else {
        let _ = writeln!(
            o,
            "  Included:        {}",
            list_or_star(&spec.included_resources)
        );
        let _ = writeln!(
            o,
            "  Excluded:        {}",
            output::list_or(&spec.excluded_resources, "<none>")
        );
        let cluster = match spec.include_cluster_resources {
            Some(true) => "included",
            Some(false) => "excluded",
            None => "auto",
        };
        let _ = writeln!(o, "  Cluster-scoped:  {cluster}");
    }
    o.push('\n');
    match (&spec.label_selector, spec.or_label_selectors.is_empty()) {
        (None, false) => {
            let _ = writeln!(o, "Or label selector:  {}", selector_text(spec));
        }
        _ => {
            let _ = writeln!(o, "Label selector:  {}", selector_text(spec));
        }
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "Storage Location:  {}",
        spec.storage_location.as_deref().unwrap_or("<default>")
    );
    o.push('\n');
    let _ = writeln!(
        o,
        "Snapshot Volumes:  {}",
        yes_no_auto(spec.snapshot_volumes)
    );
    let _ = writeln!(
        o,
        "File System Backup (Default):  {}",
        yes_no_auto(spec.default_volumes_to_fs_backup)
    );
    let _ = writeln!(
        o,
        "Snapshot Move Data:  {}",
        yes_no_auto(spec.snapshot_move_data)
    );
    o.push('\n');
    let _ = writeln!(o, "TTL:  {}", ttl_text(spec));
    if !spec.ordered_resources.is_empty() {
        o.push_str("\nOrdered Resources:\n");
        for (k, v) in &spec.ordered_resources {
            let _ = writeln!(o, "  {k}: {v}");
        }
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "Backup Format Version:  {}",
        status.format_version.as_deref().unwrap_or("<n/a>")
    );
    o.push('\n');
    let _ = writeln!(
        o,
        "Started:    {}",
        output::timestamp(status.start_timestamp.as_ref())
    );
    let _ = writeln!(
        o,
        "Completed:  {}",
        output::timestamp(status.completion_timestamp.as_ref())
    );
    o.push('\n');
    let _ = writeln!(
        o,
        "Expiration:  {}",
        output::timestamp(status.expiration.as_ref())
    );
    if let Some(p) = &status.progress {
        o.push('\n');
        let _ = writeln!(o, "Total items to be backed up:  {}", p.total_items);
        let _ = writeln!(o, "Items backed up:              {}", p.items_backed_up);
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "Snapshot ID:  {}",
        status.snapshot_id.as_deref().unwrap_or("<none>")
    );
    if let Some(bytes) = status.bytes_added {
        let _ = writeln!(o, "Bytes added:  {}", human_bytes(bytes));
    }
    if status.attempt > 1 {
        let _ = writeln!(o, "Attempts:     {}", status.attempt);
    }
    o.push_str(&volumes_text(&status.volumes));
    o
}

/// The volume lines of a Backup or Restore, grouped by outcome (Velero's "Pod Volume
/// Backups" section): the claim, the pod it was read from, how, and the snapshot or the reason.
pub fn volumes_text(lines: &[stowage_kube::api::VolumeResult]) -> String {
    use stowage_kube::api::VolumeOutcome;
    let mut o = String::new();
    if lines.is_empty() {
        return o;
    }
    o.push_str("\nVolumes:\n");
    for outcome in [
        VolumeOutcome::Completed,
        VolumeOutcome::Failed,
        VolumeOutcome::Canceled,
        VolumeOutcome::Pending,
        VolumeOutcome::Skipped,
    ] {
        let group: Vec<_> = lines.iter().filter(|l| l.outcome == outcome).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(o, "  {outcome}:");
        for l in group {
            let what = match &l.pvc {
                Some(c) => format!("{}/{c}", l.namespace),
                None => format!(
                    "{}/{} (volume {})",
                    l.namespace,
                    l.pod.as_deref().unwrap_or("?"),
                    l.volume
                ),
            };
            let mut facts = Vec::new();
            if l.pvc.is_some() {
                if let Some(p) = &l.pod {
                    facts.push(format!("pod {p}"));
                }
                facts.push(l.volume_mode.to_string());
            }
            if let Some(id) = &l.snapshot_id {
                facts.push(format!("snapshot {}", &id[..id.len().min(8)]));
            }
            if let Some(b) = l.bytes {
                facts.push(human_bytes(b));
            }
            let facts = if facts.is_empty() {
                String::new()
            } else {
                format!(" ({})", facts.join(", "))
            };
            match &l.reason {
                Some(r) => {
                    let _ = writeln!(o, "    {what}{facts}: {r}");
                }
                None => {
                    let _ = writeln!(o, "    {what}{facts}");
                }
            }
        }
    }
    o
}

fn list_or_star(items: &[String]) -> String {
    output::list_or(items, "*")
}

/// Problems grouped as Velero does: cluster-scoped ones, then by namespace.
fn problems_by_scope(problems: &[Problem], indent: &str) -> String {
    let mut o = String::new();
    let cluster: Vec<&Problem> = problems.iter().filter(|p| p.namespace.is_none()).collect();
    let mut by_ns: BTreeMap<&str, Vec<&Problem>> = BTreeMap::new();
    for p in problems {
        if let Some(ns) = &p.namespace {
            by_ns.entry(ns).or_default().push(p);
        }
    }
    if !cluster.is_empty() {
        let _ = writeln!(o, "{indent}Cluster:");
        for p in cluster {
            let _ = writeln!(o, "{indent}  {}", problem(p));
        }
    }
    if !by_ns.is_empty() {
        let _ = writeln!(o, "{indent}Namespaces:");
        for (ns, list) in by_ns {
            let _ = writeln!(o, "{indent}  {ns}:");
            for p in list {
                let _ = writeln!(o, "{indent}    {}", problem(p));
            }
        }
    }
    o
}

/// The records `--details` reads from the repository; a failure is one line, and what the
/// object has was printed already.
async fn details_text(kube: &Kube, b: &Backup) -> String {
    if !b.phase().has_snapshot()
        && b.status
            .as_ref()
            .and_then(|s| s.snapshot_id.as_ref())
            .is_none()
    {
        return format!(
            "Details: none yet: the backup is {} and has no snapshot in the repository.\n",
            b.phase()
        );
    }
    let records = match BackupRecords::open(kube, b).await {
        Ok(r) => r,
        Err(e) => return format!("Details: {}\n", super::one_line(&e)),
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Repository:  {} (snapshot {})",
        records.location, records.id
    );
    o.push_str("\nResource List:\n");
    match records.read_json::<BTreeMap<String, Vec<String>>>(files::RESOURCE_LIST) {
        Ok(list) if list.is_empty() => o.push_str("  <none>\n"),
        Ok(list) => {
            for (kind, objects) in list {
                let _ = writeln!(o, "  {kind}:");
                for obj in objects {
                    let _ = writeln!(o, "    - {obj}");
                }
            }
        }
        Err(e) => {
            let _ = writeln!(o, "  <error: {}>", super::one_line(&e));
        }
    }
    #[derive(serde::Deserialize, Default)]
    struct Results {
        #[serde(default)]
        warnings: Vec<Problem>,
        #[serde(default)]
        errors: Vec<Problem>,
    }
    match records.read_json::<Results>(files::RESULTS) {
        Ok(r) => {
            let _ = writeln!(o, "\nWarnings ({}):", r.warnings.len());
            match r.warnings.is_empty() {
                true => o.push_str("  <none>\n"),
                false => o.push_str(&problems_by_scope(&r.warnings, "  ")),
            }
            let _ = writeln!(o, "\nErrors ({}):", r.errors.len());
            match r.errors.is_empty() {
                true => o.push_str("  <none>\n"),
                false => o.push_str(&problems_by_scope(&r.errors, "  ")),
            }
        }
        Err(e) => {
            let _ = writeln!(o, "\nResults:  <error: {}>", super::one_line(&e));
        }
    }
    o.push_str("\nBackup Volumes:\n");
    match records.read_json::<Vec<serde_json::Value>>(files::VOLUME_SNAPSHOTS) {
        Ok(v) if v.is_empty() => o.push_str("  <none included>\n"),
        Ok(v) => {
            for snap in v {
                let _ = writeln!(o, "  {}", serde_json::to_string(&snap).unwrap_or_default());
            }
        }
        Err(e) => {
            let _ = writeln!(o, "  <error: {}>", super::one_line(&e));
        }
    }
    o
}

async fn logs(g: &K8sGlobal, a: NameArg) -> Result<u8> {
    let kube = connect(g).await?;
    let backup = fetch(&kube, &a.name).await?;
    let phase = backup.phase();
    if !phase.is_terminal() {
        bail!(
            "backup {:?} is {phase}, still running: its log is in the repository once it has finished",
            a.name
        );
    }
    if phase == BackupPhase::FailedValidation {
        bail!(
            "backup {:?} failed validation and never ran, so it has no log: {}",
            a.name,
            backup
                .status
                .as_ref()
                .map(|s| s.validation_errors.join("; "))
                .unwrap_or_default()
        );
    }
    let records = BackupRecords::open(&kube, &backup).await?;
    let log = records.read(files::LOG)?;
    use std::io::Write;
    std::io::stdout().write_all(&log)?;
    Ok(0)
}

async fn delete(g: &K8sGlobal, a: DeleteArgs) -> Result<u8> {
    let kube = connect(g).await?;
    let backup = fetch(&kube, &a.name).await?;
    let kept = kept_note(&backup);
    if !a.confirm {
        super::confirm(&format!("delete backup {:?}", a.name), &kept)?;
    }
    api(&kube)
        .delete(&a.name, &DeleteParams::default())
        .await
        .map_err(|e| kube.error(e, "backup", Some(&a.name)))?;
    println!("Backup {:?} deleted. {kept}", a.name);
    Ok(0)
}

fn kept_note(b: &Backup) -> String {
    let snapshot = b
        .status
        .as_ref()
        .and_then(|s| s.snapshot_id.clone())
        .map(|id| format!(" (snapshot {id})"))
        .unwrap_or_default();
    format!(
        "Only the Backup object is deleted: its data in the repository{snapshot} is kept (deleting backup data comes with DeleteBackupRequest, in a later version)."
    )
}

async fn cancel(g: &K8sGlobal, a: NameArg) -> Result<u8> {
    let kube = connect(g).await?;
    let backup = fetch(&kube, &a.name).await?;
    let phase = backup.phase();
    if phase.is_terminal() {
        println!(
            "Backup {:?} has already finished ({phase}): nothing to cancel.",
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
        .map_err(|e| kube.error(e, "backup", Some(&a.name)))?;
    println!(
        "Backup {:?}: cancel requested; the controller stops it and marks it Canceled.",
        a.name
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn volumes_are_listed_by_outcome_with_snapshot_or_reason() {
        use stowage_kube::api::{VolumeMethod, VolumeMode, VolumeOutcome, VolumeResult};
        let lines = [
            VolumeResult {
                namespace: "app".into(),
                pod: Some("db-0".into()),
                volume: "data".into(),
                pvc: Some("data-db-0".into()),
                method: VolumeMethod::FileSystem,
                volume_mode: VolumeMode::Filesystem,
                outcome: VolumeOutcome::Completed,
                snapshot_id: Some("0123456789abcdef".into()),
                bytes: Some(2048),
                ..VolumeResult::default()
            },
            VolumeResult {
                namespace: "app".into(),
                pod: Some("web".into()),
                volume: "tmp".into(),
                method: VolumeMethod::Skipped,
                outcome: VolumeOutcome::Skipped,
                reason: Some("an emptyDir lives and dies with its pod".into()),
                ..VolumeResult::default()
            },
        ];
        let text = volumes_text(&lines);
        assert!(text.contains("  Completed:\n    app/data-db-0 (pod db-0, Filesystem, snapshot 01234567, 2.00 KiB)\n"), "{text}");
        assert!(
            text.contains(
                "  Skipped:\n    app/web (volume tmp): an emptyDir lives and dies with its pod\n"
            ),
            "{text}"
        );
        assert_eq!(volumes_text(&[]), "");
    }

    use super::*;
    use clap::Parser;
    use stowage_kube::api::BackupStatus;

    fn create_args(args: &[&str]) -> CreateArgs {
        let mut argv = vec!["stowage k8s", "backup", "create"];
        argv.extend_from_slice(args);
        match super::super::K8sCli::try_parse_from(argv).unwrap().command {
            super::super::K8sSub::Backup(BackupCommand::Create(a)) => *a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_flags_fill_veleros_spec_fields() {
        let a = create_args(&[
            "nightly",
            "--include-namespaces",
            "a,b",
            "--exclude-namespaces=c",
            "--include-resources",
            "pods,deployments.apps",
            "--include-cluster-resources",
            "false",
            "--selector",
            "app=web,tier in (a,b)",
            "--ttl",
            "72h",
            "--storage-location",
            "primary",
            "--ordered-resources",
            "pods=a/x,a/y",
            "--default-volumes-to-fs-backup",
            "--snapshot-volumes=false",
            "--labels",
            "team=x,env=prod",
        ]);
        let b = build(&a, "stowage");
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["apiVersion"], "stowage.dev/v1alpha1");
        assert_eq!(v["kind"], "Backup");
        assert_eq!(v["metadata"]["namespace"], "stowage");
        assert_eq!(v["metadata"]["labels"]["env"], "prod");
        let s = &v["spec"];
        assert_eq!(s["includedNamespaces"], serde_json::json!(["a", "b"]));
        assert_eq!(s["excludedNamespaces"], serde_json::json!(["c"]));
        assert_eq!(
            s["includedResources"],
            serde_json::json!(["pods", "deployments.apps"])
        );
        assert_eq!(s["includeClusterResources"], false);
        assert_eq!(s["labelSelector"]["matchLabels"]["app"], "web");
        assert_eq!(s["labelSelector"]["matchExpressions"][0]["operator"], "In");
        assert_eq!(s["ttl"], "72h0m0s");
        assert_eq!(s["storageLocation"], "primary");
        assert_eq!(s["orderedResources"]["pods"], "a/x,a/y");
        assert_eq!(s["defaultVolumesToFsBackup"], true);
        assert_eq!(s["snapshotVolumes"], false);
        assert!(s.get("snapshotMoveData").is_none());
        assert!(s.get("cancel").is_none());
    }

    #[test]
    fn selector_and_or_selector_exclude_each_other_and_bad_ones_are_usage_errors() {
        let both = super::super::K8sCli::try_parse_from([
            "stowage k8s",
            "backup",
            "create",
            "x",
            "--selector",
            "a=b",
            "--or-selector",
            "c=d or e=f",
        ]);
        assert_eq!(
            both.unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
        let bad = super::super::K8sCli::try_parse_from([
            "stowage k8s",
            "backup",
            "create",
            "x",
            "--selector",
            "a in (b",
        ]);
        let err = bad.unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("missing ')'"), "{err}");
    }

    fn finished(phase: BackupPhase, status: BackupStatus) -> Backup {
        let mut b = Backup::new("b1", BackupSpec::default());
        b.status = Some(BackupStatus {
            phase: Some(phase),
            ..status
        });
        b
    }

    #[test]
    fn a_finished_backup_says_why_it_did_not_complete() {
        let v = finished(
            BackupPhase::FailedValidation,
            BackupStatus {
                validation_errors: vec!["bad ns".into(), "bad ttl".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            failure_reason(&v),
            "backup \"b1\" failed validation: bad ns; bad ttl"
        );
        let f = finished(
            BackupPhase::Failed,
            BackupStatus {
                failure_reason: Some("repository unreachable".into()),
                ..Default::default()
            },
        );
        assert!(failure_reason(&f)
            .contains("failed: repository unreachable; run `stowage k8s backup logs b1`"));
        let p = finished(
            BackupPhase::PartiallyFailed,
            BackupStatus {
                errors: 2,
                first_errors: vec![Problem {
                    resource: Some("pods".into()),
                    namespace: Some("app".into()),
                    name: Some("web-0".into()),
                    message: "gone".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        assert!(
            failure_reason(&p).contains("2 errors (first: pods app/web-0: gone)"),
            "{}",
            failure_reason(&p)
        );
        let done = finished(BackupPhase::Completed, BackupStatus::default());
        assert_eq!(finish(&done).unwrap(), 0);
        assert!(finish(&p).is_err());
    }

    #[test]
    fn describe_shows_filters_selectors_and_the_reason() {
        let a = create_args(&[
            "d1",
            "--include-namespace-scoped-resources",
            "pods",
            "--exclude-cluster-scoped-resources",
            "nodes",
            "--or-selector",
            "a=b or c",
            "--snapshot-move-data",
        ]);
        let mut b = build(&a, "stowage");
        b.status = Some(BackupStatus {
            phase: Some(BackupPhase::PartiallyFailed),
            errors: 1,
            warnings: 1,
            first_errors: vec![Problem {
                resource: Some("nodes".into()),
                name: Some("n1".into()),
                message: "denied".into(),
                ..Default::default()
            }],
            first_warnings: vec![Problem {
                namespace: Some("app".into()),
                message: "slow".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let text = describe_text(&b);
        for want in [
            "Phase:  PartiallyFailed (run `stowage k8s backup logs d1`",
            "Included namespace-scoped:  pods",
            "Excluded cluster-scoped:    nodes",
            "Or label selector:  a=b or c",
            "Snapshot Move Data:  true",
            "Snapshot Volumes:  auto",
            "TTL:  720h0m0s (default)",
            "Cluster:\n    nodes n1: denied",
            "Namespaces:\n    app:\n      namespace app: slow",
            "Included:  *",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn the_get_table_has_veleros_columns() {
        let a = create_args(&["g1", "--selector", "app=web", "--storage-location", "s"]);
        let text = table(&[build(&a, "stowage")], false);
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(
            header.starts_with("NAME   STATUS   ERRORS   WARNINGS   CREATED"),
            "{header}"
        );
        assert!(header.ends_with("STORAGE LOCATION   SELECTOR"), "{header}");
        let row = lines.next().unwrap();
        assert!(row.starts_with("g1     New      0        0"), "{row}");
        assert!(row.ends_with("s                  app=web"), "{row}");
    }
}
