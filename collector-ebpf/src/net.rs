//! The network module on BPF-LSM: one program per socket hook, all judged
//! by the same rules (CIDRs in LPM tries, commands, UIDs, GIDs), as
//! safeguard judges connect and bind.
//!
//! Which hook sees what: `socket_connect` and `socket_sendmsg` (with a
//! destination) the peer a task wants, `socket_sendmsg` without one the
//! peer of a connected socket (connected before the rule, perhaps); `socket_recvmsg` and
//! `socket_getpeername` the peer of a connected socket; `socket_bind` the
//! local address; `inet_conn_request` the source of an inbound TCP SYN,
//! which is dropped when denied (the client sees no answer);
//! `socket_sock_rcv_skb` the source of a datagram arriving on an
//! unconnected UDP socket, dropped when denied (recvfrom never sees it).

use aya_ebpf::{
    helpers::{bpf_get_current_uid_gid, bpf_probe_read_kernel},
    macros::lsm,
    maps::lpm_trie::Key,
    programs::LsmContext,
};
use collector_common::{
    EventKind, FLAG_NET_DENY_RAW, FLAG_NET_WHO_RULES, Hook, Module, ModuleConfig, POLICY_WHITELIST,
    PathRule, RULE_RAW_SOCKET,
    net::{
        AF_INET, AF_INET6, AF_PACKET, AF_UNSPEC, IPPROTO_SCTP, IPPROTO_UDP, NetEvent, NetOp,
        SOCK_RAW,
    },
    net_denial,
};

use crate::{
    kernel,
    maps::{net_command_rules, net_gid_rules, net_uid_rules, net_v4_rules, net_v6_rules},
    record::{self, Verdict},
};

/// One side of a connection judged by the policy.
pub struct Peer {
    pub family: u16,
    pub addr: [u8; 16],
    pub port: u16,
}

/// The rest of the record.
pub struct Context {
    pub protocol: u8,
    pub local_addr: [u8; 16],
    pub local_port: u16,
}

/// `::ffff:0:0/96`, IPv4-mapped IPv6.
#[inline(always)]
fn is_v4_mapped(addr: &[u8; 16]) -> bool {
    addr[..10] == [0; 10] && addr[10] == 0xff && addr[11] == 0xff
}

/// The address rules (CIDR tries) on `peer`; a rule of zeros where none
/// matches.
#[inline(always)]
fn cidr_rule(config: &ModuleConfig, peer: &Peer) -> PathRule {
    match peer.family {
        AF_INET => {
            let mut a = [0u8; 4];
            a.copy_from_slice(&peer.addr[..4]);
            net_v4_rules(config).get(Key::new(32, a)).copied()
        }
        AF_INET6 if is_v4_mapped(&peer.addr) => {
            let mut a = [0u8; 4];
            a.copy_from_slice(&peer.addr[12..]);
            net_v4_rules(config).get(Key::new(32, a)).copied()
        }
        AF_INET6 => net_v6_rules(config).get(Key::new(128, peer.addr)).copied(),
        _ => None,
    }
    .unwrap_or_default()
}

/// [`cidr_rule`] in policy set `set`, for a `bpf_loop` callback (which
/// has no `ModuleConfig` at hand).
#[inline(always)]
fn cidr_rule_of_set(set: u64, peer: &Peer) -> PathRule {
    use crate::maps::{NET_V4_RULES_0, NET_V4_RULES_1, NET_V6_RULES_0, NET_V6_RULES_1};
    let (v4, v6) = if set == 0 {
        (&NET_V4_RULES_0, &NET_V6_RULES_0)
    } else {
        (&NET_V4_RULES_1, &NET_V6_RULES_1)
    };
    let mut a = [0u8; 4];
    match peer.family {
        AF_INET => {
            a.copy_from_slice(&peer.addr[..4]);
            v4.get(Key::new(32, a)).copied()
        }
        AF_INET6 if is_v4_mapped(&peer.addr) => {
            a.copy_from_slice(&peer.addr[12..]);
            v4.get(Key::new(32, a)).copied()
        }
        AF_INET6 => v6.get(Key::new(128, peer.addr)).copied(),
        _ => None,
    }
    .unwrap_or_default()
}

