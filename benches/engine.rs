//! Micro-benchmarks of the engine's hot paths:
//!
//! - `chunker`: FastCDC over 64 MiB of pseudo-random data with the default parameters;
//! - `blob_id`: keyed BLAKE3 of 1 MiB;
//! - `seal_blob` / `open_blob`: 1 MiB of text-like (compressible), random (incompressible) and
//!   mixed (half random, half text) data at zstd level 3 and 0, and 64 KiB of text and random
//!   data (a small file's blob);
//! - `compressibility`: the sample that decides whether a blob is worth compressing;
//! - `pack`: writing a pack of 16 sealed 1 MiB blobs, and locating + decoding its header;
//! - `index`: lookups in a master index of 1,000,000 blobs, present and absent ids.
//!
//! `cargo bench --bench engine -- --quick` runs them all in a couple of minutes on 2 cores;
//! `cargo bench --bench engine -- chunker` runs one group.
// criterion_group! generates a public function without documentation.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use stowage_core::chunker::{Chunker, ChunkerParams, ChunkerSpec};
use stowage_core::crypto::{open_blob, seal_blob, seal_blob_into, worth_compressing, MasterKeys};
use stowage_core::id::{BlobType, Id};
use stowage_core::pack::{decode_header, header_location, PackBlob, PackWriter};
use stowage_core::repo::index::{IndexPack, MasterIndex};

const MIB: usize = 1 << 20;

