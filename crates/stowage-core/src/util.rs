//! Small helpers about the host, shared by several layers.

/// Alignment of direct I/O (buffer address, file offset, length): 4 KiB covers every logical
/// block size in use.
pub const DIRECT_IO_ALIGN: usize = 4096;

pub use crate::sys::set_direct_io;

/// This machine's host name, or "unknown".
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The name of the user running the process, or its numeric uid.
pub fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// The first 8 characters of a file name, as shown in messages (whole names if shorter; never
/// splits a character).
pub fn short_name(name: &str) -> &str {
    match name.char_indices().nth(8) {
        Some((i, _)) => &name[..i],
        None => name,
    }
}

/// Formats a byte count with binary units ("1.5 MiB").
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_name_never_splits_characters() {
        assert_eq!(super::short_name("0123456789abcdef"), "01234567");
        assert_eq!(super::short_name("abc"), "abc");
        assert_eq!(super::short_name("aaaaaaa\u{e9}bc"), "aaaaaaa\u{e9}");
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.50 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.00 GiB");
    }
}
