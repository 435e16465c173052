//! What a restore will do, decided before it creates anything: which of the backup's items it
//! selects (Velero's filters, with the cluster-scoped objects related to selected ones), which
//! it skips and why, what becomes of persistent volumes, what the target cluster lacks, and
//! the order: waves of items that may be created together, by type priority, each owner
//! before the objects it owns (so their owner references can be re-pointed at its new UID).
//!
//! Planning reads every selected object once (labels, owners, claims); it keeps a few
//! fields per item, never the objects.

use super::source::{Item, SourceError};
use crate::api::{BackupSpec, RestoreSpec};
use crate::filter::{is_dns_label, ApiResource, BackupFilter, ResourceCatalog};
use crate::restore_order::{never_restored, Priorities};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use stowage_core::error::{Classified, ErrorClass};

const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";
/// The longest chain of owners followed when ordering.
const MAX_OWNER_DEPTH: usize = 32;
const NAMESPACES: &str = "namespaces";
const PVS: &str = "persistentvolumes";
const PVCS: &str = "persistentvolumeclaims";
const STORAGE_CLASSES: &str = "storageclasses.storage.k8s.io";

/// What planning needs to know of the target cluster.
#[derive(Debug, Clone, Default)]
pub struct TargetState {
    /// The types it serves.
    pub catalog: ResourceCatalog,
    /// Its storage classes.
    pub storage_classes: BTreeSet<String>,
    /// Its namespaces, with whether each is being deleted.
    pub namespaces: BTreeMap<String, bool>,
    /// Its persistent volumes' names.
    pub volumes: BTreeSet<String>,
}

/// Identifies an owner as an owner reference names it: API group, kind, namespace (`None`
/// for cluster-scoped), name.
pub type OwnerKey = (String, String, Option<String>, String);

/// Something the target cluster lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lack {
    /// Whether the restore cannot usefully run without it (it fails validation, unless it is
    /// a dry run, which reports it item by item).
    pub blocking: bool,
    /// What is missing, for a human.
    pub message: String,
}

/// A set of items of one type that may be created at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    /// Their type.
    pub group_resource: String,
    /// Indexes into the item list.
    pub items: Vec<usize>,
}

/// The decisions of planning.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The waves, in the order they run; the CRDs' wave (if any) first.
    pub waves: Vec<Wave>,
    /// Items not restored, with the reason.
    pub skipped: Vec<(usize, String)>,
    /// Target namespaces the selected items need that the backup has no object for.
    pub bare_namespaces: Vec<String>,
    /// Selected items by owner identity, for re-pointing owner references.
    pub owners: HashMap<OwnerKey, usize>,
    /// Old PV name to its new name, or `None` when the PV is not restored (its claim
    /// provisions a new one).
    pub volume_names: BTreeMap<String, Option<String>>,
    /// What the target lacks.
    pub lacks: Vec<Lack>,
    /// Items whose object could not be read or is not a valid object, with why: errors of
    /// the restore, each on its own item.
    pub unreadable: Vec<(usize, String)>,
    /// The CRDs (by name, `<plural>.<group>`) the restore creates.
    pub crds: BTreeSet<String>,
}

impl Plan {
    /// Items the restore deals with: the selected, skipped and unreadable ones.
    pub fn total(&self) -> u64 {
        (self.waves.iter().map(|w| w.items.len()).sum::<usize>()
            + self.skipped.len()
            + self.unreadable.len()) as u64
    }
}

/// A restore spec that cannot be planned: every problem, one sentence each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct PlanRefused(pub Vec<String>);

/// Why planning stopped.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The spec cannot be planned.
    #[error(transparent)]
    Refused(#[from] PlanRefused),
    /// The repository could not be read, for now (objects that are themselves unreadable are
    /// not this: they are [`Plan::unreadable`]).
    #[error("reading the backup: {0}")]
    Repo(stowage_core::repo::RepoError),
}

/// What planning reads of each selected object.
struct Facts {
    api_group: String,
    kind: String,
    labels: BTreeMap<String, String>,
    owners: Vec<(String, String, String)>,
    /// The owner reference marked `controller`, if any: (group, kind, name).
    controller: Option<(String, String, String)>,
    /// A PVC's volume name, a PV's claim (namespace, name).
    volume: Option<String>,
    claim: Option<(String, String)>,
    storage_class: Option<String>,
    /// A PV that the cluster provisioned and deletes with its claim.
    dynamic: bool,
}

