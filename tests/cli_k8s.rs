//! `stowage k8s` (and `kubectl-stowage`) run as binaries against the suite's shared cluster
//! (`STOWAGE_TEST_KUBECONFIG`; skipped with a notice without one, see
//! `stowage_testkit::cluster::shared`). No controller runs here: where a test needs a phase,
//! it writes the status itself through the status subresource, as the controller would.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use stowage_kube::api::{Backup, BackupPhase, BackupStorageLocation};
use stowage_testkit::cluster::shared::{eventually, shared_cluster, TestCluster};

const WAIT: Duration = Duration::from_secs(90);

macro_rules! cluster {
    () => {
        match shared_cluster().await {
            Some(c) => c,
            None => return,
        }
    };
}

fn stowage(kubeconfig: &Path, ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stowage"));
    cmd.arg("k8s")
        .args(args)
        .args(["-n", ns])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("STOWAGE_NAMESPACE")
        .stdin(Stdio::null());
    cmd
}

fn run(kubeconfig: &Path, ns: &str, args: &[&str]) -> Output {
    stowage(kubeconfig, ns, args)
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and expects exit 0; returns stdout.
fn ok(kubeconfig: &Path, ns: &str, args: &[&str]) -> String {
    let out = run(kubeconfig, ns, args);
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The one `stowage: error:` line of stderr (and nothing else on it).
fn one_error_line(out: &Output) -> String {
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("stowage: error: "), "{stderr:?}");
    lines[0].to_string()
}

/// Applies the CRDs through the binary and waits until Backups are served in `ns`.
async fn crds_applied(cluster: &TestCluster, ns: &str) {
    let out = ok(cluster.kubeconfig(), ns, &["crds", "--apply"]);
    for name in ["backups.stowage.dev", "backupstoragelocations.stowage.dev"] {
        assert!(
            out.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{name} "
            )),
            "{out}"
        );
    }
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    let crd = crds.get("backups.stowage.dev").await.unwrap();
    let managers: Vec<String> = crd
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"stowage".to_string()), "{managers:?}");
    let backups: Api<Backup> = Api::namespaced(cluster.client(), ns);
    let locations: Api<BackupStorageLocation> = Api::namespaced(cluster.client(), ns);
    eventually("Backups and locations served", WAIT, || async {
        backups
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        locations
            .list(&ListParams::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
}

async fn set_status(cluster: &TestCluster, ns: &str, name: &str, status: serde_json::Value) {
    let backups: Api<Backup> = Api::namespaced(cluster.client(), ns);
    backups
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn backups_and_locations_are_created_listed_described_canceled_and_deleted() {
    let cluster = cluster!();
    let kc = cluster.kubeconfig().to_path_buf();
    let ns = cluster.namespace("cli-k8s").await.unwrap();
    crds_applied(&cluster, &ns).await;

    let out = ok(
        &kc,
        &ns,
        &[
            "backup-location",
            "create",
            "primary",
            "--provider",
            "s3",
            "--bucket",
            "b1",
            "--prefix",
            "cluster-a",
            "--config",
            "region=eu-1,s3Url=http://minio:9000,s3ForcePathStyle=true",
            "--credential",
            "cloud=creds",
            "--password-secret",
            "repo=password",
            "--default",
            "--validation-frequency",
            "1m",
        ],
    );
    assert!(out.contains("\"primary\" configured successfully"), "{out}");
    let table = ok(&kc, &ns, &["backup-location", "get"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME      PROVIDER   BUCKET/PATH    PHASE"),
        "{table}"
    );
    assert!(
        table.contains("primary   s3         b1/cluster-a   Unknown"),
        "{table}"
    );
    let described = ok(&kc, &ns, &["backup-location", "describe", "primary"]);
    assert!(
        described.contains("Repository password:  secret repo key password"),
        "{described}"
    );

    let out = ok(
        &kc,
        &ns,
        &[
            "backup",
            "create",
            "nightly",
            "--include-namespaces",
            "app-*,db",
            "--exclude-namespaces",
            "app-tmp",
            "--include-namespace-scoped-resources",
            "deployments.apps,pods",
            "--exclude-cluster-scoped-resources",
            "nodes",
            "--selector",
            "app=web,tier in (front,back),!legacy",
            "--ttl",
            "72h",
            "--storage-location",
            "primary",
            "--ordered-resources",
            "pods=app-a/web-0,app-a/web-1;persistentvolumes=pv1",
            "--default-volumes-to-fs-backup",
            "--snapshot-volumes=false",
            "--labels",
            "team=a",
        ],
    );
    assert!(
        out.contains("Backup request \"nightly\" submitted successfully"),
        "{out}"
    );

    let object: serde_json::Value =
        serde_json::from_str(&ok(&kc, &ns, &["backup", "get", "nightly", "-o", "json"])).unwrap();
    assert_eq!(object["apiVersion"], "stowage.dev/v1alpha1");
    assert_eq!(object["metadata"]["labels"]["team"], "a");
    assert_eq!(
        object["spec"],
        json!({
            "includedNamespaces": ["app-*", "db"],
            "excludedNamespaces": ["app-tmp"],
            "includedNamespaceScopedResources": ["deployments.apps", "pods"],
            "excludedClusterScopedResources": ["nodes"],
            "labelSelector": {
                "matchLabels": { "app": "web" },
                "matchExpressions": [
                    { "key": "tier", "operator": "In", "values": ["front", "back"] },
                    { "key": "legacy", "operator": "DoesNotExist" },
                ],
            },
            "ttl": "72h0m0s",
            "storageLocation": "primary",
            "orderedResources": {
                "pods": "app-a/web-0,app-a/web-1",
                "persistentvolumes": "pv1",
            },
            "defaultVolumesToFsBackup": true,
            "snapshotVolumes": false,
        })
    );
    // The same through the kubectl plugin's name.
    let plugin = Command::new(env!("CARGO_BIN_EXE_kubectl-stowage"))
        .args(["backup", "get", "-o", "yaml", "-n", &ns])
        .env("KUBECONFIG", &kc)
        .output()
        .unwrap();
    assert!(plugin.status.success(), "{}", text(&plugin.stderr));
    let list: serde_json::Value = serde_yaml::from_slice(&plugin.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["spec"]["ttl"], "72h0m0s");

    let table = ok(&kc, &ns, &["backup", "get"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in [
        "NAME",
        "STATUS",
        "ERRORS",
        "WARNINGS",
        "CREATED",
        "EXPIRES",
        "STORAGE LOCATION",
        "SELECTOR",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with("nightly   New "), "{row}");
    assert!(
        row.ends_with("primary            !legacy,app=web,tier in (front,back)"),
        "{row}"
    );

    let described = ok(&kc, &ns, &["backup", "describe", "nightly"]);
    for want in [
        &format!("Namespace:    {ns}"),
        "Labels:       team=a",
        "Phase:  New",
        "  Included:  app-*, db",
        "  Excluded:  app-tmp",
        "  Included namespace-scoped:  deployments.apps, pods",
        "  Excluded cluster-scoped:    nodes",
        "Label selector:  !legacy,app=web,tier in (front,back)",
        "Storage Location:  primary",
        "Snapshot Volumes:  false",
        "File System Backup (Default):  true",
        "TTL:  72h0m0s",
        "  pods: app-a/web-0,app-a/web-1",
    ] {
        assert!(
            described.contains(want),
            "{want:?} missing from:\n{described}"
        );
    }

    let out = ok(&kc, &ns, &["backup", "cancel", "nightly"]);
    assert!(out.contains("cancel requested"), "{out}");
    let backups: Api<Backup> = Api::namespaced(cluster.client(), &ns);
    assert_eq!(
        backups.get("nightly").await.unwrap().spec.cancel,
        Some(true)
    );

    // Without --confirm and without a terminal: refused, nothing deleted.
    let refused = run(&kc, &ns, &["backup", "delete", "nightly"]);
    assert!(!refused.status.success());
    assert!(one_error_line(&refused).contains("without --confirm"));
    assert!(backups.get_opt("nightly").await.unwrap().is_some());
    let out = ok(&kc, &ns, &["backup", "delete", "nightly", "--confirm"]);
    assert!(
        out.contains("data in the repository") && out.contains("is kept"),
        "{out}"
    );
    eventually("the Backup gone", WAIT, || async {
        match backups.get_opt("nightly").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let out = ok(
        &kc,
        &ns,
        &["backup-location", "delete", "primary", "--confirm"],
    );
    assert!(out.contains("are kept"), "{out}");
    let locations: Api<BackupStorageLocation> = Api::namespaced(cluster.client(), &ns);
    assert!(locations.get_opt("primary").await.unwrap().is_none());
}

#[tokio::test]
async fn mistakes_give_one_line_and_the_right_exit_code() {
    let cluster = cluster!();
    let kc = cluster.kubeconfig().to_path_buf();
    let ns = cluster.namespace("cli-k8s-err").await.unwrap();
    crds_applied(&cluster, &ns).await;

    for args in [
        &["backup", "get", "ghost"][..],
        &["backup", "describe", "ghost"],
        &["backup", "logs", "ghost"],
        &["backup", "cancel", "ghost"],
    ] {
        let out = run(&kc, &ns, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            one_error_line(&out),
            format!("stowage: error: backup \"ghost\" not found in namespace {ns}"),
            "{args:?}"
        );
    }

    let out = run(
        &kc,
        &ns,
        &["backup", "create", "x", "--selector", "tier in (a,b"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing ')'"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&kc, &ns, &["backup", "create", "x", "--ttl", "3d"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown unit"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &kc,
        &ns,
        &[
            "backup",
            "create",
            "x",
            "--include-resources",
            "pods",
            "--exclude-cluster-scoped-resources",
            "nodes",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("cannot be combined"));
    let out = run(
        &kc,
        &ns,
        &[
            "backup-location",
            "create",
            "l",
            "--provider",
            "filesystem",
            "--password-secret",
            "p=k",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("needs --path"));

    ok(&kc, &ns, &["backup", "create", "dup"]);
    let out = run(&kc, &ns, &["backup", "create", "dup"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        one_error_line(&out),
        format!("stowage: error: backup \"dup\" already exists in namespace {ns}")
    );
    // A backup that has not run has no log yet.
    let out = run(&kc, &ns, &["backup", "logs", "dup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("still running"));

    // -o prints without creating.
    let printed = ok(
        &kc,
        &ns,
        &[
            "backup",
            "create",
            "dry",
            "-o",
            "yaml",
            "--snapshot-move-data",
        ],
    );
    assert!(printed.contains("snapshotMoveData: true"), "{printed}");
    let backups: Api<Backup> = Api::namespaced(cluster.client(), &ns);
    assert!(backups.get_opt("dry").await.unwrap().is_none());
}

#[test]
fn an_unreachable_api_server_is_one_line() {
    let dir = std::env::temp_dir().join(format!("stowage-cli-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    // Port 1 on loopback: nothing listens there.
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
    )
    .unwrap();
    let out = run(&kc, "stowage", &["backup", "get"]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&out);
    assert!(
        line.starts_with("stowage: error: cannot reach the API server at https://127.0.0.1:1: "),
        "{line}"
    );
    assert!(line.to_lowercase().contains("connection refused"), "{line}");
    let out = run(&kc, "stowage", &["backup", "get", "--context", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("nope"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn wait_follows_the_status_until_the_backup_has_finished() {
    let cluster = cluster!();
    let kc = cluster.kubeconfig().to_path_buf();
    let ns = cluster.namespace("cli-k8s-wait").await.unwrap();
    crds_applied(&cluster, &ns).await;
    let backups: Api<Backup> = Api::namespaced(cluster.client(), &ns);

    for (name, end, code) in [
        (
            "done",
            json!({ "phase": "Completed", "progress": { "totalItems": 5, "itemsBackedUp": 5 }, "snapshotId": "abc123" }),
            0,
        ),
        (
            "broken",
            json!({ "phase": "Failed", "failureReason": "the repository is unreachable" }),
            1,
        ),
    ] {
        let child = stowage(&kc, &ns, &["backup", "create", name, "--wait"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        eventually("the Backup created", WAIT, || async {
            backups
                .get(name)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await;
        set_status(
            &cluster,
            &ns,
            name,
            json!({ "phase": "InProgress", "progress": { "totalItems": 5, "itemsBackedUp": 2 } }),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        set_status(&cluster, &ns, name, end).await;
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "{stdout}{stderr}");
        assert!(stderr.contains("InProgress: items 2/5"), "{stderr}");
        match code {
            0 => assert!(
                stdout.contains("Backup \"done\" Completed: 5 of 5 items, 0 errors, 0 warnings, snapshot abc123."),
                "{stdout}"
            ),
            _ => assert!(
                stderr.contains("stowage: error: backup \"broken\" failed: the repository is unreachable; run `stowage k8s backup logs broken`"),
                "{stderr}"
            ),
        }
    }
    assert_eq!(
        backups.get("done").await.unwrap().phase(),
        BackupPhase::Completed
    );
}

#[tokio::test]
async fn logs_and_details_are_read_from_the_repository() {
    let cluster = cluster!();
    let kc = cluster.kubeconfig().to_path_buf();
    let ns = cluster.namespace("cli-k8s-repo").await.unwrap();
    crds_applied(&cluster, &ns).await;

    // A repository on this machine, seen by the CLI at the location's path.
    let dir = std::env::temp_dir().join(format!("stowage-cli-k8s-repo-{ns}"));
    let repo = dir.join("repo");
    let meta = dir.join("src/metadata");
    std::fs::create_dir_all(&meta).unwrap();
    let engine = |args: &[&str], cwd: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
            .args(args)
            .args(["-r", repo.to_str().unwrap(), "-q"])
            .env("STOWAGE_PASSWORD", "s3cret")
            .env("STOWAGE_CACHE_DIR", dir.join("cache"))
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    engine(&["init"], &dir);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "repo" },
                "stringData": { "password": "s3cret\n" },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    ok(
        &kc,
        &ns,
        &[
            "backup-location",
            "create",
            "local",
            "--provider",
            "filesystem",
            "--path",
            repo.to_str().unwrap(),
            "--password-secret",
            "repo=password",
            "--default",
        ],
    );
    ok(
        &kc,
        &ns,
        &["backup", "create", "b1", "--include-namespaces", "app"],
    );
    let backups: Api<Backup> = Api::namespaced(cluster.client(), &ns);
    let uid = backups.get("b1").await.unwrap().metadata.uid.unwrap();

    std::fs::write(
        meta.join("log.txt"),
        "2025-01-01T00:00:00Z info backing up namespace app\n",
    )
    .unwrap();
    std::fs::write(
        meta.join("resource-list.json"),
        r#"{"v1/ConfigMap":["app/settings"],"apps/v1/Deployment":["app/web"]}"#,
    )
    .unwrap();
    std::fs::write(
        meta.join("results.json"),
        r#"{"warnings":[{"kind":"Skipped","resource":"pods","namespace":"app","name":"web-0","message":"owned by a ReplicaSet"}],"errors":[]}"#,
    )
    .unwrap();
    std::fs::write(meta.join("volume-snapshots.json"), "[]").unwrap();
    engine(
        &[
            "backup",
            "--tag",
            &format!("stowage.dev/backup-uid={uid}"),
            "metadata",
        ],
        &dir.join("src"),
    );

    set_status(&cluster, &ns, "b1", json!({ "phase": "InProgress" })).await;
    let out = run(&kc, &ns, &["backup", "logs", "b1"]);
    assert!(one_error_line(&out).contains("is InProgress, still running"));
    set_status(
        &cluster,
        &ns,
        "b1",
        json!({ "phase": "Completed", "warnings": 1 }),
    )
    .await;

    let log = ok(&kc, &ns, &["backup", "logs", "b1"]);
    assert_eq!(log, "2025-01-01T00:00:00Z info backing up namespace app\n");
    let details = ok(&kc, &ns, &["backup", "describe", "b1", "--details"]);
    for want in [
        "Phase:  Completed",
        "Resource List:\n  apps/v1/Deployment:\n    - app/web\n  v1/ConfigMap:\n    - app/settings\n",
        "Warnings (1):\n  Namespaces:\n    app:\n      pods app/web-0: owned by a ReplicaSet\n",
        "Errors (0):\n  <none>",
        "Backup Volumes:\n  <none included>",
    ] {
        assert!(details.contains(want), "{want:?} missing from:\n{details}");
    }

    // Without the password Secret the repository cannot be opened: said in one line, and the
    // object's part is still printed.
    secrets.delete("repo", &Default::default()).await.unwrap();
    let details = ok(&kc, &ns, &["backup", "describe", "b1", "--details"]);
    assert!(details.contains("Phase:  Completed"), "{details}");
    assert!(
        details.contains("Details: cannot open the repository of location \"local\": secret"),
        "{details}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
