//! Which programs attach where, and what that means for each row of the
//! policy (`collector_common::rows`). BPF-LSM first; where the kernel
//! refuses it, the audit tier.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use aya::{
    Btf, Ebpf,
    programs::{CgroupAttachMode, CgroupSockAddr, Lsm, RawTracePoint, TracePoint, links::FdLink},
};
use collector_common::{
    Hook, Module, TARGET_CONTAINER,
    container::CGROUP_RMDIR_PROGRAM,
    rows::{AuditTier, COMPANION_HOOKS, ROWS, RowSpec},
};
use tracing::warn;

use super::{
    KernelError,
    probe::{self, LsmUnavailable},
};
use crate::{config::TierChoice, policy::Policy};

/// How a row of the policy is covered on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// BPF-LSM, or an audit-tier program that can refuse: operations are
    /// refused in block mode.
    Enforced { hooks: Vec<String> },
    /// Tracepoints: operations are reported, never refused.
    AuditOnly { hooks: Vec<String>, reason: Reason },
    /// Nothing on this kernel covers the row.
    Unavailable { reason: Reason },
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

/// Why a row is not judged by BPF-LSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// BPF-LSM is unavailable for the row's hook.
    Lsm(LsmUnavailable),
    /// The row has no BPF-LSM hook (the process life cycle).
    NotJudged,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Lsm(reason) => reason.fmt(f),
            Reason::NotJudged => f.write_str("fork and exit are reported, not judged"),
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
    lsm: [bool; Module::ALL.len()],
}

impl Attached {
    /// Whether `module`'s BPF-LSM programs are attached.
    pub fn lsm(&self, module: Module) -> bool {
        self.lsm[module as usize]
    }
}

/// Attaches the programs of every row of an enabled module, in the order
/// of `ROWS`.
pub fn attach_all(
    ebpf: &mut Ebpf,
    btf: &Btf,
    tier: TierChoice,
    policy: &Policy,
    net_cgroup: Option<&Path>,
) -> Result<Attached, KernelError> {
    let mut attacher = Attacher {
        ebpf,
        btf,
        tier,
        net_cgroup,
        refused: None,
        links: Links::new(),
        lsm: [false; Module::ALL.len()],
    };
    let mut rows = Vec::with_capacity(ROWS.len());
    for module in Module::ALL {
        let specs: Vec<&RowSpec> = ROWS.iter().filter(|r| r.module == module).collect();
        if super::module_policy(policy, module).enabled() {
            rows.extend(attacher.module(&specs)?);
        } else {
            rows.extend(specs.iter().map(|spec| Row {
                name: spec.name,
                coverage: Coverage::Disabled,
            }));
        }
    }
    if super::module_policy(policy, Module::Network).enabled() {
        attacher.exec_name_programs()?;
    }
    // Which tasks are in a container (`target: container`), and names for
    // containers whose cgroup is gone by the time their records are read.
    let cgroups = attacher
        .raw_tracepoints(&[Hook::TpCgroupMkdir])
        .and_then(|_| attacher.raw_tracepoint_programs(&[CGROUP_RMDIR_PROGRAM]));
    if let Err(e) = cgroups {
        if Module::ALL.iter().any(|&m| {
            let module = super::module_policy(policy, m);
            module.enabled() && module.config.target == TARGET_CONTAINER
        }) {
            return Err(e);
        }
        warn!(
            "{e}: `target: container` would match no container started from now on, \
             and a container that has ended before the agent reads its events is not named"
        );
    }
    Ok(Attached {
        rows,
        links: attacher.links,
        lsm: attacher.lsm,
    })
}

struct Attacher<'a> {
    ebpf: &'a mut Ebpf,
    btf: &'a Btf,
    tier: TierChoice,
    net_cgroup: Option<&'a Path>,
    /// Set once the kernel has refused BPF-LSM as such: the reason is found
    /// once and reported per row.
    refused: Option<LsmUnavailable>,
    links: Links,
    lsm: [bool; Module::ALL.len()],
}

