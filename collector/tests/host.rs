//! Host integration tests: the real `safeguard` binary on this machine's
//! kernel. Where BPF-LSM is refused (as on the development machines), the
//! agent must say so and audit through the tracepoint tier.
//!
//! Tests that load programs need root; without it they say so and skip.

use std::{
    fs,
    io::Read as _,
    net::Shutdown,
    os::{
        fd::AsRawFd,
        unix::{fs::PermissionsExt as _, net::UnixStream, process::CommandExt as _},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use safeguard_test_support::{
    Agent, TestCgroup, connect_from, dns::DnsServer, event_name, events_for, run,
};

const AGENT: &str = env!("CARGO_BIN_EXE_safeguard");

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: loading eBPF programs needs root");
            return;
        }
    };
}

fn start(dir: &tempfile::TempDir, config: &str) -> Agent {
    Agent::start(
        AGENT,
        &dir.path().join("agent"),
        config,
        Duration::from_secs(60),
    )
    .unwrap()
}

/// A directory tree with a watched (denied) prefix and a sibling that only
/// shares leading characters with it.
fn workload_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::Builder::new()
        .prefix("sg-host-")
        .tempdir_in("/tmp")
        .unwrap();
    let secret = root.path().join("secret/x");
    let sibling = root.path().join("secrets.d/x");
    for p in [&secret, &sibling] {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "data\n").unwrap();
    }
    (root, secret, sibling)
}

/// `cat path`: (pid, succeeded).
fn cat(path: &Path) -> (u32, bool) {
    let ran = run("cat", &[path.to_str().unwrap()], None, None).unwrap();
    (ran.pid, ran.code == 0)
}

