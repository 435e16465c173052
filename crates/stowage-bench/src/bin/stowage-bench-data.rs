//! Deterministic data set for the end-to-end benchmark (`scripts/bench.sh`, issue 6).
//!
//! `stowage-bench-data generate --out DIR [--seed N] [--scale F]` writes, from the seed alone:
//! - `DIR/tree/`: ~40k small and medium files totalling ~1 GiB (text-like, JSON-like, ~15%
//!   incompressible random bytes, ~2% empty) in ~1000 directories, plus ~3% symlinks;
//! - `DIR/volume.img`: a 2 GiB database-like volume image of 8 KiB pages, in runs of zero pages
//!   (written as zeros, not holes), compressible row pages and random pages;
//! - `DIR/app.log`: a 256 MiB text log.
//!
//! `stowage-bench-data change --out DIR [--seed N] [--scale F]` applies a deterministic "day of
//! change" to a freshly generated set: 1% of the image's pages overwritten (half spread
//! uniformly, half in hot runs), bytes inserted into the middle of 1% of the files, 1% edited in
//! place, 0.5% rewritten, 0.5% deleted, 1% only touched, 1% new files, and the log appended by
//! 1/32 of its size.
//!
//! `--scale` multiplies every count and size (e.g. 0.01 for a 1/100 run). Content and file
//! times depend only on the seed and the scale, so two runs give byte-identical trees. The
//! generator is outside the library layers on purpose: it only writes files.

use rayon::prelude::*;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const PAGE: usize = 8192;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// File times of the generated set: 2023-11-14, one second apart per file.
const BASE_TIME: i64 = 1_700_000_000;
/// File times of the day of change.
const CHANGE_TIME: i64 = BASE_TIME + 86_400 * 30;
const STATE_FILE: &str = "bench-state.json";

// ---------------------------------------------------------------------------------------------
// Random numbers: wyrand, seeded per stream so that every file and block is independent.

#[derive(Clone)]
struct Rng(u64);

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    fn new(seed: u64, stream: u64, index: u64) -> Rng {
        Rng(splitmix(splitmix(seed ^ splitmix(stream)) ^ index))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    fn range(&mut self, lo: u64, hi_incl: u64) -> u64 {
        lo + self.below(hi_incl - lo + 1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform in `lo..=hi`.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let v = self.next().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&v[..n]);
    }
}

// Stream ids, so no two kinds of content share random numbers.
const S_PLAN: u64 = 1;
const S_FILE: u64 = 2;
const S_VOLUME_LAYOUT: u64 = 3;
const S_PAGE: u64 = 4;
const S_LOG: u64 = 5;
const S_WORDS: u64 = 6;
const S_CHANGE: u64 = 7;
const S_CHANGE_FILE: u64 = 8;
const S_CHANGE_PAGE: u64 = 9;
const S_LOG_APPEND: u64 = 10;

// ---------------------------------------------------------------------------------------------
// Text-like content from a seeded vocabulary with a skewed word frequency.

struct Words {
    words: Vec<Vec<u8>>,
}

impl Words {
    fn new(seed: u64) -> Words {
        let mut r = Rng::new(seed, S_WORDS, 0);
        let words = (0..4096)
            .map(|_| {
                let len = r.range(2, 10) as usize;
                (0..len).map(|_| b'a' + r.below(26) as u8).collect()
            })
            .collect();
        Words { words }
    }

    /// A word, frequent ones far more often than rare ones.
    fn pick(&self, r: &mut Rng) -> &[u8] {
        let n = r.below(self.words.len() as u64) + 1;
        let k = r.below(n);
        &self.words[k as usize]
    }

