//! `kubectl stowage ...`: kubectl runs `kubectl-stowage` from the PATH as a plugin, and this
//! runs `stowage k8s ...` with the same arguments.

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args
        .next()
        .unwrap_or_else(|| OsString::from("kubectl-stowage"));
    let argv = [program, OsString::from("k8s")]
        .into_iter()
        .chain(args)
        .collect();
    stowage_cli::main(argv)
}

#[path = "cli/mod.rs"]
mod stowage_cli;
