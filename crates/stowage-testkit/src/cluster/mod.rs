//! A real Kubernetes control plane on loopback, for tests and demos: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and KWOK, each the upstream component compiled from
//! its published Go module by `scripts/testenv.sh` (nothing here imitates one).
//!
//! [`Cluster::start`] guarantees, when it returns `Ok`:
//! - the API server answers `/readyz` on `https://127.0.0.1:PORT` with its own serving CA,
//!   authenticates client certificates of its own client CA and service-account tokens, and
//!   authorizes with RBAC; the default admission chain is on, ServiceAccount included;
//! - the controller manager runs exactly [`CONTROLLERS`], each as its own service account (as
//!   kubeadm sets it up), and has created the `default` ServiceAccount of namespace `default`;
//! - the scheduler answers `/healthz`;
//! - [`ClusterOptions::nodes`] fake nodes `node-0`, `node-1`, … exist, untainted (see
//!   `start_kwok` for the one taint the harness removes), and KWOK keeps them Ready (leases) and
//!   moves pods bound to them to Running;
//! - `DIR/kubeconfig` is the admin's kubeconfig (user `admin`, group `system:masters`), written
//!   last, so its presence means the cluster is up.
//!
//! Every listener is on 127.0.0.1, on ports the harness found free, so independent clusters run
//! side by side. Dropping the [`Cluster`] stops every process it started (see [`process`]); if the
//! drop happens while the thread panics (a failed test), the components' log tails go to stderr
//! and a temporary directory is kept for inspection.
//!
//! [`shared`] is how the test suite uses one cluster started for the whole run.

mod access;
pub mod binaries;
mod error;
mod kubeconfig;
mod pki;
mod process;
pub mod shared;

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};

pub use access::ClusterAccess;
pub use error::{ClusterError, Result};
use kubeconfig::Credentials;
pub use kubeconfig::{client as client_from_kubeconfig, config as config_from_kubeconfig};
use pki::PkiFiles;
use process::{Component, Supervisor};

/// The controllers the controller manager runs: what restores and the tests rely on (namespace
/// deletion, garbage collection, PV/PVC binding and protection, the workload controllers, the
/// service accounts and their tokens). Node lifecycle is left out on purpose: there are no
/// kubelets, and it would only taint and evict.
pub const CONTROLLERS: &[&str] = &[
    "namespace-controller",
    "garbage-collector-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
];

/// The annotation KWOK selects the nodes it manages by.
pub const KWOK_NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How many fake nodes (`node-0` …).
    pub nodes: usize,
    /// The cluster directory; `None` for a temporary one removed on drop.
    pub dir: Option<PathBuf>,
    /// The directory of the binaries; `None` for [`binaries::locate`]'s default.
    pub bin_dir: Option<PathBuf>,
    /// CRDs installed (and waited for) before the controllers start, so the garbage collector
    /// knows their kinds from the first moment instead of after its next discovery (30 s).
    pub crds: Vec<CustomResourceDefinition>,
    /// How long each start-up step may take.
    pub step_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 2,
            dir: None,
            bin_dir: None,
            crds: Vec::new(),
            step_timeout: Duration::from_secs(90),
        }
    }
}

/// A running cluster, stopped on drop. Derefs to its [`ClusterAccess`].
pub struct Cluster {
    access: ClusterAccess,
    nodes: Vec<String>,
    components: Vec<Component>,
    supervisor: Supervisor,
    temp: Option<tempfile::TempDir>,
}

struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    scheduler: u16,
    kwok: u16,
}

impl Ports {
    /// Free loopback ports, all held at once while they are chosen so that they differ.
    fn pick() -> Result<Ports> {
        let listeners = (0..5)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| ClusterError::io("finding free loopback ports", e))?;
        let port = |i: usize| -> Result<u16> {
            Ok(listeners[i]
                .local_addr()
                .map_err(|e| ClusterError::io("finding free loopback ports", e))?
                .port())
        };
        Ok(Ports {
            etcd_client: port(0)?,
            etcd_peer: port(1)?,
            apiserver: port(2)?,
            scheduler: port(3)?,
            kwok: port(4)?,
        })
    }
}

/// What `start` knows while it brings components up one after another.
struct Plan {
    bin: PathBuf,
    dir: PathBuf,
    pki: PkiFiles,
    ports: Ports,
    timeout: Duration,
}

