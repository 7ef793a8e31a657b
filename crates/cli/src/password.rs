//! Where passphrases come from (file, command, environment, key file, terminal prompt) and
//! reading them into zeroizing buffers. A passphrase is never logged or printed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

/// A passphrase in memory; wiped when dropped.
pub type Passphrase = Zeroizing<Vec<u8>>;

/// One place a passphrase is read from, chosen by `resolve` in the documented order.
pub enum Source {
    /// First line of a file (`--password-file`, `OFFSITE_PASSWORD_FILE`, `--new-password-file`).
    File(PathBuf),
    /// First line of the output of `sh -c COMMAND` (`OFFSITE_PASSWORD_COMMAND`).
    Command(String),
    /// The value of an environment variable (`OFFSITE_PASSWORD`, `OFFSITE_NEW_PASSWORD`).
    Env(&'static str, Zeroizing<String>),
    /// The whole content of a key file (`--key-file`).
    KeyFile(PathBuf),
    /// Ask on the terminal; fails when stdin is not one.
    Prompt,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "File({})", p.display()),
            Source::Command(_) => f.write_str("Command(..)"),
            Source::Env(name, _) => write!(f, "Env({name})"),
            Source::KeyFile(p) => write!(f, "KeyFile({})", p.display()),
            Source::Prompt => f.write_str("Prompt"),
        }
    }
}

/// Why a passphrase is wanted: decides the prompt text and the message when none is available.
#[derive(Clone, Copy, Debug)]
pub enum Purpose<'a> {
    /// Open the repository at this location.
    Open(&'a str),
    /// Create a repository (asked twice on a terminal).
    Create(&'a str),
    /// A new key's passphrase (asked twice on a terminal).
    NewKey,
}

/// Read the passphrase from `source`.
pub fn read(source: &Source, purpose: Purpose<'_>) -> Result<Passphrase> {
    let pass = match source {
        Source::File(path) => first_line(read_secret_file(path)?),
        Source::Command(cmd) => run_command(cmd)?,
        Source::Env(_, value) => Zeroizing::new(value.as_bytes().to_vec()),
        Source::KeyFile(path) => read_secret_file(path)?,
        Source::Prompt => prompt(purpose)?,
    };
    if pass.is_empty() {
        bail!("empty passphrase from {}", describe(source));
    }
    Ok(pass)
}

fn describe(source: &Source) -> String {
    match source {
        Source::File(p) => format!("password file {}", p.display()),
        Source::Command(_) => "OFFSITE_PASSWORD_COMMAND".into(),
        Source::Env(name, _) => (*name).into(),
        Source::KeyFile(p) => format!("key file {}", p.display()),
        Source::Prompt => "the prompt".into(),
    }
}

fn read_secret_file(path: &Path) -> Result<Passphrase> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .with_context(|| format!("cannot read passphrase file {}", path.display()))
}

/// The first line of `bytes`, without its line ending (`\n` or `\r\n`), wiping the rest.
pub fn first_line(mut bytes: Passphrase) -> Passphrase {
    let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let end = if end > 0 && bytes[end - 1] == b'\r' { end - 1 } else { end };
    // Zeroizing<Vec> wipes only the live length on drop: clear the tail before truncating.
    for b in &mut bytes[end..] {
        *b = 0;
    }
    bytes.truncate(end);
    bytes
}

/// Run the password command with `sh -c`; it does not inherit the passphrases of the
/// environment ([`offsite_backend::SECRET_ENV_VARS`]).
fn run_command(cmd: &str) -> Result<Passphrase> {
    let mut command = Command::new("sh");
    command.arg("-c").arg(cmd).stdin(Stdio::inherit()).stderr(Stdio::inherit()).stdout(Stdio::piped());
    for var in offsite_backend::SECRET_ENV_VARS {
        command.env_remove(var);
    }
    let output = command.output().context("cannot run OFFSITE_PASSWORD_COMMAND with sh")?;
    let status = output.status;
    let stdout = Zeroizing::new(output.stdout);
    if !status.success() {
        bail!("OFFSITE_PASSWORD_COMMAND failed ({status}): fix the command or unset it");
    }
    Ok(first_line(stdout))
}

fn prompt(purpose: Purpose<'_>) -> Result<Passphrase> {
    if !std::io::stdin().is_terminal() {
        match purpose {
            Purpose::NewKey => bail!(
                "no new passphrase: use --new-password-file or set OFFSITE_NEW_PASSWORD, or run in a terminal"
            ),
            _ => bail!(
                "no passphrase: set OFFSITE_PASSWORD_FILE, OFFSITE_PASSWORD_COMMAND or OFFSITE_PASSWORD, or run in a terminal"
            ),
        }
    }
    let (text, confirm) = match purpose {
        Purpose::Open(loc) => (format!("passphrase for {loc}: "), false),
        Purpose::Create(loc) => (format!("passphrase for the new repository {loc}: "), true),
        Purpose::NewKey => ("new passphrase: ".to_string(), true),
    };
    let first = Zeroizing::new(rpassword::prompt_password(text).context("cannot read the passphrase")?);
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("enter it again: ").context("cannot read the passphrase")?,
        );
        if *first != *again {
            bail!("the passphrases do not match");
        }
    }
    Ok(Zeroizing::new(first.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &[u8]) -> Vec<u8> {
        first_line(Zeroizing::new(s.to_vec())).to_vec()
    }

    #[test]
    fn first_line_strips_line_endings_and_the_rest() {
        assert_eq!(line(b"secret\n"), b"secret");
        assert_eq!(line(b"secret\r\nother\n"), b"secret");
        assert_eq!(line(b"secret"), b"secret");
        assert_eq!(line(b" spaced out \n"), b" spaced out ");
        assert_eq!(line(b"\nsecond"), b"");
    }

    #[test]
    fn command_output_first_line() {
        let p = read(&Source::Command("printf 'abc\\ndef\\n'".into()), Purpose::Open("x")).expect("runs");
        assert_eq!(&p[..], b"abc");
    }

    #[test]
    fn failing_command_is_an_error() {
        let e = read(&Source::Command("exit 3".into()), Purpose::Open("x")).expect_err("fails");
        assert!(e.to_string().contains("OFFSITE_PASSWORD_COMMAND failed"), "{e}");
    }

    #[test]
    fn key_file_is_used_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("k");
        std::fs::write(&f, b"line1\nline2\n").expect("write");
        assert_eq!(
            &read(&Source::KeyFile(f.clone()), Purpose::Open("x")).expect("reads")[..],
            b"line1\nline2\n"
        );
        assert_eq!(&read(&Source::File(f), Purpose::Open("x")).expect("reads")[..], b"line1");
    }

    #[test]
    fn empty_passphrase_is_refused() {
        let e = read(&Source::Env("OFFSITE_PASSWORD", Zeroizing::new(String::new())), Purpose::Open("x"))
            .expect_err("empty");
        assert!(e.to_string().contains("empty passphrase from OFFSITE_PASSWORD"), "{e}");
    }
}
