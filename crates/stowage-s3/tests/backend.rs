//! The S3 backend through the `Backend` trait, against the S3 server of the test suite
//! (STOWAGE_TEST_S3_ENDPOINT, see scripts/s3-server.sh; skipped with a notice when it is not
//! set, outside CI): called from inside a multi-thread and a current-thread tokio runtime
//! (directly, and through `spawn_blocking`, the documented way), measured by the metered
//! decorator, and against an endpoint nothing listens on.

use std::sync::atomic::{AtomicUsize, Ordering};
use stowage_core::backend::metered::{MeteredBackend, Operation};
use stowage_core::backend::{Backend, BackendError, FileKind};
use stowage_core::error::ErrorClass;
use stowage_s3::{S3Backend, S3Options};

/// The test server's endpoint, or `None` (skip) outside CI.
fn endpoint() -> Option<String> {
    match std::env::var("STOWAGE_TEST_S3_ENDPOINT") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !ci,
                "STOWAGE_TEST_S3_ENDPOINT is not set: in CI the S3 tests must run"
            );
            eprintln!("NOTICE: S3 test skipped: STOWAGE_TEST_S3_ENDPOINT is not set");
            None
        }
    }
}

/// Test credentials in the environment the AWS chain reads, once, before any test reads it.
fn credentials() {
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
        std::env::set_var("AWS_ACCESS_KEY_ID", "stowage-test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "stowage-test-secret");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/stowage-test");
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/stowage-test");
    });
}

/// A backend on a bucket no other test uses, created.
fn open(endpoint: &str, test: &str) -> S3Backend {
    static N: AtomicUsize = AtomicUsize::new(0);
    credentials();
    let bucket = format!(
        "{}-{}-{}",
        test.replace('_', "-"),
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let opts = S3Options::from_pairs([("s3.create-bucket", "true")]).unwrap();
    let b = S3Backend::open(&format!("s3:{endpoint}/{bucket}/repo"), opts).unwrap();
    b.create().unwrap();
    b
}

/// Writes, reads, lists, sizes and removes through `b`, as the engine would.
fn round_trip(b: &impl Backend, name: &str) {
    let data = format!("contents of {name}").into_bytes();
    b.write(FileKind::Snapshot, name, &data, true).unwrap();
    assert!(matches!(
        b.write(FileKind::Snapshot, name, &data, true),
        Err(BackendError::AlreadyExists { .. })
    ));
    assert_eq!(b.read(FileKind::Snapshot, name).unwrap(), data);
    assert_eq!(
        b.read_range(FileKind::Snapshot, name, 3, 4).unwrap(),
        &data[3..7]
    );
    assert_eq!(b.size(FileKind::Snapshot, name).unwrap(), data.len() as u64);
    assert!(b
        .list(FileKind::Snapshot)
        .unwrap()
        .iter()
        .any(|f| f.name == name));
    b.remove(FileKind::Snapshot, name).unwrap();
    assert!(matches!(
        b.read(FileKind::Snapshot, name),
        Err(BackendError::NotFound { .. })
    ));
}

#[test]
fn called_from_inside_a_multi_thread_runtime_it_works() {
    let Some(ep) = endpoint() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Opened, used and dropped on a runtime thread.
    rt.block_on(async {
        let b = open(&ep, "async_multi");
        round_trip(&b, "direct");
    });
    let b = std::sync::Arc::new(rt.block_on(async { open(&ep, "async_multi") }));
    // From tasks, several at once.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let b = b.clone();
            rt.spawn(async move { round_trip(&*b, &format!("task-{i}")) })
        })
        .collect();
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    // The documented way: spawn_blocking.
    let b2 = b.clone();
    rt.block_on(async move {
        tokio::task::spawn_blocking(move || round_trip(&*b2, "blocking"))
            .await
            .unwrap()
    });
    // Dropped inside the runtime.
    rt.block_on(async move { drop(b) });
}

#[test]
fn called_from_inside_a_current_thread_runtime_it_works() {
    let Some(ep) = endpoint() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = open(&ep, "async_current");
        round_trip(&b, "direct");
        // A task of this runtime runs while the backend is idle.
        let b = tokio::spawn(async move {
            round_trip(&b, "task");
            b
        })
        .await
        .unwrap();
        tokio::task::spawn_blocking(move || round_trip(&b, "blocking"))
            .await
            .unwrap();
    });
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_endpoint_is_a_transient_error() {
    credentials();
    let opts = S3Options::from_pairs([("s3.retries", "1")]).unwrap();
    let url = format!("s3:http://127.0.0.1:{}/bucket/repo", closed_port());
    let b = S3Backend::open(&url, opts).unwrap();
    let check = |r: Result<Vec<stowage_core::backend::FileInfo>, BackendError>| match r {
        Err(BackendError::Remote { class, kind, .. }) => {
            assert_eq!(class, ErrorClass::Transient);
            assert_eq!(kind, "s3.unreachable");
        }
        other => panic!("expected a remote error, got {other:?}"),
    };
    check(b.list(FileKind::Snapshot));
    // The same from inside a runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    check(rt.block_on(async { b.list(FileKind::Snapshot) }));
}

#[test]
fn the_metered_decorator_counts_calls_and_the_backend_its_http_requests() {
    let Some(ep) = endpoint() else { return };
    let b = MeteredBackend::new(open(&ep, "metered"));
    let before = b.inner().request_counts().requests.load(Ordering::Relaxed);
    round_trip(&b, "m");
    let s = b.snapshot();
    // Two exclusive writes (one refused), two reads (one of a missing file), a range read, a
    // size, a list and a remove.
    let writes = s.get(Operation::Write, FileKind::Snapshot);
    assert_eq!((writes.calls, writes.errors), (2, 1));
    assert_eq!(writes.bytes, "contents of m".len() as u64);
    assert_eq!(s.operation(Operation::Read).calls, 2);
    assert_eq!(s.bytes_read(), "contents of m".len() as u64 + 4);
    assert_eq!(s.calls(), 8);
    assert!(s.get(Operation::List, FileKind::Snapshot).latency_max > std::time::Duration::ZERO);
    // The HTTP requests behind those calls: at least one each (exclusive writes may need two).
    let http = b.inner().request_counts().requests.load(Ordering::Relaxed) - before;
    assert!(http >= s.calls(), "{http} requests for {} calls", s.calls());
}
