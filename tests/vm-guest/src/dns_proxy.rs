//! The DNS proxy (`dns_proxy`): a name under a domain rule whose upstream
//! answers a fresh address at every query is resolved through the proxy,
//! and a connect to the answered address, made at once, is judged by the
//! rule (the proxy puts the address in the kernel's maps before it
//! answers); an upstream that never answers one name neither stalls the
//! others nor leaves the client without a reply (SERVFAIL).

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use safeguard_test_support::{
    dns::{
        DnsServer, PendingQuery, Reply,
        hickory_proto::{op::ResponseCode, rr::RecordType},
        send_query,
    },
    event_name,
};
use semconv::{attr, event};
use serde_json::Value;

use crate::{
    cases::{TestResult, ensure, start},
    rows::Expect,
};

/// Where the proxy listens (`dns_proxy.bind`).
const PROXY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 5353);
/// Denied by `network.domain.deny`; the upstream answers a fresh address
/// at each query.
const DENIED: &str = "denied.test";
/// Outside the rules; the upstream answers 127.0.0.1.
const ALLOWED: &str = "allowed.test";
/// The upstream never answers it.
const SILENT: &str = "silent.test";
/// Queries for the denied name, each followed by a connect.
const ROUNDS: usize = 5;
/// The port the connects to the denied name's addresses go to (discard:
/// nothing listens there).
const DENIED_PORT: u16 = 9;

/// How long the proxy may take to answer a name the upstream answers.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long an allowed name may take while another query waits for a
/// silent upstream.
const NOT_STALLED_WITHIN: Duration = Duration::from_millis(1500);
/// How long the proxy may take to give up on a silent upstream (about 2 s
/// per upstream).
const SERVFAIL_WITHIN: Duration = Duration::from_secs(10);

pub fn block_denies_answered_addresses(agent_bin: &str) -> TestResult {
    run(agent_bin, Expect::Blocked)
}

pub fn monitor_reports_answered_addresses(agent_bin: &str) -> TestResult {
    run(agent_bin, Expect::WouldBlock)
}

fn mode(expect: Expect) -> &'static str {
    match expect {
        Expect::Blocked => "block",
        Expect::WouldBlock => "monitor",
    }
}

fn config(expect: Expect, upstream: u16) -> String {
    format!(
        "files:\n  enable: false\n\
         network:\n  enable: true\n  mode: {mode}\n  domain:\n    deny: [{DENIED}]\n  \
         nameservers: [127.0.0.1:{upstream}]\n\
         dns_proxy:\n  enable: true\n  upstreams: [127.0.0.1:{upstream}]\n  bind: [{PROXY}]\n\
         kernel:\n  tier: lsm\n",
        mode = mode(expect),
    )
}

fn run(agent_bin: &str, expect: Expect) -> TestResult {
    let upstream = DnsServer::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| format!("start the upstream DNS server: {e}"))?;
    upstream
        .fresh(DENIED)
        .fixed(ALLOWED, Ipv4Addr::LOCALHOST)
        .silent(SILENT);
    let agent = start(
        agent_bin,
        &format!("dns-proxy-{}", mode(expect)),
        &config(expect, upstream.port()),
    )?;
    // The agent is stopped whatever happened, and its log goes with a
    // failure.
    let exercised = exercise(&upstream, expect);
    let (events, log) = agent.stop()?;
    let fresh = exercised.map_err(|e| format!("{e}\nagent log:\n{log}"))?;
    check_events(&events, &log, &fresh, expect)
}

/// Steps 3 to 5: the denied name's fresh addresses (returned), the
/// allowed name, and a silent upstream.
fn exercise(upstream: &DnsServer, expect: Expect) -> Result<Vec<Ipv4Addr>, String> {
    let fresh = denied_rounds(upstream, expect)?;
    allowed_goes_through()?;
    silent_upstream_stalls_nothing(upstream)?;
    Ok(fresh)
}