fn facts(object: &Value) -> Facts {
    let s = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let api_version = s("/apiVersion").unwrap_or_default();
    let api_group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default();
    let labels = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let owners = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| {
                    let av = r.get("apiVersion")?.as_str()?;
                    let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
                    Some((
                        group.to_string(),
                        r.get("kind")?.as_str()?.to_string(),
                        r.get("name")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let controller = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            let r = refs
                .iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
            let av = r.get("apiVersion")?.as_str()?;
            Some((
                av.rsplit_once('/').map_or("", |(g, _)| g).to_string(),
                r.get("kind")?.as_str()?.to_string(),
                r.get("name")?.as_str()?.to_string(),
            ))
        });
    let claim = match (s("/spec/claimRef/namespace"), s("/spec/claimRef/name")) {
        (Some(ns), Some(n)) => Some((ns, n)),
        _ => None,
    };
    let dynamic = object
        .pointer("/metadata/annotations/pv.kubernetes.io~1provisioned-by")
        .is_some()
        && s("/spec/persistentVolumeReclaimPolicy").as_deref() != Some("Retain");
    Facts {
        api_group,
        kind: s("/kind").unwrap_or_default(),
        labels,
        owners,
        controller,
        volume: s("/spec/volumeName").filter(|v| !v.is_empty()),
        claim,
        storage_class: s("/spec/storageClassName").filter(|v| !v.is_empty()),
        dynamic,
    }
}

/// The filter fields of a restore, as the backup filter reads them (Velero's restore uses the
/// same include/exclude rules as its backup).
fn filter_spec(spec: &RestoreSpec) -> BackupSpec {
    BackupSpec {
        included_namespaces: spec.included_namespaces.clone(),
        excluded_namespaces: spec.excluded_namespaces.clone(),
        included_resources: spec.included_resources.clone(),
        excluded_resources: spec.excluded_resources.clone(),
        include_cluster_resources: spec.include_cluster_resources,
        label_selector: spec.label_selector.clone(),
        or_label_selectors: spec.or_label_selectors.clone(),
        ..BackupSpec::default()
    }
}

/// The spec's own problems, found without reading the backup: mappings to names that are
/// not namespaces, priorities that do not parse.
pub fn check_spec(spec: &RestoreSpec) -> Vec<String> {
    let mut problems = Vec::new();
    for (from, to) in &spec.namespace_mapping {
        if !is_dns_label(to) {
            problems.push(format!(
                "namespaceMapping: {from:?} maps to {to:?}, which is not a valid namespace name \
                 (lowercase letters, digits and '-', at most 63)"
            ));
        }
    }
    let targets: Vec<&String> = spec.namespace_mapping.values().collect();
    let unique: BTreeSet<&String> = targets.iter().copied().collect();
    if unique.len() != targets.len() {
        problems.push("namespaceMapping: two namespaces map to the same target".into());
    }
    for (from, to) in &spec.storage_class_mapping {
        if to.is_empty() || to.len() > 253 {
            problems.push(format!(
                "storageClassMapping: {from:?} maps to {to:?}, which is not a storage class name"
            ));
        }
    }
    if let Some(p) = &spec.resource_priorities {
        if let Err(e) = Priorities::parse(p) {
            problems.push(format!("resourcePriorities: {e}"));
        }
    }
    if spec.backup_name.is_some() == spec.schedule_name.is_some() {
        problems.push("exactly one of backupName and scheduleName must be set".into());
    }
    problems
}

/// The target namespace of a source namespace.
pub fn target_namespace<'a>(spec: &'a RestoreSpec, ns: &'a str) -> &'a str {
    spec.namespace_mapping
        .get(ns)
        .map(String::as_str)
        .unwrap_or(ns)
}

/// Plans a restore of `items`, reading each with `read`.
pub fn plan(
    spec: &RestoreSpec,
    items: &[Item],
    target: &TargetState,
    mut read: impl FnMut(&Item) -> Result<Value, SourceError>,
) -> Result<Plan, PlanError> {
    // The catalog names are resolved against: the target's types and the backup's own.
    let mut catalog = target.catalog.clone();
    let mut backup_types: BTreeMap<&str, bool> = BTreeMap::new();
    for item in items {
        backup_types
            .entry(item.group_resource.as_str())
            .or_insert(item.namespace.is_some());
    }
    for (gr, namespaced) in &backup_types {
        if catalog.by_group_resource(gr).is_none() {
            let (resource, group) = gr.split_once('.').unwrap_or((gr, ""));
            catalog.resources.push(ApiResource {
                group: group.into(),
                resource: resource.into(),
                namespaced: *namespaced,
                ..ApiResource::default()
            });
        }
    }
    let filter = BackupFilter::new(&filter_spec(spec), &catalog).map_err(PlanRefused)?;
    let priorities = match &spec.resource_priorities {
        Some(p) => Priorities::parse(p).map_err(|e| PlanRefused(vec![e.to_string()]))?,
        None => Priorities::default(),
    };
    let resource = |gr: &str| catalog.by_group_resource(gr).cloned().unwrap_or_default();

    let mut out = Plan::default();
    // An object that cannot be read is an error of that item; the repository failing is not.
    let mut read = |i: usize, item: &Item, out: &mut Plan| -> Result<Option<Value>, PlanError> {
        match read(item) {
            Ok(o) => Ok(Some(o)),
            Err(SourceError::Repo(e)) if e.class() == ErrorClass::Transient => {
                Err(PlanError::Repo(e))
            }
            Err(e) => {
                out.unreadable.push((i, e.to_string()));
                Ok(None)
            }
        }
    };
    let mut facts_of: HashMap<usize, Facts> = HashMap::new();
    let mut selected: BTreeSet<usize> = BTreeSet::new();
    // Pass 1: namespaced objects, by the namespace, resource and label filters.
    for (i, item) in items.iter().enumerate() {
        if let Some(why) = never_restored(&item.group_resource) {
            out.skipped.push((i, why.to_string()));
            continue;
        }
        let Some(ns) = &item.namespace else { continue };
        if !filter.namespace_included(ns) || !filter.should_list(&resource(&item.group_resource)) {
            continue;
        }
        let Some(object) = read(i, item, &mut out)? else {
            continue;
        };
        let f = facts(&object);
        if !filter.matches_labels(&f.labels) {
            continue;
        }
        selected.insert(i);
        facts_of.insert(i, f);
    }
    // What the selected namespaced objects pull in: their namespaces, their claims'
    // volumes, their types' CRDs.
    let mut needed_namespaces: BTreeSet<String> = BTreeSet::new();
    let mut claimed_volumes: BTreeSet<String> = BTreeSet::new();
    let mut needed_crds: BTreeSet<String> = BTreeSet::new();
    for &i in &selected {
        let item = &items[i];
        needed_namespaces.extend(item.namespace.clone());
        if item.group_resource == PVCS {
            claimed_volumes.extend(facts_of[&i].volume.clone());
        }
        if item.group_resource.contains('.') {
            needed_crds.insert(item.group_resource.clone());
        }
    }
    // Pass 2: cluster-scoped objects, selected by the filters or related to selected ones.
    for (i, item) in items.iter().enumerate() {
        if item.namespace.is_some() || never_restored(&item.group_resource).is_some() {
            continue;
        }
        let r = resource(&item.group_resource);
        let gr = item.group_resource.as_str();
        let related = match gr {
            NAMESPACES => needed_namespaces.contains(&item.name),
            PVS => claimed_volumes.contains(&item.name),
            CRDS => needed_crds.contains(&item.name),
            _ => false,
        };
        let by_filter = if gr == NAMESPACES {
            filter.namespace_included(&item.name) && filter.should_list(&r)
        } else {
            filter.should_list(&r)
        };
        // A namespace the restore needs is made whatever the filters say (Velero does).
        let wanted = by_filter || (related && (gr == NAMESPACES || !filter.exclude_related(&r)));
        if !wanted {
            continue;
        }
        let Some(object) = read(i, item, &mut out)? else {
            continue;
        };
        let f = facts(&object);
        if by_filter && !related && gr != NAMESPACES && !filter.matches_labels(&f.labels) {
            continue;
        }
        selected.insert(i);
        facts_of.insert(i, f);
    }
    // Namespaces: mapped, made bare when the backup has no object for them.
    let restored_namespaces: BTreeSet<String> = selected
        .iter()
        .filter(|&&i| items[i].group_resource == NAMESPACES)
        .map(|&i| items[i].name.clone())
        .collect();
    let mut targets: BTreeSet<String> = BTreeSet::new();
    for ns in needed_namespaces.iter().chain(&restored_namespaces) {
        let to = target_namespace(spec, ns).to_string();
        if !restored_namespaces.contains(ns) {
            out.bare_namespaces.push(to.clone());
        }
        targets.insert(to);
    }
    for ns in &targets {
        if target.namespaces.get(ns) == Some(&true) {
            out.lacks.push(Lack {
                blocking: true,
                message: format!("namespace {ns} is being deleted"),
            });
        }
    }
    // Persistent volumes: restored as they were, cloned under a new name for a remapped
    // claim, or left for the claim to provision anew.
    let restore_pvs = spec.restore_p_vs != Some(false);
    let mut dropped = Vec::new();
    for &i in &selected {
        let item = &items[i];
        if item.group_resource != PVS {
            continue;
        }
        let f = &facts_of[&i];
        let decision = if !restore_pvs {
            Some("restorePVs is false: its claim provisions a new volume")
        } else if f.dynamic {
            Some("dynamically provisioned: its claim provisions a new volume")
        } else {
            None
        };
        match decision {
            Some(why) => {
                out.volume_names.insert(item.name.clone(), None);
                dropped.push((i, why.to_string()));
            }
            None => {
                let remapped = f
                    .claim
                    .as_ref()
                    .is_some_and(|(ns, _)| spec.namespace_mapping.contains_key(ns));
                if remapped && target.volumes.contains(&item.name) {
                    // The original is still here: a copy of the object would point a second
                    // claim at the same storage. The clone's claim gets a volume of its own.
                    out.volume_names.insert(item.name.clone(), None);
                    dropped.push((
                        i,
                        "its storage belongs to the original volume, which this cluster has: \
                         the remapped claim provisions a new one"
                            .to_string(),
                    ));
                }
            }
        }
    }
    for (i, why) in dropped {
        selected.remove(&i);
        out.skipped.push((i, why));
    }
    // Objects a controller keeps: pods whose controller (a ReplicaSet, a StatefulSet, a Job)
    // is restored make them again, and restoring them too would race it; endpoints and
    // endpoint slices are rewritten by their controllers from the live pods.
    // The owner index (by target namespace, as owner references are resolved at creation),
    // made once: for this rule and for re-pointing owner references.
    for &i in &selected {
        let item = &items[i];
        let f = &facts_of[&i];
        let ns = item
            .namespace
            .as_ref()
            .map(|n| target_namespace(spec, n).to_string());
        out.owners.insert(
            (f.api_group.clone(), f.kind.clone(), ns, item.name.clone()),
            i,
        );
    }
    let mut kept_by_controllers = Vec::new();
    for &i in &selected {
        let item = &items[i];
        let f = &facts_of[&i];
        let why = match item.group_resource.as_str() {
            "pods" => f.controller.as_ref().and_then(|(g, k, n)| {
                let ns = item
                    .namespace
                    .as_ref()
                    .map(|n| target_namespace(spec, n).to_string());
                out.owners
                    .contains_key(&(g.clone(), k.clone(), ns, n.clone()))
                    .then(|| format!("made again by its controller ({k}), which is restored"))
            }),
            "endpoints" if f.labels.contains_key("endpoints.kubernetes.io/managed-by") => {
                Some("kept by the endpoints controller, which makes it again".to_string())
            }
            "endpointslices.discovery.k8s.io"
                if f.labels
                    .contains_key("endpointslice.kubernetes.io/managed-by") =>
            {
                Some("kept by the endpoint slice controller, which makes it again".to_string())
            }
            _ => None,
        };
        if let Some(why) = why {
            kept_by_controllers.push((i, why));
        }
    }
    for (i, why) in kept_by_controllers {
        selected.remove(&i);
        out.skipped.push((i, why));
    }
    out.owners.retain(|_, i| selected.contains(i));
    // Storage classes the restored claims and volumes use must exist, or be restored.
    let restored_classes: BTreeSet<&str> = selected
        .iter()
        .filter(|&&i| items[i].group_resource == STORAGE_CLASSES)
        .map(|&i| items[i].name.as_str())
        .collect();
    let mut missing_classes: BTreeMap<String, String> = BTreeMap::new();
    for &i in &selected {
        let item = &items[i];
        if item.group_resource != PVCS && item.group_resource != PVS {
            continue;
        }
        let Some(class) = &facts_of[&i].storage_class else {
            continue;
        };
        let class = spec
            .storage_class_mapping
            .get(class)
            .unwrap_or(class)
            .clone();
        if !target.storage_classes.contains(&class) && !restored_classes.contains(class.as_str()) {
            let user = match &item.namespace {
                Some(ns) => format!("claim {ns}/{}", item.name),
                None => format!("volume {}", item.name),
            };
            missing_classes.entry(class).or_insert(user);
        }
    }
    for (class, user) in missing_classes {
        out.lacks.push(Lack {
            blocking: true,
            message: format!(
                "storage class {class} (used by {user} and maybe others); map it to one the \
                 cluster has with storageClassMapping"
            ),
        });
    }
    // Types the target does not serve and the restore does not bring (as a CRD).
    let crds_restored: BTreeSet<&str> = selected
        .iter()
        .filter(|&&i| items[i].group_resource == CRDS)
        .map(|&i| items[i].name.as_str())
        .collect();
    let mut missing_types: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in &selected {
        let gr = items[i].group_resource.as_str();
        if target.catalog.by_group_resource(gr).is_none() && !crds_restored.contains(gr) {
            *missing_types.entry(gr).or_default() += 1;
        }
    }
    out.crds = crds_restored.iter().map(|s| s.to_string()).collect();
    for (gr, n) in missing_types {
        out.lacks.push(Lack {
            blocking: true,
            message: format!(
                "the API for {gr} ({n} objects of the backup), and the backup has no CRD for it \
                 (leave them out with excludedResources)"
            ),
        });
    }
    // The order.
    let types: BTreeSet<&str> = selected
        .iter()
        .map(|&i| items[i].group_resource.as_str())
        .collect();
    let order = priorities.order(types.iter().copied());
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(r, gr)| (gr.as_str(), r))
        .collect();
    let mut keys: HashMap<usize, (usize, usize)> = HashMap::new();
    for &i in &selected {
        wave_key(
            i,
            items,
            spec,
            &facts_of,
            &out.owners,
            &rank,
            &mut keys,
            &mut Vec::new(),
        );
    }
    let mut waves: BTreeMap<((usize, usize), &str), Vec<usize>> = BTreeMap::new();
    for &i in &selected {
        waves
            .entry((keys[&i], items[i].group_resource.as_str()))
            .or_default()
            .push(i);
    }
    out.waves = waves
        .into_iter()
        .map(|((_, gr), items)| Wave {
            group_resource: gr.to_string(),
            items,
        })
        .collect();
    Ok(out)
}

