//! `kernel.protect`: the agent in block mode, with its programs pinned, is
//! attacked by this process (root, not PID 1) through every route the
//! guard closes: signals (`kill`, `tgkill`, `pidfd_send_signal`, a pipe's
//! I/O signal), `prlimit`, ptrace attach, `/proc/PID/mem`, `pidfd_getfd`,
//! a descriptor of each of its maps and programs by id, its pinned
//! `POLICY_ACTIVE` by path, and unlinking, renaming or removing its pins
//! and their directories. Each must
//! fail, leave the agent running and enforcing, and be reported as
//! `safeguard.agent.tamper`. What must still work: SIGHUP (reload),
//! `safeguard status`, killing any other process, and `safeguard stop`;
//! once the agent has ended, the guard is off, and the next agent takes
//! its pins over.

use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use safeguard_test_support::{Agent, run};
use semconv::{attr, event, tamper};
use serde_json::Value;

use crate::cases::{READY_WITHIN, SECRET, TestResult, ensure, open_read, setup_files};

const PIN_DIR: &str = "/sys/fs/bpf/sgtest-protect";
const DIR: &str = "/tmp/sgtest-protect";
const EPERM: i32 = libc::EPERM;
/// `fcntl(F_SETSIG)`: the signal a file's owner gets on I/O (Linux).
const F_SETSIG: i32 = 10;

