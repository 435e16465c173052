//! The `stowage` command line. All errors end here: one line on stderr and a non-zero exit.

use std::process::ExitCode;

fn main() -> ExitCode {
    stowage_cli::main()
}

#[path = "cli/mod.rs"]
mod stowage_cli;
