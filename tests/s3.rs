//! The S3 backend against a real S3 server (moto, started by scripts/test.sh), through the real
//! binary: init with and without --create-bucket, backup, restore bit for bit, snapshots, more
//! than 1,000 objects listed, every error a user can cause, TLS with a private CA, and faults
//! injected by a proxy between the client and the server.
//!
//! The server comes from STOWAGE_TEST_S3_ENDPOINT (see scripts/s3-server.sh). Without it the
//! tests fail in CI (CI=true) and are skipped with a notice elsewhere.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use stowage_core::backend::{Backend, BackendError, FileKind};
use stowage_s3::{S3Backend, S3Options};
use stowage_testkit::fault_proxy::{Fault, FaultProxy, Schedule};

/// An environment variable the S3 tests need, or `None` (skip) outside CI.
fn need(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !ci,
                "{var} is not set: in CI the S3 tests must run (scripts/test.sh starts the server)"
            );
            eprintln!(
                "NOTICE: S3 test skipped: {var} is not set (run scripts/test.sh, which starts a local S3 server)"
            );
            None
        }
    }
}

macro_rules! need {
    ($var:expr) => {
        match need($var) {
            Some(v) => v,
            None => return,
        }
    };
}

/// A bucket name no other test uses.
fn bucket_name(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}-{}",
        test.replace('_', "-"),
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A scratch directory and a repository in a bucket of an S3 server.
struct S3Env {
    env: Env,
    endpoint: String,
    bucket: String,
    key_id: String,
    secret: String,
    options: Vec<String>,
}

impl S3Env {
    fn new(endpoint: &str, test: &str) -> S3Env {
        S3Env {
            env: Env::new(),
            endpoint: endpoint.to_string(),
            bucket: bucket_name(test),
            key_id: TEST_KEY_ID.into(),
            secret: TEST_SECRET.into(),
            options: Vec::new(),
        }
    }

    fn url(&self) -> String {
        format!("s3:{}/{}/repo", self.endpoint, self.bucket)
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        self.env.path(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stowage"));
        for o in &self.options {
            c.args(["-o", o]);
        }
        c.args(args);
        aws_env(&mut c, &self.key_id, &self.secret);
        c.env("STOWAGE_REPOSITORY", self.url())
            .env("STOWAGE_PASSWORD", PASSWORD)
            .env("STOWAGE_CACHE_DIR", self.env.dir.path().join("cache"))
            .env_remove("STOWAGE_PASSWORD_FILE")
            .env_remove("STOWAGE_PASSWORD_COMMAND")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running stowage")
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.run(args))
    }

    /// Runs, asserts exit 1 with exactly one error line and no panic; returns that line.
    fn fails(&self, args: &[&str]) -> String {
        let stderr = failed_with(args, self.run(args), 1);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("stowage: error"))
            .collect();
        assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
        lines[0].to_string()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("valid JSON")
    }

    fn init(&self, extra: &[&str]) {
        let mut args = vec![
            "init",
            "--create-bucket",
            "--kdf-memory",
            "64",
            "--kdf-iterations",
            "1",
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// The backend, opened through the library (with the default test credentials).
    fn backend(&self, pairs: &[(&str, &str)]) -> S3Backend {
        assert_eq!(
            self.key_id, TEST_KEY_ID,
            "the library takes credentials from the environment"
        );
        library_credentials();
        let opts = S3Options::from_pairs(pairs.iter().copied()).unwrap();
        S3Backend::open(&self.url(), opts).unwrap()
    }

    /// Backs up `src` and checks a restore of it is identical.
    fn backup_and_verify_restore(&self, src: &Path, target: &str) {
        self.ok(&["backup", src.to_str().unwrap()]);
        let target = self.path(target);
        self.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
        assert_same_tree(src, &target.join(src.file_name().unwrap()));
    }
}

const TEST_KEY_ID: &str = "stowage-test";
const TEST_SECRET: &str = "stowage-test-secret";

/// Sets the environment the library's credential chain reads, once, before any test reads it.
fn library_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for v in [
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ] {
            std::env::remove_var(v);
        }
        std::env::set_var("AWS_ACCESS_KEY_ID", TEST_KEY_ID);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", TEST_SECRET);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/stowage-test");
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/stowage-test");
    });
}

