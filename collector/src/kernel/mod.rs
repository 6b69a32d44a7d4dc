//! The kernel side of the agent: load the eBPF object, fill its maps from
//! the compiled policy, and attach the best tier this kernel allows.
//!
//! Tiers, per row: BPF-LSM where the kernel loads it (enforced); otherwise
//! tracepoints (audit-only) where a row has them; otherwise unavailable. The
//! agent says which, and why.

mod attach;
mod mounts;
pub mod offsets;
mod probe;

use std::path::Path;

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
};
use collector_common::{
    HOOK_COUNT, Hook, Module, ModuleConfig, NameKey, PathKey, PathRule, globals, maps,
};
use tracing::{debug, info};

pub use attach::{Coverage, Row};

use crate::{
    config::TierChoice,
    policy::{ModulePolicy, Policy},
};

/// The compiled programs, built by build.rs.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/safeguard.bpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Offsets(#[from] offsets::OffsetError),
    #[error("cannot load the kernel's BTF ({0}); the kernel needs CONFIG_DEBUG_INFO_BTF=y")]
    Btf(#[source] aya::BtfError),
    #[error(
        "loading the eBPF object failed: {0} (the agent needs root, or CAP_BPF and CAP_PERFMON)"
    )]
    Load(#[source] aya::EbpfError),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("cannot open cgroup {path} (network.cgroup): {source}")]
    Cgroup {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("BPF-LSM is required (kernel.tier: lsm) but unavailable: {0}")]
    LsmRequired(String),
    #[error("attaching {what} failed: {source}")]
    Attach {
        what: String,
        #[source]
        source: aya::programs::ProgramError,
    },
}

/// The loaded programs. Dropping it detaches everything.
pub struct Kernel {
    ebpf: Ebpf,
    /// How each row of the policy is covered on this kernel.
    pub rows: Vec<Row>,
}

impl Kernel {
    /// Loads, configures and attaches. `tier` chooses between automatic
    /// selection, BPF-LSM only, and the audit tier only.
    pub fn start(
        policy: &Policy,
        ring_buffer_bytes: u32,
        tier: TierChoice,
        net_cgroup: Option<&Path>,
    ) -> Result<Self, KernelError> {
        raise_memlock_limit();
        if let Ok(true) = mounts::ensure("tracefs", mounts::TRACEFS, "events") {
            info!("mounted tracefs on {}", mounts::TRACEFS);
        }

        let offsets = offsets::resolve(Path::new(offsets::VMLINUX_BTF))?;
        let host_mnt_ns = host_mount_namespace();
        let btf = Btf::from_sys_fs().map_err(KernelError::Btf)?;
        let mut loader = EbpfLoader::new();
        loader.btf(Some(&btf));
        for (name, value) in &offsets {
            debug!(global = name, offset = value, "kernel struct offset");
            loader.override_global(name, value, true);
        }
        loader.override_global(globals::HOST_MNT_NS, &host_mnt_ns, true);
        loader.map_max_entries(maps::EVENTS, ring_buffer_bytes);
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(KernelError::Load)?;

        // Rules first, then programs (which return at once while their
        // module is disabled), then the switches: a program never sees its
        // module enabled without its rules.
        write_rules(&mut ebpf, policy)?;
        let attached = attach::attach_all(&mut ebpf, &btf, tier, policy, net_cgroup)?;
        for (module, policy, lsm) in [
            (Module::Files, &policy.files, attached.files_lsm),
            (Module::Process, &policy.process, attached.process_lsm),
            (Module::Mount, &policy.mount, attached.mount_lsm),
            (Module::Network, &policy.network, attached.network_lsm),
        ] {
            write_switches(&mut ebpf, module, policy, lsm)?;
        }
        Ok(Self {
            ebpf,
            rows: attached.rows,
        })
    }

    /// The ring buffer the programs write events into. Call once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, KernelError> {
        let map = self
            .ebpf
            .take_map(maps::EVENTS)
            .ok_or(KernelError::Missing("EVENTS map"))?;
        RingBuf::try_from(map).map_err(map_err(maps::EVENTS))
    }

    /// Detaches and unloads every program: nothing new reaches the ring
    /// buffer afterwards, so a final drain sees everything.
    pub fn detach(&mut self) {
        for (name, program) in self.ebpf.programs_mut() {
            use aya::programs::Program;
            let result = match program {
                Program::Lsm(p) => p.unload(),
                Program::TracePoint(p) => p.unload(),
                Program::RawTracePoint(p) => p.unload(),
                Program::CgroupSockAddr(p) => p.unload(),
                _ => Ok(()),
            };
            // Programs that were never loaded (a tier not chosen) say so.
            if let Err(e) = result {
                debug!("unload {name}: {e}");
            }
        }
    }

    /// Records lost in the kernel because the ring buffer was full, per hook.
    pub fn kernel_drops(&self) -> Result<Vec<(Hook, u64)>, KernelError> {
        let map = self
            .ebpf
            .map(maps::DROPS)
            .ok_or(KernelError::Missing("DROPS map"))?;
        let drops = PerCpuArray::<_, u64>::try_from(map).map_err(map_err(maps::DROPS))?;
        (0..HOOK_COUNT)
            .map(|i| {
                let per_cpu = drops.get(&i, 0).map_err(map_err(maps::DROPS))?;
                let hook = Hook::from_u8(i as u8).expect("every index below HOOK_COUNT is a hook");
                Ok((hook, per_cpu.iter().sum()))
            })
            .collect()
    }
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> KernelError {
    move |source| KernelError::Map { name, source }
}

