//! End to end through the backends an operator's Grafana reads: the agent
//! (this host's tracepoint and cgroup tier) exports to the real Collector
//! running the shipped sidecar configuration
//! (`deploy/collector/sidecar-config.yaml`), whose exporters point at
//! Prometheus (its OTLP receiver, the evaluation stack's settings and the
//! shipped alert rules), Jaeger (traces) and VictoriaLogs (logs), all on
//! 127.0.0.1. Each backend is then asked what a dashboard or an alert asks.
//!
//! Needs root (eBPF, a test cgroup), the Collector (`SAFEGUARD_OTELCOL`)
//! and the backends (`SAFEGUARD_PROMETHEUS`, `SAFEGUARD_JAEGER`,
//! `SAFEGUARD_VICTORIALOGS`: the paths `scripts/backends.sh path NAME`
//! prints); `make test-host` provides them all and sets
//! `SAFEGUARD_REQUIRE_BACKENDS=1`, under which a missing one fails the test.
//!
//! This host cannot load BPF-LSM, so what is blocked here is a connect
//! (the cgroup tier); a file open is audited (monitor mode).

use std::{
    fs,
    net::TcpListener,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use safeguard_test_support::{Agent, Launch, TestCgroup, connect_from, wait_for, workspace_root};
use semconv::{attr, event};
use serde_json::Value;

/// How often a test looks again for what it waits for.
const POLL: Duration = Duration::from_millis(500);
const AGENT: &str = env!("CARGO_BIN_EXE_safeguard");
/// The Collector's receiver and health check, as the sidecar configuration
/// fixes them.
const COLLECTOR_GRPC: &str = "http://127.0.0.1:4317";
const COLLECTOR_HEALTH: &str = "http://127.0.0.1:13133/";
const DENIED_ADDRESS: &str = "127.0.0.2";
const DENIED_RULE: &str = "127.0.0.2/32";
/// Blocked connects in the burst: more than the spike alert's handful (10).
const BURST: usize = 15;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The backend binaries from the environment; `None` (skip) when one is
/// missing, a panic when `SAFEGUARD_REQUIRE_BACKENDS=1`.
struct Binaries {
    otelcol: PathBuf,
    prometheus: PathBuf,
    jaeger: PathBuf,
    victoria_logs: PathBuf,
}

impl Binaries {
    fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let found = (
            var("SAFEGUARD_OTELCOL"),
            var("SAFEGUARD_PROMETHEUS"),
            var("SAFEGUARD_JAEGER"),
            var("SAFEGUARD_VICTORIALOGS"),
        );
        match found {
            (Some(otelcol), Some(prometheus), Some(jaeger), Some(victoria_logs)) => Some(Self {
                otelcol,
                prometheus,
                jaeger,
                victoria_logs,
            }),
            _ => {
                let why = "SAFEGUARD_OTELCOL, SAFEGUARD_PROMETHEUS, SAFEGUARD_JAEGER and \
                           SAFEGUARD_VICTORIALOGS name the binaries (scripts/collector.sh path, \
                           scripts/backends.sh path NAME); `make test-host` sets them";
                assert!(
                    std::env::var("SAFEGUARD_REQUIRE_BACKENDS").as_deref() != Ok("1"),
                    "SAFEGUARD_REQUIRE_BACKENDS=1 but not all are set: {why}"
                );
                eprintln!("skipped: {why}");
                None
            }
        }
    }
}

/// A server this test started; killed when dropped. Its output goes to
/// `<name>.log` in the test's directory, shown when something fails.
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(name: &'static str, dir: &Path, mut command: Command) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self { name, child, log }
    }

    /// Waits until GET `url` answers 200 (or the server exits).
    fn ready(self, url: &str) -> Self {
        let mut server = self;
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(url).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{} exited ({status}): {}", server.name, server.output());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready at {url}: {}",
                server.name,
                server.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    fn output(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<_> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// GET `url`: the body of a 200 answer.
fn get(url: &str) -> Result<String, String> {
    ureq::get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))
}