fn on(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn config(watched: &Path, tier: &str) -> String {
    format!(
        "files:\n  enable: true\n  mode: block\n  deny: [{}]\nkernel:\n  tier: {tier}\n",
        watched.display()
    )
}

/// With `kernel.tier: auto`, the agent picks what this kernel allows and
/// says which; on a kernel that refuses BPF-LSM it names the reason and
/// audits opens through tracepoints.
#[test]
fn auto_tier_reports_what_it_chose_and_audits_opens() {
    require_root!();
    let (root, secret, sibling) = workload_dir();
    let watched = root.path().join("secret");
    let agent = start(&root, &config(&watched, "auto"));
    let (pid, ok) = cat(&secret);
    let (_, sibling_ok) = cat(&sibling);
    let (events, log) = agent.stop().unwrap();

    assert!(sibling_ok, "a sibling prefix must never be denied");
    assert!(events_for(&events, on(&sibling)).is_empty(), "{events:?}");
    let mine: Vec<_> = events_for(&events, on(&secret))
        .into_iter()
        .filter(|e| e["process.pid"] == pid)
        .collect();
    assert_eq!(mine.len(), 1, "one event for cat's open: {events:?}\n{log}");
    let e = mine[0];
    assert_eq!(e["safeguard.process.comm"], "cat");
    assert_eq!(e["security_rule.name"], watched.to_str().unwrap());

    if log.contains("BPF-LSM unavailable: ") {
        // The fallback: one line with the reason, then audit-only.
        let line = log
            .lines()
            .find(|l| l.contains("BPF-LSM unavailable: "))
            .unwrap();
        let reason = line.split("BPF-LSM unavailable: ").nth(1).unwrap();
        assert!(reason.len() > 10, "the reason must be stated: {line}");
        assert!(
            log.contains("audit only (fallback to tracepoints)"),
            "{log}"
        );
        assert!(ok, "the tracepoint tier cannot block");
        assert_eq!(e["safeguard.decision"], "would_block");
        assert_eq!(e["safeguard.enforcement.tier"], "audit-only");
    } else {
        assert!(log.contains("enforced by BPF-LSM"), "{log}");
        assert!(!ok, "BPF-LSM in block mode must refuse the open");
        assert_eq!(e["safeguard.decision"], "blocked");
    }
}

/// The tracepoint tier resolves relative paths against the directory they
/// start from, as the kernel saw it during the call: `cd dir && cat
/// secret/x` is audited even though `cat` is gone long before the agent
/// reads the event, and so is an `openat` relative to a directory fd.
#[test]
fn tracepoint_tier_audits_absolute_and_relative_opens() {
    require_root!();
    let (root, secret, _) = workload_dir();
    let watched = root.path().join("secret");
    let agent = start(&root, &config(&watched, "tracepoint"));
    let short_lived = Command::new("sh")
        .args(["-c", "exec cat secret/x >/dev/null"])
        .current_dir(root.path())
        .spawn()
        .unwrap();
    let shell_pid = short_lived.id();
    assert!(short_lived.wait_with_output().unwrap().status.success());
    // openat(dir, "x"): relative to a directory fd, not the working one.
    let dir = fs::File::open(&watched).unwrap();
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c"x".as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    unsafe { libc::close(fd) };
    let own_pid = std::process::id();
    let (pid, ok) = cat(&secret);
    let (events, log) = agent.stop().unwrap();

    assert!(ok);
    assert!(log.contains("files.open: audit only"), "{log}");
    let found = events_for(&events, on(&secret));
    assert!(
        found.iter().any(|e| e["process.pid"] == pid),
        "absolute open by pid {pid} not reported: {events:?}"
    );
    assert!(
        found.iter().any(|e| e["process.pid"] == shell_pid),
        "relative open by short-lived pid {shell_pid} not reported: {events:?}"
    );
    assert!(
        found.iter().any(|e| e["process.pid"] == own_pid),
        "open relative to a directory fd by pid {own_pid} not reported: {events:?}"
    );
    for e in found {
        assert_eq!(e["safeguard.decision"], "would_block");
        assert!(
            e["safeguard.hook"]
                .as_str()
                .unwrap()
                .starts_with("tracepoint/syscalls/sys_enter_open")
        );
        assert!(e["safeguard.sequence"].is_u64());
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
    }
}

/// BPF-LSM required but refused here: start-up fails with the reason.
#[test]
fn lsm_tier_required_fails_clearly_where_unavailable() {
    require_root!();
    let (root, _, _) = workload_dir();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    fs::write(&cfg, config(&root.path().join("secret"), "lsm")).unwrap();
    let out = Command::new(AGENT)
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--output")
        .arg(dir.path().join("events.jsonl"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || stderr.contains("enforced by BPF-LSM") {
        eprintln!("skipped: this kernel runs BPF-LSM");
        return;
    }
    assert!(
        stderr.contains("BPF-LSM is required (kernel.tier: lsm) but unavailable: "),
        "{stderr}"
    );
}

// --- Configuration errors: no root needed -----------------------------------

fn run_with(args: &[&str], yaml: Option<&str>) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(AGENT);
    cmd.args(args);
    if let Some(yaml) = yaml {
        let p = dir.path().join("c.yaml");
        fs::write(&p, yaml).unwrap();
        cmd.arg("--config").arg(p);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_error(code: i32, stderr: &str, needle: &str) {
    assert_ne!(code, 0, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn unknown_mode_in_config_is_a_one_line_error() {
    let (code, err) = run_with(&["run"], Some("files:\n  mode: enforce\n"));
    assert_one_line_error(
        code,
        &err,
        r#"files.mode: "enforce" is not valid: monitor or block"#,
    );
}

#[test]
fn a_policy_too_large_for_the_maps_stops_run_with_the_configuration_status() {
    let mut yaml = String::from("files:\n  enable: true\n  deny:\n");
    for i in 0..70_000 {
        yaml.push_str(&format!("    - /srv/too-large/{i}\n"));
    }
    let (code, err) = run_with(&["run", "--output", "-"], Some(&yaml));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("FILE_RULES: 70001 entries needed"), "{err}");
}

#[test]
fn unknown_mode_flag_is_rejected() {
    let (code, err) = run_with(&["run", "--mode", "enforce"], None);
    assert_ne!(code, 0);
    assert!(
        err.contains("invalid value 'enforce' for '--mode <MODE>'"),
        "{err}"
    );
}

#[test]
fn relative_path_in_config_is_a_one_line_error() {
    let (code, err) = run_with(&["check"], Some("files:\n  deny: [etc/secret]\n"));
    assert_one_line_error(
        code,
        &err,
        r#"files.deny[0]: "etc/secret" is not valid: an absolute path"#,
    );
}

#[test]
fn relative_output_flag_is_a_one_line_error() {
    let (code, err) = run_with(&["run", "--output", "events.jsonl"], None);
    assert_one_line_error(code, &err, r#"--output: "events.jsonl" is not valid"#);
}

#[test]
fn missing_config_file_is_a_one_line_error() {
    let (code, err) = run_with(&["run", "--config", "/nonexistent/safeguard.yaml"], None);
    assert_one_line_error(code, &err, "/nonexistent/safeguard.yaml");
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn check_accepts_a_valid_file() {
    let (code, err) = run_with(
        &["check"],
        Some("files:\n  mode: block\n  deny: [/srv/x]\n"),
    );
    assert_eq!(code, 0, "{err}");
}

/// The process module on the audit tier: a denied program still runs (the
/// tier cannot refuse) and is reported, with its fork, exec and exit.
#[test]
fn process_audit_tier_reports_denied_execs_and_the_life_cycle() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let config = "files:\n  enable: false\nprocess:\n  enable: true\n  mode: block\n  \
                  deny: [sleep]\nkernel:\n  tier: tracepoint\n";
    let agent = start(&dir, config);
    let ran = run("sh", &["-c", "exec sleep 0"], None, None).unwrap();
    let (events, log) = agent.stop().unwrap();

    assert_eq!(ran.code, 0, "the audit tier cannot refuse: {}", ran.stderr);
    assert!(log.contains("process.exec: audit only"), "{log}");
    let of = |name: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| event_name(e) == Some(name) && e["process.pid"] == ran.pid)
            .collect()
    };
    let execs = of("safeguard.process.exec");
    let denied: Vec<_> = execs
        .iter()
        .filter(|e| e["security_rule.name"] == "sleep")
        .collect();
    assert_eq!(denied.len(), 1, "{execs:?}");
    assert_eq!(denied[0]["safeguard.decision"], "would_block");
    assert_eq!(
        denied[0]["safeguard.hook"],
        "raw_tracepoint/sched_process_exec"
    );
    assert_eq!(denied[0]["process.command_args"][0], "sleep");
    assert_eq!(of("safeguard.process.fork").len(), 1, "{events:?}");
    assert_eq!(of("safeguard.process.exit").len(), 1, "{events:?}");
}

/// The audit tier's network programs (cgroup sock_addr) refuse a connect
/// to a denied network from inside the configured cgroup, also spelled as
/// IPv4-mapped IPv6, and report it; a process outside that cgroup is
/// untouched. Never the root cgroup.
#[test]
fn cgroup_tier_refuses_denied_connects_inside_its_cgroup_only() {
    require_root!();
    let Some(cgroup) = TestCgroup::new() else {
        eprintln!("skipped: no writable cgroup v2 hierarchy");
        return;
    };
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipped: python3 is needed for the client");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let target = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "files:\n  enable: false\nnetwork:\n  enable: true\n  mode: block\n  cidr:\n    \
         deny: [127.0.0.2/32]\n  cgroup: {}\nkernel:\n  tier: tracepoint\n",
        cgroup.0.display()
    );
    let agent = start(&dir, &config);
    let (inside_pid, inside) = connect_from(Some(&cgroup.0), target);
    let (_, outside) = connect_from(None, target);
    // The same address spelled as IPv4-mapped IPv6, from an AF_INET6 socket.
    let mapped = std::net::SocketAddr::new(
        match target.ip() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().into(),
            v6 => v6,
        },
        target.port(),
    );
    let (mapped_pid, mapped_inside) = connect_from(Some(&cgroup.0), mapped);
    let (events, log) = agent.stop().unwrap();

    assert_eq!(inside, libc::EPERM, "connect inside the cgroup: {log}");
    assert_eq!(outside, 0, "connect outside the cgroup must work");
    assert_eq!(
        mapped_inside,
        libc::EPERM,
        "connect to ::ffff:127.0.0.2 inside the cgroup: {log}"
    );
    assert!(log.contains("network.connect: enforced"), "{log}");
    let reported: Vec<_> = events
        .iter()
        .filter(|e| event_name(e) == Some("safeguard.network.connect"))
        .collect();
    assert_eq!(reported.len(), 2, "{events:?}");
    let m = reported
        .iter()
        .find(|e| e["process.pid"] == mapped_pid)
        .expect("the mapped connect is reported");
    assert_eq!(m["safeguard.hook"], "cgroup/connect6");
    assert_eq!(m["network.peer.address"], "::ffff:127.0.0.2");
    assert_eq!(m["security_rule.name"], "127.0.0.2/32");
    let e = reported
        .iter()
        .find(|e| e["process.pid"] == inside_pid)
        .expect("the IPv4 connect is reported");
    assert_eq!(e["process.pid"], inside_pid);
    assert_eq!(e["safeguard.decision"], "blocked");
    assert_eq!(e["safeguard.hook"], "cgroup/connect4");
    assert_eq!(e["network.peer.address"], "127.0.0.2");
    assert_eq!(e["network.peer.port"], target.port());
    assert_eq!(e["security_rule.name"], "127.0.0.2/32");
}

/// `safeguard status` asks the running agent: tiers per row, rules,
/// counters and the exporter, for people and as JSON; with no agent it says
/// so and fails.
#[test]
fn status_reports_the_running_agent() {
    require_root!();
    let (_root, secret, _) = workload_dir();
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&dir, &config(secret.parent().unwrap(), "tracepoint"));
    cat(&secret);
    let config = agent.config_path();
    let status = |extra: &[&str]| {
        let out = Command::new(AGENT)
            .args(["status", "--config", config.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The event may still be on its way: ask until it is counted.
    let mut json = serde_json::Value::Null;
    for _ in 0..50 {
        let (ok, out, err) = status(&["--json"]);
        assert!(ok, "{err}");
        json = serde_json::from_str(&out).unwrap();
        if json["counters"]["reported"].as_u64() >= Some(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(json["pid"], agent.pid());
    // The deny rule, and the built-in allow of /.
    assert_eq!(json["rules"]["files"], 2);
    assert!(json["counters"]["reported"].as_u64() >= Some(1), "{json}");
    let rows = json["rows"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["row"] == "files.open" && r["tier"] == "audit-only"),
        "{json}"
    );
    assert!(
        rows.iter()
            .any(|r| r["row"] == "files.unlink" && r["tier"] == "unavailable"),
        "{json}"
    );
    assert!(json["export"].is_null(), "export is off in this test");
    let (ok, human, _) = status(&[]);
    assert!(ok);
    assert!(
        human.contains("files.open") && human.contains("audit-only"),
        "{human}"
    );
    assert!(human.contains("OpenTelemetry export: off"), "{human}");
    let socket = dir.path().join("agent/status.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "root only");
    agent.stop().unwrap();
    assert!(!socket.exists(), "the socket goes with the agent");
    let (ok, _, err) = status(&[]);
    assert!(!ok);
    assert!(err.contains("cannot reach the agent"), "{err}");
}

/// `safeguard stop` asks the agent over its status socket to stop: the
/// agent says who asked and stops as on SIGTERM (every event written, the
/// stop line, exit 0), and `stop` returns once it has exited. Before, a
/// client that writes nothing (as `status` before requests) still gets the
/// status; after, `stop` says there is no agent and fails.
#[test]
fn stop_over_the_status_socket_ends_the_agent_as_sigterm_does() {
    require_root!();
    let (_root, secret, _) = workload_dir();
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&dir, &config(secret.parent().unwrap(), "tracepoint"));
    let config = agent.config_path();
    let socket = dir.path().join("agent/status.sock");

    let mut client = UnixStream::connect(&socket).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut body = String::new();
    client.read_to_string(&mut body).unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["pid"], agent.pid(), "{body}");
    let status = Command::new(AGENT)
        .args(["status", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    let (pid, _) = cat(&secret);
    let agent_pid = agent.pid();
    let (events, log) = agent.stop_by_request(AGENT).unwrap();
    let asked = log
        .lines()
        .find(|l| l.contains("stop requested over the status socket by pid "))
        .unwrap_or_else(|| panic!("who asked is not said:\n{log}"));
    assert!(asked.trim_end().ends_with(" uid 0"), "{asked}");
    let mine: Vec<_> = events_for(&events, on(&secret))
        .into_iter()
        .filter(|e| e["process.pid"] == pid)
        .collect();
    assert_eq!(mine.len(), 1, "cat's open, written before exit:\n{log}");
    assert!(
        safeguard_test_support::stopped_counter(&log, "received").is_some(),
        "no stop line:\n{log}"
    );
    assert!(!Path::new(&format!("/proc/{agent_pid}")).exists());
    assert!(!socket.exists(), "the socket goes with the agent");

    let again = Command::new(AGENT)
        .args([
            "stop",
            "--config",
            config.to_str().unwrap(),
            "--timeout",
            "5s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach the agent"), "{err}");
}

/// Only root may stop the agent over its socket. Another user cannot open
/// the socket at all (mode 0600 in a root-only directory); one that reaches
/// it anyway (here it is opened to everyone) is told why not, the agent
/// says so and goes on.
#[test]
fn stop_is_refused_to_a_process_that_is_not_root() {
    require_root!();
    let (_root, secret, _) = workload_dir();
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&dir, &config(secret.parent().unwrap(), "tracepoint"));
    let socket = dir.path().join("agent/status.sock");
    // python3 as nobody: connects, asks to stop, prints the answer.
    let ask_as_nobody = || {
        let child = Command::new("python3")
            .args([
                "-c",
                "import socket, sys\n\
                 s = socket.socket(socket.AF_UNIX)\n\
                 s.connect(sys.argv[1])\n\
                 s.sendall(b'stop\\n')\n\
                 s.shutdown(socket.SHUT_WR)\n\
                 sys.stdout.buffer.write(b''.join(iter(lambda: s.recv(4096), b'')))\n",
                socket.to_str().unwrap(),
            ])
            .uid(65534)
            .gid(65534)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        (pid, out)
    };

    let (_, out) = ask_as_nobody();
    assert!(!out.status.success(), "nobody opened the socket");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PermissionError"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (path, mode) in [
        (dir.path(), 0o711),
        (&dir.path().join("agent"), 0o711),
        (&socket, 0o666),
    ] {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
    let (pid, out) = ask_as_nobody();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["stopping"], false, "{reply}");
    assert_eq!(reply["pid"], agent.pid(), "{reply}");
    let why =
        format!("stop refused: only root (uid 0) may stop the agent; pid {pid} uid 65534 asked");
    assert_eq!(reply["error"], why.as_str(), "{reply}");
    let log = agent.log();
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains(&why)),
        "{log}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        Path::new(&format!("/proc/{}", agent.pid())).exists(),
        "the agent goes on"
    );
    agent.stop().unwrap();
}

/// A process in a cgroup shaped like a Kubernetes container's (containerd,
/// systemd driver) is reported with its container id and pod UID.
#[test]
fn a_container_shaped_cgroup_gives_container_and_pod_identity() {
    require_root!();
    let Some(cgroup) = TestCgroup::new() else {
        eprintln!("skipped: no writable cgroup v2 hierarchy");
        return;
    };
    const ID: &str = "6d2f0e8c1b7a45f3a9e0d4c2b1f8e7a6d5c4b3a2918f7e6d5c4b3a2910fedcba";
    const UID: &str = "5b1e2c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
    let pod = cgroup.0.join(format!(
        "kubepods-besteffort-pod{}.slice",
        UID.replace('-', "_")
    ));
    let container = pod.join(format!("cri-containerd-{ID}.scope"));
    fs::create_dir_all(&container).unwrap();
    let (_root, secret, _) = workload_dir();
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&dir, &config(secret.parent().unwrap(), "tracepoint"));
    let pid = {
        use std::os::unix::process::CommandExt as _;
        let procs = container.join("cgroup.procs");
        let mut cmd = Command::new("cat");
        cmd.arg(&secret).stdout(Stdio::null());
        // SAFETY: only a write(2) of our pid between fork and exec.
        unsafe {
            cmd.pre_exec(move || fs::write(&procs, std::process::id().to_string()));
        }
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        child.wait_with_output().unwrap();
        pid
    };
    let (events, log) = agent.stop().unwrap();
    let _ = fs::remove_dir(&container);
    let _ = fs::remove_dir(&pod);
    let e = events_for(&events, on(&secret));
    assert_eq!(e.len(), 1, "{events:?}\n{log}");
    assert_eq!(e[0]["process.pid"], pid);
    assert_eq!(e[0]["container.id"], ID);
    assert_eq!(e[0]["container.runtime.name"], "containerd");
    assert_eq!(e[0]["k8s.pod.uid"], UID);
}

/// SIGHUP puts a changed policy in force; an invalid configuration is
/// rejected, said and counted, and the running policy stays.
#[test]
fn reload_swaps_the_policy_and_rejects_a_bad_one() {
    require_root!();
    let (_root, secret, sibling) = workload_dir();
    let dir = tempfile::tempdir().unwrap();
    let monitor = |watched: &Path| {
        format!(
            "files:\n  enable: true\n  mode: monitor\n  deny: [{}]\nkernel:\n  tier: tracepoint\n",
            watched.display()
        )
    };
    let mut agent = start(&dir, &monitor(secret.parent().unwrap()));
    cat(&secret);
    agent
        .reload(&monitor(sibling.parent().unwrap()), Duration::from_secs(30))
        .unwrap();
    cat(&secret);
    cat(&sibling);
    agent
        .reload("files:\n  mode: enforce\n", Duration::from_secs(30))
        .unwrap();
    cat(&sibling);
    let (events, log) = agent.stop().unwrap();

    let on_secret = events_for(&events, on(&secret));
    assert_eq!(on_secret.len(), 1, "only before the reload: {events:?}");
    let on_sibling = events_for(&events, on(&sibling));
    assert_eq!(
        on_sibling.len(),
        2,
        "after the reload, and after the rejected one: {events:?}"
    );
    assert_eq!(
        on_sibling[0]["security_rule.name"],
        sibling.parent().unwrap().to_str().unwrap()
    );
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(
        log.contains("configuration reload rejected") && log.contains("files.mode"),
        "{log}"
    );
}

/// Domain rules: a denied name's address is blocked; when the local DNS
/// server starts answering another address, after the TTL the new address
/// is blocked and the old one no longer is.
#[test]
fn domain_rules_follow_the_name_s_addresses() {
    require_root!();
    let Some(cgroup) = TestCgroup::new() else {
        eprintln!("skipped: no writable cgroup v2 hierarchy");
        return;
    };
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipped: python3 is needed for the client");
        return;
    }
    let (old_ip, new_ip) = ("127.0.0.3".parse().unwrap(), "127.0.0.4".parse().unwrap());
    let dns = DnsServer::start("blocked.test", old_ip);
    // Listeners stay open for the connects that are let through.
    let listen_old = std::net::TcpListener::bind((old_ip, 0)).unwrap();
    let listen_new = std::net::TcpListener::bind((new_ip, 0)).unwrap();
    let (old, new) = (
        listen_old.local_addr().unwrap(),
        listen_new.local_addr().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "files:\n  enable: false\nnetwork:\n  enable: true\n  mode: block\n  domain:\n    deny: [blocked.test]\n  \
         nameservers: [127.0.0.1:{}]\n  cgroup: {}\nkernel:\n  tier: tracepoint\n",
        dns.port(),
        cgroup.0.display()
    );
    let agent = start(&dir, &config);
    let connect = |addr| connect_from(Some(&cgroup.0), addr).1;
    assert_eq!(
        connect(old),
        libc::EPERM,
        "the name's address is denied: {}",
        agent.log()
    );
    assert_eq!(connect(new), 0, "another address is not");

    dns.answer("blocked.test", new_ip);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !agent.log().contains("addresses changed") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        connect(new),
        libc::EPERM,
        "the new address is denied: {}",
        agent.log()
    );
    assert_eq!(connect(old), 0, "the old address no longer is");
    let (events, log) = agent.stop().unwrap();
    let refused: Vec<_> = events
        .iter()
        .filter(|e| event_name(e) == Some("safeguard.network.connect"))
        .collect();
    assert_eq!(refused.len(), 2, "{events:?}\n{log}");
    assert_eq!(refused[0]["network.peer.address"], "127.0.0.3");
    assert_eq!(refused[1]["network.peer.address"], "127.0.0.4");
    for e in refused {
        assert_eq!(e["security_rule.name"], "blocked.test");
        assert_eq!(e["security_rule.ruleset.name"], "network.domain.deny");
    }
}