/// Credentials from the environment only, and nothing from this machine's AWS setup.
fn aws_env(c: &mut Command, key_id: &str, secret: &str) {
    for v in [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        c.env_remove(v);
    }
    c.env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        // Never ask instance metadata (a link-local address) for anything.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/stowage-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/stowage-test");
}

/// A source tree: small and empty files, a few MiB of random data, text, a symlink, a subtree.
fn make_tree(root: &Path, random_mib: usize, seed: u64) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("small.txt"), b"hello s3\n").unwrap();
    fs::write(
        root.join("sub/text.txt"),
        "some compressible text\n".repeat(50_000),
    )
    .unwrap();
    for i in 0..random_mib.max(1) {
        fs::write(
            root.join(format!("sub/deeper/random-{i}.bin")),
            random_bytes((1 << 20) + i * 4099, seed + i as u64),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
    set_mtime(&root.join("small.txt"), 1_600_000_000, 5);
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn init_without_create_bucket_names_the_missing_bucket() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let s = S3Env::new(&ep, "no_bucket");
    let err = s.fails(&["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
    assert!(
        err.contains(&format!("bucket \"{}\" does not exist", s.bucket))
            && err.contains("--create-bucket"),
        "{err}"
    );
    // Opening a repository in a missing bucket says the same, not "no repository".
    let err = s.fails(&["snapshots"]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn backup_and_restore_are_bit_identical() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let s = S3Env::new(&ep, "roundtrip");
    s.init(&[]);
    let src = s.path("src");
    make_tree(&src, 6, 1);
    s.backup_and_verify_restore(&src, "restored");
    // A second backup of unchanged data adds no pack data; snapshots lists both.
    let out = s.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(out["summary"]["bytes_added"], 0, "{out}");
    let snaps = s.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    let check = s.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["snapshots"], 2);
    // Maintenance works on S3 too: replace data, forget the old snapshots, prune.
    fs::remove_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("new.bin"), random_bytes(3 << 20, 99)).unwrap();
    s.ok(&["backup", src.to_str().unwrap()]);
    s.ok(&["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(s.json(&["snapshots"]).as_array().unwrap().len(), 1);
    let check = s.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    let target = s.path("restored-after-prune");
    s.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join("src"));
}

#[test]
fn an_existing_bucket_is_used_and_a_second_init_refused() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let s = S3Env::new(&ep, "reinit");
    s.init(&[]);
    // A repository under another prefix of the same bucket needs no --create-bucket.
    let other = S3Env {
        bucket: s.bucket.clone(),
        ..S3Env::new(&ep, "unused")
    };
    let mut c = other.cmd(&["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
    c.env(
        "STOWAGE_REPOSITORY",
        format!("s3:{}/{}/another/prefix", ep, s.bucket),
    );
    assert!(c.output().unwrap().status.success());
    let err = s.fails(&["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
    assert!(err.contains("already exists"), "{err}");
    s.ok(&["snapshots"]);
    let b = s.backend(&[]);
    assert_eq!(b.list(FileKind::Key).unwrap().len(), 1);
}

#[test]
fn concurrent_inits_cannot_both_win() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let s = S3Env::new(&ep, "race");
    s.init(&[]);
    // Same bucket, fresh prefix, eight inits at once: If-None-Match lets exactly one create
    // the config.
    let url = format!("s3:{}/{}/raced", ep, s.bucket);
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut c = s.cmd(&["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
            c.env("STOWAGE_REPOSITORY", &url)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "exactly one init must win");
    for o in outs.iter().filter(|o| !o.status.success()) {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("already exists"), "{e}");
    }
    let mut c = s.cmd(&["snapshots"]);
    c.env("STOWAGE_REPOSITORY", &url);
    assert!(c.output().unwrap().status.success());
}

#[test]
fn exclusive_writes_refuse_to_overwrite_and_missing_files_are_not_found() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let s = S3Env::new(&ep, "exclusive");
    s.init(&[]);
    let b = s.backend(&[]);
    b.write(FileKind::Lock, "l1", b"first", true).unwrap();
    assert!(matches!(
        b.write(FileKind::Lock, "l1", b"second", true),
        Err(BackendError::AlreadyExists { .. })
    ));
    assert_eq!(b.read(FileKind::Lock, "l1").unwrap(), b"first");
    b.write(FileKind::Lock, "l1", b"replaced", false).unwrap();
    assert_eq!(b.read(FileKind::Lock, "l1").unwrap(), b"replaced");
    assert_eq!(b.read_range(FileKind::Lock, "l1", 2, 3).unwrap(), b"pla");
    assert!(matches!(
        b.read_range(FileKind::Lock, "l1", 5, 10),
        Err(BackendError::ShortRead { .. })
    ));
    assert!(matches!(
        b.read_range(FileKind::Lock, "l1", 100, 1),
        Err(BackendError::ShortRead { .. })
    ));
    assert!(matches!(
        b.read(FileKind::Snapshot, "nope"),
        Err(BackendError::NotFound { .. })
    ));
    assert!(matches!(
        b.read_range(FileKind::Pack, "abcd", 0, 4),
        Err(BackendError::NotFound { .. })
    ));
    assert!(matches!(
        b.size(FileKind::Index, "nope"),
        Err(BackendError::NotFound { .. })
    ));
    assert!(!b.exists(FileKind::Index, "nope").unwrap());
    b.remove(FileKind::Lock, "l1").unwrap();
    b.remove(FileKind::Lock, "l1").unwrap();
    assert!(!b.exists(FileKind::Lock, "l1").unwrap());
}

#[test]
fn more_than_a_thousand_objects_are_listed_and_removed_completely() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let s = S3Env::new(&ep, "many");
    s.init(&[]);
    let src = s.path("src");
    make_tree(&src, 1, 7);
    s.ok(&["backup", src.to_str().unwrap()]);
    let b = s.backend(&[("s3.connections", "16")]);
    let real_packs = b.list(FileKind::Pack).unwrap().len();
    // 1,100 stray packs spread over the data/XX/ folders, written 16 at a time.
    let names: Vec<String> = (0..1100u32)
        .map(|i| {
            let h = blake3::hash(&i.to_le_bytes());
            h.to_hex().to_string()
        })
        .collect();
    std::thread::scope(|sc| {
        for chunk in names.chunks(names.len().div_ceil(16)) {
            let b = &b;
            sc.spawn(move || {
                for n in chunk {
                    b.write(FileKind::Pack, n, n.as_bytes(), false).unwrap();
                }
            });
        }
    });
    let listed = b.list(FileKind::Pack).unwrap();
    assert_eq!(listed.len(), real_packs + names.len());
    assert!(listed.iter().filter(|f| f.size == 64).count() >= names.len());
    // The binary lists them all too: check counts them as unreferenced.
    let check = s.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["packs"], real_packs + names.len());
    assert_eq!(
        check["unreferenced_packs"].as_array().unwrap().len(),
        names.len()
    );
    // Batch removal (DeleteObjects, 1,000 keys a request) removes every one.
    b.remove_many(FileKind::Pack, &names).unwrap();
    assert_eq!(b.list(FileKind::Pack).unwrap().len(), real_packs);
    s.ok(&["check"]);
}

#[test]
fn large_packs_go_up_as_multipart_uploads() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let proxy = FaultProxy::start(&ep, Schedule::None);
    let mut s = S3Env::new(&proxy.url(), "multipart");
    s.options = vec!["s3.multipart-threshold=5".into(), "s3.part-size=5".into()];
    s.init(&["--pack-size", "12"]);
    let src = s.path("src");
    make_tree(&src, 24, 3);
    s.backup_and_verify_restore(&src, "restored");
    let log = proxy.log();
    let starts = log
        .iter()
        .filter(|l| l.starts_with("POST") && l.contains("?uploads"))
        .count();
    let parts = log
        .iter()
        .filter(|l| l.starts_with("PUT") && l.contains("partNumber="))
        .count();
    assert!(starts >= 1, "no multipart upload started: {log:?}");
    assert!(parts >= 2 * starts, "{starts} uploads, {parts} parts");
    assert_eq!(pending_uploads(&s), 0);
}

#[test]
fn a_failed_multipart_upload_is_aborted() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let proxy = FaultProxy::start(&ep, Schedule::None);
    let mut s = S3Env::new(&proxy.url(), "abort");
    s.options = vec![
        "s3.multipart-threshold=5".into(),
        "s3.part-size=5".into(),
        "s3.retries=1".into(),
    ];
    s.init(&["--pack-size", "12"]);
    proxy.set_schedule(Schedule::Matching {
        method: Some("PUT"),
        path_contains: "partNumber=2".into(),
        fault: Fault::InternalError,
        limit: u64::MAX,
    });
    let src = s.path("src");
    make_tree(&src, 24, 4);
    let err = s.fails(&["backup", src.to_str().unwrap()]);
    assert!(
        err.contains("upload part of") && err.contains("gave up after 2 attempts"),
        "{err}"
    );
    let aborts = proxy
        .log()
        .iter()
        .filter(|l| l.starts_with("DELETE") && l.contains("uploadId="))
        .count();
    assert!(aborts >= 1, "no abort: {:?}", proxy.log());
    assert_eq!(pending_uploads(&s), 0, "orphaned parts left behind");
    proxy.set_schedule(Schedule::None);
    s.ok(&["check"]);
    s.backup_and_verify_restore(&src, "restored");
}

