//! Network rows: connect (IPv4, IPv6, and IPv4 spelled as IPv4-mapped
//! IPv6), send with a destination and on a socket connected before the
//! rule, receive
//! and getpeername on a socket connected to a denied peer, bind to a denied
//! address, and an inbound connection from a denied source. Real TCP and
//! UDP sockets on loopback inside the VM.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use semconv::{attr, event};
use serde_json::json;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::{
    cases::TestResult,
    rows::{Action, Expect, Op, Untouched, suite},
};

/// Denied: 127.0.0.2 (a peer), 127.0.0.3 (an inbound source), ::1, and
/// 127.0.0.4 to 127.0.0.6 and 127.0.0.8 to 127.0.0.10 (addresses of one
/// row each: a row's event is told apart by its address).
const CONFIG_CIDRS: &str = "[127.0.0.2/32, 127.0.0.3/32, '::1/128', 127.0.0.4/32, 127.0.0.5/32, \
                            127.0.0.6/32, 127.0.0.8/32, 127.0.0.9/32, 127.0.0.10/32]";

/// Where SCTP listeners wait (denied): for a connect, and for a
/// connectx.
const SCTP_PEER: &str = "127.0.0.8:7778";
const SCTP_CONNECTX_PEER: &str = "127.0.0.10:7778";

/// How an SCTP socket names an address: connect(2), or
/// setsockopt(SOL_SCTP, optname) with a list of one `sockaddr_in`
/// (`SCTP_SOCKOPT_CONNECTX`, `SCTP_SOCKOPT_BINDX_ADD`).
#[derive(Clone, Copy)]
enum Sctp {
    Connect,
    Connectx,
    Bindx,
}

/// An SCTP socket naming `to:port` as `how` says.
fn sctp(how: Sctp, to: [u8; 4], port: u16) -> Result<(), i32> {
    sctp_list(how, &[to], port, false)
}

/// An SCTP socket naming every address of `list` (with `port`) as `how`
/// says; `connect` takes the first. With `mapped`, an IPv6 socket names
/// them as IPv4-mapped IPv6 addresses.
fn sctp_list(how: Sctp, list: &[[u8; 4]], port: u16, mapped: bool) -> Result<(), i32> {
    const IPPROTO_SCTP: i32 = 132;
    const SOL_SCTP: i32 = 132;
    const SCTP_SOCKOPT_BINDX_ADD: i32 = 100;
    const SCTP_SOCKOPT_CONNECTX: i32 = 110;
    // The packed list: sockaddr_in or sockaddr_in6, one after another.
    let mut packed: Vec<u8> = Vec::new();
    for to in list {
        let ip = std::net::Ipv4Addr::from(*to);
        let sa: SockAddr = if mapped {
            SocketAddr::new(ip.to_ipv6_mapped().into(), port).into()
        } else {
            SocketAddr::new(ip.into(), port).into()
        };
        // SAFETY: `sa` holds `len` initialised bytes.
        packed.extend_from_slice(unsafe {
            std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), sa.len() as usize)
        });
    }
    let family = if mapped {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: plain syscalls on a buffer we own; the socket is closed
    // before returning.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM, IPPROTO_SCTP);
        if fd < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1));
        }
        let (addr, len) = (
            packed.as_ptr().cast::<libc::sockaddr>(),
            packed.len() as libc::socklen_t,
        );
        let one = (packed.len() / list.len().max(1)) as libc::socklen_t;
        let rc = match how {
            Sctp::Connect => libc::connect(fd, addr, one),
            Sctp::Connectx => {
                libc::setsockopt(fd, SOL_SCTP, SCTP_SOCKOPT_CONNECTX, addr.cast(), len)
            }
            Sctp::Bindx => libc::setsockopt(fd, SOL_SCTP, SCTP_SOCKOPT_BINDX_ADD, addr.cast(), len),
        };
        // connectx answers with an association id.
        let result = if rc >= 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
        };
        libc::close(fd);
        result
    }
}