    fn text(&self, r: &mut Rng, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size + 64);
        while out.len() < size {
            let n = r.range(4, 16);
            for i in 0..n {
                let w = self.pick(r);
                if i == 0 {
                    out.push(w[0].to_ascii_uppercase());
                    out.extend_from_slice(&w[1..]);
                } else {
                    out.push(b' ');
                    out.extend_from_slice(w);
                }
            }
            out.extend_from_slice(if r.below(8) == 0 { b".\n\n" } else { b". " });
        }
        out.truncate(size);
        out
    }

    fn json(&self, r: &mut Rng, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size + 256);
        out.extend_from_slice(b"[\n");
        let mut id = r.below(1_000_000);
        while out.len() < size {
            id += r.range(1, 20);
            let _ = write!(
                out,
                "  {{\"id\": {id}, \"name\": \"{} {}\", \"email\": \"{}@{}.example\", \
                 \"active\": {}, \"score\": {}.{:03}, \"tags\": [\"{}\", \"{}\"], \
                 \"created\": \"2024-{:02}-{:02}T{:02}:{:02}:{:02}Z\", \"note\": \"",
                S(self.pick(r)),
                S(self.pick(r)),
                S(self.pick(r)),
                S(self.pick(r)),
                r.below(2) == 0,
                r.below(1000),
                r.below(1000),
                S(self.pick(r)),
                S(self.pick(r)),
                r.range(1, 12),
                r.range(1, 28),
                r.below(24),
                r.below(60),
                r.below(60),
            );
            for _ in 0..r.below(6) {
                out.extend_from_slice(self.pick(r));
                out.push(b' ');
            }
            out.extend_from_slice(b"\"},\n");
        }
        out.truncate(size);
        out
    }
}

/// Bytes that are known to be ASCII letters, for `write!`.
struct S<'a>(&'a [u8]);

impl std::fmt::Display for S<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(self.0).unwrap_or("?"))
    }
}

// ---------------------------------------------------------------------------------------------
// The plan: every path, kind and size, computed from the seed without writing anything.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Text,
    Json,
    Random,
    Empty,
    Symlink,
}

#[derive(Clone, Debug)]
struct Entry {
    rel: String,
    kind: Kind,
    size: u64,
    /// Symlink target (relative).
    target: String,
}

const FILES_PER_DIR: usize = 40;
const DIRS_PER_GROUP: usize = 32;

fn dir_of(i: usize) -> String {
    let leaf = i / FILES_PER_DIR;
    format!(
        "group-{:02}/dir-{:03}",
        leaf / DIRS_PER_GROUP,
        leaf % DIRS_PER_GROUP
    )
}

fn ext(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "txt",
        Kind::Json => "json",
        Kind::Random => "bin",
        Kind::Empty => "empty",
        Kind::Symlink => "lnk",
    }
}

fn draw_kind(r: &mut Rng) -> Kind {
    match r.below(1000) {
        0..=449 => Kind::Text,
        450..=799 => Kind::Json,
        800..=949 => Kind::Random,
        950..=969 => Kind::Empty,
        _ => Kind::Symlink,
    }
}

/// A raw size before normalisation: mostly small files, a few larger ones.
fn draw_size(r: &mut Rng) -> f64 {
    if r.below(1000) < 5 {
        r.log_uniform(256.0 * 1024.0, 8.0 * 1024.0 * 1024.0)
    } else {
        r.log_uniform(16.0, 128.0 * 1024.0)
    }
}

struct Plan {
    seed: u64,
    scale: f64,
    entries: Vec<Entry>,
    pages: u64,
    log_size: u64,
}

impl Plan {
    fn new(seed: u64, scale: f64) -> Plan {
        let n = ((40_000.0 * scale).round() as usize).max(20);
        let tree_bytes = GIB * scale;
        let mut r = Rng::new(seed, S_PLAN, 0);
        let mut entries: Vec<Entry> = (0..n)
            .map(|i| {
                let kind = draw_kind(&mut r);
                let raw = draw_size(&mut r);
                let rel = format!("{}/file-{i:05}.{}", dir_of(i), ext(kind));
                // Filled in below, once every entry's name is known.
                let target = if kind == Kind::Symlink {
                    r.below(n as u64).to_string()
                } else {
                    String::new()
                };
                Entry {
                    rel,
                    kind,
                    size: raw as u64,
                    target,
                }
            })
            .collect();
        for i in 0..n {
            if entries[i].kind == Kind::Symlink {
                let j: usize = entries[i].target.parse().expect("index set above");
                entries[i].target = format!("../../{}", entries[j].rel);
            }
        }
        let sized = |e: &Entry| matches!(e.kind, Kind::Text | Kind::Json | Kind::Random);
        let raw_total: f64 = entries
            .iter()
            .filter(|e| sized(e))
            .map(|e| e.size as f64)
            .sum();
        let factor = tree_bytes / raw_total.max(1.0);
        for e in &mut entries {
            e.size = if sized(e) {
                ((e.size as f64 * factor) as u64).max(1)
            } else {
                0
            };
        }
        Plan {
            seed,
            scale,
            entries,
            pages: ((262_144.0 * scale).round() as u64).max(64),
            log_size: ((256.0 * 1024.0 * 1024.0 * scale) as u64).max(4096),
        }
    }

