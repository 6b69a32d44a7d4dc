//! `safeguard check`: validates a configuration, and that its policy fits
//! the kernel's rule maps, without loading anything.

use std::process::ExitCode;

use super::{EXIT_CONFIG, load_config};
use crate::{
    cli::ConfigArgs,
    config::{self, Config},
    policy::Policy,
};

pub fn check(args: &ConfigArgs) -> ExitCode {
    let config = match load_config(args) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // Addresses of domain rules are not looked up here: they count against
    // NET_V4_RULES and NET_V6_RULES only when the agent resolves them.
    let policy = Policy::compile(&config);
    match policy.fits() {
        Ok(()) => {
            print!("{}", summary(&config, &policy));
            ExitCode::SUCCESS
        }
        Err(too_large) => {
            eprintln!("safeguard: configuration error: {too_large}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// What `check` says of a valid configuration: each module's mode, policy
/// and rule count.
fn summary(config: &Config, policy: &Policy) -> String {
    let mut out = String::from("configuration is valid\n");
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
    let proxy = &config.dns_proxy;
    if proxy.enable {
        let list = |addrs: &[std::net::SocketAddr]| {
            addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let upstreams = if proxy.upstreams.is_empty() {
            "the servers of /etc/resolv.conf".to_string()
        } else {
            list(&proxy.upstreams)
        };
        out.push_str(&format!(
            "  dns_proxy: answering on {}, asking {upstreams}\n",
            list(&proxy.bind)
        ));
        if !config.network.settings.enable {
            out.push_str(
                "note: dns_proxy answers, but no domain rule is in force (network is disabled)\n",
            );
        }
    } else {
        out.push_str("  dns_proxy: disabled\n");
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
        let text = summary(&config, &Policy::compile(&config));
        assert!(text.starts_with("configuration is valid\n"), "{text}");
        assert!(
            text.contains("  files: block mode, blacklist policy, 2 rules\n"),
            "{text}"
        );
        assert!(text.contains("  mount: disabled\n"), "{text}");
    }

    #[test]
    fn refuses_a_policy_the_kernel_maps_cannot_hold_as_the_readme_says() {
        let limit = collector_common::maps::PATH_RULES_MAX;
        let deny: Vec<String> = (0..=limit).map(|i| format!("/srv/{i}")).collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("safeguard.yaml");
        let yaml = format!("files:\n  allow: []\n  deny: [{}]\n", deny.join(", "));
        std::fs::write(&file, yaml).unwrap();
        let args = ConfigArgs {
            config: Some(file),
            overrides: Vec::new(),
            mode: None,
        };
        assert_eq!(check(&args), ExitCode::from(EXIT_CONFIG));
        // What it prints, as the README quotes it.
        let config = load_config(&args).unwrap();
        let refused = Policy::compile(&config).fits().unwrap_err();
        let line = format!("safeguard: configuration error: {refused}");
        assert!(
            include_str!("../../../README.md").contains(&line),
            "README.md does not quote:\n{line}"
        );
    }
}