/// Resolves the denied name through the proxy ROUNDS times; each answer
/// must be an address the upstream just handed out, and a connect to it
/// made at once must be judged by the rule.
fn denied_rounds(upstream: &DnsServer, expect: Expect) -> Result<Vec<Ipv4Addr>, String> {
    let mut seen: Vec<Ipv4Addr> = Vec::new();
    for round in 1..=ROUNDS {
        let before = upstream.handed_out(DENIED).len();
        let reply = ask(DENIED, round)?;
        let ip = only_address(&reply, DENIED, round)?;
        // At once: the address must already be in the maps.
        let connected = connect(ip, DENIED_PORT);
        ensure(!seen.contains(&ip), || {
            format!(
                "round {round}: the proxy answered {ip} for {DENIED} again (earlier: {seen:?}); \
                 every upstream answer is fresh"
            )
        })?;
        // Handed out for this query (not one cached or made up).
        let handed_out = upstream.handed_out(DENIED);
        ensure(handed_out[before..].contains(&ip), || {
            format!(
                "round {round}: the proxy answered {ip} for {DENIED}, which the upstream did not \
                 hand out after the query was sent (then: {:?}; before: {:?})",
                &handed_out[before..],
                &handed_out[..before]
            )
        })?;
        check_denied_connect(connected, ip, round, expect)?;
        seen.push(ip);
    }
    let asked = upstream.queries(DENIED);
    ensure(asked >= ROUNDS, || {
        format!("the upstream was asked for {DENIED} {asked} times, fewer than {ROUNDS}")
    })?;
    Ok(seen)
}

fn check_denied_connect(
    connected: io::Result<()>,
    ip: Ipv4Addr,
    round: usize,
    expect: Expect,
) -> TestResult {
    let errno = connected.as_ref().err().and_then(io::Error::raw_os_error);
    let what = || format!("round {round}: connect to {ip}:{DENIED_PORT} ({connected:?})");
    match expect {
        Expect::Blocked => ensure(errno == Some(libc::EPERM), || {
            let why = if errno == Some(libc::ECONNREFUSED) {
                ": the kernel let it through, so the address was not in the deny map when \
                 the answer arrived"
            } else {
                ""
            };
            format!("{}, want EPERM{why}", what())
        }),
        Expect::WouldBlock => ensure(errno == Some(libc::ECONNREFUSED), || {
            format!(
                "{}, want ECONNREFUSED (monitor mode refuses nothing; nothing listens)",
                what()
            )
        }),
    }
}

/// The allowed name is answered with 127.0.0.1, and a connect there is
/// not refused by the agent.
fn allowed_goes_through() -> TestResult {
    let reply = ask(ALLOWED, 1)?;
    let ip = only_address(&reply, ALLOWED, 1)?;
    ensure(ip == Ipv4Addr::LOCALHOST, || {
        format!("the proxy answered {ip} for {ALLOWED}, the upstream 127.0.0.1")
    })?;
    let port = closed_port().map_err(|e| format!("find a closed port: {e}"))?;
    let connected = connect(ip, port);
    let errno = connected.as_ref().err().and_then(io::Error::raw_os_error);
    ensure(errno == Some(libc::ECONNREFUSED), || {
        format!("connect to {ip}:{port} (closed, allowed): {connected:?}, want ECONNREFUSED")
    })
}

/// A query the upstream never answers does not hold up another sent right
/// after it, and ends in SERVFAIL.
fn silent_upstream_stalls_nothing(upstream: &DnsServer) -> TestResult {
    let silent = send(SILENT)?;
    let allowed = send(ALLOWED)?
        .reply(ANSWER_WITHIN)
        .map_err(|e| format!("{ALLOWED} through the proxy, while {SILENT} waits: {e}"))?;
    ensure(allowed.elapsed < NOT_STALLED_WITHIN, || {
        format!(
            "{ALLOWED} took {:?} while {SILENT} waited for its upstream (want < {NOT_STALLED_WITHIN:?})",
            allowed.elapsed
        )
    })?;
    ensure(allowed.a() == [Ipv4Addr::LOCALHOST], || {
        format!("{ALLOWED} while {SILENT} waits: {}", allowed.message)
    })?;
    let pending = silent
        .is_answered()
        .map_err(|e| format!("look for the reply to {SILENT}: {e}"))?;
    ensure(!pending, || {
        format!("{SILENT} was answered before {ALLOWED}, without waiting for its upstream")
    })?;
    let reply = silent.reply(SERVFAIL_WITHIN).map_err(|e| {
        format!(
            "{SILENT} (the upstream never answers), want SERVFAIL within {SERVFAIL_WITHIN:?}: {e}"
        )
    })?;
    ensure(reply.response_code() == ResponseCode::ServFail, || {
        format!("{SILENT}: {}, want SERVFAIL", reply.message)
    })?;
    let asked = upstream.queries(SILENT);
    ensure(asked >= 1, || {
        format!("the proxy answered {SILENT} without asking the upstream")
    })
}

