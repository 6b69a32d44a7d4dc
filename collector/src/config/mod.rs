//! Configuration: embedded defaults → a file (YAML or TOML) → `SAFEGUARD_*`
//! environment variables → flags, layered with the `config` crate, then
//! validated into typed settings. Every error names the key, the value and
//! what is allowed.

mod raw;
mod validate;

use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat};

pub use validate::{
    Config, ConfigError, DnsProxyConfig, ExecRule, FilesConfig, ListPolicy, LocalLog, LogConfig,
    LogFormat, LogLevel, Mode, ModuleSettings, MountConfig, NetworkConfig, OtelConfig,
    OtlpProtocol, Output, ProcessConfig, Target, TierChoice,
};
#[cfg(test)]
pub use validate::{RulePath, exec_rule as validate_exec_rule, rule_path as validate_rule_path};

/// The configuration built into the binary (`make run` uses it alone).
pub const EMBEDDED_DEFAULTS: &str = include_str!("default.yaml");

/// Where `run` looks for a configuration file when none is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/safeguard/safeguard.yaml";

/// Prefix of configuration environment variables: `SAFEGUARD_FILES__MODE=block`.
const ENV_PREFIX: &str = "SAFEGUARD";
/// safeguard's own variable for the log level; read as `log.level`.
const ENV_LOG_LEVEL: &str = "SAFEGUARD_LOG";
/// Keys whose environment values are comma-separated lists.
const ENV_LIST_KEYS: &[&str] = &[
    "files.allow",
    "files.deny",
    "mount.deny",
    "process.allow",
    "process.deny",
];

/// Where the layers come from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// A configuration file; `None` uses [`DEFAULT_CONFIG_PATH`] when it exists.
    pub file: Option<PathBuf>,
    /// `KEY=VALUE` overrides from flags, applied last. VALUE is YAML, so
    /// `files.deny=[/etc/a, /etc/b]` sets a list.
    pub overrides: Vec<String>,
    /// Read `SAFEGUARD_*` variables (off in tests).
    pub environment: bool,
}

/// Loads and validates the configuration.
pub fn load(sources: &Sources) -> Result<Config, Vec<ConfigError>> {
    let raw = load_raw(sources).map_err(|e| vec![e])?;
    validate::validate(raw)
}

/// Loads and validates a configuration given as YAML text over the
/// built-in defaults, with no file and no environment: how `generate` and
/// `learn` check what they write.
pub fn load_yaml(yaml: &str) -> Result<Config, Vec<ConfigError>> {
    let raw = config::Config::builder()
        .add_source(File::from_str(EMBEDDED_DEFAULTS, FileFormat::Yaml))
        .add_source(File::from_str(yaml, FileFormat::Yaml))
        .build()
        .and_then(|c| c.try_deserialize::<raw::RawConfig>())
        .map_err(|e| vec![ConfigError::source("the YAML given", e)])?;
    validate::validate(raw)
}

fn load_raw(sources: &Sources) -> Result<raw::RawConfig, ConfigError> {
    let mut builder =
        config::Config::builder().add_source(File::from_str(EMBEDDED_DEFAULTS, FileFormat::Yaml));

    let file = match &sources.file {
        Some(path) => Some(check_config_file(path)?),
        None => Path::new(DEFAULT_CONFIG_PATH)
            .exists()
            .then(|| PathBuf::from(DEFAULT_CONFIG_PATH)),
    };
    if let Some(path) = &file {
        builder = builder.add_source(File::from(path.as_path()));
    }

    if sources.environment {
        // Only SAFEGUARD_<SECTION>__<KEY> and SAFEGUARD_POLICY are
        // configuration; other SAFEGUARD_* variables (SAFEGUARD_LOG, or a
        // build's SAFEGUARD_CACHE) are not keys and must not break start-up.
        let vars: config::Map<String, String> = std::env::vars()
            .filter(|(k, _)| {
                k.strip_prefix("SAFEGUARD_")
                    .is_some_and(|rest| rest.contains("__") || rest == "POLICY")
            })
            .collect();
        let mut env = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .source(Some(vars));
        for key in ENV_LIST_KEYS {
            env = env.with_list_parse_key(key);
        }
        builder = builder.add_source(env);
        if let Ok(level) = std::env::var(ENV_LOG_LEVEL) {
            builder = builder
                .set_override("log.level", level)
                .map_err(|e| ConfigError::source(ENV_LOG_LEVEL, e))?;
        }
    }

    for item in &sources.overrides {
        let (key, value) = item.split_once('=').ok_or_else(|| ConfigError {
            key: "--set".into(),
            value: item.clone(),
            expected: "KEY=VALUE, for example files.mode=block".into(),
        })?;
        builder = builder.add_source(File::from_str(&nest_yaml(key, value), FileFormat::Yaml));
    }

    let origin = file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    builder
        .build()
        .and_then(|c| c.try_deserialize::<raw::RawConfig>())
        .map_err(|e| ConfigError::source(&origin, e))
}

fn check_config_file(path: &Path) -> Result<PathBuf, ConfigError> {
    let bad = |expected: String| ConfigError {
        key: "--config".into(),
        value: path.display().to_string(),
        expected,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("a readable file ({e})")))?;
    if !meta.is_file() {
        return Err(bad("a regular file".into()));
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml" | "toml") => Ok(path.to_path_buf()),
        _ => Err(bad("a .yaml, .yml or .toml file".into())),
    }
}

/// `files.mode`, `block` → `{files: {mode: block}}`.
fn nest_yaml(key: &str, value: &str) -> String {
    let mut doc = value.to_string();
    for part in key.trim().rsplit('.') {
        doc = format!("{{{part}: {doc}}}");
    }
    doc
}

#[cfg(test)]
mod tests;
