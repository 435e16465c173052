//! `stowage agent`: the node agent (one per node, a DaemonSet). Carries out the VolumeBackups
//! and VolumeRestores of its node until stopped (SIGTERM or Ctrl-C); an item it was working on
//! when stopped is taken up again by the next agent of the node.

use anyhow::{Context, Result};
use std::path::PathBuf;
use stowage_kube::agent::{self, AgentOptions};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// This node's name (in a DaemonSet, from the downward API's spec.nodeName)
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// The namespace of the controller, its storage locations and the work items
    #[arg(
        short = 'n',
        long,
        env = "STOWAGE_NAMESPACE",
        default_value = "stowage"
    )]
    pub namespace: String,
    /// The kubelet's root directory, as mounted into the agent
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub kubelet_root: PathBuf,
    /// Volumes copied at once on this node; the rest wait, Accepted
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Path of the kubeconfig (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long)]
    pub context: Option<String>,
    /// A directory of the agent's own (index cache, CA bundles)
    #[arg(long, default_value = "/var/cache/stowage-agent")]
    pub work_dir: PathBuf,
    /// The cluster's name, recorded as the volume snapshots' host
    #[arg(long, default_value = "kubernetes")]
    pub cluster_name: String,
    /// How often a running item's progress is written (a Go duration)
    #[arg(long, default_value = "2s", value_parser = super::controller::go_duration)]
    pub progress_every: std::time::Duration,
    /// How long to wait for the kubelet to mount a volume (a Go duration)
    #[arg(long, default_value = "2m", value_parser = super::controller::go_duration)]
    pub mount_wait: std::time::Duration,
    /// Runs of one item (agent restarts, transient failures) before it fails
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// The agent's name in statuses and Events (default: POD_NAME, else the host name)
    #[arg(long, env = "POD_NAME")]
    pub agent_name: Option<String>,
    /// Serve Prometheus metrics on this address (GET /metrics), e.g. 0.0.0.0:8085
    #[arg(long)]
    pub metrics_address: Option<std::net::SocketAddr>,
}

pub fn run(a: AgentArgs) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let client =
            super::controller::client(a.kubeconfig.as_deref(), a.context.as_deref()).await?;
        let agent_name = a.agent_name.unwrap_or_else(stowage_core::util::hostname);
        let opts = AgentOptions {
            node: a.node,
            namespace: a.namespace,
            kubelet_root: a.kubelet_root,
            concurrency: a.concurrency.max(1),
            work_dir: a.work_dir,
            cluster_name: a.cluster_name,
            progress_every: a.progress_every,
            max_attempts: a.max_attempts.max(1),
            mount_wait: a.mount_wait,
            agent_name,
            metrics_address: a.metrics_address,
        };
        tokio::select! {
            r = agent::run(client, opts) => r.map(|()| 0).map_err(anyhow::Error::from),
            _ = super::controller::shutdown() => {
                tracing::info!("stopping on signal");
                Ok(0)
            }
        }
    })
}