    /// The kind of every page of the volume image, in runs.
    fn page_kinds(&self) -> Vec<PageKind> {
        let mut r = Rng::new(self.seed, S_VOLUME_LAYOUT, 0);
        let mut kinds = Vec::with_capacity(self.pages as usize);
        while (kinds.len() as u64) < self.pages {
            let run = r.log_uniform(1.0, 512.0) as usize;
            let kind = match r.below(100) {
                0..=24 => PageKind::Zero,
                25..=84 => PageKind::Rows,
                _ => PageKind::Random,
            };
            for _ in 0..run {
                kinds.push(kind);
            }
        }
        kinds.truncate(self.pages as usize);
        kinds
    }
}

fn file_content(
    words: &Words,
    seed: u64,
    stream: u64,
    index: u64,
    kind: Kind,
    size: u64,
) -> Vec<u8> {
    let mut r = Rng::new(seed, stream, index);
    let size = size as usize;
    match kind {
        Kind::Text => words.text(&mut r, size),
        Kind::Json => words.json(&mut r, size),
        Kind::Random => {
            let mut v = vec![0u8; size];
            r.fill(&mut v);
            v
        }
        Kind::Empty | Kind::Symlink => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The volume image.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PageKind {
    Zero,
    Rows,
    Random,
}

/// One 8 KiB page: a header (page number, LSN, row count, checksum) and rows of a table, or
/// random bytes (compressed or encrypted columns), or zeros (free space).
fn fill_page(words: &Words, seed: u64, page: u64, version: u64, kind: PageKind, out: &mut [u8]) {
    out.fill(0);
    let mut r = Rng::new(seed, S_PAGE, page ^ (version << 40));
    match kind {
        PageKind::Zero => {}
        PageKind::Random => r.fill(out),
        PageKind::Rows => {
            let fill_to = PAGE * r.range(60, 95) as usize / 100;
            let mut pos = 24;
            let mut rows = 0u16;
            let mut row = Vec::with_capacity(256);
            while pos < fill_to {
                row.clear();
                let _ = write!(
                    row,
                    "{}|{}|{} {}|{}.{:02}|2024-{:02}-{:02}|",
                    page * 64 + rows as u64,
                    r.below(100_000),
                    S(words.pick(&mut r)),
                    S(words.pick(&mut r)),
                    r.below(10_000),
                    r.below(100),
                    r.range(1, 12),
                    r.range(1, 28)
                );
                for _ in 0..r.below(8) {
                    row.extend_from_slice(words.pick(&mut r));
                    row.push(b' ');
                }
                row.push(0);
                let n = row.len().min(fill_to.saturating_sub(pos)).min(PAGE - pos);
                out[pos..pos + n].copy_from_slice(&row[..n]);
                pos += n;
                rows += 1;
            }
            let lsn = 0x1000_0000 + page * 3 + version * 0x100_0000_0000;
            out[0..8].copy_from_slice(&page.to_le_bytes());
            out[8..16].copy_from_slice(&lsn.to_le_bytes());
            out[16..18].copy_from_slice(&rows.to_le_bytes());
            out[18..20].copy_from_slice(&(pos as u16).to_le_bytes());
            let sum = out[24..]
                .iter()
                .fold(0u32, |a, &b| a.rotate_left(5) ^ b as u32);
            out[20..24].copy_from_slice(&sum.to_le_bytes());
        }
    }
}

fn write_volume(plan: &Plan, words: &Words, path: &Path) -> io::Result<()> {
    let kinds = plan.page_kinds();
    let f = File::create(path)?;
    const BLOCK: usize = 512; // pages per parallel block (4 MiB)
    kinds
        .par_chunks(BLOCK)
        .enumerate()
        .try_for_each(|(b, block)| {
            let mut buf = vec![0u8; block.len() * PAGE];
            for (i, k) in block.iter().enumerate() {
                let page = (b * BLOCK + i) as u64;
                fill_page(
                    words,
                    plan.seed,
                    page,
                    0,
                    *k,
                    &mut buf[i * PAGE..(i + 1) * PAGE],
                );
            }
            f.write_all_at(&buf, (b * BLOCK * PAGE) as u64)
        })?;
    f.sync_all()
}

// ---------------------------------------------------------------------------------------------
// The log.

const LEVELS: [&str; 5] = ["INFO ", "INFO ", "INFO ", "WARN ", "DEBUG"];
const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];

fn log_lines(words: &Words, r: &mut Rng, start_ms: u64, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 512);
    let mut t = start_ms;
    while out.len() < size {
        t += r.below(40);
        let secs = t / 1000;
        let _ = write!(
            out,
            "2024-05-{:02}T{:02}:{:02}:{:02}.{:03}Z {} [worker-{}] {} /api/v1/{}/{} status={} bytes={} \
             dur_ms={} req={:016x}",
            1 + secs / 86_400 % 28,
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60,
            t % 1000,
            LEVELS[r.below(5) as usize],
            r.below(16),
            METHODS[r.below(4) as usize],
            S(words.pick(r)),
            r.below(100_000),
            [200, 200, 200, 201, 304, 404, 500][r.below(7) as usize],
            r.below(100_000),
            r.below(500),
            r.next()
        );
        if r.below(4) == 0 {
            out.extend_from_slice(b" msg=\"");
            for i in 0..r.range(3, 10) {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(words.pick(r));
            }
            out.push(b'"');
        }
        out.push(b'\n');
    }
    out.truncate(size);
    out
}

