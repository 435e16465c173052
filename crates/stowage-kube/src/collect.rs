//! The object collector: lists what a Backup selects, page by page, and hands each object to the
//! engine as a document at its place in the layout (`repo-format/README.md`, "Kubernetes
//! backups"), pulling in the objects Velero pulls in as related items (velero.md §2.5).
//!
//! Resource types are taken one at a time and each type's directory is closed when the type is
//! done, so the engine holds the nodes of one type at most; the collector itself holds one page
//! of objects (`page_size`), the namespaces, the related names still to fetch and the resource
//! list. Types are ordered so that every related object is known before its type is taken: pods
//! and PVCs first, then the other namespaced types; then persistent volumes, cluster role
//! bindings, cluster roles, priority classes, the other cluster-scoped types, custom resource
//! definitions, and the namespaces last.

use crate::filter::{ApiResource, BackupFilter, ResourceCatalog};
use crate::runlog::RunLog;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use stowage_core::backup::{Document, DocumentEvent, ProducerError};
use stowage_core::cancel::CancelToken;
use tokio::sync::mpsc::Sender;

/// The label that keeps an object (or a namespace's objects) out of every backup.
pub const EXCLUDE_LABEL: &str = "stowage.dev/exclude-from-backup";

/// Types a backup never lists: volume snapshots are taken by the backup itself (the CSI issue),
/// and are pulled in as related objects when it does.
const AUTO_EXCLUDED: [&str; 2] = [
    "volumesnapshots.snapshot.storage.k8s.io",
    "volumesnapshotcontents.snapshot.storage.k8s.io",
];

/// Resources that two groups serve, and the groups: the first group the catalog lists wins
/// (the catalog puts the core group first and `extensions` last), as in Velero.
const COHABITING: [(&str, [&str; 2]); 5] = [
    ("deployments", ["apps", "extensions"]),
    ("daemonsets", ["apps", "extensions"]),
    ("replicasets", ["apps", "extensions"]),
    ("networkpolicies", ["networking.k8s.io", "extensions"]),
    ("events", ["", "events.k8s.io"]),
];

/// How the collector lists.
#[derive(Clone, Debug)]
pub struct CollectOptions {
    /// Objects per LIST page (Velero's `--client-page-size`, default 500).
    pub page_size: u32,
    /// Attempts per request on a transient failure (throttling, server errors, timeouts).
    pub attempts: u32,
    /// Most requests per second to the API server (Velero's `--client-qps`); `None`: as fast as
    /// it answers.
    pub qps: Option<f64>,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions {
            page_size: 500,
            attempts: 4,
            qps: None,
        }
    }
}

/// How bad a finding is: an error makes the backup PartiallyFailed, a warning does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Noted; the backup is still Completed.
    Warning,
    /// Something selected is missing from the backup.
    Error,
}

/// One thing that went wrong, typed so that a status can say what and where.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// What happened, as a stable word: `ListFailed`, `GetFailed`, `RelatedNotFound`,
    /// `NamespaceNotFound`, `DiscoveryFailed`.
    pub kind: &'static str,
    /// The group-resource (`deployments.apps`), if one is concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The namespace, if one is concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name, if one is concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The cause.
    pub message: String,
}

/// Counts the controller publishes as the backup's progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// Objects handed to the engine.
    pub done: AtomicU64,
    /// Objects known to be coming: those done plus what the current list says remains.
    pub total: AtomicU64,
}

/// Why collecting stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The backup was cancelled.
    #[error("canceled")]
    Canceled,
    /// The engine stopped taking documents (it failed; its error says why).
    #[error("the repository stopped taking objects")]
    SinkClosed,
    /// Namespaces could not be listed: nothing can be selected.
    #[error("listing namespaces failed: {0}")]
    Namespaces(#[source] kube::Error),
}