/// The wave key of item `i`: its type's rank, or, when it has owners among the selected items,
/// just after the latest of them. A cycle of owners is broken where it closes.
#[allow(clippy::too_many_arguments)]
fn wave_key(
    i: usize,
    items: &[Item],
    spec: &RestoreSpec,
    facts_of: &HashMap<usize, Facts>,
    owners: &HashMap<OwnerKey, usize>,
    rank: &HashMap<&str, usize>,
    keys: &mut HashMap<usize, (usize, usize)>,
    visiting: &mut Vec<usize>,
) -> (usize, usize) {
    if let Some(k) = keys.get(&i) {
        return *k;
    }
    // A chain of owners this long is not a real application's: it is cut (the references
    // beyond are dropped at creation), so a hostile backup cannot exhaust the stack.
    if visiting.len() >= MAX_OWNER_DEPTH {
        return (
            rank.get(items[i].group_resource.as_str())
                .copied()
                .unwrap_or(0),
            0,
        );
    }
    let item = &items[i];
    let mut key = (
        rank.get(item.group_resource.as_str()).copied().unwrap_or(0),
        0,
    );
    visiting.push(i);
    for o in owner_items(i, items, spec, facts_of, owners) {
        if visiting.contains(&o) {
            continue;
        }
        let ok = wave_key(o, items, spec, facts_of, owners, rank, keys, visiting);
        key = key.max((ok.0, ok.1 + 1));
    }
    visiting.pop();
    keys.insert(i, key);
    key
}

/// The selected items that own item `i`.
fn owner_items<'a>(
    i: usize,
    items: &'a [Item],
    spec: &'a RestoreSpec,
    facts_of: &'a HashMap<usize, Facts>,
    owners: &'a HashMap<OwnerKey, usize>,
) -> impl Iterator<Item = usize> + 'a {
    let ns = items[i]
        .namespace
        .as_ref()
        .map(|n| target_namespace(spec, n).to_string());
    facts_of[&i].owners.iter().filter_map(move |(g, k, n)| {
        owners
            .get(&(g.clone(), k.clone(), ns.clone(), n.clone()))
            .or_else(|| owners.get(&(g.clone(), k.clone(), None, n.clone())))
            .copied()
            .filter(|&o| o != i)
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
