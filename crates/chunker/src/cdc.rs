//! The keyed content-defined cut decision: gear hash, prefilter, AES PRF.

use std::fmt;

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes256;

use crate::params::ChunkerParams;

/// BLAKE3 `derive_key` context of the gear table (2048 bytes of XOF output).
pub const GEAR_CONTEXT: &str = "offsite 2026-11 chunker gear table";
/// BLAKE3 `derive_key` context of the AES-256 key of the cut PRF.
pub const PRF_CONTEXT: &str = "offsite 2026-11 chunker cut prf";
/// Number of top gear-hash bits that must be zero for a position to be a
/// candidate (`k` in the format description): one position in 64.
pub const PREFILTER_BITS: u32 = 6;
/// Number of bytes before a cut position that the decision depends on.
pub const WINDOW: usize = 64;

/// A position is a candidate iff its gear hash is below this value.
const PREFILTER_LIMIT: u64 = 1 << (64 - PREFILTER_BITS);

/// A keyed content-defined chunker.
///
/// Holds the secret gear table and PRF key derived from the repository's
/// chunker key; `Debug` shows only the parameters. The format of the cut
/// decision is described in the crate documentation.
#[derive(Clone)]
pub struct Chunker {
    gear: [u64; 256],
    prf: Aes256,
    params: ChunkerParams,
    /// Cut iff `prf_out < strict` for chunk lengths `<= avg_size`.
    strict: u128,
    /// Cut iff `prf_out < loose` for chunk lengths `> avg_size`.
    loose: u128,
}

impl fmt::Debug for Chunker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunker").field("params", &self.params).field("keys", &"<redacted>").finish()
    }
}