fn config() -> String {
    format!(
        "files:\n  enable: true\n  mode: block\n  deny: [/srv/sg/secret]\n\
         kernel:\n  tier: lsm\n  pin: true\n  pin_dir: {PIN_DIR}\n  protect: true\n\
         log:\n  format: json\n"
    )
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

/// `Err(errno)` when a syscall returned a negative value.
fn check(ret: i64) -> Result<i64, i32> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

/// The agent's process is there and not a zombie.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.chars().next()))
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The ids of the maps and programs `pid` holds, from its fdinfo (which
/// read access, left alone by the guard, shows).
fn bpf_ids(pid: u32, field: &str) -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in entries.flatten() {
        let info = fs::read_to_string(entry.path()).unwrap_or_default();
        for line in info.lines() {
            if let Some(id) = line.strip_prefix(field).and_then(|v| v.trim().parse().ok()) {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A descriptor of one of `pid`'s map descriptors' numbers (for
/// `pidfd_getfd`).
fn a_map_fd_of(pid: u32) -> Option<i32> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|e| fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("bpf-map")))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
}

/// `bpf(cmd, attr)` with a zeroed 128-byte `union bpf_attr` whose first
/// 16 bytes are `head`.
fn bpf(cmd: i64, head: [u64; 2]) -> Result<i64, i32> {
    let mut attr = [0u64; 16];
    attr[..2].copy_from_slice(&head);
    // SAFETY: the attribute buffer outlives the call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128) };
    let result = check(ret);
    if let Ok(fd) = result {
        unsafe { libc::close(fd as i32) };
    }
    result
}

const BPF_OBJ_GET: i64 = 7;
const BPF_PROG_GET_FD_BY_ID: i64 = 13;
const BPF_MAP_GET_FD_BY_ID: i64 = 14;

/// One attempt: its name, the action the tamper event must name, and what
/// the syscall returned (`Err(errno)` when refused).
struct Attempt {
    name: &'static str,
    action: &'static str,
    result: Result<(), String>,
}

fn refused(name: &'static str, action: &'static str, r: Result<i64, i32>, want: &[i32]) -> Attempt {
    let result = match r {
        Err(e) if want.contains(&e) => Ok(()),
        other => Err(format!("{name}: {other:?}, want an error in {want:?}")),
    };
    Attempt {
        name,
        action,
        result,
    }
}

/// Every route against the running agent `pid`.
fn attempts(pid: u32) -> Vec<Attempt> {
    let p = pid as i32;
    let mut out = Vec::new();
    for (name, sig) in [
        ("kill-sigkill", libc::SIGKILL),
        ("kill-sigterm", libc::SIGTERM),
        ("kill-sigstop", libc::SIGSTOP),
    ] {
        out.push(refused(
            name,
            tamper::SIGNAL,
            check(unsafe { libc::kill(p, sig) }.into()),
            &[EPERM],
        ));
    }
    out.push(refused(
        "tgkill",
        tamper::SIGNAL,
        check(unsafe { libc::syscall(libc::SYS_tgkill, p, p, libc::SIGKILL) }),
        &[EPERM],
    ));
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, p, 0) } as i32;
    out.push(refused(
        "pidfd-send-signal",
        tamper::SIGNAL,
        check(unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd,
                libc::SIGKILL,
                std::ptr::null::<u8>(),
                0,
            )
        }),
        &[EPERM],
    ));
    let target = a_map_fd_of(pid).unwrap_or(3);
    out.push(refused(
        "pidfd-getfd",
        tamper::PTRACE,
        check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, target, 0) }),
        &[EPERM],
    ));
    unsafe { libc::close(pidfd) };
    let limit = libc::rlimit {
        rlim_cur: 1,
        rlim_max: 1,
    };
    out.push(refused(
        "prlimit-cpu",
        tamper::RLIMIT,
        check(unsafe { libc::prlimit(p, libc::RLIMIT_CPU, &limit, std::ptr::null_mut()) }.into()),
        &[EPERM],
    ));
    out.push(refused(
        "ptrace-attach",
        tamper::PTRACE,
        check(unsafe { libc::ptrace(libc::PTRACE_ATTACH, p, 0, 0) }),
        &[EPERM],
    ));
    let mem = CString::new(format!("/proc/{pid}/mem")).unwrap();
    let fd = unsafe { libc::open(mem.as_ptr(), libc::O_RDWR) };
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
    // mm_access turns the refusal into EACCES.
    out.push(refused(
        "proc-mem",
        tamper::PTRACE,
        check(fd.into()),
        &[EPERM, libc::EACCES],
    ));
    out.push(every_id(
        pid,
        "map_id:",
        "map-by-id",
        tamper::BPF_MAP,
        BPF_MAP_GET_FD_BY_ID,
    ));
    out.push(every_id(
        pid,
        "prog_id:",
        "prog-by-id",
        tamper::BPF_PROG,
        BPF_PROG_GET_FD_BY_ID,
    ));
    let pinned = CString::new(format!("{PIN_DIR}/maps/POLICY_ACTIVE")).unwrap();
    out.push(refused(
        "map-pin",
        tamper::BPF_MAP,
        bpf(BPF_OBJ_GET, [pinned.as_ptr() as u64, 0]),
        &[EPERM],
    ));
    let link = first_link_pin();
    out.push(refused(
        "pin-unlink",
        tamper::PIN,
        link.as_ref().map_or(Err(-1), |l| {
            fs::remove_file(l).map(|()| 0).map_err(io_errno)
        }),
        &[EPERM],
    ));
    out.push(refused(
        "pin-rename-out",
        tamper::PIN,
        link.as_ref().map_or(Err(-1), |l| {
            fs::rename(l, "/sys/fs/bpf/sgtest-moved")
                .map(|()| 0)
                .map_err(io_errno)
        }),
        &[EPERM],
    ));
    // The kernel asks the LSM before it looks whether the directory is
    // empty: unguarded, this fails with ENOTEMPTY.
    let epoch_dir = link.as_ref().and_then(|l| l.parent());
    out.push(refused(
        "pin-dir-rmdir",
        tamper::PIN,
        epoch_dir.map_or(Err(-1), |d| fs::remove_dir(d).map(|()| 0).map_err(io_errno)),
        &[EPERM],
    ));
    out.push(refused(
        "pin-dir-rename",
        tamper::PIN,
        fs::rename(PIN_DIR, "/sys/fs/bpf/sgtest-moved-dir")
            .map(|()| 0)
            .map_err(io_errno),
        &[EPERM],
    ));
    out
}

