//! What makes a cgroup a container's: the name its runtime gives it. Both
//! sides judge a name with [`container_cgroup`]: the programs when a cgroup
//! is made (`cgroup_mkdir`), the agent for the cgroups that existed before
//! the programs were attached, and for naming containers in events.
//!
//! ```text
//! docker      docker-<id>.scope          <id> (below /docker)
//! containerd  cri-containerd-<id>.scope  <id> (below a pod's cgroup)
//! CRI-O       crio-<id>.scope
//! podman      libpod-<id>.scope          libpod-<id> (cgroupfs driver)
//! ```
//!
//! `<id>` is 64 hexadecimal digits. The runtimes' monitors (`libpod-conmon-
//! <id>.scope`, `crio-conmon-<id>.scope`) are not containers. A cgroup below
//! a container's is the container's too: whatever a container makes of its
//! own subtree stays inside it.

/// The raw tracepoint program that drops a removed cgroup from
/// `CONTAINER_CGROUPS`: `(program, raw tracepoint)`. Attached with
/// `Hook::TpCgroupMkdir`, which enters them, on every tier.
pub const CGROUP_RMDIR_PROGRAM: (&str, &str) = ("cgroup_rmdir", "cgroup_rmdir");

/// Digits of a container id.
pub const CONTAINER_ID_LEN: usize = 64;

/// The prefixes runtimes put before the id, and the runtime each names
/// (`container.runtime.name`).
pub const CONTAINER_CGROUP_PREFIXES: [(&[u8], &str); 4] = [
    (b"docker-", "docker"),
    (b"cri-containerd-", "containerd"),
    (b"crio-", "cri-o"),
    (b"libpod-", "podman"),
];

/// Longest name [`container_cgroup`] can accept: the longest prefix, the
/// id and `.scope`.
pub const CONTAINER_CGROUP_NAME_MAX: usize = 15 + CONTAINER_ID_LEN + SCOPE.len();

const SCOPE: &[u8] = b".scope";

/// How a cgroup's name (one path component) names a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerName {
    /// The id alone, whose runtime the name does not say.
    Bare,
    /// One of [`CONTAINER_CGROUP_PREFIXES`] (its index) before the id.
    Prefixed(usize),
}

/// Whether `name`, a cgroup directory's name, is a container's, and how.
/// Written with bounded loops and no slicing so that the programs can run
/// it as the agent does.
#[inline(always)]
pub fn container_cgroup(name: &[u8]) -> Option<ContainerName> {
    let len = name.len();
    if !(CONTAINER_ID_LEN..=CONTAINER_CGROUP_NAME_MAX).contains(&len) {
        return None;
    }
    let scoped = ends_with(name, SCOPE);
    let end = if scoped { len - SCOPE.len() } else { len };
    if end < CONTAINER_ID_LEN {
        return None;
    }
    let start = end - CONTAINER_ID_LEN;
    let mut i = 0;
    while i < CONTAINER_ID_LEN {
        match name.get(start + i) {
            Some(b) if b.is_ascii_hexdigit() => {}
            _ => return None,
        }
        i += 1;
    }
    if start == 0 {
        // The id alone is a container's only as the whole name.
        return (!scoped).then_some(ContainerName::Bare);
    }
    let mut p = 0;
    while p < CONTAINER_CGROUP_PREFIXES.len() {
        let prefix = CONTAINER_CGROUP_PREFIXES[p].0;
        if prefix.len() == start && starts_with(name, prefix) {
            return Some(ContainerName::Prefixed(p));
        }
        p += 1;
    }
    None
}

#[inline(always)]
fn starts_with(name: &[u8], prefix: &[u8]) -> bool {
    let mut i = 0;
    while i < prefix.len() {
        if name.get(i) != Some(&prefix[i]) {
            return false;
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn ends_with(name: &[u8], suffix: &[u8]) -> bool {
    if name.len() < suffix.len() {
        return false;
    }
    let at = name.len() - suffix.len();
    let mut i = 0;
    while i < suffix.len() {
        if name.get(at + i) != Some(&suffix[i]) {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{format, string::String};

    use super::*;

    const ID: &str = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef";

    #[test]
    fn runtimes_names_are_containers() {
        for (i, (prefix, _)) in CONTAINER_CGROUP_PREFIXES.iter().enumerate() {
            let prefix = core::str::from_utf8(prefix).unwrap();
            for name in [format!("{prefix}{ID}.scope"), format!("{prefix}{ID}")] {
                assert_eq!(
                    container_cgroup(name.as_bytes()),
                    Some(ContainerName::Prefixed(i)),
                    "{name}"
                );
            }
        }
        assert_eq!(container_cgroup(ID.as_bytes()), Some(ContainerName::Bare));
    }

    #[test]
    fn other_names_are_not() {
        for name in [
            format!("libpod-conmon-{ID}.scope"),
            format!("crio-conmon-{ID}.scope"),
            format!("{ID}.scope"),
            format!("x{ID}"),
            format!("docker-{}.scope", &ID[1..]),
            format!("docker-{}g.scope", &ID[1..]),
            format!("podman-{ID}.scope"),
            format!("docker-{ID}.slice"),
            "system.slice".into(),
            "libpod_parent".into(),
            String::new(),
        ] {
            assert_eq!(container_cgroup(name.as_bytes()), None, "{name}");
        }
    }
}