impl Plan {
    fn kubeconfig(&self, component: &str) -> PathBuf {
        self.dir
            .join("kubeconfigs")
            .join(format!("{component}.kubeconfig"))
    }
    fn log(&self, component: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{component}.log"))
    }
    fn command(&self, component: &str) -> Command {
        Command::new(self.bin.join(component))
    }
}

impl Cluster {
    /// Starts a cluster and waits until it is usable (see the module comment for what that means).
    ///
    /// The loopback ports are chosen free, then handed to the components; in between another
    /// process (a client connection's ephemeral port, another cluster starting) can take one.
    /// A start that fails because a component found its address in use is tried again with new
    /// ports, up to three times in all.
    pub async fn start(options: ClusterOptions) -> Result<Cluster> {
        let mut attempt = 1;
        loop {
            match Self::start_once(&options).await {
                Err(e) if attempt < 3 && e.to_string().contains("address already in use") => {
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn start_once(options: &ClusterOptions) -> Result<Cluster> {
        let bin = binaries::locate(options.bin_dir.as_deref())?;
        let (temp, dir) = match &options.dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("stowage-cluster-")
                    .tempdir()
                    .map_err(|e| ClusterError::io("creating a temporary cluster directory", e))?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        // A failed attempt's etcd data would name its old ports.
        let _ = std::fs::remove_dir_all(dir.join("etcd"));
        for sub in ["logs", "kubeconfigs", "etcd"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d)
                .map_err(|e| ClusterError::io(format!("creating {}", d.display()), e))?;
        }
        let pki = PkiFiles::generate(&dir.join("pki"))?;
        let ports = Ports::pick()?;
        let server = format!("https://127.0.0.1:{}", ports.apiserver);
        let plan = Plan {
            bin,
            dir: dir.clone(),
            pki,
            ports,
            timeout: options.step_timeout,
        };

        // The components' identities: the scheduler and the controller manager as the users
        // RBAC's bootstrap policy has roles for; KWOK, which stands in for every kubelet, as an
        // admin (there is no Node authorizer to give it a kubelet's narrower rights).
        let ca = read(&plan.pki.serving_ca_cert)?;
        for (component, user, groups) in [
            ("admin", "admin", &["system:masters"][..]),
            (
                "kube-controller-manager",
                "system:kube-controller-manager",
                &[][..],
            ),
            ("kube-scheduler", "system:kube-scheduler", &[][..]),
            ("kwok", "stowage-testkit:kwok", &["system:masters"][..]),
        ] {
            let (cert_pem, key_pem) = plan.pki.client_cert(user, groups)?;
            kubeconfig::write(
                &plan.kubeconfig(component),
                "stowage-test",
                &server,
                &ca,
                Credentials::ClientCert {
                    cert_pem: &cert_pem,
                    key_pem: &key_pem,
                },
            )?;
        }
        let client = kubeconfig::client(&plan.kubeconfig("admin")).await?;
        let mut cluster = Cluster {
            access: ClusterAccess::new(dir.clone(), dir.join("kubeconfig"), server, client),
            nodes: (0..options.nodes).map(|i| format!("node-{i}")).collect(),
            components: Vec::new(),
            supervisor: Supervisor::new()?,
            temp,
        };
        // From here on an early return drops `cluster`, which stops what was started.
        cluster.start_etcd(&plan).await?;
        cluster.start_apiserver(&plan).await?;
        cluster.install_crds(&plan, &options.crds).await?;
        cluster.start_controller_manager(&plan)?;
        cluster.start_scheduler(&plan).await?;
        cluster.start_kwok(&plan).await?;
        cluster.wait_for_service_accounts(&plan).await?;
        std::fs::copy(plan.kubeconfig("admin"), dir.join("kubeconfig.tmp"))
            .and_then(|_| std::fs::rename(dir.join("kubeconfig.tmp"), dir.join("kubeconfig")))
            .map_err(|e| ClusterError::io("writing the admin kubeconfig", e))?;
        Ok(cluster)
    }

    /// The fake nodes' names, `node-0` ….
    pub fn node_names(&self) -> &[String] {
        &self.nodes
    }

    /// The process ids of the running components, by name.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.components.iter().map(|c| (c.name, c.pid())).collect()
    }

    /// Stops the cluster now (as dropping it does).
    pub fn stop(self) {
        drop(self)
    }

    fn spawn(&mut self, plan: &Plan, name: &'static str, args: Vec<String>) -> Result<()> {
        let mut command = plan.command(name);
        command.args(args);
        let component = self.supervisor.spawn(name, command, &plan.log(name))?;
        self.components.push(component);
        Ok(())
    }

    async fn start_etcd(&mut self, plan: &Plan) -> Result<()> {
        let client = format!("http://127.0.0.1:{}", plan.ports.etcd_client);
        let peer = format!("http://127.0.0.1:{}", plan.ports.etcd_peer);
        self.spawn(
            plan,
            "etcd",
            vec![
                "--name=stowage".into(),
                format!("--data-dir={}", plan.dir.join("etcd").display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=stowage={peer}"),
                // A test cluster's data is thrown away: fsync would only cost time.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;
        let port = plan.ports.etcd_client;
        self.wait(plan, "etcd /health", || async move {
            let body = http_get(port, "/health")?;
            if body.contains(r#""health":"true""#) {
                Ok(())
            } else {
                Err(body)
            }
        })
        .await
    }

    async fn start_apiserver(&mut self, plan: &Plan) -> Result<()> {
        let pki = &plan.pki;
        let port = plan.ports.apiserver;
        self.spawn(
            plan,
            "kube-apiserver",
            vec![
                format!("--etcd-servers=http://127.0.0.1:{}", plan.ports.etcd_client),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", plan.dir.join("pki").display()),
                format!("--tls-cert-file={}", pki.serving_cert.display()),
                format!("--tls-private-key-file={}", pki.serving_key.display()),
                format!("--client-ca-file={}", pki.client_ca_cert.display()),
                "--authorization-mode=RBAC".into(),
                format!("--service-account-issuer=https://127.0.0.1:{port}"),
                format!("--service-account-key-file={}", pki.sa_signer_pub.display()),
                format!(
                    "--service-account-signing-key-file={}",
                    pki.sa_signer_key.display()
                ),
                // An allocation range only: no packet is ever sent to it.
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                // No kubelets, so nothing would keep the `kubernetes` Service's endpoints.
                "--endpoint-reconciler-type=none".into(),
                "--allow-privileged=true".into(),
            ],
        )?;
        let client = self.access.client();
        self.wait_ok(plan, "kube-apiserver /readyz", &client, "/readyz")
            .await?;
        let namespaces: Api<Namespace> = Api::all(self.access.client());
        self.wait(plan, "namespace default", || {
            let namespaces = namespaces.clone();
            async move {
                namespaces
                    .get("default")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await
    }

    async fn install_crds(&mut self, plan: &Plan, crds: &[CustomResourceDefinition]) -> Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.access.client());
        for crd in crds {
            api.create(&PostParams::default(), crd).await?;
        }
        for crd in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let api = api.clone();
            self.wait(plan, &format!("CRD {name} Established"), || {
                let (api, name) = (api.clone(), name.clone());
                async move {
                    let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                    let established = crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    if established {
                        Ok(())
                    } else {
                        Err("not Established yet".into())
                    }
                }
            })
            .await?;
        }
        Ok(())
    }

    fn start_controller_manager(&mut self, plan: &Plan) -> Result<()> {
        let kubeconfig = plan.kubeconfig("kube-controller-manager");
        self.spawn(
            plan,
            "kube-controller-manager",
            vec![
                format!("--kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                // No serving port: readiness is observed through what the controllers do.
                "--secure-port=0".into(),
                format!("--controllers={}", CONTROLLERS.join(",")),
                "--use-service-account-credentials=true".into(),
                format!(
                    "--service-account-private-key-file={}",
                    plan.pki.sa_signer_key.display()
                ),
                format!("--root-ca-file={}", plan.pki.serving_ca_cert.display()),
                "--kube-api-qps=1000".into(),
                "--kube-api-burst=2000".into(),
            ],
        )
    }

    async fn start_scheduler(&mut self, plan: &Plan) -> Result<()> {
        let kubeconfig = plan.kubeconfig("kube-scheduler");
        let port = plan.ports.scheduler;
        self.spawn(
            plan,
            "kube-scheduler",
            vec![
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--authentication-kubeconfig={}", kubeconfig.display()),
                format!("--authorization-kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", plan.pki.serving_cert.display()),
                format!("--tls-private-key-file={}", plan.pki.serving_key.display()),
            ],
        )?;
        // The scheduler serves with the cluster's serving certificate, so the admin's client
        // configuration, pointed at its port, checks it properly.
        let mut config = kubeconfig::config(&plan.kubeconfig("admin")).await?;
        config.cluster_url = format!("https://127.0.0.1:{port}")
            .parse()
            .expect("a valid URL");
        let client = kube::Client::try_from(config)?;
        self.wait_ok(plan, "kube-scheduler /healthz", &client, "/healthz")
            .await
    }

    async fn start_kwok(&mut self, plan: &Plan) -> Result<()> {
        let (key, value) = KWOK_NODE_ANNOTATION;
        self.spawn(
            plan,
            "kwok",
            vec![
                format!("--kubeconfig={}", plan.kubeconfig("kwok").display()),
                format!("--config={}", plan.bin.join("kwok-stages.yaml").display()),
                "--manage-all-nodes=false".into(),
                format!("--manage-nodes-with-annotation-selector={key}={value}"),
                // Pod IPs KWOK writes into status: addresses only, nothing listens on them.
                "--cidr=10.0.128.0/17".into(),
                "--node-ip=127.0.0.1".into(),
                "--node-lease-duration-seconds=40".into(),
                format!("--server-address=127.0.0.1:{}", plan.ports.kwok),
            ],
        )?;
        let nodes: Api<Node> = Api::all(self.access.client());
        for name in &self.nodes {
            let node: Node = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": { key: value },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "stowage.test/fake-node": "kwok",
                    },
                },
            }))
            .expect("a valid Node");
            nodes.create(&PostParams::default(), &node).await?;
        }
        let names = self.nodes.clone();
        self.wait(plan, "the fake nodes Ready", || {
            let (nodes, names) = (nodes.clone(), names.clone());
            async move {
                for name in &names {
                    let node = nodes.get(name).await.map_err(|e| e.to_string())?;
                    let ready = node
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    if !ready {
                        return Err(format!("node {name} is not Ready yet"));
                    }
                }
                Ok(())
            }
        })
        .await?;
        // The TaintNodesByCondition admission plugin (default chain) creates every node with
        // the `node.kubernetes.io/not-ready:NoSchedule` taint, which the node lifecycle controller
        // removes once the node is Ready. That controller is not run (it would only taint and
        // evict), so the harness removes the taint from its Ready nodes itself, once; nothing
        // else about the nodes' taints is managed.
        let untaint = serde_json::json!({ "spec": { "taints": null } });
        for name in &self.nodes {
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&untaint))
                .await?;
        }
        Ok(())
    }

    async fn wait_for_service_accounts(&mut self, plan: &Plan) -> Result<()> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.access.client(), "default");
        self.wait(
            plan,
            "the default ServiceAccount (kube-controller-manager)",
            || {
                let accounts = accounts.clone();
                async move {
                    accounts
                        .get("default")
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
        )
        .await
    }

    /// Polls `check` every 100 ms until it succeeds, a component exits, or the step times out.
    /// Waits until GET `path` through `client` answers `ok` (a health endpoint).
    async fn wait_ok(
        &self,
        plan: &Plan,
        what: &str,
        client: &kube::Client,
        path: &str,
    ) -> Result<()> {
        self.wait(plan, what, || {
            let client = client.clone();
            async move {
                let request = http::Request::get(path)
                    .body(Vec::new())
                    .expect("a valid request");
                match client.request_text(request).await {
                    Ok(body) if body.trim() == "ok" => Ok(()),
                    Ok(body) => Err(body),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    }

    async fn wait<F, Fut>(&self, plan: &Plan, what: &str, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<(), String>>,
    {
        let start = Instant::now();
        loop {
            let last = match check().await {
                Ok(()) => return Ok(()),
                Err(last) => last,
            };
            for c in &self.components {
                if let Some(status) = c.exit_status() {
                    return Err(c.exited_error(status));
                }
            }
            if start.elapsed() > plan.timeout {
                return Err(ClusterError::Timeout {
                    what: what.to_string(),
                    timeout: plan.timeout,
                    last,
                    log_tails: self.access.log_tails(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Deref for Cluster {
    type Target = ClusterAccess;
    fn deref(&self) -> &ClusterAccess {
        &self.access
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test cluster in {} dropped while panicking; its components' logs end with:\n{}",
                self.access.dir().display(),
                self.access.log_tails(40)
            );
            if let Some(temp) = self.temp.take() {
                eprintln!("(kept {} for inspection)", temp.keep().display());
            }
        }
        process::stop_all(&mut self.components);
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| ClusterError::io(format!("reading {}", path.display()), e))
}

/// A plain HTTP/1.0 GET of `path` on a loopback port, for etcd's health endpoint.
fn http_get(port: u16, path: &str) -> std::result::Result<String, String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    Ok(response)
}
