//! A test stand-in for the kubelet's volume handling. The test cluster's nodes are KWOK fakes:
//! no kubelet runs, so no pod's PersistentVolume ever appears on a node. [`KubeletVolumesStandIn`]
//! lays bound volumes out on disk the way the kubelet does for CSI volumes, one directory tree
//! per fake node (its "kubelet root"), so that a node agent reading those directories can be
//! tested for real.
//!
//! What it does, below `BASE`:
//! - `nodes/<node>/` is the node's kubelet root;
//! - `pv-data/<pv>/` (Filesystem) or `pv-data/<pv>.img` (Block, a sparse file of the PV's
//!   capacity) holds a PV's data, kept across the pods that mount it and after they are gone;
//! - once per (pod, PV), for each `persistentVolumeClaim` volume of a pod on one of its nodes
//!   whose claim is Bound, a Filesystem PV's data directory is bind-mounted on
//!   `<root>/pods/<pod uid>/volumes/kubernetes.io~csi/<pv>/mount`; a Block PV's loop device (or,
//!   where `losetup` fails, its image file) is bind-mounted on the file
//!   `<root>/plugins/kubernetes.io/csi/volumeDevices/<pv>/dev/<pod uid>` and
//!   `<root>/pods/<pod uid>/volumeDevices/kubernetes.io~csi/<pv>` is an absolute symlink to it;
//! - when the pod is gone from the API, its mounts are lazily unmounted and `pods/<pod uid>`
//!   removed; on drop everything it mounted is unmounted and its loop devices detached; on
//!   start, mounts left below `BASE` by a crashed run are unmounted.
//!
//! No symlink it makes points outside the node's root. What it does not do: talk CSI (there is
//! no driver; any bound PV gets the CSI layout whatever its source), write `vol_data.json`,
//! honour `readOnly`, `subPath`, `fsGroup` or access modes (a PV is shared like a network disk
//! by every node that mounts it), make a file system on a block image, or handle ephemeral and
//! inline volumes. Block writes through the loop device reach the image file after an `fsync`.
//! It needs root (CAP_SYS_ADMIN) for the mounts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// How often the pods are listed.
const POLL: Duration = Duration::from_millis(200);
/// The kubelet's directory name of the CSI volume plugin.
const CSI: &str = "kubernetes.io~csi";