/// The network policy on `peer` for the current task.
#[inline(always)]
pub fn denial(config: &ModuleConfig, peer: &Peer, inbound: bool) -> Option<u32> {
    // A rule of zeros where nothing matches (the same answer as none): an
    // Option's empty payload can reach the verifier as a register never
    // written.
    // An IPv4-mapped IPv6 address (::ffff:a.b.c.d, a dual-stack socket's
    // way to reach a.b.c.d) is the IPv4 address: it is judged by the IPv4
    // rules, or a v4 deny would not hold against an AF_INET6 socket.
    if peer.family != AF_INET && peer.family != AF_INET6 {
        return None;
    }
    let cidr = cidr_rule(config, peer);
    // Who is connecting matters only to a policy with rules about it, and
    // only where the current task is the one asking: an inbound packet is
    // handled in whatever task the kernel was running (on loopback, the
    // sender), which says nothing about the receiver.
    let mut command = PathRule::default();
    let mut uid = PathRule::default();
    let mut gid = PathRule::default();
    if config.flags & FLAG_NET_WHO_RULES != 0 && !inbound {
        let comm = crate::exec_name::current();
        let uid_gid = bpf_get_current_uid_gid();
        let ids = (uid_gid as u32, (uid_gid >> 32) as u32);
        command = unsafe { net_command_rules(config).get(&comm) }
            .copied()
            .unwrap_or_default();
        uid = unsafe { net_uid_rules(config).get(&ids.0) }
            .copied()
            .unwrap_or_default();
        gid = unsafe { net_gid_rules(config).get(&ids.1) }
            .copied()
            .unwrap_or_default();
        if gid.deny_rule == 0 {
            gid = supplementary_gid_rule(config.generation, gid);
        }
    }
    net_denial(
        Some(&cidr),
        Some(&command),
        Some(&uid),
        Some(&gid),
        config.policy,
        config.flags,
    )
}

/// Judges `peer` and reports a denial. Returns the program's return value
/// for an LSM hook (0 or -EPERM); `enforcing` is false on audit hooks.
/// `context` is read only for a record: most operations are let through
/// unreported, and they should not pay for it.
#[inline(always)]
pub fn judge(
    hook: Hook,
    op: NetOp,
    peer: &Peer,
    context: impl FnOnce() -> Context,
    enforcing: bool,
) -> Option<Verdict> {
    let config = record::active_module(Module::Network)?;
    let peer = &settled(hook, peer)?;
    // Port 0 is judged like any other: ICMP through ping sockets is sent
    // to port 0, and reaches the address all the same.
    let inbound = matches!(hook, Hook::LsmInetConnRequest | Hook::LsmSockRcvSkb);
    let verdict = record::verdict(config, denial(config, peer, inbound), enforcing)?;
    let ctx = context();
    let mut ev = NetEvent {
        header: record::header(EventKind::Net, hook, config.mode, &verdict),
        op: op as u8,
        protocol: ctx.protocol,
        family: peer.family,
        local_port: ctx.local_port,
        peer_port: peer.port,
        local_addr: ctx.local_addr,
        peer_addr: peer.addr,
        ..Default::default()
    };
    kernel::current_process(&mut ev.process);
    record::submit(hook, (&ev as *const NetEvent).cast(), size_of::<NetEvent>());
    Some(verdict)
}