/// What a finished collection found.
#[derive(Debug, Default)]
pub struct Collected {
    /// Objects stored.
    pub items: u64,
    /// `"<apiVersion>/<Kind>"` to the sorted `namespace/name` (or `name`) of each object, as
    /// Velero's resource list.
    pub resource_list: BTreeMap<String, Vec<String>>,
    /// Errors and warnings, in the order they happened.
    pub findings: Vec<Finding>,
    /// The namespaces the backup holds.
    pub namespaces: Vec<String>,
}

/// Related objects still to fetch, by group-resource, as `(namespace, name)`.
type Wanted = BTreeMap<&'static str, BTreeSet<(Option<String>, String)>>;

const PODS: &str = "pods";
const PVCS: &str = "persistentvolumeclaims";
const PVS: &str = "persistentvolumes";
const CRBS: &str = "clusterrolebindings.rbac.authorization.k8s.io";
const CLUSTER_ROLES: &str = "clusterroles.rbac.authorization.k8s.io";
const PRIORITY_CLASSES: &str = "priorityclasses.scheduling.k8s.io";
const SERVICE_ACCOUNTS: &str = "serviceaccounts";
const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";
const NAMESPACES: &str = "namespaces";

/// Where a type comes in the collection (see the module's documentation).
fn rank(r: &ApiResource) -> (u8, String) {
    let gr = r.group_resource();
    let rank = match (r.namespaced, gr.as_str()) {
        (true, PODS) => 0,
        (true, PVCS) => 1,
        (true, _) => 2,
        (false, PVS) => 3,
        (false, CRBS) => 4,
        (false, CLUSTER_ROLES) => 5,
        (false, PRIORITY_CLASSES) => 6,
        (false, CRDS) => 8,
        (false, NAMESPACES) => 9,
        (false, _) => 7,
    };
    (rank, gr)
}

/// The collector of one backup.
pub struct Collector<'a> {
    client: kube::Client,
    catalog: &'a ResourceCatalog,
    filter: &'a BackupFilter,
    opts: CollectOptions,
    sink: Sender<Result<DocumentEvent, ProducerError>>,
    log: &'a RunLog,
    cancel: CancelToken,
    progress: Arc<Progress>,
    out: Collected,
    /// Namespaces by name, as listed at the start (their objects are written at the end).
    namespaces: BTreeMap<String, Value>,
    /// Namespaces whose objects are all excluded by the exclude label.
    excluded_namespaces: HashSet<String>,
    /// Namespaces some stored object lives in.
    used_namespaces: BTreeSet<String>,
    wanted: Wanted,
    /// Objects of the types related objects come from, stored already (so not twice).
    stored: HashSet<(String, Option<String>, String)>,
    /// Group-resources with at least one object stored (for their CRDs).
    stored_types: BTreeSet<String>,
    /// Cluster role bindings by subject, listed when the first service account is stored.
    bindings_by_subject: Option<HashMap<(String, String), Vec<String>>>,
    /// The request rate limit.
    pacer: crate::pace::Pacer,
}

