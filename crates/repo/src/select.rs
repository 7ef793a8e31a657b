//! Snapshot selectors (`latest`, `latest~N`, id prefix, date, date-time, age) and filters.

use jiff::civil::{Date, DateTime};
use jiff::{Span, Timestamp, Zoned};
use offsite_format::{Snapshot, SnapshotId};

use crate::error::{RepoError, RepoResult};

/// Filters applied before a selector: host, path and tags must all match when given.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// exact host name
    pub host: Option<String>,
    /// the snapshot must include this path among its backed-up paths
    pub path: Option<Vec<u8>>,
    /// the snapshot must carry every one of these tags
    pub tags: Vec<String>,
}

impl SnapshotFilter {
    /// Whether a snapshot passes.
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.host.as_ref().is_none_or(|h| *h == s.host)
            && self.path.as_ref().is_none_or(|p| s.paths.iter().any(|x| x.0 == *p))
            && self.tags.iter().all(|t| s.tags.contains(t))
    }
}

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// `latest` (0) or `latest~N`
    Latest(usize),
    /// hex id prefix
    Prefix(String),
    /// the last snapshot at or before this instant (dates, date-times, ages)
    AtOrBefore(Timestamp),
}

/// Parse a selector relative to `now` (local time zone for dates).
///
/// A date alone means the end of that day; an age is a number and a unit: `s`, `m` (minutes),
/// `h`, `D`/`d`, `W`/`w`, `M` (months), `Y`/`y`.
pub fn parse_selector(spec: &str, now: &Zoned) -> RepoResult<Selector> {
    let bad = || RepoError::BadSelector(spec.to_string());
    let spec_t = spec.trim();
    if spec_t == "latest" {
        return Ok(Selector::Latest(0));
    }
    if let Some(n) = spec_t.strip_prefix("latest~") {
        return n.parse().map(Selector::Latest).map_err(|_| bad());
    }
    if let Some(span) = parse_age(spec_t) {
        return now.checked_sub(span).map(|z| Selector::AtOrBefore(z.timestamp())).map_err(|_| bad());
    }
    if spec_t.contains('-') {
        if let Ok(ts) = spec_t.parse::<Timestamp>() {
            return Ok(Selector::AtOrBefore(ts));
        }
        let tz = now.time_zone().clone();
        if !spec_t.contains(['T', 't', ' ']) {
            let d: Date = spec_t.parse().map_err(|_| bad())?;
            let end = d.to_datetime(jiff::civil::time(23, 59, 59, 999_999_999));
            return end.to_zoned(tz).map(|z| Selector::AtOrBefore(z.timestamp())).map_err(|_| bad());
        }
        if let Ok(dt) = spec_t.parse::<DateTime>() {
            return dt.to_zoned(tz).map(|z| Selector::AtOrBefore(z.timestamp())).map_err(|_| bad());
        }
        return Err(bad());
    }
    if !spec_t.is_empty() && spec_t.len() <= 64 && spec_t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Selector::Prefix(spec_t.to_ascii_lowercase()));
    }
    Err(bad())
}

fn parse_age(s: &str) -> Option<Span> {
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    if n < 0 || s.len() < 2 {
        return None;
    }
    let span = Span::new();
    match unit {
        's' => span.try_seconds(n).ok(),
        'm' => span.try_minutes(n).ok(),
        'h' => span.try_hours(n).ok(),
        'D' | 'd' => span.try_days(n).ok(),
        'W' | 'w' => span.try_weeks(n).ok(),
        'M' => span.try_months(n).ok(),
        'Y' | 'y' => span.try_years(n).ok(),
        _ => None,
    }
}

/// Time of a snapshot as an instant: its `time` parsed as RFC 3339. `None` when it does not
/// parse, which decoding refuses ([`crate::Repository::snapshot_set`]), so a listed snapshot
/// always has one.
pub fn snapshot_time(s: &Snapshot) -> Option<Timestamp> {
    s.time.parse().ok()
}

/// Sort snapshots oldest first: by time value, ties by id (FORMAT.md §9). Never by the time
/// string: `…:45.5Z` sorts before `…:45Z` as a string, and anything after `9` (`"~"`) would
/// stay latest for ever.
pub fn sort_snapshots<T: std::borrow::Borrow<(SnapshotId, Snapshot)>>(snaps: &mut [T]) {
    snaps.sort_by_cached_key(|e| {
        let (id, s) = e.borrow();
        (snapshot_time(s), *id)
    });
}

