//! Container and Kubernetes identity from a task's cgroup v2 path: the
//! container runtimes name each container's cgroup after its id, and the
//! kubelet puts a pod's containers under a cgroup named after the pod's UID.
//! Which names are containers' is `collector_common::container`'s to say.
//! Layouts recognised (systemd and cgroupfs drivers):
//!
//! ```text
//! docker      /system.slice/docker-<id>.scope             /docker/<id>
//! containerd  /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//!             /kubepods/besteffort/pod<uid>/<id>
//! CRI-O       /kubepods.slice/kubepods-pod<uid>.slice/crio-<id>.scope
//! podman      /machine.slice/libpod-<id>.scope            /user.slice/.../libpod-<id>.scope
//! ```
//!
//! Written here rather than taken from a crate: the cgroup-path parsers
//! that exist come with whole container-runtime clients.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use collector_common::container::{
    CONTAINER_CGROUP_PREFIXES, CONTAINER_ID_LEN, ContainerName, container_cgroup,
};
use rustc_hash::FxHashMap;

use super::image::RuntimeRoots;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The full 64-hex-digit container id.
    pub container_id: String,
    /// `docker`, `containerd`, `cri-o` or `podman`, where the path says.
    pub runtime: Option<&'static str>,
    /// The Kubernetes pod's UID, for a container in a pod.
    pub pod_uid: Option<String>,
    /// The image the container was made from, where its runtime's files
    /// say (`super::image`).
    pub image: Option<String>,
}

/// `pod<uid>` or `kubepods-<qos>-pod<uid_with_underscores>.slice`.
fn pod_uid(component: &str) -> Option<String> {
    let name = component.strip_suffix(".slice").unwrap_or(component);
    let at = name.rfind("pod")?;
    let uid = name[at + 3..].replace('_', "-");
    let valid = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    valid.then_some(uid)
}

/// The identity a cgroup path shows, if it is a container's.
pub fn from_cgroup_path(path: &str) -> Option<Identity> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    // The innermost container cgroup: a container may run nested cgroups
    // of its own below it.
    let (at, id_at, mut runtime) = components.iter().enumerate().rev().find_map(|(i, c)| {
        Some(match container_cgroup(c.as_bytes())? {
            ContainerName::Bare => (i, 0, None),
            ContainerName::Prefixed(p) => {
                let (prefix, runtime) = CONTAINER_CGROUP_PREFIXES[p];
                (i, prefix.len(), Some(runtime))
            }
        })
    })?;
    let container_id = components[at][id_at..id_at + CONTAINER_ID_LEN].to_string();
    if runtime.is_none() && at > 0 && components[at - 1] == "docker" {
        runtime = Some("docker");
    }
    let pod_uid = components[..at].iter().rev().find_map(|c| pod_uid(c));
    Some(Identity {
        container_id,
        runtime,
        pod_uid,
        image: None,
    })
}