fn write_rules(ebpf: &mut Ebpf, policy: &Policy) -> Result<(), KernelError> {
    for (name, module) in [
        (maps::FILE_RULES, &policy.files),
        (maps::EXEC_PATH_RULES, &policy.process),
        (maps::MOUNT_RULES, &policy.mount),
    ] {
        let map = ebpf
            .map_mut(name)
            .ok_or(KernelError::Missing("a path rule map"))?;
        let mut trie = LpmTrie::<_, PathKey, PathRule>::try_from(map).map_err(map_err(name))?;
        for entry in module.paths.entries() {
            let key = Key::new((entry.key_len * 8) as u32, entry.key);
            trie.insert(&key, entry.rule, 0).map_err(map_err(name))?;
        }
    }
    write_network_rules(ebpf, &policy.network)?;
    let name = maps::EXEC_NAME_RULES;
    let map = ebpf
        .map_mut(name)
        .ok_or(KernelError::Missing("EXEC_NAME_RULES map"))?;
    let mut names = HashMap::<_, NameKey, PathRule>::try_from(map).map_err(map_err(name))?;
    for (key, rule) in policy.process.names.entries() {
        names.insert(key, rule, 0).map_err(map_err(name))?;
    }
    Ok(())
}

fn write_network_rules(ebpf: &mut Ebpf, network: &ModulePolicy) -> Result<(), KernelError> {
    let net = &network.net;
    let map = ebpf
        .map_mut(maps::NET_V4_RULES)
        .ok_or(KernelError::Missing("NET_V4_RULES map"))?;
    let mut v4 =
        LpmTrie::<_, [u8; 4], PathRule>::try_from(map).map_err(map_err(maps::NET_V4_RULES))?;
    for e in net.v4_entries() {
        v4.insert(&Key::new(u32::from(e.prefix), e.addr), e.rule, 0)
            .map_err(map_err(maps::NET_V4_RULES))?;
    }
    let map = ebpf
        .map_mut(maps::NET_V6_RULES)
        .ok_or(KernelError::Missing("NET_V6_RULES map"))?;
    let mut v6 =
        LpmTrie::<_, [u8; 16], PathRule>::try_from(map).map_err(map_err(maps::NET_V6_RULES))?;
    for e in net.v6_entries() {
        v6.insert(&Key::new(u32::from(e.prefix), e.addr), e.rule, 0)
            .map_err(map_err(maps::NET_V6_RULES))?;
    }
    let name = maps::NET_COMMAND_RULES;
    let map = ebpf
        .map_mut(name)
        .ok_or(KernelError::Missing("NET_COMMAND_RULES map"))?;
    let mut commands = HashMap::<_, [u8; collector_common::COMM_LEN], PathRule>::try_from(map)
        .map_err(map_err(name))?;
    for (key, rule) in net.command_entries() {
        commands.insert(key, rule, 0).map_err(map_err(name))?;
    }
    for (name, ids) in [
        (maps::NET_UID_RULES, &net.uids),
        (maps::NET_GID_RULES, &net.gids),
    ] {
        let map = ebpf
            .map_mut(name)
            .ok_or(KernelError::Missing("a UID/GID rule map"))?;
        let mut m = HashMap::<_, u32, PathRule>::try_from(map).map_err(map_err(name))?;
        for (id, rule) in ids {
            m.insert(id, rule, 0).map_err(map_err(name))?;
        }
    }
    Ok(())
}

fn write_switches(
    ebpf: &mut Ebpf,
    module: Module,
    policy: &ModulePolicy,
    lsm: bool,
) -> Result<(), KernelError> {
    let map = ebpf
        .map_mut(maps::MODULE_CONFIG)
        .ok_or(KernelError::Missing("MODULE_CONFIG map"))?;
    let mut switches =
        Array::<_, ModuleConfig>::try_from(map).map_err(map_err(maps::MODULE_CONFIG))?;
    let mut config = policy.config;
    if lsm {
        config.flags |= collector_common::FLAG_LSM;
    }
    switches
        .set(module as u32, config, 0)
        .map_err(map_err(maps::MODULE_CONFIG))
}

/// The inode number of the host's mount namespace, as seen from pid 1; 0
/// (nothing is "in a container") if it cannot be read.
fn host_mount_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/1/ns/mnt")
        .map(|m| m.ino())
        .unwrap_or_else(|e| {
            tracing::warn!(
                "cannot read /proc/1/ns/mnt ({e}); target: container will match nothing"
            );
            0
        })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}
