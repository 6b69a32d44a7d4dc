//! End to end with a real OpenTelemetry Collector on 127.0.0.1: the agent
//! (the tracepoint and cgroup tier of this host) exports what it records as
//! OTLP logs, process spans and metrics, over gRPC and over HTTP; when the
//! Collector goes away it falls back to the local event log and spools, and
//! delivers everything once the Collector is back, across an agent crash.
//!
//! Needs root (eBPF) and the Collector (`SAFEGUARD_OTELCOL`, the path
//! `scripts/collector.sh path` prints); `make test-host` provides both.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use safeguard_test_support::{
    Agent, Launch, TestCgroup,
    collector::{Collector, LogRecord},
    connect_from, read_events, run,
};
use semconv::{attr, event, metric};
use serde_json::Value;

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

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sg-otel-")
        .tempdir_in("/tmp")
        .unwrap()
}

/// A file under a denied prefix.
fn secret(root: &Path) -> PathBuf {
    let secret = root.join("secret/x");
    fs::create_dir_all(secret.parent().unwrap()).unwrap();
    fs::write(&secret, "data\n").unwrap();
    secret
}

fn otel_section(endpoint: &str, protocol: &str, spool: &Path, extra: &str) -> String {
    format!(
        "otel:\n  endpoint: {endpoint}\n  protocol: {protocol}\n  spool_dir: {}\n  batch_timeout_ms: 100\n{extra}",
        spool.display()
    )
}

fn launch(output_flag: bool, fresh: bool) -> Launch {
    Launch {
        output_flag,
        fresh,
        env: vec![("OTEL_METRIC_EXPORT_INTERVAL".into(), "500".into())],
        verbatim: false,
    }
}

/// The agent with `config` in `agent_dir`, ready; `fresh`: the directory is
/// emptied first (false when restarting on a spool).
fn start_agent(agent_dir: &Path, config: &str, fresh: bool) -> Agent {
    Agent::launch(
        AGENT,
        agent_dir,
        config,
        Duration::from_secs(60),
        &launch(false, fresh),
    )
    .unwrap()
}

fn records_of<'a>(records: &'a [LogRecord], name: &str) -> Vec<&'a LogRecord> {
    records.iter().filter(|r| r.event_name == name).collect()
}

