//! Why BPF-LSM is unavailable, in words an operator can act on.

use aya::programs::ProgramError;
use tracing::warn;

use super::mounts;

/// `Some(reason)` when the kernel's active LSM list shows BPF-LSM cannot run.
pub fn lsm_list_reason() -> Option<String> {
    if let Err(err) = mounts::ensure("securityfs", mounts::SECURITYFS, "lsm") {
        // Not fatal: the load attempt below still tells.
        warn!("cannot mount securityfs on {}: {err}", mounts::SECURITYFS);
        return None;
    }
    let path = format!("{}/lsm", mounts::SECURITYFS);
    let list = std::fs::read_to_string(&path).ok()?;
    reason_for_lsm_list(&path, list.trim())
}

/// `Some(reason)` when `list` (read from `path`) has no BPF-LSM.
pub fn reason_for_lsm_list(path: &str, list: &str) -> Option<String> {
    if list.split(',').any(|lsm| lsm == "bpf") {
        None
    } else {
        Some(format!(
            "\"bpf\" is not in the kernel's active LSM list ({path}: {list}); \
             boot with lsm={list},bpf and CONFIG_BPF_LSM=y"
        ))
    }
}

/// One line for a failed BPF-LSM load. A verifier rejection is logged in
/// full, since it means the program (not the kernel's policy) is at fault.
pub fn describe_load_error(program: &str, err: &ProgramError) -> String {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if log.trim().is_empty() {
                format!(
                    "the kernel refused to load BPF-LSM program {program}: {io_error}{}",
                    errno_hint(io_error)
                )
            } else {
                warn!("verifier log for {program}:\n{log}");
                let last = log
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                format!("the verifier rejected BPF-LSM program {program}: {io_error}: {last}")
            }
        }
        other => format!("the kernel refused to load BPF-LSM program {program}: {other}"),
    }
}

fn errno_hint(err: &std::io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) => {
            " (EPERM: trampoline programs are not permitted here; a sandboxed or locked-down kernel)"
        }
        Some(libc::EINVAL) => " (EINVAL: the kernel lacks CONFIG_BPF_LSM or the hook)",
        Some(524) => " (ENOTSUPP: the kernel does not support BPF trampolines here)",
        _ => "",
    }
}
