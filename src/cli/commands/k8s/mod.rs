//! `stowage k8s ...`, also installed as `kubectl stowage ...`: the Backup and
//! BackupStorageLocation objects a Stowage controller works on, and the CRDs that define them.
//! The flags and the output follow Velero's CLI, so a Velero user finds the same commands.
//!
//! It has a parser of its own ([`K8sCli`]): kubectl's `-o json|yaml` and `-n` cannot live
//! beside the engine's global `-o KEY=VALUE`, so `stowage k8s` hands the rest of the command
//! line to it (the `k8s` entry of the main parser only carries those words along).
//!
//! Errors are one line (`backup "x" not found in namespace stowage`, `cannot reach the API
//! server at https://...: Connection refused`); exit codes are 0, 1 (error, or a waited-for
//! backup that did not complete) and 2 (bad usage).

pub mod backup;
pub mod location;
pub mod output;
pub mod parse;
mod repository;
pub mod restore;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The field manager of everything this command line writes.
pub const FIELD_MANAGER: &str = "stowage";

/// The words after `stowage k8s`, parsed by [`K8sCli`] (see the module comment).
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct K8sCommand {
    /// `crds`, `backup`, `restore`, `backup-location`; `stowage k8s --help` lists them
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub args: Vec<OsString>,
}

/// The `stowage k8s` command line.
#[derive(Parser, Debug)]
#[command(
    name = "stowage k8s",
    about = "Kubernetes backups and restores: Backup, Restore and BackupStorageLocation objects, the CRDs",
    max_term_width = 100
)]
pub struct K8sCli {
    #[command(flatten)]
    pub global: K8sGlobal,
    #[command(subcommand)]
    pub command: K8sSub,
}

/// Where the API server is and which namespace the controller watches (kubectl's flags).
#[derive(clap::Args, Debug, Clone)]
pub struct K8sGlobal {
    /// The kubeconfig file (a ':'-separated list is merged, as kubectl does)
    #[arg(long, env = "KUBECONFIG", global = true, value_name = "PATH")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use (default: its current context)
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The controller's namespace, where Backups and BackupStorageLocations live
    #[arg(
        short = 'n',
        long,
        env = "STOWAGE_NAMESPACE",
        default_value = "stowage",
        global = true,
        value_name = "NS"
    )]
    pub namespace: String,
}

/// The `stowage k8s` commands.
#[derive(clap::Subcommand, Debug)]
pub enum K8sSub {
    /// Print the CustomResourceDefinitions, or install them with --apply
    Crds(CrdsArgs),
    /// Create, list, describe, cancel and delete backups, and read their logs
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Create, list, describe and delete backup storage locations
    #[command(subcommand)]
    BackupLocation(location::LocationCommand),
    /// Create, list, describe, cancel and delete restores
    #[command(subcommand)]
    Restore(restore::RestoreCommand),
}

/// `stowage k8s crds`.
#[derive(clap::Args, Debug)]
pub struct CrdsArgs {
    /// Create or update the CRDs in the cluster (server-side apply, field manager `stowage`)
    #[arg(long)]
    pub apply: bool,
}

/// A mistake in the command line that clap cannot see (a flag that needs another): exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] as an `anyhow` error.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// Runs `stowage k8s` with the words after `k8s`; prints any error as one line.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("stowage k8s")).chain(args);
    let cli = match K8sCli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stowage: error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("stowage: error: {}", one_line(&e));
            let usage = e.downcast_ref::<UsageError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The error and its causes on one line, each cause once.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for c in e.chain() {
        let s = c.to_string();
        if !msg.contains(&s) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&s);
        }
    }
    msg
}

async fn run(cli: K8sCli) -> Result<u8> {
    let g = &cli.global;
    match cli.command {
        K8sSub::Crds(a) => crds(g, a).await,
        K8sSub::Backup(c) => backup::run(g, c).await,
        K8sSub::BackupLocation(c) => location::run(g, c).await,
        K8sSub::Restore(c) => restore::run(g, c).await,
    }
}

/// A connected client, the namespace to work in and the server's address for messages.
pub struct Kube {
    /// The client.
    pub client: Client,
    /// `-n`: the controller's namespace.
    pub namespace: String,
    /// The API server's URL, for messages.
    pub server: String,
}

/// Builds the client from `--kubeconfig`/KUBECONFIG (else `~/.kube/config`) and `--context`.
pub async fn connect(g: &K8sGlobal) -> Result<Kube> {
    let kubeconfig = match g.kubeconfig.as_deref().filter(|k| !k.is_empty()) {
        Some(paths) => read_kubeconfig(paths)?,
        None => Kubeconfig::read().map_err(|e| {
            anyhow!(
                "no kubeconfig: use --kubeconfig or set KUBECONFIG ({})",
                root_cause(&e)
            )
        })?,
    };
    let options = KubeConfigOptions {
        context: g.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| anyhow!("kubeconfig: {e}"))?;
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_string();
    let client = Client::try_from(config).map_err(|e| anyhow!("building the client: {e}"))?;
    Ok(Kube {
        client,
        namespace: g.namespace.clone(),
        server,
    })
}

/// Reads a kubeconfig given as a `:`-separated list of files (as KUBECONFIG is), merged in
/// order as kubectl merges them.
pub fn read_kubeconfig(paths: &str) -> Result<Kubeconfig> {
    let mut merged: Option<Kubeconfig> = None;
    for path in paths.split(':').filter(|p| !p.is_empty()) {
        let k = Kubeconfig::read_from(path)
            .map_err(|e| anyhow!("reading kubeconfig {path}: {}", root_cause(&e)))?;
        merged = Some(match merged {
            None => k,
            Some(m) => m.merge(k).context("merging the kubeconfig files")?,
        });
    }
    merged.context("--kubeconfig names no file")
}

