//! The test vector of the Kubernetes backup layout (`repo-format/README.md`, section 18): a
//! repository holding one backup of a small made-up cluster, and the manifest of every file of
//! its snapshot. Written once by the ignored test `create_k8s_vector` (only when missing) and
//! committed as fixed bytes; checked on every run.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stowage_core::backend::local::LocalBackend;
use stowage_core::backup::{
    self, BackupOptions, BackupSource, Document, DocumentEvent, ParentChoice,
};
use stowage_core::progress::Control;
use stowage_core::repo::session::{BackupWork, IndexSource, Locked, ReadWork};
use stowage_core::repo::{InitOptions, Repository};
use stowage_kube::collect::object_time;
use stowage_kube::layout::{self, files};

const PASSWORD: &str = "correct horse battery staple";
const UID: &str = "5f0c3a1e-8d2b-4c6f-9a7e-000000000001";
const NAMESPACE: &str = "stowage";
const NAME: &str = "vector-backup";

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../repo-format/vectors")
}

/// The objects of the made-up cluster: (group-resource, namespace, object).
fn objects() -> Vec<(&'static str, Option<&'static str>, Value)> {
    let meta = |ns: Option<&str>, name: &str| {
        let mut m = json!({
            "name": name,
            "uid": format!("00000000-0000-0000-0000-{:012}", name.len()),
            "resourceVersion": "42",
            "creationTimestamp": "2026-05-06T07:08:09Z",
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "time": "2026-05-07T00:00:00Z"}],
        });
        if let Some(ns) = ns {
            m["namespace"] = json!(ns);
        }
        m
    };
    vec![
        (
            "namespaces",
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(None, "web"), "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        ),
        (
            "configmaps",
            Some("web"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(Some("web"), "settings"), "data": {"mode": "production", "émoji": "✓"}}),
        ),
        (
            "secrets",
            Some("web"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(Some("web"), "db-password"), "type": "Opaque", "data": {"password": "aHVudGVyMg=="}}),
        ),
        (
            "deployments.apps",
            Some("web"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(Some("web"), "api"), "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}}, "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "example/api:1"}]}}}, "status": {"readyReplicas": 2}}),
        ),
        (
            "persistentvolumeclaims",
            Some("web"),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(Some("web"), "data"), "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-data"}, "status": {"phase": "Bound"}}),
        ),
        (
            "persistentvolumes",
            None,
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta(None, "pv-data"), "spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}, "claimRef": {"namespace": "web", "name": "data"}}, "status": {"phase": "Bound"}}),
        ),
        (
            "customresourcedefinitions.apiextensions.k8s.io",
            None,
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": meta(None, "widgets.example.com"), "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"}, "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true}]}}),
        ),
        (
            "widgets.example.com",
            Some("web"),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta(Some("web"), "blue"), "spec": {"size": 3}}),
        ),
    ]
}

/// Every file of the snapshot and its bytes, built with the collector's own functions.
fn expected_files() -> BTreeMap<String, Vec<u8>> {
    let mut files_map = BTreeMap::new();
    let mut resource_list: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (gr, ns, obj) in objects() {
        let name = obj["metadata"]["name"].as_str().unwrap();
        files_map.insert(
            layout::object_path(gr, ns, name),
            layout::encode_object(&obj),
        );
        let key = format!(
            "{}/{}",
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap()
        );
        resource_list
            .entry(key)
            .or_default()
            .push(ns.map_or(name.to_string(), |ns| format!("{ns}/{name}")));
    }
    let backup = json!({
        "apiVersion": "stowage.dev/v1alpha1",
        "kind": "Backup",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": UID},
        "spec": {"includedNamespaces": ["web"]},
        "status": {"phase": "Completed", "formatVersion": "1", "progress": {"totalItems": 8, "itemsBackedUp": 8}},
    });
    files_map.insert(files::VERSION.into(), b"1\n".to_vec());
    files_map.insert(files::BACKUP.into(), layout::encode_record(&backup));
    files_map.insert(
        files::RESOURCE_LIST.into(),
        layout::encode_record(&resource_list),
    );
    files_map.insert(
        files::RESULTS.into(),
        layout::encode_record(&json!({"warnings": [], "errors": []})),
    );
    files_map.insert(files::VOLUME_SNAPSHOTS.into(), b"[]".to_vec());
    files_map.insert(
        files::LOG.into(),
        b"2026-05-07T00:00:01.000Z info backup stowage/vector-backup (attempt 1) into location default\n".to_vec(),
    );
    files_map
}

fn open_vector() -> Arc<Repository> {
    let backend = Arc::new(LocalBackend::new(vector_dir().join("k8s")));
    Arc::new(Repository::open(backend, PASSWORD.as_bytes()).expect("the vector repository opens"))
}

