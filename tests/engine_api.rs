//! The engine's API for front ends other than the CLI (the node agent, the controller): backup
//! sources (paths, streams, devices, documents), restore targets (directory, device in place,
//! stream), cancellation, progress events and typed warnings. Repositories are made and
//! checked with the real binary; the operations are called through `stowage_core`.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stowage_core::backend::local::LocalBackend;
use stowage_core::backup::{
    self, BackupError, BackupOptions, BackupSource, Document, DocumentEvent, ProducerError,
};
use stowage_core::cancel::CancelToken;
use stowage_core::error::{Classified, ErrorClass};
use stowage_core::progress::{Control, ProgressEvent};
use stowage_core::repo::session::{BackupWork, IndexSource, Indexed, ReadWork};
use stowage_core::repo::Repository;
use stowage_core::restore::{self, RestoreError, RestoreOptions, RestoreTarget};
use stowage_core::warning::Operation;

fn repository(env: &Env) -> Arc<Repository> {
    let backend: Arc<dyn stowage_core::backend::Backend> = Arc::new(LocalBackend::new(&env.repo));
    Arc::new(Repository::open(backend, PASSWORD.as_bytes()).unwrap())
}

/// A backup session (its lock, then the index), as a node agent would begin one.
fn writer(env: &Env) -> Indexed<BackupWork> {
    repository(env)
        .lock::<BackupWork>()
        .unwrap()
        .load_index(&IndexSource::Memory, &())
        .unwrap()
}

/// A read session, for restores.
fn open(env: &Env) -> Indexed<ReadWork> {
    repository(env)
        .lock::<ReadWork>()
        .unwrap()
        .load_index(&IndexSource::Memory, &())
        .unwrap()
}

fn backup_of(env: &Env, source: BackupSource<'_>) -> Result<backup::BackupReport, BackupError> {
    backup::run(
        &writer(env),
        source,
        &BackupOptions::default(),
        &Control::new(),
    )
}

fn latest(repo: &Indexed<ReadWork>) -> stowage_core::repo::snapshot::Snapshot {
    repo.repo().find_snapshot("latest").unwrap().1
}

/// Asserts that a cancelled backup left no snapshot, that `check` accepts the repository, and
/// that the next backup of `src` completes and restores.
fn assert_clean_after_cancel(env: &Env, src: &Path) {
    assert!(
        env.files_in("snapshots").is_empty(),
        "a snapshot was written"
    );
    env.ok(&["check"]);
    env.ok(&["backup", src.to_str().unwrap()]);
    env.ok(&["check", "--read-data"]);
    let out = env.path("after-cancel");
    env.restore_verified(&out);
    assert_same_tree(src, &out.join(src.file_name().unwrap()));
}