fn io_errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// A descriptor by id of every map (or program) the agent holds: each
/// must be refused.
fn every_id(pid: u32, field: &str, name: &'static str, action: &'static str, cmd: i64) -> Attempt {
    let ids = bpf_ids(pid, field);
    let given: Vec<(u32, Result<i64, i32>)> = ids
        .iter()
        .map(|&id| (id, bpf(cmd, [u64::from(id), 0])))
        .filter(|(_, r)| *r != Err(EPERM))
        .collect();
    let result = if ids.is_empty() {
        Err(format!("{name}: the agent holds no {field} descriptors"))
    } else if given.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{name}: of {} ids, not refused: {given:?}",
            ids.len()
        ))
    };
    Attempt {
        name,
        action,
        result,
    }
}

/// A pinned link of the epoch in force.
fn first_link_pin() -> Option<PathBuf> {
    let epochs = fs::read_dir(Path::new(PIN_DIR).join("links")).ok()?;
    let epoch = epochs.flatten().next()?.path();
    Some(fs::read_dir(epoch).ok()?.flatten().next()?.path())
}

/// A pipe whose I/O signal is SIGKILL, owned by the agent: a write raises it.
fn sigio_kill(pid: u32) -> Result<(), String> {
    let mut fds = [0i32; 2];
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return Err(format!("pipe: {}", errno()));
        }
        let ok = libc::fcntl(fds[0], libc::F_SETOWN, pid as i32) == 0
            && libc::fcntl(fds[0], F_SETSIG, libc::SIGKILL) == 0
            && libc::fcntl(fds[0], libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK) == 0;
        if !ok {
            return Err(format!("fcntl: {}", errno()));
        }
        libc::write(fds[1], b"x".as_ptr().cast(), 1);
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    Ok(())
}

fn tamper_events<'a>(events: &'a [Value], action: &str, me: u32) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| safeguard_test_support::event_name(e) == Some(event::AGENT_TAMPER))
        .filter(|e| {
            e[attr::TAMPER_ACTION] == action
                && e[attr::PROCESS_PID] == me
                && e[attr::DECISION] == "blocked"
                && e[attr::SECURITY_RULE_NAME] == semconv::rule::AGENT_PROTECT
        })
        .collect()
}

fn clean_pins() {
    let _ = fs::remove_dir_all("/sys/fs/bpf/sgtest-moved-dir");
    let _ = fs::remove_file("/sys/fs/bpf/sgtest-moved");
    remove_tree(Path::new(PIN_DIR));
}

/// bpffs has no recursive removal of pins: files first, then directories.
fn remove_tree(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return !dir.exists();
    };
    let mut ok = true;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            ok &= remove_tree(&path);
        } else {
            ok &= fs::remove_file(&path).is_ok();
        }
    }
    ok && fs::remove_dir(dir).is_ok()
}

pub fn suite(agent_bin: &str) -> Vec<(String, TestResult)> {
    let mut results = Vec::new();
    match attack(agent_bin, &mut results) {
        Ok(()) => {}
        Err(e) => results.push(("protect.setup".into(), Err(e))),
    }
    clean_pins();
    results
}

