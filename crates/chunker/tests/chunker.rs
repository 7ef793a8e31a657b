//! Behaviour of the keyed chunker: golden cut points, a literal reference
//! implementation of the format, size bounds, streaming, locality and keying.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{self, Read};

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use offsite_chunker::{ChunkReader, Chunker, ChunkerParams};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const KEY: [u8; 32] = [7u8; 32];

fn small() -> ChunkerParams {
    ChunkerParams { min_size: 2 << 10, avg_size: 8 << 10, max_size: 64 << 10 }
}

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut d = vec![0u8; n];
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut d);
    d
}

/// BLAKE3 of the lengths as little-endian u64s, hex.
fn lengths_digest(lens: &[usize]) -> String {
    let mut h = blake3::Hasher::new();
    for &l in lens {
        h.update(&(l as u64).to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// The format, written out literally and slowly: for every candidate chunk
/// length L, hash the 64 bytes before L from scratch, apply the prefilter and
/// the AES-256 PRF, and compare against the normalized thresholds with u128
/// arithmetic. Shares no code with the crate.
fn reference_cuts(key: &[u8; 32], p: ChunkerParams, data: &[u8]) -> Vec<usize> {
    let mut raw = [0u8; 2048];
    let mut xof = blake3::Hasher::new_derive_key("offsite 2026-11 chunker gear table");
    xof.update(key);
    xof.finalize_xof().fill(&mut raw);
    let gear: Vec<u64> = raw.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    let aes_key = blake3::derive_key("offsite 2026-11 chunker cut prf", key);
    let aes = aes::Aes256::new(GenericArray::from_slice(&aes_key));
    let d = (p.avg_size - p.min_size).max(1) as u128;

    let decide = |chunk: &[u8], l: usize| -> bool {
        let mut h = 0u64;
        for j in 0..64 {
            h = h.wrapping_add(gear[chunk[l - 1 - j] as usize].wrapping_shl(j as u32));
        }
        if h >> 58 != 0 {
            return false;
        }
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&h.to_le_bytes());
        let mut b = GenericArray::from(block);
        aes.encrypt_block(&mut b);
        let out = u64::from_le_bytes(b[..8].try_into().unwrap()) as u128;
        if l <= p.avg_size {
            4 * d * out < (1u128 << 70)
        } else {
            d * out < (1u128 << 72)
        }
    };

    let mut lens = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let rest = &data[off..];
        let n = rest.len();
        let mut len = if n >= p.max_size { p.max_size } else { n };
        let mut l = p.min_size;
        while l < p.max_size && l <= n {
            if decide(rest, l) {
                len = l;
                break;
            }
            l += 1;
        }
        lens.push(len);
        off += len;
    }
    lens
}

#[test]
fn golden_small_params_8mib() {
    let data = random(8 << 20, 1);
    let lens = Chunker::new(&KEY, small()).cut_all(&data);
    assert_eq!(lens.iter().sum::<usize>(), data.len());
    assert_eq!(
        (lens.len(), &lens[..10], lengths_digest(&lens).as_str()),
        (GOLDEN_SMALL_COUNT, &GOLDEN_SMALL_FIRST[..], GOLDEN_SMALL_DIGEST)
    );
}

#[test]
fn golden_default_params_32mib() {
    let data = random(32 << 20, 2);
    let lens = Chunker::new(&KEY, ChunkerParams::default()).cut_all(&data);
    assert_eq!(lens.iter().sum::<usize>(), data.len());
    assert_eq!(
        (lens.len(), &lens[..10], lengths_digest(&lens).as_str()),
        (GOLDEN_DEFAULT_COUNT, &GOLDEN_DEFAULT_FIRST[..], GOLDEN_DEFAULT_DIGEST)
    );
}

// Pinned cut points: any change to the chunker format changes these and must
// be a deliberate, versioned format change.
const GOLDEN_SMALL_COUNT: usize = 959;
const GOLDEN_SMALL_FIRST: [usize; 10] = [9796, 3784, 8306, 3531, 10776, 7910, 14255, 9326, 15002, 8823];
const GOLDEN_SMALL_DIGEST: &str = "7b32395dfbcf87e9224f8f60753a7beb86dc6d454aa05e15f8d71965ca4b7b3f";
const GOLDEN_DEFAULT_COUNT: usize = 31;
const GOLDEN_DEFAULT_FIRST: [usize; 10] =
    [1045082, 1120679, 895280, 1369753, 1091779, 1059489, 1215119, 1650031, 1048658, 587764];
const GOLDEN_DEFAULT_DIGEST: &str = "f1afc5d6d1748d2adee10c89754ad881b0ac677eaff901c63e4374783e0315eb";

#[test]
fn matches_literal_reference_on_random_inputs() {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let param_sets = [
        small(),
        ChunkerParams { min_size: 64, avg_size: 256, max_size: 1024 },
        ChunkerParams { min_size: 300, avg_size: 512, max_size: 700 },
        ChunkerParams { min_size: 1024, avg_size: 1024, max_size: 4096 },
        ChunkerParams { min_size: 100, avg_size: 128, max_size: 128 },
    ];
    for (i, p) in param_sets.into_iter().enumerate() {
        for round in 0..4 {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            let n = rng.gen_range(0..300_000);
            let mut data = random(n, rng.gen());
            // Low-entropy stretches exercise repeated hash values.
            if round % 2 == 1 && n > 20_000 {
                data[5_000..15_000].fill(0xab);
            }
            let got = Chunker::new(&key, p).cut_all(&data);
            let want = reference_cuts(&key, p, &data);
            assert_eq!(got, want, "params #{i} round {round} len {n}");
        }
    }
}

#[test]
fn chunks_are_within_bounds_and_concatenate_to_input() {
    for p in [small(), ChunkerParams::default()] {
        let data = random(24 << 20, 3);
        let lens = Chunker::new(&KEY, p).cut_all(&data);
        let (last, body) = lens.split_last().unwrap();
        assert!(body.iter().all(|&l| (p.min_size..=p.max_size).contains(&l)));
        assert!(*last > 0 && *last <= p.max_size);
        let mut joined = Vec::with_capacity(data.len());
        let mut off = 0;
        for &l in &lens {
            joined.extend_from_slice(&data[off..off + l]);
            off += l;
        }
        assert_eq!(joined, data);
    }
}

#[test]
fn cutting_is_deterministic_across_instances_and_clones() {
    let data = random(4 << 20, 4);
    let a = Chunker::new(&KEY, small());
    let b = Chunker::new(&KEY, small());
    let first = a.cut_all(&data);
    assert_eq!(first, a.cut_all(&data));
    assert_eq!(first, b.cut_all(&data));
    assert_eq!(first, a.clone().cut_all(&data));
}

#[test]
fn next_cut_on_a_prefix_never_contradicts_the_full_buffer() {
    let c = Chunker::new(&KEY, small());
    let data = random(200_000, 5);
    let full = c.next_cut(&data, false).unwrap();
    for n in [0, 1, 2047, 2048, full - 1, full, full + 1] {
        let got = c.next_cut(&data[..n], false);
        if n >= full {
            assert_eq!(got, Some(full), "prefix {n}");
        } else {
            assert_eq!(got, None, "prefix {n}");
        }
    }
}

/// Returns between 1 and `max` bytes per read, and sometimes `Interrupted`.
struct ShortReader {
    data: Vec<u8>,
    pos: usize,
    max: usize,
    rng: ChaCha20Rng,
}

impl Read for ShortReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rng.gen_ratio(1, 50) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "try again"));
        }
        let n = self.rng.gen_range(1..=self.max).min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn chunk_reader_equals_cut_all_with_short_reads() {
    let c = Chunker::new(&KEY, small());
    for (len, max_read) in [(0, 10), (1, 1), (100_000, 1), (1 << 20, 5_000), (3 << 20, 1 << 20)] {
        let data = random(len, len as u64);
        let want = c.cut_all(&data);
        let reader =
            ShortReader { data: data.clone(), pos: 0, max: max_read, rng: ChaCha20Rng::seed_from_u64(6) };
        let chunks: Vec<Vec<u8>> = ChunkReader::new(c.clone(), reader).collect::<io::Result<_>>().unwrap();
        let lens: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(lens, want, "len {len} max_read {max_read}");
        assert_eq!(chunks.concat(), data);
    }
}