/// Deterministic pseudo-random bytes (xorshift64*), fast to generate.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Text-like bytes: words from a small vocabulary with varying numbers, compressing several-fold
/// with zstd, like logs or source code.
fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "the",
        "backup",
        "of",
        "snapshot",
        "and",
        "index",
        "pack",
        "tree",
        "blob",
        "error:",
        "INFO",
        "request",
        "completed",
        "in",
        "ms",
        "user",
    ];
    let r = random_bytes(len, seed);
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0;
    while out.len() < len {
        let b = r[i % r.len()];
        i += 1;
        out.extend_from_slice(WORDS[(b & 15) as usize].as_bytes());
        if b & 0x30 == 0 {
            out.extend_from_slice(format!(" {}", r[(i * 7) % r.len()] as u32 * 13).as_bytes());
        }
        out.push(if b & 0xc0 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn keys() -> MasterKeys {
    MasterKeys::new([0x11; 32], [0x22; 32], 0x0123_4567_89ab_cdef)
}

fn chunker(c: &mut Criterion) {
    let data = random_bytes(64 * MIB, 1);
    let spec = ChunkerSpec::new(ChunkerParams::default(), 0x0123_4567_89ab_cdef);
    let mut g = c.benchmark_group("chunker");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("fastcdc_default_64MiB", |b| {
        let mut chunker = Chunker::new(spec.clone());
        b.iter(|| {
            chunker.reset();
            let mut r = &data[..];
            let (mut n, mut total) = (0usize, 0usize);
            while let Some(ch) = chunker.next_chunk(&mut r).unwrap() {
                n += 1;
                total += ch.len();
            }
            assert_eq!(total, data.len());
            black_box(n)
        })
    });
    g.finish();
}

fn blob_id(c: &mut Criterion) {
    let k = keys();
    let data = random_bytes(MIB, 2);
    let mut g = c.benchmark_group("blob_id");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("keyed_blake3_1MiB", |b| {
        b.iter(|| k.blob_id(black_box(&data)))
    });
    g.finish();
}

fn seal_open(c: &mut Criterion) {
    let k = keys();
    let mut mixed = random_bytes(MIB / 2, 8);
    mixed.extend_from_slice(&text_bytes(MIB / 2, 9));
    let inputs = [
        ("text", text_bytes(MIB, 3)),
        ("random", random_bytes(MIB, 4)),
        ("mixed", mixed),
        ("text_64KiB", text_bytes(64 << 10, 10)),
        ("random_64KiB", random_bytes(64 << 10, 11)),
    ];
    for (name, data) in &inputs {
        let id = k.blob_id(data);
        let sealed = seal_blob(&k, BlobType::Data, &id, data, 3);
        eprintln!(
            "seal_blob: {} bytes of {name} data seal to {} bytes at level 3",
            data.len(),
            sealed.len()
        );
    }
    let mut g = c.benchmark_group("seal_blob");
    g.sample_size(20);
    for (name, data) in &inputs {
        g.throughput(Throughput::Bytes(data.len() as u64));
        let id = k.blob_id(data);
        for level in [3, 0] {
            g.bench_with_input(
                BenchmarkId::new(*name, format!("level{level}")),
                data,
                |b, data| b.iter(|| seal_blob(&k, BlobType::Data, &id, black_box(data), level)),
            );
        }
        // What the blob writer does: seal into a buffer reused from blob to blob.
        let mut out = Vec::new();
        g.bench_with_input(BenchmarkId::new(*name, "level3_reused"), data, |b, data| {
            b.iter(|| {
                out.clear();
                seal_blob_into(&k, BlobType::Data, &id, black_box(data), 3, &mut out)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("compressibility");
    for (name, data) in &inputs {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(BenchmarkId::new("sample", *name), data, |b, data| {
            b.iter(|| worth_compressing(black_box(data)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("open_blob");
    g.sample_size(20);
    for (name, data) in &inputs {
        g.throughput(Throughput::Bytes(data.len() as u64));
        let id = k.blob_id(data);
        for level in [3, 0] {
            let sealed = seal_blob(&k, BlobType::Data, &id, data, level);
            g.bench_with_input(
                BenchmarkId::new(*name, format!("level{level}")),
                &sealed,
                |b, sealed| {
                    b.iter(|| {
                        open_blob(&k, BlobType::Data, &id, black_box(sealed), data.len()).unwrap()
                    })
                },
            );
        }
    }
    g.finish();
}

fn pack(c: &mut Criterion) {
    let k = keys();
    let blobs: Vec<(Id, Vec<u8>)> = (0..16)
        .map(|i| {
            let data = if i % 2 == 0 {
                random_bytes(MIB, 100 + i)
            } else {
                text_bytes(MIB, 100 + i)
            };
            let id = k.blob_id(&data);
            (id, seal_blob(&k, BlobType::Data, &id, &data, 3))
        })
        .collect();
    let write = || {
        let mut w = PackWriter::new();
        for (id, sealed) in &blobs {
            w.add(BlobType::Data, *id, sealed, MIB);
        }
        w.finish(&k)
    };
    let (bytes, _, _) = write();

    let mut g = c.benchmark_group("pack");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode_16x1MiB", |b| b.iter(|| black_box(write())));
    // What the blob writer does: reuse the buffer of the previous pack, sized for a whole pack.
    let mut buffer = Vec::with_capacity(bytes.len() + MIB);
    g.bench_function("encode_16x1MiB_reused_buffer", |b| {
        b.iter(|| {
            let mut w = PackWriter::with_buffer(std::mem::take(&mut buffer));
            for (id, sealed) in &blobs {
                w.add(BlobType::Data, *id, sealed, MIB);
            }
            let (bytes, id, _) = w.finish(&k);
            buffer = bytes;
            id
        })
    });
    g.throughput(Throughput::Elements(16));
    g.bench_function("decode_header_16", |b| {
        b.iter(|| {
            let bytes = black_box(&bytes);
            let (off, len) = header_location("bench", bytes, bytes.len() as u64).unwrap();
            let h =
                decode_header(&k, "bench", &bytes[off as usize..off as usize + len], off).unwrap();
            assert_eq!(h.len(), 16);
            h
        })
    });
    g.finish();
}

fn index(c: &mut Criterion) {
    const PACKS: usize = 1000;
    const PER_PACK: usize = 1000;
    const BATCH: usize = 1024;
    let ids = random_bytes(PACKS * PER_PACK * 32, 5);
    let id_at = |i: usize| Id::from_slice(&ids[i * 32..i * 32 + 32]).unwrap();
    let mut m = MasterIndex::new();
    for p in 0..PACKS {
        let pack = IndexPack {
            id: Id::hash_of(&(p as u64).to_le_bytes()),
            blobs: (0..PER_PACK)
                .map(|j| PackBlob {
                    blob_type: BlobType::Data,
                    id: id_at(p * PER_PACK + j),
                    offset: (j * 1000) as u32,
                    length: 1000,
                    raw_length: 1200,
                })
                .collect(),
        };
        m.add_pack(&pack);
    }
    assert_eq!(m.len(), PACKS * PER_PACK);
    let picks = random_bytes(BATCH * 8, 6);
    let present: Vec<Id> = picks
        .chunks_exact(8)
        .map(|b| {
            id_at((u64::from_le_bytes(b.try_into().unwrap()) % (PACKS * PER_PACK) as u64) as usize)
        })
        .collect();
    let absent_bytes = random_bytes(BATCH * 32, 7);
    let absent: Vec<Id> = absent_bytes
        .chunks_exact(32)
        .map(|b| Id::from_slice(b).unwrap())
        .collect();

    let mut g = c.benchmark_group("index_1M");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("lookup_present", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for id in &present {
                n += m.get(BlobType::Data, black_box(id)).unwrap().offset as u64;
            }
            n
        })
    });
    g.bench_function("lookup_absent", |b| {
        b.iter(|| {
            present.len()
                - absent
                    .iter()
                    .filter(|id| m.get(BlobType::Data, black_box(id)).is_none())
                    .count()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = chunker, blob_id, seal_open, pack, index
}
criterion_main!(benches);
