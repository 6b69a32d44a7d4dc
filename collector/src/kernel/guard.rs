//! `kernel.protect`: the guard programs (`collector-ebpf`'s `guard`), and
//! what they are told to protect: the agent's process, every BPF map and
//! program it holds, and the directories of its pins.
//!
//! The guard is armed last, once everything it names exists, and goes
//! off in the kernel when the agent's process ends (`guard_exit`), so that
//! the next agent can take over the pins.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use aya::{
    Btf, Ebpf,
    maps::{Array, HashMap},
    programs::RawTracePoint,
};
use collector_common::{
    InodeKey,
    guard::{AgentGuard, GUARD_EXIT_PROGRAM, GUARD_HOOKS, OBJECT_MAP, OBJECT_PROG, ObjectKey},
    maps,
};

use super::{
    KernelError,
    attach::{self, Links},
    map_err,
    probe::LsmUnavailable,
};
use crate::config::TierChoice;

/// Where the guard stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// `kernel.protect` is off.
    Off,
    /// The guard programs are attached and armed.
    Armed { objects: usize, dirs: usize },
    /// `kernel.protect` is on, but the kernel cannot run the guard.
    Unavailable(String),
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protection::Off => f.write_str("off (kernel.protect: false)"),
            Protection::Armed { objects, dirs } => write!(
                f,
                "on: signals, ptrace, resource limits, {objects} maps and programs, {dirs} pin directories"
            ),
            Protection::Unavailable(reason) => write!(f, "unavailable: {reason}"),
        }
    }
}

/// Attaches the guard's programs: its BPF-LSM programs and the raw
/// tracepoint that turns it off when the agent ends. All or none.
pub fn attach(ebpf: &mut Ebpf, btf: &Btf, tier: TierChoice) -> Result<Links, LsmUnavailable> {
    if tier == TierChoice::Tracepoint {
        return Err(LsmUnavailable::Forced);
    }
    if let Some(reason) = super::probe::lsm_list_reason() {
        return Err(reason);
    }
    let mut links = Links::new();
    for hook in GUARD_HOOKS {
        let program = hook.program();
        links.push((program.to_string(), attach::try_lsm(ebpf, btf, *hook)?));
    }
    let exit = ebpf
        .program_mut(GUARD_EXIT_PROGRAM)
        .and_then(|p| <&mut RawTracePoint>::try_from(p).ok())
        .ok_or(LsmUnavailable::NoProgram {
            program: GUARD_EXIT_PROGRAM,
        })?;
    let link = exit
        .load()
        .and_then(|()| exit.attach("sched_process_exit"))
        .and_then(|id| exit.take_link(id))
        .map_err(|e| LsmUnavailable::AttachRefused {
            program: GUARD_EXIT_PROGRAM,
            error: e.to_string(),
        })?;
    links.push((GUARD_EXIT_PROGRAM.to_string(), link.into()));
    Ok(links)
}

/// Names what the guard protects, then turns it on for this process.
/// `pin_dirs`: the directories of the agent's pins (none without
/// `kernel.pin`).
pub fn arm(ebpf: &mut Ebpf, pin_dirs: &[PathBuf]) -> Result<Protection, KernelError> {
    let objects = own_objects();
    let mut map = HashMap::<_, ObjectKey, u32>::try_from(
        ebpf.map_mut(maps::AGENT_OBJECTS)
            .ok_or(KernelError::Missing("AGENT_OBJECTS map"))?,
    )
    .map_err(map_err(maps::AGENT_OBJECTS))?;
    for key in &objects {
        map.insert(key, 1, 0)
            .map_err(map_err(maps::AGENT_OBJECTS))?;
    }
    let dirs: Vec<InodeKey> = pin_dirs.iter().filter_map(|d| identity(d)).collect();
    let mut map = HashMap::<_, InodeKey, u32>::try_from(
        ebpf.map_mut(maps::AGENT_DIRS)
            .ok_or(KernelError::Missing("AGENT_DIRS map"))?,
    )
    .map_err(map_err(maps::AGENT_DIRS))?;
    for key in &dirs {
        map.insert(key, 1, 0).map_err(map_err(maps::AGENT_DIRS))?;
    }
    set_guard(ebpf, std::process::id())?;
    Ok(Protection::Armed {
        objects: objects.len(),
        dirs: dirs.len(),
    })
}

