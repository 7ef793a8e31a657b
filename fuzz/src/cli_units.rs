//! Target `units`: the command-line parsers of quantities (`crates/cli/src/units.rs`), checked
//! against a reference grammar written here.

/// The CLI's own source file, compiled here. `offsite-cli` is a binary crate, and depending on
/// it would pull every storage backend (tokio, opendal, russh: ~300 crates) into the sanitizer
/// build; the file needs only `anyhow` and `jiff`.
#[path = "../../crates/cli/src/units.rs"]
#[allow(dead_code, clippy::all)]
mod units;

use units::{
    format_bytes, format_duration_ms, local_time, mode_string, parse_duration, parse_percent, parse_size,
    timestamp,
};

/// The digits of `s` as an integer, or `None` when `s` is not a non-empty run of ASCII digits.
/// Values above `u64::MAX` are kept (up to `u128::MAX`, then saturated): the caller decides
/// that they overflow, so a wrapped value can never look valid.
fn digits(s: &str) -> Option<u128> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u128, |n, b| n.saturating_mul(10).saturating_add(u128::from(b - b'0'))))
}

/// The size grammar of `parse_size`, written independently: surrounding whitespace, a
/// non-empty run of ASCII digits, optional whitespace, then a unit that is (ASCII case
/// ignored) empty or `B` (bytes), or `K`, `M`, `G`, `T` optionally followed by `B` or `iB`
/// (powers of 1024). The value is `number * 1024^k` in 128-bit arithmetic; above `u64::MAX`
/// it must be refused.
fn reference_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n = digits(&t[..split])?;
    let unit = t[split..].trim().to_ascii_lowercase();
    let pow = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        _ => return None,
    };
    u64::try_from(n.checked_mul(1u128 << (10 * pow))?).ok()
}

/// The duration grammar of `parse_duration`, in milliseconds: surrounding whitespace, an
/// unsigned decimal integer (Rust's syntax: an optional `+`, then digits), optional
/// whitespace, then a unit `ms`, `s`, `m`, `h` or none (seconds). Above `u64::MAX`
/// milliseconds it must be refused.
fn reference_duration_ms(s: &str) -> Option<u128> {
    let t = s.trim();
    let (num, ms) = [("ms", 1u128), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        .into_iter()
        .find_map(|(suffix, ms)| t.strip_suffix(suffix).map(|n| (n, ms)))
        .unwrap_or((t, 1000));
    let num = num.trim();
    let n = digits(num.strip_prefix('+').unwrap_or(num))?;
    let total = n.checked_mul(ms)?;
    (total <= u128::from(u64::MAX)).then_some(total)
}

/// Target `units`: the input (if UTF-8) goes to every parser of `units`
/// (`parse_size`, `parse_duration`, `parse_percent`) and to `local_time` (which shows times
/// read from stored records). None may panic, and:
/// - `parse_size` and `parse_duration` accept exactly what the reference grammars above
///   accept, with the same value: the number times the unit, computed here in 128-bit
///   arithmetic, so an overflow must be an error, never a wrapped value;
/// - an accepted size or duration prints and parses back to itself;
/// - an accepted percentage is finite, in (0, 100], and the input holds a digit.
///
/// The first 8 bytes, whatever they are, also feed the formatters (`format_bytes`,
/// `format_duration_ms`, `mode_string`, `timestamp`), which must not panic; a byte count
/// below 1024 formats as `"<n> B"` and parses back.
pub fn units(data: &[u8]) {
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(data) {
        *w = *b;
    }
    let n = u64::from_le_bytes(word);
    let formatted = format_bytes(n);
    if n < 1024 {
        assert_eq!(formatted, format!("{n} B"));
        assert_eq!(parse_size(&formatted).ok(), Some(n), "{formatted:?} does not parse back");
    }
    let _ = format_duration_ms(n);
    let mode = mode_string('-', n as u32);
    assert_eq!(mode.chars().count(), 10, "mode string {mode:?}");
    let _ = timestamp(n as i64, (n >> 32) as u32);

    let Ok(s) = std::str::from_utf8(data) else { return };
    let size = parse_size(s).ok();
    assert_eq!(size, reference_size(s), "parse_size({s:?}) disagrees with the reference");
    if let Some(v) = size {
        assert_eq!(parse_size(&v.to_string()).ok(), Some(v), "size {v} does not parse back");
    }

    let duration = parse_duration(s).ok();
    assert_eq!(
        duration.map(|d| d.as_millis()),
        reference_duration_ms(s),
        "parse_duration({s:?}) disagrees with the reference"
    );
    if let Some(d) = duration {
        assert_eq!(
            parse_duration(&format!("{}ms", d.as_millis())).ok(),
            Some(d),
            "{d:?} does not parse back"
        );
    }

    if let Ok(p) = parse_percent(s) {
        assert!(p.is_finite() && p > 0.0 && p <= 100.0, "parse_percent({s:?}) accepted {p}");
        assert!(
            s.bytes().any(|b| b.is_ascii_digit()),
            "parse_percent({s:?}) accepted a number without digits"
        );
    }

    let _ = local_time(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_grammars() {
        assert_eq!(reference_size(" 10 KiB "), Some(10 << 10));
        assert_eq!(reference_size("16383P"), None);
        assert_eq!(reference_size("16777215T"), Some(16_777_215 << 40));
        assert_eq!(reference_size("16777216T"), None);
        assert_eq!(reference_size("5iB"), None);
        assert_eq!(reference_duration_ms("+5 s"), Some(5000));
        assert_eq!(reference_duration_ms("18446744073709551615ms"), Some(u128::from(u64::MAX)));
        assert_eq!(reference_duration_ms("18446744073709552s"), None);
        assert_eq!(reference_duration_ms("-1"), None);
    }
}
