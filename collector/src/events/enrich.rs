//! Adds what the kernel did not know: wall-clock time, the executable's
//! path, the full path of a relative open (fallback tier), the rule as
//! written, the host. Produces output-independent [`Record`]s.

use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use collector_common::{AT_FDCWD, Decision, MODE_BLOCK};
use semconv::attr;

use super::{
    decode::{Event, FileOpen, Header, Process},
    record::{Record, Severity, Value},
};
use crate::{policy::CompiledFiles, stats::Stats};

pub struct Enricher {
    files: Arc<CompiledFiles>,
    clock: BootClock,
    host_name: String,
    stats: Arc<Stats>,
}

impl Enricher {
    pub fn new(files: Arc<CompiledFiles>, stats: Arc<Stats>) -> Self {
        Self {
            files,
            clock: BootClock::now(),
            host_name: host_name(),
            stats,
        }
    }

    /// `None` when the event is not reportable: a relative path (fallback
    /// tier) that resolves outside the policy, or cannot be resolved (counted).
    pub fn enrich(&self, event: Event) -> Option<Record> {
        match event {
            Event::FileOpen(e) => self.file_open(e),
        }
    }

    fn file_open(&self, mut e: FileOpen) -> Option<Record> {
        if e.relative {
            let Some(path) = resolve_relative(e.process.pid, e.dfd, &e.path) else {
                Stats::add(&self.stats.unresolved_paths, 1);
                return None;
            };
            // The fallback tier cannot enforce, so a denial is "would block".
            e.header.rule_id = self.files.denial(&path)?;
            e.header.decision = Decision::WouldBlock;
            e.path = path;
        }

        let mut attributes = self.common(&e.header, &e.process, semconv::module::FILES);
        attributes.push((attr::FILE_PATH, e.path.into()));
        attributes.push((
            attr::FILE_OPEN_MODE,
            Value::StrList(open_mode(e.open_flags, e.fmode)),
        ));
        attributes.push((attr::FILE_OPEN_FLAGS, e.open_flags.into()));
        if let Some(rule) = self.files.rule(e.header.rule_id) {
            attributes.push((attr::SECURITY_RULE_NAME, rule.name.clone().into()));
            attributes.push((attr::SECURITY_RULE_RULESET_NAME, rule.ruleset.into()));
        } else if e.header.decision != Decision::Allowed {
            attributes.push((attr::SECURITY_RULE_NAME, "whitelist default".into()));
            attributes.push((attr::SECURITY_RULE_RULESET_NAME, "files.allow".into()));
        }
        Some(Record {
            name: semconv::event::FILE_OPEN,
            time: self.clock.wall_time(e.header.boot_ns),
            severity: severity(e.header.decision),
            attributes,
        })
    }

    fn common(&self, h: &Header, p: &Process, module: &'static str) -> Vec<(&'static str, Value)> {
        let mut a = Vec::with_capacity(24);
        a.push((attr::SEQUENCE, h.seq.into()));
        a.push((attr::DECISION, decision_name(h.decision).into()));
        let mode = if h.mode == MODE_BLOCK {
            semconv::mode::BLOCK
        } else {
            semconv::mode::MONITOR
        };
        a.push((attr::MODE, mode.into()));
        a.push((attr::MODULE, module.into()));
        a.push((attr::HOOK, h.hook.name().into()));
        let tier = if h.hook.enforcing() {
            semconv::tier::ENFORCED
        } else {
            semconv::tier::AUDIT_ONLY
        };
        a.push((attr::ENFORCEMENT_TIER, tier.into()));
        a.push((attr::PROCESS_PID, p.pid.into()));
        a.push((attr::THREAD_ID, p.tid.into()));
        a.push((attr::PROCESS_PARENT_PID, p.ppid.into()));
        a.push((attr::PROCESS_REAL_USER_ID, p.uid.into()));
        a.push((attr::PROCESS_GROUP_ID, p.gid.into()));
        a.push((attr::PROCESS_EXECUTABLE_NAME, p.comm.clone().into()));
        if let Ok(exe) = std::fs::read_link(format!("/proc/{}/exe", p.pid)) {
            a.push((
                attr::PROCESS_EXECUTABLE_PATH,
                exe.to_string_lossy().into_owned().into(),
            ));
        }
        a.push((attr::CGROUP_ID, p.cgroup_id.into()));
        a.push((attr::HOST_NAME, self.host_name.clone().into()));
        a
    }
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Allowed => semconv::decision::ALLOWED,
        Decision::Blocked => semconv::decision::BLOCKED,
        Decision::WouldBlock => semconv::decision::WOULD_BLOCK,
    }
}

