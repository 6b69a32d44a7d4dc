//! `safeguard learn`, round trip: a workload (a shell that reads one file
//! of a protected tree, writes another, and connects to two addresses) is
//! watched by `safeguard learn --duration`; the report names what it did,
//! the policy written is accepted by `safeguard check`, and, enforced by
//! the agent, lets the same workload through untouched while refusing what
//! was never seen: another program, another address, another user, a new
//! file in the tree.
//!
//! The learned policy is a process whitelist for every task of the VM:
//! while it is in force, this test runs only the programs the workload ran
//! while learning (`/bin/sh`, `/bin/cat`, this binary), and the payload
//! meant to be refused.

use std::{
    fs,
    io::BufRead as _,
    net::IpAddr,
    os::unix::fs::PermissionsExt as _,
    process::{Child, ChildStderr, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use safeguard_test_support::{event_name, run};
use semconv::{attr, decision, event};
use serde_json::Value;

use crate::cases::{READY_WITHIN, TestResult, ensure, start};

/// The protected tree (`--protect`).
const TREE: &str = "/srv/learn";
/// Read by the workload.
const READ: &str = "/srv/learn/a";
/// Written by the workload (it exists before: an open, not a creation).
const WRITTEN: &str = "/srv/learn/b";
/// Never used while learning: creating it is refused.
const NEW: &str = "/srv/learn/new";
/// A copy of /bin/true, never run while learning: refused.
const PAYLOAD: &str = "/tmp/payload";
/// This binary, for its `--connect` workload.
const ME: &str = "/bin/safeguard-vm-tests";
/// The addresses the workload connects to (nothing listens on port 9).
const SEEN: [&str; 2] = ["127.0.0.2", "127.0.0.3"];
/// An address never connected to while learning: refused.
const UNSEEN: &str = "127.0.0.4";
/// A user (and group) that never connected while learning: its connect to
/// a learned address is refused. The workload runs as root.
const OTHER_USER: u32 = 1000;
/// Where the learn command's configuration, policy and report go.
const DIR: &str = "/tmp/sgtest-learn";
/// How long `safeguard learn` watches.
const DURATION: &str = "20s";
/// How long the learn command may take to stop and write the policy once
/// the workload has run.
const LEARN_ENDS_WITHIN: Duration = Duration::from_secs(90);
/// The kernel and export settings: the learned policy has neither. The
/// guard (`kernel.protect`, on in block mode) is off, so that the agent
/// can be stopped with a signal.
const SETTINGS: &str = "kernel:\n  tier: lsm\n  protect: false\notel:\n  enable: false\n";

/// The workload: each step must succeed for the shell to exit 0.
fn workload() -> String {
    format!(
        "cat {READ} >/dev/null && echo data > {WRITTEN} && {ME} --connect {}:9 && {ME} --connect {}:9",
        SEEN[0], SEEN[1]
    )
}

/// Removes the protected tree and the payload however the test ends.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(TREE);
        let _ = fs::remove_file(PAYLOAD);
    }
}

pub fn round_trip(agent_bin: &str) -> TestResult {
    let _cleanup = Cleanup;
    setup()?;
    let learned = learn(agent_bin)?;
    check_report(&learned)?;
    check_policy(agent_bin, &learned.policy)?;
    enforce(agent_bin, &learned.policy)
}

fn path_in_dir(name: &str) -> String {
    format!("{DIR}/{name}")
}

