//! Parsing and printing quantities: sizes (`10M`), percentages (`10%`), byte counts, durations,
//! times and file modes. Pure functions, tested here.

use anyhow::{bail, Result};

/// Parse a size: plain bytes (`1234`) or a number with a binary unit `K`, `M`, `G`, `T`
/// (powers of 1024; `KiB`, `KB` and a trailing `B` are accepted too).
pub fn parse_size(s: &str) -> Result<u64> {
    let bad =
        || anyhow::anyhow!("invalid size {s:?}: use bytes, or a number with K, M, G or T (e.g. 500K, 10M)");
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_uppercase();
    // `iB` only after a unit letter: a bare `5iB` is not 5 bytes.
    let unit =
        unit.strip_suffix("IB").filter(|u| !u.is_empty()).or_else(|| unit.strip_suffix('B')).unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| anyhow::anyhow!("size {s:?} is too large"))
}

/// A duration such as `500ms`, `30s`, `10m`, `2h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let t = s.trim();
    let (num, mult_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (t, 1000)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid duration {s:?}: use e.g. 500ms, 30s, 10m, 2h"))?;
    let ms = n.checked_mul(mult_ms).ok_or_else(|| anyhow::anyhow!("duration {s:?} is too large"))?;
    Ok(std::time::Duration::from_millis(ms))
}

/// Parse a percentage for `--read-data-subset`: `10%` or `10`, in (0, 100].
pub fn parse_percent(s: &str) -> Result<f64> {
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t);
    match t.trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => bail!("invalid percentage {s:?}: use a number above 0 and at most 100, like 10%"),
    }
}

/// A byte count for humans, in binary units: `512 B`, `1.50 KiB`, `12.34 MiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.2} {unit}")
}

/// Milliseconds as seconds with two decimals: `1.23s`.
pub fn format_duration_ms(ms: u64) -> String {
    format!("{}.{:02}s", ms / 1000, (ms % 1000) / 10)
}

/// An RFC 3339 time shown in the local time zone (`2026-11-20 10:00:00`); unparseable text is
/// shown as it is.
pub fn local_time(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(ts) => local_timestamp(ts),
        Err(_) => rfc3339.to_string(),
    }
}

/// A timestamp in the local time zone.
pub fn local_timestamp(ts: jiff::Timestamp) -> String {
    ts.to_zoned(jiff::tz::TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// Seconds and nanoseconds since the epoch as a timestamp (out of range: the epoch).
pub fn timestamp(secs: i64, nanos: u32) -> jiff::Timestamp {
    let nanos = i32::try_from(nanos).unwrap_or(0);
    jiff::Timestamp::new(secs, nanos).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// `ls -l` style mode: the type character then `rwx` triplets with setuid, setgid and sticky.
pub fn mode_string(type_char: char, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(type_char);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o40, 'r'),
        (0o20, 'w'),
        (0o10, 'x'),
        (0o4, 'r'),
        (0o2, 'w'),
        (0o1, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        let set = mode & bit != 0;
        s.push(match (special, set, i) {
            (true, true, 8) => 't',
            (true, false, 8) => 'T',
            (true, true, _) => 's',
            (true, false, _) => 'S',
            (false, true, _) => *c,
            (false, false, _) => '-',
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0").expect("ok"), 0);
        assert_eq!(parse_size("1234").expect("ok"), 1234);
        assert_eq!(parse_size("500K").expect("ok"), 500 * 1024);
        assert_eq!(parse_size("10M").expect("ok"), 10 << 20);
        assert_eq!(parse_size("2G").expect("ok"), 2 << 30);
        assert_eq!(parse_size("1T").expect("ok"), 1 << 40);
        assert_eq!(parse_size("10m").expect("ok"), 10 << 20);
        assert_eq!(parse_size("10MiB").expect("ok"), 10 << 20);
        assert_eq!(parse_size("10MB").expect("ok"), 10 << 20);
        assert_eq!(parse_size("7B").expect("ok"), 7);
        // "5iB": found by the fuzz target `units` (it used to parse as 5 bytes).
        for bad in ["", "K", "10X", "-5", "1.5M", "10 M M", "M10", "5iB", "5 iB", "5IB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(parse_size("99999999999T").expect_err("overflow").to_string().contains("too large"));
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("10%").expect("ok"), 10.0);
        assert_eq!(parse_percent("2.5").expect("ok"), 2.5);
        assert_eq!(parse_percent("100%").expect("ok"), 100.0);
        for bad in ["0%", "101%", "x", "", "-3%"] {
            assert!(parse_percent(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn bytes_and_durations() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.50 KiB");
        assert_eq!(format_bytes(5 << 20), "5.00 MiB");
        assert_eq!(format_bytes(3 << 30), "3.00 GiB");
        assert_eq!(format_duration_ms(1234), "1.23s");
        assert_eq!(format_duration_ms(5), "0.00s");
    }

    #[test]
    fn modes() {
        assert_eq!(mode_string('-', 0o644), "-rw-r--r--");
        assert_eq!(mode_string('d', 0o755), "drwxr-xr-x");
        assert_eq!(mode_string('-', 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string('d', 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string('-', 0o2640), "-rw-r-S---");
    }
}
