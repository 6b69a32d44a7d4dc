//! Runs inside the test VM (see tests/vm/): starts the real `safeguard`
//! binary with a policy, performs real syscalls from real programs, stops
//! the agent and checks what it reported. Prints one line per test:
//! `SGTEST PASS <name>` or `SGTEST FAIL <name> <reason>`.
//!
//! Usage: safeguard-vm-tests [--agent /bin/safeguard] [name-filter...]

mod cases;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut agent = "/bin/safeguard".to_string();
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--agent" => agent = args.next().expect("--agent needs a path"),
            _ => filters.push(arg),
        }
    }

    let mut failed = 0;
    for (name, case) in cases::ALL {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        match case(&agent) {
            Ok(()) => println!("SGTEST PASS {name}"),
            Err(reason) => {
                failed += 1;
                println!("SGTEST FAIL {name} {}", reason.replace('\n', " | "));
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