impl Chunker {
    /// Builds the chunker for one repository. `key` is the 32-byte
    /// per-repository chunker key (secret); the gear table and the PRF key are
    /// derived from it with BLAKE3 `derive_key` under two distinct contexts.
    ///
    /// # Panics
    /// If `params.validate()` fails: parameters come from the repository
    /// config, which is validated when it is read.
    pub fn new(key: &[u8; 32], params: ChunkerParams) -> Chunker {
        if let Err(e) = params.validate() {
            panic!("Chunker::new called with {e}");
        }
        let mut bytes = [0u8; 256 * 8];
        let mut xof = blake3::Hasher::new_derive_key(GEAR_CONTEXT);
        xof.update(key);
        xof.finalize_xof().fill(&mut bytes);
        let mut gear = [0u64; 256];
        for (g, b) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            *g = u64::from_le_bytes(le);
        }
        let prf_key = blake3::derive_key(PRF_CONTEXT, key);
        let prf = Aes256::new(GenericArray::from_slice(&prf_key));
        // d = max(avg - min, 1); strict: 4*d*out < 2^(64+k); loose: d*out < 2^(66+k).
        let d = (params.avg_size - params.min_size).max(1) as u128;
        let strict = (1u128 << (64 + PREFILTER_BITS)).div_ceil(4 * d);
        let loose = (1u128 << (66 + PREFILTER_BITS)).div_ceil(d);
        Chunker { gear, prf, params, strict, loose }
    }

    /// The size parameters this chunker was built with.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the chunk that starts at `data[0]`.
    ///
    /// Returns the first content-defined cut in `data`. If there is none:
    /// `Some(max_size)` when `data` holds at least `max_size` bytes; otherwise
    /// `None` when `eof` is false (supply more bytes, from the same start) and
    /// `Some(data.len())` when `eof` is true. Empty `data` gives `None`.
    /// Never returns `Some(0)` and never exceeds `max_size`.
    pub fn next_cut(&self, data: &[u8], eof: bool) -> Option<usize> {
        self.next_cut_from(data, eof, 0)
    }

    /// Like [`Chunker::next_cut`], but the caller guarantees that no chunk
    /// length `< resume` is a content-defined cut (it saw `None` for a shorter
    /// prefix of the same data), so scanning starts there.
    pub(crate) fn next_cut_from(&self, data: &[u8], eof: bool, resume: usize) -> Option<usize> {
        let n = data.len();
        if n == 0 {
            return None;
        }
        let p = self.params;
        let lo = p.min_size.max(resume);
        let hi = n.min(p.max_size - 1);
        if lo <= hi {
            if let Some(len) = self.scan(data, lo, hi) {
                return Some(len);
            }
        }
        if n >= p.max_size {
            Some(p.max_size)
        } else if eof {
            Some(n)
        } else {
            None
        }
    }

    /// All chunk lengths of `data`, in order; they sum to `data.len()`.
    pub fn cut_all(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::with_capacity(data.len() / self.params.avg_size + 1);
        let mut off = 0;
        while let Some(len) = self.next_cut(&data[off..], true) {
            out.push(len);
            off += len;
        }
        out
    }

    /// The PRF of a gear hash: AES-256 of the block `h (LE) || 0^64`, first 8
    /// output bytes read as a little-endian integer.
    #[inline]
    fn prf(&self, h: u64) -> u64 {
        let mut block = GenericArray::from([0u8; 16]);
        block[..8].copy_from_slice(&h.to_le_bytes());
        self.prf.encrypt_block(&mut block);
        let mut out = [0u8; 8];
        out.copy_from_slice(&block[..8]);
        u64::from_le_bytes(out)
    }

    /// First chunk length `L` in `lo..=hi` whose cut decision is positive.
    /// Requires `WINDOW <= lo` and `hi <= data.len()`.
    fn scan(&self, data: &[u8], lo: usize, hi: usize) -> Option<usize> {
        let mut h = 0u64;
        for &b in &data[lo - WINDOW..lo - 1] {
            h = (h << 1).wrapping_add(self.gear[usize::from(b)]);
        }
        let avg = self.params.avg_size;
        if lo <= avg {
            let end = hi.min(avg);
            if let Some(len) = self.scan_phase(data, &mut h, lo, end, self.strict) {
                return Some(len);
            }
        }
        let lo = lo.max(avg + 1);
        if lo <= hi {
            return self.scan_phase(data, &mut h, lo, hi, self.loose);
        }
        None
    }

    /// Rolls the gear hash over `data[lo-1..hi]`, testing lengths `lo..=hi`
    /// against `threshold`. `h` must be the hash of the 63 bytes before
    /// `data[lo-1]`; on `None` it is left as the hash ending at `data[hi-1]`.
    #[inline(always)]
    fn scan_phase(&self, data: &[u8], h: &mut u64, lo: usize, hi: usize, threshold: u128) -> Option<usize> {
        let mut hh = *h;
        for (i, &b) in data[lo - 1..hi].iter().enumerate() {
            hh = (hh << 1).wrapping_add(self.gear[usize::from(b)]);
            // Branch taken at one position in 64 on random data; the PRF
            // runs only there.
            if hh < PREFILTER_LIMIT && u128::from(self.prf(hh)) < threshold {
                return Some(lo + i);
            }
        }
        *h = hh;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ChunkerParams {
        ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 65536 }
    }

    /// Deterministic filler that is not all-equal bytes.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn debug_shows_params_but_no_key_material() {
        let c = Chunker::new(&[0x42; 32], small());
        let s = format!("{c:?}");
        assert!(s.contains("min_size: 2048"), "{s}");
        assert!(s.contains("<redacted>"), "{s}");
        let g0 = c.gear[0].to_string();
        assert!(!s.contains(&g0), "gear entry leaked in {s}");
        assert!(!s.to_lowercase().contains("aes"), "{s}");
    }

    #[test]
    fn empty_data_has_no_chunk() {
        let c = Chunker::new(&[1; 32], small());
        assert_eq!(c.next_cut(&[], true), None);
        assert_eq!(c.next_cut(&[], false), None);
        assert!(c.cut_all(&[]).is_empty());
    }

    #[test]
    fn short_data_needs_more_unless_eof() {
        let c = Chunker::new(&[1; 32], small());
        let d = bytes(100, 3);
        assert_eq!(c.next_cut(&d, false), None);
        assert_eq!(c.next_cut(&d, true), Some(100));
        assert_eq!(c.next_cut(&d[..1], true), Some(1));
    }

    #[test]
    fn uniform_data_is_cut_at_a_keyed_fixed_length() {
        // All-zero windows hash to one constant, so every position of a zero
        // run gets the same decision: chunks are min, avg + 1 or max long.
        let c = Chunker::new(&[1; 32], small());
        let zeros = vec![0u8; 1 << 20];
        let lens = c.cut_all(&zeros);
        let first = lens[0];
        assert!([2048, 8193, 65536].contains(&first), "{first}");
        assert!(lens[..lens.len() - 1].iter().all(|&l| l == first));
    }

    #[test]
    fn max_size_is_forced_when_nothing_cuts() {
        // With min == avg == max there is no search range: every chunk is max.
        let p = ChunkerParams { min_size: 4096, avg_size: 4096, max_size: 4096 };
        let c = Chunker::new(&[9; 32], p);
        let d = bytes(10_000, 5);
        assert_eq!(c.cut_all(&d), vec![4096, 4096, 1808]);
        assert_eq!(c.next_cut(&d[..4095], false), None);
        assert_eq!(c.next_cut(&d[..4096], false), Some(4096));
    }

    #[test]
    fn thresholds_follow_the_formula() {
        let c = Chunker::new(&[1; 32], small());
        // d = 6144: strict = ceil(2^70 / 24576), loose = ceil(2^72 / 6144).
        assert_eq!(c.strict, (1u128 << 70).div_ceil(24576));
        assert_eq!(c.loose, (1u128 << 72).div_ceil(6144));
        let eq = Chunker::new(&[1; 32], ChunkerParams { min_size: 4096, avg_size: 4096, max_size: 8192 });
        assert_eq!(eq.strict, 1u128 << 68);
        assert_eq!(eq.loose, 1u128 << 72);
    }

    #[test]
    #[should_panic(expected = "invalid chunker parameters")]
    fn new_rejects_invalid_params() {
        let _ = Chunker::new(&[0; 32], ChunkerParams { min_size: 32, avg_size: 64, max_size: 128 });
    }
}
