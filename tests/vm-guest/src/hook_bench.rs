//! Hook overhead: what the agent's programs add to the syscalls they sit
//! on. Each workload (openat+close of an existing and of a missing file,
//! a file renamed and renamed back, connect(2) of a UDP socket to loopback,
//! fork+exec+wait) runs for a fixed
//! time with no agent, with the agent in monitor mode, and in block mode
//! with 1, 100 and 10,000 rules of the relevant kind, none matching the
//! workload: what is measured is the cost of being looked at, not of being
//! reported. One more setup has the programs attached with the workload out
//! of scope (`target: container`): they return after the scope check, so
//! it shows what being attached costs before any program does its work. Rounds interleave the configurations so that drift on a noisy
//! machine hits them all alike; the median round counts. Then one more pass
//! with `kernel.bpf_stats_enabled` reads each program's own run time.
//!
//! Prints `SGBENCH` lines: `SGBENCH hook <tier> <workload> <config> <ns/op>
//! <ratio to no agent> <lowest> <highest round's ratio>` (the ratio is the
//! median of the rounds' ratios, each against no agent in the same round)
//! and `SGBENCH prog <tier> <program> <ns/run> <runs>`.
//!
//! Usage: safeguard-hook-bench [--agent PATH] [--tier lsm|tracepoint]
//!                             [--seconds S] [--rounds N]
//!
//! `--rounds 0` runs only the statistics pass: the programs' own times,
//! quickly, while working on one of them.

