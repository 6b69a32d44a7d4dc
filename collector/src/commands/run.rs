//! `safeguard run`: the agent's diagnostics and runtime around
//! [`crate::agent::run`].

use std::process::ExitCode;

use tracing::error;

use super::{EXIT_CONFIG, load_config};
use crate::{
    agent,
    cli::RunArgs,
    config::{self, Config, Output},
};

pub fn run(args: RunArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let output = match output(args.output.as_deref(), &config) {
        Ok(output) => output,
        Err(message) => {
            eprintln!("safeguard: configuration error: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let options = agent::Options {
        // An explicit --output means every event goes there.
        local_always: args.output.is_some() || config.log.mode == config::LocalLog::Always,
        sources: args.config,
        output,
        record: args.record,
        stop_after: None,
    };
    run_agent(config, options)
}

/// Runs the agent with `config` until it stops.
pub(super) fn run_agent(config: Config, options: agent::Options) -> ExitCode {
    init_diagnostics(&config);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("safeguard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent::run(config, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", crate::error_chain(&e));
            // A policy the kernel's maps cannot hold is a configuration
            // error, as `check` says (and systemd does not retry it).
            if e.downcast_ref::<crate::policy::TooLarge>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Where events go: `--output` if given, else `log.output`.
fn output(flag: Option<&str>, config: &Config) -> Result<Output, String> {
    match flag {
        None => Ok(config.log.output.clone()),
        Some("-" | "stdout") => Ok(Output::Stdout),
        Some(path) if path.starts_with('/') => Ok(Output::File(path.into())),
        Some(other) => Err(format!(
            "--output: {other:?} is not valid: - (stdout) or an absolute file path"
        )),
    }
}

/// Agent diagnostics go to stderr; RUST_LOG overrides log.level.
fn init_diagnostics(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let level = match config.log.level {
        config::LogLevel::Debug => "debug",
        config::LogLevel::Info => "info",
        config::LogLevel::Warning => "warn",
        config::LogLevel::Error | config::LogLevel::Critical => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_stdout_an_absolute_path_or_an_error_naming_the_flag() {
        let config = config::load(&config::Sources {
            file: None,
            overrides: Vec::new(),
            environment: false,
        })
        .unwrap();
        assert_eq!(output(Some("-"), &config), Ok(Output::Stdout));
        assert_eq!(
            output(Some("/tmp/e.log"), &config),
            Ok(Output::File("/tmp/e.log".into()))
        );
        assert_eq!(output(None, &config), Ok(config.log.output.clone()));
        let err = output(Some("e.log"), &config).unwrap_err();
        assert!(err.starts_with("--output: \"e.log\" is not valid"), "{err}");
    }
}
