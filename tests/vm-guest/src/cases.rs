//! The test cases. Each sets up files, starts the agent with a policy,
//! performs real opens from real programs (busybox `cat`, and this process
//! itself), and checks the syscall results and the reported events.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use safeguard_test_support::{Agent, Ran, events_for};
use semconv::attr;
use serde_json::Value;

pub type TestResult = Result<(), String>;

type Case = fn(&str) -> TestResult;

pub const ALL: &[(&str, Case)] = &[
    ("file_open_block_mode_denies_and_reports", block_mode),
    ("file_open_monitor_mode_allows_and_reports", monitor_mode),
    ("file_open_tracepoint_tier_audits", tracepoint_tier),
    (
        "process_lifecycle_fork_exec_exit",
        crate::process_rows::lifecycle,
    ),
    (
        "process_learn_round_trip_enforces_what_was_seen",
        crate::learn::round_trip,
    ),
    ("ring_buffer_drops_are_counted_exactly", drops_are_counted),
    (
        "blocked_operations_survive_an_audit_flood",
        blocked_survive_an_audit_flood,
    ),
    (
        "audit_floods_are_sampled_in_the_kernel_and_counted",
        audit_floods_are_sampled,
    ),
    (
        "target_container_applies_only_in_container_cgroups",
        target_container,
    ),
    (
        "network_allowed_uid_overrides_cidr_deny",
        crate::net_rows::allowed_uid_overrides_cidr_deny,
    ),
    (
        "network_command_rules_judge_the_name_run_as",
        crate::net_rows::command_rules_judge_the_name_run_as,
    ),
    (
        "network_dns_proxy_block_denies_answered_addresses",
        crate::dns_proxy::block_denies_answered_addresses,
    ),
    (
        "network_dns_proxy_monitor_reports_answered_addresses",
        crate::dns_proxy::monitor_reports_answered_addresses,
    ),
    (
        "safeguard_example_config_enforces_what_it_says",
        crate::operations::safeguard_example_config_enforces_what_it_says,
    ),
    (
        "container_shaped_cgroup_gives_identity",
        crate::operations::container_shaped_cgroup_gives_identity,
    ),
    (
        "pinned_programs_enforce_across_restarts",
        crate::pinning::pinned_programs_enforce_across_restarts,
    ),
    (
        "reload_a_thousand_times_without_a_gap",
        crate::reload::thousand_reloads_leave_no_gap,
    ),
];

const ROOT: &str = "/srv/sg";
pub(crate) const SECRET: &str = "/srv/sg/secret/x";
const SIBLING: &str = "/srv/sg/secrets.d/x";
const PUBLIC: &str = "/srv/sg/public/x";
/// An unprivileged user for the workload, so the event's uid is not 0.
const WORKLOAD_UID: u32 = 1000;
const EPERM: i32 = 1;

/// How long the agent may take to load and attach under software emulation.
pub const READY_WITHIN: Duration = Duration::from_secs(120);

pub(crate) fn start(agent: &str, name: &str, config: &str) -> Result<Agent, String> {
    Agent::start(
        agent,
        Path::new(&format!("/tmp/sgtest-{name}")),
        config,
        READY_WITHIN,
    )
}

pub(crate) fn ensure(cond: bool, what: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(what()) }
}

/// `cat path` as the unprivileged workload user.
fn cat(path: &str) -> Result<Ran, String> {
    safeguard_test_support::run("/bin/cat", &[path], Some(WORKLOAD_UID), None)
}

/// open(2) from this process; `Err(errno)` on failure.
pub(crate) fn open_read(path: &str) -> Result<(), i32> {
    fs::File::open(path)
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

pub(crate) fn setup_files() -> TestResult {
    for path in [SECRET, SIBLING, PUBLIC] {
        let dir = std::path::Path::new(path).parent().unwrap();
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        fs::write(path, "data\n").map_err(|e| format!("write {path}: {e}"))?;
    }
    Ok(())
}

fn policy(mode: &str, tier: &str) -> String {
    format!(
        "files:\n  enable: true\n  mode: {mode}\n  deny: [{ROOT}/secret]\n  allow: [{ROOT}/public]\n\
         kernel:\n  tier: {tier}\nlog:\n  format: json\n"
    )
}

fn str_of<'a>(e: &'a Value, key: &str) -> &'a str {
    e[key].as_str().unwrap_or("")
}