fn setup() -> TestResult {
    let _ = fs::remove_dir_all(TREE);
    let _ = fs::remove_dir_all(DIR);
    for dir in [TREE, DIR] {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    }
    fs::write(READ, "read by the workload\n").map_err(|e| format!("write {READ}: {e}"))?;
    fs::write(WRITTEN, "old\n").map_err(|e| format!("write {WRITTEN}: {e}"))?;
    fs::copy("/bin/true", PAYLOAD).map_err(|e| format!("copy /bin/true to {PAYLOAD}: {e}"))?;
    fs::set_permissions(PAYLOAD, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {PAYLOAD}: {e}"))?;
    let config = path_in_dir("learn.yaml");
    let settings = format!(
        "kernel:\n  tier: lsm\notel:\n  enable: false\nstatus:\n  socket: {}\n",
        path_in_dir("status.sock")
    );
    fs::write(&config, settings).map_err(|e| format!("write {config}: {e}"))
}

/// What `safeguard learn` wrote.
struct Learned {
    /// The report, parsed.
    report: Value,
    /// The policy (YAML).
    policy: String,
    /// For messages: whether it ended before the workload was done, and
    /// its stderr.
    context: String,
}

/// Runs `safeguard learn` around two rounds of the workload.
fn learn(agent_bin: &str) -> Result<Learned, String> {
    let (config, policy, report) = (
        path_in_dir("learn.yaml"),
        path_in_dir("policy.yaml"),
        path_in_dir("report.json"),
    );
    let args = [
        "learn",
        "--config",
        &config,
        "--duration",
        DURATION,
        "--protect",
        TREE,
        "--output",
        &policy,
        "--report",
        &report,
        "--mode",
        "block",
    ];
    let mut learning = Learning::spawn(agent_bin, &args)?;
    learning.wait_ready(READY_WITHIN)?;
    for round in 1..=2 {
        let ran = run("/bin/sh", &["-c", &workload()], None, None)
            .map_err(|e| format!("the workload (round {round}) while learning: {e}"))?;
        ensure(ran.code == 0, || {
            format!(
                "the workload (round {round}) failed while learning, exit {}: {}\nlearn stderr:\n{}",
                ran.code,
                ran.stderr,
                learning.log()
            )
        })?;
    }
    // Only a hint for the messages below: the policy may still be complete.
    let early = if learning.has_exited() {
        format!(
            " (safeguard learn had already ended when the workload was done: {DURATION} is short for this machine)"
        )
    } else {
        String::new()
    };
    let status = learning.wait(LEARN_ENDS_WITHIN)?;
    ensure(status.success(), || {
        format!(
            "safeguard learn exited with {status}{early}\nlearn stderr:\n{}",
            learning.log()
        )
    })?;
    let text = fs::read_to_string(&report).map_err(|e| {
        format!(
            "read the report {report}: {e}{early}\nlearn stderr:\n{}",
            learning.log()
        )
    })?;
    let report: Value = serde_json::from_str(&text)
        .map_err(|e| format!("the report {report} is not JSON ({e}): {text}"))?;
    let policy = fs::read_to_string(&policy).map_err(|e| {
        format!(
            "read the policy {policy}: {e}{early}\nlearn stderr:\n{}",
            learning.log()
        )
    })?;
    let context = format!("{early}\nlearn stderr:\n{}", learning.log());
    Ok(Learned {
        report,
        policy,
        context,
    })
}

/// The resolved path of a program, as the kernel reports it in exec events
/// (`/bin/sh` may be a link to busybox).
fn resolved(program: &str) -> Result<String, String> {
    fs::canonicalize(program)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| format!("resolve {program}: {e}"))
}

/// The `key` of each entry of the report's `list`.
fn listed<'a>(report: &'a Value, list: &str, key: &str) -> Vec<&'a str> {
    report[list]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i[key].as_str()).collect())
        .unwrap_or_default()
}

/// An address as a comparable IP (an IPv4-mapped IPv6 one as IPv4).
fn ip(address: &str) -> Option<IpAddr> {
    address.parse::<IpAddr>().ok().map(|a| a.to_canonical())
}

fn check_report(learned: &Learned) -> TestResult {
    let Learned {
        report, context, ..
    } = learned;
    ensure(report["events"].as_u64().is_some_and(|n| n > 0), || {
        format!("the report counts no events: {report}{context}")
    })?;
    let executables = listed(report, "executables", "path");
    for program in ["/bin/sh", "/bin/cat", ME] {
        let path = resolved(program)?;
        ensure(executables.contains(&path.as_str()), || {
            format!("{program} ({path}) is not among the executables learned: {report}{context}")
        })?;
    }
    let destinations: Vec<Option<IpAddr>> = listed(report, "destinations", "address")
        .into_iter()
        .map(ip)
        .collect();
    for address in SEEN {
        ensure(destinations.contains(&ip(address)), || {
            format!("{address} is not among the destinations learned: {report}{context}")
        })?;
    }
    let users: Vec<u64> = report["users"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["id"].as_u64()).collect())
        .unwrap_or_default();
    ensure(users == [0], || {
        format!(
            "the users learned are {users:?}, want [0] (root ran the workload): {report}{context}"
        )
    })?;
    let files = listed(report, "files", "path");
    for path in [READ, WRITTEN] {
        ensure(files.contains(&path), || {
            format!("{path} is not among the files learned: {report}{context}")
        })?;
    }
    Ok(())
}