#[test]
fn storage_class_and_server_side_encryption_are_applied() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let mut s = S3Env::new(&ep, "sse");
    s.options = vec![
        "s3.storage-class=STANDARD_IA".into(),
        "s3.sse=AES256".into(),
    ];
    s.init(&[]);
    let src = s.path("src");
    make_tree(&src, 1, 9);
    s.backup_and_verify_restore(&src, "restored");
    let b = s.backend(&[]);
    let pack = &b.list(FileKind::Pack).unwrap()[0].name;
    let key = format!("repo/{}", FileKind::Pack.relative_path(pack));
    let (class, sse) = raw(&s, |c, bucket| async move {
        let h = c
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        (
            h.storage_class().map(|c| c.as_str().to_string()),
            h.server_side_encryption().map(|c| c.as_str().to_string()),
        )
    });
    assert_eq!(class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(sse.as_deref(), Some("AES256"));
}

#[test]
fn unreachable_endpoint_is_one_clear_error() {
    let _ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let mut s = S3Env::new(
        &format!("http://127.0.0.1:{}", closed_port()),
        "unreachable",
    );
    s.options = vec!["s3.retries=2".into()];
    let err = s.fails(&["snapshots"]);
    assert!(
        err.contains("cannot connect to the S3 endpoint")
            && err.contains("Connection refused")
            && err.contains("after 3 attempts"),
        "{err}"
    );
}