/// `sendto` on a UDP socket with `sin_family = AF_UNSPEC`: the kernel sends
/// to `sin_addr` all the same.
fn send_unspec(to: [u8; 4], port: u16) -> Result<(), i32> {
    // SAFETY: plain syscalls on a sockaddr_in we own; the socket is closed
    // before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1));
        }
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_UNSPEC as libc::sa_family_t;
        sa.sin_port = port.to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(to);
        let sent = libc::sendto(
            fd,
            b"x".as_ptr().cast(),
            1,
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let result = if sent == 1 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
        };
        libc::close(fd);
        result
    }
}

/// An ICMP echo request through a ping socket: destination port 0.
fn ping(to: &str) -> Result<(), i32> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)).map_err(errno)?;
    let to: SocketAddr = format!("{to}:0").parse().unwrap();
    // type 8 (echo request), code 0; the kernel fills the checksum and id.
    let echo = [8u8, 0, 0, 0, 0, 0, 0, 1];
    s.send_to(&echo, &to.into()).map(drop).map_err(errno)
}

/// A supplementary group the GID rules deny, and an allowed address such a
/// task connects to.
const DENIED_GROUP: &str = "4242";
const GROUP_PEER: &str = "127.0.0.7:7777";

/// Makes a socket of `family` and `kind` and closes it.
fn make_socket(family: i32, kind: i32, protocol: i32) -> Result<(), i32> {
    // SAFETY: a plain syscall; the descriptor is closed at once.
    let fd = unsafe { libc::socket(family, kind, protocol) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1));
    }
    unsafe { libc::close(fd) };
    Ok(())
}

fn raw_socket(row: &'static str, family: &str, action: Action) -> Op {
    Op {
        row,
        event: event::NETWORK_SOCKET,
        key: attr::NETWORK_SOCKET_FAMILY,
        value: family.into(),
        attributes: vec![
            (attr::SECURITY_RULE_NAME, json!(semconv::rule::RAW_SOCKET)),
            (attr::NETWORK_SOCKET_TYPE, json!("raw")),
        ],
        action,
    }
}

/// Sockets set up before the agent starts.
#[derive(Default)]
struct Fixture {
    /// Listens on 127.0.0.2 (denied).
    denied_tcp: Option<TcpListener>,
    /// Receives datagrams on 127.0.0.2 (denied).
    denied_udp: Option<UdpSocket>,
    /// Listens on ::1 (denied).
    denied_v6: Option<TcpListener>,
    /// Listens on 127.0.0.1 (allowed).
    open_tcp: Option<TcpListener>,
    /// Connected to the denied listener, with data waiting to be read.
    connected: Option<TcpStream>,
    accepted: Option<TcpStream>,
    /// Bound to 127.0.0.3 (denied) before the agent starts, since the same
    /// rules judge bind(2); it connects to the allowed listener later.
    inbound_client: Option<Socket>,
    /// An unconnected UDP receiver on 127.0.0.1, and a sender bound to
    /// 127.0.0.3 (denied) before the agent starts.
    datagram_server: Option<UdpSocket>,
    datagram_sender: Option<UdpSocket>,
    /// A UDP socket connected to 127.0.0.6 (denied) before the agent
    /// starts, and its peer.
    connected_udp: Option<UdpSocket>,
    connected_udp_peer: Option<UdpSocket>,
    /// Listens on an allowed address, for a task whose supplementary group
    /// is denied.
    group_listener: Option<TcpListener>,
    /// Listen for SCTP on 127.0.0.8 and 127.0.0.10 (both denied).
    sctp_listeners: Vec<Socket>,
}

fn fixture() -> &'static Mutex<Fixture> {
    static F: OnceLock<Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(Default::default)
}

fn addr(f: &Option<TcpListener>) -> SocketAddr {
    f.as_ref().unwrap().local_addr().unwrap()
}