/// The acceptance scenario: a blocked connect and an audited open, seen in
/// the Collector's output as log records, a process span with its parent,
/// log records linked to it, and the blocked-operations metric.
fn blocked_connect_and_audited_open(protocol: &str) {
    let Some(cgroup) = TestCgroup::new() else {
        eprintln!("skipped: no writable cgroup v2 hierarchy");
        return;
    };
    let root = scratch();
    let collector = Collector::start(&root.path().join("collector")).unwrap();
    let endpoint = match protocol {
        "grpc" => collector.grpc_endpoint(),
        _ => collector.http_endpoint(),
    };
    let secret = secret(root.path());
    let denied = secret.parent().unwrap();
    let agent_dir = root.path().join("agent");
    let config = format!(
        "files:\n  mode: monitor\n  deny: [{denied}]\n\
         process:\n  enable: true\n\
         network:\n  enable: true\n  mode: block\n  cidr:\n    deny: [127.0.0.2/32]\n  cgroup: {cgroup}\n\
         kernel:\n  tier: tracepoint\n\
         log:\n  output: {local}\n{otel}",
        denied = denied.display(),
        cgroup = cgroup.0.display(),
        local = agent_dir.join("events.log").display(),
        otel = otel_section(&endpoint, protocol, &agent_dir.join("spool"), ""),
    );
    let mut how = launch(false, true);
    how.env.push((
        "OTEL_RESOURCE_ATTRIBUTES".into(),
        "deployment.environment.name=e2e%20test".into(),
    ));
    how.env.push(("K8S_NODE_NAME".into(), "node-7".into()));
    let agent = Agent::launch(AGENT, &agent_dir, &config, Duration::from_secs(60), &how).unwrap();

    // sh runs cat: the open happens in a child of a child of this test.
    let sh = run(
        "sh",
        &["-c", &format!("cat {} >/dev/null", secret.display())],
        None,
        None,
    )
    .unwrap();
    assert_eq!(
        sh.code, 0,
        "monitor mode lets the open through: {}",
        sh.stderr
    );
    let (connect_pid, errno) = connect_from(Some(&cgroup.0), "127.0.0.2:9".parse().unwrap());
    assert_eq!(
        errno,
        libc::EPERM,
        "the connect is refused: {}",
        agent.log()
    );
    let (_, log) = agent.stop().unwrap();

    // Everything is delivered before the agent exits; the Collector's file
    // exporter writes it out within its flush interval.
    let arrived = |c: &Collector| {
        let records = c.log_records();
        let opened = records.iter().any(|r| {
            r.event_name == event::FILE_OPEN
                && r.attributes[attr::FILE_PATH] == secret.to_str().unwrap()
        });
        let refused = records
            .iter()
            .any(|r| r.event_name == event::NETWORK_CONNECT);
        let counted = c
            .metric_points(metric::OPERATION_DENIED.name)
            .iter()
            .any(|p| p.attributes.get(attr::MODULE) == Some(&Value::from("network")));
        let traced = c
            .spans()
            .iter()
            .any(|s| s.attributes.get(attr::PROCESS_UNFINISHED) == Some(&Value::Bool(true)));
        opened && refused && counted && traced
    };
    assert!(
        collector.wait_until(Duration::from_secs(20), arrived),
        "not everything arrived: {log}"
    );
    let records = collector.log_records();

    // The audited open: its event name, severity, attributes.
    let opens: Vec<_> = records_of(&records, event::FILE_OPEN)
        .into_iter()
        .filter(|r| r.attributes[attr::FILE_PATH] == secret.to_str().unwrap())
        .collect();
    assert_eq!(opens.len(), 1, "{opens:?}");
    let open = opens[0];
    assert_eq!(open.severity_text, "WARNING");
    assert_eq!(open.severity_number, 13, "WARN: would have been blocked");
    assert_eq!(open.attributes[attr::DECISION], "would_block");
    assert_eq!(open.attributes[attr::MODULE], "files");
    assert_eq!(
        open.attributes[attr::SECURITY_RULE_NAME],
        denied.to_str().unwrap()
    );
    assert_eq!(open.attributes[attr::PROCESS_COMM], "cat");
    assert!(open.attributes.contains_key(attr::SEQUENCE));
    assert!(!open.attributes.contains_key("event.name"));
    assert!(open.time_unix_nano > 0 && open.observed_time_unix_nano >= open.time_unix_nano);
    assert_eq!(open.resource[attr::SERVICE_NAME], "safeguard");
    assert_eq!(open.resource[attr::OS_TYPE], "linux");
    assert!(open.resource.contains_key(attr::HOST_NAME));
    assert!(open.resource.contains_key(attr::SERVICE_VERSION));
    assert_eq!(open.resource[attr::K8S_NODE_NAME], "node-7");
    assert_eq!(open.resource["deployment.environment.name"], "e2e test");
    let cat_pid = open.attributes[attr::PROCESS_PID].as_u64().unwrap();

    // The blocked connect.
    let connects = records_of(&records, event::NETWORK_CONNECT);
    assert_eq!(
        connects.len(),
        1,
        "{:?}",
        records
            .iter()
            .map(|r| (&r.event_name, r.attributes.get(attr::PROCESS_PID)))
            .collect::<Vec<_>>()
    );
    let connect = connects[0];
    assert_eq!(connect.severity_text, "ERROR");
    assert!(
        connect.severity_number > open.severity_number,
        "blocked is above would-block"
    );
    assert_eq!(connect.attributes[attr::DECISION], "blocked");
    assert_eq!(connect.attributes[attr::NETWORK_PEER_ADDRESS], "127.0.0.2");
    assert_eq!(connect.attributes[attr::NETWORK_PEER_PORT], 9);
    assert_eq!(connect.attributes[attr::SECURITY_RULE_NAME], "127.0.0.2/32");
    assert_eq!(connect.attributes[attr::PROCESS_PID], connect_pid);

    // Spans: cat's span is a child of sh's, in one trace, and the open's
    // log record points at cat's span; the open rides on it as an event.
    assert!(
        collector.wait_until(Duration::from_secs(20), |c| c
            .spans()
            .iter()
            .any(|s| s.attributes.get(attr::PROCESS_PID) == Some(&Value::from(cat_pid)))),
        "no span for cat"
    );
    let spans = collector.spans();
    let by_pid = |pid: u64| {
        spans
            .iter()
            .find(|s| s.attributes.get(attr::PROCESS_PID) == Some(&Value::from(pid)))
            .unwrap_or_else(|| panic!("no span for pid {pid}: {spans:#?}"))
    };
    let cat = by_pid(cat_pid);
    let sh_span = by_pid(u64::from(sh.pid));
    assert_eq!(cat.name, "cat");
    assert_eq!(cat.parent_span_id, sh_span.span_id, "cat's parent is sh");
    assert_eq!(cat.trace_id, sh_span.trace_id, "one trace per process tree");
    assert_eq!(open.trace_id, cat.trace_id);
    assert_eq!(open.span_id, cat.span_id);
    assert!(
        cat.events.iter().any(|e| e.name == event::FILE_OPEN
            && e.attributes[attr::FILE_PATH] == secret.to_str().unwrap())
    );
    assert_eq!(cat.attributes[attr::PROCESS_BLOCKED_OPERATIONS], 1);
    assert!(
        cat.start_time_unix_nano <= open.time_unix_nano
            && open.time_unix_nano <= cat.end_time_unix_nano
    );
    // sh's own parent is this test process: running before and after the
    // agent, so its span was ended at shutdown and marked unfinished.
    let test_span = spans
        .iter()
        .find(|s| s.span_id == sh_span.parent_span_id)
        .expect("sh's parent span");
    assert_eq!(test_span.attributes[attr::PROCESS_PID], std::process::id());
    assert_eq!(test_span.attributes[attr::PROCESS_UNFINISHED], true);
    let connector = by_pid(u64::from(connect_pid));
    assert_eq!(
        connector.status_code, 2,
        "a blocked operation marks the span as an error"
    );
    assert_eq!(connect.span_id, connector.span_id);

    // The denied-operations metric, with the rule.
    let points = collector.metric_points(metric::OPERATION_DENIED.name);
    let blocked = points
        .iter()
        .rev()
        .find(|p| p.attributes.get(attr::MODULE) == Some(&Value::from("network")))
        .unwrap();
    assert_eq!(blocked.kind, "sum");
    assert_eq!(blocked.unit, metric::OPERATION_DENIED.unit);
    assert_eq!(blocked.attributes[attr::DECISION], "blocked");
    assert_eq!(blocked.attributes[attr::SECURITY_RULE_NAME], "127.0.0.2/32");
    assert_eq!(blocked.value, 1.0);
    let would = points
        .iter()
        .rev()
        .find(|p| p.attributes.get(attr::MODULE) == Some(&Value::from("files")))
        .expect("the open is counted too");
    assert_eq!(would.attributes[attr::DECISION], "would_block");

    // OpenTelemetry's exporter metric: the log records delivered, by the
    // exporter of this protocol, none given up.
    let component = match protocol {
        "grpc" => semconv::component_type::OTLP_GRPC_LOG_EXPORTER,
        _ => semconv::component_type::OTLP_HTTP_LOG_EXPORTER,
    };
    let exported = collector.metric_points(metric::EXPORTER_LOG_EXPORTED.name);
    let delivered = exported
        .iter()
        .rev()
        .find(|p| !p.attributes.contains_key(attr::ERROR_TYPE))
        .unwrap_or_else(|| panic!("no delivered log records counted: {exported:?}"));
    assert_eq!(delivered.attributes[attr::OTEL_COMPONENT_TYPE], component);
    assert_eq!(
        delivered.attributes[attr::OTEL_COMPONENT_NAME],
        format!("{component}/0")
    );
    assert!(delivered.value >= 2.0, "{delivered:?}");
    assert!(
        exported
            .iter()
            .all(|p| !p.attributes.contains_key(attr::ERROR_TYPE)),
        "{exported:?}"
    );

    // The Collector answered throughout: nothing went to the local log.
    let local = read_events(&agent_dir.join("events.log")).unwrap();
    assert!(
        local.is_empty(),
        "fallback only while the Collector is away: {local:?}"
    );
    assert!(!log.contains("falling back"), "{log}");
}