/// A tree of many small files and a few large ones.
fn big_tree(env: &Env) -> PathBuf {
    let src = env.path("src");
    for d in 0..20 {
        let dir = src.join(format!("d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(format!("f{f:03}")), format!("{d}/{f}").repeat(20)).unwrap();
        }
    }
    for i in 0..4 {
        fs::write(src.join(format!("large{i}")), random_bytes(3 << 20, 70 + i)).unwrap();
    }
    src
}

#[test]
fn a_backup_cancelled_before_it_starts_writes_nothing() {
    let env = Env::init_small();
    let src = big_tree(&env);
    let cancel = CancelToken::new();
    cancel.cancel();
    let control = Control::new().with_cancel(cancel);
    let err = backup::run(
        &writer(&env),
        BackupSource::Paths(vec![src.clone()]),
        &BackupOptions::default(),
        &control,
    )
    .unwrap_err();
    assert!(matches!(err, BackupError::Canceled), "{err}");
    assert_eq!(err.class(), ErrorClass::Canceled);
    assert_eq!(err.kind(), "backup.canceled");
    assert!(env.files_in("data").is_empty());
    assert_clean_after_cancel(&env, &src);
}

#[test]
fn a_backup_cancelled_mid_walk_leaves_no_snapshot() {
    let env = Env::init_small();
    let src = big_tree(&env);
    let cancel = CancelToken::new();
    // Cancelled from the progress thread as soon as the first files are stored: the walk of
    // 2,000 entries is not over by then.
    let seen = Mutex::new(Vec::new());
    let sink = |e: &ProgressEvent| {
        seen.lock().unwrap().push(e.clone());
        if e.files_done > 0 {
            cancel.cancel();
        }
    };
    let control = Control {
        interval: Duration::from_millis(1),
        ..Control::new()
            .with_cancel(cancel.clone())
            .with_progress(&sink)
    };
    let err = backup::run(
        &writer(&env),
        BackupSource::Paths(vec![src.clone()]),
        &BackupOptions::default(),
        &control,
    )
    .unwrap_err();
    assert!(matches!(err, BackupError::Canceled), "{err}");
    let seen = seen.into_inner().unwrap();
    let last = seen.last().unwrap();
    assert!(last.finished, "the last event says the backup is over");
    assert!(last.files_done < 2004, "{last:?}");
    assert_clean_after_cancel(&env, &src);
}

/// A stream that cancels a token once it has given `after` bytes, and goes on giving bytes.
struct CancellingReader {
    data: Vec<u8>,
    pos: usize,
    after: usize,
    cancel: CancelToken,
}

impl Read for CancellingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.after {
            self.cancel.cancel();
        }
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_backup_cancelled_mid_upload_leaves_only_unreferenced_packs() {
    let env = Env::init_small();
    let src = big_tree(&env);
    let cancel = CancelToken::new();
    // 1 MiB packs: by 12 MiB into a 24 MiB stream, packs have been uploaded.
    let mut reader = CancellingReader {
        data: random_bytes(24 << 20, 5),
        pos: 0,
        after: 12 << 20,
        cancel: cancel.clone(),
    };
    let control = Control::new().with_cancel(cancel);
    let err = backup::run(
        &writer(&env),
        BackupSource::Stream {
            name: "dump".into(),
            reader: &mut reader,
        },
        &BackupOptions::default(),
        &control,
    )
    .unwrap_err();
    assert!(matches!(err, BackupError::Canceled), "{err}");
    assert!(reader.pos < 24 << 20, "the stream was read to its end");
    assert!(
        !env.files_in("data").is_empty(),
        "no pack was uploaded before the cancel"
    );
    assert_clean_after_cancel(&env, &src);
}

#[test]
fn progress_counts_the_walk_and_ends_with_one_final_event() {
    let env = Env::init_small();
    let src = big_tree(&env);
    let events = Mutex::new(Vec::new());
    let sink = |e: &ProgressEvent| events.lock().unwrap().push(e.clone());
    let control = Control::new().with_progress(&sink);
    let report = backup::run(
        &writer(&env),
        BackupSource::Paths(vec![src.clone()]),
        &BackupOptions::default(),
        &control,
    )
    .unwrap();
    let events = events.into_inner().unwrap();
    let last = events.last().unwrap();
    assert_eq!(events.iter().filter(|e| e.finished).count(), 1);
    assert!(last.finished && !last.counting);
    assert_eq!(last.files_done, 2004);
    assert_eq!(last.files_expected, Some(2004));
    let total = report.snapshot.summary.total_bytes;
    assert_eq!(last.bytes_expected, Some(total));
    assert_eq!(last.bytes_done, total);
    // Done never runs ahead of expected.
    for e in &events {
        assert!(
            e.files_done <= e.files_expected.unwrap_or(u64::MAX),
            "{e:?}"
        );
    }
    // Unchanged files are done without being read.
    let last = Mutex::new(None);
    let sink = |e: &ProgressEvent| *last.lock().unwrap() = Some(e.clone());
    let again = backup::run(
        &writer(&env),
        BackupSource::Paths(vec![src]),
        &BackupOptions::default(),
        &Control::new().with_progress(&sink),
    )
    .unwrap();
    assert_eq!(again.snapshot.summary.bytes_read, 0);
    assert_eq!(again.snapshot.summary.files_unchanged, 2004);
    let last = last.into_inner().unwrap().unwrap();
    assert_eq!((last.bytes_done, last.bytes_added), (total, 0));
}

#[test]
fn a_cancelled_restore_reports_what_it_wrote() {
    let env = Env::init_small();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    for i in 0..40 {
        fs::write(src.join(format!("f{i:02}")), random_bytes(1 << 20, 300 + i)).unwrap();
    }
    fs::write(src.join("big"), random_bytes(8 << 20, 299)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let repo = open(&env);
    let snap = latest(&repo);

    // A directory: cancelled from the progress thread once some bytes are written.
    let cancel = CancelToken::new();
    let sink = |e: &ProgressEvent| {
        if e.bytes_done > 0 {
            cancel.cancel();
        }
    };
    let control = Control {
        interval: Duration::from_millis(1),
        ..Control::new()
            .with_cancel(cancel.clone())
            .with_progress(&sink)
    };
    let target = env.path("out");
    let err = restore::run(
        &repo,
        &snap,
        RestoreTarget::Directory(target.clone()),
        &RestoreOptions::default(),
        &control,
    )
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Canceled);
    let RestoreError::Canceled { files, bytes } = err else {
        panic!("not cancelled: {err}");
    };
    assert!(bytes > 0 && bytes < 48 << 20, "{bytes} bytes");
    // Every file it counts as written is complete.
    let complete = (0..40)
        .filter(|i| {
            let name = format!("src/f{i:02}");
            fs::read(target.join(&name)).ok() == fs::read(src.join(&name[4..])).ok()
        })
        .count() as u64;
    assert!(files <= complete, "{files} reported, {complete} complete");

    // A stream: cancelled by the writer itself after 3 MiB.
    let cancel = CancelToken::new();
    struct Cancelling(Vec<u8>, CancelToken);
    impl Write for Cancelling {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(b);
            if self.0.len() >= 3 << 20 {
                self.1.cancel();
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Cancelling(Vec::new(), cancel.clone());
    let opts = RestoreOptions {
        subpath: Some("src/big".into()),
        ..Default::default()
    };
    let control = Control::new().with_cancel(cancel);
    let err =
        restore::run(&repo, &snap, RestoreTarget::Stream(&mut w), &opts, &control).unwrap_err();
    let RestoreError::Canceled { files, bytes } = err else {
        panic!("not cancelled: {err}");
    };
    assert_eq!(files, 0);
    assert_eq!(bytes, w.0.len() as u64);
    assert!((3 << 20..8 << 20).contains(&bytes), "{bytes} bytes");
    assert!(w.0[..] == fs::read(src.join("big")).unwrap()[..w.0.len()]);
}

#[test]
fn a_stream_source_round_trips_through_a_stream_target() {
    let env = Env::init_small();
    let data = random_bytes(5 << 20, 9);
    let report = backup_of(
        &env,
        BackupSource::Stream {
            name: "db.dump".into(),
            reader: &mut data.as_slice(),
        },
    )
    .unwrap();
    assert_eq!(report.snapshot.paths, vec!["/db.dump".to_string()]);
    env.ok(&["check", "--read-data"]);
    let repo = open(&env);
    let mut out = Vec::new();
    let r = restore::run(
        &repo,
        &latest(&repo),
        RestoreTarget::Stream(&mut out),
        &RestoreOptions::default(),
        &Control::new(),
    )
    .unwrap();
    assert_eq!(r.bytes, data.len() as u64);
    assert!(out == data, "stream content differs");
    // A bad name is refused before anything is read.
    let err = backup_of(
        &env,
        BackupSource::Stream {
            name: "a/b".into(),
            reader: &mut data.as_slice(),
        },
    )
    .unwrap_err();
    assert_eq!(
        (err.class(), err.kind()),
        (ErrorClass::Config, "backup.bad_name")
    );
}

#[test]
fn documents_become_directories_and_files() {
    let env = Env::init_small();
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let docs = vec![
        Document::new(
            "namespaces/web/deployments/api.yaml",
            b"kind: Deployment\n".to_vec(),
        ),
        Document {
            mode: Some(0o600),
            mtime: Some(mtime),
            ..Document::new(
                "namespaces/web/secrets/token.yaml",
                b"kind: Secret\n".to_vec(),
            )
        },
        Document::new("cluster.yaml", random_bytes(300_000, 4)),
        Document::new("namespaces/empty.yaml", Vec::new()),
    ];
    let report = backup_of(
        &env,
        BackupSource::Documents {
            label: "k8s:cluster".into(),
            documents: docs.clone(),
        },
    )
    .unwrap();
    assert_eq!(report.snapshot.paths, vec!["k8s:cluster".to_string()]);
    assert_eq!(report.snapshot.summary.total_files, 4);
    env.ok(&["check", "--read-data"]);
    let out = env.path("out");
    env.restore_verified(&out);
    for d in &docs {
        assert_eq!(fs::read(out.join(&d.path)).unwrap(), d.data, "{}", d.path);
    }
    let secret = fs::metadata(out.join("namespaces/web/secrets/token.yaml")).unwrap();
    assert_eq!(secret.mode() & 0o7777, 0o600);
    assert_eq!(secret.mtime(), 1_700_000_000);
    assert!(out.join("namespaces/web/deployments").is_dir());

    for bad in [
        vec![Document::new("a", "x"), Document::new("a/b", "y")],
        vec![Document::new("a/b", "x"), Document::new("a", "y")],
        vec![Document::new("a", "x"), Document::new("a", "y")],
    ] {
        let err = backup_of(
            &env,
            BackupSource::Documents {
                label: "bad".into(),
                documents: bad,
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), "backup.document_conflict", "{err}");
    }
    for path in ["a//b", "../x", "/abs", ""] {
        let err = backup_of(
            &env,
            BackupSource::Documents {
                label: "bad".into(),
                documents: vec![Document::new(path, "x")],
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), "backup.bad_name", "{path:?}: {err}");
    }
}

/// A streamed document source: directories closed as the producer leaves them, times taken
/// from the documents so an unchanged stream gives the same trees, and the producer's and the
/// order's errors stop the backup without a snapshot.
#[test]
fn document_streams_close_directories_and_deduplicate() {
    let env = Env::init_small();
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let doc = |path: &str, data: &str| {
        Ok(DocumentEvent::Document(Document {
            mtime: Some(mtime),
            ..Document::new(path, data.as_bytes().to_vec())
        }))
    };
    let close = |path: &str| Ok(DocumentEvent::CloseDir(path.to_string()));
    let stream = || -> Vec<Result<DocumentEvent, ProducerError>> {
        let mut events = Vec::new();
        for ns in ["a", "b"] {
            for i in 0..50 {
                events.push(doc(
                    &format!("resources/configmaps/namespaces/{ns}/cm-{i}.json"),
                    &format!("{{\"n\":{i}}}"),
                ));
            }
        }
        events.push(close("resources/configmaps"));
        events.push(close("resources/never-seen"));
        events.push(doc("resources/namespaces/cluster/a.json", "{}"));
        // Closing a path that names a file leaves the file as it is.
        events.push(close("resources/namespaces/cluster/a.json"));
        events
    };
    let run = |events: Vec<Result<DocumentEvent, ProducerError>>| {
        let mut events = events.into_iter();
        backup_of(
            &env,
            BackupSource::DocumentStream {
                label: "k8s:test".into(),
                events: &mut events,
            },
        )
    };
    let first = run(stream()).unwrap();
    assert_eq!(first.snapshot.summary.total_files, 101);
    let second = run(stream()).unwrap();
    assert_eq!(
        second.snapshot.tree, first.snapshot.tree,
        "same documents, same trees"
    );
    assert_eq!(second.snapshot.summary.bytes_added, 0);
    env.ok(&["check", "--read-data"]);
    let out = env.path("out");
    env.restore_verified(&out);
    assert_eq!(
        fs::read_to_string(out.join("resources/configmaps/namespaces/b/cm-7.json")).unwrap(),
        "{\"n\":7}"
    );
    assert_eq!(
        fs::read_to_string(out.join("resources/namespaces/cluster/a.json")).unwrap(),
        "{}"
    );
    let dir = fs::metadata(out.join("resources/configmaps")).unwrap();
    assert_eq!(
        dir.mtime(),
        1_700_000_000,
        "a directory's time is its latest entry's"
    );

    let snapshots = env.ok(&["snapshots", "--json"]);
    let late = run(vec![
        doc("resources/pods/namespaces/a/p.json", "{}"),
        close("resources/pods"),
        doc("resources/pods/namespaces/b/q.json", "{}"),
    ])
    .unwrap_err();
    assert_eq!(late.kind(), "backup.document_order", "{late}");
    let failed = run(vec![
        doc("x.json", "{}"),
        Err("the API server went away".into()),
    ])
    .unwrap_err();
    assert_eq!(failed.kind(), "backup.producer_failed");
    assert!(failed.to_string().contains("went away"), "{failed}");
    assert_eq!(
        env.ok(&["snapshots", "--json"]),
        snapshots,
        "no snapshot from a failed stream"
    );
}

/// An image of `size` bytes with data at a few places and holes elsewhere.
fn sparse_image(path: &Path, size: u64) -> Vec<(u64, Vec<u8>)> {
    let f = fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let parts = vec![
        (0, random_bytes(1 << 20, 1)),
        (size / 2, random_bytes(3 << 20, 2)),
        (size - (1 << 20), random_bytes(1 << 20, 3)),
    ];
    for (at, data) in &parts {
        f.write_all_at(data, *at).unwrap();
    }
    parts
}

#[test]
fn a_regular_file_round_trips_as_a_device_and_its_holes_stay_cheap() {
    let env = Env::init_small();
    let size = 64 << 20;
    let image = env.path("disk.img");
    sparse_image(&image, size);
    let want = fs::read(&image).unwrap();
    let report = backup_of(
        &env,
        BackupSource::Device {
            path: image.clone(),
            name: None,
        },
    )
    .unwrap();
    let s = &report.snapshot.summary;
    assert_eq!(s.total_bytes, size);
    // Only the data regions (5 MiB) were read, where the file system reports holes.
    let fs_reports_holes = fs::metadata(&image).unwrap().blocks() * 512 < size;
    if fs_reports_holes {
        assert!(s.bytes_read <= 6 << 20, "read {} bytes", s.bytes_read);
    }
    env.ok(&["check", "--read-data"]);
    let repo = open(&env);
    let snap = latest(&repo);

    // In place over a file of the same size full of other bytes: the holes are zeroed.
    let dirty = env.path("dirty.img");
    fs::write(&dirty, vec![0xa5u8; size as usize]).unwrap();
    let r = restore::run(
        &repo,
        &snap,
        RestoreTarget::InPlace(dirty.clone()),
        &RestoreOptions {
            verify: true,
            ..Default::default()
        },
        &Control::new(),
    )
    .unwrap();
    assert_eq!((r.files, r.bytes, r.verified_files), (1, size, 1));
    assert!(
        fs::read(&dirty).unwrap() == want,
        "in-place restore differs"
    );

    // In place over an empty sparse file: holes stay holes.
    let fresh = env.path("fresh.img");
    fs::File::create(&fresh).unwrap().set_len(size).unwrap();
    restore::run(
        &repo,
        &snap,
        RestoreTarget::InPlace(fresh.clone()),
        &RestoreOptions::default(),
        &Control::new(),
    )
    .unwrap();
    assert!(
        fs::read(&fresh).unwrap() == want,
        "in-place restore differs"
    );
    if fs_reports_holes {
        let allocated = fs::metadata(&fresh).unwrap().blocks() * 512;
        assert!(allocated < 16 << 20, "{allocated} bytes allocated");
    }

    // A target of another size is refused, and left alone.
    let small = env.path("small.img");
    fs::write(&small, b"short").unwrap();
    let err = restore::run(
        &repo,
        &snap,
        RestoreTarget::InPlace(small.clone()),
        &RestoreOptions::default(),
        &Control::new(),
    )
    .unwrap_err();
    assert!(matches!(err, RestoreError::SizeMismatch { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Config);
    assert_eq!(fs::read(&small).unwrap(), b"short");
}

/// A loop device over a file, detached when dropped.
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Option<Loop> {
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show", file.to_str().unwrap()])
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "NOTICE: skipping the loop device test: losetup refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Loop(
            String::from_utf8(out.stdout).unwrap().trim().to_string(),
        ))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.0])
            .status();
    }
}

