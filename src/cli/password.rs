//! Where the password comes from: STOWAGE_PASSWORD, --password-file, --password-command, or a
//! prompt when standard input is a terminal.

use super::GlobalArgs;
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use zeroize::Zeroizing;

fn first_line(mut s: String) -> Zeroizing<String> {
    if let Some(i) = s.find(['\n', '\r']) {
        s.truncate(i);
    }
    Zeroizing::new(s)
}

/// Finds the password for an existing repository.
pub fn get(args: &GlobalArgs) -> Result<Zeroizing<String>> {
    obtain(args, "enter repository password: ", false)
}

/// Finds the password for a new repository or key; a prompt asks twice.
pub fn get_new(args: &GlobalArgs, prompt: &str) -> Result<Zeroizing<String>> {
    obtain(args, prompt, true)
}

fn obtain(args: &GlobalArgs, prompt: &str, confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("STOWAGE_PASSWORD") {
        return Ok(Zeroizing::new(p));
    }
    if let Some(path) = &args.password_file {
        let s = std::fs::read_to_string(path)
            .with_context(|| format!("reading password file {}", path.display()))?;
        return Ok(first_line(s));
    }
    if let Some(cmd) = &args.password_command {
        let words = shell_words::split(cmd).context("parsing --password-command")?;
        let Some((prog, rest)) = words.split_first() else {
            bail!("--password-command is empty");
        };
        let out = std::process::Command::new(prog)
            .args(rest)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running password command {prog:?}"))?;
        if !out.status.success() {
            bail!("password command {prog:?} failed with {}", out.status);
        }
        return Ok(first_line(
            String::from_utf8(out.stdout).context("password command printed invalid UTF-8")?,
        ));
    }
    if std::io::stdin().is_terminal() {
        let p = Zeroizing::new(rpassword::prompt_password(prompt).context("reading password")?);
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("enter the password again: ")
                    .context("reading password")?,
            );
            if *p != *again {
                bail!("the passwords do not match");
            }
        }
        return Ok(p);
    }
    bail!("no password given: set STOWAGE_PASSWORD, --password-file or --password-command")
}

/// Reads a new password for `key add` / `key passwd` from STOWAGE_NEW_PASSWORD,
/// --new-password-file or a prompt.
pub fn get_for_new_key(file: Option<&std::path::Path>) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("STOWAGE_NEW_PASSWORD") {
        return Ok(Zeroizing::new(p));
    }
    if let Some(path) = file {
        let s = std::fs::read_to_string(path)
            .with_context(|| format!("reading password file {}", path.display()))?;
        return Ok(first_line(s));
    }
    if std::io::stdin().is_terminal() {
        let p = Zeroizing::new(rpassword::prompt_password("enter the new password: ")?);
        let again = Zeroizing::new(rpassword::prompt_password(
            "enter the new password again: ",
        )?);
        if *p != *again {
            bail!("the passwords do not match");
        }
        return Ok(p);
    }
    bail!("no new password given: set STOWAGE_NEW_PASSWORD or --new-password-file")
}
