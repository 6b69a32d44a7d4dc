//! safeguard's kernel programs. One program per hook, each driven by maps
//! that the agent fills from its policy; never one program per rule.
//!
//! - `exec_name`: the name each process was executed as (command rules).
//! - `file`: BPF-LSM programs that enforce and audit the file policy.
//! - `file_audit`: the audit tier for opens, on kernels that refuse BPF-LSM.
//! - `process`: exec policy (BPF-LSM) and the process life cycle.
//! - `guard`: `kernel.protect`, the agent kept from being switched off.
//! - `mount`: mount policy (BPF-LSM).
//! - `mount_overlay`: the mount policy on overlay layers (BPF-LSM).
//! - `net`: network policy (BPF-LSM socket hooks).
//! - `net_cgroup`: the audit tier for the network, on kernels that refuse
//!   BPF-LSM: cgroup sock_addr programs.
#![no_std]
#![no_main]
// Built with RUSTC_BOOTSTRAP=1 (see collector/build.rs); the intrinsic gives a
// fetch-and-add on a target without compare-and-swap.
#![feature(core_intrinsics)]
#![allow(internal_features)]
// Map keys go to `get`/`insert` by reference: by value, each call would copy
// its key onto the 512-byte stack first.
#![allow(clippy::needless_borrows_for_generic_args)]

/// Keeps the decision of an earlier BPF-LSM program on the same hook (the
/// last argument of every LSM program).
macro_rules! earlier_denial {
    ($ctx:expr, $n:expr) => {{
        let earlier: i32 = $ctx.arg($n);
        if earlier != 0 {
            return if (-4095..0).contains(&earlier) {
                earlier
            } else {
                -1
            };
        }
    }};
}

mod cgroup;
mod exec_name;
mod file;
mod file_audit;
mod guard;
mod kernel;
mod maps;
mod mount;
mod mount_overlay;
mod net;
mod net_cgroup;
mod process;
mod record;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
