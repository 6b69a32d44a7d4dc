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
            ExitCode::FAILURE
        }
    }
}
