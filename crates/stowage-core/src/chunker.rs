//! Content-defined chunking with FastCDC (2020 variant, normalized), seeded per repository.
//!
//! The cut-point search is the `fastcdc` crate's `cut_gear` over a gear table XORed with the
//! repository's chunker seed; this module adds a streaming buffer that is reused across files so
//! that chunking many small files costs no allocation beyond the chunks themselves. Boundaries
//! depend only on the bytes of the stream, never on how the reader splits its reads.

use fastcdc::v2020::{self, MASKS};
use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::sync::Arc;

/// Chunker parameters, stored in the repository config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk, except the last chunk of a stream.
    pub min_size: u32,
    /// Target average chunk size (rounded to a power of two by the algorithm).
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
    /// FastCDC normalization level (0-3).
    pub normalization: u32,
}

impl Default for ChunkerParams {
    /// 256 KiB / 1 MiB / 4 MiB, normalization level 1.
    fn default() -> Self {
        ChunkerParams {
            min_size: 256 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
            normalization: 1,
        }
    }
}

impl ChunkerParams {
    /// Checks the parameters against the algorithm's limits (they come from the repository,
    /// which is untrusted until proven otherwise).
    pub fn validate(&self) -> Result<(), String> {
        let ok = (v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&self.min_size)
            && (v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&self.avg_size)
            && (v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size
            && self.normalization <= 3;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunker sizes {}/{}/{} (normalization {}) are outside the supported range \
                 (min {}..={}, avg {}..={}, max {}..={}, min <= avg <= max, normalization 0..=3)",
                self.min_size,
                self.avg_size,
                self.max_size,
                self.normalization,
                v2020::MINIMUM_MIN,
                v2020::MINIMUM_MAX,
                v2020::AVERAGE_MIN,
                v2020::AVERAGE_MAX,
                v2020::MAXIMUM_MIN,
                v2020::MAXIMUM_MAX
            ))
        }
    }
}

/// Chunk sizes for large files, stored in the repository config beside the general ones.
///
/// Large files are mostly volume images and database files, changed a page at a time in
/// place: every changed page costs a whole chunk in the next backup, so they are cut finer.
/// Everything else keeps the larger general chunks, which cost fewer index entries and
/// compress better (small files are one chunk either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LargeFileChunking {
    /// Files of at least this many bytes (their size when the backup opens them) are cut with
    /// `chunker`; so is standard input.
    pub min_file_size: u64,
    /// The parameters large files are cut with.
    pub chunker: ChunkerParams,
}

impl Default for LargeFileChunking {
    /// Files of 16 MiB and more: 32 KiB / 128 KiB / 512 KiB, normalization level 1.
    fn default() -> Self {
        LargeFileChunking {
            min_file_size: 16 << 20,
            chunker: ChunkerParams {
                min_size: 32 * 1024,
                avg_size: 128 * 1024,
                max_size: 512 * 1024,
                normalization: 1,
            },
        }
    }
}

/// The gear tables and masks for one repository; cheap to share between threads.
pub struct ChunkerSpec {
    params: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl ChunkerSpec {
    /// Panics if the parameters are invalid: call [`ChunkerParams::validate`] first.
    pub fn new(params: ChunkerParams, seed: u64) -> Arc<Self> {
        params
            .validate()
            .expect("chunker parameters were validated");
        let bits = v2020::logarithm2(params.avg_size);
        let mask_s = MASKS[(bits + params.normalization) as usize];
        let mask_l = MASKS[(bits - params.normalization) as usize];
        let (gear, gear_ls) = v2020::get_gear_with_seed(seed);
        Arc::new(ChunkerSpec {
            params,
            mask_s,
            mask_l,
            gear,
            gear_ls,
        })
    }

    /// The parameters this table was built from.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the first chunk of `data`, taken as the whole remaining stream when `at_end`.
    fn cut(&self, data: &[u8]) -> usize {
        let p = &self.params;
        v2020::cut_gear(
            data,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        )
        .1
    }

    /// Splits an in-memory buffer into chunk lengths (used by tests and small inputs).
    pub fn chunk_lengths(&self, mut data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let n = self.cut(data);
            out.push(n);
            data = &data[n..];
        }
        out
    }
}

