//! Network operations: one record layout for every socket hook.

use crate::{EventHeader, ProcessInfo};

/// The operation a network record is about.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetOp {
    /// connect(2): the peer is the destination.
    Connect = 0,
    /// sendto(2)/sendmsg(2) with a destination address.
    Send = 1,
    /// recvfrom(2)/recvmsg(2) on a connected socket: the peer is the source.
    Receive = 2,
    /// getpeername(2).
    Getpeername = 3,
    /// bind(2): the local address.
    Bind = 4,
    /// An inbound TCP connection request (SYN): the peer is the source.
    Accept = 5,
    /// A raw or packet socket made: no addresses; `family` is the
    /// socket's (also `AF_PACKET`), `protocol` the low byte of its
    /// protocol, `local_port` its type, `peer_port` its whole protocol.
    Socket = 6,
}

impl NetOp {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Connect),
            1 => Some(Self::Send),
            2 => Some(Self::Receive),
            3 => Some(Self::Getpeername),
            4 => Some(Self::Bind),
            5 => Some(Self::Accept),
            6 => Some(Self::Socket),
            _ => None,
        }
    }
}

/// `sin_family` of "no address family": on an IPv4 socket, `sendto` takes
/// it for `AF_INET` and sends to `sin_addr`; `bind` takes it for
/// `0.0.0.0`; `connect` drops the association.
pub const AF_UNSPEC: u16 = 0;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const AF_PACKET: u16 = 17;
pub const SOCK_DGRAM: u16 = 2;
pub const SOCK_RAW: u16 = 3;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;

/// A network record (fixed size). Addresses are in network byte order; an
/// IPv4 address fills the first 4 bytes. Ports are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetEvent {
    pub header: EventHeader,
    pub process: ProcessInfo,
    /// [`NetOp`].
    pub op: u8,
    /// `IPPROTO_TCP`, `IPPROTO_UDP`, or 0 when unknown.
    pub protocol: u8,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    pub local_port: u16,
    pub peer_port: u16,
    pub local_addr: [u8; 16],
    pub peer_addr: [u8; 16],
}

pub const NET_EVENT_SIZE: usize = core::mem::size_of::<NetEvent>();

/// The raw tracepoint programs that keep `EXEC_NAMES` (the name each
/// process was executed as), attached with the network module:
/// `(program, raw tracepoint)`.
pub const EXEC_NAME_PROGRAMS: [(&str, &str); 3] = [
    ("exec_name_exec", "sched_process_exec"),
    ("exec_name_fork", "sched_process_fork"),
    ("exec_name_exit", "sched_process_exit"),
];

/// Key data of the IPv4 LPM trie (network byte order).
pub type V4Key = [u8; 4];
/// Key data of the IPv6 LPM trie.
pub type V6Key = [u8; 16];

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<NetEvent>() == 120);
    assert!(offset_of!(NetEvent, op) == 80);
    assert!(offset_of!(NetEvent, local_addr) == 88);
};