#[test]
fn a_block_device_round_trips_in_place() {
    let env = Env::init_small();
    let size = 32 << 20;
    let image = env.path("source.img");
    sparse_image(&image, size);
    let want = fs::read(&image).unwrap();
    let target_image = env.path("target.img");
    fs::write(&target_image, vec![0x5au8; size as usize]).unwrap();
    let Some(source) = Loop::attach(&image) else {
        return;
    };
    let Some(target) = Loop::attach(&target_image) else {
        return;
    };
    let report = backup_of(
        &env,
        BackupSource::Device {
            path: PathBuf::from(&source.0),
            name: Some("disk".into()),
        },
    )
    .unwrap();
    assert_eq!(report.snapshot.summary.total_bytes, size);
    env.ok(&["check", "--read-data"]);
    let repo = open(&env);
    let r = restore::run(
        &repo,
        &latest(&repo),
        RestoreTarget::InPlace(PathBuf::from(&target.0)),
        &RestoreOptions {
            verify: true,
            ..Default::default()
        },
        &Control::new(),
    )
    .unwrap();
    assert_eq!((r.bytes, r.verified_files), (size, 1));
    let mut got = vec![0u8; size as usize];
    fs::File::open(&target.0)
        .unwrap()
        .read_exact(&mut got)
        .unwrap();
    assert!(got == want, "the device's content differs");
    // Through a directory target too, as a regular file.
    let out = env.path("out");
    env.restore_verified(&out);
    assert!(fs::read(out.join("disk")).unwrap() == want);
}

