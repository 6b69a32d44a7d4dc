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

/// The denied tool again, 70 directories below TOOLS: deeper than the 64
/// levels a path walk once followed (and then judged cut as if whole).
fn deep_tool() -> String {
    format!("{TOOLS}{}/tool", "/d".repeat(70))
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
    fs::set_permissions(&deep, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
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
        tool_exec("process.exec.execveat", "execveat-test", |args| {
            Action::Run(
                "/bin/safeguard-vm-tests",
                vec!["--execveat".into(), format!("{TOOLS}/tool"), args.into()],
            )
        }),
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

fn config(mode: &str, tier: &str, policy: &str, allow: &str) -> String {
    format!(
        "process:\n  enable: true\n  mode: {mode}\n  policy: {policy}\n  allow: [{allow}]\n  \
         deny: [uname, {TOOLS}]\nfiles:\n  enable: false\nkernel:\n  tier: {tier}\n"
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
        ops(),
        untouched(),
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
        ops(),
        untouched(),
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
            .filter(|e| e["event_name"] == name && e[attr::PROCESS_PID] == ran.pid)
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