fn int_of(e: &Value, key: &str) -> i64 {
    e[key].as_i64().unwrap_or(-1)
}

/// Checks the one event reported for `pid`'s open of SECRET.
fn check_event(events: &[Value], pid: u32, decision: &str, uid: u32, comm: &str) -> TestResult {
    let mine: Vec<&Value> = events_for(events, SECRET)
        .into_iter()
        .filter(|e| int_of(e, attr::PROCESS_PID) == i64::from(pid))
        .collect();
    ensure(mine.len() == 1, || {
        format!(
            "expected 1 event for pid {pid} opening {SECRET}, got {}: {events:?}",
            mine.len()
        )
    })?;
    let e = mine[0];
    ensure(str_of(e, attr::DECISION) == decision, || {
        format!("decision {:?}, want {decision}: {e}", e[attr::DECISION])
    })?;
    ensure(
        int_of(e, attr::PROCESS_REAL_USER_ID) == i64::from(uid),
        || format!("uid {:?}, want {uid}: {e}", e[attr::PROCESS_REAL_USER_ID]),
    )?;
    ensure(str_of(e, attr::PROCESS_COMM) == comm, || {
        format!("comm {:?}, want {comm}: {e}", e[attr::PROCESS_COMM])
    })?;
    ensure(
        str_of(e, attr::SECURITY_RULE_NAME) == "/srv/sg/secret",
        || format!("rule {:?}: {e}", e[attr::SECURITY_RULE_NAME]),
    )?;
    ensure(
        safeguard_test_support::event_name(e) == Some(semconv::event::FILE_OPEN),
        || format!("event name: {e}"),
    )?;
    ensure(int_of(e, attr::PROCESS_PARENT_PID) > 0, || {
        format!("no parent pid: {e}")
    })
}

type RunResult = Result<Ran, String>;

/// Opens outside the denied prefix: an allowed sibling prefix, and a name
/// that only shares leading characters with the denied one.
fn open_siblings() -> Vec<(&'static str, RunResult)> {
    [SIBLING, PUBLIC].into_iter().map(|p| (p, cat(p))).collect()
}

