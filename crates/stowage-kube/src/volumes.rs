//! Which pod volumes a Backup copies with the node agent, and why each other one is left out.
//!
//! Velero's rules, by claim:
//! - Volumes that are objects (Secret, ConfigMap, projected, downward API) are not listed at all:
//!   the objects are in the backup. hostPath, emptyDir and generic ephemeral volumes are listed as
//!   skipped, with the reason; so are inline volumes of other kinds.
//! - For a claim's volume, the first [`VolumePolicy`] whose conditions hold decides (`skip`, or
//!   `fs-backup` whatever the annotations say). Otherwise the pod's
//!   `backup.stowage.dev/backup-volumes-excludes` annotation leaves it out, and it is copied when
//!   `defaultVolumesToFsBackup` is on or the pod's `backup.stowage.dev/backup-volumes`
//!   annotation names it.
//! - A claim is copied once, from a running pod that mounts it (the first by name), however many
//!   pods mount it; a claim no running pod mounts is skipped (its volume is mounted nowhere to
//!   be read), and so is one that is not bound.
//!
//! Pure functions: the caller lists the pods, claims, volumes and storage classes.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};

use crate::api::{
    ObjectRef, VolumeConditions, VolumeMethod, VolumeMode, VolumeOutcome, VolumePolicy,
    VolumeResult,
};

/// The pod annotation naming the volumes to copy (comma-separated), when the Backup does not
/// copy every volume by default. Velero's `backup.velero.io/backup-volumes`.
pub const OPT_IN: &str = "backup.stowage.dev/backup-volumes";
/// The pod annotation naming the volumes never to copy. Velero's
/// `backup.velero.io/backup-volumes-excludes`.
pub const OPT_OUT: &str = "backup.stowage.dev/backup-volumes-excludes";
/// Velero's own annotations, honoured too, so pods annotated for Velero need no change.
pub const VELERO_OPT_IN: &str = "backup.velero.io/backup-volumes";
/// See [`VELERO_OPT_IN`].
pub const VELERO_OPT_OUT: &str = "backup.velero.io/backup-volumes-excludes";

/// A volume to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// The node its pod runs on.
    pub node: String,
    /// The pod read.
    pub pod: ObjectRef,
    /// The volume's name in the pod.
    pub volume: String,
    /// The claim.
    pub pvc: ObjectRef,
    /// Its persistent volume.
    pub persistent_volume: String,
    /// File system or block.
    pub mode: VolumeMode,
}

/// What [`select`] decided: the volumes to copy, and a result line for every volume, the chosen
/// ones `Pending`.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// The volumes to copy, in a fixed order (namespace, claim).
    pub chosen: Vec<Chosen>,
    /// One line per claim, and per skipped inline volume, in the same order.
    pub results: Vec<VolumeResult>,
}

/// What [`select`] looks at.
pub struct Inputs<'a> {
    /// The pods the Backup selected.
    pub pods: &'a [Pod],
    /// Claims by namespace and name.
    pub claims: &'a HashMap<(String, String), PersistentVolumeClaim>,
    /// Persistent volumes by name.
    pub volumes: &'a HashMap<String, PersistentVolume>,
    /// `defaultVolumesToFsBackup`, resolved.
    pub default_to_fs_backup: bool,
    /// The Backup's volume policies.
    pub policies: &'a [VolumePolicy],
}