impl Attacher<'_> {
    /// The rows of one enabled module.
    fn module(&mut self, specs: &[&RowSpec]) -> Result<Vec<Row>, KernelError> {
        // Rows without a BPF-LSM hook (the process life cycle) are covered
        // on every tier, before the module's BPF-LSM programs attach.
        let mut every_tier = Vec::new();
        for spec in specs.iter().filter(|spec| spec.lsm.is_none()) {
            every_tier.push(self.audit_programs(spec)?);
        }
        let mut every_tier = every_tier.into_iter();
        let mut rows = Vec::with_capacity(specs.len());
        for spec in specs {
            let coverage = match spec.lsm {
                None => Coverage::AuditOnly {
                    hooks: every_tier.next().unwrap_or_default(),
                    reason: Reason::NotJudged,
                },
                Some(hook) => self.lsm_row(spec, hook)?,
            };
            rows.push(Row {
                name: spec.name,
                coverage,
            });
        }
        self.cgroup_fallback(specs, &mut rows)?;
        Ok(rows)
    }

    /// A row with a BPF-LSM hook: enforced, or its audit tier.
    fn lsm_row(&mut self, spec: &RowSpec, hook: Hook) -> Result<Coverage, KernelError> {
        let reason = match self.lsm(hook) {
            Ok(hooks) => {
                self.lsm[spec.module as usize] = true;
                return Ok(Coverage::Enforced {
                    hooks: hooks.iter().map(|h| h.name().to_string()).collect(),
                });
            }
            Err(reason) if self.tier == TierChoice::Lsm => {
                return Err(KernelError::LsmRequired(reason));
            }
            Err(reason) => Reason::Lsm(reason),
        };
        let hooks = match spec.audit {
            AuditTier::None => return Ok(Coverage::Unavailable { reason }),
            // Attached later, once for the whole module (`cgroup_fallback`).
            AuditTier::CgroupSockAddr(_) => return Ok(Coverage::Unavailable { reason }),
            AuditTier::AttachedByRow(hooks) => hooks.iter().map(|h| h.name().to_string()).collect(),
            AuditTier::Tracepoints(_) | AuditTier::RawTracepoints(_) => {
                self.audit_programs(spec)?
            }
        };
        Ok(audit_coverage(spec, hooks, reason))
    }

    /// Attaches the row's tracepoints or raw tracepoints; their hooks.
    fn audit_programs(&mut self, spec: &RowSpec) -> Result<Vec<String>, KernelError> {
        match spec.audit {
            AuditTier::Tracepoints(hooks) => self.tracepoints(hooks),
            AuditTier::RawTracepoints(hooks) => self.raw_tracepoints(hooks),
            _ => Ok(Vec::new()),
        }
    }

    /// Tries BPF-LSM for the program of one hook; the hooks attached: it
    /// and the companions this kernel has.
    fn lsm(&mut self, hook: Hook) -> Result<Vec<Hook>, LsmUnavailable> {
        let program = hook.program();
        if self.tier == TierChoice::Tracepoint {
            return Err(LsmUnavailable::Forced);
        }
        if let Some(reason) = &self.refused {
            return Err(reason.clone());
        }
        if let Some(reason) = probe::lsm_list_reason() {
            self.refused = Some(reason);
        }
        let result = match &self.refused {
            Some(reason) => Err(reason.clone()),
            None => try_lsm(self.ebpf, self.btf, hook),
        };
        match result {
            Ok(link) => {
                self.links.push((program.to_string(), link));
                self.companions(hook)
            }
            Err(reason) => {
                if reason.refuses_every_program() {
                    self.refused = Some(reason.clone());
                }
                Err(reason)
            }
        }
    }

    /// Attaches the companions of `hook` the kernel has (`COMPANION_HOOKS`),
    /// after `hook` itself: the row holds only with them. The hooks
    /// attached, `hook` first.
    fn companions(&mut self, hook: Hook) -> Result<Vec<Hook>, LsmUnavailable> {
        let mut attached = vec![hook];
        for &(_, companion) in COMPANION_HOOKS.iter().filter(|(of, _)| *of == hook) {
            let Some(name) = companion.lsm_hook() else {
                continue;
            };
            let function = format!("bpf_lsm_{name}");
            if self
                .btf
                .id_by_type_name_kind(&function, aya_obj::btf::BtfKind::Func)
                .is_err()
            {
                tracing::debug!(
                    hook = name,
                    "the kernel has no such hook: nothing to attach"
                );
                continue;
            }
            let link = try_lsm(self.ebpf, self.btf, companion)?;
            self.links.push((companion.program().to_string(), link));
            attached.push(companion);
        }
        Ok(attached)
    }

    /// Once any row of the module went without BPF-LSM: the module's cgroup
    /// sock_addr programs, all of them, on the configured cgroup; the rows
    /// without BPF-LSM that have some are covered by them.
    fn cgroup_fallback(&mut self, specs: &[&RowSpec], rows: &mut [Row]) -> Result<(), KernelError> {
        let programs: Vec<Hook> = specs
            .iter()
            .filter_map(|spec| match spec.audit {
                AuditTier::CgroupSockAddr(hooks) => Some(hooks),
                _ => None,
            })
            .flatten()
            .copied()
            .collect();
        let fell_back = rows
            .iter()
            .any(|row| matches!(row.coverage, Coverage::Unavailable { .. }));
        if programs.is_empty() || !fell_back {
            return Ok(());
        }
        let cgroup = match self.net_cgroup {
            Some(path) => path.to_path_buf(),
            None => cgroup2_root().ok_or(KernelError::Missing("a mounted cgroup v2 hierarchy"))?,
        };
        let attached = self.cgroup_programs(&cgroup, &programs)?;
        for (row, spec) in rows.iter_mut().zip(specs) {
            let Coverage::Unavailable { reason } = &row.coverage else {
                continue;
            };
            let hooks: Vec<String> = spec
                .audit
                .hooks()
                .iter()
                .filter(|hook| attached.contains(hook))
                .map(|hook| format!("{} on {}", hook.name(), cgroup.display()))
                .collect();
            if hooks.is_empty() {
                continue;
            }
            row.coverage = audit_coverage(spec, hooks, reason.clone());
        }
        Ok(())
    }
}