/// `kernel.audit_rate_limit` on the audit tier: one process opening a
/// watched file in a tight loop is reported at most the limit per second,
/// and the rest is counted as sampled away (status and the final line).
#[test]
fn audit_rate_limit_samples_a_flood_and_counts_it() {
    require_root!();
    const OPENS: u64 = 1_000;
    const LIMIT: u64 = 50;
    let (root, secret, _) = workload_dir();
    let watched = root.path().join("secret");
    let config = format!(
        "{}  audit_rate_limit: {LIMIT}\n",
        config(&watched, "tracepoint").replace("mode: block", "mode: monitor")
    );
    let agent = start(&root, &config);
    let started = std::time::Instant::now();
    let flood = Command::new("python3")
        .args([
            "-c",
            &format!("for _ in range({OPENS}): open({:?}).close()", on(&secret)),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = flood.id();
    assert!(flood.wait_with_output().unwrap().status.success());
    let windows = started.elapsed().as_secs() + 1;
    let (events, log) = agent.stop().unwrap();

    let reported = events_for(&events, on(&secret))
        .into_iter()
        .filter(|e| e["process.pid"] == pid)
        .count() as u64;
    assert!(
        (LIMIT..=(LIMIT + 2) * windows).contains(&reported),
        "{reported} reported in {windows} one-second windows, limit {LIMIT}"
    );
    // Other processes' relative opens on this host may be sampled too, so
    // the count is at least what this flood lost.
    let drops = safeguard_test_support::stopped_counter(&log, "kernel_drops")
        .unwrap_or_else(|| panic!("no kernel_drops in the final line: {log}"));
    assert!(
        drops >= OPENS - reported,
        "{OPENS} opens, {reported} reported, only {drops} counted as dropped\n{log}"
    );
}

// --- safeguard generate ------------------------------------------------------

/// `safeguard generate` writes a whitelist of the host as it is, which
/// `check` takes unchanged, and a report of what it found: this test's
/// own executable is allowed to run, the loopback network to be reached,
/// this test's user to connect. `controller generate` (openEuler
/// safeguard's name) writes the same to `demo-whitelist.yaml`, as the
/// original does.
#[test]
fn generate_writes_a_whitelist_check_accepts_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("out/policy.yaml");
    let report = dir.path().join("out/report.json");
    let out = Command::new(AGENT)
        .args(["generate", "--mode", "block", "--output"])
        .arg(&policy)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "the policy goes to the file");
    assert!(stderr.contains("wrote "), "{stderr}");

    let check = Command::new(AGENT)
        .args(["check", "--config"])
        .arg(&policy)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        said.contains("process: block mode, whitelist policy"),
        "{said}"
    );
    assert!(said.contains("mount: disabled"), "{said}");

    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    let strings = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {report:#}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let me = std::env::current_exe().unwrap();
    assert!(
        strings("process_allow").contains(&me.display().to_string()),
        "{report:#}"
    );
    assert!(
        strings("network_cidr_allow").contains(&"127.0.0.0/8".to_string()),
        "{report:#}"
    );
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert!(
        report["network_uid_allow"]
            .as_array()
            .unwrap()
            .contains(&serde_json::Value::from(uid)),
        "{report:#}"
    );
    assert!(
        report["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "root" && a["uid"] == 0),
        "{report:#}"
    );
    assert!(report["hostname"].as_str().is_some_and(|h| !h.is_empty()));

    let alias = Command::new(AGENT)
        .args(["controller", "generate"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        alias.status.success(),
        "{}",
        String::from_utf8_lossy(&alias.stderr)
    );
    assert!(alias.stdout.is_empty(), "the policy goes to the file");
    let yaml = fs::read_to_string(dir.path().join("demo-whitelist.yaml")).unwrap();
    assert!(yaml.contains("policy: whitelist\n"), "{yaml}");
    assert!(
        yaml.contains("mode: monitor\n"),
        "monitor unless asked: {yaml}"
    );
    assert!(
        yaml.contains(&format!("- {:?}", me.display().to_string())),
        "{yaml}"
    );
    // The policy is its owner's alone to read: it says what the host runs.
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        fs::metadata(&policy).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// `dns_proxy` on an address another server holds: the agent does not
/// start, and says which address and why, before loading anything.
#[test]
fn dns_proxy_on_an_address_in_use_stops_the_start_and_says_so() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "dns_proxy:\n  enable: true\n  upstreams: [127.0.0.1:9]\n  bind: [127.0.0.1:{port}]\n\
         status:\n  socket: {}\notel:\n  enable: false\n",
        dir.path().join("status.sock").display()
    );
    let output = dir.path().join("events.jsonl");
    let (code, stderr) = run_with(&["run", "--output", output.to_str().unwrap()], Some(&yaml));
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("dns_proxy.bind 127.0.0.1:{port}"))
            && stderr.to_lowercase().contains("in use"),
        "{stderr}"
    );
    assert!(!stderr.contains("safeguard ready"), "{stderr}");
}
