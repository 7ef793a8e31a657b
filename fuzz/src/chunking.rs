//! Target `chunker`: `offsite_chunker` against a slow reference written here from the cut rule
//! of docs/FORMAT.md §11.
//!
//! The reference needs no chunker internals: the gear table and the PRF key are derived from
//! the chunker key with the public BLAKE3 contexts ([`GEAR_CONTEXT`], [`PRF_CONTEXT`]) and the
//! same primitives the format names (BLAKE3 `derive_key` XOF, AES-256). What it does not share
//! with the crate is everything after that: it recomputes the 64-byte gear sum from scratch at
//! every length (no rolling hash, no skipped prefix, no resume), tests each length in order with
//! the thresholds as written (`4·d·out < 2^70`, `d·out < 2^72` in 128-bit arithmetic, not
//! precomputed ceilings) and applies the `min`/`max`/end-of-stream rule literally.

use std::io::{self, Read};

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes256;
use offsite_chunker::{ChunkReader, Chunker, ChunkerParams, GEAR_CONTEXT, PRF_CONTEXT};

/// Number of leading input bytes that choose the parameters, the key and the read sizes.
const HEADER: usize = 8;
/// Largest `max_size` the harness picks, so that fuzz-sized inputs get several chunks.
const LARGEST: usize = 4096;

/// The cut rule of FORMAT.md §11, literally.
struct Reference {
    gear: [u64; 256],
    prf: Aes256,
    p: ChunkerParams,
}

impl Reference {
    fn new(key: &[u8; 32], p: ChunkerParams) -> Self {
        // Step 1: G, the first 2048 bytes of the BLAKE3 XOF, derive_key mode, read as 256 u64le.
        let mut xof = [0u8; 2048];
        blake3::Hasher::new_derive_key(GEAR_CONTEXT).update(key).finalize_xof().fill(&mut xof);
        assert_eq!(xof[..32], blake3::derive_key(GEAR_CONTEXT, key), "XOF prefix is derive_key");
        let mut gear = [0u64; 256];
        for (i, g) in gear.iter_mut().enumerate() {
            *g = u64::from_le_bytes(xof[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        }
        // Step 2: P = derive_key(PRF context, K), an AES-256 key.
        let prf = Aes256::new(GenericArray::from_slice(&blake3::derive_key(PRF_CONTEXT, key)));
        Reference { gear, prf, p }
    }

    /// Step 3: h(L) = sum_{j=0..63} G[c[L-1-j]] * 2^j mod 2^64.
    fn h(&self, c: &[u8], len: usize) -> u64 {
        (0..64).fold(0u64, |h, j| h.wrapping_add(self.gear[usize::from(c[len - 1 - j])].wrapping_mul(1 << j)))
    }

    /// Steps 4 to 6: whether chunk length `len` of `c` is a cut.
    fn is_cut(&self, c: &[u8], len: usize) -> bool {
        let h = self.h(c, len);
        if h >= 1 << 58 {
            return false;
        }
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&h.to_le_bytes());
        let mut block = GenericArray::from(block);
        self.prf.encrypt_block(&mut block);
        let out = u128::from(u64::from_le_bytes(block[..8].try_into().expect("8 bytes")));
        let d = (self.p.avg_size - self.p.min_size).max(1) as u128;
        if len <= self.p.avg_size {
            4 * d * out < 1 << 70
        } else {
            d * out < 1 << 72
        }
    }

    /// Step 7: chunk lengths of `data`: the smallest cut in `min..=min(n, max - 1)`, else `max` if at
    /// least `max` bytes remain, else the rest; restart after each chunk.
    fn cuts(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let c = &data[start..];
            let n = c.len();
            let (min, max) = (self.p.min_size, self.p.max_size);
            let cut = (min..=n.min(max - 1)).find(|&len| self.is_cut(c, len));
            let len = cut.unwrap_or(if n >= max { max } else { n });
            out.push(len);
            start += len;
        }
        out
    }
}

/// A reader that returns the data in reads of fuzz-chosen sizes, cycling through `sizes`; a
/// size of 0 returns an `Interrupted` error instead (which `ChunkReader` must retry).
struct ShortReads<'a> {
    data: &'a [u8],
    sizes: [usize; 4],
    turn: usize,
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        if size == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Parameters from three bytes: `avg = 2^(6 + a % 7)` (64 B to 4 KiB), `min` from `m` in
/// `[64, avg]`, `max` from `x` in `[avg, 4 KiB]`. Always valid.
fn params(a: u8, m: u8, x: u8) -> ChunkerParams {
    let avg = 1usize << (6 + a % 7);
    let min = 64 + usize::from(m) * (avg - 64) / 255;
    let max = avg + usize::from(x) * (LARGEST - avg) / 255;
    ChunkerParams { min_size: min, avg_size: avg, max_size: max }
}