/// Those opens succeeded and were not reported.
fn check_siblings(results: Vec<(&'static str, RunResult)>, events: &[Value]) -> TestResult {
    for (path, result) in results {
        let ran = result?;
        ensure(ran.code == 0, || {
            format!("cat {path} failed ({}): {}", ran.code, ran.stderr)
        })?;
        ensure(events_for(events, path).is_empty(), || {
            format!("unexpected event for {path}: {events:?}")
        })?;
    }
    Ok(())
}

fn sequence_increases(events: &[Value]) -> TestResult {
    let seqs: Vec<i64> = events.iter().map(|e| int_of(e, attr::SEQUENCE)).collect();
    ensure(seqs.windows(2).all(|w| w[0] < w[1]), || {
        format!("sequence numbers not increasing: {seqs:?}")
    })
}

fn block_mode(agent_bin: &str) -> TestResult {
    setup_files()?;
    let agent = start(agent_bin, "block", &policy("block", "lsm"))?;
    ensure(agent.log().contains("enforced by BPF-LSM"), || {
        format!("agent did not report BPF-LSM enforcement: {}", agent.log())
    })?;
    // Both test kernels have `file_ioctl_compat` (6.1 by a backport): the
    // row names it beside its own hook.
    ensure(
        agent.log().lines().any(|l| {
            l.contains("files.ioctl: enforced")
                && l.contains("lsm/file_ioctl,lsm/file_ioctl_compat")
        }),
        || {
            format!(
                "files.ioctl does not name lsm/file_ioctl_compat: {}",
                agent.log()
            )
        },
    )?;

    let denied = cat(SECRET)?;
    let own = open_read(SECRET);
    let siblings = open_siblings();
    let (events, _) = agent.stop()?;

    ensure(
        denied.code != 0 && denied.stderr.contains("Operation not permitted"),
        || {
            format!(
                "cat {SECRET} should fail with EPERM, got exit {}: {}",
                denied.code, denied.stderr
            )
        },
    )?;
    ensure(own == Err(EPERM), || {
        format!("open({SECRET}) from the test: {own:?}, want EPERM")
    })?;
    check_event(&events, denied.pid, "blocked", WORKLOAD_UID, "cat")?;
    check_event(&events, std::process::id(), "blocked", 0, "safeguard-vm-te")?;
    ensure(
        events
            .iter()
            .all(|e| str_of(e, attr::HOOK) == "lsm/file_open"),
        || format!("events from another hook: {events:?}"),
    )?;
    check_siblings(siblings, &events)?;
    sequence_increases(&events)
}

fn monitor_mode(agent_bin: &str) -> TestResult {
    setup_files()?;
    let agent = start(agent_bin, "monitor", &policy("monitor", "lsm"))?;
    let denied = cat(SECRET)?;
    let own = open_read(SECRET);
    let siblings = open_siblings();
    let (events, _) = agent.stop()?;

    ensure(denied.code == 0, || {
        format!(
            "cat {SECRET} should succeed in monitor mode ({}): {}",
            denied.code, denied.stderr
        )
    })?;
    ensure(own.is_ok(), || {
        format!("open({SECRET}) in monitor mode: {own:?}")
    })?;
    check_event(&events, denied.pid, "would_block", WORKLOAD_UID, "cat")?;
    let e = events_for(&events, SECRET)[0];
    ensure(str_of(e, attr::MODE) == "monitor", || format!("mode: {e}"))?;
    check_siblings(siblings, &events)
}

/// The tier used on kernels without BPF-LSM, exercised here on purpose. A
/// relative path is resolved against the directory the kernel saw, so a
/// process long gone when the agent reads the event is reported too.
fn tracepoint_tier(agent_bin: &str) -> TestResult {
    setup_files()?;
    let agent = start(agent_bin, "tracepoint", &policy("block", "tracepoint"))?;
    let denied = cat(SECRET)?;
    let relative = safeguard_test_support::run(
        "/bin/cat",
        &["secret/x"],
        Some(WORKLOAD_UID),
        Some(Path::new("/srv/sg")),
    )?;
    let (events, _) = agent.stop()?;
    ensure(relative.code == 0, || {
        format!("cat secret/x: {}", relative.stderr)
    })?;
    ensure(
        events_for(&events, SECRET)
            .iter()
            .any(|e| e[attr::PROCESS_PID] == relative.pid),
        || {
            format!(
                "the relative open by pid {} not reported: {events:?}",
                relative.pid
            )
        },
    )?;

    ensure(denied.code == 0, || {
        format!(
            "the tracepoint tier cannot block, yet cat failed ({}): {}",
            denied.code, denied.stderr
        )
    })?;
    check_event(&events, denied.pid, "would_block", WORKLOAD_UID, "cat")?;
    let e = events_for(&events, SECRET)[0];
    ensure(str_of(e, attr::ENFORCEMENT_TIER) == "audit-only", || {
        format!("tier: {e}")
    })?;
    ensure(
        str_of(e, attr::HOOK).starts_with("tracepoint/syscalls/sys_enter_open"),
        || format!("hook: {e}"),
    )
}

/// Floods one hook while the agent cannot read (SIGSTOP), with a small ring
/// buffer: every event is either received or counted as a kernel drop, and
/// none is lost silently.
fn drops_are_counted(agent_bin: &str) -> TestResult {
    const OPENS: u64 = 5_000;
    setup_files()?;
    let config = format!(
        "files:\n  enable: true\n  mode: monitor\n  deny: [{ROOT}/secret]\n\
         kernel:\n  tier: lsm\n  ring_buffer_bytes: 65536\n"
    );
    let agent = start(agent_bin, "drops", &config)?;
    agent.signal(libc::SIGSTOP);
    for _ in 0..OPENS {
        let _ = open_read(SECRET);
    }
    agent.signal(libc::SIGCONT);
    let (events, log) = agent.stop()?;
    let received = events_for(&events, SECRET)
        .iter()
        .filter(|e| e[attr::PROCESS_PID] == std::process::id())
        .count() as u64;
    let drops = safeguard_test_support::stopped_counter(&log, "kernel_drops")
        .ok_or_else(|| format!("no kernel_drops in the agent's final line: {log}"))?;
    ensure(drops > 0, || {
        format!("the flood did not overflow the ring buffer (received {received})")
    })?;
    ensure(received + drops == OPENS, || {
        format!(
            "generated {OPENS}, received {received} + dropped {drops} = {}",
            received + drops
        )
    })?;
    // The kernel numbers every event, dropped or not: the gaps are the drops.
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| e[attr::SEQUENCE].as_u64())
        .collect();
    let span = seqs.iter().max().unwrap_or(&0) - seqs.iter().min().unwrap_or(&0) + 1;
    ensure(span - seqs.len() as u64 <= drops, || {
        format!(
            "sequence gaps ({}) exceed the counted drops ({drops})",
            span - seqs.len() as u64
        )
    })
}

