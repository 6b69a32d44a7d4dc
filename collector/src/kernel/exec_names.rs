//! The name each process was executed as (`EXEC_NAMES`, kept by the
//! programs of `collector-ebpf/src/exec_name.rs` from the moment they are
//! attached), for the processes that were already running: the last
//! component of their executable's path. A `comm` a process set for
//! itself is not taken.

use aya::{Ebpf, maps::HashMap};
use collector_common::{COMM_LEN, maps};

use super::{KernelError, map_err};

/// Enters every running process the programs have not seen exec yet.
/// Returns how many were entered.
pub fn enter_running(ebpf: &mut Ebpf) -> Result<usize, KernelError> {
    let mut names = HashMap::<_, u32, [u8; COMM_LEN]>::try_from(
        ebpf.map_mut(maps::EXEC_NAMES)
            .ok_or(KernelError::Missing("EXEC_NAMES map"))?,
    )
    .map_err(map_err(maps::EXEC_NAMES))?;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Ok(0);
    };
    let mut entered = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Kernel threads have no executable: their comm stands.
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        let Some(name) = exe.file_name() else {
            continue;
        };
        // BPF_NOEXIST: an exec the programs saw since is newer.
        const BPF_NOEXIST: u64 = 1;
        if names
            .insert(pid, as_comm(name.as_encoded_bytes()), BPF_NOEXIST)
            .is_ok()
        {
            entered += 1;
        }
    }
    Ok(entered)
}

/// A name as the kernel keeps a `comm`: at most 15 bytes, NUL-padded. A
/// deleted executable's name loses its ` (deleted)`.
fn as_comm(name: &[u8]) -> [u8; COMM_LEN] {
    let name = name.strip_suffix(b" (deleted)").unwrap_or(name);
    let mut comm = [0u8; COMM_LEN];
    let len = name.len().min(COMM_LEN - 1);
    comm[..len].copy_from_slice(&name[..len]);
    comm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_cut_like_comm_and_loses_deleted() {
        assert_eq!(&as_comm(b"apt")[..4], b"apt\0");
        let long = as_comm(b"systemd-resolved-helper");
        assert_eq!(&long[..15], b"systemd-resolve");
        assert_eq!(long[15], 0);
        assert_eq!(&as_comm(b"tool (deleted)")[..5], b"tool\0");
    }
}