#[test]
fn https_to_a_plain_http_server_is_a_tls_error() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let s = S3Env::new(&ep.replace("http://", "https://"), "tls_plain");
    let err = s.fails(&["snapshots"]);
    assert!(
        err.contains("TLS connection to") && err.contains("http:// rather than https://"),
        "{err}"
    );
}

#[test]
fn a_bucket_without_a_repository_says_so() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let s = S3Env::new(&ep, "empty_bucket");
    s.init(&[]);
    let other = S3Env {
        bucket: s.bucket.clone(),
        ..S3Env::new(&ep, "unused")
    };
    let mut c = other.cmd(&["snapshots"]);
    c.env(
        "STOWAGE_REPOSITORY",
        format!("s3:{}/{}/elsewhere", ep, s.bucket),
    );
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no repository at") && err.contains("stowage init"),
        "{err}"
    );
}

#[test]
fn bad_options_and_urls_are_usage_or_one_line_errors() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let mut s = S3Env::new(&ep, "badopts");
    s.options = vec!["s3.regoin=x".into()];
    let err = s.fails(&["snapshots"]);
    assert!(err.contains("unknown option \"s3.regoin\""), "{err}");
    s.options = vec!["s3.connections=0".into()];
    let err = s.fails(&["snapshots"]);
    assert!(err.contains("s3.connections"), "{err}");
    s.options = vec!["no-equals-sign".into()];
    let out = s.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(2));
    s.options = vec![];
    let mut c = s.cmd(&["snapshots"]);
    c.env("STOWAGE_REPOSITORY", "s3:https://KEY:SECRET@127.0.0.1:1/b");
    let err = String::from_utf8_lossy(&c.output().unwrap().stderr).into_owned();
    assert!(
        err.contains("credentials never go in the repository URL"),
        "{err}"
    );
    assert!(
        !err.contains("SECRET@"),
        "the secret must not be echoed: {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Credentials and permissions: a second server with IAM authentication.
// ---------------------------------------------------------------------------------------------

struct AuthServer {
    endpoint: String,
    key_id: String,
    secret: String,
    ro_key_id: String,
    ro_secret: String,
}

fn auth_server() -> Option<AuthServer> {
    let endpoint = need("STOWAGE_TEST_S3_AUTH_ENDPOINT")?;
    let keys = need("STOWAGE_TEST_S3_AUTH_KEYS")?;
    let k: Vec<&str> = keys.split_whitespace().collect();
    assert_eq!(
        k.len(),
        4,
        "STOWAGE_TEST_S3_AUTH_KEYS: ID SECRET RO_ID RO_SECRET"
    );
    Some(AuthServer {
        endpoint,
        key_id: k[0].into(),
        secret: k[1].into(),
        ro_key_id: k[2].into(),
        ro_secret: k[3].into(),
    })
}

#[test]
fn wrong_credentials_are_one_clear_error() {
    let Some(a) = auth_server() else { return };
    let mut s = S3Env::new(&a.endpoint, "wrong_creds");
    s.key_id = "AKIANOSUCHKEY0000000".into();
    s.secret = "wrong".into();
    let err = s.fails(&[
        "init",
        "--create-bucket",
        "--kdf-memory",
        "64",
        "--kdf-iterations",
        "1",
    ]);
    assert!(
        err.contains("rejected the credentials (InvalidAccessKeyId)")
            && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    // A known key with the wrong secret: the signature does not match.
    s.key_id = a.key_id.clone();
    let err = s.fails(&["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
    assert!(
        err.contains("rejected the credentials (SignatureDoesNotMatch)"),
        "{err}"
    );
    // The right ones work.
    s.secret = a.secret.clone();
    s.init(&[]);
}

#[test]
fn missing_permissions_are_access_denied() {
    let Some(a) = auth_server() else { return };
    let mut s = S3Env::new(&a.endpoint, "denied");
    s.key_id = a.key_id.clone();
    s.secret = a.secret.clone();
    // The bucket exists (made by the full-access user), but this user may only read.
    let mut c = s.cmd(&[
        "init",
        "--create-bucket",
        "--kdf-memory",
        "64",
        "--kdf-iterations",
        "1",
    ]);
    c.env(
        "STOWAGE_REPOSITORY",
        format!("s3:{}/{}/setup", a.endpoint, s.bucket),
    );
    assert!(c.output().unwrap().status.success());
    s.key_id = a.ro_key_id.clone();
    s.secret = a.ro_secret.clone();
    let err = s.fails(&["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
    assert!(
        err.contains("access denied to") && err.contains("s3:PutObject"),
        "{err}"
    );
}

#[test]
fn missing_credentials_are_one_clear_error() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let s = S3Env::new(&ep, "no_creds");
    let mut c = s.cmd(&["snapshots"]);
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no AWS credentials found") && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS with a private CA.
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_with_a_private_ca_needs_the_ca_bundle() {
    let Some(ep) = need("STOWAGE_TEST_S3_TLS_ENDPOINT") else {
        return;
    };
    let ca = need!("STOWAGE_TEST_S3_TLS_CA");
    let mut s = S3Env::new(&ep, "tls");
    let err = s.fails(&[
        "init",
        "--create-bucket",
        "--kdf-memory",
        "64",
        "--kdf-iterations",
        "1",
    ]);
    assert!(
        err.contains("TLS connection to") && err.contains("s3.ca-bundle"),
        "{err}"
    );
    s.options = vec![format!("s3.ca-bundle={ca}")];
    s.init(&[]);
    let src = s.path("src");
    make_tree(&src, 1, 11);
    s.backup_and_verify_restore(&src, "restored");
    // Skipping verification works too, and says loudly that it is unsafe.
    s.options = vec!["s3.insecure-tls=true".into()];
    let out = s.run(&["snapshots"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NOT verified"), "{stderr}");
    // A CA file that holds no certificate is refused before any request.
    let bogus = s.path("bogus.pem");
    fs::write(&bogus, b"not a certificate").unwrap();
    s.options = vec![format!("s3.ca-bundle={}", bogus.display())];
    let err = s.fails(&["snapshots"]);
    assert!(
        err.contains("CA bundle") && err.contains("bogus.pem"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Faults.
// ---------------------------------------------------------------------------------------------

#[test]
fn backup_under_five_percent_faults_completes_and_restores_identical() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let proxy = FaultProxy::start(&ep, Schedule::None);
    let mut s = S3Env::new(&proxy.url(), "faults");
    // Short timeouts so the injected delays cost seconds, not minutes.
    s.options = vec!["s3.timeout=2".into(), "s3.retries=8".into()];
    s.init(&["--pack-size", "1"]);
    let src = s.path("src");
    make_tree(&src, 40, 21);
    proxy.set_schedule(Schedule::Rate {
        seed: 7,
        per_mille: 50,
        faults: vec![
            Fault::SlowDown,
            Fault::InternalError,
            Fault::ResetBefore,
            Fault::ResetAfter,
            Fault::TruncateBody,
            Fault::Delay(3000),
        ],
    });
    s.ok(&["backup", src.to_str().unwrap()]);
    let target = s.path("restored");
    s.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    s.ok(&["check", "--read-data"]);
    let c = proxy.counts();
    assert!(
        c.faults * 100 >= c.requests * 2 && c.faults >= 8,
        "too few faults injected to prove anything: {c:?}"
    );
    assert!(c.by_fault.len() >= 4, "{c:?}");
    proxy.set_schedule(Schedule::None);
    assert_same_tree(&src, &target.join("src"));
    eprintln!(
        "{} requests, {} faults injected: {:?}",
        c.requests, c.faults, c.by_fault
    );
}

#[test]
fn a_permanent_failure_fails_the_backup_and_leaves_a_usable_repository() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let proxy = FaultProxy::start(&ep, Schedule::None);
    let mut s = S3Env::new(&proxy.url(), "permanent");
    s.options = vec!["s3.retries=2".into()];
    s.init(&["--pack-size", "1"]);
    let src = s.path("src");
    make_tree(&src, 2, 31);
    s.ok(&["backup", src.to_str().unwrap()]);
    // New data; the store now fails every pack upload after the third.
    make_tree(&s.path("src2"), 8, 32);
    fs::rename(s.path("src2/sub"), src.join("more")).unwrap();
    proxy.set_schedule(Schedule::Matching {
        method: Some("PUT"),
        path_contains: "/data/".into(),
        fault: Fault::InternalError,
        limit: u64::MAX,
    });
    let err = s.fails(&["backup", src.to_str().unwrap()]);
    assert!(
        err.contains("write s3://")
            && err.contains("/repo/data/")
            && err.contains("gave up after 3 attempts")
            && err.contains("InternalError"),
        "{err}"
    );
    proxy.set_schedule(Schedule::None);
    let check = s.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(s.json(&["snapshots"]).as_array().unwrap().len(), 1);
    s.backup_and_verify_restore(&src, "restored");
    s.ok(&["check", "--read-data"]);
}

#[test]
fn a_lost_answer_to_an_exclusive_write_is_not_mistaken_for_a_conflict() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let proxy = FaultProxy::start(&ep, Schedule::None);
    let s = S3Env::new(&proxy.url(), "lost_answer");
    // The server stores the config, then the connection dies before the answer: the retry gets
    // 412 Precondition Failed, and init must still succeed because the object is ours.
    proxy.set_schedule(Schedule::Matching {
        method: Some("PUT"),
        path_contains: "/repo/config".into(),
        fault: Fault::ResetAfter,
        limit: 1,
    });
    s.init(&[]);
    assert_eq!(proxy.counts().faults, 1);
    s.ok(&["snapshots"]);
}

#[test]
fn no_damaged_response_is_ever_taken_for_data() {
    let ep = need!("STOWAGE_TEST_S3_ENDPOINT");
    let proxy = FaultProxy::start(&ep, Schedule::None);
    let mut s = S3Env::new(&proxy.url(), "damaged");
    s.options = vec!["s3.retries=8".into()];
    s.init(&["--pack-size", "1"]);
    let src = s.path("src");
    make_tree(&src, 4, 41);
    s.ok(&["backup", src.to_str().unwrap()]);
    // Bodies cut short (detected by their length, retried), bodies shortened with a matching
    // Content-Length and bodies with a flipped byte (both caught by the MACs above the backend).
    for (i, fault) in [
        Fault::TruncateBody,
        Fault::ShortBodyConsistent,
        Fault::CorruptBody,
    ]
    .into_iter()
    .enumerate()
    {
        proxy.set_schedule(Schedule::Rate {
            seed: 100 + i as u64,
            per_mille: 300,
            faults: vec![fault],
        });
        let target = s.path(&format!("restored-{i}"));
        let out = s.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        if out.status.success() {
            // Whatever was restored must be exactly right.
            assert_same_tree(&src, &target.join("src"));
        } else {
            assert_ne!(
                fault,
                Fault::TruncateBody,
                "truncation must be retried: {stderr}"
            );
            assert!(stderr.contains("stowage: error"), "{stderr}");
        }
        eprintln!(
            "{fault:?}: restore {}",
            match out.status.code() {
                Some(0) => "succeeded, identical".to_string(),
                _ => format!("refused: {}", stderr.lines().last().unwrap_or_default()),
            }
        );
        let out = s.run(&["check", "--read-data"]);
        if fault == Fault::TruncateBody {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    proxy.set_schedule(Schedule::None);
    s.ok(&["check", "--read-data"]);

    // A store that kept half of a pack under its full name: check and restore notice.
    let b = s.backend(&[]);
    let pack = b
        .list(FileKind::Pack)
        .unwrap()
        .into_iter()
        .max_by_key(|f| f.size)
        .unwrap();
    let bytes = b.read(FileKind::Pack, &pack.name).unwrap();
    b.write(FileKind::Pack, &pack.name, &bytes[..bytes.len() / 2], false)
        .unwrap();
    let out = s.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&pack.name[..8]), "{err}");
    let target = s.path("restored-broken");
    let out = s.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a restore from a damaged pack must fail"
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers that look at the bucket directly.
// ---------------------------------------------------------------------------------------------

/// Runs `f` with a plain SDK client for the test's bucket.
fn raw<T, F, Fut>(s: &S3Env, f: F) -> T
where
    F: FnOnce(aws_sdk_s3::Client, String) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(std::env::var("STOWAGE_TEST_S3_ENDPOINT").unwrap())
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &s.key_id, &s.secret, None, None, "test",
        ))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    rt.block_on(f(client, s.bucket.clone()))
}

/// Multipart uploads started and neither completed nor aborted.
fn pending_uploads(s: &S3Env) -> usize {
    raw(s, |c, bucket| async move {
        c.list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap()
            .uploads()
            .len()
    })
}
