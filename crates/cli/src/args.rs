//! Command-line arguments exactly as typed (clap structs). Nothing here reads the environment
//! beyond clap's `env` fallbacks or interprets values: `resolve` turns these into an
//! `Invocation`, and each command parses its own values (sizes, percentages, selectors).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// offsite: encrypted, deduplicated, incremental backups to storage you do not trust.
#[derive(Debug, Parser)]
#[command(
    name = "offsite",
    version,
    about = "Encrypted, deduplicated, incremental backups to storage you do not trust",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after any subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Repository: a path, sftp://user@host[:port]/path, s3://bucket/prefix, rest:http(s)://host/path or rclone:remote:path
    #[arg(long, global = true, env = "OFFSITE_REPOSITORY", value_name = "REPO")]
    pub repo: Option<String>,

    /// Read the passphrase from the first line of this file
    #[arg(long, global = true, env = "OFFSITE_PASSWORD_FILE", hide_env_values = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Use the whole content of this file as the passphrase (after the OFFSITE_PASSWORD* sources)
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Machine output: one JSON object per line on stdout, each with a "type" field
    #[arg(long, global = true)]
    pub json: bool,

    /// Try only the key files whose id starts with this (see `offsite key list`); without it,
    /// at most 8 key files are tried, the one used last first
    #[arg(long, global = true, env = "OFFSITE_KEY_ID", value_name = "ID")]
    pub key_id: Option<String>,

    /// Refuse to work unless this snapshot (id or prefix) is in the repository: carries trust
    /// to a machine with no record of it (see the state digest `snapshots` prints)
    #[arg(long, global = true, env = "OFFSITE_EXPECT_LATEST", value_name = "ID")]
    pub expect_latest: Option<String>,

    /// Directory for the local cache (files cache, seen snapshots)
    #[arg(long, global = true, env = "OFFSITE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Use no local cache: every run starts cold
    #[arg(long, global = true)]
    pub no_cache: bool,

    /// Print only errors and warnings
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more (itemized changes; -vv for debug logs)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Worker threads (default: one per core)
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,

    /// Parallel transfers to the repository: uploads while backing up, downloads while
    /// restoring [default: 4 for remote repositories, 2 for a local path]
    #[arg(long, global = true, env = "OFFSITE_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub connections: Option<u16>,

    /// SSH private key for sftp:// repositories (default: ~/.ssh keys, then the agent)
    #[arg(long, global = true, env = "OFFSITE_SSH_IDENTITY", value_name = "FILE")]
    pub ssh_identity: Option<PathBuf>,

    /// known_hosts file for sftp:// repositories (default: ~/.ssh/known_hosts)
    #[arg(long, global = true, env = "OFFSITE_SSH_KNOWN_HOSTS", value_name = "FILE")]
    pub ssh_known_hosts: Option<PathBuf>,

    /// S3 endpoint URL for s3:// repositories (default: AWS; path-style addressing when set)
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// Trust the root certificates in this PEM file, instead of the system's, for
    /// rest:https:// repositories and https S3 endpoints (a server with a private CA)
    #[arg(long, global = true, env = "OFFSITE_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Remote storage: give up on a transfer after this long without a byte moving [default: 60s]
    #[arg(long, global = true, env = "OFFSITE_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,

    /// Remote storage: connection timeout [default: 15s]
    #[arg(long, global = true, env = "OFFSITE_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub connect_timeout: Option<String>,

    /// Remote storage: stop retrying and fail once unreachable this long [default: 10m]
    #[arg(long, global = true, env = "OFFSITE_GIVE_UP_AFTER", value_name = "DURATION")]
    pub give_up_after: Option<String>,

    /// TEST ONLY: create keys with the cheapest Argon2id parameters, whose passphrases anyone
    /// holding the key file cracks quickly; init and key add/passwd take it only with the value
    /// testing-only-keys-are-crackable
    #[arg(
        long,
        global = true,
        env = "OFFSITE_INSECURE_FAST_KDF",
        hide_short_help = true,
        value_name = "CONFIRMATION"
    )]
    pub insecure_fast_kdf: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository
    Init,
    /// Back up files and directories into a new snapshot
    Backup(BackupArgs),
    /// List snapshots
    Snapshots(SnapshotsArgs),
    /// List the entries of a snapshot
    Ls(LsArgs),
    /// Show what changed between two snapshots
    Diff(DiffArgs),
    /// Write one file of a snapshot to stdout
    Dump(DumpArgs),
    /// Restore a snapshot into a directory
    Restore(RestoreArgs),
    /// Verify the repository's structure and, optionally, its data
    Check(CheckArgs),
    /// Acknowledge snapshots that are gone from the storage (--missing): writes a forget
    /// record so they are no longer reported as missing
    Forget(ForgetArgs),
    /// Manage the keys (passphrases) that open the repository
    #[command(subcommand)]
    Key(KeyCommand),
}