/// `peer`, for a BPF-LSM program, by way of a per-CPU map: the verifier
/// then knows nothing of it but its type, so the ways a program reached
/// it (each address family, a fallback read) meet in one state, and the
/// policy after is checked once rather than once per way. Inline, several
/// socket programs came near the million instructions it may check on
/// 6.1. The cgroup programs are small and keep their peer as it is.
#[inline(always)]
fn settled(hook: Hook, peer: &Peer) -> Option<Peer> {
    if matches!(
        hook,
        Hook::CgroupConnect4
            | Hook::CgroupConnect6
            | Hook::CgroupSendmsg4
            | Hook::CgroupSendmsg6
            | Hook::CgroupRecvmsg4
            | Hook::CgroupRecvmsg6
            | Hook::CgroupGetpeername4
            | Hook::CgroupGetpeername6
    ) {
        return Some(Peer { ..*peer });
    }
    let slot = PEER_SCRATCH.get_ptr_mut(0)?;
    unsafe {
        (*slot).family = u64::from(peer.family);
        (*slot).port = u64::from(peer.port);
        (*slot).addr = peer.addr;
    }
    // Read back from the map (volatile, so the compiler does not hand back
    // the values just written): the verifier tracks no map contents.
    let slot = unsafe { core::ptr::read_volatile(slot) };
    Some(Peer {
        family: slot.family as u16,
        addr: slot.addr,
        port: slot.port as u16,
    })
}

/// A peer as [`settled`] keeps it.
#[repr(C)]
struct PeerSlot {
    family: u64,
    port: u64,
    addr: [u8; 16],
}

#[aya_ebpf::macros::map]
static PEER_SCRATCH: aya_ebpf::maps::PerCpuArray<PeerSlot> =
    aya_ebpf::maps::PerCpuArray::with_max_entries(1, 0);

/// `sockaddr_in` and `sockaddr_in6` up to the IPv6 address.
#[repr(C)]
#[derive(Default)]
struct SockaddrPrefix {
    family: u16,
    /// Network order.
    port: u16,
    /// `sin_addr`, or `sin6_flowinfo`.
    v4_addr: [u8; 4],
    v6_addr: [u8; 16],
}

/// A `struct sockaddr *` in kernel memory: `(family, address, port)`. One
/// read of the longest layout (`sockaddr_in6` up to its address): the
/// system calls keep a caller's address in a `sockaddr_storage`, so the
/// bytes past a shorter one are there to read, and are not used. A sender
/// in the kernel may pass a bare `sockaddr_in`; should the long read fault
/// there, the IPv4 part is read alone.
///
/// `AF_UNSPEC` is read as `AF_INET` where `unspec_is_v4` says the socket
/// takes it so (`sendto` and `bind` on an IPv4 socket): the kernel sends
/// to, or binds, the `sin_addr` that follows.
#[inline(always)]
fn sockaddr(addr: *const u8, unspec_is_v4: impl FnOnce() -> bool) -> Option<Peer> {
    if addr.is_null() {
        return None;
    }
    let raw =
        unsafe { bpf_probe_read_kernel(addr.cast::<SockaddrPrefix>()) }.unwrap_or_else(|_| {
            let v4: [u8; 8] = kernel::read_at(addr, 0);
            let family = u16::from_ne_bytes([v4[0], v4[1]]);
            SockaddrPrefix {
                // A whole sockaddr_in6 never faults at 24 bytes: this one is
                // not what it says.
                family: if family == AF_INET || family == AF_UNSPEC {
                    family
                } else {
                    u16::MAX
                },
                port: u16::from_ne_bytes([v4[2], v4[3]]),
                v4_addr: [v4[4], v4[5], v4[6], v4[7]],
                v6_addr: [0; 16],
            }
        });
    let mut a = [0u8; 16];
    let family = match raw.family {
        AF_INET => {
            a[..4].copy_from_slice(&raw.v4_addr);
            AF_INET
        }
        AF_INET6 => {
            a = raw.v6_addr;
            AF_INET6
        }
        AF_UNSPEC if unspec_is_v4() => {
            a[..4].copy_from_slice(&raw.v4_addr);
            AF_INET
        }
        _ => return None,
    };
    Some(Peer {
        family,
        addr: a,
        port: u16::from_be(raw.port),
    })
}

/// The socket's own end and protocol.
#[inline(always)]
fn context_of(socket: *const u8) -> Context {
    let (_, protocol, local_addr, local_port, _, _) = kernel::sock_ends(kernel::socket_sk(socket));
    Context {
        protocol,
        local_addr,
        local_port,
    }
}