fn write_log(plan: &Plan, words: &Words, path: &Path) -> io::Result<()> {
    // In pieces of 8 MiB, each from its own stream, so generation runs in parallel.
    const PIECE: u64 = 8 << 20;
    let pieces = plan.log_size.div_ceil(PIECE);
    let f = File::create(path)?;
    (0..pieces).into_par_iter().try_for_each(|p| {
        let len = PIECE.min(plan.log_size - p * PIECE) as usize;
        let mut r = Rng::new(plan.seed, S_LOG, p);
        let data = log_lines(words, &mut r, p * 3_600_000, len);
        f.write_all_at(&data, p * PIECE)
    })?;
    f.sync_all()
}

// ---------------------------------------------------------------------------------------------
// Generate.

fn set_mtime(path: &Path, t: i64) -> io::Result<()> {
    let ft = filetime::FileTime::from_unix_time(t, 0);
    filetime::set_symlink_file_times(path, ft, ft)
}

/// Gives every directory under `root` (and `root`) a fixed time, so metadata is deterministic.
fn fix_dir_times(root: &Path, t: i64) -> io::Result<()> {
    for e in fs::read_dir(root)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            fix_dir_times(&e.path(), t)?;
        }
    }
    set_mtime(root, t)
}

fn write_entry(words: &Words, plan: &Plan, tree: &Path, i: usize) -> io::Result<()> {
    let e = &plan.entries[i];
    let path = tree.join(&e.rel);
    if e.kind == Kind::Symlink {
        std::os::unix::fs::symlink(&e.target, &path)?;
    } else {
        let data = file_content(words, plan.seed, S_FILE, i as u64, e.kind, e.size);
        fs::write(&path, &data)?;
    }
    set_mtime(&path, BASE_TIME + i as i64)
}

fn generate(out: &Path, seed: u64, scale: f64) -> io::Result<Summary> {
    if out.join(STATE_FILE).exists() || out.join("tree").exists() {
        return Err(io::Error::other(format!(
            "{} already holds a data set; remove it first",
            out.display()
        )));
    }
    let plan = Plan::new(seed, scale);
    let words = Words::new(seed);
    let tree = out.join("tree");
    let mut dirs: Vec<String> = plan
        .entries
        .iter()
        .enumerate()
        .map(|(i, _)| dir_of(i))
        .collect();
    dirs.dedup();
    for d in &dirs {
        fs::create_dir_all(tree.join(d))?;
    }
    let (a, b) = rayon::join(
        || write_volume(&plan, &words, &out.join("volume.img")),
        || -> io::Result<()> {
            (0..plan.entries.len())
                .into_par_iter()
                .try_for_each(|i| write_entry(&words, &plan, &tree, i))?;
            write_log(&plan, &words, &out.join("app.log"))
        },
    );
    a?;
    b?;
    set_mtime(&out.join("volume.img"), BASE_TIME)?;
    set_mtime(&out.join("app.log"), BASE_TIME)?;
    fix_dir_times(&tree, BASE_TIME)?;
    write_state(out, seed, scale, 0)?;
    Ok(summarize(out, &plan, None))
}

