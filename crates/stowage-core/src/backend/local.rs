//! A repository in a local directory. Writes go to a temporary file that is fsynced, renamed into
//! place and followed by an fsync of the directory, so a crash never leaves a partial file under
//! a final name.

use super::{Backend, BackendError, FileInfo, FileKind, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Files of at least this size (packs) are written with direct I/O: no copy into the page
/// cache, whose pages would only be written back and then sit there (the kernel's copy and
/// writeback were a tenth of a backup's CPU time); they are rarely read again soon.
const DIRECT_WRITE_MIN: usize = 1 << 20;
/// Direct writes go through an aligned buffer of this size.
const BOUNCE_LEN: usize = 1 << 20;

thread_local! {
    /// The aligned staging buffer of this thread's direct writes.
    static BOUNCE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Creates `path` (which must not exist) holding `data`, durably (fsynced).
fn write_new_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let create = |flags| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(flags)
            .open(path)
    };
    let (f, written) = if data.len() >= DIRECT_WRITE_MIN {
        let f = match create(libc::O_DIRECT) {
            // File systems without direct I/O refuse the flag.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => create(0)?,
            r => r?,
        };
        let written = write_direct(&f, data)?;
        (f, written)
    } else {
        (create(0)?, 0)
    };
    use std::os::unix::fs::FileExt;
    if written < data.len() {
        crate::util::set_direct_io(&f, false)?;
        f.write_all_at(&data[written..], written as u64)?;
    }
    f.sync_all()
}