/// The peer of a connected socket, if it has one.
#[inline(always)]
fn connected_peer(socket: *const u8) -> Option<(Peer, Context)> {
    let (family, protocol, local_addr, local_port, addr, port) =
        kernel::sock_ends(kernel::socket_sk(socket));
    if (family != AF_INET && family != AF_INET6) || port == 0 {
        return None;
    }
    Some((
        Peer { family, addr, port },
        Context {
            protocol,
            local_addr,
            local_port,
        },
    ))
}

#[inline(always)]
fn lsm_return(v: Option<Verdict>) -> i32 {
    v.map_or(0, |v| v.lsm_return())
}

#[lsm(hook = "socket_connect")]
pub fn socket_connect(ctx: LsmContext) -> i32 {
    // (struct socket *sock, struct sockaddr *address, int addrlen)
    earlier_denial!(ctx, 3);
    let socket: *const u8 = ctx.arg(0);
    // connect(AF_UNSPEC) drops an association: no destination.
    let Some(peer) = sockaddr(ctx.arg(1), || false) else {
        return 0;
    };
    lsm_return(judge(
        Hook::LsmSocketConnect,
        NetOp::Connect,
        &peer,
        || context_of(socket),
        true,
    ))
}

#[lsm(hook = "socket_sendmsg")]
pub fn socket_sendmsg(ctx: LsmContext) -> i32 {
    // (struct socket *sock, struct msghdr *msg, int size)
    earlier_denial!(ctx, 3);
    let socket: *const u8 = ctx.arg(0);
    let name = kernel::msghdr_name(ctx.arg(1));
    if name.is_null() {
        // No destination: a connected socket's peer. It was judged at
        // connect, but perhaps before the rule (or the agent) was there.
        let family = kernel::socket_family(socket);
        if family != AF_INET && family != AF_INET6 {
            return 0; // Unix sockets and the like: outside the policy
        }
        let Some((peer, context)) = connected_peer(socket) else {
            return 0;
        };
        return lsm_return(judge(
            Hook::LsmSocketSendmsg,
            NetOp::Send,
            &peer,
            move || context,
            true,
        ));
    }
    let Some(peer) = sockaddr(name, || kernel::socket_family(socket) == AF_INET) else {
        return 0;
    };
    lsm_return(judge(
        Hook::LsmSocketSendmsg,
        NetOp::Send,
        &peer,
        || context_of(socket),
        true,
    ))
}

#[lsm(hook = "socket_recvmsg")]
pub fn socket_recvmsg(ctx: LsmContext) -> i32 {
    // (struct socket *sock, struct msghdr *msg, int size, int flags)
    earlier_denial!(ctx, 4);
    let Some((peer, context)) = connected_peer(ctx.arg(0)) else {
        return 0;
    };
    lsm_return(judge(
        Hook::LsmSocketRecvmsg,
        NetOp::Receive,
        &peer,
        move || context,
        true,
    ))
}

#[lsm(hook = "socket_getpeername")]
pub fn socket_getpeername(ctx: LsmContext) -> i32 {
    // (struct socket *sock)
    earlier_denial!(ctx, 1);
    let Some((peer, context)) = connected_peer(ctx.arg(0)) else {
        return 0;
    };
    lsm_return(judge(
        Hook::LsmSocketGetpeername,
        NetOp::Getpeername,
        &peer,
        move || context,
        true,
    ))
}

#[lsm(hook = "socket_bind")]
pub fn socket_bind(ctx: LsmContext) -> i32 {
    // (struct socket *sock, struct sockaddr *address, int addrlen)
    earlier_denial!(ctx, 3);
    let socket: *const u8 = ctx.arg(0);
    let Some(local) = sockaddr(ctx.arg(1), || kernel::socket_family(socket) == AF_INET) else {
        return 0;
    };
    lsm_return(judge(
        Hook::LsmSocketBind,
        NetOp::Bind,
        &local,
        || context_of(socket),
        true,
    ))
}

