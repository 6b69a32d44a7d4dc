//! The kernel side of the agent: load the eBPF object, fill its maps from
//! the compiled policy, and attach the best tier this kernel allows.
//!
//! Tiers, per row: BPF-LSM where the kernel loads it (enforced); otherwise
//! tracepoints (audit-only); the agent says which and why.

mod mounts;
pub mod offsets;
mod probe;

use std::path::Path;

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{Lsm, TracePoint},
};
use collector_common::{HOOK_COUNT, Hook, Module, ModuleConfig, PathKey, PathRule, maps, programs};
use tracing::{debug, info, warn};

use crate::{config::TierChoice, policy::CompiledFiles};

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
    #[error("BPF-LSM is required (kernel.tier: lsm) but unavailable: {0}")]
    LsmRequired(String),
    #[error("attaching {what} failed: {source}")]
    Attach {
        what: String,
        #[source]
        source: aya::programs::ProgramError,
    },
}

/// How a row of the policy is covered on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// BPF-LSM: operations are refused in block mode.
    Enforced { hooks: Vec<String> },
    /// Tracepoints: operations are reported, never refused.
    AuditOnly { hooks: Vec<String>, reason: String },
    /// The module is disabled in the configuration.
    Disabled,
}

impl Coverage {
    pub fn tier(&self) -> &'static str {
        match self {
            Coverage::Enforced { .. } => semconv::tier::ENFORCED,
            Coverage::AuditOnly { .. } => semconv::tier::AUDIT_ONLY,
            Coverage::Disabled => semconv::tier::UNAVAILABLE,
        }
    }
}

/// The loaded programs. Dropping it detaches everything.
pub struct Kernel {
    ebpf: Ebpf,
    pub file_open: Coverage,
}

impl Kernel {
    /// Loads, configures and attaches. `tier` chooses between automatic
    /// selection, BPF-LSM only, and the tracepoint tier only.
    pub fn start(
        files: &CompiledFiles,
        ring_buffer_bytes: u32,
        tier: TierChoice,
    ) -> Result<Self, KernelError> {
        raise_memlock_limit();
        if let Ok(true) = mounts::ensure("tracefs", mounts::TRACEFS, "events") {
            info!("mounted tracefs on {}", mounts::TRACEFS);
        }

        let offsets = offsets::resolve(Path::new(offsets::VMLINUX_BTF))?;
        let btf = Btf::from_sys_fs().map_err(KernelError::Btf)?;
        let mut loader = EbpfLoader::new();
        loader.btf(Some(&btf));
        for (name, value) in &offsets {
            debug!(global = name, offset = value, "kernel struct offset");
            loader.override_global(name, value, true);
        }
        loader.map_max_entries(maps::EVENTS, ring_buffer_bytes);
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(KernelError::Load)?;

        write_policy(&mut ebpf, files)?;

        let file_open = if files.module.enabled == 0 {
            Coverage::Disabled
        } else {
            attach_file_open(&mut ebpf, &btf, tier)?
        };
        Ok(Self { ebpf, file_open })
    }

