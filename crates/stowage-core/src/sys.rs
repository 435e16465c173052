//! Safe wrappers of the few system calls the engine makes that the standard library does not
//! offer. Where `nix` has the call it is used; the rest is the only `unsafe` code of the engine,
//! each block with the reason it is sound.
#![allow(unsafe_code)]

use nix::fcntl::{FallocateFlags, FcntlArg, OFlag, PosixFadviseAdvice};
use nix::unistd::Whence;
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

fn io_err(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Sets or clears `O_DIRECT` on an open file.
pub fn set_direct_io(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    let flags = OFlag::from_bits_retain(nix::fcntl::fcntl(fd, FcntlArg::F_GETFL).map_err(io_err)?);
    let flags = if on {
        flags | OFlag::O_DIRECT
    } else {
        flags & !OFlag::O_DIRECT
    };
    nix::fcntl::fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io_err)?;
    Ok(())
}

/// Asks the kernel to start reading `len` bytes at `offset` into the page cache
/// (`POSIX_FADV_WILLNEED`); it returns without waiting. Errors are ignored: it is a hint.
pub fn will_need(file: &File, offset: u64, len: u64) {
    let _ = nix::fcntl::posix_fadvise(
        file.as_raw_fd(),
        offset as libc::off_t,
        len as libc::off_t,
        PosixFadviseAdvice::POSIX_FADV_WILLNEED,
    );
}

/// Asks the kernel to drop the file's clean pages from the page cache (`POSIX_FADV_DONTNEED`).
pub fn drop_cached(file: &File) -> io::Result<()> {
    nix::fcntl::posix_fadvise(
        file.as_raw_fd(),
        0,
        0,
        PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .map_err(io_err)
}

/// Allocates `len` bytes at `offset` (`fallocate` mode 0): bytes already there are unchanged.
pub fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    nix::fcntl::fallocate(
        file.as_raw_fd(),
        FallocateFlags::empty(),
        offset as libc::off_t,
        len as libc::off_t,
    )
    .map_err(io_err)
}

/// The size of an open regular file or block device: where its end is (`lseek(SEEK_END)`,
/// which block devices answer with their size, as `BLKGETSIZE64` would). Leaves the file's
/// offset at its start.
pub fn device_size(file: &mut File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let size = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    Ok(size)
}

/// Deallocates `len` bytes at `offset` of a file or block device, keeping its size
/// (`fallocate(PUNCH_HOLE | KEEP_SIZE)`): they read as zeros afterwards. Fails with
/// `EOPNOTSUPP` (or `EINVAL`, `ENODEV`) where the file system or device cannot.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    nix::fcntl::fallocate(
        file.as_raw_fd(),
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        offset as libc::off_t,
        len as libc::off_t,
    )
    .map_err(io_err)
}

/// Where the next data (`data: true`, `SEEK_DATA`) or hole (`SEEK_HOLE`) starts at or after
/// `offset`; `Ok(None)` when there is none (`ENXIO`).
pub fn seek_data_or_hole(file: &File, offset: u64, data: bool) -> io::Result<Option<u64>> {
    let whence = if data {
        Whence::SeekData
    } else {
        Whence::SeekHole
    };
    match nix::unistd::lseek(file.as_raw_fd(), offset as libc::off_t, whence) {
        Ok(p) => Ok(Some(p as u64)),
        Err(nix::Error::ENXIO) => Ok(None),
        Err(e) => Err(io_err(e)),
    }
}

/// Creates a FIFO, socket or device node at `path` (`mknod`); `file_type` is the `S_IF*` bits,
/// `perm` the permission bits.
pub fn make_node(path: &Path, file_type: u32, perm: u32, rdev: u64) -> io::Result<()> {
    let kind = nix::sys::stat::SFlag::from_bits_retain(file_type as libc::mode_t);
    let perm = nix::sys::stat::Mode::from_bits_retain(perm as libc::mode_t);
    nix::sys::stat::mknod(path, kind, perm, rdev as libc::dev_t).map_err(io_err)
}

/// Pages of the file in the page cache, by `cachestat(2)` (Linux 6.5+); `None` when it is not
/// available.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn cached_pages(file: &File) -> Option<u64> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    // The same number on both architectures (the generic system call table).
    const SYS_CACHESTAT: libc::c_long = 451;
    let range = Range { off: 0, len: 0 };
    let mut stat = Stat::default();
    // SAFETY: cachestat reads `range` and writes `stat`, both live, correctly laid out
    // structures; a kernel without it returns ENOSYS.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0,
        )
    };
    (rc == 0).then_some(stat.nr_cache)
}

/// Pages of the file in the page cache: not known on this platform.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub fn cached_pages(_file: &File) -> Option<u64> {
    None
}

/// Makes glibc serve allocations of `bytes` and more from their own mappings, returned to the
/// system when freed, instead of raising that threshold each time such a block is freed (after
/// which they come from per-thread heaps that keep their free space). Call it before starting
/// threads. Does nothing on other C libraries.
pub fn fix_mmap_threshold(bytes: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}