/// A file that `lstat` shows as a regular file but that no one, root included, may open for
/// reading: a write-only sysfs attribute (kernfs refuses to open those for reading with EACCES
/// whatever the caller's capabilities).
fn unreadable_for_root() -> Option<PathBuf> {
    let mut stack = vec![PathBuf::from("/sys/bus"), PathBuf::from("/sys/class")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            seen += 1;
            if seen > 20_000 {
                return None;
            }
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() && stack.len() < 64 {
                stack.push(e.path());
            } else if m.is_file()
                && m.permissions().mode() & 0o777 == 0o200
                && fs::File::open(e.path()).is_err()
            {
                return Some(e.path());
            }
        }
    }
    None
}

#[test]
fn an_unreadable_file_is_a_typed_warning() {
    let Some(unreadable) = unreadable_for_root() else {
        eprintln!("NOTICE: skipping: no write-only sysfs attribute here");
        return;
    };
    let env = Env::init_small();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("ok.txt"), b"fine").unwrap();
    let report = backup_of(
        &env,
        BackupSource::Paths(vec![src.clone(), unreadable.clone()]),
    )
    .unwrap();
    assert!(report.snapshot.incomplete);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    let w = &report.warnings[0];
    assert_eq!(w.path, unreadable);
    assert_eq!(w.operation, Operation::Open);
    assert_eq!(w.class, ErrorClass::Config);
    let denied = std::io::Error::from_raw_os_error(libc::EACCES).to_string();
    assert_eq!(w.message, denied);
    assert_eq!(w.to_string(), format!("{}: {denied}", unreadable.display()));
    env.ok(&["check", "--read-data"]);
    let out = env.path("out");
    env.restore_verified(&out);
    assert_eq!(fs::read(out.join("src/ok.txt")).unwrap(), b"fine");
}