fn severity(d: Decision) -> Severity {
    match d {
        Decision::Allowed => Severity::Info,
        Decision::Blocked | Decision::WouldBlock => Severity::Warning,
    }
}

/// How a file was opened, from the open flags (and `f_mode` where known).
pub fn open_mode(flags: u32, fmode: u32) -> Vec<&'static str> {
    use semconv::open_mode::*;
    const FMODE_EXEC: u32 = 0x20;
    const O_FMODE_EXEC: u32 = 0x20; // __FMODE_EXEC in f_flags
    let flags = flags as i32;
    let mut mode = Vec::with_capacity(3);
    match flags & libc::O_ACCMODE {
        libc::O_RDONLY => mode.push(READ),
        libc::O_WRONLY => mode.push(WRITE),
        _ => mode.extend([READ, WRITE]),
    }
    if flags & libc::O_CREAT != 0 {
        mode.push(CREATE);
    }
    if flags & libc::O_TRUNC != 0 {
        mode.push(TRUNCATE);
    }
    if flags & libc::O_APPEND != 0 {
        mode.push(APPEND);
    }
    if fmode & FMODE_EXEC != 0 || (flags as u32) & O_FMODE_EXEC != 0 {
        mode.push(EXEC);
    }
    mode
}

/// Joins a relative path to the directory it was relative to, read from
/// /proc while the process still exists. Normalised lexically: `..` is
/// applied to the text, as the caller wrote it.
fn resolve_relative(pid: u32, dfd: i32, path: &str) -> Option<String> {
    let base = if dfd == AT_FDCWD {
        std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?
    } else {
        std::fs::read_link(format!("/proc/{pid}/fd/{dfd}")).ok()?
    };
    Some(normalize(&base.join(path)))
}

fn normalize(path: &Path) -> String {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out.to_string_lossy().into_owned()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Converts the kernel's CLOCK_BOOTTIME stamps to wall-clock time.
struct BootClock {
    /// Wall-clock time at boot.
    boot: SystemTime,
}

impl BootClock {
    fn now() -> Self {
        let boot_now = clock_ns(libc::CLOCK_BOOTTIME);
        let wall_now = SystemTime::now();
        Self {
            boot: wall_now - Duration::from_nanos(boot_now),
        }
    }

    fn wall_time(&self, boot_ns: u64) -> SystemTime {
        self.boot + Duration::from_nanos(boot_ns)
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_modes_follow_the_flags() {
        use semconv::open_mode::*;
        assert_eq!(open_mode(libc::O_RDONLY as u32, 0), vec![READ]);
        assert_eq!(
            open_mode((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32, 0),
            vec![WRITE, CREATE, TRUNCATE]
        );
        assert_eq!(
            open_mode((libc::O_RDWR | libc::O_APPEND) as u32, 0),
            vec![READ, WRITE, APPEND]
        );
        assert_eq!(open_mode(0x20, 0), vec![READ, EXEC]);
    }

    #[test]
    fn relative_paths_are_normalised() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), "/a/c/d");
        assert_eq!(normalize(Path::new("/../x")), "/x");
    }

    #[test]
    fn resolves_against_the_process_working_directory() {
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        let got = resolve_relative(me, AT_FDCWD, "sub/../file").unwrap();
        assert_eq!(got, cwd.join("file").to_string_lossy());
    }

    #[test]
    fn boot_clock_maps_now_to_now() {
        let clock = BootClock::now();
        let now = clock.wall_time(clock_ns(libc::CLOCK_BOOTTIME));
        let skew = SystemTime::now().duration_since(now).unwrap_or_default();
        assert!(skew < Duration::from_secs(5), "{skew:?}");
    }
}