fn setup() -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    let mut f = fixture().lock().unwrap();
    *f = Fixture::default();
    f.denied_tcp = Some(TcpListener::bind("127.0.0.2:0").map_err(e)?);
    f.denied_udp = Some(UdpSocket::bind("127.0.0.2:0").map_err(e)?);
    f.denied_v6 = Some(TcpListener::bind("[::1]:0").map_err(e)?);
    f.open_tcp = Some(TcpListener::bind("127.0.0.1:0").map_err(e)?);
    let connected = TcpStream::connect(addr(&f.denied_tcp)).map_err(e)?;
    let (mut accepted, _) = f.denied_tcp.as_ref().unwrap().accept().map_err(e)?;
    accepted.write_all(b"x").map_err(e)?;
    f.connected = Some(connected);
    f.accepted = Some(accepted);
    let client = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(e)?;
    client
        .bind(&"127.0.0.3:0".parse::<SocketAddr>().unwrap().into())
        .map_err(e)?;
    f.inbound_client = Some(client);
    let server = UdpSocket::bind("127.0.0.1:0").map_err(e)?;
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(e)?;
    f.datagram_server = Some(server);
    f.datagram_sender = Some(UdpSocket::bind("127.0.0.3:0").map_err(e)?);
    let peer = UdpSocket::bind("127.0.0.6:0").map_err(e)?;
    let sender = UdpSocket::bind("127.0.0.1:0").map_err(e)?;
    sender.connect(peer.local_addr().map_err(e)?).map_err(e)?;
    f.connected_udp = Some(sender);
    f.connected_udp_peer = Some(peer);
    f.group_listener = Some(TcpListener::bind(GROUP_PEER).map_err(e)?);
    for at in [SCTP_PEER, SCTP_CONNECTX_PEER] {
        let sctp = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::from(132))).map_err(e)?;
        sctp.bind(&at.parse::<SocketAddr>().unwrap().into())
            .map_err(e)?;
        sctp.listen(8).map_err(e)?;
        f.sctp_listeners.push(sctp);
    }
    // Ping sockets for every group (the default allows none).
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647").map_err(e)?;
    Ok(())
}

/// An IPv4 address as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
fn mapped(to: SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    }
}

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn call(f: impl Fn(&Fixture) -> Result<(), i32> + 'static) -> Action {
    Action::Call(Box::new(move || f(&fixture().lock().unwrap())))
}

fn peer(row: &'static str, name: &'static str, address: &str, action: Action) -> Op {
    Op {
        row,
        event: name,
        key: attr::NETWORK_PEER_ADDRESS,
        value: address.into(),
        attributes: vec![(attr::SECURITY_RULE_RULESET_NAME, json!("network.cidr.deny"))],
        action,
    }
}