/// The innermost cause of an error: for a refused connection, `Connection refused`.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl Kube {
    /// An API error as one line: `kind` is what was worked on (`backup`), `name` its name.
    pub fn error(&self, e: kube::Error, kind: &str, name: Option<&str>) -> anyhow::Error {
        let ns = &self.namespace;
        match &e {
            kube::Error::Api(s) => {
                let details = s.details.as_ref();
                let detail_kind = details.map(|d| d.kind.as_str()).unwrap_or("");
                let detail_name = details.map(|d| d.name.as_str()).unwrap_or("");
                match (s.code, name) {
                    (404, _) if detail_kind == "namespaces" => {
                        anyhow!("namespace {ns} not found (use -n/--namespace or STOWAGE_NAMESPACE for the controller's namespace)")
                    }
                    (404, Some(n)) if !detail_name.is_empty() => {
                        anyhow!("{kind} {n:?} not found in namespace {ns}")
                    }
                    (404, _) => anyhow!(
                        "the API server at {} does not know the {kind} resource: the stowage.dev CRDs are not installed (run `stowage k8s crds --apply`)",
                        self.server
                    ),
                    (403, _) => {
                        let msg = s
                            .message
                            .split_once("forbidden: ")
                            .map(|(_, rest)| rest)
                            .unwrap_or(&s.message);
                        anyhow!("forbidden: {msg}")
                    }
                    (401, _) => anyhow!(
                        "unauthorized: the API server at {} did not accept the kubeconfig's credentials",
                        self.server
                    ),
                    (409, Some(n)) if s.reason == "AlreadyExists" => {
                        anyhow!("{kind} {n:?} already exists in namespace {ns}")
                    }
                    (422, _) => anyhow!("the API server refused the {kind}: {}", s.message),
                    _ if s.message.is_empty() => anyhow!("{} ({})", s.reason, s.code),
                    _ => anyhow!("{} ({} {})", s.message, s.code, s.reason),
                }
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) => anyhow!(
                "cannot reach the API server at {}: {}",
                self.server,
                root_cause(&e)
            ),
            kube::Error::Auth(_) => anyhow!(
                "authenticating to the API server at {}: {}",
                self.server,
                root_cause(&e)
            ),
            _ => anyhow!("{e}"),
        }
    }
}

async fn crds(g: &K8sGlobal, a: CrdsArgs) -> Result<u8> {
    if !a.apply {
        print!("{}", stowage_kube::crds::crds_yaml());
        return Ok(0);
    }
    let kube = connect(g).await?;
    let api: Api<CustomResourceDefinition> = Api::all(kube.client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in stowage_kube::crds::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let before = api
            .get_opt(&name)
            .await
            .map_err(|e| kube.error(e, "customresourcedefinition", Some(&name)))?;
        let after = api
            .patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|e| kube.error(e, "customresourcedefinition", Some(&name)))?;
        let what = match before {
            None => "created",
            Some(b) if b.metadata.resource_version == after.metadata.resource_version => {
                "unchanged"
            }
            Some(_) => "configured",
        };
        println!("customresourcedefinition.apiextensions.k8s.io/{name} {what}");
    }
    Ok(0)
}

/// Asks on the terminal whether to go on; refuses without one. `what` reads "delete backup
/// \"x\"".
pub fn confirm(what: &str, note: &str) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "refusing to {what} without --confirm: there is no terminal to ask on"
        )));
    }
    eprint!("{note}\nAre you sure you want to {what}? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    match answer.trim() {
        "y" | "Y" | "yes" | "Yes" => Ok(()),
        _ => Err(anyhow!("not confirmed: nothing was deleted")),
    }
}

/// Watches the object `name` of `api` (a `kind`: "backup", "restore") until `done` says its
/// phase is final, showing `progress` on one line (rewritten on a terminal, one line per
/// change otherwise); returns it as it ended.
pub async fn wait_until_done<K>(
    api: Api<K>,
    kube: &Kube,
    kind: &str,
    name: &str,
    progress: impl Fn(&K) -> String,
    done: impl Fn(&K) -> bool,
) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use futures::{StreamExt, TryStreamExt};
    use kube::runtime::watcher;
    use std::io::IsTerminal;
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).boxed();
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    let mut seen = false;
    loop {
        let event = events
            .try_next()
            .await
            .map_err(|e| anyhow::anyhow!("watching {kind} {name:?}: {e}"))?
            .ok_or_else(|| anyhow::anyhow!("the watch of {kind} {name:?} ended"))?;
        let object = match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => o,
            watcher::Event::Delete(_) => {
                anyhow::bail!("{kind} {name:?} was deleted while waiting")
            }
            watcher::Event::InitDone if !seen => {
                anyhow::bail!("{kind} {name:?} not found in namespace {}", kube.namespace)
            }
            watcher::Event::Init | watcher::Event::InitDone => continue,
        };
        seen = true;
        let line = progress(&object);
        if line != last {
            match tty {
                true => eprint!("\r\x1b[2K{line}"),
                false => eprintln!("{line}"),
            }
            last = line;
        }
        if done(&object) {
            if tty {
                eprintln!();
            }
            return Ok(object);
        }
    }
}
