//! `safeguard check`: validates a configuration without loading anything.

use std::process::ExitCode;

use super::load_config;
use crate::{
    cli::ConfigArgs,
    config::{self, Config},
    policy::Policy,
};

pub fn check(args: &ConfigArgs) -> ExitCode {
    match load_config(args) {
        Ok(config) => {
            print!("{}", summary(&config));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// What `check` says of a valid configuration: each module's mode, policy
/// and rule count.
fn summary(config: &Config) -> String {
    let mut out = String::from("configuration is valid\n");
    let policy = Policy::compile(config);
    for (name, settings, module) in [
        ("files", &config.files.settings, &policy.files),
        ("process", &config.process.settings, &policy.process),
        ("mount", &config.mount.settings, &policy.mount),
        ("network", &config.network.settings, &policy.network),
    ] {
        if settings.enable {
            out.push_str(&format!(
                "  {name}: {} mode, {} policy, {} rules\n",
                match settings.mode {
                    config::Mode::Monitor => semconv::mode::MONITOR,
                    config::Mode::Block => semconv::mode::BLOCK,
                },
                match settings.policy {
                    config::ListPolicy::Blacklist => "blacklist",
                    config::ListPolicy::Whitelist => "whitelist",
                },
                module.rules.len()
            ));
        } else {
            out.push_str(&format!("  {name}: disabled\n"));
        }
    }
    for module in &config.unsupported_modules {
        out.push_str(&format!(
            "note: {module} is enabled, but this version does not enforce it yet\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_each_modules_mode_policy_and_rules() {
        let config = config::load(&config::Sources {
            file: None,
            overrides: vec![
                "files.mode=block".into(),
                "files.allow=[]".into(),
                "files.deny=[/srv/a, /srv/b]".into(),
                "mount.enable=false".into(),
            ],
            environment: false,
        })
        .unwrap();
        let text = summary(&config);
        assert!(text.starts_with("configuration is valid\n"), "{text}");
        assert!(
            text.contains("  files: block mode, blacklist policy, 2 rules\n"),
            "{text}"
        );
        assert!(text.contains("  mount: disabled\n"), "{text}");
    }
}
