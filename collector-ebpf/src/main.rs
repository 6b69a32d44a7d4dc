//! safeguard's kernel programs. One program per hook, each driven by maps
//! that the agent fills from its policy; never one program per rule.
//!
//! - `file_open`: BPF-LSM, enforces and audits the file policy.
//! - `open_tracepoints`: the fallback tier for kernels that refuse BPF-LSM;
//!   audits opens from the syscall tracepoints.
#![no_std]
#![no_main]
// Built with RUSTC_BOOTSTRAP=1 (see collector/build.rs); the intrinsic gives a
// fetch-and-add on a target without compare-and-swap.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod file_open;
mod kernel;
mod maps;
mod open_tracepoints;
mod record;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
