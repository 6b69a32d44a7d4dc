//! `safeguard unpin`: removes what a stopped agent left pinned.

use std::process::ExitCode;

use super::load_config;
use crate::{cli::UnpinArgs, kernel, status};

pub fn unpin(args: &UnpinArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !args.force && status::query(&config.status_socket).is_ok() {
        eprintln!(
            "safeguard: an agent is running (it answers on {}); stop it first, or use --force",
            config.status_socket.display()
        );
        return ExitCode::FAILURE;
    }
    let pins = kernel::PinDir::new(&config.pin_dir);
    if !pins.exists() {
        println!("nothing is pinned under {}", config.pin_dir.display());
        return ExitCode::SUCCESS;
    }
    match pins.remove_all() {
        Ok(links) => {
            println!(
                "removed {links} program links and the maps pinned under {}",
                config.pin_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("safeguard: cannot unpin: {e}");
            if refused_by_guard(&e) {
                eprintln!(
                    "safeguard: a running agent with kernel.protect refuses this to every other \
                     process; stop it first (safeguard stop, or systemctl stop safeguard)"
                );
            }
            ExitCode::FAILURE
        }
    }
}

/// EPERM on a pin: what a running agent's guard answers (root is otherwise
/// allowed to unlink on bpffs).
fn refused_by_guard(e: &kernel::PinError) -> bool {
    matches!(e, kernel::PinError::Io { source, .. } if source.raw_os_error() == Some(libc::EPERM))
}
