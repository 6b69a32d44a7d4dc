//! Which programs attach where, and what that means for each row of the
//! policy. BPF-LSM first; where the kernel refuses it, the audit tier.

use std::path::{Path, PathBuf};

use aya::{
    Btf, Ebpf,
    programs::{CgroupAttachMode, CgroupSockAddr, Lsm, RawTracePoint, TracePoint, links::FdLink},
};
use collector_common::programs;
use tracing::warn;

use super::{KernelError, probe};
use crate::{config::TierChoice, policy::Policy};

/// How a row of the policy is covered on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// BPF-LSM: operations are refused in block mode.
    Enforced { hooks: Vec<String> },
    /// Tracepoints: operations are reported, never refused.
    AuditOnly { hooks: Vec<String>, reason: String },
    /// Nothing on this kernel covers the row.
    Unavailable { reason: String },
    /// The module is disabled in the configuration.
    Disabled,
}

impl Coverage {
    pub fn tier(&self) -> &'static str {
        match self {
            Coverage::Enforced { .. } => semconv::tier::ENFORCED,
            Coverage::AuditOnly { .. } => semconv::tier::AUDIT_ONLY,
            Coverage::Unavailable { .. } | Coverage::Disabled => semconv::tier::UNAVAILABLE,
        }
    }
}

/// One row: an operation the policy covers, e.g. `files.open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: &'static str,
    pub coverage: Coverage,
}

/// The links programs are attached by, by program name, owned by the
/// agent so that they can be pinned (`kernel::pin`). Dropping a link
/// detaches its program; a link the kernel cannot hand out as a BPF link
/// (a tracepoint on a kernel before 5.15) stays with its program and is
/// not in the list.
pub type Links = Vec<(String, FdLink)>;

pub struct Attached {
    pub rows: Vec<Row>,
    pub links: Links,
    /// Per module: its BPF-LSM programs are attached (denials enforced).
    pub files_lsm: bool,
    pub process_lsm: bool,
    pub mount_lsm: bool,
    pub network_lsm: bool,
}

/// File rows and their BPF-LSM program (same name as the hook).
const FILE_ROWS: &[(&str, &str)] = &[
    ("files.open", "file_open"),
    ("files.unlink", "path_unlink"),
    ("files.rmdir", "path_rmdir"),
    ("files.rename", "path_rename"),
    ("files.truncate", "path_truncate"),
    ("files.chmod", "path_chmod"),
    ("files.chown", "path_chown"),
    ("files.mmap", "mmap_file"),
    ("files.ioctl", "file_ioctl"),
];

const MOUNT_ROWS: &[(&str, &str)] = &[("mount.mount", "sb_mount"), ("mount.move", "move_mount")];

/// Tries BPF-LSM once per program; remembers why it is unavailable so the
/// reason is found once and reported per row.
struct LsmAttacher<'a> {
    btf: &'a Btf,
    tier: TierChoice,
    /// Set once the kernel has refused BPF-LSM as such.
    refused: Option<String>,
}

impl LsmAttacher<'_> {
    /// `Ok(Ok(()))` attached; `Ok(Err(reason))` not attached (audit tier
    /// may take over); `Err` when the configuration requires BPF-LSM.
    fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        program: &str,
        links: &mut Links,
    ) -> Result<Result<(), String>, KernelError> {
        if self.tier == TierChoice::Tracepoint {
            return Ok(Err(
                "the configuration asks for the audit tier (kernel.tier: tracepoint)".into(),
            ));
        }
        if let Some(reason) = &self.refused {
            return Ok(Err(reason.clone()));
        }
        if let Some(reason) = probe::lsm_list_reason() {
            self.refused = Some(reason);
        }
        let result = match &self.refused {
            Some(reason) => Err(reason.clone()),
            None => try_lsm(ebpf, self.btf, program),
        };
        match result {
            Ok(link) => {
                links.push((program.to_string(), link));
                Ok(Ok(()))
            }
            Err(reason) if self.tier == TierChoice::Lsm => Err(KernelError::LsmRequired(reason)),
            Err(reason) => {
                // EPERM or a missing LSM list entry refuses every program.
                if reason.contains("EPERM") || reason.contains("LSM list") {
                    self.refused = Some(reason.clone());
                }
                Ok(Err(reason))
            }
        }
    }
}