#[test]
fn blocked_connect_and_audited_open_reach_the_collector_over_grpc() {
    require_root!();
    blocked_connect_and_audited_open("grpc");
}

#[test]
fn blocked_connect_and_audited_open_reach_the_collector_over_http() {
    require_root!();
    blocked_connect_and_audited_open("http/protobuf");
}

/// Opens `path` `n` times from this process, at most 20,000 a second, so
/// that the kernel's ring buffer keeps up (drops are tested elsewhere).
fn open_many(path: &Path, n: usize) {
    for i in 0..n {
        let _ = fs::File::open(path);
        if i % 1000 == 999 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// (agent instance, sequence number) of every open of `path` the
/// Collector received, in the order received.
fn opens_received(c: &Collector, path: &Path) -> Vec<(String, u64)> {
    c.log_records()
        .iter()
        .filter(|r| {
            r.event_name == event::FILE_OPEN
                && r.attributes[attr::FILE_PATH] == path.to_str().unwrap()
        })
        .map(|r| {
            (
                r.resource[attr::SERVICE_INSTANCE_ID]
                    .as_str()
                    .unwrap()
                    .to_string(),
                r.attributes[attr::SEQUENCE].as_u64().unwrap(),
            )
        })
        .collect()
}

fn local_opens(log: &Path, path: &Path) -> Vec<u64> {
    read_events(log)
        .unwrap()
        .iter()
        .filter(|e| {
            safeguard_test_support::event_name(e) == Some(event::FILE_OPEN)
                && e[attr::FILE_PATH] == path.to_str().unwrap()
        })
        .map(|e| e[attr::SEQUENCE].as_u64().unwrap())
        .collect()
}

/// Per instance: distinct sequence numbers, duplicates, and whether the
/// first arrivals came in increasing order.
struct Delivery {
    distinct: BTreeSet<u64>,
    duplicates: usize,
    in_order: bool,
}

fn deliveries(received: &[(String, u64)]) -> BTreeMap<String, Delivery> {
    let mut out: BTreeMap<String, Delivery> = BTreeMap::new();
    for (instance, seq) in received {
        let d = out.entry(instance.clone()).or_insert(Delivery {
            distinct: BTreeSet::new(),
            duplicates: 0,
            in_order: true,
        });
        if d.distinct.contains(seq) {
            d.duplicates += 1;
            continue;
        }
        if d.distinct.last().is_some_and(|last| seq < last) {
            d.in_order = false;
        }
        d.distinct.insert(*seq);
    }
    out
}

fn durable_config(denied: &Path, agent_dir: &Path, endpoint: &str, extra: &str) -> String {
    format!(
        "files:\n  mode: monitor\n  deny: [{denied}]\nkernel:\n  tier: tracepoint\n\
         log:\n  output: {local}\n{otel}",
        denied = denied.display(),
        local = agent_dir.join("events.log").display(),
        otel = otel_section(endpoint, "grpc", &agent_dir.join("spool"), extra),
    )
}

/// 100,000 sequence-numbered events; the Collector is killed mid-stream
/// and, while it is away, so is the agent; both come back. Every event
/// reaches the Collector exactly once (a batch the Collector took but did
/// not acknowledge may come twice: counted, and rare), in order per agent
/// run, and what was written while falling back is in the local log.
#[test]
fn collector_and_agent_killed_mid_stream_lose_nothing() {
    require_root!();
    const PHASE: usize = 25_000;
    let root = scratch();
    let mut collector = Collector::start(&root.path().join("collector")).unwrap();
    let secret = secret(root.path());
    let denied = secret.parent().unwrap();
    let agent_dir = root.path().join("agent");
    let config = durable_config(denied, &agent_dir, &collector.grpc_endpoint(), "");
    let local_log = agent_dir.join("events.log");

    // Run A: delivered while the Collector is up.
    let a = start_agent(&agent_dir, &config, true);
    open_many(&secret, PHASE);
    assert!(
        collector.wait_until(Duration::from_secs(60), |c| opens_received(c, &secret)
            .len()
            >= PHASE),
        "phase 1 not delivered: {}",
        a.log()
    );
    // The Collector dies; A falls back (local log) and spools.
    collector.kill();
    open_many(&secret, PHASE);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while local_opens(&local_log, &secret).len() < PHASE && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let fallback = local_opens(&local_log, &secret);
    assert!(
        fallback.len() >= PHASE,
        "only {} in the local log: {}",
        fallback.len(),
        a.log()
    );
    // The agent dies too, with everything in its spool.
    let log_a = a.kill();
    assert!(log_a.contains("falling back"), "{log_a}");

    // Run B on the same spool, with the Collector back.
    collector.restart().unwrap();
    let b = start_agent(&agent_dir, &config, false);
    open_many(&secret, 2 * PHASE);
    let (_, log_b) = b.stop().unwrap();
    assert!(log_b.contains("found undelivered batches"), "{log_b}");
    assert_eq!(
        safeguard_test_support::stopped_counter(&log_b, "kernel_drops"),
        Some(0),
        "{log_b}"
    );

    assert!(
        collector.wait_until(Duration::from_secs(60), |c| {
            deliveries(&opens_received(c, &secret))
                .values()
                .map(|d| d.distinct.len())
                .sum::<usize>()
                >= 4 * PHASE
        }),
        "not all delivered: {:?}",
        deliveries(&opens_received(&collector, &secret))
            .iter()
            .map(|(k, d)| (k.clone(), d.distinct.len(), d.duplicates))
            .collect::<Vec<_>>()
    );
    let received = opens_received(&collector, &secret);
    let runs = deliveries(&received);
    assert_eq!(runs.len(), 2, "two agent runs");
    for (instance, d) in &runs {
        eprintln!(
            "run {instance}: {} distinct, {} duplicates (resent after an unacknowledged request)",
            d.distinct.len(),
            d.duplicates
        );
        assert_eq!(
            d.distinct.len(),
            2 * PHASE,
            "run {instance}: every event exactly once"
        );
        assert!(d.in_order, "run {instance}: in order");
        assert!(
            d.duplicates <= 2 * 512,
            "run {instance}: duplicates must stay rare: {}",
            d.duplicates
        );
    }
    // What went to the local log while falling back did reach the
    // Collector as well.
    let run_a = runs
        .values()
        .find(|d| fallback.iter().all(|s| d.distinct.contains(s)));
    assert!(run_a.is_some(), "the fallback records were replayed");
}

/// An agent whose Collector is away: `events` opens of the denied file,
/// all of them in its local log (so spooled too). The Collector is stopped,
/// not gone: `restart` brings it back.
struct FallenBack {
    collector: Collector,
    agent: Agent,
    agent_dir: PathBuf,
    secret: PathBuf,
}

fn fallen_back(root: &Path, otel_extra: &str, events: usize) -> FallenBack {
    let mut collector = Collector::start(&root.join("collector")).unwrap();
    collector.stop();
    let secret = secret(root);
    let agent_dir = root.join("agent");
    let config = durable_config(
        secret.parent().unwrap(),
        &agent_dir,
        &collector.grpc_endpoint(),
        otel_extra,
    );
    let agent = start_agent(&agent_dir, &config, true);
    open_many(&secret, events);
    let local_log = agent_dir.join("events.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while local_opens(&local_log, &secret).len() < events && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        local_opens(&local_log, &secret).len(),
        events,
        "all in the local log: {}",
        agent.log()
    );
    FallenBack {
        collector,
        agent,
        agent_dir,
        secret,
    }
}

/// The last `safeguard.spool.record.count` point says the spool is empty.
fn spool_empty(c: &Collector) -> bool {
    c.metric_points(metric::SPOOL_RECORD_COUNT.name)
        .last()
        .is_some_and(|p| p.value == 0.0)
}

/// Export failures counted with `error.type=encoding`.
fn encoding_failures(c: &Collector) -> f64 {
    c.metric_points(metric::EXPORT_REQUEST_FAILED.name)
        .iter()
        .filter(|p| {
            p.attributes.get(attr::ERROR_TYPE).and_then(Value::as_str)
                == Some(semconv::error_type::ENCODING)
        })
        .map(|p| p.value)
        .fold(0.0, f64::max)
}

/// With the Collector away and a small spool, the oldest batches are
/// evicted: they are in the local log, counted in
/// `safeguard.spool.record.evicted`, and together with what is delivered
/// later account for every event.
#[test]
fn a_full_spool_evicts_oldest_into_the_local_log_and_counts_them() {
    require_root!();
    const EVENTS: usize = 5_000;
    let root = scratch();
    let FallenBack {
        mut collector,
        agent,
        secret,
        ..
    } = fallen_back(
        root.path(),
        "  batch_size: 100\n  spool_max_bytes: 262144\n",
        EVENTS,
    );

    collector.restart().unwrap();
    let evicted = |c: &Collector| {
        c.metric_points(metric::SPOOL_RECORD_EVICTED.name)
            .last()
            .map_or(0, |p| p.value as usize)
    };
    assert!(
        collector.wait_until(Duration::from_secs(60), |c| spool_empty(c)
            && evicted(c) > 0),
        "spool not drained: {}",
        agent.log()
    );
    let (_, log) = agent.stop().unwrap();
    let delivered = deliveries(&opens_received(&collector, &secret));
    let delivered = delivered.values().next().map_or(0, |d| d.distinct.len());
    let evicted = evicted(&collector);
    eprintln!("delivered {delivered}, evicted {evicted}");
    assert!(evicted > 0 && delivered > 0, "{log}");
    assert_eq!(
        delivered + evicted,
        EVENTS,
        "every event delivered or evicted (and counted): {log}"
    );
    assert!(log.contains("spool is full"), "{log}");
}

/// A batch a previous run left that no longer decodes is moved aside,
/// named in the log and counted (`error.type=encoding`); the Collector
/// would refuse it at every try, and the batches behind it would wait
/// forever.
#[test]
fn a_damaged_spooled_batch_is_moved_aside_and_does_not_hold_back_delivery() {
    require_root!();
    const EVENTS: usize = 200;
    let root = scratch();
    let collector = Collector::start(&root.path().join("collector")).unwrap();
    let secret = secret(root.path());
    let agent_dir = root.path().join("agent");
    let spool = agent_dir.join("spool");
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
        .create(&spool)
        .unwrap();
    let damaged = spool.join("00000000000000000001.logs.5.r");
    fs::write(&damaged, [0xff; 64]).unwrap();
    let config = durable_config(
        secret.parent().unwrap(),
        &agent_dir,
        &collector.grpc_endpoint(),
        "",
    );
    let agent = start_agent(&agent_dir, &config, false);
    open_many(&secret, EVENTS);
    assert!(
        collector.wait_until(Duration::from_secs(60), |c| {
            opens_received(c, &secret).len() >= EVENTS && encoding_failures(c) == 1.0
        }),
        "opens received: {}, encoding failures: {}: {}",
        opens_received(&collector, &secret).len(),
        encoding_failures(&collector),
        agent.log()
    );
    let (_, log) = agent.stop().unwrap();
    let aside = spool.join("00000000000000000001.logs.5.r.damaged");
    assert!(aside.exists() && !damaged.exists(), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("does not decode") && l.contains(aside.to_str().unwrap())),
        "{log}"
    );
}

/// A batch damaged on disk while the agent runs: the Collector answers it
/// with an error at every try, so once it does the agent checks the batch,
/// moves it aside and goes on; its records were written to the local log
/// while the Collector was away, so every event is delivered or there.
#[test]
fn a_batch_damaged_while_spooled_is_set_aside_once_the_collector_answers() {
    require_root!();
    const EVENTS: usize = 300;
    let root = scratch();
    let FallenBack {
        mut collector,
        agent,
        agent_dir,
        secret,
    } = fallen_back(root.path(), "  batch_size: 100\n", EVENTS);
    // The oldest spooled log batch gets damaged.
    let mut batches: Vec<PathBuf> = fs::read_dir(agent_dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().contains(".logs."))
        .collect();
    batches.sort();
    let damaged = batches.first().expect("spooled log batches").clone();
    fs::write(&damaged, [0xff; 64]).unwrap();

    collector.restart().unwrap();
    assert!(
        collector.wait_until(Duration::from_secs(60), |c| encoding_failures(c) == 1.0
            && spool_empty(c)),
        "encoding failures {}, spool not drained: {}",
        encoding_failures(&collector),
        agent.log()
    );
    let (_, log) = agent.stop().unwrap();
    let aside = PathBuf::from(format!("{}.damaged", damaged.display()));
    assert!(aside.exists(), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("does not decode") && l.contains(aside.to_str().unwrap())),
        "{log}"
    );
    // `<seq>.logs.<records>.<r|l>`: what the damaged batch held is only in
    // the local log; everything else reached the Collector.
    let name = damaged.file_name().unwrap().to_str().unwrap().to_owned();
    let lost: usize = name.split('.').nth(2).unwrap().parse().unwrap();
    let delivered = deliveries(&opens_received(&collector, &secret));
    let delivered = delivered.values().next().map_or(0, |d| d.distinct.len());
    assert!(lost > 0, "{name}");
    assert_eq!(delivered + lost, EVENTS, "{log}");
}

