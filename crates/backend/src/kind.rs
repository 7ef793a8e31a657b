//! Object kinds, their place in the layout, and object-name validation.

use crate::error::{StorageError, StorageResult};

/// The kinds of objects a repository holds; each lives in its own directory (restic REST v2
/// layout), except [`ObjectKind::Config`], a single object at the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// The repository config, a single object named `config` at the root (its id is "").
    Config,
    /// Key files, `keys/<id>`.
    Key,
    /// Pack files, `data/<first two hex chars of id>/<id>`.
    Data,
    /// Index files, `index/<id>`.
    Index,
    /// Snapshot files, `snapshots/<id>`.
    Snapshot,
    /// Lock files, `locks/<id>`.
    Lock,
}

impl ObjectKind {
    /// Every kind, in layout order.
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Data,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
    ];

    /// Name of the kind's directory on storage ("keys", "data", ...); for Config, the
    /// name of the config object itself, "config".
    pub fn dir_name(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "keys",
            ObjectKind::Data => "data",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Lock => "locks",
        }
    }

    /// The object's path relative to the repository root, '/'-separated: `config`,
    /// `data/ab/ab…`, `snapshots/…`. The id must have been validated.
    pub fn relative_path(self, id: &str) -> String {
        match self {
            ObjectKind::Config => "config".to_string(),
            ObjectKind::Data => format!("data/{}/{}", &id[..2], id),
            _ => format!("{}/{}", self.dir_name(), id),
        }
    }
}

/// True if `s` is a valid object id: exactly 64 lowercase hex characters.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Check that `id` names an object of `kind`: empty for Config, 64 lowercase hex for every
/// other kind. Anything else (uppercase, "../x", wrong length) is
/// [`StorageError::InvalidName`], so no caller-provided string ever reaches a path or URL
/// unchecked.
pub fn validate_id(kind: ObjectKind, id: &str) -> StorageResult<()> {
    let ok = match kind {
        ObjectKind::Config => id.is_empty(),
        _ => is_object_id(id),
    };
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName { name: format!("{}/{}", kind.dir_name(), id) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn ids_are_64_lowercase_hex_and_config_is_empty() {
        for kind in ObjectKind::ALL {
            if kind == ObjectKind::Config {
                assert!(validate_id(kind, "").is_ok());
                assert!(validate_id(kind, GOOD).is_err());
            } else {
                assert!(validate_id(kind, GOOD).is_ok());
                assert!(validate_id(kind, "").is_err());
                assert!(validate_id(kind, &GOOD.to_uppercase()).is_err());
                assert!(validate_id(kind, &GOOD[1..]).is_err());
                assert!(validate_id(kind, &format!("{GOOD}0")).is_err());
                assert!(validate_id(kind, "../etc").is_err());
            }
        }
    }

    #[test]
    fn paths_follow_the_rest_v2_layout() {
        assert_eq!(ObjectKind::Config.relative_path(""), "config");
        assert_eq!(ObjectKind::Data.relative_path(GOOD), format!("data/01/{GOOD}"));
        assert_eq!(ObjectKind::Snapshot.relative_path(GOOD), format!("snapshots/{GOOD}"));
        let dirs: Vec<_> = ObjectKind::ALL.iter().map(|k| k.dir_name()).collect();
        assert_eq!(dirs, ["config", "keys", "data", "index", "snapshots", "locks"]);
    }
}
