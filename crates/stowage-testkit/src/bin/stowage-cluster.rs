//! `stowage-cluster up DIR [--nodes N]`: runs a test cluster (see `stowage_testkit::cluster`) in
//! the foreground until SIGTERM or SIGINT, then stops it. While it runs, `DIR/kubeconfig` is the
//! admin kubeconfig and `DIR/pid` holds this process's id; both are removed when it stops.
//! `scripts/cluster.sh` runs it in the background. Test tooling, not part of the product.

use std::path::PathBuf;
use std::process::ExitCode;

use stowage_testkit::cluster::{Cluster, ClusterOptions};
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage: stowage-cluster up DIR [--nodes N]";

fn parse(args: &[String]) -> Result<(PathBuf, usize), String> {
    let mut args = args.iter();
    if args.next().map(String::as_str) != Some("up") {
        return Err(USAGE.into());
    }
    let dir = args.next().ok_or(USAGE)?;
    let mut nodes = ClusterOptions::default().nodes;
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--nodes=") {
            Some(v) => v,
            None if arg == "--nodes" => args.next().ok_or(USAGE)?,
            None => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        };
        nodes = value
            .parse()
            .map_err(|_| format!("--nodes needs a number, not {value:?}"))?;
    }
    Ok((PathBuf::from(dir), nodes))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, nodes) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let pid_file = dir.join("pid");
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        if std::path::Path::new(&format!("/proc/{}", pid.trim())).exists() {
            eprintln!(
                "a cluster already runs in {} (pid {})",
                dir.display(),
                pid.trim()
            );
            return ExitCode::FAILURE;
        }
    }
    // A directory reused from an earlier cluster: its state is of no use to a new one. Anything
    // else in it means it is somebody's directory, and nothing is removed.
    const OURS: &[&str] = &[
        "kubeconfig",
        "kubeconfig.tmp",
        "pid",
        "etcd",
        "pki",
        "kubeconfigs",
        "logs",
        // Written by scripts/cluster.sh before it starts this program.
        "stowage-cluster.log",
        "launcher.pid",
    ];
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if let Some(foreign) = names.iter().find(|n| !OURS.contains(&n.as_str())) {
            eprintln!(
                "{} holds {foreign:?}, which no cluster wrote: use an empty or new directory",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
        for stale in ["kubeconfig", "pid", "etcd", "pki", "kubeconfigs", "logs"] {
            let path = dir.join(stale);
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    // Signals are caught from here on, so one arriving during start-up stops the cluster too.
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let options = ClusterOptions {
        nodes,
        dir: Some(dir.clone()),
        ..Default::default()
    };
    let cluster = tokio::select! {
        started = Cluster::start(options) => match started {
            Ok(cluster) => cluster,
            Err(e) => {
                eprintln!("stowage-cluster: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ = term.recv() => return ExitCode::FAILURE,
        _ = int.recv() => return ExitCode::FAILURE,
    };
    if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
        eprintln!("stowage-cluster: writing {}: {e}", pid_file.display());
        return ExitCode::FAILURE;
    }
    eprintln!(
        "stowage-cluster: up at {} with nodes {}; kubeconfig {}",
        cluster.server(),
        cluster.node_names().join(", "),
        cluster.kubeconfig().display()
    );
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("stowage-cluster: stopping");
    let _ = std::fs::remove_file(dir.join("kubeconfig"));
    cluster.stop();
    let _ = std::fs::remove_file(&pid_file);
    ExitCode::SUCCESS
}
