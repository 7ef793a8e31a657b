//! Chunk size parameters and their validation.

use thiserror::Error;

/// Smallest allowed `min_size`: the cut decision hashes the 64 bytes before a
/// cut position, and those bytes must all belong to the chunk.
pub const MIN_MIN_SIZE: usize = 64;

/// Largest allowed `max_size` (256 MiB); the streaming reader buffers up to
/// twice this much.
pub const MAX_MAX_SIZE: usize = 256 << 20;

/// Errors of the chunker crate.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ChunkerError {
    /// The chunk size parameters are inconsistent or out of range.
    #[error("invalid chunker parameters min={min} avg={avg} max={max}: {reason}")]
    InvalidParams {
        /// The rejected `min_size`.
        min: usize,
        /// The rejected `avg_size`.
        avg: usize,
        /// The rejected `max_size`.
        max: usize,
        /// Which rule the parameters break.
        reason: &'static str,
    },
}

/// Chunk size bounds. Every chunk except the last one of a stream is at least
/// `min_size` and at most `max_size` bytes long; content-defined cuts are tuned
/// so that the mean chunk length is close to `avg_size` (about
/// `min_size + 1.08 * (avg_size - min_size)` on random data).
///
/// The parameters are part of the repository format: changing them changes
/// every cut point and so defeats deduplication against existing data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkerParams {
    /// No content-defined cut is made before this many bytes (>= 64).
    pub min_size: usize,
    /// Target mean chunk length and the switch point of normalized chunking
    /// (a power of two).
    pub avg_size: usize,
    /// A chunk is cut at this length if no content-defined cut was found
    /// (<= 256 MiB).
    pub max_size: usize,
}

impl Default for ChunkerParams {
    /// The repository default: min 512 KiB, avg 1 MiB, max 8 MiB.
    fn default() -> Self {
        ChunkerParams { min_size: 512 << 10, avg_size: 1 << 20, max_size: 8 << 20 }
    }
}

impl ChunkerParams {
    /// Checks `64 <= min_size <= avg_size <= max_size <= 256 MiB` and that
    /// `avg_size` is a power of two; returns which rule is broken otherwise.
    pub fn validate(&self) -> Result<(), ChunkerError> {
        let fail = |reason| {
            Err(ChunkerError::InvalidParams {
                min: self.min_size,
                avg: self.avg_size,
                max: self.max_size,
                reason,
            })
        };
        if self.min_size < MIN_MIN_SIZE {
            return fail("min_size must be at least 64");
        }
        if self.min_size > self.avg_size {
            return fail("min_size must not exceed avg_size");
        }
        if self.avg_size > self.max_size {
            return fail("avg_size must not exceed max_size");
        }
        if !self.avg_size.is_power_of_two() {
            return fail("avg_size must be a power of two");
        }
        if self.max_size > MAX_MAX_SIZE {
            return fail("max_size must not exceed 256 MiB");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_documented_sizes() {
        let p = ChunkerParams::default();
        assert_eq!((p.min_size, p.avg_size, p.max_size), (512 << 10, 1 << 20, 8 << 20));
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn small_test_params_are_valid() {
        let p = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 65536 };
        assert_eq!(p.validate(), Ok(()));
        let eq = ChunkerParams { min_size: 4096, avg_size: 4096, max_size: 4096 };
        assert_eq!(eq.validate(), Ok(()));
    }

    #[test]
    fn rejects_each_broken_rule() {
        let bad = [
            (ChunkerParams { min_size: 63, avg_size: 128, max_size: 256 }, "at least 64"),
            (ChunkerParams { min_size: 8192, avg_size: 4096, max_size: 65536 }, "min_size must not"),
            (ChunkerParams { min_size: 1024, avg_size: 8192, max_size: 4096 }, "avg_size must not"),
            (ChunkerParams { min_size: 1024, avg_size: 6000, max_size: 65536 }, "power of two"),
            (ChunkerParams { min_size: 1024, avg_size: 8192, max_size: 512 << 20 }, "256 MiB"),
        ];
        for (p, want) in bad {
            let err = p.validate().expect_err("params must be rejected");
            assert!(err.to_string().contains(want), "{err} should mention {want}");
        }
    }
}
