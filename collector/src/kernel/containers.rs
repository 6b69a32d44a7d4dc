//! The container cgroups that existed before the programs were attached
//! (`CONTAINER_CGROUPS`, kept by `collector-ebpf/src/cgroup.rs` from the
//! moment they are): every directory of the cgroup v2 hierarchy named as a
//! runtime names a container's (`collector_common::container`), and every
//! one below such a directory.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use aya::{Ebpf, maps::HashMap};
use collector_common::{container::container_cgroup, maps};
use tracing::{info, warn};

use super::{KernelError, map_err};

/// Enters every container cgroup of the hierarchy. Returns how many were
/// entered.
pub fn enter_existing(ebpf: &mut Ebpf) -> Result<usize, KernelError> {
    let mut cgroups = HashMap::<_, u64, u8>::try_from(
        ebpf.map_mut(maps::CONTAINER_CGROUPS)
            .ok_or(KernelError::Missing("CONTAINER_CGROUPS map"))?,
    )
    .map_err(map_err(maps::CONTAINER_CGROUPS))?;
    let Some(root) = crate::events::container::cgroup2_mount() else {
        warn!(
            "no cgroup v2 hierarchy is mounted: no task is in a container for `target: container`, \
             and events carry no container.id"
        );
        return Ok(0);
    };
    let found = container_cgroups(&root);
    let mut entered = 0;
    for id in &found {
        // BPF_NOEXIST: an entry the programs made since stands.
        const BPF_NOEXIST: u64 = 1;
        match cgroups.insert(id, 1, BPF_NOEXIST) {
            Ok(()) => entered += 1,
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => {
                warn!(
                    "{}: {e}: {} container cgroups found, {entered} entered; tasks in the others \
                     are not in a container for `target: container`",
                    maps::CONTAINER_CGROUPS,
                    found.len()
                );
                break;
            }
        }
    }
    if entered > 0 {
        info!("{entered} running container cgroups entered for `target: container`");
    }
    Ok(entered)
}

/// The ids of the container cgroups below `root` (a cgroup v2 mount): a
/// cgroup v2 id is its directory's inode number.
fn container_cgroups(root: &Path) -> Vec<u64> {
    let mut found = Vec::new();
    // (directory, whether it is a container's or below one)
    let mut pending: Vec<(PathBuf, bool)> = vec![(root.to_path_buf(), false)];
    while let Some((dir, container)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // removed meanwhile
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            let name = entry.file_name();
            let container = container || container_cgroup(name.as_encoded_bytes()).is_some();
            if container {
                found.push(meta.ino());
            }
            pending.push((entry.path(), container));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn finds_containers_and_what_lies_below_them() {
        let root = tempfile::tempdir().unwrap();
        let dir = |p: &str| {
            let path = root.path().join(p);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::metadata(&path).unwrap().ino()
        };
        let host = dir("system.slice/sshd.service");
        let conmon = dir(&format!("machine.slice/libpod-conmon-{ID}.scope"));
        let container = dir(&format!("machine.slice/libpod-{ID}.scope"));
        let nested = dir(&format!("machine.slice/libpod-{ID}.scope/init.scope/inner"));
        let bare = dir(&format!("kubepods/besteffort/pod1/{ID}"));
        std::fs::write(root.path().join("cgroup.procs"), "").unwrap();

        let mut found = container_cgroups(root.path());
        found.sort_unstable();
        let init = std::fs::metadata(
            root.path()
                .join(format!("machine.slice/libpod-{ID}.scope/init.scope")),
        )
        .unwrap()
        .ino();
        let mut want = vec![container, init, nested, bare];
        want.sort_unstable();
        assert_eq!(found, want);
        assert!(!found.contains(&host) && !found.contains(&conmon));
    }
}