impl<'a> Collector<'a> {
    /// A collector writing into `sink`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        catalog: &'a ResourceCatalog,
        filter: &'a BackupFilter,
        opts: CollectOptions,
        sink: Sender<Result<DocumentEvent, ProducerError>>,
        log: &'a RunLog,
        cancel: CancelToken,
        progress: Arc<Progress>,
    ) -> Self {
        let pacer = crate::pace::Pacer::new(opts.qps);
        Collector {
            client,
            catalog,
            filter,
            opts,
            sink,
            log,
            cancel,
            progress,
            out: Collected::default(),
            namespaces: BTreeMap::new(),
            excluded_namespaces: HashSet::new(),
            used_namespaces: BTreeSet::new(),
            wanted: Wanted::new(),
            stored: HashSet::new(),
            stored_types: BTreeSet::new(),
            bindings_by_subject: None,
            pacer,
        }
    }

    /// Waits for the request rate limit, if there is one.
    async fn pace(&self) {
        self.pacer.wait().await;
    }

    /// Collects everything the filter selects.
    pub async fn run(mut self) -> Result<Collected, CollectError> {
        self.list_namespaces().await?;
        for r in plan(self.catalog) {
            self.check()?;
            if r.group_resource() == NAMESPACES && !r.namespaced {
                self.store_namespaces(r).await?;
                continue;
            }
            self.collect_type(r).await?;
        }
        self.out.namespaces = self.used_namespaces.iter().cloned().collect();
        for list in self.out.resource_list.values_mut() {
            list.sort();
        }
        Ok(self.out)
    }

    fn check(&self) -> Result<(), CollectError> {
        if self.cancel.is_canceled() {
            return Err(CollectError::Canceled);
        }
        Ok(())
    }

    fn finding(
        &mut self,
        severity: Severity,
        kind: &'static str,
        r: Option<&ApiResource>,
        namespace: Option<&str>,
        name: Option<&str>,
        message: String,
    ) {
        let f = Finding {
            severity,
            kind,
            resource: r.map(|r| r.group_resource()),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            message,
        };
        let line = format!(
            "{kind}{}{}{}: {}",
            f.resource
                .as_deref()
                .map(|r| format!(" {r}"))
                .unwrap_or_default(),
            f.namespace
                .as_deref()
                .map(|n| format!(" namespace={n}"))
                .unwrap_or_default(),
            f.name
                .as_deref()
                .map(|n| format!(" name={n}"))
                .unwrap_or_default(),
            f.message
        );
        match severity {
            Severity::Warning => self.log.warn(&line),
            Severity::Error => self.log.error(&line),
        }
        self.out.findings.push(f);
    }

    /// Lists every namespace: which are selected, which the exclude label removes, and the
    /// objects to store at the end.
    async fn list_namespaces(&mut self) -> Result<(), CollectError> {
        let Some(ns_type) = self
            .catalog
            .resources
            .iter()
            .find(|r| r.group.is_empty() && r.resource == NAMESPACES)
            .cloned()
        else {
            return Ok(());
        };
        let mut cont: Option<String> = None;
        loop {
            self.check()?;
            let url = list_url(&ns_type, None, None, self.opts.page_size, cont.as_deref());
            let page = self
                .get_json(&url)
                .await
                .map_err(CollectError::Namespaces)?;
            let next = continue_token(&page);
            for item in items(page) {
                let name = item_str(&item, &["metadata", "name"]).unwrap_or_default();
                if label(&item, EXCLUDE_LABEL) == Some("true") {
                    self.excluded_namespaces.insert(name.clone());
                }
                self.namespaces.insert(name, item);
            }
            match next {
                Some(c) => cont = Some(c),
                None => break,
            }
        }
        let explicit: Vec<String> = self
            .filter
            .namespace_filter()
            .includes()
            .iter()
            .filter(|n| !n.contains(['*', '?', '[']))
            .cloned()
            .collect();
        for wanted in explicit {
            if !self.namespaces.contains_key(&wanted) {
                self.finding(
                    Severity::Error,
                    "NamespaceNotFound",
                    None,
                    Some(&wanted),
                    None,
                    format!("namespace {wanted:?} is included but does not exist"),
                );
            }
        }
        Ok(())
    }

    fn namespace_selected(&self, ns: &str) -> bool {
        self.filter.namespace_included(ns) && !self.excluded_namespaces.contains(ns)
    }

    /// Lists one type (when the filter lists it), fetches its related objects, and closes its
    /// directory.
    async fn collect_type(&mut self, r: &ApiResource) -> Result<(), CollectError> {
        let gr = r.group_resource();
        if self.filter.should_list(r) {
            let scopes: Vec<Option<String>> =
                if !r.namespaced || self.filter.namespaces_everything() {
                    vec![None]
                } else {
                    self.namespaces
                        .keys()
                        .filter(|ns| self.namespace_selected(ns))
                        .cloned()
                        .map(Some)
                        .collect()
                };
            let selectors = self.filter.label_selectors();
            // With several selectors one object may match more than one.
            let dedupe = selectors.len() > 1;
            let mut seen: HashSet<(Option<String>, String)> = HashSet::new();
            for selector in &selectors {
                for scope in &scopes {
                    self.list_into(r, scope.as_deref(), selector.as_deref(), dedupe, &mut seen)
                        .await?;
                }
            }
        }
        self.fetch_related(r).await?;
        if gr == CRDS {
            self.fetch_crds_of_stored(r).await?;
        }
        self.send(DocumentEvent::CloseDir(format!("resources/{gr}")))
            .await
    }

    async fn list_into(
        &mut self,
        r: &ApiResource,
        namespace: Option<&str>,
        selector: Option<&str>,
        dedupe: bool,
        seen: &mut HashSet<(Option<String>, String)>,
    ) -> Result<(), CollectError> {
        let mut cont: Option<String> = None;
        loop {
            self.check()?;
            let url = list_url(r, namespace, selector, self.opts.page_size, cont.as_deref());
            let page = match self.get_json(&url).await {
                Ok(p) => p,
                Err(e) => {
                    let message = format!("listing failed: {}", describe(&e));
                    self.finding(
                        Severity::Error,
                        "ListFailed",
                        Some(r),
                        namespace,
                        None,
                        message,
                    );
                    return Ok(());
                }
            };
            let next = continue_token(&page);
            let remaining = page
                .pointer("/metadata/remainingItemCount")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let listed = items(page);
            let done = self.progress.done.load(Ordering::Relaxed);
            self.progress
                .total
                .fetch_max(done + listed.len() as u64 + remaining, Ordering::Relaxed);
            for item in listed {
                if dedupe {
                    let key = (
                        item_str(&item, &["metadata", "namespace"]),
                        item_str(&item, &["metadata", "name"]).unwrap_or_default(),
                    );
                    if !seen.insert(key) {
                        continue;
                    }
                }
                self.take(r, item, false).await?;
            }
            match next {
                Some(c) => cont = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// Stores one object (listed, or fetched as a related object), after the per-object checks
    /// of velero.md §2.4.
    async fn take(
        &mut self,
        r: &ApiResource,
        mut item: Value,
        related: bool,
    ) -> Result<(), CollectError> {
        let name = item_str(&item, &["metadata", "name"]).unwrap_or_default();
        let namespace = if r.namespaced {
            item_str(&item, &["metadata", "namespace"])
        } else {
            None
        };
        if item
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            self.log.info(&format!(
                "skipped {} {}: being deleted",
                r.group_resource(),
                key_text(namespace.as_deref(), &name)
            ));
            return Ok(());
        }
        if label(&item, EXCLUDE_LABEL) == Some("true") {
            self.log.info(&format!(
                "skipped {} {}: labelled {EXCLUDE_LABEL}=true",
                r.group_resource(),
                key_text(namespace.as_deref(), &name)
            ));
            return Ok(());
        }
        if let Some(ns) = &namespace {
            if !self.namespace_selected(ns) {
                return Ok(());
            }
        }
        let gr = r.group_resource();
        if tracks_stored(&gr)
            && !self
                .stored
                .insert((gr.clone(), namespace.clone(), name.clone()))
        {
            return Ok(());
        }
        let api_version = match r.group.as_str() {
            "" => r.version.clone(),
            g => format!("{g}/{}", r.version),
        };
        if let Some(obj) = item.as_object_mut() {
            obj.insert("apiVersion".into(), Value::String(api_version.clone()));
            obj.insert("kind".into(), Value::String(r.kind.clone()));
        }
        self.note_related(&gr, namespace.as_deref(), &item).await;
        let path = crate::layout::object_path(&gr, namespace.as_deref(), &name);
        let mtime = object_time(&item);
        let data = crate::layout::encode_object(&item);
        self.send(DocumentEvent::Document(Document {
            mtime,
            ..Document::new(path, data)
        }))
        .await?;
        if related {
            self.log.info(&format!(
                "stored related {gr} {}",
                key_text(namespace.as_deref(), &name)
            ));
        }
        self.out
            .resource_list
            .entry(format!("{api_version}/{}", r.kind))
            .or_default()
            .push(key_text(namespace.as_deref(), &name));
        self.out.items += 1;
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        self.progress.total.fetch_max(
            self.progress.done.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        if let Some(ns) = namespace {
            self.used_namespaces.insert(ns);
        }
        self.stored_types.insert(gr);
        Ok(())
    }

    /// Records the objects `item` pulls in (velero.md §2.5): a pod's PVCs and priority class, a
    /// bound PVC's volume, a service account's cluster role bindings, a binding's cluster role.
    async fn note_related(&mut self, gr: &str, namespace: Option<&str>, item: &Value) {
        let mut want = |gr: &'static str, ns: Option<&str>, name: &str| {
            if !name.is_empty() {
                self.wanted
                    .entry(gr)
                    .or_default()
                    .insert((ns.map(str::to_string), name.to_string()));
            }
        };
        match gr {
            PODS => {
                if let Some(volumes) = item.pointer("/spec/volumes").and_then(Value::as_array) {
                    for v in volumes {
                        if let Some(claim) = v
                            .pointer("/persistentVolumeClaim/claimName")
                            .and_then(Value::as_str)
                        {
                            want(PVCS, namespace, claim);
                        }
                    }
                }
                if let Some(pc) = item
                    .pointer("/spec/priorityClassName")
                    .and_then(Value::as_str)
                {
                    want(PRIORITY_CLASSES, None, pc);
                }
            }
            PVCS => {
                let bound = item.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
                if let (true, Some(pv)) = (
                    bound,
                    item.pointer("/spec/volumeName").and_then(Value::as_str),
                ) {
                    want(PVS, None, pv);
                }
            }
            CRBS => {
                let to_cluster_role =
                    item.pointer("/roleRef/kind").and_then(Value::as_str) == Some("ClusterRole");
                if let (true, Some(role)) = (
                    to_cluster_role,
                    item.pointer("/roleRef/name").and_then(Value::as_str),
                ) {
                    want(CLUSTER_ROLES, None, role);
                }
            }
            SERVICE_ACCOUNTS => {
                let (Some(ns), Some(name)) = (
                    namespace,
                    item.pointer("/metadata/name").and_then(Value::as_str),
                ) else {
                    return;
                };
                let key = (ns.to_string(), name.to_string());
                if self.bindings_by_subject.is_none() {
                    self.bindings_by_subject = Some(self.list_bindings().await);
                }
                let names = self
                    .bindings_by_subject
                    .as_ref()
                    .and_then(|m| m.get(&key))
                    .cloned()
                    .unwrap_or_default();
                for crb in names {
                    self.wanted.entry(CRBS).or_default().insert((None, crb));
                }
            }
            _ => {}
        }
    }

    /// Every cluster role binding's service-account subjects.
    async fn list_bindings(&mut self) -> HashMap<(String, String), Vec<String>> {
        let mut map: HashMap<(String, String), Vec<String>> = HashMap::new();
        let Some(r) = self
            .catalog
            .resources
            .iter()
            .find(|r| r.group_resource() == CRBS)
            .cloned()
        else {
            return map;
        };
        let mut cont: Option<String> = None;
        loop {
            let url = list_url(&r, None, None, self.opts.page_size, cont.as_deref());
            let page = match self.get_json(&url).await {
                Ok(p) => p,
                Err(e) => {
                    let message = format!(
                        "listing cluster role bindings for service accounts failed: {}",
                        describe(&e)
                    );
                    self.finding(Severity::Error, "ListFailed", Some(&r), None, None, message);
                    return map;
                }
            };
            let next = continue_token(&page);
            for crb in items(page) {
                let name = item_str(&crb, &["metadata", "name"]).unwrap_or_default();
                let subjects = crb
                    .get("subjects")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for s in subjects {
                    if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount") {
                        let ns = s
                            .get("namespace")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let sa = s.get("name").and_then(Value::as_str).unwrap_or_default();
                        map.entry((ns.to_string(), sa.to_string()))
                            .or_default()
                            .push(name.clone());
                    }
                }
            }
            match next {
                Some(c) => cont = Some(c),
                None => return map,
            }
        }
    }

    /// Fetches the related objects of type `r` that were not stored by its listing.
    async fn fetch_related(&mut self, r: &ApiResource) -> Result<(), CollectError> {
        let gr = r.group_resource();
        let Some(wanted) = self.wanted.remove(gr.as_str()) else {
            return Ok(());
        };
        // Namespaced related objects follow the type filter; cluster-scoped ones only its
        // exclusions and the tri-state (Velero's ShouldExclude).
        let allowed = match r.namespaced {
            true => self.filter.should_list(r),
            false => !self.filter.exclude_related(r),
        };
        if !allowed {
            return Ok(());
        }
        for (ns, name) in wanted {
            self.check()?;
            if self
                .stored
                .contains(&(gr.clone(), ns.clone(), name.clone()))
            {
                continue;
            }
            let url = object_url(r, ns.as_deref(), &name);
            match self.get_json(&url).await {
                Ok(item) => self.take(r, item, true).await?,
                Err(e) if is_not_found(&e) => {
                    let message =
                        "a related object is gone (it was named by another object)".to_string();
                    self.finding(
                        Severity::Warning,
                        "RelatedNotFound",
                        Some(r),
                        ns.as_deref(),
                        Some(&name),
                        message,
                    );
                }
                Err(e) => {
                    let message = format!("fetching a related object failed: {}", describe(&e));
                    self.finding(
                        Severity::Error,
                        "GetFailed",
                        Some(r),
                        ns.as_deref(),
                        Some(&name),
                        message,
                    );
                }
            }
        }
        Ok(())
    }

    /// The definitions of the custom resources stored (velero.md §2.1 step 8), unless the
    /// filter names CRDs itself.
    async fn fetch_crds_of_stored(&mut self, r: &ApiResource) -> Result<(), CollectError> {
        if self.filter.crds_explicit() || self.filter.exclude_related(r) {
            return Ok(());
        }
        let types: Vec<String> = self
            .stored_types
            .iter()
            .filter(|gr| gr.contains('.') && gr.as_str() != CRDS)
            .cloned()
            .collect();
        for gr in types {
            self.check()?;
            if self.stored.contains(&(CRDS.to_string(), None, gr.clone())) {
                continue;
            }
            match self.get_json(&object_url(r, None, &gr)).await {
                Ok(item) => self.take(r, item, true).await?,
                // A built-in group's resource: not a custom one.
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    let message =
                        format!("fetching the definition of {gr} failed: {}", describe(&e));
                    self.finding(
                        Severity::Error,
                        "GetFailed",
                        Some(r),
                        None,
                        Some(&gr),
                        message,
                    );
                }
            }
        }
        Ok(())
    }

    /// Stores the namespaces the backup holds (velero.md §2.2): selected ones that match the
    /// label selector, selected ones when no label selector narrows them, and every namespace
    /// some stored object lives in.
    async fn store_namespaces(&mut self, r: &ApiResource) -> Result<(), CollectError> {
        if !self.filter.should_list(r) {
            return self
                .send(DocumentEvent::CloseDir(format!("resources/{NAMESPACES}")))
                .await;
        }
        let has_selector = self.filter.label_selectors().iter().any(Option::is_some);
        let keep: Vec<String> = self
            .namespaces
            .iter()
            .filter(|(name, ns)| {
                if !self.namespace_selected(name) {
                    return false;
                }
                let active =
                    ns.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating");
                let labels: BTreeMap<String, String> = ns
                    .pointer("/metadata/labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default();
                let by_label = has_selector && active && self.filter.matches_labels(&labels);
                let by_filter = !(has_selector && self.filter.namespaces_everything());
                by_label || by_filter || self.used_namespaces.contains(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in keep {
            if let Some(ns) = self.namespaces.remove(&name) {
                self.take(r, ns, false).await?;
            }
        }
        self.send(DocumentEvent::CloseDir(format!("resources/{NAMESPACES}")))
            .await
    }

    async fn send(&self, event: DocumentEvent) -> Result<(), CollectError> {
        self.sink
            .send(Ok(event))
            .await
            .map_err(|_| CollectError::SinkClosed)
    }

    /// GETs `url` as JSON, retrying transient failures with backoff.
    async fn get_json(&self, url: &str) -> Result<Value, kube::Error> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            self.pace().await;
            let req = http::Request::get(url)
                .body(Vec::new())
                .map_err(kube::Error::HttpError)?;
            match self.client.request::<Value>(req).await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.opts.attempts && is_transient(&e) => {
                    self.log.warn(&format!(
                        "GET {url} failed (attempt {attempt}), retrying: {}",
                        describe(&e)
                    ));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The types to collect, in order (see [`rank`]): the auto-excluded ones left out, and each
/// cohabiting resource once.
fn plan(catalog: &ResourceCatalog) -> Vec<&ApiResource> {
    let mut plan: Vec<&ApiResource> = Vec::new();
    let mut cohabitants_taken: HashSet<&str> = HashSet::new();
    for r in &catalog.resources {
        let gr = r.group_resource();
        if AUTO_EXCLUDED.contains(&gr.as_str()) {
            continue;
        }
        let cohabiting = COHABITING
            .iter()
            .any(|(res, groups)| *res == r.resource && groups.contains(&r.group.as_str()));
        if cohabiting && !cohabitants_taken.insert(r.resource.as_str()) {
            continue;
        }
        plan.push(r);
    }
    plan.sort_by_key(|r| rank(r));
    plan
}

/// Whether objects of this type are checked against those stored (related objects may have
/// been stored by the listing).
fn tracks_stored(gr: &str) -> bool {
    matches!(
        gr,
        PVCS | PVS | CRBS | CLUSTER_ROLES | PRIORITY_CLASSES | CRDS
    )
}

fn base_url(r: &ApiResource, namespace: Option<&str>) -> String {
    let root = match r.group.as_str() {
        "" => format!("/api/{}", r.version),
        g => format!("/apis/{g}/{}", r.version),
    };
    match namespace {
        Some(ns) => format!("{root}/namespaces/{}/{}", encode(ns), r.resource),
        None => format!("{root}/{}", r.resource),
    }
}

fn list_url(
    r: &ApiResource,
    namespace: Option<&str>,
    selector: Option<&str>,
    limit: u32,
    cont: Option<&str>,
) -> String {
    let mut url = format!("{}?limit={limit}", base_url(r, namespace));
    if let Some(s) = selector {
        url.push_str("&labelSelector=");
        url.push_str(&encode(s));
    }
    if let Some(c) = cont {
        url.push_str("&continue=");
        url.push_str(&encode(c));
    }
    url
}

fn object_url(r: &ApiResource, namespace: Option<&str>, name: &str) -> String {
    format!("{}/{}", base_url(r, namespace), encode(name))
}

/// Percent-encodes a query value or path segment.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn continue_token(page: &Value) -> Option<String> {
    page.pointer("/metadata/continue")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

fn items(page: Value) -> Vec<Value> {
    match page {
        Value::Object(mut m) => match m.remove("items") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn item_str(item: &Value, path: &[&str]) -> Option<String> {
    let mut v = item;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str().map(str::to_string)
}

fn label<'v>(item: &'v Value, key: &str) -> Option<&'v str> {
    item.get("metadata")?.get("labels")?.get(key)?.as_str()
}

fn key_text(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The object's last change as its managed fields record it (or its creation), so that an
/// unchanged object gets the same file time in every backup.
pub fn object_time(item: &Value) -> Option<SystemTime> {
    let mut times: Vec<&str> = Vec::new();
    if let Some(t) = item
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
    {
        times.push(t);
    }
    if let Some(fields) = item
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    {
        times.extend(
            fields
                .iter()
                .filter_map(|f| f.get("time").and_then(Value::as_str)),
        );
    }
    times
        .into_iter()
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .max()
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Throttling, server errors and connection trouble: worth another attempt.
fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// One line for an API error.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &str, resource: &str, namespaced: bool) -> ApiResource {
        ApiResource {
            group: group.into(),
            version: "v1".into(),
            resource: resource.into(),
            kind: "K".into(),
            namespaced,
            short_names: Vec::new(),
            singular: String::new(),
        }
    }

    #[test]
    fn related_types_come_after_the_types_that_name_them() {
        let mut all = [
            res("apiextensions.k8s.io", "customresourcedefinitions", false),
            res("", "namespaces", false),
            res("rbac.authorization.k8s.io", "clusterroles", false),
            res("", "persistentvolumes", false),
            res("rbac.authorization.k8s.io", "clusterrolebindings", false),
            res("", "serviceaccounts", true),
            res("", "persistentvolumeclaims", true),
            res("", "pods", true),
            res("scheduling.k8s.io", "priorityclasses", false),
            res("storage.k8s.io", "storageclasses", false),
        ];
        all.sort_by_key(rank);
        let order: Vec<String> = all.iter().map(|r| r.group_resource()).collect();
        assert_eq!(
            order,
            [
                "pods",
                "persistentvolumeclaims",
                "serviceaccounts",
                "persistentvolumes",
                "clusterrolebindings.rbac.authorization.k8s.io",
                "clusterroles.rbac.authorization.k8s.io",
                "priorityclasses.scheduling.k8s.io",
                "storageclasses.storage.k8s.io",
                "customresourcedefinitions.apiextensions.k8s.io",
                "namespaces",
            ]
        );
    }

    #[test]
    fn cohabiting_resources_are_taken_once_from_the_first_group() {
        let catalog = ResourceCatalog {
            resources: vec![
                res("", "events", true),
                res("apps", "deployments", true),
                res("events.k8s.io", "events", true),
                res("snapshot.storage.k8s.io", "volumesnapshots", true),
                res("extensions", "deployments", true),
                res("example.com", "deployments", true),
            ],
        };
        let planned: Vec<String> = plan(&catalog).iter().map(|r| r.group_resource()).collect();
        assert_eq!(
            planned,
            ["deployments.apps", "deployments.example.com", "events"]
        );
    }

    #[test]
    fn urls_are_built_and_encoded() {
        let deploy = res("apps", "deployments", true);
        assert_eq!(
            list_url(&deploy, Some("web"), Some("app in (a,b)"), 500, Some("tok=")),
            "/apis/apps/v1/namespaces/web/deployments?limit=500&labelSelector=app%20in%20%28a%2Cb%29&continue=tok%3D"
        );
        let pv = res("", "persistentvolumes", false);
        assert_eq!(
            object_url(&pv, None, "pv-1"),
            "/api/v1/persistentvolumes/pv-1"
        );
    }

    #[test]
    fn an_objects_time_is_its_latest_managed_change() {
        let item = serde_json::json!({"metadata": {
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"time": "2026-03-01T00:00:00Z"}, {"time": "2026-02-01T00:00:00Z"}]
        }});
        let t = object_time(&item).unwrap();
        let want = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z").unwrap();
        assert_eq!(t, SystemTime::from(want.with_timezone(&chrono::Utc)));
        assert_eq!(object_time(&serde_json::json!({})), None);
    }
}