// ---------------------------------------------------------------------------------------------
// The day of change.

#[derive(Default, Debug)]
struct ChangeCounts {
    pages_overwritten: u64,
    files_inserted: u64,
    bytes_inserted: u64,
    files_edited: u64,
    files_rewritten: u64,
    files_deleted: u64,
    files_touched: u64,
    files_added: u64,
    bytes_added_files: u64,
    log_appended: u64,
}

/// Distinct random picks from `pool`, in a deterministic order.
fn pick_distinct(r: &mut Rng, pool: &mut Vec<usize>, k: usize) -> Vec<usize> {
    let k = k.min(pool.len());
    for i in 0..k {
        let j = i + r.below((pool.len() - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.drain(..k).collect()
}

fn change(out: &Path, seed: u64, scale: f64) -> io::Result<Summary> {
    match read_state(out)? {
        (s, sc, 0) if s == seed && (sc - scale).abs() < 1e-12 => {}
        (s, sc, day) => {
            return Err(io::Error::other(format!(
                "{} holds seed {s} scale {sc} day {day}; the change applies once to a fresh set \
                 of seed {seed} scale {scale}",
                out.display()
            )))
        }
    }
    let plan = Plan::new(seed, scale);
    let words = Words::new(seed);
    let tree = out.join("tree");
    let mut r = Rng::new(seed, S_CHANGE, 0);
    let mut c = ChangeCounts::default();
    let n = plan.entries.len();
    let pct = |p: f64| ((n as f64 * p / 100.0).round() as usize).max(1);

    // Files: disjoint sets for each kind of change.
    let mut regular: Vec<usize> = (0..n)
        .filter(|&i| matches!(plan.entries[i].kind, Kind::Text | Kind::Json | Kind::Random))
        .filter(|&i| plan.entries[i].size >= 64)
        .collect();
    let inserted = pick_distinct(&mut r, &mut regular, pct(1.0));
    let edited = pick_distinct(&mut r, &mut regular, pct(1.0));
    let rewritten = pick_distinct(&mut r, &mut regular, pct(0.5));
    let deleted = pick_distinct(&mut r, &mut regular, pct(0.5));
    let touched = pick_distinct(&mut r, &mut regular, pct(1.0));
    let t = CHANGE_TIME;
    for (k, &i) in inserted.iter().enumerate() {
        let e = &plan.entries[i];
        let p = tree.join(&e.rel);
        let mut data = fs::read(&p)?;
        let mut fr = Rng::new(seed, S_CHANGE_FILE, i as u64);
        let add = match e.kind {
            Kind::Random => {
                let mut v = vec![0u8; fr.range(1, 256) as usize];
                fr.fill(&mut v);
                v
            }
            _ => {
                let n = fr.range(1, 256) as usize;
                words.text(&mut fr, n)
            }
        };
        let mid = data.len() / 2;
        data.splice(mid..mid, add.iter().copied());
        fs::write(&p, &data)?;
        set_mtime(&p, t + k as i64)?;
        c.files_inserted += 1;
        c.bytes_inserted += add.len() as u64;
    }
    for (k, &i) in edited.iter().enumerate() {
        let e = &plan.entries[i];
        let p = tree.join(&e.rel);
        let mut fr = Rng::new(seed, S_CHANGE_FILE, (n + i) as u64);
        let len = fr.range(16, 512).min(e.size);
        let off = fr.below(e.size - len + 1);
        let patch = match e.kind {
            Kind::Random => {
                let mut v = vec![0u8; len as usize];
                fr.fill(&mut v);
                v
            }
            _ => words.text(&mut fr, len as usize),
        };
        let f = OpenOptions::new().write(true).open(&p)?;
        f.write_all_at(&patch, off)?;
        drop(f);
        set_mtime(&p, t + k as i64)?;
        c.files_edited += 1;
    }
    for (k, &i) in rewritten.iter().enumerate() {
        let e = &plan.entries[i];
        let p = tree.join(&e.rel);
        let mut fr = Rng::new(seed, S_CHANGE_FILE, (2 * n + i) as u64);
        let size = (e.size as f64 * (0.5 + fr.unit())) as u64;
        let data = file_content(
            &words,
            seed,
            S_CHANGE_FILE,
            (3 * n + i) as u64,
            e.kind,
            size,
        );
        fs::write(&p, &data)?;
        set_mtime(&p, t + k as i64)?;
        c.files_rewritten += 1;
    }
    for &i in &deleted {
        fs::remove_file(tree.join(&plan.entries[i].rel))?;
        c.files_deleted += 1;
    }
    for (k, &i) in touched.iter().enumerate() {
        set_mtime(&tree.join(&plan.entries[i].rel), t + k as i64)?;
        c.files_touched += 1;
    }
    for k in 0..pct(1.0) {
        let mut fr = Rng::new(seed, S_CHANGE_FILE, (4 * n + k) as u64);
        let kind = match draw_kind(&mut fr) {
            Kind::Symlink | Kind::Empty => Kind::Text,
            k => k,
        };
        let size = draw_size(&mut fr) as u64;
        let dir = dir_of(fr.below(n as u64) as usize);
        let p = tree.join(format!("{dir}/new-{k:05}.{}", ext(kind)));
        let data = file_content(&words, seed, S_CHANGE_FILE, (5 * n + k) as u64, kind, size);
        fs::write(&p, &data)?;
        set_mtime(&p, t + k as i64)?;
        c.files_added += 1;
        c.bytes_added_files += size;
    }
    fix_dir_times(&tree, t)?;

    // Volume image: 1% of the pages, half uniformly spread, half in hot runs of 1-16 pages.
    let kinds = plan.page_kinds();
    let target = ((plan.pages as f64) / 100.0).round().max(1.0) as usize;
    let mut chosen = std::collections::BTreeSet::new();
    let mut pr = Rng::new(seed, S_CHANGE_PAGE, 0);
    while chosen.len() < target / 2 {
        chosen.insert(pr.below(plan.pages));
    }
    while chosen.len() < target {
        let start = pr.below(plan.pages);
        let run = pr.range(1, 16);
        for p in start..(start + run).min(plan.pages) {
            if chosen.len() < target {
                chosen.insert(p);
            }
        }
    }
    let f = OpenOptions::new()
        .write(true)
        .open(out.join("volume.img"))?;
    let mut buf = vec![0u8; PAGE];
    for &p in &chosen {
        // Free pages get allocated; random pages get new random content.
        let kind = match kinds[p as usize] {
            PageKind::Zero => PageKind::Rows,
            k => k,
        };
        fill_page(&words, seed, p, 1, kind, &mut buf);
        f.write_all_at(&buf, p * PAGE as u64)?;
        c.pages_overwritten += 1;
    }
    f.sync_all()?;
    drop(f);
    set_mtime(&out.join("volume.img"), t)?;

    // Log: appended by 1/32 of its size.
    let add = plan.log_size / 32;
    let mut lr = Rng::new(seed, S_LOG_APPEND, 0);
    let data = log_lines(&words, &mut lr, 1_000_000_000, add as usize);
    let mut lf = BufWriter::new(OpenOptions::new().append(true).open(out.join("app.log"))?);
    lf.write_all(&data)?;
    lf.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    set_mtime(&out.join("app.log"), t)?;
    c.log_appended = add;

    write_state(out, seed, scale, 1)?;
    Ok(summarize(out, &plan, Some(c)))
}

// ---------------------------------------------------------------------------------------------
// State and summary.

fn write_state(out: &Path, seed: u64, scale: f64, day: u32) -> io::Result<()> {
    let p = out.join(STATE_FILE);
    fs::write(
        &p,
        format!("{{\"seed\": {seed}, \"scale\": {scale}, \"day\": {day}}}\n"),
    )?;
    set_mtime(&p, BASE_TIME + day as i64 * 86_400 * 30)
}

fn read_state(out: &Path) -> io::Result<(u64, f64, u32)> {
    let s = fs::read_to_string(out.join(STATE_FILE)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{}: no generated data set here ({e})", out.display()),
        )
    })?;
    let field = |name: &str| -> Option<&str> {
        let i = s.find(&format!("\"{name}\": "))? + name.len() + 4;
        s[i..].split([',', '}']).next().map(str::trim)
    };
    let bad = || io::Error::other(format!("{}: unreadable {STATE_FILE}", out.display()));
    Ok((
        field("seed").and_then(|v| v.parse().ok()).ok_or_else(bad)?,
        field("scale")
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)?,
        field("day").and_then(|v| v.parse().ok()).ok_or_else(bad)?,
    ))
}

