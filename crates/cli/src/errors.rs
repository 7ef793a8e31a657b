//! Turning an error chain into the one line the user sees, with the hint that tells them what
//! to do. Library errors already name the object; this adds the sentence.

use offsite_backend::StorageError;
use offsite_repo::RepoError;

use crate::output::escape;

/// Whether the error (anywhere in its chain) is a closed stdout: not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The whole chain on one line, joined by ": ", skipping causes whose text a wrapper already
/// shows (library errors often print their source inline), with a hint for known errors.
/// Escaped for the terminal ([`escape`]): messages name paths, and a newline or an escape
/// sequence in one is shown as `\n` or `\x1b`, keeping the error on one harmless line.
pub fn render(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    if let Some(repo_err) = err.chain().find_map(|c| c.downcast_ref::<RepoError>()) {
        let plain = repo_err.to_string();
        if let Some(hinted) = hint(repo_err) {
            line = if line.contains(&plain) {
                line.replacen(&plain, &hinted, 1)
            } else {
                format!("{line}: {hinted}")
            };
        }
    }
    if err.chain().any(|c| matches!(c.downcast_ref::<StorageError>(), Some(StorageError::NoSpace { .. }))) {
        line.push_str(": free space on the storage (or raise its quota), then run the command again");
    }
    escape(&line).into_owned()
}

/// The message with a hint, for repository errors where a hint helps.
fn hint(err: &RepoError) -> Option<String> {
    Some(match err {
        RepoError::NoRepository { location } => {
            format!("no repository at {location}: check --repo, or create one with `offsite init`")
        }
        RepoError::WrongPassphrase { .. } => format!("{err}; check OFFSITE_PASSWORD/--password-file"),
        RepoError::BackupOnly => {
            "this key can only add backups: use a full key to read, restore or check".into()
        }
        RepoError::AlreadyExists { .. } => format!("{err}: choose another --repo, or use it as it is"),
        RepoError::NoSnapshot(_) => format!("{err}: see `offsite snapshots`"),
        RepoError::AmbiguousSnapshot(_) => format!("{err}: give more characters of the id"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_causes_are_shown_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(io).context("reading /x: gone");
        assert_eq!(render(&err), "reading /x: gone");
    }

    #[test]
    fn repository_errors_get_hints() {
        let err = anyhow::Error::new(RepoError::NoRepository { location: "/r".into() });
        assert_eq!(render(&err), "no repository at /r: check --repo, or create one with `offsite init`");
        let err = anyhow::Error::new(RepoError::BackupOnly).context("listing snapshots");
        assert_eq!(
            render(&err),
            "listing snapshots: this key can only add backups: use a full key to read, restore or check"
        );
        let err = anyhow::Error::new(RepoError::WrongPassphrase { location: "/r".into() });
        assert!(render(&err).ends_with("; check OFFSITE_PASSWORD/--password-file"));
    }

    #[test]
    fn a_full_storage_says_what_to_do() {
        let full = StorageError::NoSpace { what: "sftp://u@h/r/data/ab/abcd".into() };
        let err = anyhow::Error::new(RepoError::from(full)).context("backing up");
        assert_eq!(
            render(&err),
            "backing up: no space left on storage while writing sftp://u@h/r/data/ab/abcd: free space on \
             the storage (or raise its quota), then run the command again"
        );
    }

    #[test]
    fn names_in_errors_cannot_reach_the_terminal_raw() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(io).context("reading /src/evil\x1b[2J\rname\nnext");
        assert_eq!(render(&err), "reading /src/evil\\x1b[2J\\rname\\nnext: gone");
    }

    #[test]
    fn broken_pipe_is_found_in_the_chain() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::new(io).context("writing")));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
