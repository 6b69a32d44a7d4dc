//! A row suite: start the agent with one policy, perform every operation of
//! a module (real programs and real syscalls), stop the agent, then check
//! each operation's result and its event. One SGTEST line per row and mode.

use std::path::Path;

use safeguard_test_support::Agent;
use semconv::attr;
use serde_json::Value;

use crate::cases::{READY_WITHIN, TestResult};

/// What the agent is expected to do with a denied operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// BPF-LSM in block mode: the operation fails with EPERM.
    Blocked,
    /// Monitor mode or the audit tier: it succeeds and is reported.
    WouldBlock,
}

impl Expect {
    pub fn decision(self) -> &'static str {
        match self {
            Expect::Blocked => semconv::decision::BLOCKED,
            Expect::WouldBlock => semconv::decision::WOULD_BLOCK,
        }
    }
}

/// How an operation is performed.
pub enum Action {
    /// A program, as root: `(program, args)`. Refusal shows as a non-zero
    /// exit and "Operation not permitted" on stderr (or the loader's
    /// "failed to map segment").
    Run(&'static str, Vec<String>),
    /// A syscall from this process: `Err(errno)` on failure.
    Call(Box<dyn Fn() -> Result<(), i32>>),
    /// A connection from this process whose refusal is a dropped SYN: it
    /// shows as a timeout (ETIMEDOUT), not EPERM.
    Inbound(Box<dyn Fn() -> Result<(), i32>>),
}

/// One denied operation and the event it must produce.
pub struct Op {
    pub row: &'static str,
    pub event: &'static str,
    /// Attribute that identifies the event, and its value.
    pub key: &'static str,
    pub value: String,
    /// Further attributes the event must carry.
    pub attributes: Vec<(&'static str, Value)>,
    pub action: Action,
}

/// An operation that must go through unreported (outside the rules).
pub struct Untouched {
    pub what: &'static str,
    pub key: &'static str,
    pub value: String,
    pub action: Action,
}

struct Outcome {
    pid: u32,
    /// `Ok` if it succeeded, else what happened.
    result: Result<(), String>,
    eperm: bool,
}

fn perform(action: &Action) -> Outcome {
    match action {
        Action::Run(program, args) => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match safeguard_test_support::run(program, &args, None, None) {
                Ok(ran) => Outcome {
                    pid: ran.pid,
                    // busybox mount says "permission denied (are you
                    // root?)" for EPERM; the dynamic loader names no
                    // error when a mapping is refused.
                    eperm: ran.stderr.contains("Operation not permitted")
                        || ran.stderr.contains("permission denied (are you root?)")
                        || ran
                            .stderr
                            .contains("failed to map segment from shared object"),
                    result: if ran.code == 0 {
                        Ok(())
                    } else {
                        Err(format!("exit {}: {}", ran.code, ran.stderr.trim()))
                    },
                },
                Err(e) => Outcome {
                    pid: 0,
                    eperm: false,
                    result: Err(e),
                },
            }
        }
        Action::Call(call) | Action::Inbound(call) => {
            let refused = if matches!(action, Action::Inbound(_)) {
                libc::ETIMEDOUT
            } else {
                libc::EPERM
            };
            let r = call();
            Outcome {
                pid: std::process::id(),
                eperm: r == Err(refused),
                result: r.map_err(|errno| format!("errno {errno}")),
            }
        }
    }
}

/// Runs a suite and returns one result per row: `<row>.<label>`.
pub fn suite(
    agent_bin: &str,
    label: &str,
    config: &str,
    expect: Expect,
    setup: &dyn Fn() -> Result<(), String>,
    ops: Vec<Op>,
    untouched: Vec<Untouched>,
) -> Vec<(String, TestResult)> {
    let fail_all = |why: String| -> Vec<(String, TestResult)> {
        ops.iter()
            .map(|op| (format!("{}.{label}", op.row), Err(why.clone())))
            .collect()
    };
    if let Err(e) = setup() {
        return fail_all(format!("setup: {e}"));
    }
    let dir = format!("/tmp/sgtest-{}", label.replace('.', "-"));
    let agent = match Agent::start(agent_bin, Path::new(&dir), config, READY_WITHIN) {
        Ok(a) => a,
        Err(e) => return fail_all(e),
    };
    let outcomes: Vec<Outcome> = ops.iter().map(|op| perform(&op.action)).collect();
    let untouched_outcomes: Vec<Outcome> = untouched.iter().map(|u| perform(&u.action)).collect();
    let events = match agent.stop() {
        Ok((events, _)) => events,
        Err(e) => return fail_all(e),
    };

    let mut results: Vec<(String, TestResult)> = ops
        .iter()
        .zip(&outcomes)
        .map(|(op, outcome)| {
            (
                format!("{}.{label}", op.row),
                check(op, outcome, expect, &events),
            )
        })
        .collect();
    for (u, outcome) in untouched.iter().zip(&untouched_outcomes) {
        let reported = events.iter().any(|e| e[u.key] == u.value.as_str());
        let result = match (&outcome.result, reported) {
            (Err(e), _) => Err(format!("{} failed: {e}", u.what)),
            (Ok(()), true) => Err(format!("{} was reported: {events:?}", u.what)),
            (Ok(()), false) => Ok(()),
        };
        results.push((format!("untouched.{}.{label}", u.what), result));
    }
    results
}

fn check(op: &Op, outcome: &Outcome, expect: Expect, events: &[Value]) -> TestResult {
    match (expect, &outcome.result) {
        (Expect::Blocked, Ok(())) => {
            return Err("the operation succeeded; it must be refused".into());
        }
        (Expect::Blocked, Err(e)) if !outcome.eperm => {
            return Err(format!("refused, but not with EPERM: {e}"));
        }
        (Expect::WouldBlock, Err(e)) => return Err(format!("the operation failed: {e}")),
        _ => {}
    }
    let candidates: Vec<&Value> = events
        .iter()
        .filter(|e| {
            safeguard_test_support::event_name(e) == Some(op.event)
                && e[op.key] == op.value.as_str()
        })
        .filter(|e| e[attr::PROCESS_PID] == outcome.pid)
        .collect();
    let mut want = vec![(attr::DECISION, Value::from(expect.decision()))];
    want.extend(op.attributes.iter().cloned());
    // One operation may cause several events (executing a script also opens
    // it for reading); exactly one must be the one described.
    let matching: Vec<&&Value> = candidates
        .iter()
        .filter(|e| want.iter().all(|(k, v)| e[*k] == *v))
        .collect();
    if matching.len() == 1 {
        return Ok(());
    }
    Err(format!(
        "expected one {} event with {}={:?} from pid {} and {:?}, got {} of {} candidates: {}",
        op.event,
        op.key,
        op.value,
        outcome.pid,
        want,
        matching.len(),
        candidates.len(),
        if candidates.is_empty() {
            summarize(events)
        } else {
            candidates
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        }
    ))
}

/// Events in brief, for failure messages.
fn summarize(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "[{} pid={} {}{}{}]",
                safeguard_test_support::event_name(e).unwrap_or("?"),
                e[attr::PROCESS_PID],
                e[attr::FILE_PATH].as_str().unwrap_or(""),
                e[attr::PROCESS_EXECUTABLE_PATH].as_str().unwrap_or(""),
                e[attr::MOUNT_SOURCE].as_str().unwrap_or(""),
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}
