//! The images `make image` builds, and workloads in real containers, under
//! podman on this host (the audit and cgroup tiers): the agent's image runs
//! and checks the shipped ConfigMap; the agent and the Collector, each in
//! its image in one pod with the DaemonSet's mounts and capabilities,
//! export an open made on the host; a container's events carry podman's id
//! for it, across a restart and after it has exited; a connect from a
//! container to a denied address is refused and named; a `target:
//! container` rule speaks of the container's open and not the host's.
//!
//! Needs root and podman (`scripts/setup.sh host` installs it), and the
//! images (`SAFEGUARD_IMAGE_AGENT`, `SAFEGUARD_IMAGE_OTELCOL`: what
//! `scripts/image.sh` prints); `make test-host` builds them and sets
//! `SAFEGUARD_REQUIRE_IMAGES=1`, under which a missing one fails the test.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use safeguard_test_support::{Agent, TestCgroup, event_name, wait_for, workspace_root};
use semconv::{attr, event};
use serde_json::Value;

/// How often a test looks again for what it waits for.
const POLL: Duration = Duration::from_millis(300);
const AGENT: &str = env!("CARGO_BIN_EXE_safeguard");
/// A workload image: busybox alone, built here from the host's static one.
const WORKLOAD: &str = "localhost/safeguard-test-busybox:latest";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The images under test, or `None` (skip) when not given.
fn images() -> Option<(String, String)> {
    match (
        std::env::var("SAFEGUARD_IMAGE_AGENT"),
        std::env::var("SAFEGUARD_IMAGE_OTELCOL"),
    ) {
        (Ok(agent), Ok(otelcol)) => Some((agent, otelcol)),
        _ => {
            let why = "SAFEGUARD_IMAGE_AGENT and SAFEGUARD_IMAGE_OTELCOL name the images \
                       (scripts/image.sh prints them); `make test-host` sets them";
            assert!(
                std::env::var("SAFEGUARD_REQUIRE_IMAGES").as_deref() != Ok("1"),
                "SAFEGUARD_REQUIRE_IMAGES=1 but not set: {why}"
            );
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// podman with the settings this machine needs (tests/image/containers.conf).
fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .env(
            "CONTAINERS_CONF",
            workspace_root().join("tests/image/containers.conf"),
        )
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run podman")
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The busybox workload image, built once per run.
fn workload_image(dir: &Path) {
    let ctx = dir.join("workload");
    fs::create_dir_all(ctx.join("bin")).unwrap();
    fs::copy("/bin/busybox", ctx.join("bin/busybox")).expect("busybox-static is installed");
    for applet in ["sh", "true", "cat", "nc", "sleep"] {
        std::os::unix::fs::symlink("busybox", ctx.join("bin").join(applet)).unwrap();
    }
    fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY bin/ /bin/\nENTRYPOINT [\"/bin/sh\", \"-c\"]\n",
    )
    .unwrap();
    podman_ok(&["build", "--quiet", "--tag", WORKLOAD, ctx.to_str().unwrap()]);
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sg-image-")
        .tempdir_in("/tmp")
        .unwrap()
}

#[test]
fn the_agent_image_runs_and_checks_the_shipped_configmap() {
    if !is_root() {
        eprintln!("skipped: podman here needs root");
        return;
    }
    let Some((agent, _)) = images() else { return };
    let version = podman_ok(&["run", "--rm", &agent, "--version"]);
    assert_eq!(version, format!("safeguard {}", env!("CARGO_PKG_VERSION")));
    let configmap = workspace_root().join("deploy/kubernetes/safeguard.yaml");
    let checked = podman_ok(&[
        "run",
        "--rm",
        "--read-only",
        "--volume",
        &format!("{}:/etc/safeguard/safeguard.yaml:ro", configmap.display()),
        &agent,
        "check",
        "--config",
        "/etc/safeguard/safeguard.yaml",
    ]);
    assert!(checked.starts_with("configuration is valid"), "{checked}");
    // The labels a registry shows.
    let labels = podman_ok(&["image", "inspect", "--format", "{{json .Labels}}", &agent]);
    let labels: Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(labels["org.opencontainers.image.licenses"].is_string());
}

/// The DaemonSet's agent container, as podman flags: host PID, its
/// capabilities and no more, its mounts, no seccomp filter.
fn daemonset_agent_flags(config: &Path) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--pid=host",
        "--read-only",
        "--cap-drop=ALL",
        "--cap-add=BPF,PERFMON,NET_ADMIN,SYS_RESOURCE,DAC_READ_SEARCH,SYS_PTRACE",
        "--security-opt=seccomp=unconfined",
        "--security-opt=no-new-privileges",
        "--volume=/sys/fs/bpf:/sys/fs/bpf",
        "--volume=/sys/kernel/btf:/sys/kernel/btf:ro",
        "--volume=/sys/kernel/security:/sys/kernel/security:ro",
        "--volume=/sys/kernel/tracing:/sys/kernel/tracing:ro",
        "--volume=/sys/fs/cgroup:/sys/fs/cgroup:ro",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    flags.push(format!(
        "--volume={}:/etc/safeguard/safeguard.yaml:ro",
        config.display()
    ));
    flags
}

#[test]
fn the_agent_and_collector_images_in_one_pod_export_an_open_made_on_the_host() {
    if !is_root() {
        eprintln!("skipped: podman here needs root");
        return;
    }
    let Some((agent, otelcol)) = images() else {
        return;
    };
    let root = scratch();
    let dir = root.path();
    let secret = dir.join("secret/key");
    fs::create_dir_all(secret.parent().unwrap()).unwrap();
    fs::write(&secret, "data\n").unwrap();
    let output = dir.join("collector-out");
    fs::create_dir_all(&output).unwrap();
    // The Collector's user writes there.
    Command::new("chown")
        .args(["10001:10001", output.to_str().unwrap()])
        .status()
        .unwrap();
    let config = dir.join("safeguard.yaml");
    fs::write(
        &config,
        format!(
            "files:\n  mode: monitor\n  deny: [{}]\nkernel:\n  tier: tracepoint\n  protect: false\n\
             log:\n  output: /var/log/safeguard/events.log\n\
             otel:\n  endpoint: http://127.0.0.1:4317\n  batch_timeout_ms: 100\n  spool_dir: /var/lib/safeguard/spool\n",
            secret.parent().unwrap().display()
        ),
    )
    .unwrap();
    let pod = format!("safeguard-test-{}", std::process::id());
    let _ = podman(&["pod", "rm", "--force", &pod]);
    podman_ok(&["pod", "create", "--name", &pod]);
    let cleanup = PodGuard(pod.clone());

    // The Collector with the test configuration (a file exporter) in place
    // of the sidecar's, as its image runs it.
    podman_ok(&[
        "run",
        "--detach",
        "--pod",
        &pod,
        "--read-only",
        "--cap-drop=ALL",
        "--env=OTLP_GRPC_PORT=4317",
        "--env=OTLP_HTTP_PORT=4318",
        "--env=HEALTH_PORT=13133",
        "--env=OUTPUT_DIR=/out",
        &format!(
            "--volume={}:/etc/otelcol/config.yaml:ro",
            workspace_root()
                .join("deploy/collector/test-config.yaml")
                .display()
        ),
        &format!("--volume={}:/out", output.display()),
        &otelcol,
    ]);
    let mut flags = daemonset_agent_flags(&config);
    flags.extend([
        "--detach".to_string(),
        format!("--pod={pod}"),
        "--env=K8S_NODE_NAME=image-test-node".to_string(),
        format!(
            "--volume={}:/var/lib/safeguard",
            dir.join("state").display()
        ),
        format!("--volume={}:/var/log/safeguard", dir.join("logs").display()),
        format!("--volume={}:/run/safeguard", dir.join("run").display()),
        agent.clone(),
    ]);
    for d in ["state", "logs", "run"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut run_args = vec!["run"];
    run_args.extend(args);
    let agent_id = podman_ok(&run_args);
    let ready = wait_for(Duration::from_secs(60), POLL, || {
        let logs = podman(&["logs", &agent_id]);
        let text = String::from_utf8_lossy(&logs.stderr).into_owned()
            + &String::from_utf8_lossy(&logs.stdout);
        text.contains("safeguard ready").then_some(())
    });
    let agent_log = || {
        let logs = podman(&["logs", &agent_id]);
        String::from_utf8_lossy(&logs.stderr).into_owned()
    };
    assert!(ready.is_some(), "the agent in its image: {}", agent_log());

    let cat = Command::new("cat")
        .arg(&secret)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(cat.success());
    let wanted = secret.display().to_string();
    let seen = wait_for(Duration::from_secs(30), POLL, || {
        let logs = fs::read_to_string(output.join("logs.json")).ok()?;
        logs.contains(&wanted).then_some(logs)
    });
    let logs = seen.unwrap_or_else(|| {
        panic!(
            "the open did not reach the Collector in the pod: {}",
            agent_log()
        )
    });
    assert!(logs.contains(event::FILE_OPEN), "{logs}");
    assert!(
        logs.contains("image-test-node"),
        "host.name is the node's: {logs}"
    );
    drop(cleanup);
}

/// Removes the pod and its containers, also when the test fails.
struct PodGuard(String);

impl Drop for PodGuard {
    fn drop(&mut self) {
        let _ = podman(&["pod", "rm", "--force", "--time", "5", &self.0]);
    }
}

/// Events of the agent's event log in `events`, by name.
fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| event_name(e) == Some(name))
        .collect()
}

#[test]
fn container_workloads_are_named_by_podmans_id_across_a_restart_and_after_exit() {
    if !is_root() {
        eprintln!("skipped: podman here needs root");
        return;
    }
    if images().is_none() {
        return;
    }
    let root = scratch();
    workload_image(root.path());
    let agent_dir = root.path().join("agent");
    let agent = Agent::start(
        AGENT,
        &agent_dir,
        "process:\n  enable: true\nkernel:\n  tier: tracepoint\n",
        Duration::from_secs(60),
    )
    .unwrap();

    // One container, started twice.
    let name = format!("safeguard-test-restart-{}", std::process::id());
    let _ = podman(&["rm", "--force", &name]);
    let id = podman_ok(&[
        "create",
        "--name",
        &name,
        WORKLOAD,
        "cat /proc/self/cgroup >/dev/null; true",
    ]);
    podman_ok(&["start", "--attach", &name]);
    podman_ok(&["start", "--attach", &name]);
    // One that exits while the agent is stopped (SIGSTOP), so its records
    // are read after it and its cgroup are gone.
    agent.signal(libc::SIGSTOP);
    let gone = podman_ok(&[
        "run",
        "--rm",
        "--detach",
        WORKLOAD,
        "sleep 0.2; cat /proc/self/stat >/dev/null",
    ]);
    let exited = wait_for(Duration::from_secs(20), POLL, || {
        (!podman(&["container", "exists", &gone]).status.success()).then_some(())
    });
    agent.signal(libc::SIGCONT);
    assert!(exited.is_some(), "the container did not exit");
    let _ = podman(&["rm", "--force", &name]);
    std::thread::sleep(Duration::from_secs(1));
    let (events, log) = agent.stop().unwrap();

    let execs = named(&events, event::PROCESS_EXEC);
    let of = |cid: &str| -> Vec<&&Value> {
        execs
            .iter()
            .filter(|e| e[attr::CONTAINER_ID] == cid)
            .collect()
    };
    let restarted = of(&id);
    let runs: std::collections::BTreeSet<_> = restarted
        .iter()
        .filter(|e| {
            e[attr::PROCESS_COMMAND_ARGS]
                .to_string()
                .contains("cat /proc/self/cgroup")
        })
        .filter_map(|e| e[attr::PROCESS_PID].as_u64())
        .collect();
    assert!(
        runs.len() >= 2,
        "both runs of {id} are named by its id: {restarted:#?}\n{log}"
    );
    for e in &restarted {
        assert_eq!(e[attr::CONTAINER_RUNTIME_NAME], "podman", "{e}");
        // podman's containers/storage record names the image.
        assert_eq!(e[attr::CONTAINER_IMAGE_NAME], WORKLOAD, "{e}");
    }
    assert!(
        !of(&gone).is_empty(),
        "a container gone before its records were read is still named: {:#?}\n{log}",
        execs
            .iter()
            .filter(|e| e.get(attr::CONTAINER_ID).is_some())
            .collect::<Vec<_>>()
    );

    // `safeguard learn` from that log: the image's containers get a policy
    // of their own, next to the host's, that `check` accepts.
    let policy = root.path().join("learned.yaml");
    let learned = Command::new(AGENT)
        .arg("learn")
        .arg("--from")
        .arg(agent_dir.join("events.jsonl"))
        .arg("--output")
        .arg(&policy)
        .output()
        .expect("run safeguard learn");
    let stderr = String::from_utf8_lossy(&learned.stderr);
    assert!(learned.status.success(), "safeguard learn: {stderr}");
    let image_policy = root
        .path()
        .join("learned.image-localhost_safeguard-test-busybox_latest.yaml");
    let yaml = std::fs::read_to_string(&image_policy)
        .unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", image_policy.display()));
    assert!(yaml.contains("target: container"), "{yaml}");
    assert!(!yaml.contains("target: host"), "{yaml}");
    // The workload's shell ran in the container: its path, in the
    // container's root, is in the image's whitelist.
    let shell = restarted
        .iter()
        .find_map(|e| e[attr::PROCESS_EXECUTABLE_PATH].as_str())
        .expect("an exec path in the container");
    assert!(yaml.contains(&format!("- {shell:?}")), "{shell} in {yaml}");
    let checked = Command::new(AGENT)
        .arg("check")
        .arg("--config")
        .arg(&image_policy)
        .output()
        .expect("run safeguard check");
    assert!(
        checked.status.success(),
        "check refused {}: {}{}",
        image_policy.display(),
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn a_connect_from_a_container_to_a_denied_address_is_refused_and_named() {
    if !is_root() {
        eprintln!("skipped: podman here needs root");
        return;
    }
    if images().is_none() {
        return;
    }
    let Some(cgroup) = TestCgroup::new() else {
        eprintln!("skipped: no writable cgroup v2 hierarchy");
        return;
    };
    let root = scratch();
    workload_image(root.path());
    // The container's cgroup is made below the test's (podman's cgroupfs
    // manager names the parent by its path from the hierarchy's root).
    let parent = PathBuf::from("/").join(cgroup.0.file_name().unwrap());
    let agent_dir = root.path().join("agent");
    let agent = Agent::start(
        AGENT,
        &agent_dir,
        &format!(
            "network:\n  enable: true\n  mode: block\n  cidr:\n    deny: [127.0.0.2/32]\n  cgroup: {}\n\
             kernel:\n  tier: tracepoint\n",
            cgroup.0.display()
        ),
        Duration::from_secs(60),
    )
    .unwrap();
    let cidfile = root.path().join("cid");
    let out = podman(&[
        "run",
        "--rm",
        "--network=host",
        &format!("--cgroup-parent={}", parent.display()),
        &format!("--cidfile={}", cidfile.display()),
        WORKLOAD,
        "nc -w 2 127.0.0.2 9 </dev/null",
    ]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let id = fs::read_to_string(&cidfile).unwrap_or_default();
    let (events, log) = agent.stop().unwrap();
    assert!(!out.status.success(), "the connect is refused: {said}");
    assert!(said.contains("Operation not permitted"), "{said}");
    let refused = named(&events, event::NETWORK_CONNECT);
    assert!(
        refused
            .iter()
            .any(|e| e[attr::CONTAINER_ID] == id.trim() && e[attr::DECISION] == "blocked"),
        "no blocked connect named {id}: {refused:#?}\n{log}"
    );
}

/// One `cat /etc/hostname` in a container and two on the host (one in a
/// mount namespace of its own), under a
/// files rule on `/etc/hostname` with `target`: the events of each, by
/// where they came from (`Some(container id)` or `None`, the host).
fn hostname_reads(target: &str) -> Vec<(Option<String>, Value)> {
    let root = scratch();
    workload_image(root.path());
    let agent_dir = root.path().join("agent");
    let agent = Agent::start(
        AGENT,
        &agent_dir,
        &format!(
            "files:\n  enable: true\n  mode: monitor\n  target: {target}\n  deny: [/etc/hostname]\n\
             kernel:\n  tier: tracepoint\n"
        ),
        Duration::from_secs(60),
    )
    .unwrap();
    let cidfile = root.path().join("cid");
    let in_container = podman(&[
        "run",
        "--rm",
        &format!("--cidfile={}", cidfile.display()),
        WORKLOAD,
        "cat /etc/hostname >/dev/null",
    ]);
    let id = fs::read_to_string(&cidfile).unwrap_or_default();
    // A task in a mount namespace of its own is no container.
    let on_host = ["/bin/cat", "/bin/unshare -m /bin/cat"].map(|cmd| {
        let mut words = cmd.split(' ');
        Command::new(words.next().unwrap())
            .args(words)
            .arg("/etc/hostname")
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    });
    std::thread::sleep(Duration::from_secs(1));
    let (events, log) = agent.stop().unwrap();
    assert!(
        in_container.status.success() && on_host == [true; 2] && !id.trim().is_empty(),
        "monitor mode refuses nothing: {}",
        String::from_utf8_lossy(&in_container.stderr)
    );
    let reads: Vec<_> = named(&events, event::FILE_OPEN)
        .into_iter()
        .filter(|e| e[attr::FILE_PATH] == "/etc/hostname" && e[attr::PROCESS_COMM] == "cat")
        .map(|e| (e[attr::CONTAINER_ID].as_str().map(str::to_owned), e.clone()))
        .collect();
    for (container, e) in &reads {
        assert!(
            container.is_none() || container.as_deref() == Some(id.trim()),
            "an open from another container: {e}\n{log}"
        );
        assert_eq!(e[attr::PROCESS_IN_CONTAINER], container.is_some(), "{e}");
        assert_eq!(e[attr::DECISION], "would_block", "{e}");
    }
    reads
}

#[test]
fn a_target_container_rule_speaks_of_containers_and_a_target_host_rule_of_every_task() {
    if !is_root() {
        eprintln!("skipped: podman here needs root");
        return;
    }
    if images().is_none() {
        return;
    }
    let from = |reads: &[(Option<String>, Value)]| {
        (
            reads.iter().filter(|(c, _)| c.is_some()).count(),
            reads.iter().filter(|(c, _)| c.is_none()).count(),
        )
    };
    let container_rule = hostname_reads("container");
    assert_eq!(
        from(&container_rule),
        (1, 0),
        "target: container reports the container's open, not the host's: {container_rule:#?}"
    );
    let host_rule = hostname_reads("host");
    assert_eq!(
        from(&host_rule),
        (1, 2),
        "target: host reports the host's opens and the container's: {host_rule:#?}"
    );
}
