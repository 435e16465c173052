//! Where the kubelet keeps a pod's volumes, and the one rule the agent never breaks: every path
//! it reads or writes resolves inside the kubelet's root.
//!
//! The kubelet mounts a file-system volume at `pods/<pod uid>/volumes/<plugin>/<name>` (for CSI,
//! the file system is at its `mount` subdirectory), and maps a block volume at
//! `pods/<pod uid>/volumeDevices/<plugin>/<name>`, a symlink to the device it bind-mounts under
//! `plugins/`. `<plugin>` is the plugin name with `/` written `~` (`kubernetes.io~csi`), and
//! `<name>` is the persistent volume's name for a claim's volume.
//!
//! Names from the API server are untrusted: a pod UID, a plugin or a volume name that is not a
//! plain path component is refused, and the resolved path (symlinks followed) must stay below
//! the root, so a volume directory that is a symlink to `/` reads nothing.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::api::VolumeMode;

/// Why a volume's path was not found or not accepted.
#[derive(Debug, thiserror::Error)]
pub enum KubeletPathError {
    /// A name that is not one path component (`..`, contains `/`, empty).
    #[error("refusing {what} {name:?}: not a plain name")]
    BadName {
        /// Which name.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The kubelet has not mounted (or no longer mounts) the volume.
    #[error("the kubelet has no {mode} volume {name} for pod {pod_uid} under {root}")]
    NotMounted {
        /// Filesystem or Block.
        mode: VolumeMode,
        /// The volume's directory name.
        name: String,
        /// The pod.
        pod_uid: String,
        /// The kubelet root.
        root: String,
    },
    /// The path resolves outside the kubelet root (a symlink pointing out).
    #[error("refusing {path}: it resolves to {resolved}, outside the kubelet root {root}")]
    Escapes {
        /// The path found.
        path: String,
        /// Where it leads.
        resolved: String,
        /// The root.
        root: String,
    },
    /// The path is not what the mode needs (a directory, or a device or file).
    #[error("{path} is not a {expected}")]
    WrongType {
        /// The path.
        path: String,
        /// What it should have been.
        expected: &'static str,
    },
    /// Reading the kubelet's directories failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn plain(what: &'static str, name: &str) -> Result<(), KubeletPathError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= 253;
    if ok {
        Ok(())
    } else {
        Err(KubeletPathError::BadName {
            what,
            name: name.to_string(),
        })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KubeletPathError + '_ {
    move |source| KubeletPathError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The kubelet's directory tree on this node, rooted at `--kubelet-root`.
#[derive(Clone, Debug)]
pub struct KubeletRoot {
    /// As given.
    root: PathBuf,
    /// With symlinks resolved: what every path must stay below.
    real: PathBuf,
}

impl KubeletRoot {
    /// The root at `path`, which must exist.
    pub fn new(path: &Path) -> Result<KubeletRoot, KubeletPathError> {
        let real = fs::canonicalize(path).map_err(io(path))?;
        Ok(KubeletRoot {
            root: path.to_path_buf(),
            real,
        })
    }

    /// The root as given.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where the volume `name` (the persistent volume's name for a claim) of the pod with
    /// `pod_uid` is: the directory holding its file system, or the device (or file standing
    /// for one) of a block volume. Resolved, and checked to be inside the root.
    pub fn volume(
        &self,
        pod_uid: &str,
        name: &str,
        mode: VolumeMode,
    ) -> Result<PathBuf, KubeletPathError> {
        plain("pod UID", pod_uid)?;
        plain("volume name", name)?;
        let kind = match mode {
            VolumeMode::Filesystem => "volumes",
            VolumeMode::Block => "volumeDevices",
        };
        let plugins = self.real.join("pods").join(pod_uid).join(kind);
        let not_mounted = || KubeletPathError::NotMounted {
            mode,
            name: name.to_string(),
            pod_uid: pod_uid.to_string(),
            root: self.root.display().to_string(),
        };
        let entries = match fs::read_dir(&plugins) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_mounted()),
            Err(e) => return Err(io(&plugins)(e)),
        };
        // Plugins in a fixed order, so the choice never depends on the directory's order.
        let mut candidates: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&plugins))?;
            let plugin = entry.file_name();
            let Some(plugin) = plugin.to_str() else {
                continue;
            };
            if plain("plugin", plugin).is_err() {
                continue;
            }
            let at = plugins.join(plugin).join(name);
            if fs::symlink_metadata(&at).is_ok() {
                candidates.push(at);
            }
        }
        candidates.sort();
        let Some(found) = candidates.into_iter().next() else {
            return Err(not_mounted());
        };
        match mode {
            VolumeMode::Filesystem => {
                // CSI mounts the file system at `mount` below the volume's directory.
                let mount = found.join("mount");
                let dir = if fs::symlink_metadata(&mount).is_ok() {
                    mount
                } else {
                    found
                };
                let resolved = self.inside(&dir)?;
                if !fs::metadata(&resolved).map_err(io(&resolved))?.is_dir() {
                    return Err(KubeletPathError::WrongType {
                        path: dir.display().to_string(),
                        expected: "directory",
                    });
                }
                Ok(resolved)
            }
            VolumeMode::Block => {
                let resolved = self.inside(&found)?;
                let meta = fs::metadata(&resolved).map_err(io(&resolved))?;
                use std::os::unix::fs::FileTypeExt;
                if !(meta.file_type().is_block_device() || meta.is_file()) {
                    return Err(KubeletPathError::WrongType {
                        path: found.display().to_string(),
                        expected: "block device",
                    });
                }
                Ok(resolved)
            }
        }
    }

    /// `path` with every symlink resolved, if that stays below the root.
    fn inside(&self, path: &Path) -> Result<PathBuf, KubeletPathError> {
        let resolved = fs::canonicalize(path).map_err(io(path))?;
        let below = resolved.starts_with(&self.real)
            && resolved
                .strip_prefix(&self.real)
                .map(|rest| rest.components().all(|c| matches!(c, Component::Normal(_))))
                .unwrap_or(false)
            && resolved != self.real;
        if below {
            Ok(resolved)
        } else {
            Err(KubeletPathError::Escapes {
                path: path.display().to_string(),
                resolved: resolved.display().to_string(),
                root: self.root.display().to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layout() -> (tempfile::TempDir, KubeletRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("kubelet");
        fs::create_dir_all(&root).unwrap();
        let k = KubeletRoot::new(&root).unwrap();
        (dir, k)
    }

    #[test]
    fn a_csi_volume_is_its_mount_directory() {
        let (_d, k) = layout();
        let mount = k
            .path()
            .join("pods/u1/volumes/kubernetes.io~csi/pv-1/mount");
        fs::create_dir_all(&mount).unwrap();
        let got = k.volume("u1", "pv-1", VolumeMode::Filesystem).unwrap();
        assert_eq!(got, fs::canonicalize(&mount).unwrap());
    }

    #[test]
    fn other_plugins_are_the_volume_directory_itself() {
        let (_d, k) = layout();
        let dir = k.path().join("pods/u1/volumes/kubernetes.io~nfs/pv-2");
        fs::create_dir_all(&dir).unwrap();
        let got = k.volume("u1", "pv-2", VolumeMode::Filesystem).unwrap();
        assert_eq!(got, fs::canonicalize(&dir).unwrap());
    }

    #[test]
    fn a_missing_volume_says_the_kubelet_has_not_mounted_it() {
        let (_d, k) = layout();
        let e = k.volume("u1", "pv-1", VolumeMode::Filesystem).unwrap_err();
        assert!(matches!(e, KubeletPathError::NotMounted { .. }), "{e}");
    }

    #[test]
    fn names_that_are_not_one_component_are_refused() {
        let (_d, k) = layout();
        for bad in ["..", ".", "a/b", "", "../../etc"] {
            assert!(matches!(
                k.volume(bad, "pv", VolumeMode::Filesystem),
                Err(KubeletPathError::BadName { .. })
            ));
            assert!(matches!(
                k.volume("u", bad, VolumeMode::Block),
                Err(KubeletPathError::BadName { .. })
            ));
        }
    }

    #[test]
    fn a_volume_directory_that_is_a_symlink_out_of_the_root_is_refused() {
        let (d, k) = layout();
        let plugin = k.path().join("pods/u1/volumes/kubernetes.io~csi/pv-1");
        fs::create_dir_all(&plugin).unwrap();
        symlink("/", plugin.join("mount")).unwrap();
        let e = k.volume("u1", "pv-1", VolumeMode::Filesystem).unwrap_err();
        assert!(matches!(e, KubeletPathError::Escapes { .. }), "{e}");
        // A pods directory that is itself a symlink out is refused the same way.
        let outside = d
            .path()
            .join("outside/volumes/kubernetes.io~csi/pv-9/mount");
        fs::create_dir_all(&outside).unwrap();
        symlink(d.path().join("outside"), k.path().join("pods/u9")).unwrap();
        let e = k.volume("u9", "pv-9", VolumeMode::Filesystem).unwrap_err();
        assert!(matches!(e, KubeletPathError::Escapes { .. }), "{e}");
    }

    #[test]
    fn a_block_volume_follows_its_symlink_within_the_root() {
        let (_d, k) = layout();
        let dev = k
            .path()
            .join("plugins/kubernetes.io/csi/volumeDevices/pv-b/dev/u1");
        fs::create_dir_all(dev.parent().unwrap()).unwrap();
        fs::write(&dev, vec![0u8; 4096]).unwrap();
        let link = k
            .path()
            .join("pods/u1/volumeDevices/kubernetes.io~csi/pv-b");
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(&dev, &link).unwrap();
        let got = k.volume("u1", "pv-b", VolumeMode::Block).unwrap();
        assert_eq!(got, fs::canonicalize(&dev).unwrap());
        // Pointing at a device outside the root is refused.
        fs::remove_file(&link).unwrap();
        symlink("/dev/null", &link).unwrap();
        assert!(matches!(
            k.volume("u1", "pv-b", VolumeMode::Block),
            Err(KubeletPathError::Escapes { .. })
        ));
    }
}