fn check_policy(agent_bin: &str, policy: &str) -> TestResult {
    let path = path_in_dir("policy.yaml");
    let modes: Vec<&str> = policy
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("mode:"))
        .collect();
    ensure(
        modes.len() >= 3 && modes.iter().all(|m| *m == "mode: block"),
        || format!("--mode block: want every module in block mode, got {modes:?}:\n{policy}"),
    )?;
    let out = Command::new(agent_bin)
        .args(["check", "--config", &path])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawn {agent_bin} check: {e}"))?;
    ensure(out.status.success(), || {
        format!(
            "{agent_bin} check --config {path} refused the learned policy ({}): {}{}\npolicy:\n{policy}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The events the agent reported as refused.
fn blocked(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e[attr::DECISION] == decision::BLOCKED)
        .collect()
}

/// Is there a blocked event named one of `names` whose `key` is `value`?
fn blocked_one(events: &[Value], names: &[&str], key: &str, value: &str) -> bool {
    blocked(events).into_iter().any(|e| {
        event_name(e).is_some_and(|n| names.contains(&n)) && e[key].as_str() == Some(value)
    })
}

/// The agent enforcing the learned policy: the same workload goes
/// through, what it never did is refused and reported.
fn enforce(agent_bin: &str, policy: &str) -> TestResult {
    // The workload must write it again, under the policy.
    fs::write(WRITTEN, "old\n").map_err(|e| format!("write {WRITTEN}: {e}"))?;
    let mut config = policy.to_string();
    if !config.ends_with('\n') {
        config.push('\n');
    }
    config.push_str(SETTINGS);
    let agent = start(agent_bin, "learn-enforce", &config).map_err(|e| {
        format!("the agent did not start with the learned policy: {e}\nconfiguration:\n{config}")
    })?;

    // Nothing is checked before the agent has stopped: it must stop
    // whatever happens here.
    let same = run("/bin/sh", &["-c", &workload()], None, None);
    let payload = Command::new(PAYLOAD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let connect = run(ME, &["--connect", &format!("{UNSEEN}:9")], None, None);
    let other_user = run(
        ME,
        &["--connect", &format!("{}:9", SEEN[0])],
        Some(OTHER_USER),
        None,
    );
    let create = run("/bin/sh", &["-c", &format!("echo x > {NEW}")], None, None);
    let (events, log) = agent.stop()?;

    let same = same.map_err(|e| format!("the workload under the learned policy: {e}"))?;
    ensure(same.code == 0, || {
        format!(
            "the learned workload was refused under the learned policy, exit {}: {}\nblocked: {:?}\nagent log:\n{log}",
            same.code,
            same.stderr,
            blocked(&events)
        )
    })?;
    let written = fs::read_to_string(WRITTEN).map_err(|e| format!("read {WRITTEN}: {e}"))?;
    ensure(written == "data\n", || {
        format!("{WRITTEN} holds {written:?} after the workload, want \"data\\n\"")
    })?;
    for program in ["/bin/sh", "/bin/cat", ME] {
        let path = resolved(program)?;
        ensure(
            !blocked_one(
                &events,
                &[event::PROCESS_EXEC],
                attr::PROCESS_EXECUTABLE_PATH,
                &path,
            ),
            || format!("an exec of {path} was blocked: {:?}", blocked(&events)),
        )?;
    }
    for path in [READ, WRITTEN] {
        ensure(
            !blocked(&events)
                .iter()
                .any(|e| e[attr::FILE_PATH].as_str() == Some(path)),
            || format!("a use of {path} was blocked: {:?}", blocked(&events)),
        )?;
    }
    let by_other_user = |e: &Value| e[attr::PROCESS_REAL_USER_ID] == OTHER_USER;
    for address in SEEN {
        ensure(
            !blocked(&events).iter().any(|e| {
                e[attr::NETWORK_PEER_ADDRESS].as_str().and_then(ip) == ip(address)
                    && !by_other_user(e)
            }),
            || format!("a connect to {address} was blocked: {:?}", blocked(&events)),
        )?;
    }

    // A program never run while learning.
    match payload {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        Err(e) => return Err(format!("exec of {PAYLOAD}: {e}, want EPERM")),
        Ok(status) => {
            return Err(format!(
                "exec of {PAYLOAD} was not refused (it ran, {status})\nagent log:\n{log}"
            ));
        }
    }
    ensure(
        blocked_one(
            &events,
            &[event::PROCESS_EXEC],
            attr::PROCESS_EXECUTABLE_PATH,
            PAYLOAD,
        ),
        || format!("no blocked exec of {PAYLOAD} reported: {events:?}"),
    )?;

    // An address never connected to while learning.
    let connect = connect.map_err(|e| format!("--connect {UNSEEN}:9: {e}"))?;
    ensure(connect.code == libc::EPERM, || {
        format!(
            "connect to {UNSEEN}: exit {}, want {} (EPERM): {}",
            connect.code,
            libc::EPERM,
            connect.stderr
        )
    })?;
    ensure(
        blocked(&events).iter().any(|e| {
            event_name(e) == Some(event::NETWORK_CONNECT)
                && e[attr::NETWORK_PEER_ADDRESS].as_str().and_then(ip) == ip(UNSEEN)
        }),
        || format!("no blocked connect to {UNSEEN} reported: {events:?}"),
    )?;

    // A learned address, from a user that never connected while learning.
    let other_user =
        other_user.map_err(|e| format!("--connect {}:9 as uid {OTHER_USER}: {e}", SEEN[0]))?;
    ensure(other_user.code == libc::EPERM, || {
        format!(
            "connect to {} as uid {OTHER_USER}: exit {}, want {} (EPERM): {}",
            SEEN[0],
            other_user.code,
            libc::EPERM,
            other_user.stderr
        )
    })?;
    ensure(
        blocked(&events).iter().any(|e| {
            event_name(e) == Some(event::NETWORK_CONNECT)
                && e[attr::NETWORK_PEER_ADDRESS].as_str().and_then(ip) == ip(SEEN[0])
                && by_other_user(e)
        }),
        || {
            format!(
                "no blocked connect to {} by uid {OTHER_USER} reported: {events:?}",
                SEEN[0]
            )
        },
    )?;

    // A file never used in the protected tree: creating it is judged
    // before the file is made (path_mknod: safeguard.file.mknod); had it
    // existed, the open would have been (safeguard.file.open).
    let create = create.map_err(|e| format!("sh -c 'echo x > {NEW}': {e}"))?;
    ensure(
        create.code != 0 && create.stderr.contains("Operation not permitted"),
        || {
            format!(
                "creating {NEW} was not refused with EPERM: exit {}: {}",
                create.code, create.stderr
            )
        },
    )?;
    ensure(
        blocked_one(
            &events,
            &[event::FILE_OPEN, event::FILE_MKNOD],
            attr::FILE_PATH,
            NEW,
        ),
        || format!("no blocked open or creation of {NEW} reported: {events:?}"),
    )
}

/// A running `safeguard learn`, its stderr read as it comes.
struct Learning {
    child: Child,
    /// Everything it wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
    /// Its stderr, line by line, until it closes.
    lines: mpsc::Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Learning {
    fn spawn(agent_bin: &str, args: &[&str]) -> Result<Self, String> {
        let mut child = Command::new(agent_bin)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {agent_bin} {}: {e}", args.join(" ")))?;
        let pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let reader = Some(std::thread::spawn({
            let stderr = stderr.clone();
            move || read_lines(pipe, &stderr, &tx)
        }));
        Ok(Self {
            child,
            stderr,
            lines,
            reader,
        })
    }

    /// What it wrote to stderr so far.
    fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits for the line that says the agent watches.
    fn wait_ready(&mut self, within: Duration) -> TestResult {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains("safeguard ready") => return Ok(()),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "safeguard learn not ready after {within:?}\nlearn stderr:\n{}",
                        self.log()
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self
                        .wait(Duration::from_secs(10))
                        .map_or_else(|e| e, |s| s.to_string());
                    return Err(format!(
                        "safeguard learn ended before it was ready ({status})\nlearn stderr:\n{}",
                        self.log()
                    ));
                }
            }
        }
    }

    fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `within` for it to exit, then for its stderr to be read
    /// to the end.
    fn wait(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + within;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(None) => {
                    return Err(format!(
                        "safeguard learn still running {within:?} after the workload ({DURATION} to watch)\nlearn stderr:\n{}",
                        self.log()
                    ));
                }
                Err(e) => return Err(format!("wait for safeguard learn: {e}")),
            }
        };
        // The pipe closes with the process (it starts no other); bounded
        // all the same.
        let closed = Instant::now() + Duration::from_secs(5);
        while self.reader.as_ref().is_some_and(|r| !r.is_finished()) && Instant::now() < closed {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.reader.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(reader) = self.reader.take()
        {
            let _ = reader.join();
        }
        Ok(status)
    }
}

impl Drop for Learning {
    /// A test that failed half way leaves no agent behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads `pipe` to its end: each line kept in `all` and sent on `tx`.
fn read_lines(pipe: ChildStderr, all: &Mutex<String>, tx: &mpsc::Sender<String>) {
    let mut reader = std::io::BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line).into_owned();
                if let Ok(mut all) = all.lock() {
                    all.push_str(&text);
                }
                // The receiver may be gone (the test moved on): keep
                // reading, or the agent would block on a full pipe.
                let _ = tx.send(text);
            }
        }
    }
}