/// A flood of audit records (process life cycle, reported and allowed)
/// while the agent is frozen fills the ring buffer, but only to three
/// quarters: the blocked opens that follow are all reported, and what the
/// flood lost is counted.
fn blocked_survive_an_audit_flood(agent_bin: &str) -> TestResult {
    const FORKS: usize = 3_000;
    const BLOCKED: usize = 40;
    setup_files()?;
    let config = format!(
        "files:\n  enable: true\n  mode: block\n  deny: [{ROOT}/secret]\n\
         process:\n  enable: true\n  mode: monitor\n\
         kernel:\n  tier: lsm\n  ring_buffer_bytes: 65536\n"
    );
    let agent = start(agent_bin, "flood", &config)?;
    agent.signal(libc::SIGSTOP);
    for _ in 0..FORKS {
        // SAFETY: the child only calls _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe { libc::_exit(0) };
        }
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    let mut refused = 0;
    for _ in 0..BLOCKED {
        if open_read(SECRET) == Err(EPERM) {
            refused += 1;
        }
    }
    agent.signal(libc::SIGCONT);
    let (events, log) = agent.stop()?;
    ensure(refused == BLOCKED, || {
        format!("{refused} of {BLOCKED} opens refused")
    })?;
    let blocked = events_for(&events, SECRET)
        .iter()
        .filter(|e| e[attr::PROCESS_PID] == std::process::id() && e[attr::DECISION] == "blocked")
        .count();
    let drops = safeguard_test_support::stopped_counter(&log, "kernel_drops")
        .ok_or_else(|| format!("no kernel_drops in the agent's final line: {log}"))?;
    ensure(drops > 0, || {
        format!("the flood of {FORKS} forks did not fill the ring buffer: {log}")
    })?;
    ensure(blocked == BLOCKED, || {
        format!(
            "{blocked} of {BLOCKED} blocked opens reported after the flood ({drops} audit records dropped)"
        )
    })
}

/// `kernel.audit_rate_limit`: a flood of would-block opens from one process
/// is cut in the kernel to the limit per second, and every open is either
/// reported or counted as sampled away; blocked opens are never cut.
fn audit_floods_are_sampled(agent_bin: &str) -> TestResult {
    const OPENS: u64 = 2_000;
    const LIMIT: u64 = 100;
    setup_files()?;
    for mode in ["monitor", "block"] {
        let config = format!(
            "files:\n  enable: true\n  mode: {mode}\n  deny: [{ROOT}/secret]\n\
             kernel:\n  tier: lsm\n  audit_rate_limit: {LIMIT}\n"
        );
        let agent = start(agent_bin, &format!("sampling-{mode}"), &config)?;
        let started = std::time::Instant::now();
        for _ in 0..OPENS {
            let _ = open_read(SECRET);
        }
        let windows = started.elapsed().as_secs() + 1;
        let (events, log) = agent.stop()?;
        let reported = events_for(&events, SECRET)
            .iter()
            .filter(|e| e[attr::PROCESS_PID] == std::process::id())
            .count() as u64;
        let drops = safeguard_test_support::stopped_counter(&log, "kernel_drops")
            .ok_or_else(|| format!("no kernel_drops in the agent's final line: {log}"))?;
        if mode == "block" {
            ensure(reported == OPENS && drops == 0, || {
                format!("blocked: {reported} of {OPENS} reported, {drops} dropped")
            })?;
            continue;
        }
        ensure(reported + drops == OPENS, || {
            format!(
                "{OPENS} opens, {reported} reported + {drops} sampled away = {}",
                reported + drops
            )
        })?;
        // One window of LIMIT records per second the loop ran into (two
        // CPUs racing on a window may let one more through).
        ensure(
            reported >= LIMIT && reported <= (LIMIT + 2) * windows,
            || format!("{reported} reported in {windows} one-second windows, limit {LIMIT}"),
        )?;
    }
    Ok(())
}

