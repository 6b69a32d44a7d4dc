//! safeguard: parses the command line and runs the subcommand. The agent
//! itself is `safeguard::agent`; the way data flows through it is
//! described in the library's root and in ARCHITECTURE.md.

use std::process::ExitCode;

use clap::Parser as _;
use safeguard::{
    cli::{CONTROLLER_GENERATE_OUTPUT, Cli, Command, ControllerCommand},
    commands,
};

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => commands::run(args),
        Command::Check(args) => commands::check(&args),
        Command::Status(args) => commands::status(&args),
        Command::Stop(args) => commands::stop(&args),
        Command::Unpin(args) => commands::unpin(&args),
        Command::Learn(args) => commands::learn(&args),
        Command::Generate(args) => commands::generate(&args),
        Command::Controller(ControllerCommand::Generate(mut args)) => {
            args.output
                .get_or_insert_with(|| CONTROLLER_GENERATE_OUTPUT.into());
            commands::generate(&args)
        }
    }
}