fn ops() -> Vec<Op> {
    vec![
        peer(
            "network.connect.tcp4",
            event::NETWORK_CONNECT,
            "127.0.0.2",
            call(|f| {
                TcpStream::connect(addr(&f.denied_tcp))
                    .map(drop)
                    .map_err(errno)
            }),
        ),
        peer(
            "network.connect.tcp6",
            event::NETWORK_CONNECT,
            "::1",
            call(|f| {
                TcpStream::connect(addr(&f.denied_v6))
                    .map(drop)
                    .map_err(errno)
            }),
        ),
        // The IPv4 address 127.0.0.2 spelled as IPv4-mapped IPv6, from a
        // dual-stack AF_INET6 socket: the IPv4 rule holds.
        peer(
            "network.connect.tcp4-mapped",
            event::NETWORK_CONNECT,
            "::ffff:127.0.0.2",
            call(|f| {
                TcpStream::connect(mapped(addr(&f.denied_tcp)))
                    .map(drop)
                    .map_err(errno)
            }),
        ),
        peer(
            "network.send.udp4-mapped",
            event::NETWORK_SEND,
            "::ffff:127.0.0.2",
            call(|f| {
                let to = f.denied_udp.as_ref().unwrap().local_addr().unwrap();
                let s = UdpSocket::bind("[::]:0").map_err(errno)?;
                s.send_to(b"x", mapped(to)).map(drop).map_err(errno)
            }),
        ),
        peer(
            "network.send.udp4-unspec",
            event::NETWORK_SEND,
            "127.0.0.4",
            call(|_| send_unspec([127, 0, 0, 4], 9)),
        ),
        peer(
            "network.send.icmp-ping",
            event::NETWORK_SEND,
            "127.0.0.5",
            call(|_| ping("127.0.0.5")),
        ),
        peer(
            "network.send.udp",
            event::NETWORK_SEND,
            "127.0.0.2",
            call(|f| {
                let to = f.denied_udp.as_ref().unwrap().local_addr().unwrap();
                let s = UdpSocket::bind("127.0.0.1:0").map_err(errno)?;
                s.send_to(b"x", to).map(drop).map_err(errno)
            }),
        ),
        // A socket connected before the rule (here: before the agent
        // started) sends without naming a destination: judged on its peer.
        peer(
            "network.send.connected",
            event::NETWORK_SEND,
            "127.0.0.6",
            call(|f| {
                f.connected_udp
                    .as_ref()
                    .unwrap()
                    .send(b"x")
                    .map(drop)
                    .map_err(errno)
            }),
        ),
        // Raw and packet sockets send below every address rule.
        raw_socket(
            "network.raw.inet",
            "inet",
            Action::Call(Box::new(|| {
                make_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)
            })),
        ),
        raw_socket(
            "network.raw.packet",
            "packet",
            Action::Call(Box::new(|| {
                make_socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from((libc::ETH_P_ALL as u16).to_be()),
                )
            })),
        ),
        // An SCTP socket's connect (the VM kernels load sctp.ko).
        Op {
            row: "network.connect.sctp",
            event: event::NETWORK_CONNECT,
            key: attr::NETWORK_PEER_ADDRESS,
            value: "127.0.0.8".into(),
            attributes: vec![(attr::NETWORK_TRANSPORT, json!("sctp"))],
            action: call(|_| sctp(Sctp::Connect, [127, 0, 0, 8], 7778)),
        },
        // SCTP names its peers and local addresses in lists of its own,
        // which skip socket_connect and socket_bind.
        Op {
            row: "network.sctp.connectx",
            event: event::NETWORK_CONNECT,
            key: attr::NETWORK_PEER_ADDRESS,
            value: "127.0.0.10".into(),
            attributes: vec![(attr::NETWORK_TRANSPORT, json!("sctp"))],
            action: call(|_| sctp(Sctp::Connectx, [127, 0, 0, 10], 7778)),
        },
        Op {
            row: "network.sctp.connectx-mapped",
            event: event::NETWORK_CONNECT,
            key: attr::NETWORK_PEER_ADDRESS,
            value: "::ffff:127.0.0.10".into(),
            attributes: vec![(attr::NETWORK_TRANSPORT, json!("sctp"))],
            action: call(|_| sctp_list(Sctp::Connectx, &[[127, 0, 0, 10]], 7778, true)),
        },
        Op {
            row: "network.sctp.bindx",
            event: event::NETWORK_BIND,
            key: attr::NETWORK_LOCAL_ADDRESS,
            value: "127.0.0.9".into(),
            attributes: vec![(attr::NETWORK_TRANSPORT, json!("sctp"))],
            action: call(|_| sctp(Sctp::Bindx, [127, 0, 0, 9], 0)),
        },
        // A list longer than the program reads cannot be told: refused
        // whatever its addresses (65 allowed loopback addresses here).
        Op {
            row: "network.sctp.list-too-long",
            event: event::NETWORK_BIND,
            key: attr::NETWORK_LOCAL_ADDRESS,
            value: "127.0.1.0".into(),
            attributes: vec![
                (attr::NETWORK_TRANSPORT, json!("sctp")),
                (
                    attr::SECURITY_RULE_NAME,
                    json!(semconv::rule::ADDRESS_LIST_TOO_LONG),
                ),
            ],
            action: call(|_| {
                let list: Vec<[u8; 4]> = (0..65).map(|i| [127, 0, 1, i]).collect();
                sctp_list(Sctp::Bindx, &list, 0, false)
            }),
        },
        // GID rules hold for supplementary groups too.
        Op {
            row: "network.connect.supplementary-group",
            event: event::NETWORK_CONNECT,
            key: attr::NETWORK_PEER_ADDRESS,
            value: "127.0.0.7".into(),
            attributes: vec![
                (attr::SECURITY_RULE_NAME, json!(DENIED_GROUP)),
                (attr::SECURITY_RULE_RULESET_NAME, json!("network.gid.deny")),
            ],
            action: Action::Run(
                "/bin/safeguard-vm-tests",
                vec![
                    "--groups-connect".into(),
                    DENIED_GROUP.into(),
                    GROUP_PEER.into(),
                ],
            ),
        },
        peer(
            "network.receive",
            event::NETWORK_RECEIVE,
            "127.0.0.2",
            call(|f| {
                let mut buf = [0u8; 1];
                let mut s = f.connected.as_ref().unwrap();
                s.read(&mut buf).map(drop).map_err(errno)
            }),
        ),
        peer(
            "network.getpeername",
            event::NETWORK_GETPEERNAME,
            "127.0.0.2",
            call(|f| {
                f.connected
                    .as_ref()
                    .unwrap()
                    .peer_addr()
                    .map(drop)
                    .map_err(errno)
            }),
        ),
        Op {
            row: "network.bind",
            event: event::NETWORK_BIND,
            key: attr::NETWORK_LOCAL_ADDRESS,
            value: "127.0.0.2".into(),
            attributes: vec![],
            action: call(|_| UdpSocket::bind("127.0.0.2:0").map(drop).map_err(errno)),
        },
        peer(
            "network.accept",
            event::NETWORK_ACCEPT,
            "127.0.0.3",
            Action::Inbound(Box::new(|| {
                let f = fixture().lock().unwrap();
                let to = addr(&f.open_tcp);
                let s = f.inbound_client.as_ref().unwrap();
                s.connect_timeout(&to.into(), Duration::from_secs(3))
                    .map_err(|e| {
                        if e.kind() == std::io::ErrorKind::TimedOut {
                            libc::ETIMEDOUT
                        } else {
                            errno(e)
                        }
                    })
            })),
        ),
        peer(
            "network.receive.datagram",
            event::NETWORK_RECEIVE,
            "127.0.0.3",
            Action::Inbound(Box::new(|| {
                let f = fixture().lock().unwrap();
                let server = f.datagram_server.as_ref().unwrap();
                let to = server.local_addr().map_err(errno)?;
                f.datagram_sender
                    .as_ref()
                    .unwrap()
                    .send_to(b"x", to)
                    .map_err(errno)?;
                let mut buf = [0u8; 8];
                match server.recv_from(&mut buf) {
                    Ok(_) => Ok(()),
                    // A dropped datagram never arrives.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(libc::ETIMEDOUT),
                    Err(e) => Err(errno(e)),
                }
            })),
        ),
    ]
}

