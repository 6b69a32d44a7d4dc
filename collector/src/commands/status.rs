//! `safeguard status`: asks the running agent how it is.

use std::process::ExitCode;

use super::load_config;
use crate::{cli::StatusArgs, status};

pub fn status(args: &StatusArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let snapshot = match status::query(&config.status_socket) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            eprintln!("safeguard: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&snapshot) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("safeguard: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", status::render(&snapshot));
    }
    ExitCode::SUCCESS
}
