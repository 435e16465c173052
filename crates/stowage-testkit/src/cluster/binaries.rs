//! Where the control-plane binaries come from: the directory `STOWAGE_TESTENV_BIN` names, or the
//! one `scripts/testenv.sh` prints (building it first if its cache is cold, which takes minutes
//! once and is free after that). Nothing is downloaded as a binary: the script compiles them
//! from source.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::{ClusterError, Result};

/// The environment variable naming a directory that holds the binaries.
pub const BIN_ENV: &str = "STOWAGE_TESTENV_BIN";

const REQUIRED: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kwok-stages.yaml",
];

/// The script that builds the binaries, at its place in this repository.
pub fn testenv_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testenv.sh")
}

/// The directory of the binaries: `explicit` if given, else `$STOWAGE_TESTENV_BIN`, else what
/// `scripts/testenv.sh` prints.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    let dir = match explicit {
        Some(dir) => dir.to_path_buf(),
        None => match std::env::var_os(BIN_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => run_script()?,
        },
    };
    for name in REQUIRED {
        if !dir.join(name).exists() {
            return Err(ClusterError::Binaries(format!(
                "{} has no {name} (build it with scripts/testenv.sh)",
                dir.display()
            )));
        }
    }
    Ok(dir)
}

fn run_script() -> Result<PathBuf> {
    let script = testenv_script();
    // The script's progress goes to our stderr; only the directory comes back on stdout.
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| ClusterError::io(format!("running {}", script.display()), e))?;
    if !out.status.success() {
        return Err(ClusterError::Binaries(format!(
            "{} failed ({}); set {BIN_ENV} to a directory of prebuilt ones instead",
            script.display(),
            out.status
        )));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(dir))
}