/// Alignment of the chunker's reads: the buffer offset of every read is a multiple of this
/// whenever the stream position is, so a reader may use direct I/O (`O_DIRECT` needs buffer
/// address, file offset and length aligned to the device's logical block, at most 4 KiB).
pub const READ_ALIGN: usize = crate::util::DIRECT_IO_ALIGN;

/// The smallest buffer of a chunker that reads a stream longer than the smallest chunk: reads
/// take what room the buffer has, so this is about the size of each read.
const MIN_WINDOW: usize = 4 << 20;

/// A streaming chunker with a reusable buffer of twice the maximum chunk size (at least
/// [`MIN_WINDOW`]).
///
/// Reads go to buffer offsets congruent to the stream position modulo [`READ_ALIGN`] and are
/// whole multiples of it until the end of the stream (data is only ever moved by multiples of
/// the alignment), so a reader that starts at an aligned file offset sees aligned requests.
pub struct Chunker {
    spec: Arc<ChunkerSpec>,
    /// Backing store; `buf[base..base + cap]` is the aligned window in use.
    buf: Vec<u8>,
    base: usize,
    cap: usize,
    start: usize,
    end: usize,
    eof: bool,
}

impl Chunker {
    /// A chunker with no input yet, cutting by `spec`.
    pub fn new(spec: Arc<ChunkerSpec>) -> Self {
        Chunker {
            spec,
            buf: Vec::new(),
            base: 0,
            cap: 0,
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// The parameters it cuts with.
    pub fn params(&self) -> ChunkerParams {
        self.spec.params
    }

    /// The table it cuts with.
    pub fn spec(&self) -> &Arc<ChunkerSpec> {
        &self.spec
    }

    /// Cuts the next stream with `spec` instead, keeping the buffer; forgets any buffered data
    /// like [`Chunker::reset`].
    pub fn set_spec(&mut self, spec: &Arc<ChunkerSpec>) {
        if !Arc::ptr_eq(&self.spec, spec) {
            self.spec = spec.clone();
        }
        self.reset();
    }

    /// Gives the buffer `cap` usable bytes on an aligned base, keeping the buffered bytes at
    /// the same offsets.
    fn resize(&mut self, cap: usize) {
        let mut buf = vec![0u8; cap + READ_ALIGN];
        let base = buf.as_ptr().align_offset(READ_ALIGN).min(READ_ALIGN);
        if self.end > 0 {
            buf[base..base + self.end].copy_from_slice(&self.buf[self.base..self.base + self.end]);
        }
        self.buf = buf;
        self.base = base;
        self.cap = cap;
    }

    /// Forgets any buffered data so the next call starts a new stream.
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.eof = false;
    }

    /// Returns the next chunk of the stream `r`, or `None` at its end. The same reader must be
    /// passed until `None` is returned (or [`Chunker::reset`] is called).
    pub fn next_chunk<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<Option<Vec<u8>>> {
        Ok(self.next_chunk_ref(r)?.map(|c| c.data.to_vec()))
    }

    /// Like [`Chunker::next_chunk`], lending the chunk from the chunker's buffer instead of
    /// copying it out, and telling whether it is certainly the stream's last.
    pub fn next_chunk_ref<R: Read + ?Sized>(
        &mut self,
        r: &mut R,
    ) -> io::Result<Option<ChunkRef<'_>>> {
        let max = self.spec.params.max_size as usize;
        // The full buffer: room for two maximal chunks plus two alignment units of slack, so
        // that after moving the unread bytes (< max, starting below READ_ALIGN) down, at least
        // one whole aligned unit is free; and at least MIN_WINDOW, so that a stream of small
        // chunks is still read in large requests.
        let full = (2 * max).max(MIN_WINDOW).div_ceil(READ_ALIGN) * READ_ALIGN + 2 * READ_ALIGN;
        if self.buf.is_empty() {
            // Start with room for a file of the smallest chunk size; most files are smaller,
            // and a chunker that only ever sees small files stays small.
            let min = self.spec.params.min_size as usize;
            self.resize(full.min(min.div_ceil(READ_ALIGN) * READ_ALIGN + 2 * READ_ALIGN));
        }
        while !self.eof && self.end - self.start < max {
            if self.cap - self.end < READ_ALIGN {
                // Move the unread bytes down by a multiple of the alignment.
                let shift = self.start - self.start % READ_ALIGN;
                let window = &mut self.buf[self.base..self.base + self.cap];
                window.copy_within(self.start..self.end, self.start - shift);
                self.start -= shift;
                self.end -= shift;
                if self.cap - self.end < READ_ALIGN {
                    self.resize(full);
                }
            }
            let room = (self.cap - self.end) / READ_ALIGN * READ_ALIGN;
            let at = self.base + self.end;
            match r.read(&mut self.buf[at..at + room]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.start == self.end {
            return Ok(None);
        }
        let window = &self.buf[self.base..self.base + self.cap];
        let n = self.spec.cut(&window[self.start..self.end]);
        let at = self.start;
        self.start += n;
        let last = self.eof && self.start == self.end;
        if self.start == self.end {
            // Everything read was consumed: start over at the same offset modulo the alignment.
            let keep = self.end % READ_ALIGN;
            self.start = keep;
            self.end = keep;
        }
        Ok(Some(ChunkRef {
            data: &self.buf[self.base + at..self.base + at + n],
            last,
        }))
    }
}

/// A chunk lent by [`Chunker::next_chunk_ref`].
pub struct ChunkRef<'a> {
    /// The chunk's bytes.
    pub data: &'a [u8],
    /// The stream ended with this chunk (when `false` it may still have, which the next call
    /// tells by returning `None`).
    pub last: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small_params() -> ChunkerParams {
        ChunkerParams {
            min_size: 256,
            avg_size: 1024,
            max_size: 4096,
            normalization: 1,
        }
    }

    /// A reader that returns at most `sizes[i % len]` bytes per call.
    struct ChoppyReader<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        i: usize,
    }