#[test]
fn k8s_vector_matches_manifest_and_the_collectors_encoding() {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(vector_dir().join("k8s.json")).expect("repo-format/vectors/k8s.json"),
    )
    .unwrap();
    let repo = open_vector();
    let (_, snap) = layout::find_snapshot(&repo, UID)
        .unwrap()
        .expect("the snapshot is found by its UID tag");
    assert_eq!(snap.paths, vec![layout::label(NAMESPACE, NAME)]);
    assert_eq!(snap.paths[0], manifest["paths"][0].as_str().unwrap());
    assert_eq!(
        snap.tags,
        vec![
            format!("{}{NAME}", layout::TAG_NAME),
            format!("{}{UID}", layout::TAG_UID)
        ]
    );
    assert_eq!(snap.hostname, "vector-cluster");

    // Every file in the snapshot, and no other.
    // Read without a lock: the vectors are committed bytes, and a lock file would change them.
    let session = Locked::<ReadWork>::without_lock(&repo)
        .load_index(&IndexSource::Memory, &())
        .unwrap();
    let mut listed = Vec::new();
    stowage_core::inspect::list::<stowage_core::repo::RepoError>(
        session.indexed(),
        &snap.tree,
        b"",
        |path, node| {
            if node.kind == stowage_core::repo::tree::NodeKind::File {
                listed.push(String::from_utf8(path.to_vec()).unwrap());
            }
            Ok(())
        },
    )
    .unwrap();
    listed.sort();
    let in_manifest: BTreeMap<String, String> =
        serde_json::from_value(manifest["files"].clone()).unwrap();
    let expected = expected_files();
    assert_eq!(listed, in_manifest.keys().cloned().collect::<Vec<_>>());
    assert_eq!(listed, expected.keys().cloned().collect::<Vec<_>>());
    for (path, text) in &in_manifest {
        let stored = layout::read_file(&session, &snap, path).unwrap();
        assert_eq!(
            String::from_utf8(stored).unwrap(),
            *text,
            "{path} in the repository"
        );
        assert_eq!(
            String::from_utf8(expected[path].clone()).unwrap(),
            *text,
            "{path}: the collector's encoding changed; the layout version must change with it"
        );
    }
    // Objects are compact JSON with sorted members.
    let cm = &in_manifest["resources/configmaps/namespaces/web/settings.json"];
    assert!(cm.starts_with("{\"apiVersion\":\"v1\",\"data\":{"), "{cm}");
}

/// Writes `vectors/k8s/` and `vectors/k8s.json` when they are missing.
#[test]
#[ignore]
fn create_k8s_vector() {
    let dir = vector_dir().join("k8s");
    if dir.exists() {
        eprintln!("{} exists; not rewritten", dir.display());
        return;
    }
    let backend = Arc::new(LocalBackend::new(&dir));
    let opts = InitOptions {
        kdf_memory_kib: 64,
        kdf_iterations: 1,
        ..InitOptions::default()
    };
    let repo = Arc::new(Repository::init(backend, PASSWORD.as_bytes(), &opts).unwrap());
    let session = repo
        .lock::<BackupWork>()
        .unwrap()
        .load_index(&IndexSource::Memory, &())
        .unwrap();
    let files_map = expected_files();
    let times: BTreeMap<String, Option<std::time::SystemTime>> = objects()
        .into_iter()
        .map(|(gr, ns, obj)| {
            let name = obj["metadata"]["name"].as_str().unwrap().to_string();
            (layout::object_path(gr, ns, &name), object_time(&obj))
        })
        .collect();
    let mut events = files_map.clone().into_iter().map(|(path, data)| {
        let mtime = times.get(&path).copied().flatten();
        Ok(DocumentEvent::Document(Document {
            mtime,
            ..Document::new(path, data)
        }))
    });
    backup::run(
        &session,
        BackupSource::DocumentStream {
            label: layout::label(NAMESPACE, NAME),
            events: &mut events,
        },
        &BackupOptions {
            tags: vec![
                format!("{}{NAME}", layout::TAG_NAME),
                format!("{}{UID}", layout::TAG_UID),
            ],
            hostname: Some("vector-cluster".into()),
            parent: ParentChoice::None,
            ..BackupOptions::default()
        },
        &Control::new(),
    )
    .unwrap();
    let manifest = json!({
        "password": PASSWORD,
        "uid": UID,
        "paths": [layout::label(NAMESPACE, NAME)],
        "files": files_map.iter().map(|(p, d)| (p.clone(), String::from_utf8(d.clone()).unwrap())).collect::<BTreeMap<_, _>>(),
    });
    std::fs::write(
        vector_dir().join("k8s.json"),
        layout::encode_record(&manifest),
    )
    .unwrap();
}
