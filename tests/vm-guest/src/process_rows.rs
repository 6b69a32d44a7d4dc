//! Exec policy rows, and the process life cycle events.

use std::{fs, os::unix::fs::PermissionsExt};

use safeguard_test_support::Agent;
use semconv::{attr, event};
use serde_json::{Value, json};

use crate::{
    cases::{READY_WITHIN, TestResult},
    rows::{Action, Expect, Op, Untouched, suite},
};

const TOOLS: &str = "/srv/sgp/bin";
/// A rule written through a linked directory (as `/bin/x` with merged
/// /usr): `/srv/sgp/linked` → `real`, the tool in `real`.
const LINKED_RULE: &str = "/srv/sgp/linked/tool";
const LINKED_REAL: &str = "/srv/sgp/real/tool";

/// The denied tool again, 70 directories below TOOLS: deeper than the 64
/// levels a path walk once followed (and then judged cut as if whole).
fn deep_tool() -> String {
    format!("{TOOLS}{}/tool", "/d".repeat(70))
}

/// A directory longer than PATH_MAX (4,096 bytes) outside every rule: 25
/// names of 200 bytes below `/srv/sgp/long`.
fn long_dir() -> String {
    let mut dir = String::from("/srv/sgp/long");
    for i in 0..25 {
        dir.push_str(&format!("/{i:02}{}", "x".repeat(198)));
    }
    dir
}

/// What the programs report for `name` in [`long_dir`]: its innermost
/// whole components that fit in PATH_MAX - 1 bytes.
fn long_reported(name: &str) -> String {
    let full = format!("{}/{name}", long_dir());
    let mut path = String::new();
    for part in full.rsplit('/').filter(|p| !p.is_empty()) {
        if path.len() + part.len() + 1 > 4095 {
            break;
        }
        path = format!("/{part}{path}");
    }
    path
}

