//! BackupStorageLocations validated by the real controller: each cause of trouble gives
//! `Unavailable` with that cause in `status.message` (never a crash loop), a fixed cause is
//! picked up on the next validation, and an S3 location with its credentials from a Secret
//! (against the suite's S3 server, `STOWAGE_TEST_S3_ENDPOINT`) takes a backup end to end.

mod k8s;

use k8s::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::process::Command;
use stowage_kube::api::{BackupStorageLocation, LocationPhase};
use stowage_testkit::cluster::shared::eventually;

macro_rules! setup {
    () => {
        match Setup::new().await {
            Some(s) => s,
            None => return,
        }
    };
}

async fn create_location(s: &Setup, name: &str, spec: Value) {
    let bsl: BackupStorageLocation = serde_json::from_value(json!({
        "apiVersion": "stowage.dev/v1alpha1", "kind": "BackupStorageLocation",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    Api::<BackupStorageLocation>::namespaced(s.client(), &s.namespace)
        .create(&PostParams::default(), &bsl)
        .await
        .unwrap();
}

/// Waits until the location's phase is `phase` and its message contains `needle`.
async fn wait_location(s: &Setup, name: &str, phase: LocationPhase, needle: &str) -> String {
    let api: Api<BackupStorageLocation> = Api::namespaced(s.client(), &s.namespace);
    eventually(
        &format!("location {name} {phase:?} with {needle:?}"),
        WAIT,
        || {
            let api = api.clone();
            let name = name.to_string();
            let needle = needle.to_string();
            async move {
                let b = api.get(&name).await.map_err(|e| e.to_string())?;
                let st = b.status.clone().unwrap_or_default();
                let msg = st.message.clone().unwrap_or_default();
                if st.phase == Some(phase)
                    && msg.contains(&needle)
                    && st.last_validation_time.is_some()
                {
                    Ok(msg)
                } else {
                    Err(format!("{:?}: {msg}", st.phase))
                }
            }
        },
    )
    .await
}

async fn secret(s: &Setup, name: &str, data: Value) {
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
    Api::<Secret>::namespaced(s.client(), &s.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn stowage_init(repo: &str, password: &str, extra_env: &[(&str, &str)]) {
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args([
            "init",
            "--kdf-memory",
            "64",
            "--kdf-iterations",
            "1",
            "-r",
            repo,
        ])
        .env("STOWAGE_PASSWORD", password)
        .envs(extra_env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cause_is_named_and_a_fixed_one_recovers() {
    let mut s = setup!();
    let _controller = s.start_controller(&[]);
    let password = json!({"name": "repo-password", "key": "password"});

    // A repository made with another password.
    let other = s.dir.path().join("other");
    stowage_init(other.to_str().unwrap(), "not the password", &[]);
    create_location(
        &s,
        "wrong-password",
        json!({"provider": "filesystem", "filesystem": {"path": other},
        "repositoryPassword": password, "validationFrequency": "1s"}),
    )
    .await;
    wait_location(
        &s,
        "wrong-password",
        LocationPhase::Unavailable,
        "password is wrong",
    )
    .await;

    // A Secret that is not there.
    create_location(
        &s,
        "no-secret",
        json!({"provider": "filesystem", "filesystem": {"path": s.repo_path()},
        "repositoryPassword": {"name": "nope", "key": "password"}}),
    )
    .await;
    let msg = wait_location(&s, "no-secret", LocationPhase::Unavailable, "nope").await;
    assert!(msg.contains("not found"), "{msg}");

    // A directory that does not exist; a read-only location with no repository.
    create_location(
        &s,
        "no-dir",
        json!({"provider": "filesystem", "filesystem": {"path": "/nonexistent/stowage"},
        "repositoryPassword": password}),
    )
    .await;
    wait_location(
        &s,
        "no-dir",
        LocationPhase::Unavailable,
        "/nonexistent/stowage",
    )
    .await;
    let empty = s.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    create_location(
        &s,
        "read-only-empty",
        json!({"provider": "filesystem", "filesystem": {"path": empty},
        "repositoryPassword": password, "accessMode": "ReadOnly"}),
    )
    .await;
    wait_location(
        &s,
        "read-only-empty",
        LocationPhase::Unavailable,
        "ReadOnly location does not create one",
    )
    .await;
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "a read-only location wrote"
    );

    // An unreachable S3 endpoint.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    secret(
        &s,
        "s3-keys",
        json!({"cloud": "[default]\naws_access_key_id = test\naws_secret_access_key = test\n"}),
    )
    .await;
    create_location(
        &s,
        "unreachable",
        json!({"provider": "s3", "objectStorage": {"bucket": "b"},
        "config": {"s3Url": format!("http://127.0.0.1:{port}"), "region": "us-east-1"},
        "credential": {"name": "s3-keys", "key": "cloud"}, "repositoryPassword": password}),
    )
    .await;
    let msg = wait_location(&s, "unreachable", LocationPhase::Unavailable, "storage:").await;
    assert!(
        msg.contains(&port.to_string()) || msg.to_lowercase().contains("connect"),
        "{msg}"
    );

    // The password fixed: the next validation (every second here) finds it Available.
    secret(
        &s,
        "other-password",
        json!({"password": "not the password"}),
    )
    .await;
    Api::<BackupStorageLocation>::namespaced(s.client(), &s.namespace)
        .patch(
            "wrong-password",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"repositoryPassword": {"name": "other-password"}}})),
        )
        .await
        .unwrap();
    wait_location(&s, "wrong-password", LocationPhase::Available, "").await;
    // The controller kept running through all of it.
    wait_location(&s, "default", LocationPhase::Available, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_location_with_keys_from_a_secret_takes_backups() {
    let Ok(endpoint) = std::env::var("STOWAGE_TEST_S3_ENDPOINT") else {
        if stowage_testkit::cluster::shared::ci() {
            panic!("STOWAGE_TEST_S3_ENDPOINT is not set in CI");
        }
        eprintln!(
            "skipped: STOWAGE_TEST_S3_ENDPOINT is not set (scripts/test.sh starts an S3 server)"
        );
        return;
    };
    let mut s = setup!();
    let _controller = s.start_controller(&[]);
    let bucket = format!("k8s-{}", std::process::id());
    let keys = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args([
            "init",
            "--create-bucket",
            "--kdf-memory",
            "64",
            "--kdf-iterations",
            "1",
            "-r",
        ])
        .arg(format!("s3:{endpoint}/{bucket}/cluster-a"))
        .env("STOWAGE_PASSWORD", PASSWORD)
        .envs(keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    secret(
        &s,
        "s3-keys",
        json!({"cloud": "[default]\naws_access_key_id = test\naws_secret_access_key = test\n"}),
    )
    .await;
    let spec = |bucket: &str| {
        json!({"provider": "aws", "objectStorage": {"bucket": bucket, "prefix": "cluster-a"},
        "config": {"s3Url": endpoint, "region": "us-east-1", "s3ForcePathStyle": "true"},
        "credential": {"name": "s3-keys", "key": "cloud"},
        "repositoryPassword": {"name": "repo-password", "key": "password"}})
    };
    create_location(&s, "s3", spec(&bucket)).await;
    wait_location(&s, "s3", LocationPhase::Available, "").await;
    create_location(&s, "no-bucket", spec("no-such-bucket-here")).await;
    wait_location(
        &s,
        "no-bucket",
        LocationPhase::Unavailable,
        "does not exist",
    )
    .await;

    let app = s.cluster.namespace("s3app").await.unwrap();
    create_all(&s.client(), &[json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": app}, "data": {"k": "v"}})]).await;
    let b = s
        .backup(
            "into-s3",
            json!({"includedNamespaces": [app], "storageLocation": "s3"}),
        )
        .await;
    assert_completed(&b);
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["ls", "--json", "latest", "-r"])
        .arg(format!("s3:{endpoint}/{bucket}/cluster-a"))
        .env("STOWAGE_PASSWORD", PASSWORD)
        .env("STOWAGE_CACHE_DIR", s.dir.path().join("cli-cache"))
        .envs(keys)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains(&format!("resources/configmaps/namespaces/{app}/c.json")),
        "{listing}"
    );
}
