//! Compression of blob payloads and records: zstd, with cheap detection of incompressible data
//! and a hard bound on decompressed size.

use std::io::Read;

use crate::FormatError;

/// Largest plaintext any blob or record may decompress to (zstd bombs stop here).
pub const MAX_PLAINTEXT: usize = 512 * 1024 * 1024;

/// First byte of a blob payload: how the rest is stored.
pub const PAYLOAD_RAW: u8 = 0;
/// First byte of a blob payload: the rest is one zstd frame.
pub const PAYLOAD_ZSTD: u8 = 1;

/// Sample size for the incompressibility probe.
const PROBE: usize = 32 * 1024;

/// Build a blob payload (`flag || body`) from plaintext: zstd at `level` unless a probe of the
/// first 32 KiB shows the data does not compress (then raw, no further work), or the result is
/// not smaller than the input.
pub fn compress_payload(data: &[u8], level: i32) -> Vec<u8> {
    if level > 0 && !looks_incompressible(data) {
        if let Some(c) = with_compressor(level, |c| c.compress(data).ok()) {
            if c.len() + 1 < data.len() {
                let mut out = Vec::with_capacity(c.len() + 1);
                out.push(PAYLOAD_ZSTD);
                out.extend_from_slice(&c);
                return out;
            }
        }
    }
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(PAYLOAD_RAW);
    out.extend_from_slice(data);
    out
}

/// True when a fast zstd pass over the first 32 KiB saves less than 2%.
fn looks_incompressible(data: &[u8]) -> bool {
    // Small inputs: compressing them outright costs less than probing first.
    if data.len() <= 2 * PROBE {
        return false;
    }
    let sample = &data[..data.len().min(PROBE)];
    with_compressor(1, |c| c.compress(sample).ok()).is_none_or(|c| c.len() * 100 >= sample.len() * 98)
}

thread_local! {
    /// One zstd context per thread and level: creating a context costs more than compressing
    /// a small file.
    static COMPRESSORS: std::cell::RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> Option<T>,
) -> Option<T> {
    COMPRESSORS.with(|cell| {
        let mut v = cell.borrow_mut();
        if !v.iter().any(|(l, _)| *l == level) {
            v.push((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, c) = v.iter_mut().find(|(l, _)| *l == level)?;
        f(c)
    })
}

thread_local! {
    /// One zstd decompression context per thread: creating one per blob was 2.4% of a
    /// restore's CPU time.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => f(d),
            None => Err(std::io::Error::other("no zstd context")),
        }
    })
}

/// Decode a blob payload; `raw_len` is the plaintext length recorded in the index (the bound).
pub fn decompress_payload(payload: &[u8], raw_len: usize) -> Result<Vec<u8>, FormatError> {
    let (&flag, body) = payload.split_first().ok_or(FormatError::Malformed("empty blob payload"))?;
    if raw_len > MAX_PLAINTEXT {
        return Err(FormatError::TooLarge { limit: MAX_PLAINTEXT });
    }
    let out = match flag {
        PAYLOAD_RAW => body.to_vec(),
        PAYLOAD_ZSTD => with_decompressor(|d| d.decompress(body, raw_len))
            .map_err(|_| FormatError::Malformed("zstd frame invalid or larger than recorded"))?,
        _ => return Err(FormatError::Malformed("unknown payload compression flag")),
    };
    if out.len() != raw_len {
        return Err(FormatError::Malformed("blob length differs from the recorded length"));
    }
    Ok(out)
}

/// Compress a record's JSON (level 3).
pub fn compress_record(json: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(json, 3).unwrap_or_else(|_| json.to_vec())
}

/// Decompress a record, refusing output above [`MAX_PLAINTEXT`] without ever holding more than
/// the record's real size: a frame that declares its content size is checked before anything
/// is decoded; one that does not is first decoded into nothing to learn its size. (A record is
/// authentic once it gets here, but a backup-only key can write index objects and snapshots,
/// so one may still be a zstd bomb.)
pub fn decompress_record(body: &[u8]) -> Result<Vec<u8>, FormatError> {
    let limit = MAX_PLAINTEXT as u64;
    let decoder = || {
        zstd::stream::read::Decoder::new(body)
            .map_err(|_| FormatError::Malformed("record is not a zstd frame"))
    };
    let invalid = |_| FormatError::Malformed("record is not a valid zstd frame");
    let size = match zstd::zstd_safe::get_frame_content_size(body) {
        Ok(Some(n)) => n,
        Ok(None) => std::io::copy(&mut decoder()?.take(limit + 1), &mut std::io::sink()).map_err(invalid)?,
        Err(_) => return Err(FormatError::Malformed("record is not a zstd frame")),
    };
    if size > limit {
        return Err(FormatError::TooLarge { limit: MAX_PLAINTEXT });
    }
    let mut out = Vec::new();
    decoder()?.take(size + 1).read_to_end(&mut out).map_err(invalid)?;
    if out.len() as u64 != size {
        return Err(FormatError::Malformed("record frame size differs from its declared size"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_is_compressed_and_round_trips() {
        let data = b"hello world ".repeat(10_000);
        let p = compress_payload(&data, 3);
        assert_eq!(p[0], PAYLOAD_ZSTD);
        assert!(p.len() < data.len() / 10);
        assert_eq!(decompress_payload(&p, data.len()).unwrap(), data);
    }

    #[test]
    fn random_is_stored_raw() {
        let rnd: Vec<u8> = (0..4096).flat_map(|i: u32| offsite_crypto::sha256(&i.to_le_bytes())).collect();
        let p = compress_payload(&rnd, 3);
        assert_eq!(p[0], PAYLOAD_RAW);
        assert_eq!(decompress_payload(&p, rnd.len()).unwrap(), rnd);
    }

    #[test]
    fn bomb_is_bounded_by_recorded_length() {
        let zeros = vec![0u8; 10_000_000];
        let p = compress_payload(&zeros, 3);
        assert!(decompress_payload(&p, 1000).is_err());
        assert!(decompress_payload(&[], 0).is_err());
        assert!(decompress_payload(&[9, 1, 2], 2).is_err());
    }
}
