//! What the Kubernetes tests share: a controller namespace with the CRDs, the controller's
//! ServiceAccount bound to the ClusterRole in `deploy/rbac/controller.yaml` (the tests run the
//! real `stowage controller` with that identity, never as cluster-admin), a password Secret, a
//! filesystem storage location in a temporary directory, and helpers to run backups and read
//! what they stored.

#![allow(dead_code)]

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use stowage_core::backend::local::LocalBackend;
use stowage_core::repo::session::{IndexSource, ReadWork};
use stowage_core::repo::Repository;
use stowage_kube::api::{Backup, BackupPhase, BackupStorageLocation};
use stowage_kube::layout;
use stowage_testkit::cluster::shared::{eventually, shared_cluster, TestCluster};

pub const PASSWORD: &str = "k8s test password";
pub const WAIT: Duration = Duration::from_secs(180);

/// The controller process; killed when dropped.
pub struct Controller {
    child: Child,
    pub log: PathBuf,
}

impl Controller {
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("controller log ({}) ends with:", self.log.display());
            for l in tail.into_iter().rev() {
                eprintln!("  {l}");
            }
        }
    }
}

/// One test's controller namespace and storage location.
pub struct Setup {
    pub cluster: TestCluster,
    pub namespace: String,
    pub dir: tempfile::TempDir,
    /// The default location's repository directory.
    pub repo: PathBuf,
    pub kubeconfig: PathBuf,
    starts: u32,
}