fn untouched() -> Vec<Untouched> {
    vec![
        Untouched {
            what: "allowed-peer",
            key: attr::NETWORK_PEER_ADDRESS,
            value: "127.0.0.1".into(),
            action: call(|f| {
                TcpStream::connect(addr(&f.open_tcp))
                    .map(drop)
                    .map_err(errno)
            }),
        },
        // An SCTP list of an allowed address is let through.
        Untouched {
            what: "sctp-bindx-allowed",
            key: attr::NETWORK_LOCAL_ADDRESS,
            value: "127.0.0.7".into(),
            action: call(|_| sctp(Sctp::Bindx, [127, 0, 0, 7], 0)),
        },
    ]
}

fn config(mode: &str) -> String {
    format!(
        "files:\n  enable: false\nnetwork:\n  enable: true\n  mode: {mode}\n  raw: deny\n  cidr:\n    \
         allow: [0.0.0.0/0, '::/0']\n    deny: {CONFIG_CIDRS}\n  gid:\n    deny: [{DENIED_GROUP}]\nkernel:\n  tier: lsm\n"
    )
}

pub fn block(agent: &str) -> Vec<(String, TestResult)> {
    suite(
        agent,
        "block",
        &config("block"),
        Expect::Blocked,
        &setup,
        ops(),
        untouched(),
    )
}

pub fn monitor(agent: &str) -> Vec<(String, TestResult)> {
    suite(
        agent,
        "monitor",
        &config("monitor"),
        Expect::WouldBlock,
        &setup,
        ops(),
        untouched(),
    )
}