/// A row covered by its audit tier's `hooks`: enforced where those
/// programs can refuse.
fn audit_coverage(spec: &RowSpec, hooks: Vec<String>, reason: Reason) -> Coverage {
    if spec.audit_refuses() {
        Coverage::Enforced { hooks }
    } else {
        Coverage::AuditOnly { hooks, reason }
    }
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

impl Attacher<'_> {
    /// Attaches each cgroup sock_addr program in `hooks` to `cgroup`.
    fn cgroup_programs(&mut self, cgroup: &Path, hooks: &[Hook]) -> Result<Vec<Hook>, KernelError> {
        let dir = std::fs::File::open(cgroup).map_err(|e| KernelError::Cgroup {
            path: cgroup.display().to_string(),
            source: e,
        })?;
        let mut attached = Vec::new();
        for &hook in hooks {
            let program = hook.program();
            let prog: &mut CgroupSockAddr =
                program_of(self.ebpf, program, "a cgroup sock_addr program")?;
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
                        self.links.push((program.to_string(), link));
                    }
                    attached.push(hook);
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

    fn tracepoints(&mut self, list: &[Hook]) -> Result<Vec<String>, KernelError> {
        let mut hooks = Vec::new();
        for &hook in list {
            let program = hook.program();
            let (category, name) = hook
                .tracepoint()
                .ok_or(KernelError::Missing("a tracepoint program"))?;
            let prog: &mut TracePoint = program_of(self.ebpf, program, "a tracepoint program")?;
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
                        self.links.push((program.to_string(), link));
                    }
                    hooks.push(hook.name().to_string())
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

    /// The programs that keep the name each process was executed as
    /// (`network.command` rules judge it), on every tier.
    fn exec_name_programs(&mut self) -> Result<(), KernelError> {
        self.raw_tracepoint_programs(&collector_common::net::EXEC_NAME_PROGRAMS)
    }

    /// Raw tracepoint programs of no hook: `(program, raw tracepoint)`.
    fn raw_tracepoint_programs(&mut self, list: &[(&str, &str)]) -> Result<(), KernelError> {
        for &(program, tracepoint) in list {
            let prog: &mut RawTracePoint =
                program_of(self.ebpf, program, "a raw tracepoint program")?;
            let link = prog
                .load()
                .and_then(|()| prog.attach(tracepoint))
                .and_then(|id| prog.take_link(id))
                .map_err(|source| KernelError::Attach {
                    what: format!("raw tracepoint {tracepoint} ({program})"),
                    source,
                })?;
            self.links.push((program.to_string(), link.into()));
        }
        Ok(())
    }

    fn raw_tracepoints(&mut self, list: &[Hook]) -> Result<Vec<String>, KernelError> {
        let mut hooks = Vec::new();
        for &hook in list {
            // Named after the raw tracepoint it attaches to.
            let program = hook.program();
            let prog: &mut RawTracePoint =
                program_of(self.ebpf, program, "a raw tracepoint program")?;
            let link = prog
                .load()
                .and_then(|()| prog.attach(program))
                .and_then(|id| prog.take_link(id))
                .map_err(|source| KernelError::Attach {
                    what: format!("raw tracepoint {program}"),
                    source,
                })?;
            self.links.push((program.to_string(), link.into()));
            hooks.push(hook.name().to_string());
        }
        Ok(hooks)
    }
}

/// The program named `program`, as its type `P`; `kind` names what was
/// expected if the object lacks it.
fn program_of<'e, P>(
    ebpf: &'e mut Ebpf,
    program: &str,
    kind: &'static str,
) -> Result<&'e mut P, KernelError>
where
    &'e mut P: TryFrom<&'e mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(program)
        .ok_or(KernelError::Missing(kind))?
        .try_into()
        .map_err(|source| KernelError::Attach {
            what: program.into(),
            source,
        })
}

