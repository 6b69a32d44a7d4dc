//! Names for containers: each cgroup v2 directory made is reported with its
//! id and path. A container's records carry only its cgroup id; the agent
//! finds the path by that id, which fails once the cgroup is removed, so a
//! container that ran and ended before the agent read its records would
//! go unnamed. This record is in the ring buffer before any of theirs.
//!
//! The same programs keep `CONTAINER_CGROUPS`, what `target: container`
//! asks: a cgroup is entered as it is made, before any task can be moved
//! into it, so a container's first instruction is already judged as a
//! container's.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_str_bytes, macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use collector_common::{
    EventKind, Hook, MODE_MONITOR,
    container::{CONTAINER_CGROUP_NAME_MAX, container_cgroup},
    process::{CGROUP_CONTAINER, CGROUP_CONTAINER_UNTRACKED, CGROUP_NOT_CONTAINER, CgroupEvent},
};

use crate::{
    kernel,
    maps::CONTAINER_CGROUPS,
    record::{self, Verdict},
};

/// Enters cgroup `cgrp` (v2 id `id`) in `CONTAINER_CGROUPS` if it is a
/// container's (by its name) or below one; returns which (`CGROUP_*`).
#[inline(always)]
fn enter_container(cgrp: *const u8, id: u64) -> u32 {
    let parent = kernel::cgroup_v2_id(kernel::cgroup_parent(cgrp)).unwrap_or(0);
    let below_container = unsafe { CONTAINER_CGROUPS.get(&parent) }.is_some();
    if !below_container {
        // One byte more than any container's name: a longer one is cut
        // to a length `container_cgroup` refuses.
        let mut name = [0u8; CONTAINER_CGROUP_NAME_MAX + 2];
        let Ok(name) =
            (unsafe { bpf_probe_read_kernel_str_bytes(kernel::cgroup_name(cgrp), &mut name) })
        else {
            return CGROUP_NOT_CONTAINER;
        };
        if container_cgroup(name).is_none() {
            return CGROUP_NOT_CONTAINER;
        }
    }
    match CONTAINER_CGROUPS.insert(&id, &1, 0) {
        Ok(()) => CGROUP_CONTAINER,
        Err(_) => CGROUP_CONTAINER_UNTRACKED,
    }
}

#[raw_tracepoint(tracepoint = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct cgroup *cgrp, const char *path)
    let cgrp: *const u8 = ctx.arg(0);
    let path: *const u8 = ctx.arg(1);
    // Tasks' records carry their cgroup v2 id; a cgroup v1 hierarchy's ids
    // are another numbering.
    let Some(id) = kernel::cgroup_v2_id(cgrp) else {
        return 0;
    };
    let mut ev = CgroupEvent {
        header: record::header(
            EventKind::Cgroup,
            Hook::TpCgroupMkdir,
            MODE_MONITOR,
            &Verdict::AUDIT,
        ),
        id,
        container: enter_container(cgrp, id),
        ..Default::default()
    };
    let len = match unsafe { bpf_probe_read_kernel_str_bytes(path, &mut ev.path) } {
        Ok(bytes) => bytes.len() as u32,
        // Longer than the record holds: said so by a length past it.
        Err(_) => ev.path.len() as u32,
    };
    ev.path_len = len;
    record::submit(
        Hook::TpCgroupMkdir,
        (&ev as *const CgroupEvent).cast(),
        size_of::<CgroupEvent>(),
    );
    0
}

/// A cgroup removed: its id is never given again.
#[raw_tracepoint(tracepoint = "cgroup_rmdir")]
pub fn cgroup_rmdir(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct cgroup *cgrp, const char *path)
    if let Some(id) = kernel::cgroup_v2_id(ctx.arg(0)) {
        let _ = CONTAINER_CGROUPS.remove(&id);
    }
    0
}