    /// The ring buffer the programs write events into. Call once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, KernelError> {
        let map = self
            .ebpf
            .take_map(maps::EVENTS)
            .ok_or(KernelError::Missing("EVENTS map"))?;
        RingBuf::try_from(map).map_err(|source| KernelError::Map {
            name: maps::EVENTS,
            source,
        })
    }

    /// Detaches and unloads every program: nothing new reaches the ring
    /// buffer afterwards, so a final drain sees everything.
    pub fn detach(&mut self) {
        for (name, program) in self.ebpf.programs_mut() {
            let result = match program {
                aya::programs::Program::Lsm(p) => p.unload(),
                aya::programs::Program::TracePoint(p) => p.unload(),
                _ => Ok(()),
            };
            // Programs that were never loaded (the tier not chosen) say so.
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
        let drops = PerCpuArray::<_, u64>::try_from(map).map_err(|source| KernelError::Map {
            name: maps::DROPS,
            source,
        })?;
        (0..HOOK_COUNT)
            .map(|i| {
                let per_cpu = drops.get(&i, 0).map_err(|source| KernelError::Map {
                    name: maps::DROPS,
                    source,
                })?;
                let hook = Hook::from_u8(i as u8).expect("every index below HOOK_COUNT is a hook");
                Ok((hook, per_cpu.iter().sum()))
            })
            .collect()
    }
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> KernelError {
    move |source| KernelError::Map { name, source }
}

/// Fills the rule trie and then the module switches, so the programs never
/// see the module enabled without its rules.
fn write_policy(ebpf: &mut Ebpf, files: &CompiledFiles) -> Result<(), KernelError> {
    let map = ebpf
        .map_mut(maps::FILE_RULES)
        .ok_or(KernelError::Missing("FILE_RULES map"))?;
    let mut trie =
        LpmTrie::<_, PathKey, PathRule>::try_from(map).map_err(map_err(maps::FILE_RULES))?;
    for entry in &files.entries {
        let key = Key::new((entry.key_len * 8) as u32, entry.key);
        trie.insert(&key, entry.rule, 0)
            .map_err(map_err(maps::FILE_RULES))?;
    }

    let map = ebpf
        .map_mut(maps::MODULE_CONFIG)
        .ok_or(KernelError::Missing("MODULE_CONFIG map"))?;
    let mut modules =
        Array::<_, ModuleConfig>::try_from(map).map_err(map_err(maps::MODULE_CONFIG))?;
    modules
        .set(Module::Files as u32, files.module, 0)
        .map_err(map_err(maps::MODULE_CONFIG))?;
    Ok(())
}

fn attach_file_open(ebpf: &mut Ebpf, btf: &Btf, tier: TierChoice) -> Result<Coverage, KernelError> {
    let reason = match tier {
        TierChoice::Tracepoint => {
            "the configuration asks for the tracepoint tier (kernel.tier)".to_string()
        }
        TierChoice::Auto | TierChoice::Lsm => {
            match try_lsm(ebpf, btf, programs::LSM_FILE_OPEN, "file_open") {
                Ok(()) => {
                    return Ok(Coverage::Enforced {
                        hooks: vec!["lsm/file_open".into()],
                    });
                }
                Err(reason) if tier == TierChoice::Lsm => {
                    return Err(KernelError::LsmRequired(reason));
                }
                Err(reason) => reason,
            }
        }
    };

    let mut hooks = Vec::new();
    for (program, category, name) in programs::OPEN_TRACEPOINTS {
        let prog: &mut TracePoint = ebpf
            .program_mut(program)
            .ok_or(KernelError::Missing("an open tracepoint program"))?
            .try_into()
            .map_err(|source| KernelError::Attach {
                what: program.into(),
                source,
            })?;
        let attach = prog
            .load()
            .and_then(|()| prog.attach(category, name).map(drop));
        match attach {
            Ok(()) => hooks.push(format!("tracepoint/{category}/{name}")),
            // `open` does not exist on every architecture; `openat2` is 5.6+.
            Err(err) => warn!("tracepoint {category}/{name} not attached: {err}"),
        }
    }
    if hooks.is_empty() {
        return Err(KernelError::Missing("any attachable open tracepoint"));
    }
    Ok(Coverage::AuditOnly { hooks, reason })
}

/// Loads and attaches one BPF-LSM program; on failure, says why in one line.
fn try_lsm(ebpf: &mut Ebpf, btf: &Btf, program: &str, hook: &str) -> Result<(), String> {
    if let Some(reason) = probe::lsm_list_reason() {
        return Err(reason);
    }
    let prog: &mut Lsm = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("the eBPF object has no program {program}"))?
        .try_into()
        .map_err(|e| format!("{program} is not an LSM program: {e}"))?;
    prog.load(hook, btf)
        .map_err(|e| probe::describe_load_error(program, &e))?;
    prog.attach()
        .map(drop)
        .map_err(|e| format!("the kernel refused to attach BPF-LSM program {program}: {e}"))
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
