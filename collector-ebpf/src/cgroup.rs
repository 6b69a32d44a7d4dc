//! Names for containers: each cgroup v2 directory made is reported with its
//! id and path. A container's records carry only its cgroup id; the agent
//! finds the path by that id, which fails once the cgroup is removed, so a
//! container that ran and ended before the agent read its records would
//! go unnamed. This record is in the ring buffer before any of theirs.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_str_bytes, macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use collector_common::{EventKind, Hook, MODE_MONITOR, process::CgroupEvent};

use crate::{
    kernel,
    record::{self, Verdict},
};

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