use std::{
    ffi::CString,
    net::{SocketAddr, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use safeguard_test_support::{Agent, Launch, TestCgroup};

const DIR: &str = "/tmp/sgbench";
const EXISTING: &str = "/tmp/sgbench-files/present";
const MISSING: &str = "/tmp/sgbench-files/absent";
/// [`EXISTING`]'s name while the rename workload has it renamed.
const RENAMED: &str = "/tmp/sgbench-files/renamed";
/// The one file rule whose path exists, as most real policies have: the
/// programs then also look files up by identity, and that cost is measured.
const DENIED_DIR: &str = "/srv/sgbench-denied";

#[derive(Clone, Copy)]
enum Workload {
    OpenExisting,
    OpenMissing,
    /// `path_rename`: its identity walk runs under `bpf_loop`, step by step.
    Rename,
    Connect,
    ForkExec,
}

impl Workload {
    const ALL: [Workload; 5] = [
        Workload::OpenExisting,
        Workload::OpenMissing,
        Workload::Rename,
        Workload::Connect,
        Workload::ForkExec,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::OpenExisting => "openat+close(existing)",
            Workload::OpenMissing => "openat(missing)",
            Workload::Rename => "rename+rename(back)",
            Workload::Connect => "connect(udp,loopback)",
            Workload::ForkExec => "fork+exec+wait",
        }
    }
}

/// One configuration of the agent, or none.
#[derive(Clone, Copy)]
struct Setup {
    name: &'static str,
    agent: Option<Agented>,
}

/// How the agent runs: mode, rules of each kind, and the modules' target.
#[derive(Clone, Copy)]
struct Agented {
    mode: &'static str,
    rules: usize,
    /// `host`: the workload is judged. `container`: the workload (on the
    /// host) is out of every module's scope, so the programs return after
    /// the scope check: what is left is the cost of being attached at all.
    target: &'static str,
}

const fn agent(mode: &'static str, rules: usize, target: &'static str) -> Option<Agented> {
    Some(Agented {
        mode,
        rules,
        target,
    })
}

/// The set-up the targets are for, also the one the per-program figures
/// come from.
const JUDGED: Option<Agented> = agent("block", 10_000, "host");

const SETUPS: [Setup; 6] = [
    Setup {
        name: "no-agent",
        agent: None,
    },
    Setup {
        name: "attached,out-of-scope",
        agent: agent("block", 10_000, "container"),
    },
    Setup {
        name: "monitor,1-rule",
        agent: agent("monitor", 1, "host"),
    },
    Setup {
        name: "block,1-rule",
        agent: agent("block", 1, "host"),
    },
    Setup {
        name: "block,100-rules",
        agent: agent("block", 100, "host"),
    },
    Setup {
        name: "block,10000-rules",
        agent: JUDGED,
    },
];

/// The configuration: every module on, `rules` non-matching rules of each
/// kind (file paths, executables, networks), the events to a file.
fn config(setup: Agented, tier: &str, cgroup: Option<&Path>) -> String {
    let Agented {
        mode,
        rules,
        target,
    } = setup;
    let list = |f: &dyn Fn(usize) -> String| {
        (0..rules)
            .map(|i| format!("    - {}\n", f(i)))
            .collect::<String>()
    };
    let cgroup = cgroup.map_or(String::new(), |c| format!("  cgroup: {}\n", c.display()));
    format!(
        "files:\n  enable: true\n  mode: {mode}\n  target: {target}\n  deny:\n{files}\
         process:\n  enable: true\n  mode: {mode}\n  target: {target}\n  deny:\n{execs}\
         network:\n  enable: true\n  mode: {mode}\n  target: {target}\n{cgroup}  cidr:\n    deny:\n{nets}\
         kernel:\n  tier: {tier}\n  ring_buffer_bytes: 16777216\nlog:\n  format: json\n",
        files = list(&|i| if i == 0 {
            DENIED_DIR.to_string()
        } else {
            format!("/srv/nomatch/{i}")
        }),
        execs = list(&|i| format!("/opt/nomatch/{i}")),
        nets = list(&|i| format!("10.{}.{}.{}/32", i >> 16 & 255, i >> 8 & 255, i & 255)),
    )
}

/// Runs `workload` for `time`; returns ns per operation.
fn measure(workload: Workload, time: Duration, peer: SocketAddr) -> f64 {
    let existing = CString::new(EXISTING).unwrap();
    let missing = CString::new(MISSING).unwrap();
    let renamed = CString::new(RENAMED).unwrap();
    let truth = CString::new("/bin/true").unwrap();
    let argv = [truth.as_ptr(), std::ptr::null()];
    let env = [std::ptr::null()];
    let start = Instant::now();
    let mut ops = 0u64;
    // Check the clock every batch only: the clock costs too.
    while start.elapsed() < time {
        for _ in 0..64 {
            match workload {
                Workload::OpenExisting => unsafe {
                    let fd = libc::open(existing.as_ptr(), libc::O_RDONLY);
                    assert!(fd >= 0, "open {EXISTING} failed");
                    libc::close(fd);
                },
                Workload::OpenMissing => unsafe {
                    let fd = libc::open(missing.as_ptr(), libc::O_RDONLY);
                    assert!(fd < 0);
                },
                Workload::Rename => unsafe {
                    assert_eq!(
                        libc::rename(existing.as_ptr(), renamed.as_ptr()),
                        0,
                        "rename"
                    );
                    assert_eq!(
                        libc::rename(renamed.as_ptr(), existing.as_ptr()),
                        0,
                        "rename back"
                    );
                },
                Workload::Connect => {
                    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                    socket.connect(peer).expect("connect");
                }
                Workload::ForkExec => unsafe {
                    let pid = libc::fork();
                    if pid == 0 {
                        libc::execve(truth.as_ptr(), argv.as_ptr(), env.as_ptr());
                        libc::_exit(127);
                    }
                    let mut status = 0;
                    libc::waitpid(pid, &mut status, 0);
                },
            }
            ops += 1;
            if matches!(workload, Workload::ForkExec) && ops.is_multiple_of(8) {
                break;
            }
        }
    }
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Args {
    agent: String,
    tier: String,
    seconds: f64,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        agent: "/bin/safeguard".into(),
        tier: "lsm".into(),
        seconds: 1.0,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--agent" => a.agent = value(),
            "--tier" => a.tier = value(),
            "--seconds" => a.seconds = value().parse().expect("--seconds: a number"),
            "--rounds" => a.rounds = value().parse().expect("--rounds: a number"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn start_agent(args: &Args, setup: Agented, cgroup: Option<&Path>) -> Agent {
    Agent::launch(
        &args.agent,
        Path::new(DIR),
        &config(setup, &args.tier, cgroup),
        Duration::from_secs(300),
        &Launch::default(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "agent ({}, {} rules, target {}): {e}",
            setup.mode, setup.rules, setup.target
        )
    })
}

fn main() {
    let args = args();
    std::fs::create_dir_all(Path::new(EXISTING).parent().unwrap()).unwrap();
    std::fs::create_dir_all(DENIED_DIR).unwrap();
    std::fs::write(EXISTING, "x").unwrap();
    let _ = std::fs::remove_file(MISSING);
    let _ = std::fs::remove_file(RENAMED);
    let peer_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = peer_socket.local_addr().unwrap();
    let time = Duration::from_secs_f64(args.seconds);

    // On the audit tier the socket programs attach to a cgroup: this
    // process goes into one made for the run (never the root).
    let cgroup = (args.tier == "tracepoint").then(|| {
        let cg = TestCgroup::new().expect("a cgroup v2 directory for the benchmark");
        std::fs::write(cg.0.join("cgroup.procs"), std::process::id().to_string())
            .expect("join the benchmark cgroup");
        cg
    });
    let cgroup_path = cgroup.as_ref().map(|c| c.0.clone());

    // results[setup][workload] = ns/op per round.
    let mut results = vec![vec![Vec::new(); Workload::ALL.len()]; SETUPS.len()];
    for round in 0..args.rounds {
        for (s, setup) in SETUPS.iter().enumerate() {
            let agent = setup
                .agent
                .map(|a| start_agent(&args, a, cgroup_path.as_deref()));
            for (w, workload) in Workload::ALL.iter().enumerate() {
                results[s][w].push(measure(*workload, time, peer));
            }
            if let Some(agent) = agent {
                agent
                    .stop_within(Duration::from_secs(300))
                    .unwrap_or_else(|e| panic!("agent stop: {e}"));
            }
        }
        eprintln!("hook-bench: round {} of {} done", round + 1, args.rounds);
    }
    for (w, workload) in Workload::ALL.iter().enumerate().filter(|_| args.rounds > 0) {
        for (s, setup) in SETUPS.iter().enumerate() {
            // Each round's ratio is taken against no agent in that same
            // round; their spread is the noise a reader has to allow for.
            let ratios: Vec<f64> = results[s][w]
                .iter()
                .zip(&results[0][w])
                .map(|(ns, base)| ns / base)
                .collect();
            let (low, high) = ratios
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            println!(
                "SGBENCH hook {} {} {} {:.0} {:.3} {:.3} {:.3}",
                args.tier,
                workload.name(),
                setup.name,
                median(results[s][w].clone()),
                median(ratios),
                low,
                high
            );
        }
    }

    // The programs' own cost, from the kernel's BPF statistics (they cost
    // two clock reads per run themselves, so they are off while timing).
    let stats = Path::new("/proc/sys/kernel/bpf_stats_enabled");
    if std::fs::write(stats, "1").is_ok() {
        let agent = start_agent(&args, JUDGED.expect("an agent"), cgroup_path.as_deref());
        for workload in Workload::ALL {
            measure(workload, time, peer);
        }
        for line in program_stats() {
            println!("SGBENCH prog {} {line}", args.tier);
        }
        let _ = std::fs::write(stats, "0");
        agent
            .stop_within(Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("agent stop: {e}"));
    } else {
        eprintln!("hook-bench: cannot enable kernel.bpf_stats_enabled; no per-program figures");
    }
    // For tests/vm/run.sh, which wants to hear that the command ran through.
    println!("SGTEST PASS hook-bench");
}

/// `<program> <ns per run> <runs>` for every loaded program that ran.
fn program_stats() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.run_count() > 0)
        .map(|p| {
            format!(
                "{} {:.0} {}",
                p.name_as_str().unwrap_or("?"),
                p.run_time().as_nanos() as f64 / p.run_count() as f64,
                p.run_count()
            )
        })
        .collect()
}