/// Makes [`long_dir`] one level at a time (no single call could name it)
/// and copies `tool` into it.
fn make_long_dir(tool: &str) -> Result<(), String> {
    use std::os::fd::{AsRawFd, FromRawFd};
    fs::create_dir_all("/srv/sgp/long").map_err(|e| e.to_string())?;
    let mut dir = fs::File::open("/srv/sgp/long").map_err(|e| e.to_string())?;
    for part in long_dir().trim_start_matches("/srv/sgp/long/").split('/') {
        let c = std::ffi::CString::new(part).unwrap();
        // SAFETY: valid descriptor and C string.
        let fd = unsafe {
            libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755);
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY,
            )
        };
        if fd < 0 {
            return Err(format!("open {part}: {}", std::io::Error::last_os_error()));
        }
        dir = unsafe { fs::File::from_raw_fd(fd) };
    }
    let data = fs::read(tool).map_err(|e| e.to_string())?;
    let name = c"tool";
    // SAFETY: valid descriptor and C string.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY,
            0o755,
        )
    };
    if fd < 0 {
        return Err(format!(
            "create the long tool: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut file = unsafe { fs::File::from_raw_fd(fd) };
    std::io::Write::write_all(&mut file, &data).map_err(|e| e.to_string())
}

fn setup() -> Result<(), String> {
    let _ = fs::remove_dir_all("/srv/sgp");
    fs::create_dir_all(TOOLS).map_err(|e| e.to_string())?;
    // A real ELF program (this test binary; run with a filter that matches
    // no test, it exits 0 at once).
    let tool = format!("{TOOLS}/tool");
    fs::copy("/bin/safeguard-vm-tests", &tool).map_err(|e| e.to_string())?;
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let deep = deep_tool();
    fs::create_dir_all(std::path::Path::new(&deep).parent().unwrap()).map_err(|e| e.to_string())?;
    fs::copy(&tool, &deep).map_err(|e| e.to_string())?;
    fs::set_permissions(&deep, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    fs::create_dir_all("/srv/sgp/real").map_err(|e| e.to_string())?;
    fs::copy(&tool, LINKED_REAL).map_err(|e| e.to_string())?;
    fs::set_permissions(LINKED_REAL, fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink("real", "/srv/sgp/linked").map_err(|e| e.to_string())?;
    make_long_dir(&tool)
}

/// `sh -c 'exec PROGRAM'`: the shell (a known pid) is what execs.
fn exec(program: &str) -> Action {
    Action::Run("/bin/sh", vec!["-c".into(), format!("exec {program}")])
}

fn ops() -> Vec<Op> {
    vec![
        Op {
            row: "process.exec.by_name",
            event: event::PROCESS_EXEC,
            key: attr::PROCESS_EXECUTABLE_PATH,
            value: "/bin/busybox".into(),
            attributes: vec![
                (attr::SECURITY_RULE_NAME, json!("uname")),
                (attr::SECURITY_RULE_RULESET_NAME, json!("process.deny")),
                (attr::PROCESS_COMMAND_ARGS, json!(["/bin/uname"])),
            ],
            action: exec("/bin/uname"),
        },
        tool_exec("process.exec.by_path", "no-such-test", |args| {
            exec(&format!("{TOOLS}/tool {args}"))
        }),
        Op {
            row: "process.exec.deep",
            event: event::PROCESS_EXEC,
            key: attr::PROCESS_EXECUTABLE_PATH,
            value: deep_tool(),
            attributes: vec![(attr::SECURITY_RULE_NAME, json!(TOOLS))],
            action: exec(&format!("{} deep-test", deep_tool())),
        },
        // A program run from a memfd, under `process.memfd_exec: deny`.
        Op {
            row: "process.exec.memfd",
            event: event::PROCESS_EXEC,
            key: attr::PROCESS_EXECUTABLE_PATH,
            value: "/memfd:tool".into(),
            attributes: vec![(attr::SECURITY_RULE_NAME, json!(semconv::rule::MEMFD_EXEC))],
            action: Action::Run(
                "/bin/safeguard-vm-tests",
                vec![
                    "--memfd-exec".into(),
                    LINKED_REAL.into(),
                    "memfd-test".into(),
                ],
            ),
        },
        // A rule written through a linked directory holds for the file it
        // leads to, run by its real path.
        Op {
            row: "process.exec.linked-rule",
            event: event::PROCESS_EXEC,
            key: attr::PROCESS_EXECUTABLE_PATH,
            value: LINKED_REAL.into(),
            attributes: vec![(attr::SECURITY_RULE_NAME, json!(LINKED_RULE))],
            action: exec(&format!("{LINKED_REAL} linked-test")),
        },
        // A program at the end of a path longer than PATH_MAX, outside
        // every rule: the path cannot be built whole, so block mode
        // refuses it (fail closed).
        Op {
            row: "process.exec.long-path",
            event: event::PROCESS_EXEC,
            key: attr::PROCESS_EXECUTABLE_PATH,
            value: long_reported("tool"),
            attributes: vec![(
                attr::SECURITY_RULE_NAME,
                json!(semconv::rule::PATH_UNRESOLVED),
            )],
            action: Action::Run(
                "/bin/safeguard-vm-tests",
                vec![
                    "--execveat-at".into(),
                    long_dir(),
                    "tool".into(),
                    "long-test".into(),
                ],
            ),
        },
        tool_exec("process.exec.execveat", "execveat-test", |args| {
            Action::Run(
                "/bin/safeguard-vm-tests",
                vec!["--execveat".into(), format!("{TOOLS}/tool"), args.into()],
            )
        }),
    ]
}

/// The dynamic loader.
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// Runs without exec: the denied tool run by the dynamic loader, which
/// maps it itself, and a mapping of it made executable afterwards. Only on
/// BPF-LSM.
fn mapping_ops() -> Vec<Op> {
    let mapped = |row, hook: &str, action| Op {
        row,
        event: event::PROCESS_EXEC_MAPPING,
        key: attr::FILE_PATH,
        value: format!("{TOOLS}/tool"),
        attributes: vec![
            (attr::SECURITY_RULE_NAME, json!(TOOLS)),
            (attr::HOOK, json!(hook)),
        ],
        action,
    };
    vec![
        mapped(
            "process.exec.mapped",
            "lsm/mmap_file",
            Action::Run(LOADER, vec![format!("{TOOLS}/tool"), "loader-test".into()]),
        ),
        mapped(
            "process.exec.mprotect",
            "lsm/file_mprotect",
            Action::Run(
                "/bin/safeguard-vm-tests",
                vec!["--map-exec".into(), format!("{TOOLS}/tool")],
            ),
        ),
    ]
}

/// An exec of the denied tool with one argument (a test filter that
/// matches nothing, so it exits at once), started by `action`; the event
/// must name the rule and carry the arguments.
fn tool_exec(row: &'static str, arg: &str, action: impl Fn(&str) -> Action) -> Op {
    Op {
        row,
        event: event::PROCESS_EXEC,
        key: attr::PROCESS_EXECUTABLE_PATH,
        value: format!("{TOOLS}/tool"),
        attributes: vec![
            (attr::SECURITY_RULE_NAME, json!(TOOLS)),
            (
                attr::PROCESS_COMMAND_ARGS,
                json!([format!("{TOOLS}/tool"), arg]),
            ),
        ],
        action: action(arg),
    }
}

fn untouched() -> Vec<Untouched> {
    // `unamex` is not `uname`: names match whole.
    vec![]
}

/// The C library, as the programs see it (`/lib` may be a link to
/// `/usr/lib`).
fn libc_path() -> String {
    fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").map_or_else(
        |_| "/lib/x86_64-linux-gnu/libc.so.6".into(),
        |p| p.display().to_string(),
    )
}

/// An allowed program run by the loader maps (and runs) untouched, and a
/// library mapped right after an exec on the same CPU is judged on its own
/// name, not on what the exec left behind.
fn loader_untouched() -> Vec<Untouched> {
    vec![
        Untouched {
            what: "loader-allowed",
            key: attr::FILE_PATH,
            value: "/bin/safeguard-vm-tests".into(),
            action: Action::Run(
                LOADER,
                vec!["/bin/safeguard-vm-tests".into(), "no-such-test".into()],
            ),
        },
        // The exec record leaves argv[0] (ending in a denied name) in the
        // per-CPU scratch just past where libc's path ends; the loader's
        // mapping of libc that follows must be judged on libc's name.
        Untouched {
            what: "mapping-after-a-denied-name",
            key: attr::FILE_PATH,
            value: libc_path(),
            action: Action::Run(
                "/bin/safeguard-vm-tests",
                vec![
                    "--pinned-exec".into(),
                    "/argv0/longer/than/the/path/of/libc/uname".into(),
                    "/bin/safeguard-vm-tests".into(),
                    "no-such-test".into(),
                ],
            ),
        },
    ]
}

fn config(mode: &str, tier: &str, policy: &str, allow: &str) -> String {
    format!(
        "process:\n  enable: true\n  mode: {mode}\n  policy: {policy}\n  memfd_exec: deny\n  allow: [{allow}]\n  \
         deny: [uname, {TOOLS}, {LINKED_RULE}]\nfiles:\n  enable: false\nkernel:\n  tier: {tier}\n"
    )
}

pub fn block(agent: &str) -> Vec<(String, TestResult)> {
    let config = config("block", "lsm", "blacklist", "");
    suite(
        agent,
        "block",
        &config,
        Expect::Blocked,
        &setup,
        ops().into_iter().chain(mapping_ops()).collect(),
        loader_untouched(),
    )
}

pub fn monitor(agent: &str) -> Vec<(String, TestResult)> {
    let config = config("monitor", "lsm", "blacklist", "");
    suite(
        agent,
        "monitor",
        &config,
        Expect::WouldBlock,
        &setup,
        ops().into_iter().chain(mapping_ops()).collect(),
        loader_untouched(),
    )
}

pub fn audit_tier(agent: &str) -> Vec<(String, TestResult)> {
    let config = config("block", "tracepoint", "blacklist", "");
    suite(
        agent,
        "audit-tier",
        &config,
        Expect::WouldBlock,
        &setup,
        ops(),
        untouched(),
    )
}

/// Whitelist: only what `allow` covers may run. The shell and the test's
/// own programs are allowed; `id` is not.
pub fn whitelist(agent: &str) -> Vec<(String, TestResult)> {
    let config = config("block", "lsm", "whitelist", "sh, cat, /bin/safeguard");
    let ops = vec![Op {
        row: "process.exec.whitelist_default",
        event: event::PROCESS_EXEC,
        key: attr::PROCESS_EXECUTABLE_PATH,
        value: "/bin/busybox".into(),
        attributes: vec![(attr::SECURITY_RULE_NAME, json!("whitelist default"))],
        action: exec("/bin/id"),
    }];
    let allowed = vec![Untouched {
        what: "whitelisted-cat",
        key: attr::SECURITY_RULE_RULESET_NAME,
        value: "never-present".into(),
        action: exec("/bin/cat /dev/null"),
    }];
    suite(
        agent,
        "whitelist",
        &config,
        Expect::Blocked,
        &setup,
        ops,
        allowed,
    )
}

/// fork, exec and exit of one process, with the right parent and exit code.
pub fn lifecycle(agent_bin: &str) -> TestResult {
    let config = "process:\n  enable: true\n  mode: monitor\nfiles:\n  enable: false\n";
    let agent = Agent::start(
        agent_bin,
        std::path::Path::new("/tmp/sgtest-lifecycle"),
        config,
        READY_WITHIN,
    )?;
    let ran = safeguard_test_support::run("/bin/sh", &["-c", "exit 3"], None, None)?;
    let (events, _) = agent.stop()?;
    if ran.code != 3 {
        return Err(format!("sh exited {}, want 3", ran.code));
    }
    let me = std::process::id();
    let of = |name: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| {
                safeguard_test_support::event_name(e) == Some(name)
                    && e[attr::PROCESS_PID] == ran.pid
            })
            .collect()
    };
    let (forks, execs, exits) = (
        of(event::PROCESS_FORK),
        of(event::PROCESS_EXEC),
        of(event::PROCESS_EXIT),
    );
    if forks.len() != 1 || execs.len() != 1 || exits.len() != 1 {
        return Err(format!(
            "want one fork, exec and exit for pid {}: got {}, {}, {}",
            ran.pid,
            forks.len(),
            execs.len(),
            exits.len()
        ));
    }
    if forks[0][attr::PROCESS_PARENT_PID] != me {
        return Err(format!("fork's parent is not pid {me}: {}", forks[0]));
    }
    if execs[0][attr::PROCESS_COMMAND_ARGS] != json!(["/bin/sh", "-c", "exit 3"]) {
        return Err(format!("exec arguments: {}", execs[0]));
    }
    if execs[0][attr::DECISION] != "allowed" {
        return Err(format!("exec decision: {}", execs[0]));
    }
    if exits[0][attr::PROCESS_EXIT_CODE] != 3 {
        return Err(format!("exit code: {}", exits[0]));
    }
    let seq = |e: &Value| e[attr::SEQUENCE].as_u64().unwrap_or(0);
    if !(seq(forks[0]) < seq(execs[0]) && seq(execs[0]) < seq(exits[0])) {
        return Err("fork, exec and exit are out of order".into());
    }
    Ok(())
}
