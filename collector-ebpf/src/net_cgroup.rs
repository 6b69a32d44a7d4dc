//! Audit tier of the network module: cgroup sock_addr programs, for kernels
//! that refuse BPF-LSM. They apply to the tasks of the cgroup they are
//! attached to (`network.cgroup`). connect and sendmsg can still refuse
//! (return 0: the syscall fails with EPERM); recvmsg and getpeername only
//! report.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use collector_common::{
    Hook,
    net::{AF_INET, AF_INET6, NetOp},
};

use crate::net::{Context, Peer, judge};

/// `(peer, context)` from a `struct bpf_sock_addr`: the user's address for
/// connect and sendmsg, the peer for recvmsg and getpeername.
#[inline(always)]
fn ends(ctx: &SockAddrContext, v6: bool) -> (Peer, Context) {
    let sa = unsafe { &*ctx.sock_addr };
    // Only the user's fields: the verifier allows `msg_src_*` on sendmsg
    // programs alone, so the local end is left unknown on this tier.
    let mut addr = [0u8; 16];
    if v6 {
        for i in 0..4 {
            addr[i * 4..i * 4 + 4].copy_from_slice(&sa.user_ip6[i].to_ne_bytes());
        }
    } else {
        addr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    }
    (
        Peer {
            family: if v6 { AF_INET6 } else { AF_INET },
            addr,
            port: u16::from_be(sa.user_port as u16),
        },
        Context {
            protocol: sa.protocol as u8,
            local_addr: [0; 16],
            local_port: 0,
        },
    )
}

/// 1 lets the operation through, 0 refuses it (EPERM).
#[inline(always)]
fn decide(ctx: &SockAddrContext, v6: bool, hook: Hook, op: NetOp, can_refuse: bool) -> i32 {
    let (peer, context) = ends(ctx, v6);
    match judge(hook, op, &peer, move || context, can_refuse) {
        Some(v) if v.lsm_return() != 0 => 0,
        _ => 1,
    }
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    decide(&ctx, false, Hook::CgroupConnect4, NetOp::Connect, true)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    decide(&ctx, true, Hook::CgroupConnect6, NetOp::Connect, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    decide(&ctx, false, Hook::CgroupSendmsg4, NetOp::Send, true)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    decide(&ctx, true, Hook::CgroupSendmsg6, NetOp::Send, true)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn recvmsg4(ctx: SockAddrContext) -> i32 {
    decide(&ctx, false, Hook::CgroupRecvmsg4, NetOp::Receive, false);
    1
}

#[cgroup_sock_addr(recvmsg6)]
pub fn recvmsg6(ctx: SockAddrContext) -> i32 {
    decide(&ctx, true, Hook::CgroupRecvmsg6, NetOp::Receive, false);
    1
}

#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    decide(
        &ctx,
        false,
        Hook::CgroupGetpeername4,
        NetOp::Getpeername,
        false,
    );
    1
}

#[cgroup_sock_addr(getpeername6)]
pub fn getpeername6(ctx: SockAddrContext) -> i32 {
    decide(
        &ctx,
        true,
        Hook::CgroupGetpeername6,
        NetOp::Getpeername,
        false,
    );
    1
}