/// Loads and attaches the BPF-LSM program of `hook`; on failure, says why.
pub(super) fn try_lsm(ebpf: &mut Ebpf, btf: &Btf, hook: Hook) -> Result<FdLink, LsmUnavailable> {
    let program = hook.program();
    let lsm_hook = hook.lsm_hook().unwrap_or(program);
    let prog: &mut Lsm = ebpf
        .program_mut(program)
        .ok_or(LsmUnavailable::NoProgram { program })?
        .try_into()
        .map_err(
            |e: aya::programs::ProgramError| LsmUnavailable::NotLsmProgram {
                program,
                error: e.to_string(),
            },
        )?;
    let started = std::time::Instant::now();
    prog.load(lsm_hook, btf)
        .map_err(|e| probe::load_refused(program, &e))?;
    // How close the program came to the verifier's limit of 1,000,000
    // instructions (Linux 5.16+ counts them).
    let verified = prog
        .info()
        .ok()
        .and_then(|info| info.verified_instruction_count());
    tracing::debug!(program, elapsed = ?started.elapsed(), verified_insns = ?verified, "BPF-LSM program verified and loaded");
    prog.attach()
        .and_then(|id| prog.take_link(id))
        .map(FdLink::from)
        .map_err(|e| LsmUnavailable::AttachRefused {
            program,
            error: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use aya_obj::ProgramSection;

    use super::*;

    /// Whether `section` is the program type the hook name says.
    fn of_hook_type(hook: Hook, section: &ProgramSection) -> bool {
        match hook.name().split('/').next() {
            Some("lsm") => matches!(section, ProgramSection::Lsm { .. }),
            Some("tracepoint") => {
                matches!(section, ProgramSection::TracePoint) && hook.tracepoint().is_some()
            }
            Some("raw_tracepoint") => matches!(section, ProgramSection::RawTracePoint),
            Some("cgroup") => matches!(section, ProgramSection::CgroupSockAddr { .. }),
            _ => false,
        }
    }

    #[test]
    fn every_program_of_the_object_is_a_rows_and_of_its_hooks_type() {
        let object = aya_obj::Object::parse(super::super::EBPF_OBJECT).unwrap();
        let mut named = HashSet::new();
        for spec in ROWS {
            let audit_type = match spec.audit {
                AuditTier::None => "",
                AuditTier::Tracepoints(_) => "tracepoint/",
                AuditTier::RawTracepoints(_) | AuditTier::AttachedByRow(_) => "raw_tracepoint/",
                AuditTier::CgroupSockAddr(_) => "cgroup/",
            };
            let lsm = spec.lsm.into_iter().map(|hook| (hook, "lsm/"));
            let audit = spec.audit.hooks().iter().map(|&hook| (hook, audit_type));
            for (hook, prefix) in lsm.chain(audit) {
                assert!(hook.name().starts_with(prefix), "{}: {hook:?}", spec.name);
                let program = hook.program();
                let Some(found) = object.programs.get(program) else {
                    panic!("{}: the eBPF object has no program {program}", spec.name);
                };
                assert!(
                    of_hook_type(hook, &found.section),
                    "{}: program {program} is {:?}, not {}",
                    spec.name,
                    found.section,
                    hook.name()
                );
                named.insert(program);
            }
        }
        // The guard's programs (`kernel.protect`) belong to no row.
        for &hook in collector_common::guard::GUARD_HOOKS {
            let program = hook.program();
            let Some(found) = object.programs.get(program) else {
                panic!("the eBPF object has no guard program {program}");
            };
            assert!(of_hook_type(hook, &found.section), "{program}");
            named.insert(program);
        }
        for (program, _) in collector_common::net::EXEC_NAME_PROGRAMS {
            assert!(matches!(
                object.programs.get(program).map(|p| &p.section),
                Some(ProgramSection::RawTracePoint)
            ));
            named.insert(program);
        }
        // Attached on every tier, by no row (`attach_all`).
        let cgroups = Hook::TpCgroupMkdir;
        assert!(of_hook_type(
            cgroups,
            &object.programs[cgroups.program()].section
        ));
        named.insert(cgroups.program());
        let (rmdir, _) = collector_common::container::CGROUP_RMDIR_PROGRAM;
        assert!(matches!(
            object.programs.get(rmdir).map(|p| &p.section),
            Some(ProgramSection::RawTracePoint)
        ));
        named.insert(rmdir);
        for &(_, companion) in COMPANION_HOOKS {
            let program = companion.program();
            assert!(
                of_hook_type(companion, &object.programs[program].section),
                "{program}"
            );
            named.insert(program);
        }
        let exit = collector_common::guard::GUARD_EXIT_PROGRAM;
        assert!(matches!(
            object.programs.get(exit).map(|p| &p.section),
            Some(ProgramSection::RawTracePoint)
        ));
        named.insert(exit);
        let unnamed: Vec<&String> = object
            .programs
            .keys()
            .filter(|program| !named.contains(program.as_str()))
            .collect();
        assert!(unnamed.is_empty(), "no row attaches {unnamed:?}");
    }

    #[test]
    fn rows_are_named_after_their_module_and_share_programs_within_it() {
        let mut names = HashSet::new();
        for spec in ROWS {
            assert!(names.insert(spec.name), "{} twice", spec.name);
            let prefix = format!("{}.", super::super::module_name(spec.module));
            assert!(spec.name.starts_with(&prefix), "{}", spec.name);
            // `Attacher::module` attaches these on every tier.
            if spec.lsm.is_none() {
                assert!(
                    matches!(spec.audit, AuditTier::RawTracepoints(_)),
                    "{}",
                    spec.name
                );
            }
            if let AuditTier::AttachedByRow(hooks) = spec.audit {
                for hook in hooks {
                    assert!(
                        ROWS.iter().any(|other| other.module == spec.module
                            && matches!(other.audit, AuditTier::RawTracepoints(h) if h.contains(hook))),
                        "{}: no row of its module attaches {}",
                        spec.name,
                        hook.name()
                    );
                }
            }
        }
        let refusing: Vec<&str> = ROWS
            .iter()
            .filter(|spec| spec.audit_refuses())
            .map(|spec| spec.name)
            .collect();
        assert_eq!(refusing, ["network.connect", "network.send"]);
    }

    /// What a cell of a Markdown table quotes as code.
    fn code(cell: &str) -> Vec<&str> {
        cell.split('`').skip(1).step_by(2).collect()
    }

    /// `hooks` as the README writes them: the first in full, the others
    /// by the end of their name (`openat2`, `connect6`).
    fn assert_lists(row: &str, hooks: &[Hook], cell: &str) {
        let quoted = code(cell);
        assert_eq!(
            quoted.first(),
            hooks.first().map(|h| h.name()).as_ref(),
            "{row}"
        );
        assert!(quoted.len() >= hooks.len(), "{row}: {cell}");
        for (hook, short) in hooks.iter().zip(&quoted).skip(1) {
            let name = hook.name();
            assert!(
                name.ends_with(&format!("/{short}")) || name.ends_with(&format!("_{short}")),
                "{row}: README says `{short}` for {name}"
            );
        }
    }

    #[test]
    fn the_readme_table_lists_every_row_with_its_hooks() {
        const README: &str = include_str!("../../../README.md");
        let table: Vec<[&str; 3]> = README
            .lines()
            .skip_while(|line| !line.starts_with("| Row | BPF-LSM hook"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
                cells
                    .try_into()
                    .unwrap_or_else(|_| panic!("not 3 cells: {line}"))
            })
            .collect();
        let readme_rows: Vec<&str> = table.iter().map(|[row, ..]| code(row)[0]).collect();
        let rows: Vec<&str> = ROWS.iter().map(|spec| spec.name).collect();
        assert_eq!(readme_rows, rows, "README.md's table of rows");
        for (spec, [_, lsm, audit]) in ROWS.iter().zip(&table) {
            let row = spec.name;
            let Some(hook) = spec.lsm else {
                // Covered the same way on every tier.
                assert_lists(row, spec.audit.hooks(), lsm);
                assert_eq!(*audit, "same", "{row}");
                continue;
            };
            assert_eq!(code(lsm).first(), Some(&hook.name()), "{row}");
            if spec.audit.hooks().is_empty() {
                assert_eq!(*audit, "unavailable", "{row}");
            } else {
                assert_lists(row, spec.audit.hooks(), audit);
                assert_eq!(audit.contains(": enforced"), spec.audit_refuses(), "{row}");
            }
        }
    }
}
