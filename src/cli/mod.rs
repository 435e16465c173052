//! Command-line parsing and dispatch. Library errors are typed; here they become one-line
//! messages, followed by the advice for their kind (`advice.rs`), and exit codes:
//! 0 success, 1 error, 2 bad usage, 3 backup written but incomplete (some files unreadable).

mod advice;
mod commands;
mod location;
mod password;
mod progress;

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code of a backup whose snapshot was written but misses unreadable entries.
pub const EXIT_INCOMPLETE: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "stowage",
    version,
    about = "Deduplicating, encrypted backups",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Repository location: a directory path (or local:PATH), s3:https://HOST[:PORT]/BUCKET[/PREFIX]
    /// or s3://BUCKET[/PREFIX]
    #[arg(short = 'r', long = "repo", env = "STOWAGE_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// Read the password from this file (first line)
    #[arg(long, env = "STOWAGE_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this command and use the first line of its output as the password
    #[arg(long, env = "STOWAGE_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Folder of the local cache (default: $XDG_CACHE_HOME/stowage or ~/.cache/stowage)
    #[arg(long, env = "STOWAGE_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Use no local cache: read the whole index into memory (slower start, same results)
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors and the final summary
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output (repeat for more)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Backend option KEY=VALUE, repeatable (s3.region=, s3.path-style=true, s3.ca-bundle=FILE, ...)
    #[arg(short = 'o', long = "option", value_name = "KEY=VALUE", global = true,
          value_parser = location::parse_option)]
    pub options: Vec<(String, String)>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    Init(commands::init::InitArgs),
    /// Back up files and directories (or standard input)
    Backup(commands::backup::BackupArgs),
    /// List snapshots
    Snapshots(commands::snapshots::SnapshotsArgs),
    /// List the files of a snapshot
    Ls(commands::ls::LsArgs),
    /// Print repository objects: config, snapshot ID, tree ID, index ID, key ID, pack ID
    Cat(commands::cat::CatArgs),
    /// Restore a snapshot
    Restore(commands::restore::RestoreArgs),
    /// Show what changed between two snapshots
    Diff(commands::diff::DiffArgs),
    /// Show sizes: restore size of snapshots and deduplicated storage
    Stats(commands::stats::StatsArgs),
    /// Check the repository's consistency and, with --read-data, every byte of data
    Check(commands::check::CheckArgs),
    /// Manage passwords (key files)
    #[command(subcommand)]
    Key(commands::key::KeyCommand),
    /// Remove snapshots by a retention policy (then `prune`, or use --prune)
    Forget(commands::forget::ForgetArgs),
    /// Delete data no snapshot uses; safe while backups run
    Prune(commands::prune::PruneArgs),
    /// Rebuild the index from packs, or rewrite snapshots around missing data
    #[command(subcommand)]
    Repair(commands::repair::RepairCommand),
    /// Remove stale locks left by dead processes
    Unlock(commands::repair::UnlockArgs),
    /// Kubernetes backups: Backup and BackupStorageLocation objects, the CRDs
    K8s(commands::k8s::K8sCommand),
    /// Run the controller: back up what Backup objects select, keep storage locations validated
    Controller(commands::controller::ControllerArgs),
    /// Run the node agent: copy the volume data of this node's VolumeBackups and VolumeRestores
    Agent(commands::agent::AgentArgs),
}

/// Runs the program on its arguments (program name first); every error becomes one line on
/// stderr.
pub fn main(args: Vec<OsString>) -> ExitCode {
    // `stowage k8s ...` has a parser of its own (see commands/k8s/mod.rs).
    if args.get(1).is_some_and(|a| a == "k8s") {
        return commands::k8s::main(args[2..].to_vec());
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // A long-running service logs what it does (info) with times and targets; a command only
    // warnings, unless asked.
    let service = matches!(cli.command, Command::Controller(_) | Command::Agent(_));
    let level = match (cli.global.quiet, cli.global.verbose, service) {
        (true, _, _) => "error",
        (false, 0, false) => "warn",
        (false, 0, true) | (false, 1, _) => "info",
        (false, _, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOWAGE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "stowage={level},stowage_core={level},stowage_s3={level},stowage_kube={level}"
        ))
    });
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match service {
        true => logger.init(),
        false => logger.with_target(false).without_time().init(),
    }
    if let Command::K8s(k) = cli.command {
        return commands::k8s::main(k.args);
    }
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // One line: the outermost context and its causes joined.
            // Library errors often include their cause in their own message already.
            let mut msg = String::new();
            for c in e.chain() {
                let s = c.to_string();
                if !msg.ends_with(&s) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&s);
                }
            }
            // The engine's messages carry no command-line advice: it is added here, by kind.
            let msg = advice::with_advice(msg, &e);
            eprintln!("stowage: error: {msg}");
            ExitCode::from(1)
        }
    }
}
