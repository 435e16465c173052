//! `stowage controller`: runs the reconcilers of Backups and BackupStorageLocations of one
//! namespace until stopped (SIGTERM or Ctrl-C).

use anyhow::{Context, Result};
use std::path::PathBuf;
use stowage_kube::collect::CollectOptions;
use stowage_kube::controller::{self, ControllerOptions};

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// The namespace whose Backups and storage locations this controller serves
    #[arg(
        short = 'n',
        long,
        env = "STOWAGE_NAMESPACE",
        default_value = "stowage"
    )]
    pub namespace: String,
    /// Path of the kubeconfig (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long)]
    pub context: Option<String>,
    /// Backups that may run at once
    #[arg(long, default_value_t = 1)]
    pub concurrent_backups: usize,
    /// Objects per LIST page
    #[arg(long, default_value_t = 500)]
    pub page_size: u32,
    /// Most requests per second to the API server while collecting (default: no limit)
    #[arg(long)]
    pub client_qps: Option<f64>,
    /// A directory of the controller's own (index cache, CA bundles)
    #[arg(long, default_value = "/var/cache/stowage")]
    pub work_dir: PathBuf,
    /// The cluster's name, recorded as the snapshots' host
    #[arg(long, default_value = "kubernetes")]
    pub cluster_name: String,
    /// Runs of one backup (first run, restarts of the controller, transient failures) before
    /// it is Failed
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Read each repository's index into memory instead of caching it on disk
    #[arg(long)]
    pub no_index_cache: bool,
    /// How long a node agent's heartbeat may be silent before its unfinished volume work
    /// items fail (a Go duration)
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    pub agent_timeout: std::time::Duration,
    /// The image of the helper pods that hold restored claims mounted for the node agents
    #[arg(long, default_value = controller::DEFAULT_HELPER_IMAGE)]
    pub helper_image: String,
}

/// A Go duration argument (`90s`, `5m`, `1h30m`).
pub fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    stowage_kube::api::parse_duration(s).map_err(|e| e.to_string())
}

pub fn run(a: ControllerArgs) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = client(a.kubeconfig.as_deref(), a.context.as_deref()).await?;
        let opts = ControllerOptions {
            namespace: a.namespace,
            concurrent_backups: a.concurrent_backups.max(1),
            work_dir: a.work_dir,
            cluster_name: a.cluster_name,
            collect: CollectOptions {
                page_size: a.page_size.max(1),
                qps: a.client_qps,
                ..CollectOptions::default()
            },
            max_attempts: a.max_attempts.max(1),
            index_cache: !a.no_index_cache,
            agent_timeout: a.agent_timeout,
            helper_image: a.helper_image,
            ..ControllerOptions::default()
        };
        tokio::select! {
            r = controller::run(client, opts) => r.map(|()| 0).map_err(anyhow::Error::from),
            _ = shutdown() => {
                tracing::info!("stopping on signal");
                Ok(0)
            }
        }
    })
}

/// The API client: the kubeconfig given (a `:`-separated list, as KUBECONFIG), else
/// in-cluster, else the default kubeconfig.
pub(crate) async fn client(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(paths) => {
            let paths = paths.to_string_lossy();
            let kc = super::k8s::read_kubeconfig(&paths)?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("kubeconfig {paths}"))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("reading the kubeconfig")?,
        None => kube::Config::infer()
            .await
            .context("finding the cluster (in-cluster, $KUBECONFIG, ~/.kube/config)")?,
    };
    kube::Client::try_from(config).context("building the API client")
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