/// The cgroup v2 hierarchy's mount point, from /proc/self/mountinfo.
pub(crate) fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// The path of cgroup `id` below the hierarchy opened as `root`: a cgroup
/// v2 id is the kernfs id of its directory, which open_by_handle_at(2)
/// accepts as a file handle (type FILEID_KERNFS), as systemd and bpftool
/// do. Works after every task of the cgroup has exited, unlike
/// /proc/<pid>/cgroup.
fn cgroup_path_by_id(root: &std::fs::File, mount: &Path, id: u64) -> Option<String> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    const FILEID_KERNFS: i32 = 0xfe;
    // struct file_handle with its 8 bytes of f_handle.
    #[repr(C)]
    struct Handle {
        handle_bytes: u32,
        handle_type: i32,
        id: [u8; 8],
    }
    let mut handle = Handle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id: id.to_ne_bytes(),
    };
    // SAFETY: `handle` is a file_handle followed by handle_bytes bytes;
    // the descriptor returned, if any, is owned here.
    let fd = unsafe {
        libc::open_by_handle_at(
            root.as_raw_fd(),
            (&raw mut handle).cast::<libc::file_handle>(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let relative = path.strip_prefix(mount).ok()?;
    Some(format!("/{}", relative.display()))
}

/// The cgroup v2 path of a process, from `/proc/<pid>/cgroup`.
fn cgroup_path(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Cgroup paths seen, by cgroup id: a container's tasks share one, so the
/// path is read once per container, not once per event.
pub struct Containers {
    cache: Mutex<FxHashMap<u64, Option<Arc<Identity>>>>,
    /// The cgroup v2 mount point and its directory, opened once.
    hierarchy: Option<(PathBuf, std::fs::File)>,
    /// Where the runtimes say which image a container was made from.
    runtimes: RuntimeRoots,
    /// Image names found, by container id: the cgroups a container makes
    /// below its own (systemd in a container) ask again.
    images: Mutex<FxHashMap<String, String>>,
}

/// Cached cgroups before the cache starts over.
const CACHE_MAX: usize = 16_384;

impl Default for Containers {
    fn default() -> Self {
        let hierarchy = cgroup2_mount().and_then(|m| {
            let dir = std::fs::File::open(&m).ok()?;
            Some((m, dir))
        });
        Self {
            cache: Mutex::new(FxHashMap::default()),
            hierarchy,
            runtimes: RuntimeRoots::default(),
            images: Mutex::new(FxHashMap::default()),
        }
    }
}

impl Containers {
    /// A cgroup was made (`cgroup_mkdir`): its path is known by id from now
    /// on, also once the cgroup is gone. Before its tasks' records, so it
    /// replaces whatever the id meant before.
    pub fn made(&self, cgroup_id: u64, path: &str) {
        let identity = self.identity(path);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(cgroup_id, identity);
    }

    /// The identity a cgroup path shows, with the container's image: read
    /// once per cgroup, and the runtime wrote it before making the cgroup.
    fn identity(&self, path: &str) -> Option<Arc<Identity>> {
        let mut identity = from_cgroup_path(path)?;
        let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        identity.image = match images.get(&identity.container_id) {
            Some(known) => Some(known.clone()),
            None => {
                // Not cached when not found: the runtime may not have
                // written it yet for a cgroup made early.
                let found = self
                    .runtimes
                    .image_name(identity.runtime, &identity.container_id);
                if let Some(name) = &found {
                    if images.len() >= CACHE_MAX {
                        images.clear();
                    }
                    images.insert(identity.container_id.clone(), name.clone());
                }
                found
            }
        };
        Some(Arc::new(identity))
    }

    /// The identity of the container the task (`pid`, in cgroup
    /// `cgroup_id`) runs in; `None` outside containers, or when neither the
    /// cgroup id nor the task lead to a path (then nothing is cached).
    pub fn lookup(&self, cgroup_id: u64, pid: u32) -> Option<Arc<Identity>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = cache.get(&cgroup_id) {
            return known.clone();
        }
        let by_id = self
            .hierarchy
            .as_ref()
            .filter(|_| cgroup_id != 0)
            .and_then(|(mount, dir)| cgroup_path_by_id(dir, mount, cgroup_id));
        let path = by_id.or_else(|| cgroup_path(pid))?;
        let identity = self.identity(&path);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(cgroup_id, identity.clone());
        identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1ca0c44b9e9d2fa0b0a6e4e1a5d3d6c1f8e7d2b9a4c5e6f7a8b9c0d1e2f3a4";
    const UID: &str = "0f6b2d8e-1c3a-4b5d-9e7f-a1b2c3d4e5f6";

    fn id(path: &str) -> Option<Identity> {
        from_cgroup_path(path)
    }

    #[test]
    fn docker_with_the_systemd_and_cgroupfs_drivers() {
        let want = Identity {
            container_id: ID.into(),
            runtime: Some("docker"),
            pod_uid: None,
            image: None,
        };
        assert_eq!(
            id(&format!("/system.slice/docker-{ID}.scope")),
            Some(want.clone())
        );
        assert_eq!(id(&format!("/docker/{ID}")), Some(want));
    }

    #[test]
    fn kubernetes_with_containerd_cri_o_and_both_drivers() {
        let underscored = UID.replace('-', "_");
        let containerd = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{underscored}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            id(&containerd),
            Some(Identity {
                container_id: ID.into(),
                runtime: Some("containerd"),
                pod_uid: Some(UID.into()),
                image: None,
            })
        );
        let guaranteed = format!("/kubepods.slice/kubepods-pod{underscored}.slice/crio-{ID}.scope");
        let crio = id(&guaranteed).unwrap();
        assert_eq!(crio.runtime, Some("cri-o"));
        assert_eq!(crio.pod_uid.as_deref(), Some(UID));
        let cgroupfs = id(&format!("/kubepods/burstable/pod{UID}/{ID}")).unwrap();
        assert_eq!(cgroupfs.container_id, ID);
        assert_eq!(cgroupfs.runtime, None);
        assert_eq!(cgroupfs.pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn podman_and_nested_cgroups_inside_a_container() {
        let podman = id(&format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
        ))
        .unwrap();
        assert_eq!(podman.runtime, Some("podman"));
        // systemd inside a container makes cgroups below the container's.
        let nested = id(&format!(
            "/system.slice/docker-{ID}.scope/system.slice/cron.service"
        ))
        .unwrap();
        assert_eq!(nested.container_id, ID);
    }

    #[test]
    fn host_paths_are_not_containers() {
        for path in [
            "/",
            "/init.scope",
            "/system.slice/sshd.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/kubepods.slice/kubepods-besteffort.slice",
            // conmon, CRI-O's monitor, is not the container.
            "/system.slice/crio-conmon-xyz.scope",
            &format!("/docker/{}", &ID[..63]),
        ] {
            assert_eq!(id(path), None, "{path}");
        }
    }

    #[test]
    fn the_cache_reads_a_cgroup_once_and_does_not_cache_a_vanished_task() {
        let c = Containers::default();
        // This test's own process: on the host, not in a container (or in
        // one, when the tests run in a container): either way the answer
        // is cached under the id given.
        let first = c.lookup(42, std::process::id());
        assert_eq!(c.lookup(42, u32::MAX), first, "cached by cgroup id");
        assert_eq!(c.lookup(43, u32::MAX), None, "no such cgroup, no such task");
        assert!(!c.cache.lock().unwrap().contains_key(&43));
    }

    #[test]
    fn a_cgroup_id_leads_to_its_path() {
        let Some((mount, dir)) = Containers::default().hierarchy else {
            return; // no cgroup v2 here
        };
        let Some(own) = cgroup_path(std::process::id()) else {
            return;
        };
        use std::os::unix::fs::MetadataExt as _;
        let id = std::fs::metadata(mount.join(own.trim_start_matches('/')))
            .unwrap()
            .ino();
        let found = cgroup_path_by_id(&dir, &mount, id);
        // open_by_handle_at needs CAP_DAC_READ_SEARCH, as the agent has.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(found.as_deref(), Some(own.as_str()));
        }
    }
}