pub fn attach_all(
    ebpf: &mut Ebpf,
    btf: &Btf,
    tier: TierChoice,
    policy: &Policy,
    net_cgroup: Option<&Path>,
) -> Result<Attached, KernelError> {
    let mut lsm = LsmAttacher {
        btf,
        tier,
        refused: None,
    };
    let mut rows = Vec::new();
    let mut links = Links::new();

    // Files.
    let mut files_lsm = false;
    if policy.files.enabled() {
        for &(row, program) in FILE_ROWS {
            let coverage = match lsm.attach(ebpf, program, &mut links)? {
                Ok(()) => {
                    files_lsm = true;
                    Coverage::Enforced {
                        hooks: vec![format!("lsm/{program}")],
                    }
                }
                Err(reason) if row == "files.open" => {
                    let hooks = attach_tracepoints(ebpf, programs::FILE_TRACEPOINTS, &mut links)?;
                    Coverage::AuditOnly { hooks, reason }
                }
                Err(reason) => Coverage::Unavailable { reason },
            };
            rows.push(Row {
                name: row,
                coverage,
            });
        }
    } else {
        rows.extend(FILE_ROWS.iter().map(|&(name, _)| Row {
            name,
            coverage: Coverage::Disabled,
        }));
    }

    // Processes: the life cycle from raw tracepoints on every tier; exec
    // policy enforced by BPF-LSM where it loads.
    let mut process_lsm = false;
    if policy.process.enabled() {
        let lifecycle = attach_raw_tracepoints(ebpf, programs::PROCESS_TRACEPOINTS, &mut links)?;
        let exec = match lsm.attach(ebpf, programs::PROCESS_LSM[0], &mut links)? {
            Ok(()) => {
                process_lsm = true;
                Coverage::Enforced {
                    hooks: vec!["lsm/bprm_check_security".into()],
                }
            }
            Err(reason) => Coverage::AuditOnly {
                hooks: vec!["raw_tracepoint/sched_process_exec".into()],
                reason,
            },
        };
        rows.push(Row {
            name: "process.exec",
            coverage: exec,
        });
        rows.push(Row {
            name: "process.lifecycle",
            coverage: Coverage::AuditOnly {
                hooks: lifecycle,
                reason: "fork and exit are reported, not judged".into(),
            },
        });
    } else {
        for name in ["process.exec", "process.lifecycle"] {
            rows.push(Row {
                name,
                coverage: Coverage::Disabled,
            });
        }
    }

    // Mounts.
    let mut mount_lsm = false;
    for &(row, program) in MOUNT_ROWS {
        let coverage = if !policy.mount.enabled() {
            Coverage::Disabled
        } else {
            match lsm.attach(ebpf, program, &mut links)? {
                Ok(()) => {
                    mount_lsm = true;
                    Coverage::Enforced {
                        hooks: vec![format!("lsm/{program}")],
                    }
                }
                Err(reason) => Coverage::Unavailable { reason },
            }
        };
        rows.push(Row {
            name: row,
            coverage,
        });
    }

    // Network: BPF-LSM socket hooks; elsewhere cgroup sock_addr programs
    // on the configured cgroup (connect and send can still be refused).
    let mut network_lsm = false;
    let mut audit_rows: Vec<(&'static str, String)> = Vec::new();
    for &(row, program) in programs::NETWORK_LSM {
        let coverage = if !policy.network.enabled() {
            Coverage::Disabled
        } else {
            match lsm.attach(ebpf, program, &mut links)? {
                Ok(()) => {
                    network_lsm = true;
                    Coverage::Enforced {
                        hooks: vec![format!("lsm/{program}")],
                    }
                }
                Err(reason) => {
                    audit_rows.push((row, reason.clone()));
                    Coverage::Unavailable { reason }
                }
            }
        };
        rows.push(Row {
            name: row,
            coverage,
        });
    }
    if !audit_rows.is_empty() {
        let cgroup = match net_cgroup {
            Some(path) => path.to_path_buf(),
            None => cgroup2_root().ok_or(KernelError::Missing("a mounted cgroup v2 hierarchy"))?,
        };
        let attached = attach_cgroup_programs(ebpf, &cgroup, &mut links)?;
        for row in rows.iter_mut() {
            let Some((_, reason)) = audit_rows.iter().find(|(r, _)| *r == row.name) else {
                continue;
            };
            let hooks: Vec<String> = attached
                .iter()
                .filter(|(r, _)| *r == row.name)
                .map(|(_, program)| format!("cgroup/{program} on {}", cgroup.display()))
                .collect();
            if hooks.is_empty() {
                continue;
            }
            // connect and sendmsg programs can refuse; the others report.
            row.coverage = if matches!(row.name, "network.connect" | "network.send") {
                Coverage::Enforced { hooks }
            } else {
                Coverage::AuditOnly {
                    hooks,
                    reason: reason.clone(),
                }
            };
        }
    }

    Ok(Attached {
        rows,
        links,
        files_lsm,
        process_lsm,
        mount_lsm,
        network_lsm,
    })
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on most
/// hosts; `/sys/fs/cgroup/unified` on hybrid ones).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        // ... mount-point options - fstype source super-options
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// Attaches every cgroup sock_addr program to `cgroup`: `(row, program)`.
fn attach_cgroup_programs(
    ebpf: &mut Ebpf,
    cgroup: &Path,
    links: &mut Links,
) -> Result<Vec<(&'static str, &'static str)>, KernelError> {
    let dir = std::fs::File::open(cgroup).map_err(|e| KernelError::Cgroup {
        path: cgroup.display().to_string(),
        source: e,
    })?;
    let mut attached = Vec::new();
    for &(row, program) in programs::NETWORK_CGROUP {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(program)
            .ok_or(KernelError::Missing("a cgroup sock_addr program"))?
            .try_into()
            .map_err(|source| KernelError::Attach {
                what: program.into(),
                source,
            })?;
        // A BPF link (how aya attaches where the kernel has them) coexists
        // with other programs on the cgroup whatever the mode; the link
        // API takes no flags, so the default mode it is.
        match prog
            .load()
            .and_then(|()| prog.attach(&dir, CgroupAttachMode::Single))
            .and_then(|id| prog.take_link(id))
        {
            Ok(link) => {
                // A link from BPF_LINK_CREATE (kernels from 5.7); an older
                // kernel's program attachment stays with the program.
                if let Ok(link) = FdLink::try_from(link) {
                    links.push((program.to_string(), link));
                }
                attached.push((row, program));
            }
            Err(source) => {
                return Err(KernelError::Attach {
                    what: format!("cgroup/{program} on {}", cgroup.display()),
                    source,
                });
            }
        }
    }
    Ok(attached)
}

fn attach_tracepoints(
    ebpf: &mut Ebpf,
    list: &[(&str, &str, &str)],
    links: &mut Links,
) -> Result<Vec<String>, KernelError> {
    let mut hooks = Vec::new();
    for &(program, category, name) in list {
        let prog: &mut TracePoint = ebpf
            .program_mut(program)
            .ok_or(KernelError::Missing("a tracepoint program"))?
            .try_into()
            .map_err(|source| KernelError::Attach {
                what: program.into(),
                source,
            })?;
        match prog.load().and_then(|()| prog.attach(category, name)) {
            Ok(id) => {
                // Only a perf link (kernels from 5.15) can be owned and
                // pinned; otherwise the attachment stays with the program.
                if aya::features().bpf_perf_link() {
                    let link = prog.take_link(id).map_err(|source| KernelError::Attach {
                        what: program.into(),
                        source,
                    })?;
                    let link = FdLink::try_from(link).map_err(|source| KernelError::Link {
                        what: format!("tracepoint {category}/{name}"),
                        source,
                    })?;
                    links.push((program.to_string(), link));
                }
                hooks.push(format!("tracepoint/{category}/{name}"))
            }
            // `open` does not exist on every architecture; `openat2` is 5.6+.
            Err(err) => warn!("tracepoint {category}/{name} not attached: {err}"),
        }
    }
    if hooks.is_empty() {
        return Err(KernelError::Missing("any attachable tracepoint"));
    }
    Ok(hooks)
}

fn attach_raw_tracepoints(
    ebpf: &mut Ebpf,
    list: &[(&str, &str, &str)],
    links: &mut Links,
) -> Result<Vec<String>, KernelError> {
    let mut hooks = Vec::new();
    for &(program, _, name) in list {
        let prog: &mut RawTracePoint = ebpf
            .program_mut(program)
            .ok_or(KernelError::Missing("a raw tracepoint program"))?
            .try_into()
            .map_err(|source| KernelError::Attach {
                what: program.into(),
                source,
            })?;
        let link = prog
            .load()
            .and_then(|()| prog.attach(name))
            .and_then(|id| prog.take_link(id))
            .map_err(|source| KernelError::Attach {
                what: format!("raw tracepoint {name}"),
                source,
            })?;
        links.push((program.to_string(), link.into()));
        hooks.push(format!("raw_tracepoint/{name}"));
    }
    Ok(hooks)
}

/// Loads and attaches one BPF-LSM program (named after its hook); on
/// failure, says why in one line.
fn try_lsm(ebpf: &mut Ebpf, btf: &Btf, program: &str) -> Result<FdLink, String> {
    let prog: &mut Lsm = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("the eBPF object has no program {program}"))?
        .try_into()
        .map_err(|e| format!("{program} is not an LSM program: {e}"))?;
    let started = std::time::Instant::now();
    prog.load(program, btf)
        .map_err(|e| probe::describe_load_error(program, &e))?;
    tracing::debug!(program, elapsed = ?started.elapsed(), "BPF-LSM program verified and loaded");
    prog.attach()
        .and_then(|id| prog.take_link(id))
        .map(FdLink::from)
        .map_err(|e| format!("the kernel refused to attach BPF-LSM program {program}: {e}"))
}