    impl Read for ChoppyReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let want = self.sizes[self.i % self.sizes.len()].max(1).min(buf.len());
            self.i += 1;
            let n = want.min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn stream_lengths(spec: &Arc<ChunkerSpec>, data: &[u8], sizes: Vec<usize>) -> Vec<usize> {
        let mut c = Chunker::new(spec.clone());
        let mut r = ChoppyReader { data, sizes, i: 0 };
        let mut out = Vec::new();
        while let Some(ch) = c.next_chunk(&mut r).unwrap() {
            out.push(ch.len());
        }
        out
    }

    #[test]
    fn empty_stream_has_no_chunks() {
        let spec = ChunkerSpec::new(small_params(), 7);
        assert!(stream_lengths(&spec, b"", vec![10]).is_empty());
    }

    #[test]
    fn small_input_is_one_chunk() {
        let spec = ChunkerSpec::new(small_params(), 7);
        assert_eq!(stream_lengths(&spec, &[1u8; 200], vec![1000]), vec![200]);
    }

    #[test]
    fn lent_chunks_match_copied_ones_and_only_the_final_one_is_marked_last() {
        let spec = ChunkerSpec::new(small_params(), 7);
        for len in [0, 1, 200, 4096, 4097, 50_000] {
            let data = pseudo_random(len, 13);
            let mut c = Chunker::new(spec.clone());
            let mut r = ChoppyReader {
                data: &data,
                sizes: vec![777, 5000],
                i: 0,
            };
            let mut lent = Vec::new();
            let mut lasts = Vec::new();
            while let Some(ch) = c.next_chunk_ref(&mut r).unwrap() {
                lent.extend_from_slice(ch.data);
                lasts.push(ch.last);
            }
            assert_eq!(lent, data);
            let n = lasts.len();
            assert!(lasts.iter().take(n.saturating_sub(1)).all(|l| !l));
            if len > 0 && len < 4096 {
                assert_eq!(
                    lasts,
                    vec![true],
                    "a stream shorter than a chunk is one last chunk"
                );
            }
        }
    }

    #[test]
    fn switching_specs_cuts_like_a_fresh_chunker() {
        let fine = ChunkerSpec::new(small_params(), 7);
        let coarse = ChunkerSpec::new(ChunkerParams::default(), 7);
        let data = pseudo_random(3 << 20, 21);
        let mut c = Chunker::new(coarse.clone());
        // Alternate streams between the two specs through one chunker (and one buffer), each
        // stream abandoned half-way once, as a file that fails to read would be.
        for (round, spec) in [&coarse, &fine, &coarse, &fine, &fine]
            .into_iter()
            .enumerate()
        {
            c.set_spec(spec);
            let mut r = ChoppyReader {
                data: &data,
                sizes: vec![4096 * (round + 1), 100_000],
                i: 0,
            };
            if round == 2 {
                c.next_chunk_ref(&mut r).unwrap();
                continue;
            }
            let mut lens = Vec::new();
            while let Some(ch) = c.next_chunk_ref(&mut r).unwrap() {
                lens.push(ch.data.len());
            }
            assert_eq!(lens, spec.chunk_lengths(&data), "round {round}");
        }
    }

