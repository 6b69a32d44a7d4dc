//! End to end: the highest event rate the agent carries from the kernel to
//! a real OpenTelemetry Collector on 127.0.0.1 for a whole run with nothing
//! lost, on this host's audit tier. A paced workload opens a path the
//! policy denies (monitor mode: every open is one would-block event) at a
//! fixed rate; the Collector (deploy/collector/bench-config.yaml) counts the
//! log records it receives. A run is lossless when the Collector received
//! exactly as many records as the workload made opens and the agent counted
//! no kernel or queue drop. Rates go up from `--start` by doubling until a
//! run loses, then the step halves between the last good and the first bad
//! rate.
//!
//! Also measured: the agent's CPU (% of one core) and peak RSS at each
//! rate, the Collector's CPU, and the agent's CPU when idle.
//!
//! Needs root (the agent), the Collector binary in SAFEGUARD_OTELCOL and
//! SAFEGUARD_OTELCOL_CONFIG=deploy/collector/bench-config.yaml.
//! Prints `SGBENCH e2e ...` lines.
//!
//! Usage: safeguard-e2e-bench --agent PATH [--seconds S] [--start RATE]
//!                            [--max RATE]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use safeguard_test_support::{Agent, Launch, collector::Collector};

const DIR: &str = "/tmp/sgbench-e2e";
const SECRET: &str = "/tmp/sgbench-e2e-files/secret";

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may contain spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // state is field 3 overall, index 0 here; utime 14 → 11, stime 15 → 12.
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// Peak resident set size of `pid` in MiB (VmHWM).
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Log records the Collector's debug exporter reported so far.
fn received(collector: &Collector) -> u64 {
    collector
        .log()
        .lines()
        .filter(|l| l.contains("\"resource logs\""))
        .filter_map(|l| {
            let at = l.find("\"log records\": ")? + "\"log records\": ".len();
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn config(endpoint: &str) -> String {
    config_with_ring(endpoint, 4 << 20)
}

fn config_with_ring(endpoint: &str, ring_bytes: u64) -> String {
    format!(
        "files:\n  enable: true\n  mode: monitor\n  deny: [{SECRET}]\n\
         kernel:\n  tier: tracepoint\n  ring_buffer_bytes: {ring_bytes}\n\
         otel:\n  enable: true\n  endpoint: {endpoint}\n  batch_size: 8192\n  batch_timeout_ms: 200\n  \
         spool_dir: {DIR}/spool\n\
         log:\n  mode: fallback\n  output: {DIR}/events.log\n"
    )
}

struct Run {
    rate: u64,
    opens: u64,
    /// Opens per second the workload made (below `rate` when one thread
    /// cannot open faster on this machine).
    achieved: u64,
    received: u64,
    kernel_drops: u64,
    queue_drops: u64,
    agent_cpu: f64,
    agent_rss: f64,
    collector_cpu: f64,
}

impl Run {
    fn lossless(&self) -> bool {
        self.received == self.opens && self.kernel_drops == 0 && self.queue_drops == 0
    }
}

/// Opens SECRET `rate` times a second for `time`, paced per millisecond;
/// returns how many opens it made.
fn workload(rate: u64, time: Duration) -> u64 {
    let path = std::ffi::CString::new(SECRET).unwrap();
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < time {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while done < due {
            // SAFETY: a valid path; the fd is closed at once.
            unsafe {
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            done += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    done
}

fn run_at(
    agent_bin: &str,
    collector: &Collector,
    rate: u64,
    time: Duration,
) -> Result<Run, String> {
    run_with(
        agent_bin,
        collector,
        &config(&collector.grpc_endpoint()),
        rate,
        time,
    )
}

fn run_with(
    agent_bin: &str,
    collector: &Collector,
    config: &str,
    rate: u64,
    time: Duration,
) -> Result<Run, String> {
    let before = received(collector);
    let agent = Agent::launch(
        agent_bin,
        Path::new(DIR),
        config,
        Duration::from_secs(60),
        &Launch {
            output_flag: false,
            ..Launch::default()
        },
    )?;
    let (a0, c0) = (
        cpu_seconds(agent.pid()),
        cpu_seconds(collector.pid().unwrap_or(0)),
    );
    let started = Instant::now();
    let opens = workload(rate, time);
    let elapsed = started.elapsed().as_secs_f64();
    let (a1, c1) = (
        cpu_seconds(agent.pid()),
        cpu_seconds(collector.pid().unwrap_or(0)),
    );
    let agent_rss = peak_rss_mib(agent.pid());
    let (_, log) = agent.stop_within(Duration::from_secs(300))?;
    let counter = |k| safeguard_test_support::stopped_counter(&log, k).unwrap_or(u64::MAX);
    // What the agent delivered at its stop arrives within moments.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = received(collector) - before;
    while got < opens && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = received(collector) - before;
    }
    Ok(Run {
        rate,
        opens,
        achieved: (opens as f64 / elapsed) as u64,
        received: got,
        kernel_drops: counter("kernel_drops"),
        queue_drops: counter("queue_drops"),
        agent_cpu: (a1 - a0) / elapsed * 100.0,
        agent_rss,
        collector_cpu: (c1 - c0) / elapsed * 100.0,
    })
}

fn main() {
    let mut agent = "/bin/safeguard".to_string();
    let (mut seconds, mut start, mut max) = (60.0, 25_000u64, 400_000u64);
    let mut ring_only = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--agent" => agent = value(),
            "--seconds" => seconds = value().parse().expect("--seconds: a number"),
            "--start" => start = value().parse().expect("--start: a number"),
            "--max" => max = value().parse().expect("--max: a number"),
            "--ring" => ring_only = true,
            other => panic!("unknown argument {other}"),
        }
    }
    std::fs::create_dir_all(Path::new(SECRET).parent().unwrap()).unwrap();
    std::fs::write(SECRET, "x").unwrap();
    let time = Duration::from_secs_f64(seconds);
    let mut collector =
        Collector::start(Path::new("/tmp/sgbench-e2e-collector")).expect("start the Collector");

    if ring_only {
        ring_onset(&agent, &collector);
        collector.stop();
        return;
    }

    // Idle: the agent with nothing to report.
    {
        let idle = Agent::launch(
            &agent,
            Path::new(DIR),
            &config(&collector.grpc_endpoint()),
            Duration::from_secs(60),
            &Launch {
                output_flag: false,
                ..Launch::default()
            },
        )
        .expect("start the agent");
        std::thread::sleep(Duration::from_secs(2));
        let c0 = cpu_seconds(idle.pid());
        let idle_time = Duration::from_secs(20);
        std::thread::sleep(idle_time);
        let cpu = (cpu_seconds(idle.pid()) - c0) / idle_time.as_secs_f64() * 100.0;
        println!("SGBENCH e2e idle agent_cpu_percent {cpu:.3}");
        idle.stop().expect("stop the idle agent");
    }

    let (mut good, mut bad): (Option<u64>, Option<u64>) = (None, None);
    let mut rate = start;
    for _ in 0..6 {
        let run = run_at(&agent, &collector, rate, time).expect("a run");
        println!(
            "SGBENCH e2e run rate={} achieved={} opens={} received={} kernel_drops={} queue_drops={} \
             agent_cpu_percent={:.1} agent_peak_rss_mib={:.1} collector_cpu_percent={:.1} lossless={}",
            run.rate,
            run.achieved,
            run.opens,
            run.received,
            run.kernel_drops,
            run.queue_drops,
            run.agent_cpu,
            run.agent_rss,
            run.collector_cpu,
            run.lossless()
        );
        if run.lossless() && run.achieved < rate * 9 / 10 {
            // The workload, not the agent, is the limit: a higher rate
            // would measure the same.
            println!(
                "SGBENCH e2e workload_limit achieved={} asked={rate}",
                run.achieved
            );
            good = Some(good.map_or(rate, |g| g.max(rate)));
            break;
        }
        if run.lossless() {
            good = Some(good.map_or(rate, |g| g.max(rate)));
        } else {
            bad = Some(bad.map_or(rate, |b| b.min(rate)));
        }
        rate = match (good, bad) {
            (Some(g), None) if g * 2 <= max => g * 2,
            (Some(_), None) => break,
            (None, Some(b)) => b / 2,
            (Some(g), Some(b)) if b - g > g / 8 => (g + b) / 2,
            _ => break,
        };
        if rate < 1_000 {
            break;
        }
    }
    println!(
        "SGBENCH e2e best lossless_rate={} first_lossy_rate={}",
        good.unwrap_or(0),
        bad.map_or("none".into(), |b| b.to_string())
    );
    collector.stop();
}

/// The kernel event rate at which the ring buffer starts to drop, for a
/// small ring buffer and the default one: rates double until the kernel
/// counts a drop or the workload reaches its own limit. Every open is
/// accounted for: received by the Collector, or counted as a kernel or
/// queue drop.
fn ring_onset(agent: &str, collector: &Collector) {
    let time = Duration::from_secs(5);
    for ring_bytes in [64u64 << 10, 4 << 20] {
        let config = config_with_ring(&collector.grpc_endpoint(), ring_bytes);
        let mut rate = 25_000u64;
        let mut onset = None;
        let mut best = 0;
        loop {
            let run = run_with(agent, collector, &config, rate, time).expect("a run");
            let accounted = run.received + run.kernel_drops + run.queue_drops;
            println!(
                "SGBENCH ring run ring_bytes={ring_bytes} rate={rate} achieved={} opens={} \
                 received={} kernel_drops={} queue_drops={} accounted={}",
                run.achieved,
                run.opens,
                run.received,
                run.kernel_drops,
                run.queue_drops,
                accounted == run.opens
            );
            best = best.max(run.achieved);
            if run.kernel_drops > 0 {
                onset = Some(run.achieved);
                break;
            }
            if run.achieved < rate * 9 / 10 || rate >= 1_600_000 {
                break;
            }
            rate *= 2;
        }
        match onset {
            Some(r) => println!("SGBENCH ring onset ring_bytes={ring_bytes} rate={r}"),
            None => println!("SGBENCH ring none ring_bytes={ring_bytes} up_to={best}"),
        }
    }
}
