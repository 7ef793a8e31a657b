//! Keyed content-defined chunking for offsite.
//!
//! [`Chunker`] splits a byte stream into chunks whose boundaries depend on the
//! content (so an insertion only changes the chunks around it) and on a secret
//! per-repository key (so chunk lengths do not reveal the rolling hash or let
//! an observer predict boundaries). [`ChunkReader`] applies it to an
//! [`std::io::Read`] with a bounded buffer.
//!
//! # Cut-point format (normative; copied into `docs/FORMAT.md`)
//!
//! Inputs: the 32-byte chunker key `K`; parameters `min`, `avg`, `max` with
//! `64 <= min <= avg <= max <= 2^28` and `avg` a power of two. Integers are
//! unbounded unless stated; `u64` arithmetic wraps modulo 2^64.
//!
//! 1. **Gear table.** `G[0..256]`: the first 2048 bytes of the BLAKE3 XOF in
//!    `derive_key` mode with context `"offsite 2026-11 chunker gear table"`
//!    over key material `K`, read as 256 little-endian `u64`. (Its first 32
//!    bytes equal `blake3::derive_key(context, K)`.)
//! 2. **PRF key.** `P = blake3::derive_key("offsite 2026-11 chunker cut prf", K)`
//!    (32 bytes), used as an AES-256 key.
//! 3. **Gear hash.** For a chunk `c` (bytes `c[0..]`) and a length `L >= 64`:
//!    `h(L) = sum_{j=0}^{63} G[c[L-1-j]] * 2^j  (mod 2^64)`, i.e. the value of
//!    `h = (h << 1) + G[byte]` after feeding `c[L-64..L]` into `h = 0`. Bytes
//!    older than 64 have shifted out, so `h(L)` depends on exactly those 64
//!    bytes.
//! 4. **Prefilter.** `L` is a *candidate* iff the top `k = 6` bits of `h(L)`
//!    are zero (`h(L) < 2^58`): one position in 64 on random data.
//! 5. **PRF.** For a candidate, `out(L)` = the first 8 bytes, little-endian,
//!    of `AES-256_P(h(L) as 8 little-endian bytes || 8 zero bytes)`.
//! 6. **Normalized thresholds.** With `d = max(avg - min, 1)`, a candidate `L`
//!    is a *cut* iff
//!    - `L <= avg` (strict): `4 * d * out(L) < 2^70`, i.e. `out(L) < ceil(2^70 / (4d))`,
//!      a per-position cut probability of `min(1/(4d), 1/64)`;
//!    - `L > avg` (loose): `d * out(L) < 2^72`, i.e. `out(L) < ceil(2^72 / d)`,
//!      a per-position cut probability of `min(4/d, 1/64)`.
//!
//!    (Computed with 128-bit integers; a threshold `>= 2^64` means every
//!    candidate cuts.)
//! 7. **Chunk length.** For the remaining stream `c` of `n > 0` bytes, the
//!    chunk length is the smallest `L` with `min <= L <= min(n, max - 1)` that
//!    is a cut; if there is none, it is `max` when `n >= max` and `n`
//!    otherwise (end of stream). The next chunk starts right after it, with a
//!    fresh `c`; nothing carries over between chunks.
//!
//! The expected chunk length on random data is about `min + 1.08 * (avg - min)`
//! (about 1.04 MiB for the defaults; 8.5 KiB for min 2 KiB, avg 8 KiB).
//! Golden tests in `tests/chunker.rs` pin the cut points for the key `[7; 32]`,
//! and a slow literal implementation of the steps above is checked against
//! this crate on random inputs.
//!
//! # What an observer of chunk lengths learns
//!
//! An observer who sees chunk lengths (and perhaps knows or chooses the
//! plaintext) learns, for each chunk that was not cut at `max` or at the end
//! of the stream, that its length `L` satisfies: `h(L)` has its top 6 bits
//! zero **and** `out(L)` is below the threshold; and, for every shorter
//! length in `[min, L)`, that it is not a cut. Consequences:
//!
//! - **The PRF output hides the cut decision from the hash.** Given `h`,
//!   `out` is an AES-256 output under a key derived independently of the gear
//!   table, so cut lengths are pseudorandom in the sense of the
//!   UHF-then-PRF construction of eprint 2025/558 and borg 2's `rabin-aes`
//!   (which this design follows), *except for the prefilter*. Even someone who
//!   knew the whole gear table could not predict which candidates cut.
//! - **The prefilter leaks 6 bits of the gear hash per content-defined cut.**
//!   At each such cut the observer learns `h(L) >> 58 == 0`, which is 6 bits
//!   of a function of the secret gear table and the 64 bytes before the cut.
//!   Non-cut positions reveal almost nothing: the per-position cut probability is
//!   about `1/(4d)`. With enough known plaintext these equations could in
//!   principle be solved for the gear table, as the 2025 attacks did for
//!   unprotected gear and buzhash chunkers. An observer who has the gear table
//!   still cannot predict cuts. They can only check a guessed plaintext
//!   against observed lengths: a content-defined cut of a random non-matching
//!   file lands on a candidate with probability 1/64, so each such cut gives
//!   about 6 bits of evidence for or against the guess. This leak is the
//!   price of the throughput target. Running the PRF at every position, as
//!   borg 2's AES chunkers do, removes it, but borg documents those chunkers at
//!   about 600 MB/s per core.
//! - **Hash collisions get equal decisions.** Two windows whose most recent
//!   differing byte is `j` bytes before the cut (`j` = 0 for the last byte)
//!   get the same gear hash with probability at most `2^(j-64)` over the key. The
//!   decisions of windows that differ only in their oldest bytes are therefore
//!   correlated. Uniform runs (e.g. zeros) hash to one constant, so they are
//!   chunked at one fixed keyed length: `min`, `avg + 1` or `max`.
//! - **Equal content gives equal lengths.** That is inherent to
//!   deduplication. Packs hide blob lengths separately (padding, shuffling).
//! - The first `min` bytes of each chunk are never examined. Forced cuts at
//!   `max` and at the end of the stream reveal only that no cut occurred.
//!
//! # Performance
//!
//! The search skips the first `min - 63` bytes of each chunk. It then runs one
//! shift-add, one table load and one compare per byte, and AES only at
//! candidates. `examples/chunk_bench.rs` measures it.

mod cdc;
mod params;
mod reader;

pub use cdc::{Chunker, GEAR_CONTEXT, PREFILTER_BITS, PRF_CONTEXT, WINDOW};
pub use params::{ChunkerError, ChunkerParams, MAX_MAX_SIZE, MIN_MIN_SIZE};
pub use reader::ChunkReader;