    #[test]
    fn chunks_respect_bounds() {
        let spec = ChunkerSpec::new(small_params(), 7);
        let data = pseudo_random(200_000, 3);
        let lens = stream_lengths(&spec, &data, vec![65536]);
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        for l in &lens[..lens.len() - 1] {
            assert!((256..=4096).contains(l), "{l}");
        }
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = pseudo_random(100_000, 5);
        let a = ChunkerSpec::new(small_params(), 1).chunk_lengths(&data);
        let b = ChunkerSpec::new(small_params(), 2).chunk_lengths(&data);
        assert_ne!(a, b);
    }

    #[test]
    fn insertion_only_changes_nearby_chunks() {
        let spec = ChunkerSpec::new(small_params(), 9);
        let data = pseudo_random(300_000, 11);
        let mut changed = data[..150_000].to_vec();
        changed.extend_from_slice(b"inserted bytes");
        changed.extend_from_slice(&data[150_000..]);
        let chunks = |d: &[u8]| -> std::collections::HashSet<Vec<u8>> {
            let mut off = 0;
            spec.chunk_lengths(d)
                .into_iter()
                .map(|n| {
                    off += n;
                    d[off - n..off].to_vec()
                })
                .collect()
        };
        let a = chunks(&data);
        let b = chunks(&changed);
        let new = b.difference(&a).count();
        assert!(new <= 3, "{new} chunks changed");
    }

    #[test]
    fn invalid_params_are_reported() {
        let p = ChunkerParams {
            min_size: 10,
            avg_size: 5,
            max_size: 1,
            normalization: 9,
        };
        assert!(p.validate().is_err());
        assert!(ChunkerParams::default().validate().is_ok());
    }

    /// A reader like a file: fills each request as far as the data goes, and records whether
    /// every request before the end of the data was aligned (address and length) as direct I/O
    /// needs. (The request after a short read only finds the end.)
    struct AlignCheckingReader<'a> {
        data: &'a [u8],
        misaligned: usize,
        requests: usize,
    }

    impl Read for AlignCheckingReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.requests += 1;
            let aligned = (buf.as_ptr() as usize).is_multiple_of(READ_ALIGN)
                && buf.len().is_multiple_of(READ_ALIGN);
            if !aligned && !self.data.is_empty() {
                self.misaligned += 1;
            }
            let n = buf.len().min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn reads_stay_aligned_for_direct_io() {
        for (params, len) in [
            (small_params(), 100_000),
            (ChunkerParams::default(), 9_000_000),
            (
                ChunkerParams {
                    min_size: 64,
                    avg_size: 256,
                    max_size: 1024,
                    normalization: 1,
                },
                50_000,
            ),
        ] {
            let spec = ChunkerSpec::new(params, 3);
            let data = pseudo_random(len, 5);
            let mut c = Chunker::new(spec.clone());
            for _ in 0..2 {
                c.reset();
                let mut r = AlignCheckingReader {
                    data: &data,
                    misaligned: 0,
                    requests: 0,
                };
                let mut lens = Vec::new();
                while let Some(ch) = c.next_chunk_ref(&mut r).unwrap() {
                    lens.push(ch.data.len());
                }
                assert_eq!(lens, spec.chunk_lengths(&data));
                assert_eq!(r.misaligned, 0, "of {} reads", r.requests);
            }
        }
    }

    proptest! {
        #[test]
        fn boundaries_do_not_depend_on_read_sizes(
            len in 0usize..60_000,
            seed in any::<u64>(),
            sizes in proptest::collection::vec(1usize..9000, 1..8),
        ) {
            let spec = ChunkerSpec::new(small_params(), seed | 1);
            let data = pseudo_random(len, seed);
            let whole = spec.chunk_lengths(&data);
            prop_assert_eq!(stream_lengths(&spec, &data, sizes), whole);
        }
    }
}