/// A CA, and a certificate for 127.0.0.1 it signed: (ca, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, ca_key, cert, key, csr) = (
        dir.join("ca.pem"),
        dir.join("ca.key"),
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("server.csr"),
    );
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p = |p: &PathBuf| p.to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=safeguard test CA",
        "-keyout",
        &p(&ca_key),
        "-out",
        &p(&ca),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
    ]);
    let ext = dir.join("san.ext");
    fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca),
        "-CAkey",
        &p(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&cert),
    ]);
    (ca, cert, key)
}

/// Over TLS, with the CA given in `otel.ca_file`, events arrive; without
/// it the Collector's certificate is not trusted and the agent falls back,
/// saying why.
fn tls(protocol: &str) {
    let root = scratch();
    let (ca, cert, key) = certificates(root.path());
    let collector = Collector::start_tls(&root.path().join("collector"), &cert, &key).unwrap();
    let endpoint = match protocol {
        "grpc" => collector.grpc_endpoint(),
        _ => collector.http_endpoint(),
    }
    .replace("http://", "https://");
    let secret = secret(root.path());
    for (trusted, dir) in [(true, "trusted"), (false, "untrusted")] {
        let agent_dir = root.path().join(dir);
        let extra = if trusted {
            format!("  ca_file: {}\n", ca.display())
        } else {
            String::new()
        };
        let config = format!(
            "files:\n  mode: monitor\n  deny: [{}]\nkernel:\n  tier: tracepoint\nlog:\n  output: {}\n{}",
            secret.parent().unwrap().display(),
            agent_dir.join("events.log").display(),
            otel_section(&endpoint, protocol, &agent_dir.join("spool"), &extra)
        );
        let agent = start_agent(&agent_dir, &config, true);
        open_many(&secret, 3);
        let (_, log) = agent.stop().unwrap();
        if trusted {
            assert!(
                collector.wait_until(Duration::from_secs(20), |c| opens_received(c, &secret)
                    .len()
                    == 3),
                "nothing arrived over TLS: {log}\n{}",
                collector.log()
            );
            assert!(!log.contains("falling back"), "{log}");
        } else {
            assert!(log.contains("falling back"), "{log}");
            assert!(
                log.to_lowercase().contains("certificate"),
                "the reason is named: {log}"
            );
            assert_eq!(local_opens(&agent_dir.join("events.log"), &secret).len(), 3);
            assert_eq!(
                opens_received(&collector, &secret).len(),
                3,
                "the untrusted run sent nothing"
            );
        }
    }
}

#[test]
fn tls_with_a_ca_file_over_grpc() {
    require_root!();
    tls("grpc");
}

#[test]
fn tls_with_a_ca_file_over_http() {
    require_root!();
    tls("http/protobuf");
}