/// An allowed UID overrides a denied network, as in safeguard: the same
/// connect is refused for root and let through for UID 1000.
pub fn allowed_uid_overrides_cidr_deny(agent_bin: &str) -> TestResult {
    let listener = TcpListener::bind("127.0.0.2:0").map_err(|e| e.to_string())?;
    let to = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let config = "files:\n  enable: false\nnetwork:\n  enable: true\n  mode: block\n  cidr:\n    \
                  deny: [127.0.0.2/32]\n  uid:\n    allow: [1000]\nkernel:\n  tier: lsm\n";
    let agent = safeguard_test_support::Agent::start(
        agent_bin,
        std::path::Path::new("/tmp/sgtest-uid-override"),
        config,
        crate::cases::READY_WITHIN,
    )?;
    let me = "/bin/safeguard-vm-tests";
    let as_root = safeguard_test_support::run(me, &["--connect", &to], None, None)?;
    let as_user = safeguard_test_support::run(me, &["--connect", &to], Some(1000), None)?;
    let (events, _) = agent.stop()?;
    if as_root.code != libc::EPERM {
        return Err(format!(
            "root's connect: exit {} (want EPERM)",
            as_root.code
        ));
    }
    if as_user.code != 0 {
        return Err(format!(
            "UID 1000's connect: exit {} (want success)",
            as_user.code
        ));
    }
    let reported: Vec<_> = events
        .iter()
        .filter(|e| safeguard_test_support::event_name(e) == Some(event::NETWORK_CONNECT))
        .collect();
    if reported.len() != 1 || reported[0][attr::PROCESS_PID] != as_root.pid {
        return Err(format!("want one event, for root's connect: {reported:?}"));
    }
    Ok(())
}

/// `network.command` rules judge the name a process was executed as, not
/// its `comm`: a program run as `apt` keeps its allowance; a process that
/// renames itself `apt` (`prctl(PR_SET_NAME)`, `/proc/self/comm`) gets
/// none, also one that was running before the agent started.
pub fn command_rules_judge_the_name_run_as(agent_bin: &str) -> TestResult {
    use safeguard_test_support::run;
    let listener = TcpListener::bind("127.0.0.2:0").map_err(|e| e.to_string())?;
    let to = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let dir = std::path::Path::new("/tmp/sgtest-command");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let me = "/bin/safeguard-vm-tests";
    let apt = dir.join("apt");
    std::fs::copy(me, &apt).map_err(|e| format!("copy to {}: {e}", apt.display()))?;
    let apt = apt.to_string_lossy().into_owned();
    let go = dir.join("go").to_string_lossy().into_owned();
    // Running before the agent starts: renames itself once `go` exists.
    let early = std::process::Command::new(me)
        .args(["--renamed-connect", "prctl", "apt", &to, &go])
        .spawn()
        .map_err(|e| e.to_string())?;
    let config = "files:\n  enable: false\nnetwork:\n  enable: true\n  mode: block\n  cidr:\n    \
                  deny: [127.0.0.2/32]\n  command:\n    allow: [apt]\nkernel:\n  tier: lsm\n";
    let agent = safeguard_test_support::Agent::start(
        agent_bin,
        &dir.join("agent"),
        config,
        crate::cases::READY_WITHIN,
    )?;
    let real = run(&apt, &["--connect", &to], None, None)?;
    let by_prctl = run(me, &["--renamed-connect", "prctl", "apt", &to], None, None)?;
    let by_proc = run(me, &["--renamed-connect", "proc", "apt", &to], None, None)?;
    std::fs::write(&go, "").map_err(|e| e.to_string())?;
    let early_pid = early.id();
    let early = early.wait_with_output().map_err(|e| e.to_string())?;
    let (events, _) = agent.stop()?;
    let code = |ran: &safeguard_test_support::Ran| ran.code;
    let results = [
        ("run as apt", code(&real), 0),
        ("renamed apt by prctl", code(&by_prctl), libc::EPERM),
        (
            "renamed apt through /proc/self/comm",
            code(&by_proc),
            libc::EPERM,
        ),
        (
            "renamed apt, running before the agent",
            early.status.code().unwrap_or(-1),
            libc::EPERM,
        ),
    ];
    for (what, got, want) in results {
        if got != want {
            return Err(format!("{what}: exit {got}, want {want}"));
        }
    }
    let refused: Vec<_> = events
        .iter()
        .filter(|e| {
            safeguard_test_support::event_name(e) == Some(event::NETWORK_CONNECT)
                && e[attr::DECISION] == "blocked"
        })
        .map(|e| e[attr::PROCESS_PID].as_u64().unwrap_or(0) as u32)
        .collect();
    for pid in [by_prctl.pid, by_proc.pid, early_pid] {
        if !refused.contains(&pid) {
            return Err(format!(
                "no blocked connect reported for pid {pid}: {refused:?}"
            ));
        }
    }
    if refused.contains(&real.pid) {
        return Err("the real apt's connect was reported blocked".into());
    }
    Ok(())
}