struct Summary {
    files: u64,
    symlinks: u64,
    bytes: u64,
    json: String,
}

fn walk_sizes(p: &Path, s: &mut Summary) -> io::Result<()> {
    for e in fs::read_dir(p)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk_sizes(&e.path(), s)?;
        } else if ft.is_symlink() {
            s.symlinks += 1;
        } else {
            s.files += 1;
            s.bytes += e.metadata()?.len();
        }
    }
    Ok(())
}

fn summarize(out: &Path, plan: &Plan, change: Option<ChangeCounts>) -> Summary {
    let mut s = Summary {
        files: 0,
        symlinks: 0,
        bytes: 0,
        json: String::new(),
    };
    let _ = walk_sizes(out, &mut s);
    let change_json = match change {
        None => String::new(),
        Some(c) => format!(
            ", \"change\": {{\"pages_overwritten\": {}, \"files_inserted\": {}, \
             \"bytes_inserted\": {}, \"files_edited\": {}, \"files_rewritten\": {}, \
             \"files_deleted\": {}, \"files_touched\": {}, \"files_added\": {}, \
             \"bytes_added_files\": {}, \"log_appended\": {}}}",
            c.pages_overwritten,
            c.files_inserted,
            c.bytes_inserted,
            c.files_edited,
            c.files_rewritten,
            c.files_deleted,
            c.files_touched,
            c.files_added,
            c.bytes_added_files,
            c.log_appended
        ),
    };
    s.json = format!(
        "{{\"seed\": {}, \"scale\": {}, \"files\": {}, \"symlinks\": {}, \"bytes\": {}, \
         \"volume_pages\": {}, \"log_bytes\": {}{change_json}}}",
        plan.seed, plan.scale, s.files, s.symlinks, s.bytes, plan.pages, plan.log_size
    );
    s
}