fn names(annotation: Option<&String>) -> Vec<String> {
    annotation
        .map(|a| {
            a.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// A quantity (`10Gi`, `500M`, `1.5G`, `1e9`, `100`) in bytes; `None` if it is not one.
pub fn parse_quantity(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let multiplier: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        s if s.starts_with(['e', 'E']) => 10u128.checked_pow(s[1..].parse().ok()?)?,
        _ => return None,
    };
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int.checked_mul(multiplier)?;
    if !frac.is_empty() {
        let digits = frac.len().min(18) as u32;
        let frac: u128 = frac[..digits as usize].parse().ok()?;
        value = value.checked_add(frac * multiplier / 10u128.pow(digits))?;
    }
    Some(value)
}

/// Whether `capacity` lies within `"MIN,MAX"` (either bound may be empty).
fn within(bounds: &str, capacity: Option<u128>) -> bool {
    let Some(capacity) = capacity else {
        return false;
    };
    let (min, max) = bounds.split_once(',').unwrap_or((bounds, ""));
    let min_ok = min.trim().is_empty() || parse_quantity(min).is_some_and(|m| capacity >= m);
    let max_ok = max.trim().is_empty() || parse_quantity(max).is_some_and(|m| capacity <= m);
    min_ok && max_ok
}

fn matches(c: &VolumeConditions, claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let spec = pv.spec.clone().unwrap_or_default();
    if let Some(bounds) = &c.capacity {
        let capacity = spec
            .capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .and_then(|q| parse_quantity(&q.0));
        if !within(bounds, capacity) {
            return false;
        }
    }
    if !c.storage_class.is_empty() {
        let class = claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .or(spec.storage_class_name.clone())
            .unwrap_or_default();
        if !c.storage_class.contains(&class) {
            return false;
        }
    }
    if let Some(csi) = &c.csi {
        if spec.csi.as_ref().map(|s| s.driver.as_str()) != Some(csi.driver.as_str()) {
            return false;
        }
    }
    let labels = claim.metadata.labels.clone().unwrap_or_default();
    c.pvc_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The refusals of a Backup's volume policies: unknown actions and unreadable capacities.
pub fn check_policies(policies: &[VolumePolicy]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        if !matches!(p.action.type_.as_str(), "skip" | "fs-backup" | "snapshot") {
            problems.push(format!(
                "volumePolicies[{i}].action.type {:?} is not skip, fs-backup or snapshot",
                p.action.type_
            ));
        }
        if let Some(bounds) = &p.conditions.capacity {
            let (min, max) = bounds.split_once(',').unwrap_or((bounds, ""));
            for b in [min, max] {
                if !b.trim().is_empty() && parse_quantity(b).is_none() {
                    problems.push(format!(
                        "volumePolicies[{i}].conditions.capacity {bounds:?}: {b:?} is not a quantity"
                    ));
                }
            }
        }
    }
    problems
}

fn skipped(ns: &str, pod: &str, volume: &str, pvc: Option<&str>, reason: String) -> VolumeResult {
    VolumeResult {
        namespace: ns.to_string(),
        pod: Some(pod.to_string()),
        volume: volume.to_string(),
        pvc: pvc.map(str::to_string),
        method: VolumeMethod::Skipped,
        outcome: VolumeOutcome::Skipped,
        reason: Some(reason),
        ..VolumeResult::default()
    }
}

/// What is decided for one claim, by the first pod (in name order) whose view decides it.
enum Decision {
    Copy,
    Skip(String),
}

/// A claim as the pods see it: the decision, the running pods that mount it (with the volume's
/// name in each), and one pod that mounts it without running.
type ClaimView<'a> = (Decision, Vec<(&'a Pod, String)>, Option<String>);