/// The blocked (or would-block) connect of each fresh address, from this
/// process, is reported under the domain rule.
fn check_events(events: &[Value], log: &str, fresh: &[Ipv4Addr], expect: Expect) -> TestResult {
    let connects: Vec<&Value> = events
        .iter()
        .filter(|e| event_name(e) == Some(event::NETWORK_CONNECT))
        .collect();
    // Each answer passed on is reported, with what it said and to whom.
    let answers: Vec<&Value> = events
        .iter()
        .filter(|e| event_name(e) == Some(event::DNS_PROXY_ANSWER))
        .collect();
    for ip in fresh {
        let answered = answers.iter().any(|e| {
            e[attr::DNS_QUESTION_NAME] == DENIED
                && e[attr::CLIENT_ADDRESS] == "127.0.0.1"
                && e[attr::DNS_PROXY_OUTCOME] == "rule_hit"
                && e[attr::DNS_ANSWERS]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == ip.to_string().as_str()))
        });
        ensure(answered, || {
            format!(
                "no {} event for {DENIED} → {ip}: {answers:?}",
                event::DNS_PROXY_ANSWER
            )
        })?;
    }
    for ip in fresh {
        let reported = connects.iter().any(|e| {
            e[attr::NETWORK_PEER_ADDRESS] == ip.to_string().as_str()
                && e[attr::DECISION] == expect.decision()
                && e[attr::PROCESS_PID] == std::process::id()
                && e[attr::SECURITY_RULE_NAME] == DENIED
                && e[attr::SECURITY_RULE_RULESET_NAME] == "network.domain.deny"
        });
        ensure(reported, || {
            format!(
                "no {} {} event for {ip} from pid {}: {connects:?}\nagent log:\n{log}",
                expect.decision(),
                event::NETWORK_CONNECT,
                std::process::id()
            )
        })?;
    }
    Ok(())
}

fn send(name: &str) -> Result<PendingQuery, String> {
    send_query(PROXY, name, RecordType::A)
        .map_err(|e| format!("send an A query for {name} to the proxy at {PROXY}: {e}"))
}

/// An A query for `name` through the proxy, answered NOERROR.
fn ask(name: &str, round: usize) -> Result<Reply, String> {
    let reply = send(name)?
        .reply(ANSWER_WITHIN)
        .map_err(|e| format!("query {round} for {name} through the proxy at {PROXY}: {e}"))?;
    ensure(reply.response_code() == ResponseCode::NoError, || {
        format!("query {round} for {name}: {}, want NOERROR", reply.message)
    })?;
    Ok(reply)
}

/// The one A address of `reply`.
fn only_address(reply: &Reply, name: &str, round: usize) -> Result<Ipv4Addr, String> {
    match reply.a()[..] {
        [ip] => Ok(ip),
        _ => Err(format!(
            "query {round} for {name}: want one A record: {}",
            reply.message
        )),
    }
}

/// A TCP connect from this process, given up after 2 s.
fn connect(ip: Ipv4Addr, port: u16) -> io::Result<()> {
    TcpStream::connect_timeout(&SocketAddr::from((ip, port)), Duration::from_secs(2)).map(drop)
}

/// A port on 127.0.0.1 nothing listens on (just freed).
fn closed_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