async fn apply<K>(api: &Api<K>, name: &str, obj: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply("stowage-tests").force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

impl Setup {
    /// `None` (the test skips, with a notice) when there is no test cluster outside CI.
    pub async fn new() -> Option<Setup> {
        let cluster = shared_cluster().await?;
        Some(Setup::on(cluster, None, &json!({})).await)
    }

    /// The same on `cluster`, with the default location in `repo` (a new directory when
    /// `None`) and `extra` merged into the location's spec (`accessMode`, `backupSyncPeriod`).
    pub async fn on(cluster: TestCluster, repo: Option<PathBuf>, extra: &Value) -> Setup {
        let client = cluster.client();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in stowage_kube::crds::crds() {
            let name = crd.metadata.name.clone().unwrap();
            apply(&crds, &name, &crd).await;
            wait_established(&client, &name).await;
        }
        let role: ClusterRole =
            serde_yaml::from_str(include_str!("../../deploy/rbac/controller.yaml")).unwrap();
        apply(&Api::all(client.clone()), "stowage-controller", &role).await;
        let namespace = cluster.namespace("stowage").await.unwrap();
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "controller"}})).unwrap();
        accounts.create(&PostParams::default(), &sa).await.unwrap();
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("stowage-controller-{namespace}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "stowage-controller"},
            "subjects": [{"kind": "ServiceAccount", "name": "controller", "namespace": namespace}],
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
        let kubeconfig = cluster
            .service_account_kubeconfig(&namespace, "controller")
            .await
            .unwrap();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "repo-password"},
            "stringData": {"password": PASSWORD},
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let repo = repo.unwrap_or_else(|| {
            let path = dir.path().join("repo");
            std::fs::create_dir(&path).unwrap();
            path
        });
        let mut spec = json!({
            "provider": "filesystem",
            "filesystem": {"path": repo.to_str().unwrap()},
            "repositoryPassword": {"name": "repo-password", "key": "password"},
            "default": true,
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        let bsl: BackupStorageLocation = serde_json::from_value(json!({
            "apiVersion": "stowage.dev/v1alpha1", "kind": "BackupStorageLocation",
            "metadata": {"name": "default"},
            "spec": spec,
        }))
        .unwrap();
        Api::<BackupStorageLocation>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &bsl)
            .await
            .unwrap();
        Setup {
            cluster,
            namespace,
            dir,
            repo,
            kubeconfig,
            starts: 0,
        }
    }

    pub fn client(&self) -> kube::Client {
        self.cluster.client()
    }

    /// Starts `stowage controller` with the controller's identity.
    pub fn start_controller(&mut self, extra: &[&str]) -> Controller {
        self.starts += 1;
        let log = self
            .dir
            .path()
            .join(format!("controller-{}.log", self.starts));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_stowage"))
            .arg("controller")
            .args(["--namespace", &self.namespace])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--work-dir")
            .arg(self.dir.path().join("work"))
            .args(extra)
            .env("STOWAGE_LOG", "stowage=debug,stowage_kube=debug")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        Controller { child, log }
    }

    pub fn backups(&self) -> Api<Backup> {
        Api::namespaced(self.client(), &self.namespace)
    }

    /// Creates a Backup with `spec`.
    pub async fn create_backup(&self, name: &str, spec: Value) -> Backup {
        let b: Backup = serde_json::from_value(json!({
            "apiVersion": "stowage.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        self.backups()
            .create(&PostParams::default(), &b)
            .await
            .unwrap()
    }

    /// Waits until the Backup's phase is terminal; returns it.
    pub async fn wait_backup(&self, name: &str) -> Backup {
        let api = self.backups();
        eventually(&format!("backup {name} to end"), WAIT, || {
            let api = api.clone();
            let name = name.to_string();
            async move {
                let b = api.get(&name).await.map_err(|e| e.to_string())?;
                match b.phase() {
                    p if p.is_terminal() => Ok(b),
                    p => Err(format!("phase {p}, status {:?}", b.status)),
                }
            }
        })
        .await
    }

    /// Creates a Backup and waits for its end.
    pub async fn backup(&self, name: &str, spec: Value) -> Backup {
        self.create_backup(name, spec).await;
        self.wait_backup(name).await
    }

    pub fn repo(&self) -> Arc<Repository> {
        let backend = Arc::new(LocalBackend::new(self.repo.clone()));
        Arc::new(Repository::open(backend, PASSWORD.as_bytes()).unwrap())
    }

    pub fn repo_path(&self) -> PathBuf {
        self.repo.clone()
    }

    /// Every file of a backup's snapshot and its bytes.
    pub fn files(&self, backup: &Backup) -> BTreeMap<String, Vec<u8>> {
        files_of(&self.repo(), backup)
    }
}

/// Asserts a Backup ended Completed, with its status for the message.
pub fn assert_completed(b: &Backup) {
    assert_eq!(
        b.phase(),
        BackupPhase::Completed,
        "{} status: {:#?}",
        b.metadata.name.as_deref().unwrap_or(""),
        b.status
    );
}

pub fn files_of(repo: &Arc<Repository>, backup: &Backup) -> BTreeMap<String, Vec<u8>> {
    let uid = backup.metadata.uid.clone().unwrap();
    let (_, snap) = layout::find_snapshot(repo, &uid)
        .unwrap()
        .expect("the backup's snapshot");
    let session = repo
        .lock::<ReadWork>()
        .unwrap()
        .load_index(&IndexSource::Memory, &())
        .unwrap();
    let mut out = BTreeMap::new();
    let mut paths = Vec::new();
    stowage_core::inspect::list::<stowage_core::repo::RepoError>(
        session.indexed(),
        &snap.tree,
        b"",
        |p, node| {
            if node.kind == stowage_core::repo::tree::NodeKind::File {
                paths.push(String::from_utf8(p.to_vec()).unwrap());
            }
            Ok(())
        },
    )
    .unwrap();
    for p in paths {
        let data = layout::read_file(&session, &snap, &p).unwrap();
        out.insert(p, data);
    }
    out
}

/// The object files of a backup, as `group-resource namespace/name` (or `group-resource name`).
pub fn object_keys(files: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    files
        .keys()
        .filter_map(|p| {
            let rest = p.strip_prefix("resources/")?;
            let (gr, rest) = rest.split_once('/')?;
            let key = match rest.strip_prefix("namespaces/") {
                Some(r) => {
                    let (ns, file) = r.split_once('/')?;
                    format!("{gr} {ns}/{}", file.strip_suffix(".json")?)
                }
                None => format!(
                    "{gr} {}",
                    rest.strip_prefix("cluster/")?.strip_suffix(".json")?
                ),
            };
            Some(key)
        })
        .collect()
}

/// Creates objects from JSON manifests (any kind the discovery knows).
pub async fn create_all(client: &kube::Client, manifests: &[Value]) {
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    for m in manifests {
        let gvk = kube::api::GroupVersionKind::try_from(&kube::api::TypeMeta {
            api_version: m["apiVersion"].as_str().unwrap().into(),
            kind: m["kind"].as_str().unwrap().into(),
        })
        .unwrap();
        let (ar, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("no resource for {gvk:?}"));
        let obj: DynamicObject = serde_json::from_value(m.clone()).unwrap();
        let api: Api<DynamicObject> = match (caps.scope, m["metadata"]["namespace"].as_str()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(client.clone(), ns, &ar)
            }
            _ => Api::all_with(client.clone(), &ar),
        };
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("creating {}: {e}", m["metadata"]["name"]));
    }
}

/// Waits until the CRD named `name` is Established.
pub async fn wait_established(client: &kube::Client, name: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    eventually(&format!("CRD {name} Established"), WAIT, || {
        let crds = crds.clone();
        let name = name.to_string();
        async move {
            let c = crds.get(&name).await.map_err(|e| e.to_string())?;
            let conditions = c.status.and_then(|s| s.conditions).unwrap_or_default();
            match conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                true => Ok(()),
                false => Err("not Established".into()),
            }
        }
    })
    .await;
}

/// `stowage check --read-data` of the test's repository must pass.
pub fn check_repository(s: &Setup) {
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["check", "--read-data", "--no-cache", "-r"])
        .arg(s.repo_path())
        .env("STOWAGE_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[allow(unused_imports)]
pub use stowage_testkit::provisioner::{stand_in_provisioner, STAND_IN_CLASS};
