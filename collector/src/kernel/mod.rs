//! The kernel side of the agent: load the eBPF object, fill its maps from
//! the compiled policy, and attach the best tier this kernel allows.
//!
//! Tiers, per row: BPF-LSM where the kernel loads it (enforced); otherwise
//! tracepoints (audit-only) where a row has them; otherwise unavailable. The
//! agent says which, and why.

mod attach;
mod containers;
mod exec_names;
pub mod guard;
mod mounts;
pub mod offsets;
pub mod pin;
mod probe;
mod rules;

use std::{path::Path, sync::Arc};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
};
use collector_common::{DropReason, HOOK_COUNT, Hook, Module, ModuleConfig, globals, maps};
use tracing::{debug, info, warn};

pub use attach::{Coverage, Reason, Row};
pub use guard::Protection;
pub use pin::{PinDir, PinError};
pub use probe::LsmUnavailable;

use crate::{
    config::TierChoice,
    policy::{ModulePolicy, Policy, TooLarge},
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
    LsmRequired(LsmUnavailable),
    #[error("attaching {what} failed: {source}")]
    Attach {
        what: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("{what}: {source}")]
    Link {
        what: String,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("the eBPF object cannot be parsed: {0}")]
    Object(#[source] aya_obj::ParseError),
    #[error(transparent)]
    Pin(#[from] pin::PinError),
}

/// Where programs stay pinned across restarts (`kernel.pin_dir`), and
/// whether this agent leaves its own there (`kernel.pin`).
pub struct Pinning<'a> {
    pub dir: &'a Path,
    pub keep: bool,
}

/// The loaded programs. Dropping it detaches everything.
pub struct Kernel {
    ebpf: Ebpf,
    /// How each row of the policy is covered on this kernel.
    pub rows: Vec<Row>,
    /// The policy set in force (see `collector_common::POLICY_SETS`).
    set: u8,
    /// This load's epoch (`collector_common::active_value`).
    epoch: u32,
    /// The links, unless pinned; dropping them detaches the programs.
    links: attach::Links,
    /// Where the links are pinned: they outlive the agent.
    pinned: Option<PinDir>,
    /// The pinned links, held while the agent runs: removing a pin then
    /// detaches nothing.
    pinned_links: Vec<(std::path::PathBuf, aya::programs::links::PinnedLink)>,
    /// `kernel.protect`.
    pub protection: Protection,
    /// Per module: enabled at start (its programs are attached), and its
    /// BPF-LSM programs attached.
    modules: [(Module, bool, bool); 4],
    /// What each policy set was last written with, where known: a reload
    /// writes only what differs (`rules::write_set`).
    held: [Option<Arc<Policy>>; 2],
}

/// Why a new policy cannot be put in place while running.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}.enable changed: loading or unloading a module needs a restart")]
    ModuleSwitched(&'static str),
    /// More entries than a rule map holds: refused before anything is
    /// written.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

impl Kernel {
    /// Loads, configures and attaches. `tier` chooses between automatic
    /// selection, BPF-LSM only, and the audit tier only. Programs a
    /// previous agent left pinned in `pinning.dir` are taken over without
    /// a gap (see `pin`).
    pub fn start(
        policy: &Policy,
        ring_buffer_bytes: u32,
        audit_rate_limit: u32,
        tier: TierChoice,
        net_cgroup: Option<&Path>,
        pinning: Pinning,
        protect: bool,
    ) -> Result<Self, KernelError> {
        raise_memlock_limit();
        if let Ok(true) = mounts::ensure("tracefs", mounts::TRACEFS, "events") {
            info!("mounted tracefs on {}", mounts::TRACEFS);
        }

        let pins = PinDir::new(pinning.dir);
        let takeover = takeover(&pins, pinning.keep)?;
        let epoch = takeover.map_or(0, |t| t.epoch.wrapping_add(1) & (u32::MAX >> 1));
        let (mut ebpf, btf) = load(
            &pins,
            takeover.is_some(),
            pinning.keep,
            epoch,
            ring_buffer_bytes,
            audit_rate_limit,
        )?;

        // Rules first, then programs (which return at once while their
        // module is disabled, or another epoch is in force), then the
        // switches: a program never sees its module enabled without its
        // rules. Fresh maps start zeroed: epoch 0, set 0, in force.
        let set = takeover.map_or(0, |t| 1 - t.set as u8);
        // Taking over, the set not in force may hold an older policy: it is
        // emptied first (fresh maps are empty).
        rules::write_set(&mut ebpf, policy, set, None)?;
        let mut attached = attach::attach_all(&mut ebpf, &btf, tier, policy, net_cgroup)?;
        if module_policy(policy, Module::Network).enabled() {
            // After the programs that keep it from now on are attached.
            exec_names::enter_running(&mut ebpf)?;
        }
        // Likewise, and before any module is switched on.
        containers::enter_existing(&mut ebpf)?;
        let modules = Module::ALL.map(|m| (m, module_policy(policy, m).enabled(), attached.lsm(m)));
        write_all_switches(&mut ebpf, policy, &modules, set)?;
        let protection = if !protect {
            Protection::Off
        } else {
            match guard::attach(&mut ebpf, &btf, tier) {
                Ok(links) => {
                    attached.links.extend(links);
                    // Armed below, once the pins exist.
                    Protection::Off
                }
                Err(reason) => {
                    warn!("kernel.protect: the agent cannot guard itself on this kernel: {reason}");
                    Protection::Unavailable(reason.to_string())
                }
            }
        };
        let mut kernel = Self {
            ebpf,
            rows: attached.rows,
            set,
            epoch,
            links: attached.links,
            pinned: None,
            pinned_links: Vec::new(),
            protection,
            modules,
            held: [None, None],
        };
        kernel.hand_over(&pins, takeover, &pinning)?;
        if protect && kernel.protection == Protection::Off {
            let dirs = if pinning.keep {
                pins.dirs_of_epoch(epoch)
            } else {
                Vec::new()
            };
            kernel.protection = guard::arm(&mut kernel.ebpf, &dirs)?;
            info!("kernel.protect: {}", kernel.protection);
        }
        Ok(kernel)
    }

    /// Pins this load's links (with `kernel.pin`), puts it in force and
    /// removes what a previous agent left: its links, and with `kernel.pin`
    /// off, every pin.
    fn hand_over(
        &mut self,
        pins: &PinDir,
        takeover: Option<pin::InForce>,
        pinning: &Pinning,
    ) -> Result<(), KernelError> {
        let epoch = self.epoch;
        // Pin before the switch: a crash in between leaves the previous
        // epoch in force, and the next start removes these.
        if pinning.keep {
            let links = std::mem::take(&mut self.links);
            let count = links.len();
            // Held: a pin removed while the agent runs detaches nothing.
            self.pinned_links = pins.pin_links(epoch, links)?;
            info!(
                "{count} program links pinned under {}: enforcement continues while the agent is away",
                pins.path().display()
            );
            self.pinned = Some(PinDir::new(pinning.dir));
        }
        if let Some(previous) = takeover {
            self.set_active(self.set)?;
            let removed = pins.remove_links_except(pinning.keep.then_some(epoch))?;
            info!(
                "took over from the programs pinned under {} (epoch {}): {removed} previous links removed",
                pins.path().display(),
                previous.epoch
            );
        } else if pins.exists() {
            // Pins of a build whose maps differ: both judged since our
            // programs attached; now only ours do.
            let removed = pins.remove_links_except(pinning.keep.then_some(epoch))?;
            info!("{removed} links of incompatible pinned programs removed");
        }
        if !pinning.keep && pins.exists() {
            // Ours hold the maps now; nothing stays pinned.
            pins.remove_all()?;
            info!(
                "kernel.pin is off: nothing stays pinned under {}",
                pins.path().display()
            );
        }
        Ok(())
    }

    /// Writes `POLICY_ACTIVE`: this load's programs with policy set `set`.
    fn set_active(&mut self, set: u8) -> Result<(), KernelError> {
        let map = self
            .ebpf
            .map_mut(maps::POLICY_ACTIVE)
            .ok_or(KernelError::Missing("POLICY_ACTIVE map"))?;
        let mut active = Array::<_, u32>::try_from(map).map_err(map_err(maps::POLICY_ACTIVE))?;
        active
            .set(
                0,
                collector_common::active_value(self.epoch, u32::from(set)),
                0,
            )
            .map_err(map_err(maps::POLICY_ACTIVE))?;
        self.set = set;
        Ok(())
    }

    /// The agent's self-check: what is no longer as this agent left it.
    /// Empty when its policy set is in force, each link it holds still
    /// runs the program it attached, its pins are in place and its guard
    /// (`kernel.protect`) names it.
    pub fn integrity(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let ours = collector_common::active_value(self.epoch, u32::from(self.set));
        match self
            .ebpf
            .map(maps::POLICY_ACTIVE)
            .map(|m| Array::<_, u32>::try_from(m).and_then(|a| a.get(&0, 0)))
        {
            Some(Ok(value)) if value == ours => {}
            Some(Ok(value)) => problems.push(format!(
                "POLICY_ACTIVE names epoch {} set {}, not this agent's epoch {} set {}: its programs stand aside",
                collector_common::active_epoch(value),
                collector_common::active_set(value),
                self.epoch,
                self.set
            )),
            Some(Err(e)) => problems.push(format!("cannot read POLICY_ACTIVE: {e}")),
            None => problems.push("no POLICY_ACTIVE map".into()),
        }
        for (name, link) in &self.links {
            let attached = link.info().map(|info| info.program_id());
            let program = self
                .ebpf
                .program(name)
                .and_then(|p| p.info().ok())
                .map(|info| info.id());
            match (attached, program) {
                (Ok(a), Some(p)) if a == p => {}
                (Ok(a), p) => problems.push(format!(
                    "the link of {name} runs program {a}, not this agent's {}",
                    p.map_or("(unknown)".to_string(), |p| p.to_string())
                )),
                (Err(e), _) => problems.push(format!("the link of {name}: {e}")),
            }
        }
        for (path, _) in &self.pinned_links {
            if !path.exists() {
                problems.push(format!(
                    "the pin {} was removed (the agent still holds the link)",
                    path.display()
                ));
            }
        }
        if let Protection::Armed { .. } = self.protection
            && let Some(problem) = guard::check(&self.ebpf)
        {
            problems.push(problem);
        }
        problems
    }

    /// Whether the programs stay when the agent goes.
    pub fn pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// Puts `policy` in force without a gap: it is written into the policy
    /// set not in force (each family of maps whose entries differ from what
    /// that set holds is emptied and written again), then one number
    /// switches the programs over to it. An operation is judged wholly by
    /// the old policy or wholly by the new one. The old set is left as it
    /// is until the next reload. If writing fails, the old policy stays in
    /// force.
    pub fn reload(&mut self, policy: &Arc<Policy>) -> Result<(), ReloadError> {
        for (module, enabled_at_start, _) in self.modules {
            if module_policy(policy, module).enabled() != enabled_at_start {
                return Err(ReloadError::ModuleSwitched(module_name(module)));
            }
        }
        let next = 1 - self.set;
        // Unknown until written whole: a write that fails half way leaves
        // the set holding neither policy.
        let held = self.held[usize::from(next)].take();
        let written = rules::write_set(&mut self.ebpf, policy, next, held.as_deref())?;
        self.held[usize::from(next)] = Some(policy.clone());
        debug!("policy set {next}: rewrote {written:?}");
        write_all_switches(&mut self.ebpf, policy, &self.modules, next)?;
        self.set_active(next)?;
        Ok(())
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
    /// buffer afterwards, so a final drain sees everything. Pinned programs
    /// stay (and go on writing into the pinned ring buffer, for the next
    /// agent).
    pub fn detach(&mut self) {
        if let Some(pins) = &self.pinned {
            // The guard stays on while the agent drains; the kernel turns
            // it off when this process ends, for the next agent.
            info!(
                "the programs stay attached, pinned under {} (`safeguard unpin` removes them)",
                pins.path().display()
            );
            return;
        }
        self.links.clear();
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

    /// Records lost in the kernel, per hook and reason.
    pub fn kernel_drops(&self) -> Result<Vec<(Hook, DropReason, u64)>, KernelError> {
        let map = self
            .ebpf
            .map(maps::DROPS)
            .ok_or(KernelError::Missing("DROPS map"))?;
        let drops = PerCpuArray::<_, u64>::try_from(map).map_err(map_err(maps::DROPS))?;
        let mut out = Vec::new();
        for reason in DropReason::ALL {
            for i in 0..HOOK_COUNT {
                let per_cpu = drops
                    .get(&reason.index(i), 0)
                    .map_err(map_err(maps::DROPS))?;
                let hook = Hook::from_u8(i as u8).expect("every index below HOOK_COUNT is a hook");
                out.push((hook, reason, per_cpu.iter().sum()));
            }
        }
        Ok(out)
    }
}

/// What a previous agent left pinned that this one takes over: `None` when
/// nothing is pinned, or when the pinned maps do not fit this build (then
/// those pins are moved out of the way and replaced once this agent's
/// programs are attached).
fn takeover(pins: &PinDir, keep: bool) -> Result<Option<pin::InForce>, KernelError> {
    if keep {
        pins.create()?;
    }
    let Some(in_force) = pins.in_force()? else {
        return Ok(None);
    };
    let object = aya_obj::Object::parse(EBPF_OBJECT).map_err(KernelError::Object)?;
    match pins.fits(&object) {
        Ok(()) => Ok(Some(in_force)),
        Err(why) => {
            warn!(
                "the programs pinned under {} do not fit this build ({why}): replacing them; \
                 until they are removed both judge, and what they report is lost",
                pins.path().display()
            );
            // Their programs keep their maps; the names are for ours.
            for name in pin::shared_maps() {
                let _ = std::fs::remove_file(pins.map_path(name));
            }
            Ok(None)
        }
    }
}

/// Loads the eBPF object with this kernel's struct offsets and the
/// agent's globals; taking over (or pinning), onto the maps pinned in
/// `pins`.
fn load(
    pins: &PinDir,
    taking_over: bool,
    keep: bool,
    epoch: u32,
    ring_buffer_bytes: u32,
    audit_rate_limit: u32,
) -> Result<(Ebpf, Btf), KernelError> {
    let offsets = offsets::resolve(Path::new(offsets::VMLINUX_BTF))?;
    let btf = Btf::from_sys_fs().map_err(KernelError::Btf)?;
    let mut loader = EbpfLoader::new();
    loader.btf(Some(&btf));
    for (name, value) in &offsets {
        debug!(global = name, offset = value, "kernel struct offset");
        loader.override_global(name, value, true);
    }
    let epoch_global = u64::from(epoch);
    loader.override_global(globals::POLICY_EPOCH, &epoch_global, true);
    let audit_rate_limit = u64::from(audit_rate_limit);
    loader.override_global(globals::AUDIT_RATE_LIMIT, &audit_rate_limit, true);
    let btrfs = offsets::resolve_btrfs(Path::new(offsets::VMLINUX_BTF));
    let (subvolumes, to_root, anon_dev) = match btrfs {
        Some((to_root, anon_dev)) => (1u64, to_root, anon_dev),
        None => {
            if crate::policy::identity::mounted("btrfs") {
                warn!(
                    "btrfs is mounted but neither the kernel's BTF nor the btrfs module's \
                     describes it: file rules there are judged by their path alone, not by \
                     identity (a hard link or another mount of a denied file gets past)"
                );
            }
            (0, 0, 0)
        }
    };
    debug!(subvolumes, to_root, anon_dev, "btrfs subvolume offsets");
    loader.override_global(globals::BTRFS_SUBVOLUMES, &subvolumes, true);
    loader.override_global(globals::BTRFS_INODE_ROOT_OFFSET, &to_root, true);
    loader.override_global(globals::BTRFS_ROOT_ANON_DEV_OFFSET, &anon_dev, true);
    let mut ring_buffer_bytes = ring_buffer_bytes;
    if taking_over
        && let Some(pinned) = pins.ring_buffer_bytes()
        && pinned != ring_buffer_bytes
    {
        warn!(
            "kernel.ring_buffer_bytes is {ring_buffer_bytes}, the pinned ring buffer has \
             {pinned}: keeping {pinned} (the new size needs `safeguard unpin` and a restart)"
        );
        ring_buffer_bytes = pinned;
    }
    loader.map_max_entries(maps::EVENTS, ring_buffer_bytes);
    let map_paths: Vec<(&str, std::path::PathBuf)> = if taking_over || keep {
        pin::shared_maps().map(|m| (m, pins.map_path(m))).collect()
    } else {
        Vec::new()
    };
    for (name, path) in &map_paths {
        loader.map_pin_path(name, path.as_path());
    }
    let ebpf = loader.load(EBPF_OBJECT).map_err(KernelError::Load)?;
    Ok((ebpf, btf))
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> KernelError {
    move |source| KernelError::Map { name, source }
}

fn module_policy(policy: &Policy, module: Module) -> &ModulePolicy {
    match module {
        Module::Files => &policy.files,
        Module::Process => &policy.process,
        Module::Mount => &policy.mount,
        Module::Network => &policy.network,
    }
}

fn module_name(module: Module) -> &'static str {
    match module {
        Module::Files => "files",
        Module::Process => "process",
        Module::Mount => "mount",
        Module::Network => "network",
    }
}

/// The switches of every module in policy set `set`.
fn write_all_switches(
    ebpf: &mut Ebpf,
    policy: &Policy,
    modules: &[(Module, bool, bool)],
    set: u8,
) -> Result<(), KernelError> {
    let map = ebpf
        .map_mut(maps::MODULE_CONFIG)
        .ok_or(KernelError::Missing("MODULE_CONFIG map"))?;
    let mut switches =
        Array::<_, ModuleConfig>::try_from(map).map_err(map_err(maps::MODULE_CONFIG))?;
    for &(module, _, lsm) in modules {
        let mut config = module_policy(policy, module).config;
        if lsm {
            config.flags |= collector_common::FLAG_LSM;
        }
        config.generation = set;
        switches
            .set(
                u32::from(set) * collector_common::MODULE_COUNT + module as u32,
                config,
                0,
            )
            .map_err(map_err(maps::MODULE_CONFIG))?;
    }
    Ok(())
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

/// The README's troubleshooting section quotes the agent: each message as
/// the code builds it must appear there word for word.
#[cfg(test)]
mod troubleshooting {
    use std::io;

    use super::*;

    const README: &str = include_str!("../../../README.md");

    fn quoted(message: &str) {
        assert!(
            README.contains(message),
            "README.md's troubleshooting does not quote the agent's message:\n{message}"
        );
    }

    fn load_error(errno: i32) -> LsmUnavailable {
        probe::load_refused(
            "file_open",
            &aya::programs::ProgramError::LoadError {
                io_error: io::Error::from_raw_os_error(errno),
                verifier_log: aya_obj::VerifierLog::new(String::new()),
            },
        )
    }

    /// As `run` prints a start-up failure.
    fn start_failure(e: KernelError) -> String {
        let e = anyhow::Error::new(e).context("cannot start the kernel programs");
        format!("ERROR {}", crate::error_chain(&e))
    }

    #[test]
    fn readme_quotes_each_message_as_the_agent_prints_it() {
        let list = "lockdown,capability,landlock,yama,apparmor";
        let reason = probe::reason_for_lsm_list("/sys/kernel/security/lsm", list).unwrap();
        quoted(&format!("WARN BPF-LSM unavailable: {reason}"));
        assert!(probe::reason_for_lsm_list("/x", "lockdown,bpf").is_none());

        let eperm = load_error(libc::EPERM);
        quoted(&format!("WARN BPF-LSM unavailable: {eperm}"));
        quoted(&format!(
            "WARN BPF-LSM unavailable: {}",
            load_error(libc::EINVAL)
        ));
        quoted(&start_failure(KernelError::LsmRequired(eperm)));
        quoted(&start_failure(KernelError::Offsets(
            offsets::OffsetError::Btf {
                path: offsets::VMLINUX_BTF.into(),
                source: btf_rs::Error::IO(io::Error::from_raw_os_error(libc::ENOENT)),
            },
        )));
        quoted(&start_failure(KernelError::Load(aya::EbpfError::MapError(
            aya::maps::MapError::CreateError {
                name: maps::POLICY_ACTIVE.into(),
                io_error: io::Error::from_raw_os_error(libc::EPERM),
            },
        ))));
        quoted(&start_failure(KernelError::Pin(pin::PinError::NotBpffs(
            "/var/lib/safeguard/pins".into(),
        ))));
    }
}
