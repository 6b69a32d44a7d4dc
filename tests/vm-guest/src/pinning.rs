//! Enforcement across restarts (`kernel.pin`): while a workload keeps
//! opening a denied path, the agent is stopped, left away, started again
//! (taking over the pinned programs), killed, and started once more with
//! pinning off. Not one open may succeed at any moment; every attempt is
//! reported exactly once across the three agents (those made while no agent
//! ran included: they wait in the pinned ring buffer); and once the last
//! agent has stopped, nothing is left behind.

use std::{
    collections::BTreeSet,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use safeguard_test_support::{Agent, Launch, events_for, read_events, stopped_counter};

use crate::cases::{READY_WITHIN, SECRET, TestResult, ensure, open_read, setup_files};

const PIN_DIR: &str = "/sys/fs/bpf/sgtest-pin";
const DIR: &str = "/tmp/sgtest-pinning";

fn config(pin: bool) -> String {
    format!(
        "files:\n  enable: true\n  mode: block\n  deny: [/srv/sg/secret]\n\
         kernel:\n  tier: lsm\n  pin: {pin}\n  pin_dir: {PIN_DIR}\nlog:\n  format: json\n"
    )
}

/// The workload: opens SECRET every 10 ms until stopped, unless paused.
struct Workload {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    attempts: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<u64>,
}

impl Workload {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, paused, attempts) = (stop.clone(), paused.clone(), attempts.clone());
            std::thread::spawn(move || {
                let mut opened = 0;
                while !stop.load(Ordering::Relaxed) {
                    if !paused.load(Ordering::Relaxed) {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        if open_read(SECRET).is_ok() {
                            opened += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                opened
            })
        };
        Self {
            stop,
            paused,
            attempts,
            thread,
        }
    }

    fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Stops; returns (attempts, opens that succeeded).
    fn finish(self) -> Result<(u64, u64), String> {
        self.stop.store(true, Ordering::Relaxed);
        let opened = self
            .thread
            .join()
            .map_err(|_| "workload panicked".to_string())?;
        Ok((self.attempts.load(Ordering::Relaxed), opened))
    }
}

fn launch(agent: &str, pin: bool, fresh: bool) -> Result<Agent, String> {
    Agent::launch(
        agent,
        Path::new(DIR),
        &config(pin),
        READY_WITHIN,
        &Launch {
            fresh,
            ..Launch::default()
        },
    )
}

/// Waits until the workload has made `n` more attempts.
fn attempts_pass(workload: &Workload, n: u64) {
    let until = workload.attempts() + n;
    while workload.attempts() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the event log holds `attempts` events of this process for
/// SECRET.
fn written_up_to(attempts: u64, within: Duration) -> TestResult {
    let start = std::time::Instant::now();
    loop {
        let events = read_events(&Path::new(DIR).join("events.jsonl"))?;
        let written = events_for(&events, SECRET)
            .into_iter()
            .filter(|e| e[semconv::attr::PROCESS_PID] == std::process::id())
            .count() as u64;
        if written >= attempts {
            return Ok(());
        }
        if start.elapsed() > within {
            return Err(format!(
                "the agent wrote {written} of {attempts} events within {within:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn pinned_programs_enforce_across_restarts(agent: &str) -> TestResult {
    setup_files()?;
    let _ = std::process::Command::new(agent)
        .args([
            "unpin",
            "--force",
            "--set",
            &format!("kernel.pin_dir={PIN_DIR}"),
        ])
        .stdout(std::process::Stdio::null())
        .status();
    let first = launch(agent, true, true)?;
    let workload = Workload::start();
    attempts_pass(&workload, 50);

    // 1. A clean stop: the programs stay, the agent goes.
    let (_, log1) = first.stop_within(Duration::from_secs(60))?;
    ensure(log1.contains("programs stay attached"), || {
        format!("first agent did not leave its programs: {log1}")
    })?;
    ensure(Path::new(PIN_DIR).join("links").exists(), || {
        format!("nothing pinned under {PIN_DIR}")
    })?;
    // No agent at all for a while.
    attempts_pass(&workload, 50);

    // 2. A restart takes over, then dies without a word.
    let second = launch(agent, true, false)?;
    attempts_pass(&workload, 50);
    // Killed when nothing is in flight (a kill loses what the agent had
    // read and not yet written): once every attempt so far is written.
    workload.paused.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(50));
    written_up_to(workload.attempts(), Duration::from_secs(120))?;
    let log2 = second.kill();
    ensure(log2.contains("took over from the programs pinned"), || {
        format!("second agent did not take over: {log2}")
    })?;
    workload.paused.store(false, Ordering::Relaxed);
    attempts_pass(&workload, 50);

    // 3. Pinning off: this agent takes over and leaves nothing behind.
    let third = launch(agent, false, false)?;
    attempts_pass(&workload, 50);
    let (attempts, opened) = workload.finish()?;
    let (events, log3) = third.stop_within(Duration::from_secs(120))?;
    ensure(opened == 0, || {
        format!("{opened} of {attempts} opens of {SECRET} succeeded across restarts")
    })?;
    // The agents share one log file: two took over.
    ensure(
        log3.matches("took over from the programs pinned").count() == 2,
        || format!("the third agent did not take over: {log3}"),
    )?;
    ensure(!Path::new(PIN_DIR).exists(), || {
        format!("{PIN_DIR} is still there after an agent with kernel.pin off")
    })?;
    ensure(open_read(SECRET).is_ok(), || {
        "after the last agent stopped, the path is still denied: programs were left behind"
            .to_string()
    })?;
    ensure(stopped_counter(&log3, "kernel_drops") == Some(0), || {
        format!("kernel drops: {log3}")
    })?;

    let mine: Vec<_> = events_for(&events, SECRET)
        .into_iter()
        .filter(|e| e[semconv::attr::PROCESS_PID] == std::process::id())
        .collect();
    for e in &mine {
        ensure(e[semconv::attr::DECISION] == "blocked", || {
            format!("not blocked: {e}")
        })?;
    }
    let sequences: BTreeSet<u64> = mine
        .iter()
        .filter_map(|e| e[semconv::attr::SEQUENCE].as_u64())
        .collect();
    ensure(sequences.len() == mine.len(), || {
        format!(
            "{} events but {} distinct sequence numbers: reported twice",
            mine.len(),
            sequences.len()
        )
    })?;
    ensure(mine.len() as u64 == attempts, || {
        // Where the missing ones are: gaps in the kernel's sequence, and
        // what each agent said when it stopped.
        let seqs: Vec<u64> = sequences.iter().copied().collect();
        let gaps: Vec<String> = seqs
            .windows(2)
            .filter(|w| w[1] - w[0] > 1)
            .map(|w| format!("{}..{}", w[0], w[1]))
            .collect();
        let stops: Vec<&str> = log3
            .lines()
            .filter(|l| l.contains(" stopped ") || l.contains("took over") || l.contains("ready"))
            .collect();
        format!(
            "{} events for {attempts} attempts across three agents; sequence gaps {gaps:?}; {stops:?}",
            mine.len()
        )
    })?;
    println!(
        "pinning: {attempts} attempts across stop, absence, takeover, kill and takeover: \
         all blocked, each reported once"
    );
    Ok(())
}
