//! Command line.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

/// safeguard: eBPF-LSM security agent. Enforces and audits file, network,
/// process and mount policy in the kernel and reports every event as
/// OpenTelemetry.
#[derive(Debug, Parser)]
#[command(name = "safeguard", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the policy into the kernel and report events until stopped
    /// (SIGINT, SIGTERM or `safeguard stop`).
    Run(RunArgs),
    /// Validate a configuration without loading anything; exit 0 if valid.
    Check(ConfigArgs),
    /// Ask the running agent how it is: tiers, rules, counters, exporter.
    Status(StatusArgs),
    /// Stop the running agent over its status socket and wait until it has
    /// exited.
    ///
    /// The agent stops as on SIGTERM: it detaches its programs, drains the
    /// ring buffer, writes every event and delivers its spool (pinned
    /// programs stay, kernel.pin). Needs root: the socket (status.socket)
    /// is root's alone, and the agent follows only root's request. Exits 0
    /// once the agent has exited; 1 when no agent answers, it refuses, or
    /// it is still running after --timeout.
    ///
    /// Under systemd (Restart=always) the unit starts the agent again: to
    /// keep it stopped, use `systemctl stop safeguard`.
    Stop(StopArgs),
    /// Write a whitelist policy of this host as it is now: its running
    /// executables, its users, its networks and current peers, and the
    /// system and home directories. The output is accepted by `check`
    /// unchanged; review it and try it in monitor mode before blocking.
    Generate(GenerateArgs),
    /// Write the narrowest policy that lets what the workload really did
    /// through: watch it for --duration (the agent runs in monitor mode
    /// meanwhile), or read the events already in the local log (--from).
    /// The executables that ran, the addresses connected to, the users and
    /// groups that connected, and the files used under each --protect
    /// tree; everything else is refused by the policy's whitelists. Review
    /// it and try it in monitor mode first.
    Learn(LearnArgs),
    /// openEuler safeguard's commands under their original names.
    #[command(subcommand)]
    Controller(ControllerCommand),
    /// Remove the programs and maps a stopped agent left pinned
    /// (kernel.pin): their enforcement ends, and events still waiting in
    /// the pinned ring buffer are discarded.
    Unpin(UnpinArgs),
}

#[derive(Debug, Subcommand)]
pub enum ControllerCommand {
    /// The same as `safeguard generate`, except that, as in openEuler
    /// safeguard, the policy goes to `demo-whitelist.yaml` (in the current
    /// directory) unless --output says otherwise.
    Generate(GenerateArgs),
}

/// Where openEuler safeguard's `controller generate` writes its policy by
/// default.
pub const CONTROLLER_GENERATE_OUTPUT: &str = "demo-whitelist.yaml";

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Write the policy (YAML) here instead of to standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Also write a JSON report of what was found: accounts, executables,
    /// networks, users, and what could not be read.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// The mode the generated modules run in.
    #[arg(long, value_enum, default_value = "monitor")]
    pub mode: GenerateMode,
}

#[derive(Debug, Args)]
pub struct LearnArgs {
    /// The configuration to run the agent with while learning (its
    /// kernel, otel and log settings; the modules are set for learning).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Override one key of that configuration; VALUE is YAML. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,

    /// Watch for this long (e.g. 10m, 1h); SIGINT or SIGTERM ends it early.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, required_unless_present = "from", conflicts_with = "from")]
    pub duration: Option<Duration>,

    /// Learn from the events in this JSON event log (the agent's local
    /// log, log.format: json) instead of watching.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,

    /// A directory tree whose files are learned: the policy lets through
    /// only the files used under it (and everything outside it).
    /// Repeatable; without it, files are not part of the policy.
    #[arg(long, value_name = "DIR")]
    pub protect: Vec<PathBuf>,

    /// Write the policy (YAML) here instead of to standard output; each
    /// container image seen gets a policy of its own next to it
    /// (policy.yaml: policy.image-NAME.yaml, with target: container).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Also write a JSON report of what was seen, how often and by whom.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// The mode the learned modules run in.
    #[arg(long, value_enum, default_value = "monitor")]
    pub mode: GenerateMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenerateMode {
    /// Report what the whitelist would refuse (start here).
    Monitor,
    /// Refuse it.
    Block,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// The configuration the agent ran with (for `kernel.pin_dir` and
    /// `status.socket`).
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Unpin even though an agent answers on the status socket (it loses
    /// its programs if they are the pinned ones).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The configuration the agent runs with (for `status.socket`).
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Print the answer as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The configuration the agent runs with (for `status.socket`).
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Give up (exit 1) if the agent has not exited after this long (e.g.
    /// 30s, 2m); it goes on stopping.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Configuration file (YAML or TOML), layered over the built-in defaults.
    /// Without it, /etc/safeguard/safeguard.yaml is read if it exists.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Override one configuration key; VALUE is YAML. Repeatable.
    /// Example: --set files.mode=block --set 'files.deny=[/etc/secret]'
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,

    /// Mode of every module: monitor reports, block refuses.
    #[arg(long, value_parser = ["monitor", "block"])]
    pub mode: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Where audit events go: `-` for stdout or an absolute file path.
    /// Overrides log.output.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<String>,

    /// Also write every raw kernel record to FILE (created or truncated),
    /// for replay: the pipeline benchmark (`make bench`) reads it, and it
    /// can go with a bug report. Grows without bound: for short runs.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
}

impl ConfigArgs {
    /// Flag overrides in the order they apply (later wins).
    pub fn overrides(&self) -> Vec<String> {
        let mut all = Vec::new();
        if let Some(mode) = &self.mode {
            for module in ["files", "network", "mount", "process"] {
                all.push(format!("{module}.mode={mode}"));
            }
        }
        all.extend(self.overrides.iter().cloned());
        all
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