/// The source and destination of a packet: `(peer, context)` with the
/// ports from the transport header (TCP and UDP start alike).
#[inline(always)]
fn packet_ends(skb: *const u8, protocol: u8) -> Option<(Peer, Context)> {
    let (ip, transport) = kernel::skb_headers(skb);
    let version = kernel::read_at::<u8>(ip, 0) >> 4;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    let family = match version {
        4 => {
            src[..4].copy_from_slice(&kernel::read_at::<[u8; 4]>(ip, 12));
            dst[..4].copy_from_slice(&kernel::read_at::<[u8; 4]>(ip, 16));
            AF_INET
        }
        6 => {
            src = kernel::read_at(ip, 8);
            dst = kernel::read_at(ip, 24);
            AF_INET6
        }
        _ => return None,
    };
    Some((
        Peer {
            family,
            addr: src,
            port: u16::from_be(kernel::read_at(transport, 0)),
        },
        Context {
            protocol,
            local_addr: dst,
            local_port: u16::from_be(kernel::read_at(transport, 2)),
        },
    ))
}

#[lsm(hook = "inet_conn_request")]
pub fn inet_conn_request(ctx: LsmContext) -> i32 {
    // (const struct sock *sk, struct sk_buff *skb, struct request_sock *req)
    earlier_denial!(ctx, 3);
    let Some((peer, context)) = packet_ends(ctx.arg(1), collector_common::net::IPPROTO_TCP) else {
        return 0;
    };
    lsm_return(judge(
        Hook::LsmInetConnRequest,
        NetOp::Accept,
        &peer,
        move || context,
        true,
    ))
}

#[lsm(hook = "socket_sock_rcv_skb")]
pub fn socket_sock_rcv_skb(ctx: LsmContext) -> i32 {
    // (struct sock *sk, struct sk_buff *skb): every packet a socket
    // receives, so return early for all but unconnected UDP sockets.
    earlier_denial!(ctx, 2);
    if record::active_module(Module::Network).is_none() {
        return 0;
    }
    let (_, protocol, _, _, _, peer_port) = kernel::sock_ends(ctx.arg(0));
    if protocol != IPPROTO_UDP || peer_port != 0 {
        return 0; // not UDP, or connected (judged at connect and recvmsg)
    }
    let Some((peer, context)) = packet_ends(ctx.arg(1), IPPROTO_UDP) else {
        return 0;
    };
    lsm_return(judge(
        Hook::LsmSockRcvSkb,
        NetOp::Receive,
        &peer,
        move || context,
        true,
    ))
}

/// A raw or packet socket sends and receives below every address rule
/// (its own headers, or whole frames), so making one is reported, and
/// refused under `network.raw: deny`. Sockets the kernel makes for
/// itself are left alone.
#[lsm(hook = "socket_create")]
pub fn socket_create(ctx: LsmContext) -> i32 {
    // (int family, int type, int protocol, int kern)
    earlier_denial!(ctx, 4);
    let family = ctx.arg::<u32>(0) as u16;
    // The type's low bits; SOCK_NONBLOCK and SOCK_CLOEXEC are flags above.
    let kind = (ctx.arg::<u32>(1) & 0xf) as u16;
    let protocol: u32 = ctx.arg(2);
    let kern: u32 = ctx.arg(3);
    let raw =
        (kind == SOCK_RAW && (family == AF_INET || family == AF_INET6)) || family == AF_PACKET;
    if kern != 0 || !raw {
        return 0;
    }
    let Some(config) = record::active_module(Module::Network) else {
        return 0;
    };
    let denial = (config.flags & FLAG_NET_DENY_RAW != 0).then_some(RULE_RAW_SOCKET);
    let verdict = record::verdict(config, denial, true).unwrap_or(Verdict::AUDIT);
    let mut ev = NetEvent {
        header: record::header(EventKind::Net, Hook::LsmSocketCreate, config.mode, &verdict),
        op: NetOp::Socket as u8,
        protocol: protocol as u8,
        family,
        local_port: kind,
        peer_port: protocol as u16,
        ..Default::default()
    };
    kernel::current_process(&mut ev.process);
    record::submit(
        Hook::LsmSocketCreate,
        (&ev as *const NetEvent).cast(),
        size_of::<NetEvent>(),
    );
    verdict.lsm_return()
}