/// Decides, for every pod volume with data, whether the node agent copies it.
pub fn select(inputs: &Inputs<'_>) -> Selection {
    let mut pods: Vec<&Pod> = inputs.pods.iter().collect();
    pods.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    // By claim: the decision, and the running pods that mount it.
    let mut claims: BTreeMap<(String, String), ClaimView<'_>> = BTreeMap::new();
    let mut inline: Vec<VolumeResult> = Vec::new();
    for pod in pods {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let mut opt_in = names(annotations.get(OPT_IN));
        opt_in.extend(names(annotations.get(VELERO_OPT_IN)));
        let mut opt_out = names(annotations.get(OPT_OUT));
        opt_out.extend(names(annotations.get(VELERO_OPT_OUT)));
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
            && pod.metadata.deletion_timestamp.is_none();
        for v in pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()
        {
            let name = v.name.clone();
            if v.secret.is_some()
                || v.config_map.is_some()
                || v.projected.is_some()
                || v.downward_api.is_some()
            {
                continue;
            }
            let Some(source) = v.persistent_volume_claim else {
                let kind = if v.host_path.is_some() {
                    "a hostPath volume holds the node's files, not the application's"
                } else if v.empty_dir.is_some() {
                    "an emptyDir lives and dies with its pod; its data is not backed up"
                } else if v.ephemeral.is_some() {
                    "a generic ephemeral volume lives and dies with its pod"
                } else {
                    "only the volumes of PersistentVolumeClaims are copied"
                };
                inline.push(skipped(&ns, &pod_name, &name, None, kind.to_string()));
                continue;
            };
            let key = (ns.clone(), source.claim_name.clone());
            let entry = claims.entry(key.clone()).or_insert_with(|| {
                let decision = decide(inputs, &key, &name, &opt_in, &opt_out);
                (decision, Vec::new(), None)
            });
            if running {
                entry.1.push((pod, name.clone()));
            } else if entry.2.is_none() {
                let phase = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Pending".into());
                entry.2 = Some(format!("{pod_name} ({phase})"));
            }
        }
    }
    let mut selection = Selection::default();
    for ((ns, claim_name), (decision, mounts, idle)) in claims {
        let claim = inputs.claims.get(&(ns.clone(), claim_name.clone()));
        let mode = match claim
            .and_then(|c| c.spec.as_ref())
            .and_then(|s| s.volume_mode.as_deref())
        {
            Some("Block") => VolumeMode::Block,
            _ => VolumeMode::Filesystem,
        };
        let first_pod = mounts
            .first()
            .map(|(p, v)| (p.metadata.name.clone().unwrap_or_default(), v.clone()));
        let mut result = VolumeResult {
            namespace: ns.clone(),
            pod: first_pod.as_ref().map(|(p, _)| p.clone()),
            volume: first_pod
                .as_ref()
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            pvc: Some(claim_name.clone()),
            volume_mode: mode,
            ..VolumeResult::default()
        };
        let reason = match (&decision, mounts.first()) {
            (Decision::Skip(why), _) => Some(why.clone()),
            (Decision::Copy, None) => Some(format!(
                "no running pod mounts the claim{}, so its volume is mounted on no node to be read",
                idle.map(|p| format!(" (pod {p})")).unwrap_or_default()
            )),
            (Decision::Copy, Some(_)) => None,
        };
        if let Some(reason) = reason {
            result.method = VolumeMethod::Skipped;
            result.outcome = VolumeOutcome::Skipped;
            result.reason = Some(reason);
            selection.results.push(result);
            continue;
        }
        let (pod, volume) = mounts[0].clone();
        let claim = claim.expect("a claim decided Copy exists");
        let pv = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        result.volume = volume.clone();
        result.method = VolumeMethod::FileSystem;
        result.outcome = VolumeOutcome::Pending;
        selection.results.push(result);
        selection.chosen.push(Chosen {
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            pod: ObjectRef {
                namespace: ns.clone(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
            },
            volume,
            pvc: ObjectRef {
                namespace: ns,
                name: claim_name,
                uid: claim.metadata.uid.clone().unwrap_or_default(),
            },
            persistent_volume: pv,
            mode,
        });
    }
    selection.results.extend(inline);
    selection
}

/// The decision for one claim, as the first pod mounting it sees it.
fn decide(
    inputs: &Inputs<'_>,
    key: &(String, String),
    volume: &str,
    opt_in: &[String],
    opt_out: &[String],
) -> Decision {
    let Some(claim) = inputs.claims.get(key) else {
        return Decision::Skip("the claim does not exist".into());
    };
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let pv = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_ref())
        .and_then(|n| inputs.volumes.get(n));
    let Some(pv) = pv.filter(|_| bound) else {
        return Decision::Skip("the claim is not bound to a volume".into());
    };
    for (i, policy) in inputs.policies.iter().enumerate() {
        if matches(&policy.conditions, claim, pv) {
            return match policy.action.type_.as_str() {
                "fs-backup" => Decision::Copy,
                "snapshot" => Decision::Skip(format!(
                    "volume policy {i} asks for a CSI snapshot, which this version does not take"
                )),
                _ => Decision::Skip(format!("volume policy {i} skips it")),
            };
        }
    }
    if opt_out.iter().any(|v| v == volume) {
        return Decision::Skip(format!("the pod's {OPT_OUT} annotation names it"));
    }
    if inputs.default_to_fs_backup || opt_in.iter().any(|v| v == volume) {
        Decision::Copy
    } else {
        Decision::Skip(format!(
            "not opted in: name it in the pod's {OPT_IN} annotation, or set \
             defaultVolumesToFsBackup"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(
        name: &str,
        node: &str,
        phase: &str,
        volumes: serde_json::Value,
        ann: serde_json::Value,
    ) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": "app", "name": name, "uid": format!("uid-{name}"), "annotations": ann},
            "spec": {"nodeName": node, "containers": [], "volumes": volumes},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn claim(name: &str, pv: &str, mode: &str, labels: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"namespace": "app", "name": name, "uid": format!("uid-{name}"), "labels": labels},
            "spec": {"volumeName": pv, "volumeMode": mode, "storageClassName": "fast"},
            "status": {"phase": "Bound"}
        }))
        .unwrap()
    }

    fn pv(name: &str, size: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "csi": {"driver": "d.example", "volumeHandle": name}}
        }))
        .unwrap()
    }

    struct World {
        claims: HashMap<(String, String), PersistentVolumeClaim>,
        volumes: HashMap<String, PersistentVolume>,
    }

    fn world() -> World {
        let mut claims = HashMap::new();
        let mut volumes = HashMap::new();
        for (c, p, mode, size) in [
            ("data", "pv-data", "Filesystem", "10Gi"),
            ("raw", "pv-raw", "Block", "1Gi"),
            ("big", "pv-big", "Filesystem", "1Ti"),
        ] {
            claims.insert(
                ("app".into(), c.into()),
                claim(c, p, mode, json!({"tier": c})),
            );
            volumes.insert(p.into(), pv(p, size));
        }
        World { claims, volumes }
    }

    fn run(pods: &[Pod], default: bool, policies: &[VolumePolicy]) -> Selection {
        let w = world();
        select(&Inputs {
            pods,
            claims: &w.claims,
            volumes: &w.volumes,
            default_to_fs_backup: default,
            policies,
        })
    }

    fn claim_vol(name: &str, claim: &str) -> serde_json::Value {
        json!({"name": name, "persistentVolumeClaim": {"claimName": claim}})
    }

    #[test]
    fn by_default_only_opted_in_volumes_are_copied() {
        let pods = [pod(
            "web-0",
            "node-0",
            "Running",
            json!([claim_vol("a", "data"), claim_vol("b", "raw"),
                   {"name": "token", "projected": {"sources": []}},
                   {"name": "cfg", "configMap": {"name": "c"}},
                   {"name": "tmp", "emptyDir": {}}, {"name": "host", "hostPath": {"path": "/x"}}]),
            json!({OPT_IN: "b"}),
        )];
        let s = run(&pods, false, &[]);
        assert_eq!(s.chosen.len(), 1);
        let c = &s.chosen[0];
        assert_eq!(
            (c.pvc.name.as_str(), c.mode, c.node.as_str()),
            ("raw", VolumeMode::Block, "node-0")
        );
        assert_eq!(c.persistent_volume, "pv-raw");
        assert_eq!(c.pod.uid, "uid-web-0");
        // Every volume with data has a line; the object volumes have none.
        let lines: Vec<(&str, VolumeOutcome)> = s
            .results
            .iter()
            .map(|r| (r.volume.as_str(), r.outcome))
            .collect();
        assert_eq!(
            lines,
            [
                ("a", VolumeOutcome::Skipped),
                ("b", VolumeOutcome::Pending),
                ("tmp", VolumeOutcome::Skipped),
                ("host", VolumeOutcome::Skipped)
            ]
        );
        assert!(s.results[0]
            .reason
            .as_ref()
            .unwrap()
            .contains("not opted in"));
        assert!(s.results[3].reason.as_ref().unwrap().contains("hostPath"));
    }

    #[test]
    fn velero_annotations_count_too() {
        let pods = [pod(
            "p",
            "node-0",
            "Running",
            json!([claim_vol("a", "data"), claim_vol("b", "raw")]),
            json!({VELERO_OPT_IN: "a,b", VELERO_OPT_OUT: "b"}),
        )];
        let s = run(&pods, false, &[]);
        assert_eq!(
            s.chosen
                .iter()
                .map(|c| c.pvc.name.as_str())
                .collect::<Vec<_>>(),
            ["data"]
        );
    }

    #[test]
    fn default_fs_backup_copies_all_but_the_excluded() {
        let pods = [pod(
            "p",
            "node-1",
            "Running",
            json!([claim_vol("a", "data"), claim_vol("b", "raw")]),
            json!({OPT_OUT: " b , x"}),
        )];
        let s = run(&pods, true, &[]);
        assert_eq!(
            s.chosen
                .iter()
                .map(|c| c.pvc.name.as_str())
                .collect::<Vec<_>>(),
            ["data"]
        );
        assert!(s.results[1].reason.as_ref().unwrap().contains(OPT_OUT));
    }

    #[test]
    fn a_shared_claim_is_copied_once_from_a_running_pod() {
        let pods = [
            pod(
                "a-pending",
                "",
                "Pending",
                json!([claim_vol("v", "data")]),
                json!({}),
            ),
            pod(
                "b-run",
                "node-1",
                "Running",
                json!([claim_vol("v", "data")]),
                json!({}),
            ),
            pod(
                "c-run",
                "node-0",
                "Running",
                json!([claim_vol("w", "data")]),
                json!({}),
            ),
        ];
        let s = run(&pods, true, &[]);
        assert_eq!(s.chosen.len(), 1);
        assert_eq!(s.chosen[0].pod.name, "b-run");
        assert_eq!(s.results.len(), 1);
        // No running pod: skipped with the reason.
        let s = run(&pods[..1], true, &[]);
        assert!(s.chosen.is_empty());
        assert!(
            s.results[0]
                .reason
                .as_ref()
                .unwrap()
                .contains("a-pending (Pending)"),
            "{:?}",
            s.results
        );
    }

    #[test]
    fn policies_decide_before_annotations() {
        let policies: Vec<VolumePolicy> = serde_yaml::from_str(
            r#"
- conditions: {capacity: "100Gi,"}
  action: {type: skip}
- conditions: {pvcLabels: {tier: raw}, csi: {driver: d.example}}
  action: {type: fs-backup}
- conditions: {storageClass: [fast]}
  action: {type: snapshot}
"#,
        )
        .unwrap();
        assert!(check_policies(&policies).is_empty());
        let pods = [pod(
            "p",
            "node-0",
            "Running",
            json!([
                claim_vol("a", "data"),
                claim_vol("b", "raw"),
                claim_vol("c", "big")
            ]),
            json!({OPT_IN: "a,c"}),
        )];
        let s = run(&pods, false, &policies);
        assert_eq!(
            s.chosen
                .iter()
                .map(|c| c.pvc.name.as_str())
                .collect::<Vec<_>>(),
            ["raw"]
        );
        let reason = |claim: &str| {
            s.results
                .iter()
                .find(|r| r.pvc.as_deref() == Some(claim))
                .unwrap()
                .reason
                .clone()
                .unwrap_or_default()
        };
        assert!(reason("big").contains("policy 0 skips"));
        assert!(reason("data").contains("CSI snapshot"));
    }

    #[test]
    fn missing_and_unbound_claims_are_skipped_with_the_reason() {
        let pods = [pod(
            "p",
            "node-0",
            "Running",
            json!([claim_vol("x", "nope")]),
            json!({}),
        )];
        let s = run(&pods, true, &[]);
        assert!(s.chosen.is_empty());
        assert_eq!(
            s.results[0].reason.as_deref(),
            Some("the claim does not exist")
        );
    }

    #[test]
    fn quantities_and_bounds() {
        assert_eq!(parse_quantity("10Gi"), Some(10 << 30));
        assert_eq!(parse_quantity("1.5G"), Some(1_500_000_000));
        assert_eq!(parse_quantity("100"), Some(100));
        assert_eq!(parse_quantity("1e3"), Some(1000));
        assert_eq!(parse_quantity("5Qi"), None);
        assert_eq!(parse_quantity(""), None);
        assert!(within("0,10Gi", Some(10 << 30)));
        assert!(!within("0,10Gi", Some((10 << 30) + 1)));
        assert!(within("1Gi,", Some(1 << 40)));
        assert!(!within("1Gi,", None));
        let bad: Vec<VolumePolicy> =
            serde_yaml::from_str("[{conditions: {capacity: 'x,'}, action: {type: copy}}]").unwrap();
        assert_eq!(check_policies(&bad).len(), 2);
    }
}