/// What is wrong with an armed guard: `None` when it still names this
/// process.
pub fn check(ebpf: &Ebpf) -> Option<String> {
    let guard = ebpf
        .map(maps::AGENT_GUARD)
        .map(|m| Array::<_, AgentGuard>::try_from(m).and_then(|a| a.get(&0, 0)));
    match guard {
        Some(Ok(g)) if g.tgid == std::process::id() => None,
        Some(Ok(g)) => Some(format!(
            "kernel.protect: the guard names pid {}, not this agent",
            g.tgid
        )),
        Some(Err(e)) => Some(format!("kernel.protect: cannot read the guard: {e}")),
        None => Some("kernel.protect: no AGENT_GUARD map".into()),
    }
}

fn set_guard(ebpf: &mut Ebpf, tgid: u32) -> Result<(), KernelError> {
    let mut guard = Array::<_, AgentGuard>::try_from(
        ebpf.map_mut(maps::AGENT_GUARD)
            .ok_or(KernelError::Missing("AGENT_GUARD map"))?,
    )
    .map_err(map_err(maps::AGENT_GUARD))?;
    guard
        .set(0, AgentGuard { tgid, _pad: 0 }, 0)
        .map_err(map_err(maps::AGENT_GUARD))
}

fn identity(dir: &Path) -> Option<InodeKey> {
    let meta = std::fs::metadata(dir).ok()?;
    let key = crate::policy::identity::key_of(&meta);
    debug_assert_eq!(key.ino, meta.ino());
    Some(key)
}

/// Every BPF map and program this process holds a descriptor of, by the
/// ids in `/proc/self/fdinfo` (a link's descriptor names its program).
fn own_objects() -> Vec<ObjectKey> {
    let mut objects = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc/self/fdinfo") else {
        return objects;
    };
    for entry in entries.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        objects.extend(objects_in_fdinfo(&info));
    }
    objects.sort_by_key(|k| (k.kind, k.id));
    objects.dedup();
    objects
}

/// The map or program an fdinfo text names.
fn objects_in_fdinfo(info: &str) -> impl Iterator<Item = ObjectKey> + '_ {
    info.lines().filter_map(|line| {
        let (field, value) = line.split_once(':')?;
        let kind = match field.trim() {
            "map_id" => OBJECT_MAP,
            "prog_id" => OBJECT_PROG,
            _ => return None,
        };
        let id = value.trim().parse().ok()?;
        Some(ObjectKey { kind, id })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_of_a_map_a_program_and_a_link_names_their_ids() {
        let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t2\nkey_size:\t4\nvalue_size:\t8\nmax_entries:\t1\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t4096\nmap_id:\t42\nfrozen:\t0\n";
        let prog = "pos:\t0\nflags:\t02000002\nprog_type:\t29\nprog_jited:\t1\nprog_tag:\t3b185187f1855c4c\nmemlock:\t4096\nprog_id:\t77\nrun_time_ns:\t0\n";
        let link = "pos:\t0\nflags:\t02000000\nlink_type:\ttracing\nlink_id:\t5\nprog_tag:\t3b185187f1855c4c\nprog_id:\t77\nattach_type:\t27\n";
        let found: Vec<ObjectKey> = [map, prog, link]
            .iter()
            .flat_map(|i| objects_in_fdinfo(i))
            .collect();
        assert_eq!(
            found,
            [
                ObjectKey {
                    kind: OBJECT_MAP,
                    id: 42
                },
                ObjectKey {
                    kind: OBJECT_PROG,
                    id: 77
                },
                ObjectKey {
                    kind: OBJECT_PROG,
                    id: 77
                },
            ]
        );
        assert_eq!(objects_in_fdinfo("pos:\t0\nflags:\t0100000\n").count(), 0);
    }
}