/// SCTP's options that name peers (`sctp_connectx`, the association a
/// `sendmsg` sets up, the peer's primary address); every other option the
/// hook sees names local addresses (`sctp_bindx`, the primary address).
const SCTP_SET_PEER_PRIMARY_ADDR: i32 = 5;
const SCTP_SOCKOPT_CONNECTX: i32 = 110;
const SCTP_SENDMSG_CONNECT: i32 = 126;
/// Addresses of one SCTP list judged; a longer list is refused in block
/// mode (fail closed).
const SCTP_ADDRS_MAX: u32 = 64;

/// SCTP's own ways to name addresses, which skip `socket_connect` and
/// `socket_bind`: `sctp_connectx` and `sctp_bindx` (setsockopt), and the
/// association a `sendmsg` sets up, each with a packed list of
/// `sockaddr_in` and `sockaddr_in6`. Every address of the list is judged
/// (peers as a connect, local ones as a bind).
#[lsm(hook = "sctp_bind_connect")]
pub fn sctp_bind_connect(ctx: LsmContext) -> i32 {
    // (struct sock *sk, int optname, struct sockaddr *address, int addrlen)
    earlier_denial!(ctx, 4);
    // The list as a plain number, read with a helper: as a typed pointer
    // the verifier forbids the arithmetic that walks the list.
    let args = aya_ebpf::EbpfContext::as_ptr(&ctx) as *const u64;
    let plain = |i: usize| unsafe { bpf_probe_read_kernel(args.add(i)) }.unwrap_or(0);
    sctp_addresses(ctx.arg::<i32>(1), plain(2), ctx.arg::<u32>(3))
}