fn attack(agent_bin: &str, results: &mut Vec<(String, TestResult)>) -> TestResult {
    setup_files()?;
    clean_pins();
    let mut agent = Agent::start(agent_bin, Path::new(DIR), &config(), READY_WITHIN)?;
    let pid = agent.pid();
    ensure(agent.log().contains("kernel.protect: on"), || {
        format!("the agent did not say the guard is on: {}", agent.log())
    })?;

    let tried = attempts(pid);
    let sigio = sigio_kill(pid);
    std::thread::sleep(Duration::from_millis(300));
    let still_alive = alive(pid);
    let still_enforcing = open_read(SECRET);

    // What must still work.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .map_err(|e| e.to_string())?;
    let other_kill = unsafe { libc::kill(sleeper.id() as i32, libc::SIGKILL) };
    let _ = sleeper.wait();
    let probe = unsafe { libc::kill(pid as i32, 0) };
    let reload = agent.reload(&config(), READY_WITHIN);
    let status = run(
        agent_bin,
        &["status", "--config", &agent.config_path().to_string_lossy()],
        None,
        None,
    );
    // The operator's own tool gets the same refusal, and says why.
    let unpin = run(
        agent_bin,
        &[
            "unpin",
            "--force",
            "--config",
            &agent.config_path().to_string_lossy(),
        ],
        None,
        None,
    );
    let (events, log) = agent.stop_by_request(agent_bin)?;
    let me = std::process::id();
    results.push((
        "protect.unpin-says-why".into(),
        match unpin {
            Ok(ran) if ran.code != 0 && ran.stderr.contains("kernel.protect refuses") => Ok(()),
            Ok(ran) => Err(format!(
                "safeguard unpin --force: exit {}: {}",
                ran.code, ran.stderr
            )),
            Err(e) => Err(format!("safeguard unpin --force: {e}")),
        },
    ));

    for a in &tried {
        let reported = !tamper_events(&events, a.action, me).is_empty();
        let result = a.result.clone().and_then(|()| {
            ensure(reported, || {
                format!(
                    "{}: refused but no {} event for {}",
                    a.name,
                    event::AGENT_TAMPER,
                    a.action
                )
            })
        });
        results.push((format!("protect.{}", a.name), result));
    }
    results.push((
        "protect.signal-by-io".into(),
        sigio.and_then(|()| {
            // Raised by the write, in this process.
            let reported = !tamper_events(&events, tamper::SIGNAL_BY_IO, me).is_empty();
            ensure(still_alive && reported, || {
                format!("after the I/O signal: alive {still_alive}, reported {reported}")
            })
        }),
    ));
    results.push((
        "protect.still-enforcing".into(),
        ensure(still_alive && still_enforcing == Err(EPERM), || {
            format!("after the attempts: alive {still_alive}, open {still_enforcing:?}")
        }),
    ));
    results.push((
        "protect.false-positives".into(),
        ensure(other_kill == 0 && probe == 0, || {
            format!("kill of another process: {other_kill}, kill(agent, 0): {probe}")
        })
        .and_then(|()| reload.map_err(|e| format!("SIGHUP reload: {e}")))
        .and_then(|()| match status {
            Ok(ran) if ran.code == 0 => Ok(()),
            Ok(ran) => Err(format!(
                "safeguard status: exit {}: {}",
                ran.code, ran.stderr
            )),
            Err(e) => Err(format!("safeguard status: {e}")),
        })
        .and_then(|()| {
            ensure(log.contains("stop requested"), || {
                format!("the agent did not say it was asked to stop: {log}")
            })
        }),
    ));

    // The agent has ended: the guard is off, its pins can be taken over.
    let again = Agent::start(agent_bin, Path::new(DIR), &config(), READY_WITHIN);
    let takeover = again.and_then(|agent| {
        let took_over = agent.log().contains("took over");
        let (_, log) = agent.stop_by_request(agent_bin)?;
        ensure(took_over, || {
            format!("the second agent did not take over: {log}")
        })
    });
    let removable = remove_tree(Path::new(PIN_DIR));
    results.push((
        "protect.off-after-exit".into(),
        takeover.and_then(|()| {
            ensure(removable, || {
                "the pins could not be removed after the agent ended".into()
            })
        }),
    ));
    Ok(())
}

/// Where the self-check suite pins.
const SELFCHECK_PIN_DIR: &str = "/sys/fs/bpf/sgtest-selfcheck";

/// `BPF_MAP_LOOKUP_ELEM` and `BPF_MAP_UPDATE_ELEM`.
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;

