//! safeguard's stages, wired together by `agent` and public for the
//! benchmarks (`benches/`); `commands` are the subcommands the binary
//! (`main.rs`) dispatches to.
//!
//! Data flows: kernel programs → `events::reader` (drain, decode) →
//! `events::enrich` → `telemetry` (OTLP logs, spans, metrics; spool;
//! delivery) and `output` (the local event log). `config` → `policy` →
//! `kernel` maps.

pub mod agent;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dns;
pub mod events;
pub mod internal_events;
pub mod kernel;
pub mod output;
pub mod policy;
pub mod status;
pub mod telemetry;

/// An error and its causes on one line, each cause said once: most of the
/// agent's errors already quote their source in their own message, and
/// `{:#}` would repeat it.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
