//! Why BPF-LSM is unavailable, in words an operator can act on.

use aya::programs::ProgramError;
use tracing::warn;

use super::mounts;

/// Why BPF-LSM does not judge a row on this kernel. `Display` gives the
/// words the agent prints after "BPF-LSM unavailable: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsmUnavailable {
    /// `kernel.tier: tracepoint`.
    Forced,
    /// The active LSM list, read from `path`, has no "bpf".
    NotInLsmList { path: String, list: String },
    /// The eBPF object has no such program.
    NoProgram { program: &'static str },
    /// The object's program is of another type.
    NotLsmProgram {
        program: &'static str,
        error: String,
    },
    /// The verifier rejected the program: its error and the last line of
    /// its log.
    VerifierRejected {
        program: &'static str,
        error: String,
        last_line: String,
    },
    /// The kernel refused to load the program; `errno` when it gave one
    /// (and no verifier log).
    LoadRefused {
        program: &'static str,
        errno: Option<i32>,
        error: String,
    },
    /// The program loaded, but the kernel refused to attach it.
    AttachRefused {
        program: &'static str,
        error: String,
    },
}

impl LsmUnavailable {
    /// Whether the kernel refuses BPF-LSM as such, so that every other
    /// program would be refused the same way.
    pub fn refuses_every_program(&self) -> bool {
        matches!(
            self,
            LsmUnavailable::NotInLsmList { .. }
                | LsmUnavailable::LoadRefused {
                    errno: Some(libc::EPERM),
                    ..
                }
        )
    }
}

impl std::fmt::Display for LsmUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LsmUnavailable::Forced => {
                f.write_str("the configuration asks for the audit tier (kernel.tier: tracepoint)")
            }
            LsmUnavailable::NotInLsmList { path, list } => write!(
                f,
                "\"bpf\" is not in the kernel's active LSM list ({path}: {list}); \
                 boot with lsm={list},bpf and CONFIG_BPF_LSM=y"
            ),
            LsmUnavailable::NoProgram { program } => {
                write!(f, "the eBPF object has no program {program}")
            }
            LsmUnavailable::NotLsmProgram { program, error } => {
                write!(f, "{program} is not an LSM program: {error}")
            }
            LsmUnavailable::VerifierRejected {
                program,
                error,
                last_line,
            } => write!(
                f,
                "the verifier rejected BPF-LSM program {program}: {error}: {last_line}"
            ),
            LsmUnavailable::LoadRefused {
                program,
                errno,
                error,
            } => write!(
                f,
                "the kernel refused to load BPF-LSM program {program}: {error}{}",
                errno.map_or("", errno_hint)
            ),
            LsmUnavailable::AttachRefused { program, error } => write!(
                f,
                "the kernel refused to attach BPF-LSM program {program}: {error}"
            ),
        }
    }
}

/// `Some(reason)` when the kernel's active LSM list shows BPF-LSM cannot run.
pub fn lsm_list_reason() -> Option<LsmUnavailable> {
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
pub fn reason_for_lsm_list(path: &str, list: &str) -> Option<LsmUnavailable> {
    if list.split(',').any(|lsm| lsm == "bpf") {
        None
    } else {
        Some(LsmUnavailable::NotInLsmList {
            path: path.to_string(),
            list: list.to_string(),
        })
    }
}

/// Why a BPF-LSM program did not load. A verifier rejection is logged in
/// full, since it means the program (not the kernel's policy) is at fault.
pub fn load_refused(program: &'static str, err: &ProgramError) -> LsmUnavailable {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if log.trim().is_empty() {
                LsmUnavailable::LoadRefused {
                    program,
                    errno: io_error.raw_os_error(),
                    error: io_error.to_string(),
                }
            } else {
                warn!("verifier log for {program}:\n{log}");
                let last = log
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                LsmUnavailable::VerifierRejected {
                    program,
                    error: io_error.to_string(),
                    last_line: last.to_string(),
                }
            }
        }
        other => LsmUnavailable::LoadRefused {
            program,
            errno: None,
            error: other.to_string(),
        },
    }
}

fn errno_hint(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => {
            " (EPERM: trampoline programs are not permitted here; a sandboxed or locked-down kernel)"
        }
        libc::EINVAL => " (EINVAL: the kernel lacks CONFIG_BPF_LSM or the hook)",
        524 => " (ENOTSUPP: the kernel does not support BPF trampolines here)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn load_error(errno: i32, log: &str) -> LsmUnavailable {
        load_refused(
            "file_open",
            &ProgramError::LoadError {
                io_error: io::Error::from_raw_os_error(errno),
                verifier_log: aya_obj::VerifierLog::new(log.to_string()),
            },
        )
    }

    /// EPERM and a missing LSM list entry refuse every program; a refusal
    /// of one program (a missing hook, the verifier) says nothing of others.
    #[test]
    fn only_a_kernel_that_refuses_bpf_lsm_as_such_refuses_every_program() {
        assert!(load_error(libc::EPERM, "").refuses_every_program());
        assert!(
            reason_for_lsm_list("/sys/kernel/security/lsm", "capability,yama")
                .unwrap()
                .refuses_every_program()
        );
        assert!(!load_error(libc::EINVAL, "").refuses_every_program());
        assert!(!load_error(libc::EPERM, "0: R1 invalid mem access\n").refuses_every_program());
        assert!(!LsmUnavailable::Forced.refuses_every_program());
    }

    #[test]
    fn a_verifier_rejection_names_the_logs_last_line() {
        let reason = load_error(
            libc::EACCES,
            "0: (79) r1 = *(u64 *)(r1 +0)\nR1 invalid mem access 'scalar'\n\n",
        );
        assert_eq!(
            reason.to_string(),
            "the verifier rejected BPF-LSM program file_open: Permission denied (os error 13): \
             R1 invalid mem access 'scalar'"
        );
    }
}
