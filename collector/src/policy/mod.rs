//! Policy compiler: validated configuration → the entries the kernel
//! programs look up, plus the table that turns a rule id in an event back
//! into the rule as the operator wrote it.

mod files;

pub use files::CompiledFiles;

/// A rule as written in the configuration, for reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// The list it came from, e.g. `files.deny`.
    pub ruleset: &'static str,
    /// The rule's value, e.g. `/etc/shadow`.
    pub name: String,
}