/// Target `chunker`: byte 0 picks `avg`, byte 1 `min`, byte 2 `max` (see [`params`]), byte 3
/// the key (`[b; 32]`), bytes 4..8 four read sizes (`b < 128`: `b` bytes, 0 meaning an
/// `Interrupted` error; else `(b - 127) * 64` bytes); the rest is the data. Checked:
/// - `Chunker::cut_all` equals the reference's chunk lengths;
/// - the chunks concatenate to the data, and each except the last is within `[min, max]`;
/// - `next_cut` on the whole data (at end of stream) gives the first length, and on any prefix
///   not at end of stream never contradicts it (a cut found in a prefix is the first cut);
/// - `ChunkReader` over the whole data and over the short-read reader yields the same chunks.
pub fn chunker(data: &[u8]) {
    let Some(head) = data.get(..HEADER) else { return };
    let body = &data[HEADER..];
    let p = params(head[0], head[1], head[2]);
    assert!(p.validate().is_ok(), "harness picked invalid parameters {p:?}");
    let key = [head[3]; 32];
    let sizes = [4, 5, 6, 7].map(|i| {
        let b = usize::from(head[i]);
        if b < 128 {
            b
        } else {
            (b - 127) * 64
        }
    });

    let chunker = Chunker::new(&key, p);
    let lens = chunker.cut_all(body);
    assert_eq!(lens, Reference::new(&key, p).cuts(body), "cut_all differs from the reference for {p:?}");

    assert_eq!(lens.iter().sum::<usize>(), body.len(), "chunks do not cover the data");
    if let Some((_, init)) = lens.split_last() {
        for &l in init {
            assert!((p.min_size..=p.max_size).contains(&l), "chunk of {l} bytes outside {p:?}");
        }
    }
    assert_eq!(chunker.next_cut(body, true), lens.first().copied());
    if let Some(&first) = lens.first() {
        // Prefix lengths spread over the first chunk and a little beyond.
        for n in [first / 2, first.saturating_sub(1), first, first + 1, p.max_size - 1] {
            if let Some(prefix) = body.get(..n) {
                if let Some(cut) = chunker.next_cut(prefix, false) {
                    assert_eq!(cut, first, "next_cut on a {n}-byte prefix");
                }
            }
        }
    }

    let mut expected: Vec<&[u8]> = Vec::with_capacity(lens.len());
    let mut at = 0;
    for &l in &lens {
        expected.push(&body[at..at + l]);
        at += l;
    }
    let whole: Vec<Vec<u8>> = ChunkReader::new(chunker.clone(), body)
        .collect::<io::Result<_>>()
        .expect("reading a slice cannot fail");
    assert!(whole.iter().map(Vec::as_slice).eq(expected.iter().copied()), "ChunkReader differs from cut_all");
    let short = ShortReads { data: body, sizes, turn: 0 };
    if sizes.iter().any(|&s| s > 0) {
        let chunks: Vec<Vec<u8>> =
            ChunkReader::new(chunker, short).collect::<io::Result<_>>().expect("short reads cannot fail");
        assert!(
            chunks.iter().map(Vec::as_slice).eq(expected.iter().copied()),
            "ChunkReader with short reads {sizes:?} differs from cut_all"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_always_valid_and_small() {
        for a in 0..=255u8 {
            for m in [0, 1, 128, 254, 255] {
                for x in [0, 1, 128, 255] {
                    let p = params(a, m, x);
                    assert!(p.validate().is_ok(), "{p:?}");
                    assert!(p.max_size <= LARGEST);
                }
            }
        }
    }

    #[test]
    fn reference_matches_the_chunker_on_pseudorandom_data() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let p = ChunkerParams { min_size: 256, avg_size: 1024, max_size: 4096 };
        let r = Reference::new(&[3; 32], p).cuts(&data);
        assert!(r.len() > 5, "{r:?}");
        assert!(r[..r.len() - 1].iter().any(|&l| l < 4096), "some content-defined cut: {r:?}");
        assert_eq!(Chunker::new(&[3; 32], p).cut_all(&data), r);
    }
}
