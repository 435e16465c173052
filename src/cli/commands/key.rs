use super::super::{password, GlobalArgs};
use anyhow::{bail, Result};
use std::path::PathBuf;
use stowage_core::backend::FileKind;
use stowage_core::repo::keyfile::KeyFile;
use stowage_core::util::short_name;

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// List key files
    List,
    /// Add a password (from STOWAGE_NEW_PASSWORD, --new-password-file or a prompt)
    Add(NewKeyArgs),
    /// Remove a key file (never the last one, nor the one in use)
    Remove { id: String },
    /// Change the password in use: add a new key, then remove the old one
    Passwd(NewKeyArgs),
}

#[derive(clap::Args, Debug)]
pub struct NewKeyArgs {
    #[arg(long)]
    pub new_password_file: Option<PathBuf>,
    /// Argon2id memory in KiB
    #[arg(long, default_value_t = 64 * 1024)]
    pub kdf_memory: u32,
    /// Argon2id passes
    #[arg(long, default_value_t = 3)]
    pub kdf_iterations: u32,
}

pub fn run(g: &GlobalArgs, cmd: KeyCommand) -> Result<u8> {
    let repo = super::open(g)?;
    let backend = repo.backend().clone();
    match cmd {
        KeyCommand::List => {
            let mut rows = Vec::new();
            for f in backend.list(FileKind::Key)? {
                let k = KeyFile::decode(&f.name, &backend.read(FileKind::Key, &f.name)?)?;
                rows.push(serde_json::json!({
                    "id": f.name, "current": f.name == repo.key_name(),
                    "created": k.created, "hostname": k.hostname, "username": k.username,
                }));
            }
            if g.json {
                super::print_json(&rows)?;
            } else {
                for r in &rows {
                    println!(
                        "{} {:<10} {:<16} {:<12} {}",
                        if r["current"].as_bool().unwrap() {
                            "*"
                        } else {
                            " "
                        },
                        short_name(r["id"].as_str().unwrap()),
                        r["hostname"].as_str().unwrap(),
                        r["username"].as_str().unwrap(),
                        r["created"].as_str().unwrap()
                    );
                }
            }
        }
        KeyCommand::Add(a) => {
            let pw = password::get_for_new_key(a.new_password_file.as_deref())?;
            let name = repo.add_key(pw.as_bytes(), a.kdf_memory, a.kdf_iterations)?;
            println!("added key {}", short_name(&name));
        }
        KeyCommand::Passwd(a) => {
            let pw = password::get_for_new_key(a.new_password_file.as_deref())?;
            let name = repo.add_key(pw.as_bytes(), a.kdf_memory, a.kdf_iterations)?;
            backend.remove(FileKind::Key, repo.key_name())?;
            println!(
                "password changed: key {} replaces {}",
                short_name(&name),
                short_name(repo.key_name())
            );
        }
        KeyCommand::Remove { id } => {
            let keys = backend.list(FileKind::Key)?;
            let matches: Vec<_> = keys.iter().filter(|k| k.name.starts_with(&id)).collect();
            let target = match matches.as_slice() {
                [one] => one.name.clone(),
                [] => bail!("no key matches {id:?}"),
                _ => bail!("key id prefix {id:?} is ambiguous"),
            };
            if target == repo.key_name() {
                bail!("refusing to remove the key in use; open the repository with another password to remove it");
            }
            if keys.len() <= 1 {
                bail!("refusing to remove the last key");
            }
            backend.remove(FileKind::Key, &target)?;
            println!("removed key {}", short_name(&target));
        }
    }
    Ok(0)
}