/// `target: container`: the policy applies to tasks whose cgroup a
/// container runtime made (named as podman names one), made before or
/// after the agent started, and the cgroups a container makes below its
/// own; not to the host's tasks, a task in a mount namespace of its own,
/// or a runtime's monitor.
fn target_container(agent_bin: &str) -> TestResult {
    use safeguard_test_support::{TestCgroup, run, run_in_cgroup};
    const ID1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const ID2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    setup_files()?;
    let cgroup = TestCgroup::new().ok_or("no writable cgroup v2 hierarchy in the VM")?;
    let mkdir = |path: PathBuf| {
        fs::create_dir_all(&path)
            .map(|()| path.clone())
            .map_err(|e| format!("mkdir {}: {e}", path.display()))
    };
    let before = mkdir(cgroup.0.join(format!("libpod-{ID1}")))?;
    let config = format!(
        "files:\n  enable: true\n  mode: block\n  target: container\n  deny: [{ROOT}/secret]\n\
         kernel:\n  tier: lsm\n"
    );
    let agent = start(agent_bin, "container", &config)?;
    let after = mkdir(cgroup.0.join(format!("machine.slice/libpod-{ID2}.scope")))?;
    // What a container makes of its own subtree stays the container's.
    let nested = mkdir(after.join("init.scope/inner"))?;
    let conmon = mkdir(
        cgroup
            .0
            .join(format!("machine.slice/libpod-conmon-{ID2}.scope")),
    )?;

    let mut refused = Vec::new();
    for (what, dir) in [
        ("made before the agent", &before),
        ("made after", &after),
        ("below one", &nested),
    ] {
        let ran = run_in_cgroup(dir, "/bin/cat", &[SECRET])?;
        ensure(
            ran.code != 0 && ran.stderr.contains("Operation not permitted"),
            || {
                format!(
                    "cat in a container's cgroup {what} was not refused: {} {}",
                    ran.code, ran.stderr
                )
            },
        )?;
        refused.push(ran.pid);
    }
    let mut allowed = vec![
        (
            "the host's own cat",
            run("/bin/cat", &[SECRET], None, None)?,
        ),
        (
            "cat in a mount namespace of its own",
            run("/bin/unshare", &["-m", "/bin/cat", SECRET], None, None)?,
        ),
        (
            "cat in a runtime monitor's cgroup",
            run_in_cgroup(&conmon, "/bin/cat", &[SECRET])?,
        ),
    ];
    let (events, log) = agent.stop()?;
    for (what, ran) in allowed.drain(..) {
        ensure(ran.code == 0, || {
            format!("{what} was refused: {}", ran.stderr)
        })?;
    }
    let reported = events_for(&events, SECRET);
    ensure(reported.len() == refused.len(), || {
        format!("want {} events, got {reported:?}\n{log}", refused.len())
    })?;
    for e in reported {
        ensure(
            refused.iter().any(|&pid| e[attr::PROCESS_PID] == pid)
                && e[attr::PROCESS_IN_CONTAINER] == true
                && e[attr::DECISION] == "blocked",
            || format!("event: {e}"),
        )?;
    }
    Ok(())
}
