//! `safeguard stop`: asks the running agent to stop, over its status
//! socket, and waits until it has exited.

use std::process::ExitCode;

use super::load_config;
use crate::{cli::StopArgs, status};

pub fn stop(args: &StopArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match status::stop(&config.status_socket, args.timeout) {
        Ok(pid) => {
            println!("safeguard (pid {pid}) stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("safeguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