/// Pick one snapshot from `snaps` (in any order) by selector and filter.
pub fn select<'a>(
    snaps: &'a [(SnapshotId, Snapshot)],
    spec: &str,
    filter: &SnapshotFilter,
    now: &Zoned,
) -> RepoResult<&'a (SnapshotId, Snapshot)> {
    let sel = parse_selector(spec, now)?;
    let mut candidates: Vec<&(SnapshotId, Snapshot)> =
        snaps.iter().filter(|(_, s)| filter.matches(s)).collect();
    sort_snapshots(&mut candidates);
    let none = || RepoError::NoSnapshot(spec.to_string());
    match sel {
        Selector::Latest(n) => candidates.iter().rev().nth(n).copied().ok_or_else(none),
        Selector::Prefix(p) => {
            let m: Vec<_> = candidates.into_iter().filter(|(id, _)| id.to_hex().starts_with(&p)).collect();
            match m.as_slice() {
                [one] => Ok(*one),
                [] => Err(none()),
                _ => Err(RepoError::AmbiguousSnapshot(spec.to_string())),
            }
        }
        Selector::AtOrBefore(t) => {
            candidates.into_iter().rfind(|(_, s)| snapshot_time(s).is_some_and(|at| at <= t)).ok_or_else(none)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsite_format::{BlobId, RepoId, Summary};

    fn snap(time: &str, host: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            version: 1,
            repository: RepoId([0; 32]),
            time: time.into(),
            host: host.into(),
            user: "u".into(),
            paths: vec![offsite_format::RawBytes(b"/data".to_vec())],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tree: BlobId([0; 32]),
            parent: None,
            seen: vec![],
            summary: Summary::default(),
            program: "t".into(),
        }
    }

    fn fixture() -> Vec<(SnapshotId, Snapshot)> {
        vec![
            (SnapshotId([0x11; 32]), snap("2026-10-01T10:00:00Z", "a", &[])),
            (SnapshotId([0x12; 32]), snap("2026-11-01T09:00:00Z", "b", &["x"])),
            (SnapshotId([0x21; 32]), snap("2026-11-10T12:00:00Z", "a", &["x"])),
        ]
    }

    fn now() -> Zoned {
        "2026-11-20T12:00:00+00:00[UTC]".parse().unwrap()
    }

    fn pick(spec: &str, f: &SnapshotFilter) -> RepoResult<u8> {
        let s = fixture();
        select(&s, spec, f, &now()).map(|(id, _)| id.0[0])
    }

    #[test]
    fn selectors() {
        let f = SnapshotFilter::default();
        assert_eq!(pick("latest", &f).unwrap(), 0x21);
        assert_eq!(pick("latest~1", &f).unwrap(), 0x12);
        assert!(matches!(pick("latest~3", &f), Err(RepoError::NoSnapshot(_))));
        assert_eq!(pick("21", &f).unwrap(), 0x21);
        assert!(matches!(pick("1", &f), Err(RepoError::AmbiguousSnapshot(_))));
        assert_eq!(pick("2026-11-01", &f).unwrap(), 0x12);
        assert_eq!(pick("2026-11-01T08:59", &f).unwrap(), 0x11);
        assert_eq!(pick("2026-11-10T12:00:00Z", &f).unwrap(), 0x21);
        assert_eq!(pick("10D", &f).unwrap(), 0x21);
        assert_eq!(pick("11D", &f).unwrap(), 0x12);
        assert_eq!(pick("3W", &f).unwrap(), 0x11);
        assert_eq!(pick("1h", &f).unwrap(), 0x21);
        assert!(matches!(pick("2M", &f), Err(RepoError::NoSnapshot(_))));
        for bad in ["", "latest~x", "yesterday", "2026-13-45", "../x"] {
            assert!(matches!(pick(bad, &f), Err(RepoError::BadSelector(_))), "{bad}");
        }
    }

    #[test]
    fn filters() {
        let host_a = SnapshotFilter { host: Some("a".into()), ..Default::default() };
        assert_eq!(pick("latest~1", &host_a).unwrap(), 0x11);
        let tag = SnapshotFilter { tags: vec!["x".into()], ..Default::default() };
        assert_eq!(pick("latest~1", &tag).unwrap(), 0x12);
        let path = SnapshotFilter { path: Some(b"/other".to_vec()), ..Default::default() };
        assert!(pick("latest", &path).is_err());
    }
}
