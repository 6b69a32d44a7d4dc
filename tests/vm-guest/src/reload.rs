//! Hot reload without an enforcement gap: while the configuration is
//! reloaded a thousand times, alternating two policies that both deny a
//! path, a workload keeps opening that path. Not one open may succeed, and
//! every attempt must be reported as blocked.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use safeguard_test_support::{events_for, stopped_counter};

use crate::cases::{SECRET, TestResult, ensure, open_read, setup_files, start};

const RELOADS: usize = 1000;

/// Both deny SECRET, by different rules, with other differences around it.
const POLICY_A: &str = "files:\n  enable: true\n  mode: block\n  deny: [/srv/sg/secret]\n  allow: [/srv/sg/public]\nkernel:\n  tier: lsm\n";
const POLICY_B: &str = "files:\n  enable: true\n  mode: block\n  deny: [/srv/sg/secret/x, /srv/sg/secrets.d]\nkernel:\n  tier: lsm\n";

pub fn thousand_reloads_leave_no_gap(agent: &str) -> TestResult {
    setup_files()?;
    let mut agent = start(agent, "reload", POLICY_A)?;
    let stop = Arc::new(AtomicBool::new(false));
    let workload = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut attempts, mut opened) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                attempts += 1;
                if open_read(SECRET).is_ok() {
                    opened += 1;
                }
                // Keep within what the agent reads under emulation: this
                // test is about the reloads, not about drops.
                std::thread::sleep(Duration::from_millis(10));
            }
            (attempts, opened)
        })
    };
    for i in 0..RELOADS {
        let policy = if i % 2 == 0 { POLICY_B } else { POLICY_A };
        agent
            .reload(policy, Duration::from_secs(60))
            .map_err(|e| format!("reload {i}: {e}"))?;
    }
    stop.store(true, Ordering::Relaxed);
    let (attempts, opened) = workload
        .join()
        .map_err(|_| "workload panicked".to_string())?;
    let (events, log) = agent.stop_within(Duration::from_secs(180))?;

    ensure(opened == 0, || {
        format!("{opened} of {attempts} opens of {SECRET} succeeded during reloads")
    })?;
    // The agent also watches the file: when its check sees a write before
    // the SIGHUP that follows it is handled, that SIGHUP reloads the same
    // policy once more.
    let reloaded = log.matches("configuration reloaded").count();
    let seen_by_watch = log.matches("changed: reloading").count();
    ensure(
        (RELOADS..=RELOADS + seen_by_watch).contains(&reloaded),
        || {
            format!(
                "{reloaded} reloads in force, want {RELOADS} \
                 (+ up to {seen_by_watch} seen by the file watch first): {log}"
            )
        },
    )?;
    ensure(stopped_counter(&log, "kernel_drops") == Some(0), || {
        format!("kernel drops: {log}")
    })?;
    let mine: Vec<_> = events_for(&events, SECRET)
        .into_iter()
        .filter(|e| e[semconv::attr::PROCESS_PID] == std::process::id())
        .collect();
    ensure(mine.len() as u64 == attempts, || {
        format!("{} events for {attempts} attempts", mine.len())
    })?;
    let mut by_rule = std::collections::BTreeMap::<String, usize>::new();
    for e in &mine {
        ensure(e[semconv::attr::DECISION] == "blocked", || {
            format!("not blocked: {e}")
        })?;
        *by_rule
            .entry(
                e[semconv::attr::SECURITY_RULE_NAME]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
            .or_default() += 1;
    }
    // Both policies were in force at some point, and each event names the
    // rule of the policy that judged it.
    ensure(
        by_rule.keys().cloned().collect::<Vec<_>>() == ["/srv/sg/secret", "/srv/sg/secret/x"],
        || format!("rules named: {by_rule:?}"),
    )?;
    println!("reload: {RELOADS} reloads, {attempts} attempts blocked, by rule {by_rule:?}");
    Ok(())
}