/// Judges the addresses of an SCTP list (see [`sctp_bind_connect`]): the
/// first that the address rules alone would not let through, or else the
/// first of the list. Rules on who asks (command, UID, GID) answer alike
/// for every address, so one judgement speaks for all. A list with more
/// addresses than were looked at is refused in block mode (fail closed).
#[inline(always)]
fn sctp_addresses(optname: i32, addrs: u64, len: u32) -> i32 {
    let Some(config) = record::active_module(Module::Network) else {
        return 0;
    };
    let op = if matches!(
        optname,
        SCTP_SOCKOPT_CONNECTX | SCTP_SENDMSG_CONNECT | SCTP_SET_PEER_PRIMARY_ADDR
    ) {
        NetOp::Connect
    } else {
        NetOp::Bind
    };
    let Some(list) = SCTP_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    unsafe {
        *list = SctpList {
            addrs,
            len: u64::from(len),
            off: 0,
            found: u64::MAX,
            set: u64::from(config.generation),
            whitelist: u64::from(config.policy == POLICY_WHITELIST),
        };
        aya_ebpf::helpers::generated::bpf_loop(
            SCTP_ADDRS_MAX,
            sctp_step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    let list = unsafe { &*list };
    let too_long = list.found == u64::MAX && list.off < list.len;
    let at = if list.found == u64::MAX {
        0
    } else {
        list.found
    };
    let Some(peer) = sockaddr((addrs + at) as *const u8, || false) else {
        return 0; // not an address the kernel takes: it refuses the list
    };
    let denial = if too_long {
        Some(collector_common::RULE_LIST_TOO_LONG)
    } else {
        denial(config, &peer, false)
    };
    let Some(verdict) = record::verdict(config, denial, true) else {
        return 0;
    };
    // The socket's own end is left out: reading it costs the verifier more
    // than this program may spend, and the list says what matters.
    let mut ev = NetEvent {
        header: record::header(
            EventKind::Net,
            Hook::LsmSctpBindConnect,
            config.mode,
            &verdict,
        ),
        op: op as u8,
        protocol: IPPROTO_SCTP,
        family: peer.family,
        peer_port: peer.port,
        peer_addr: peer.addr,
        ..Default::default()
    };
    kernel::current_process(&mut ev.process);
    record::submit(
        Hook::LsmSctpBindConnect,
        (&ev as *const NetEvent).cast(),
        size_of::<NetEvent>(),
    );
    verdict.lsm_return()
}

/// Bytes of a `sockaddr_in` or `sockaddr_in6`.
#[inline(always)]
fn sockaddr_len(family: u16) -> u64 {
    if family == AF_INET { 16 } else { 28 }
}

/// State of a walk over an SCTP address list, shared with its `bpf_loop`
/// callback. Kept in a map, not on the stack: the verifier then sees the
/// offset as any number and checks one step, rather than following every
/// mix of 16- and 28-byte addresses through the list.
#[aya_ebpf::macros::map]
static SCTP_SCRATCH: aya_ebpf::maps::PerCpuArray<SctpList> =
    aya_ebpf::maps::PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct SctpList {
    addrs: u64,
    len: u64,
    /// Where the next address starts.
    off: u64,
    /// Where the first address the address rules would not let through
    /// starts; `u64::MAX` for none.
    found: u64,
    /// The policy set in force, and whether its policy is a whitelist.
    set: u64,
    whitelist: u64,
}

/// One address of the list, by the address rules alone (CIDR tries).
/// Returns 1 to stop: the end, an address the kernel will not take (it
/// refuses the list), or one found.
#[inline(never)]
extern "C" fn sctp_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(list) = SCTP_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let list = unsafe { &mut *list };
    if list.off >= list.len {
        return 1;
    }
    let Some(peer) = sockaddr((list.addrs + list.off) as *const u8, || false) else {
        list.off = list.len;
        return 1;
    };
    let rule = cidr_rule_of_set(list.set, &peer);
    if rule.deny_rule != 0 || (list.whitelist != 0 && rule.allow_rule == 0) {
        list.found = list.off;
        return 1;
    }
    list.off += sockaddr_len(peer.family);
    0
}

/// State of a walk over the current task's supplementary groups, shared
/// with its `bpf_loop` callback.
#[repr(C)]
struct Groups {
    info: u64,
    set: u64,
    deny: u64,
    allow: u64,
}

/// `primary` (the rule of the task's own GID) with the rules of its
/// supplementary groups: a group's deny rule denies, a group's allow rule
/// allows. Every group is looked at (`bpf_loop`, up to NGROUPS_MAX).
#[inline(always)]
fn supplementary_gid_rule(set: u8, primary: PathRule) -> PathRule {
    let (info, count) = kernel::supplementary_groups();
    if count == 0 {
        return primary;
    }
    let mut groups = Groups {
        info: info as u64,
        set: u64::from(set),
        deny: 0,
        allow: u64::from(primary.allow_rule),
    };
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            count.min(NGROUPS_MAX),
            group_step as *mut core::ffi::c_void,
            (&mut groups as *mut Groups).cast(),
            0,
        )
    };
    PathRule {
        deny_rule: groups.deny as u32,
        allow_rule: groups.allow as u32,
    }
}

/// Most supplementary groups a task can have (`NGROUPS_MAX`).
const NGROUPS_MAX: u32 = 65_536;

/// One group: look its id up. Returns 1 to stop (a deny rule found).
#[inline(never)]
extern "C" fn group_step(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let groups = unsafe { &mut *(ctx as *mut Groups) };
    let Some(gid) = kernel::supplementary_gid(groups.info as *const u8, index as u32) else {
        return 1;
    };
    let map = if groups.set == 0 {
        &crate::maps::NET_GID_RULES_0
    } else {
        &crate::maps::NET_GID_RULES_1
    };
    if let Some(rule) = unsafe { map.get(&gid) } {
        if groups.allow == 0 {
            groups.allow = u64::from(rule.allow_rule);
        }
        if rule.deny_rule != 0 {
            groups.deny = u64::from(rule.deny_rule);
            return 1;
        }
    }
    0
}