fn get_json(url: &str) -> Result<Value, String> {
    serde_json::from_str(&get(url)?).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

fn encode(s: &str) -> String {
    // Query strings need only the reserved bytes escaped; no crate for it.
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus with the evaluation stack's configuration
/// (`deploy/compose/prometheus/prometheus.yml`), its rules read from
/// `dashboards/alerts/` and evaluated every second.
fn start_prometheus(binary: &Path, dir: &Path) -> (Server, String) {
    let root = workspace_root();
    let shipped =
        fs::read_to_string(root.join("deploy/compose/prometheus/prometheus.yml")).unwrap();
    let config = shipped
        .replace("evaluation_interval: 30s", "evaluation_interval: 1s")
        .replace(
            "  - rules/*.rules.yaml",
            &format!("  - {}/dashboards/alerts/*.rules.yaml", root.display()),
        );
    assert!(
        config.contains("evaluation_interval: 1s") && config.contains("/dashboards/alerts/"),
        "prometheus.yml no longer has the lines this test adapts:\n{shipped}"
    );
    let path = dir.join("prometheus.yml");
    fs::write(&path, config).unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut command = Command::new(binary);
    command
        .arg(format!("--config.file={}", path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus-data").display()
        ))
        .arg(format!(
            "--web.listen-address={}",
            url.trim_start_matches("http://")
        ))
        .arg("--web.enable-otlp-receiver");
    let server = Server::spawn("prometheus", dir, command).ready(&format!("{url}/-/ready"));
    (server, url)
}

/// Jaeger (v2, all in one, memory storage) with `tests/backends/jaeger.yaml`.
fn start_jaeger(binary: &Path, dir: &Path) -> (Server, String, String) {
    let (otlp, http, grpc) = (free_port(), free_port(), free_port());
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(workspace_root().join("tests/backends/jaeger.yaml"))
        .env("JAEGER_OTLP_GRPC_PORT", otlp.to_string())
        .env("JAEGER_QUERY_HTTP_PORT", http.to_string())
        .env("JAEGER_QUERY_GRPC_PORT", grpc.to_string());
    let url = format!("http://127.0.0.1:{http}");
    let server = Server::spawn("jaeger", dir, command).ready(&format!("{url}/api/services"));
    (server, url, format!("127.0.0.1:{otlp}"))
}

fn start_victoria_logs(binary: &Path, dir: &Path) -> (Server, String) {
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut command = Command::new(binary);
    command
        .arg(format!(
            "-storageDataPath={}",
            dir.join("victoria-logs-data").display()
        ))
        .arg(format!(
            "-httpListenAddr={}",
            url.trim_start_matches("http://")
        ));
    let server = Server::spawn("victoria-logs", dir, command).ready(&format!("{url}/health"));
    (server, url)
}

/// The Collector with the shipped sidecar configuration, its exporters
/// pointed at the test's backends through the variables the file reads.
fn start_collector(binary: &Path, dir: &Path, backends: &[(&str, String)]) -> Server {
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(workspace_root().join("deploy/collector/sidecar-config.yaml"))
        .env("STORAGE_DIR", dir.join("collector-queue"))
        .envs(backends.iter().map(|(k, v)| (k, v)));
    Server::spawn("collector", dir, command).ready(COLLECTOR_HEALTH)
}

/// Alerts in state firing, for `host`: their labels.
fn firing(prometheus: &str, host: &str) -> Vec<serde_json::Map<String, Value>> {
    let Ok(answer) = get_json(&format!("{prometheus}/api/v1/alerts")) else {
        return Vec::new();
    };
    answer["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing" && a["labels"]["host_name"] == host)
        .filter_map(|a| a["labels"].as_object().cloned())
        .collect()
}

fn wait_firing(
    prometheus: &str,
    host: &str,
    alert: &str,
    servers: &[&Server],
) -> serde_json::Map<String, Value> {
    wait_for(Duration::from_secs(90), POLL, || {
        firing(prometheus, host)
            .into_iter()
            .find(|l| l["alertname"] == alert)
    })
    .unwrap_or_else(|| {
        let alerts = get(&format!("{prometheus}/api/v1/alerts")).unwrap_or_default();
        let logs: Vec<_> = servers
            .iter()
            .map(|s| format!("--- {}\n{}", s.name, s.output()))
            .collect();
        panic!(
            "{alert} does not fire for {host}; alerts: {alerts}\n{}",
            logs.join("\n")
        )
    })
}

/// A Jaeger span's tag.
fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

fn parent_of(span: &Value) -> Option<&str> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")?["spanID"]
        .as_str()
}

/// VictoriaLogs' answer to a LogsQL query: one JSON object per line.
fn logs_matching(victoria_logs: &str, query: &str) -> Vec<Value> {
    get(&format!(
        "{victoria_logs}/select/logsql/query?query={}",
        encode(query)
    ))
    .unwrap_or_default()
    .lines()
    .filter_map(|l| serde_json::from_str(l).ok())
    .collect()
}

#[test]
fn blocks_drops_and_fallback_reach_prometheus_jaeger_and_victorialogs() {
    if !is_root() {
        eprintln!("skipped: loading eBPF programs needs root");
        return;
    }
    let Some(bin) = Binaries::from_env() else {
        return;
    };
    let Some(cgroup) = TestCgroup::new() else {
        eprintln!("skipped: no writable cgroup v2 hierarchy");
        return;
    };
    let root = tempfile::Builder::new()
        .prefix("sg-backends-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = root.path();

    let (prometheus, prom_url) = start_prometheus(&bin.prometheus, dir);
    let (jaeger, jaeger_url, jaeger_otlp) = start_jaeger(&bin.jaeger, dir);
    let (victoria_logs, vl_url) = start_victoria_logs(&bin.victoria_logs, dir);
    let endpoints = [
        (
            "LOKI_OTLP_ENDPOINT",
            format!("{vl_url}/insert/opentelemetry"),
        ),
        ("TEMPO_OTLP_ENDPOINT", jaeger_otlp),
        (
            "PROMETHEUS_OTLP_ENDPOINT",
            format!("{prom_url}/api/v1/otlp/v1/metrics"),
        ),
    ];
    let mut collector = Some(start_collector(&bin.otelcol, dir, &endpoints));

    // The node this agent speaks for: its host.name, promoted to the
    // host_name label every alert groups by.
    let node = format!("e2e-node-{}", std::process::id());
    let secret = dir.join("secret/key");
    fs::create_dir_all(secret.parent().unwrap()).unwrap();
    fs::write(&secret, "data\n").unwrap();
    let agent_dir = dir.join("agent");
    let config = format!(
        "files:\n  mode: monitor\n  deny: [{denied}]\n\
         process:\n  enable: true\n\
         network:\n  enable: true\n  mode: block\n  cidr:\n    deny: [{DENIED_RULE}]\n  cgroup: {cgroup}\n\
         kernel:\n  tier: tracepoint\n  audit_rate_limit: 20\n\
         log:\n  output: {local}\n\
         otel:\n  endpoint: {COLLECTOR_GRPC}\n  protocol: grpc\n  spool_dir: {spool}\n  batch_timeout_ms: 100\n",
        denied = secret.parent().unwrap().display(),
        cgroup = cgroup.0.display(),
        local = agent_dir.join("events.log").display(),
        spool = agent_dir.join("spool").display(),
    );
    let launch = Launch {
        output_flag: false,
        fresh: true,
        env: vec![
            ("OTEL_METRIC_EXPORT_INTERVAL".into(), "500".into()),
            ("K8S_NODE_NAME".into(), node.clone()),
        ],
        verbatim: false,
    };
    let agent =
        Agent::launch(AGENT, &agent_dir, &config, Duration::from_secs(60), &launch).unwrap();

    // An audited open, and a burst of blocked connects.
    let cat = Command::new("cat")
        .arg(&secret)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(cat.success(), "monitor mode lets the open through");
    for _ in 0..BURST {
        let (_, errno) = connect_from(
            Some(&cgroup.0),
            format!("{DENIED_ADDRESS}:9").parse().unwrap(),
        );
        assert_eq!(
            errno,
            libc::EPERM,
            "the connect is refused: {}",
            agent.log()
        );
    }

    // A process tree: sh → sh → python3, whose connect is refused.
    let pid_file = dir.join("connector.pid");
    let script = dir.join("connect.py");
    fs::write(
        &script,
        format!(
            "import os, socket, sys\nopen({pid:?}, 'w').write(str(os.getpid()))\n\
             try:\n    socket.create_connection(('{DENIED_ADDRESS}', 9), timeout=5)\n\
             except OSError as e:\n    sys.exit(e.errno)\n",
            pid = pid_file.display().to_string()
        ),
    )
    .unwrap();
    let procs = cgroup.0.join("cgroup.procs");
    let mut tree = Command::new("sh");
    tree.args([
        "-c",
        &format!("sh -c 'python3 {}; true'; true", script.display()),
    ]);
    // SAFETY: only a write(2) of our pid between fork and exec.
    unsafe {
        tree.pre_exec(move || fs::write(&procs, std::process::id().to_string()));
    }
    let outer = tree.spawn().unwrap();
    let outer_pid = outer.id();
    assert!(outer.wait_with_output().unwrap().status.success());
    let connector_pid: u64 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // A flood of audited opens past kernel.audit_rate_limit: kernel drops.
    let flood = Command::new("python3")
        .args([
            "-c",
            &format!(
                "for _ in range(500): open({:?}).close()",
                secret.display().to_string()
            ),
        ])
        .status()
        .unwrap();
    assert!(flood.success());

    let servers = [&prometheus, &jaeger, &victoria_logs];

    // Prometheus: the blocked connects fire the spike and first-block
    // alerts for this node, the flood the kernel-drop alert.
    let spike = wait_firing(
        &prom_url,
        &node,
        "SafeguardBlockedOperationsSpike",
        &servers,
    );
    assert_eq!(spike["safeguard_module"], "network");
    assert_eq!(spike["security_rule_name"], DENIED_RULE);
    wait_firing(&prom_url, &node, "SafeguardFirstBlock", &servers);
    let drops = wait_firing(&prom_url, &node, "SafeguardKernelDrops", &servers);
    assert!(
        drops["safeguard_hook"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{drops:?}"
    );

    // Jaeger: one trace holds sh → sh → python3 in parent-child order; the
    // python3 span has status ERROR and the refused connect as its event.
    let trace = wait_for(Duration::from_secs(60), POLL, || {
        let answer = get_json(&format!(
            "{jaeger_url}/api/traces?service=safeguard&limit=1000&lookback=1h"
        ))
        .ok()?;
        answer["data"].as_array()?.iter().find_map(|t| {
            let spans = t["spans"].as_array()?;
            let has = |pid: u64| {
                spans
                    .iter()
                    .any(|s| tag(s, attr::PROCESS_PID).and_then(Value::as_u64) == Some(pid))
            };
            (has(connector_pid) && has(u64::from(outer_pid))).then(|| spans.clone())
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no trace with the process tree in Jaeger: {}\n{}",
            get(&format!("{jaeger_url}/api/services")).unwrap_or_default(),
            jaeger.output()
        )
    });
    let span_of_pid = |pid: u64| {
        trace
            .iter()
            .find(|s| tag(s, attr::PROCESS_PID).and_then(Value::as_u64) == Some(pid))
            .unwrap_or_else(|| panic!("no span for pid {pid}: {trace:#?}"))
    };
    let span_by_id = |id: &str| {
        trace
            .iter()
            .find(|s| s["spanID"] == id)
            .unwrap_or_else(|| panic!("no span {id}: {trace:#?}"))
    };
    let connector = span_of_pid(connector_pid);
    // python3, or python3.11 where python3 is a link to it.
    assert!(
        connector["operationName"]
            .as_str()
            .is_some_and(|n| n.starts_with("python3")),
        "{connector:#}"
    );
    let inner = span_by_id(parent_of(connector).expect("python3 has a parent"));
    let outer = span_by_id(parent_of(inner).expect("the inner sh has a parent"));
    // A span is named after its executable: sh, or dash where sh links
    // to it.
    for shell in [inner, outer] {
        assert!(
            ["sh", "dash"].contains(&shell["operationName"].as_str().unwrap_or_default()),
            "{shell:#}"
        );
    }
    assert_eq!(
        tag(outer, attr::PROCESS_PID).and_then(Value::as_u64),
        Some(u64::from(outer_pid)),
        "the outer sh is the inner sh's parent"
    );
    assert_eq!(
        tag(connector, "otel.status_code").and_then(Value::as_str),
        Some("ERROR"),
        "the blocked process's span is an error: {connector:#}"
    );
    assert_eq!(
        tag(connector, attr::ERROR_TYPE).and_then(Value::as_str),
        Some("blocked")
    );
    let refused = connector["logs"].as_array().into_iter().flatten().any(|l| {
        l["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["key"] == "event" && f["value"] == event::NETWORK_CONNECT)
    });
    assert!(
        refused,
        "the refused connect is the span's event: {connector:#}"
    );

    // VictoriaLogs: the audited open by its event name and path, and a
    // blocked connect by its event name and address.
    let open = wait_for(Duration::from_secs(60), POLL, || {
        logs_matching(
            &vl_url,
            &format!(
                "event_name:={:?} {:?}:={:?}",
                event::FILE_OPEN,
                attr::FILE_PATH,
                secret.display().to_string()
            ),
        )
        .into_iter()
        .next()
    })
    .unwrap_or_else(|| {
        panic!(
            "the open is not in VictoriaLogs: {}",
            victoria_logs.output()
        )
    });
    assert_eq!(open[attr::DECISION], "would_block", "{open:#}");
    let connect = wait_for(Duration::from_secs(60), POLL, || {
        logs_matching(
            &vl_url,
            &format!(
                "event_name:={:?} {:?}:={DENIED_ADDRESS:?}",
                event::NETWORK_CONNECT,
                attr::NETWORK_PEER_ADDRESS
            ),
        )
        .into_iter()
        .next()
    })
    .expect("a blocked connect in VictoriaLogs");
    assert_eq!(connect[attr::DECISION], "blocked", "{connect:#}");
    assert_eq!(connect["host.name"], node.as_str(), "{connect:#}");

    // The Collector goes away: the agent falls back to its local files;
    // once it is back, the fallback counter reaches Prometheus and its
    // alert fires.
    drop(collector.take());
    for _ in 0..3 {
        let (_, errno) = connect_from(
            Some(&cgroup.0),
            format!("{DENIED_ADDRESS}:9").parse().unwrap(),
        );
        assert_eq!(errno, libc::EPERM);
    }
    let fell_back = wait_for(Duration::from_secs(60), POLL, || {
        fs::read_to_string(agent_dir.join("events.log"))
            .ok()
            .filter(|t| !t.trim().is_empty())
    });
    assert!(
        fell_back.is_some(),
        "nothing in the local log: {}",
        agent.log()
    );
    collector = Some(start_collector(&bin.otelcol, dir, &endpoints));
    wait_firing(&prom_url, &node, "SafeguardFallingBack", &servers);

    // Every PromQL panel of the dashboards finds a series.
    let dashboards: Vec<PathBuf> = fs::read_dir(workspace_root().join("dashboards/grafana"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    let panels = Command::new("python3")
        .arg(workspace_root().join("scripts/check-dashboards.py"))
        .arg("--prometheus")
        .arg(&prom_url)
        .args(&dashboards)
        .output()
        .unwrap();
    assert!(
        panels.status.success(),
        "dashboard panels without data:\n{}{}",
        String::from_utf8_lossy(&panels.stdout),
        String::from_utf8_lossy(&panels.stderr)
    );

    let (_, log) = agent.stop().unwrap();
    assert!(!log.contains("panicked"), "{log}");
    drop(collector);
}