#[test]
fn chunk_reader_with_default_params_matches_cut_all() {
    let c = Chunker::new(&KEY, ChunkerParams::default());
    let data = random(20 << 20, 8);
    let lens: Vec<usize> = ChunkReader::new(c.clone(), &data[..]).map(|r| r.unwrap().len()).collect();
    assert_eq!(lens, c.cut_all(&data));
}

struct FailingReader(usize);

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = self.0.min(buf.len());
        buf[..n].fill(1);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn chunk_reader_yields_a_read_error_once_then_stops() {
    let c = Chunker::new(&KEY, small());
    let mut it = ChunkReader::new(c, FailingReader(1000));
    let err = it.next().unwrap().unwrap_err();
    assert_eq!(err.to_string(), "disk on fire");
    assert!(it.next().is_none());
}

#[test]
fn insertion_near_start_changes_only_the_first_chunks() {
    for p in [small(), ChunkerParams::default()] {
        let data = random(16 << 20, 9);
        let mut edited = data[..1000].to_vec();
        edited.extend_from_slice(&random(100, 10));
        edited.extend_from_slice(&data[1000..]);
        let c = Chunker::new(&KEY, p);
        let a = c.cut_all(&data);
        let b = c.cut_all(&edited);
        // Chunks are identical once the cut points resynchronize: lengths
        // match from index k on (k <= 2), and so do the bytes (same suffix).
        let k = (0..=2)
            .find(|&k| a[k..] == b[k..])
            .unwrap_or_else(|| panic!("more than two chunks changed: {:?} vs {:?}", &a[..4], &b[..4]));
        let sa: usize = a[k..].iter().sum();
        assert_eq!(data[data.len() - sa..], edited[edited.len() - sa..]);
        assert!(a.len() > 10);
    }
}

#[test]
fn different_keys_give_different_cut_points() {
    let data = random(8 << 20, 11);
    let a = Chunker::new(&[1u8; 32], small()).cut_all(&data);
    let b = Chunker::new(&[2u8; 32], small()).cut_all(&data);
    let mut pa = std::collections::HashSet::new();
    let mut off = 0;
    for l in &a[..a.len() - 1] {
        off += l;
        pa.insert(off);
    }
    let mut shared = 0;
    off = 0;
    for l in &b[..b.len() - 1] {
        off += l;
        shared += usize::from(pa.contains(&off));
    }
    // ~970 cuts each; unrelated keys share only chance coincidences.
    assert!(shared * 20 < a.len(), "{shared} of {} cut points shared", a.len());
}

#[test]
fn mean_chunk_length_is_near_avg_size() {
    let data = random(64 << 20, 12);
    for p in [small(), ChunkerParams::default()] {
        let lens = Chunker::new(&KEY, p).cut_all(&data);
        let body = &lens[..lens.len() - 1];
        let mean = body.iter().sum::<usize>() as f64 / body.len() as f64;
        let ratio = mean / p.avg_size as f64;
        assert!((0.75..=1.25).contains(&ratio), "{p:?}: mean {mean}");
    }
}