/// Writes the whole blocks of `data` at the start of `f` (opened with `O_DIRECT`, or not: then
/// nothing is written) through an aligned buffer; returns how many bytes it wrote.
fn write_direct(f: &File, data: &[u8]) -> std::io::Result<usize> {
    use crate::util::DIRECT_IO_ALIGN as ALIGN;
    use std::os::unix::fs::FileExt;
    let whole = data.len() / ALIGN * ALIGN;
    BOUNCE.with(|cell| {
        let mut backing = cell.borrow_mut();
        if backing.is_empty() {
            *backing = vec![0u8; BOUNCE_LEN + ALIGN];
        }
        let base = backing.as_ptr().align_offset(ALIGN).min(ALIGN);
        let bounce = &mut backing[base..base + BOUNCE_LEN];
        let mut done = 0;
        while done < whole {
            let n = BOUNCE_LEN.min(whole - done);
            bounce[..n].copy_from_slice(&data[done..done + n]);
            match f.write_all_at(&bounce[..n], done as u64) {
                Ok(()) => done += n,
                // Not opened for direct I/O after all, or refused now: the caller writes
                // the rest through the page cache.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    })
}

/// A repository rooted at a directory of the local file system.
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend for the repository at `root` (which need not exist yet: `create` makes it).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        self.root.join(kind.relative_path(name))
    }

    fn io(op: &'static str, path: &Path, source: std::io::Error) -> BackendError {
        BackendError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }

    fn not_found_or<'a>(
        kind: FileKind,
        name: &'a str,
        op: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> BackendError + 'a {
        let path = path.to_path_buf();
        move |e| {
            if e.kind() == ErrorKind::NotFound {
                BackendError::NotFound {
                    kind,
                    name: name.to_string(),
                }
            } else {
                Self::io(op, &path, e)
            }
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        let config = self.path(FileKind::Config, "");
        if config.exists() {
            return Err(BackendError::AlreadyExists {
                kind: FileKind::Config,
                name: "config".into(),
            });
        }
        fs::create_dir_all(&self.root).map_err(|e| Self::io("create directory", &self.root, e))?;
        for kind in FileKind::FOLDERS {
            let dir = self.root.join(kind.dir_name());
            fs::create_dir_all(&dir).map_err(|e| Self::io("create directory", &dir, e))?;
        }
        for i in 0..=255u8 {
            let dir = self.root.join("data").join(format!("{i:02x}"));
            fs::create_dir_all(&dir).map_err(|e| Self::io("create directory", &dir, e))?;
        }
        sync_dir(&self.root).map_err(|e| Self::io("sync directory", &self.root, e))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>> {
        let top = self.root.join(kind.dir_name());
        if kind == FileKind::Config {
            return Ok(match fs::metadata(&top) {
                Ok(m) => vec![FileInfo {
                    name: "config".into(),
                    size: m.len(),
                }],
                Err(_) => vec![],
            });
        }
        let dirs: Vec<PathBuf> = if kind == FileKind::Pack {
            let mut v = Vec::new();
            for e in fs::read_dir(&top).map_err(|e| Self::io("list", &top, e))? {
                let e = e.map_err(|e| Self::io("list", &top, e))?;
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    v.push(e.path());
                }
            }
            v
        } else {
            vec![top]
        };
        let mut out = Vec::new();
        for dir in dirs {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Self::io("list", &dir, e)),
            };
            for e in rd {
                let e = e.map_err(|e| Self::io("list", &dir, e))?;
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                // Temporary files of writes in progress (or interrupted) are not repository files.
                if name.starts_with('.') {
                    continue;
                }
                let meta = match e.metadata() {
                    Ok(m) => m,
                    // Removed between listing and looking: not there any more.
                    Err(err) if err.kind() == ErrorKind::NotFound => continue,
                    Err(err) => return Err(Self::io("stat", &e.path(), err)),
                };
                if meta.is_file() {
                    out.push(FileInfo {
                        name,
                        size: meta.len(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let p = self.path(kind, name);
        let mut f = File::open(&p).map_err(Self::not_found_or(kind, name, "open", &p))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| Self::io("read", &p, e))?;
        Ok(buf)
    }

    fn will_read(&self, kind: FileKind, name: &str, offset: u64, len: u64) {
        let Ok(f) = File::open(self.path(kind, name)) else {
            return;
        };
        crate::sys::will_need(&f, offset, len);
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_range_into(kind, name, offset, len, &mut buf)?;
        Ok(buf)
    }

    fn read_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let p = self.path(kind, name);
        let mut f = File::open(&p).map_err(Self::not_found_or(kind, name, "open", &p))?;
        let size = f.metadata().map_err(|e| Self::io("stat", &p, e))?.len();
        let short = || BackendError::ShortRead {
            kind,
            name: name.to_string(),
            offset,
            len,
        };
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(short());
        }
        // Read into spare capacity: no zero-fill of a buffer about to be overwritten.
        buf.clear();
        buf.reserve_exact(usize::try_from(len).map_err(|_| short())?);
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Self::io("seek", &p, e))?;
        (&mut f)
            .take(len)
            .read_to_end(buf)
            .map_err(|e| Self::io("read", &p, e))?;
        if buf.len() as u64 != len {
            return Err(short());
        }
        Ok(())
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()> {
        let p = self.path(kind, name);
        let dir = p
            .parent()
            .expect("repository paths have a parent")
            .to_path_buf();
        let file_name = p
            .file_name()
            .expect("repository paths have a name")
            .to_string_lossy();
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            file_name,
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let result = write_new_file(&tmp, data);
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            if e.kind() == ErrorKind::NotFound {
                return Err(BackendError::MissingFolder {
                    path: dir.display().to_string(),
                });
            }
            return Err(Self::io("write", &tmp, e));
        }
        if exclusive {
            // link(2) fails if the target exists, which rename(2) would silently replace.
            let r = fs::hard_link(&tmp, &p);
            let _ = fs::remove_file(&tmp);
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(BackendError::AlreadyExists {
                        kind,
                        name: name.to_string(),
                    })
                }
                Err(e) => return Err(Self::io("link", &p, e)),
            }
        } else if let Err(e) = fs::rename(&tmp, &p) {
            let _ = fs::remove_file(&tmp);
            return Err(Self::io("rename", &p, e));
        }
        sync_dir(&dir).map_err(|e| Self::io("sync directory", &dir, e))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let p = self.path(kind, name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io("remove", &p, e)),
        }
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let p = self.path(kind, name);
        let mut f = File::open(&p).map_err(Self::not_found_or(kind, name, "open", &p))?;
        f.seek(SeekFrom::End(0))
            .map_err(|e| Self::io("stat", &p, e))
    }

    /// One: a pack reaches the page cache far faster than a backup fills the next one, so a
    /// second upload thread would only keep a second pack in memory.
    fn preferred_uploaders(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        (dir, b)
    }

    #[test]
    fn write_then_read_whole_and_range() {
        let (_d, b) = backend();
        b.write(FileKind::Pack, "ab12", b"hello world", false)
            .unwrap();
        assert_eq!(b.read(FileKind::Pack, "ab12").unwrap(), b"hello world");
        assert_eq!(
            b.read_range(FileKind::Pack, "ab12", 6, 5).unwrap(),
            b"world"
        );
        assert_eq!(b.size(FileKind::Pack, "ab12").unwrap(), 11);
        assert_eq!(b.list(FileKind::Pack).unwrap().len(), 1);
    }

    #[test]
    fn large_files_written_directly_read_back_whole() {
        let (_d, b) = backend();
        for (i, len) in [
            DIRECT_WRITE_MIN,
            DIRECT_WRITE_MIN + 1,
            3 * BOUNCE_LEN + 4097,
        ]
        .into_iter()
        .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|j| (j * 31 + j / 4096 + i) as u8).collect();
            let name = format!("ab{i}0");
            b.write(FileKind::Pack, &name, &data, false).unwrap();
            assert_eq!(b.read(FileKind::Pack, &name).unwrap(), data, "{len} bytes");
        }
    }

    #[test]
    fn range_past_end_is_an_error() {
        let (_d, b) = backend();
        b.write(FileKind::Index, "x", b"abc", false).unwrap();
        assert!(matches!(
            b.read_range(FileKind::Index, "x", 2, 5),
            Err(BackendError::ShortRead { .. })
        ));
    }

    #[test]
    fn exclusive_write_refuses_to_overwrite() {
        let (_d, b) = backend();
        b.write(FileKind::Config, "", b"one", true).unwrap();
        assert!(matches!(
            b.write(FileKind::Config, "", b"two", true),
            Err(BackendError::AlreadyExists { .. })
        ));
        assert_eq!(b.read(FileKind::Config, "").unwrap(), b"one");
    }

    #[test]
    fn missing_file_is_not_found() {
        let (_d, b) = backend();
        assert!(matches!(
            b.read(FileKind::Snapshot, "nope"),
            Err(BackendError::NotFound { .. })
        ));
        assert!(!b.exists(FileKind::Snapshot, "nope").unwrap());
    }

    #[test]
    fn create_twice_fails() {
        let (_d, b) = backend();
        b.write(FileKind::Config, "", b"c", true).unwrap();
        assert!(b.create().is_err());
    }

    #[test]
    fn temporary_files_are_not_listed() {
        let (_d, b) = backend();
        fs::write(b.root.join("index/.partial.tmp-1"), b"x").unwrap();
        assert!(b.list(FileKind::Index).unwrap().is_empty());
    }
}