/// `offsite forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Snapshots reported as "missing but seen before" (id or id prefix) to acknowledge as
    /// gone, after reading what was lost; `--missing all` names every missing snapshot
    #[arg(long, value_name = "ID", num_args = 1.., required = true)]
    pub missing: Vec<String>,
    /// Show what would be acknowledged; write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Filters applied before a snapshot is selected or listed.
#[derive(Debug, Args, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Only snapshots that backed up this path
    #[arg(long = "path", id = "filter_path", value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Only snapshots with this tag (repeat: all must match)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

/// `offsite backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Show what would be stored (itemized, plaintext names) and store nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Exclude paths matching this gitignore-style pattern (repeatable)
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from this file, one per line (repeatable)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Skip directories holding a valid CACHEDIR.TAG
    #[arg(long)]
    pub exclude_caches: bool,
    /// Do not cross file system boundaries
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Skip files larger than SIZE (bytes, or with K, M, G, T: powers of 1024)
    #[arg(long, value_name = "SIZE")]
    pub exclude_larger_than: Option<String>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Read every file, ignoring the files cache
    #[arg(long)]
    pub force: bool,
}

/// `offsite snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Which snapshots to list
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `offsite ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot: latest, latest~N, an id prefix, a date (2026-11-01[T10:00]) or an age (10D, 3h)
    #[arg(value_name = "SNAP")]
    pub snapshot: String,
    /// Only this path (absolute, as backed up) and what is below it
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Filters for SNAP
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `offsite diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older snapshot
    #[arg(value_name = "SNAP")]
    pub old: String,
    /// The newer snapshot
    #[arg(value_name = "SNAP")]
    pub new: String,
    /// Filters for both SNAPs
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `offsite dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot (see `offsite ls --help`)
    #[arg(value_name = "SNAP")]
    pub snapshot: String,
    /// The file (absolute path, as backed up)
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Filters for SNAP
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// What to do with files that already exist in the restore target.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OverwriteArg {
    /// Always write them
    Always,
    /// Write them unless they already match (resume)
    IfChanged,
    /// Never touch them
    Never,
}

/// `offsite restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot (see `offsite ls --help`)
    #[arg(value_name = "SNAP")]
    pub snapshot: String,
    /// Directory to restore into (created if missing)
    #[arg(long, short = 't', value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only paths matching this pattern (repeatable)
    #[arg(long = "include", short = 'i', value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Do not restore paths matching this pattern (repeatable)
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Existing files in the target
    #[arg(long, value_enum, default_value = "if-changed", value_name = "WHEN")]
    pub overwrite: OverwriteArg,
    /// Filters for SNAP
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `offsite check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read, decrypt and verify every pack
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Also read this percentage of the packs, chosen at random (e.g. 10%)
    #[arg(long, value_name = "N%")]
    pub read_data_subset: Option<String>,
}

/// `offsite key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a key (a new passphrase) to the repository
    Add(KeyAddArgs),
    /// List the keys of the repository (* marks the one in use)
    List,
    /// Remove a key by id prefix
    Remove(KeyRemoveArgs),
    /// Change the passphrase of the key in use
    Passwd(KeyPasswdArgs),
}

/// `offsite key add`.
#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// The new key can add backups but read nothing (for laptops and cron jobs)
    #[arg(long)]
    pub backup_only: bool,
    /// Read the new passphrase from the first line of this file (else OFFSITE_NEW_PASSWORD, else a prompt)
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

/// `offsite key remove`.
#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    /// Id (or unique prefix) of the key, as shown by `offsite key list`
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `offsite key passwd`.
#[derive(Debug, Args)]
pub struct KeyPasswdArgs {
    /// Read the new passphrase from the first line of this file (else OFFSITE_NEW_PASSWORD, else a prompt)
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["offsite", "snapshots", "--json", "--repo", "/r"]).expect("parses");
        assert!(cli.global.json);
        assert_eq!(cli.global.repo.as_deref(), Some("/r"));
    }

    #[test]
    fn filter_path_is_distinct_from_a_positional_path() {
        let cli = Cli::try_parse_from(["offsite", "dump", "latest", "/x", "--path", "/y"]).expect("parses");
        let Command::Dump(d) = cli.command else { panic!("not dump") };
        assert_eq!(d.path, PathBuf::from("/x"));
        assert_eq!(d.filter.path, Some(PathBuf::from("/y")));
    }
}