#[test]
fn errors_have_classes_and_kinds() {
    let env = Env::init_small();
    let missing = env.path("missing");
    let err = backup_of(&env, BackupSource::Paths(vec![missing])).unwrap_err();
    assert_eq!(err.kind(), "backup.source_not_found");
    let err = backup_of(&env, BackupSource::Paths(vec![])).unwrap_err();
    assert_eq!(
        (err.class(), err.kind()),
        (ErrorClass::Config, "backup.no_paths")
    );
    let a = env.path("a/x");
    let b = env.path("b/x");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    let err = backup_of(&env, BackupSource::Paths(vec![a, b])).unwrap_err();
    assert_eq!(err.kind(), "backup.duplicate_name");
    let err = backup_of(
        &env,
        BackupSource::Device {
            path: env.path("a"),
            name: None,
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), "backup.not_a_device");

    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), b"x").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let repo = open(&env);
    let snap = latest(&repo);
    let run = |target, opts: &RestoreOptions| {
        restore::run(&repo, &snap, target, opts, &Control::new()).unwrap_err()
    };
    let not_empty = env.path("a");
    let err = run(
        RestoreTarget::Directory(not_empty),
        &RestoreOptions::default(),
    );
    assert_eq!(
        (err.class(), err.kind()),
        (ErrorClass::Config, "restore.target_not_empty")
    );
    assert!(!err.to_string().contains("--"), "CLI advice in {err}");
    let (mut sink1, mut sink2) = (Vec::new(), Vec::new());
    let sub = |p: &str| RestoreOptions {
        subpath: Some(p.into()),
        ..Default::default()
    };
    let err = run(RestoreTarget::Stream(&mut sink1), &sub("src/d"));
    assert_eq!(err.kind(), "restore.not_a_file");
    let err = run(RestoreTarget::Stream(&mut sink2), &sub("src/nope"));
    assert_eq!(err.kind(), "restore.no_such_path");
    let bad = RestoreOptions {
        includes: vec!["[".into()],
        ..Default::default()
    };
    let err = run(RestoreTarget::Directory(env.path("new")), &bad);
    assert_eq!(err.kind(), "restore.bad_pattern");
}