/// Writes another epoch into the pinned `POLICY_ACTIVE` under `pin_dir`,
/// as any root process can when the guard is off: the programs then stand
/// aside. Returns the value written.
fn overwrite_policy_active(pin_dir: &str) -> Result<u32, String> {
    let pinned = CString::new(format!("{pin_dir}/maps/POLICY_ACTIVE")).unwrap();
    let mut attr = [0u64; 16];
    attr[0] = pinned.as_ptr() as u64;
    // SAFETY: the attribute buffer outlives the call.
    let fd = check(unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, attr.as_mut_ptr(), 128) })
        .map_err(|e| format!("BPF_OBJ_GET {}: errno {e}", pinned.to_string_lossy()))?;
    let key = 0u32;
    let mut value = 0u32;
    // union bpf_attr for map elements: map_fd, key, value, flags.
    let elem = |value: *mut u32| {
        let mut attr = [0u64; 16];
        attr[0] = fd as u64;
        attr[1] = &key as *const u32 as u64;
        attr[2] = value as u64;
        attr
    };
    let mut lookup = elem(&mut value);
    // SAFETY: key and value outlive the call.
    let read = check(unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_ELEM, lookup.as_mut_ptr(), 128)
    });
    let mut other = (value >> 1).wrapping_add(1000) << 1;
    let mut update = elem(&mut other);
    // SAFETY: as above.
    let written = check(unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_ELEM, update.as_mut_ptr(), 128)
    });
    unsafe { libc::close(fd as i32) };
    read.map_err(|e| format!("lookup POLICY_ACTIVE: errno {e}"))?;
    written.map_err(|e| format!("update POLICY_ACTIVE: errno {e}"))?;
    Ok(other)
}

/// With `kernel.protect: false`, a root process can make the programs
/// stand aside (another epoch in `POLICY_ACTIVE`) and remove a pin; the
/// agent's self-check must find both within its period (10 s) and say so
/// in `status` and its log.
pub fn selfcheck(agent_bin: &str) -> Vec<(String, TestResult)> {
    let result = (|| -> TestResult {
        // The programs of pins removed just before (by another suite) are
        // detached by a kernel worker (6.12 defers it): wait for that.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Err(e) = setup_files() {
            if std::time::Instant::now() > deadline {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        remove_tree(Path::new(SELFCHECK_PIN_DIR));
        let config = format!(
            "files:\n  enable: true\n  mode: block\n  deny: [/srv/sg/secret]\n\
             kernel:\n  tier: lsm\n  pin: true\n  pin_dir: {SELFCHECK_PIN_DIR}\n  protect: false\n\
             log:\n  format: json\n"
        );
        let agent = Agent::start(agent_bin, Path::new(DIR), &config, READY_WITHIN)?;
        let config_path = agent.config_path().to_string_lossy().into_owned();
        let status = || {
            std::process::Command::new(agent_bin)
                .args(["status", "--config", &config_path])
                .output()
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                .unwrap_or_default()
        };
        let before = status();
        ensure(open_read(SECRET) == Err(EPERM), || {
            "the deny rule was not enforced to begin with".into()
        })?;
        ensure(before.contains("Self-check: as the agent left it"), || {
            format!("status before the attack: {before}")
        })?;

        let epochs =
            fs::read_dir(Path::new(SELFCHECK_PIN_DIR).join("links")).map_err(|e| e.to_string())?;
        let epoch = epochs.flatten().next().ok_or("no pinned links")?.path();
        let pin = fs::read_dir(epoch)
            .map_err(|e| e.to_string())?
            .flatten()
            .next()
            .ok_or("no pinned link")?
            .path();
        fs::remove_file(&pin).map_err(|e| format!("unlink {}: {e}", pin.display()))?;
        overwrite_policy_active(SELFCHECK_PIN_DIR)?;
        // What the attack did: the programs stand aside.
        ensure(open_read(SECRET).is_ok(), || {
            "the deny rule still held after POLICY_ACTIVE was overwritten".into()
        })?;

        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut after = status();
        while !(after.contains("POLICY_ACTIVE names epoch") && after.contains("was removed"))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(500));
            after = status();
        }
        let (_, log) = agent.stop_by_request(agent_bin)?;
        ensure(after.contains("Self-check: 2 problems"), || {
            format!("status 30 s after the attack: {after}")
        })?;
        ensure(
            after.contains(&format!("the pin {} was removed", pin.display())),
            || format!("status does not name the removed pin: {after}"),
        )?;
        ensure(
            log.contains("self-check: POLICY_ACTIVE names epoch"),
            || format!("the agent did not warn of the overwritten policy set: {log}"),
        )
    })();
    remove_tree(Path::new(SELFCHECK_PIN_DIR));
    vec![("protect.selfcheck".into(), result)]
}