// ---------------------------------------------------------------------------------------------

const USAGE: &str = "usage: stowage-bench-data (generate|change) --out DIR [--seed N] [--scale F]
  generate  write tree/, volume.img and app.log under DIR (DIR must not hold a data set)
  change    apply the deterministic day of change to a set generated with the same seed/scale
  --seed    default 1; --scale default 1.0 (~1 GiB tree, 2 GiB image, 256 MiB log)
Prints a JSON summary (files, bytes, changes) on stdout.";

fn parse(args: &[String]) -> Result<(String, PathBuf, u64, f64), String> {
    let mut it = args.iter();
    let mode = it.next().ok_or("missing mode")?.clone();
    let (mut out, mut seed, mut scale) = (None, 1u64, 1.0f64);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = Some(PathBuf::from(val()?)),
            "--seed" => seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--scale" => {
                scale = val()?.parse().map_err(|e| format!("--scale: {e}"))?;
                if !(scale > 0.0 && scale <= 100.0) {
                    return Err("--scale must be in (0, 100]".into());
                }
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok((mode, out.ok_or("--out is required")?, seed, scale))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, out, seed, scale) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("stowage-bench-data: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let r = match mode.as_str() {
        "generate" => fs::create_dir_all(&out).and_then(|_| generate(&out, seed, scale)),
        "change" => change(&out, seed, scale),
        _ => {
            eprintln!("stowage-bench-data: unknown mode {mode}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(s) => {
            println!("{}", s.json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stowage-bench-data: {e}");
            ExitCode::from(1)
        }
    }
}