/// Why the stand-in could not start, lay a volume out or be waited on.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The process may not mount.
    #[error("bind mount needs root (CAP_SYS_ADMIN): {from} on {onto}: {errno}")]
    MountNeedsRoot {
        /// What was to be mounted.
        from: PathBuf,
        /// The mount point.
        onto: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
    /// Another mount or unmount failure.
    #[error("{action} {path}: {errno}")]
    Mount {
        /// `bind-mounting on` or `unmounting`.
        action: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
    /// Something is still mounted below a pod directory that is to be removed.
    #[error("not removing {dir}: {mount} is still mounted below it")]
    StillMounted {
        /// The pod directory.
        dir: PathBuf,
        /// The mount point below it.
        mount: PathBuf,
    },
    /// A file-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The API server refused or could not be reached.
    #[error("{what}: {source}")]
    Api {
        /// What was being asked.
        what: String,
        /// The failure.
        source: kube::Error,
    },
    /// A Block PV's `spec.capacity.storage` is missing or not a quantity.
    #[error("PersistentVolume {pv}: no usable spec.capacity.storage ({found:?})")]
    Capacity {
        /// The PV.
        pv: String,
        /// What the field holds.
        found: Option<String>,
    },
    /// A wait ran out of time.
    #[error("pod {pod}: {what} not laid out within {timeout:?}{last_error}")]
    Timeout {
        /// `namespace/name`.
        pod: String,
        /// The volume (or volumes) waited for.
        what: String,
        /// How long it waited.
        timeout: Duration,
        /// `; last error: ...` when laying out failed, else empty.
        last_error: String,
    },
}

type Result<T, E = KubeletError> = std::result::Result<T, E>;

fn io(what: impl std::fmt::Display, path: &Path) -> impl FnOnce(std::io::Error) -> KubeletError {
    let what = format!("{what} {}", path.display());
    move |source| KubeletError::Io { what, source }
}

/// The stand-in's paths, shared by the handle and the background task.
#[derive(Debug, Clone)]
struct Layout {
    base: PathBuf,
    nodes: Vec<String>,
}

impl Layout {
    fn root(&self, node: &str) -> PathBuf {
        self.base.join("nodes").join(node)
    }
    fn pv_dir(&self, pv: &str) -> PathBuf {
        self.base.join("pv-data").join(pv)
    }
    fn pv_image(&self, pv: &str) -> PathBuf {
        self.base.join("pv-data").join(format!("{pv}.img"))
    }
    fn pod_dir(&self, pod: &PodRef) -> PathBuf {
        self.root(&pod.node).join("pods").join(&pod.uid)
    }
    fn block_global(&self, pod: &PodRef, pv: &str) -> PathBuf {
        self.root(&pod.node)
            .join("plugins/kubernetes.io/csi/volumeDevices")
            .join(pv)
            .join("dev")
            .join(&pod.uid)
    }
}

/// A pod on one of the stand-in's nodes.
#[derive(Debug, Clone)]
struct PodRef {
    uid: String,
    node: String,
}

/// One volume laid out for a pod.
#[derive(Debug)]
struct Volume {
    pv: String,
    /// What the pod sees: the mount directory, or the `volumeDevices` symlink.
    path: PathBuf,
    /// What was mounted on, unmounted when the pod goes.
    mount_point: PathBuf,
}

/// What is laid out for one pod; ready when every claim of the pod has its volume.
#[derive(Debug)]
struct PodVolumes {
    pod: PodRef,
    claims: usize,
    volumes: BTreeMap<String, Volume>,
}

/// What a Block PV's pods get bind-mounted.
#[derive(Debug)]
struct BlockSource {
    path: PathBuf,
    is_loop: bool,
}

#[derive(Debug, Default)]
struct State {
    stopped: bool,
    /// By pod uid.
    pods: HashMap<String, PodVolumes>,
    /// By PV name.
    block_sources: HashMap<String, BlockSource>,
    /// The last layout error, by pod uid.
    errors: HashMap<String, String>,
    /// The last failure to list pods.
    api_error: Option<String>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running stand-in; stops on drop (see the module comment).
pub struct KubeletVolumesStandIn {
    client: kube::Client,
    layout: Layout,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl KubeletVolumesStandIn {
    /// Creates the node roots below `base`, unmounts stale mounts there, checks that bind
    /// mounts work, and starts laying out the volumes of pods on `nodes`.
    pub async fn start(
        client: kube::Client,
        base: &Path,
        nodes: &[String],
    ) -> Result<KubeletVolumesStandIn> {
        std::fs::create_dir_all(base).map_err(io("creating", base))?;
        let base = base.canonicalize().map_err(io("resolving", base))?;
        unmount_stale(&base)?;
        let layout = Layout {
            base,
            nodes: nodes.to_vec(),
        };
        for dir in nodes
            .iter()
            .map(|n| layout.root(n))
            .chain([layout.pv_dir("")])
        {
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        }
        probe_bind_mount(&layout.base)?;
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(run(client.clone(), layout.clone(), state.clone()));
        Ok(KubeletVolumesStandIn {
            client,
            layout,
            state,
            task,
        })
    }

    /// The kubelet root of `node`.
    pub fn root(&self, node: &str) -> PathBuf {
        self.layout.root(node)
    }

    /// Where PV `pv`'s data lives: `pv-data/<pv>.img` once the PV was laid out as a Block
    /// volume, else the directory `pv-data/<pv>/`.
    pub fn pv_data(&self, pv: &str) -> PathBuf {
        match self.layout.pv_image(pv) {
            image if image.is_file() => image,
            _ => self.layout.pv_dir(pv),
        }
    }

    /// What Block PV `pv`'s pods get bind-mounted: its loop device, or its image file where no
    /// loop device could be attached; `None` before it was first laid out.
    pub fn block_device(&self, pv: &str) -> Option<PathBuf> {
        lock(&self.state)
            .block_sources
            .get(pv)
            .map(|s| s.path.clone())
    }

    /// The path of the volume of claim `claim` of pod `namespace/pod` (the mount directory, or
    /// the `volumeDevices` symlink of a Block volume), once laid out.
    pub async fn wait_volume(
        &self,
        namespace: &str,
        pod: &str,
        claim: &str,
        timeout: Duration,
    ) -> Result<PathBuf> {
        let what = format!("the volume of claim {claim}");
        self.wait(namespace, pod, timeout, what, |p| {
            p.volumes.get(claim).map(|v| v.path.clone())
        })
        .await
    }

    /// The paths of all the claim volumes of pod `namespace/pod`, by claim, once every one is
    /// laid out.
    pub async fn wait_pod_volumes(
        &self,
        namespace: &str,
        pod: &str,
        timeout: Duration,
    ) -> Result<BTreeMap<String, PathBuf>> {
        self.wait(namespace, pod, timeout, "its volumes".into(), |p| {
            let paths = p.volumes.iter().map(|(c, v)| (c.clone(), v.path.clone()));
            (p.volumes.len() == p.claims).then(|| paths.collect())
        })
        .await
    }

    /// Polls until `pick` finds what it wants in the current pod of that name (by uid, so a
    /// recreated pod is not mistaken for its predecessor).
    async fn wait<T>(
        &self,
        namespace: &str,
        pod: &str,
        timeout: Duration,
        what: String,
        pick: impl Fn(&PodVolumes) -> Option<T>,
    ) -> Result<T> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let deadline = Instant::now() + timeout;
        loop {
            let found = pods
                .get_opt(pod)
                .await
                .map_err(|source| KubeletError::Api {
                    what: format!("reading pod {namespace}/{pod}"),
                    source,
                })?;
            let uid = found.and_then(|p| p.metadata.uid).unwrap_or_default();
            let last_error = {
                let state = lock(&self.state);
                if let Some(value) = state.pods.get(&uid).and_then(&pick) {
                    return Ok(value);
                }
                state.errors.get(&uid).or(state.api_error.as_ref()).cloned()
            };
            if Instant::now() >= deadline {
                return Err(KubeletError::Timeout {
                    pod: format!("{namespace}/{pod}"),
                    what,
                    timeout,
                    last_error: last_error
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the stand-in (the same as dropping it).
    pub fn stop(self) {}
}

impl Drop for KubeletVolumesStandIn {
    fn drop(&mut self) {
        self.task.abort();
        let mut state = lock(&self.state);
        state.stopped = true;
        for (_, pod) in state.pods.drain() {
            if let Err(e) = tear_down(&self.layout, pod) {
                eprintln!("kubelet stand-in: {e}");
            }
        }
        for (_, source) in state.block_sources.drain() {
            if source.is_loop {
                detach_loop(&source.path);
            }
        }
    }
}

/// The background task: one sync every [`POLL`], until aborted.
async fn run(client: kube::Client, layout: Layout, state: Arc<Mutex<State>>) {
    loop {
        let outcome = sync(&client, &layout, &state).await;
        lock(&state).api_error = outcome.err().map(|e| e.to_string());
        tokio::time::sleep(POLL).await;
    }
}

/// Tears down the pods that are gone, and lays out what is new for the others.
async fn sync(client: &kube::Client, layout: &Layout, state: &Mutex<State>) -> Result<()> {
    let all: Api<Pod> = Api::all(client.clone());
    let pods = all
        .list(&ListParams::default())
        .await
        .map_err(|source| KubeletError::Api {
            what: "listing pods".into(),
            source,
        })?;
    let ours: Vec<(PodRef, &Pod)> = pods
        .items
        .iter()
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            let uid = p.metadata.uid.clone()?;
            layout
                .nodes
                .contains(&node)
                .then_some((PodRef { uid, node }, p))
        })
        .collect();
    let present: HashSet<&str> = ours.iter().map(|(r, _)| r.uid.as_str()).collect();
    let gone: Vec<PodVolumes> = {
        let mut state = lock(state);
        let gone = state
            .pods
            .extract_if(|uid, _| !present.contains(uid.as_str()));
        let gone: Vec<PodVolumes> = gone.map(|(_, pod)| pod).collect();
        gone.iter()
            .for_each(|p| drop(state.errors.remove(&p.pod.uid)));
        gone
    };
    for pod in gone {
        if let Err(e) = tear_down(layout, pod) {
            eprintln!("kubelet stand-in: {e}");
        }
    }
    for (pod, p) in ours
        .iter()
        .filter(|(_, p)| p.metadata.deletion_timestamp.is_none())
    {
        sync_pod(client, layout, state, pod, p).await;
    }
    Ok(())
}

/// Lays out each claim volume of one pod whose claim is bound and that is not laid out yet.
async fn sync_pod(
    client: &kube::Client,
    layout: &Layout,
    state: &Mutex<State>,
    pod: &PodRef,
    p: &Pod,
) {
    let namespace = p.metadata.namespace.clone().unwrap_or_default();
    let claims: BTreeSet<String> = p
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
        .collect();
    let pending: Vec<String> = {
        let mut state = lock(state);
        let entry = state.pods.entry(pod.uid.clone()).or_insert(PodVolumes {
            pod: pod.clone(),
            claims: claims.len(),
            volumes: BTreeMap::new(),
        });
        let pending = claims.iter().filter(|c| !entry.volumes.contains_key(*c));
        pending.cloned().collect()
    };
    for claim in pending {
        let outcome = match bound_volume(client, &namespace, &claim).await {
            Ok(Some(pv)) => lay_out(layout, state, pod, &claim, &pv),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            lock(state).errors.insert(pod.uid.clone(), e.to_string());
        }
    }
}

/// The PV of claim `namespace/claim` if the claim is Bound and the PV exists.
async fn bound_volume(
    client: &kube::Client,
    namespace: &str,
    claim: &str,
) -> Result<Option<PersistentVolume>> {
    let api_error = |what: String| move |source: kube::Error| KubeletError::Api { what, source };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let Some(pvc) = claims
        .get_opt(claim)
        .await
        .map_err(api_error(format!("reading claim {namespace}/{claim}")))?
    else {
        return Ok(None);
    };
    let bound = pvc.status.and_then(|s| s.phase).as_deref() == Some("Bound");
    let Some(pv) = pvc.spec.and_then(|s| s.volume_name).filter(|_| bound) else {
        return Ok(None);
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    volumes
        .get_opt(&pv)
        .await
        .map_err(api_error(format!("reading PersistentVolume {pv}")))
}

/// Lays out PV `pv` for claim `claim` of `pod` and records it (unless the stand-in stopped).
fn lay_out(
    layout: &Layout,
    state: &Mutex<State>,
    pod: &PodRef,
    claim: &str,
    pv: &PersistentVolume,
) -> Result<()> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    let spec = pv.spec.clone().unwrap_or_default();
    let mut state = lock(state);
    let already = |s: &State| {
        let volumes = s.pods.get(&pod.uid).map(|p| p.volumes.values());
        volumes.is_some_and(|mut v| v.any(|v| v.pv == name))
    };
    if state.stopped || already(&state) {
        return Ok(());
    }
    let volume = if spec.volume_mode.as_deref() == Some("Block") {
        let found = spec
            .capacity
            .and_then(|c| c.get("storage").map(|q| q.0.clone()));
        let size = found.as_deref().and_then(parse_quantity);
        let size = size.ok_or_else(|| KubeletError::Capacity {
            pv: name.clone(),
            found,
        })?;
        let source = block_source(layout, &mut state, &name, size)?;
        lay_out_block(layout, pod, &name, &source)?
    } else {
        lay_out_filesystem(layout, pod, &name)?
    };
    if let Some(p) = state.pods.get_mut(&pod.uid) {
        p.volumes.insert(claim.to_string(), volume);
    }
    state.errors.remove(&pod.uid);
    Ok(())
}

fn lay_out_filesystem(layout: &Layout, pod: &PodRef, pv: &str) -> Result<Volume> {
    let data = layout.pv_dir(pv);
    std::fs::create_dir_all(&data).map_err(io("creating", &data))?;
    let path = layout
        .pod_dir(pod)
        .join("volumes")
        .join(CSI)
        .join(pv)
        .join("mount");
    std::fs::create_dir_all(&path).map_err(io("creating", &path))?;
    bind_mount(&data, &path)?;
    Ok(Volume {
        pv: pv.to_string(),
        mount_point: path.clone(),
        path,
    })
}

fn lay_out_block(layout: &Layout, pod: &PodRef, pv: &str, source: &Path) -> Result<Volume> {
    let global = layout.block_global(pod, pv);
    let link = layout.pod_dir(pod).join("volumeDevices").join(CSI).join(pv);
    for dir in [global.parent(), link.parent()].into_iter().flatten() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    std::fs::File::create(&global).map_err(io("creating", &global))?;
    bind_mount(source, &global)?;
    if let Err(e) = std::os::unix::fs::symlink(&global, &link) {
        let _ = unmount_lazy(&global);
        return Err(io("symlinking", &link)(e));
    }
    Ok(Volume {
        pv: pv.to_string(),
        path: link,
        mount_point: global,
    })
}

/// The loop device (or image file) of Block PV `pv`, creating its sparse image first.
fn block_source(layout: &Layout, state: &mut State, pv: &str, size: u64) -> Result<PathBuf> {
    if let Some(s) = state.block_sources.get(pv) {
        return Ok(s.path.clone());
    }
    let image = layout.pv_image(pv);
    if !image.exists() {
        let file = std::fs::File::create(&image).map_err(io("creating", &image))?;
        file.set_len(size).map_err(io("sizing", &image))?;
    }
    let source = match attach_loop(&image) {
        Some(device) => BlockSource {
            path: device,
            is_loop: true,
        },
        None => BlockSource {
            path: image,
            is_loop: false,
        },
    };
    let path = source.path.clone();
    state.block_sources.insert(pv.to_string(), source);
    Ok(path)
}

/// Unmounts a pod's volumes and removes its directory, unless something is still mounted
/// below it (removing it then would delete PV data through the mount).
fn tear_down(layout: &Layout, pod: PodVolumes) -> Result<()> {
    for volume in pod.volumes.values() {
        unmount_lazy(&volume.mount_point)?;
        if volume.mount_point.is_file() {
            std::fs::remove_file(&volume.mount_point)
                .map_err(io("removing", &volume.mount_point))?;
        }
    }
    let dir = layout.pod_dir(&pod.pod);
    if let Some(mount) = mounts_under(&dir)?.into_iter().next() {
        return Err(KubeletError::StillMounted { dir, mount });
    }
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", &dir)(e)),
        _ => Ok(()),
    }
}

fn bind_mount(from: &Path, onto: &Path) -> Result<()> {
    let none = None::<&str>;
    mount(Some(from), onto, none, MsFlags::MS_BIND, none).map_err(|errno| match errno {
        Errno::EPERM | Errno::EACCES => KubeletError::MountNeedsRoot {
            from: from.to_path_buf(),
            onto: onto.to_path_buf(),
            errno,
        },
        _ => KubeletError::Mount {
            action: "bind-mounting on",
            path: onto.to_path_buf(),
            errno,
        },
    })
}

fn unmount_lazy(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()), // not (or no longer) mounted
        Err(errno) => Err(KubeletError::Mount {
            action: "unmounting",
            path: path.to_path_buf(),
            errno,
        }),
    }
}

/// Fails clearly at start when this process may not mount.
fn probe_bind_mount(base: &Path) -> Result<()> {
    let probe = base.join(".mount-probe");
    std::fs::create_dir_all(&probe).map_err(io("creating", &probe))?;
    bind_mount(&probe, &probe)?;
    unmount_lazy(&probe)?;
    std::fs::remove_dir(&probe).map_err(io("removing", &probe))
}

/// Lazily unmounts what an earlier run left mounted below `base`, deepest first.
fn unmount_stale(base: &Path) -> Result<()> {
    let mut stale = mounts_under(base)?;
    stale.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    stale.iter().try_for_each(|p| unmount_lazy(p))
}

/// The mount points below `dir` (not `dir` itself), from `/proc/self/mountinfo`.
fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let info = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(info).map_err(io("reading", info))?;
    let points = text.lines().filter_map(|l| l.split(' ').nth(4));
    Ok(points
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect())
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape_mountinfo(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let (bytes, mut out) = (field.as_bytes(), Vec::new());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
        let escaped = octal.and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok());
        if let Some(byte) = escaped {
            out.push(byte);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Attaches `image` to a free loop device; `None` where `losetup` is missing or fails.
fn attach_loop(image: &Path) -> Option<PathBuf> {
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(image)
        .output()
        .ok()?;
    let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !device.is_empty()).then(|| PathBuf::from(device))
}

fn detach_loop(device: &Path) {
    match Command::new("losetup").arg("-d").arg(device).status() {
        Ok(s) if s.success() => {}
        other => eprintln!(
            "kubelet stand-in: losetup -d {}: {other:?}",
            device.display()
        ),
    }
}

/// Bytes of a Kubernetes quantity (`1Gi`, `64Mi`, `100M`, `1.5G`, `1e9`), rounded up.
fn parse_quantity(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let binary = |power: i32| Some(2f64.powi(power));
    let factor = match suffix {
        "" => Some(1.0),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        "m" => Some(1e-3),
        "k" => Some(1e3),
        "M" => Some(1e6),
        "G" => Some(1e9),
        "T" => Some(1e12),
        "P" => Some(1e15),
        "E" => Some(1e18),
        s if s.starts_with(['e', 'E']) => s[1..].parse().ok().map(|e| 10f64.powi(e)),
        _ => None,
    }?;
    let bytes = (number * factor).ceil();
    (bytes.is_finite() && bytes <= u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_bytes() {
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("64Mi"), Some(64 << 20));
        assert_eq!(parse_quantity("100M"), Some(100_000_000));
        assert_eq!(parse_quantity("1.5Ki"), Some(1536));
        assert_eq!(parse_quantity("1e3"), Some(1000));
        assert_eq!(parse_quantity("4096"), Some(4096));
        assert_eq!(parse_quantity("1500m"), Some(2));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("1Xi"), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            unescape_mountinfo(r"/tmp/a\040b\134c"),
            PathBuf::from(r"/tmp/a b\c")
        );
        assert_eq!(unescape_mountinfo(r"/x\04"), PathBuf::from(r"/x\04"));
    }
}
