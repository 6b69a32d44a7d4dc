use std::io::Write as _;

use super::*;

fn load_with(yaml: Option<&str>, overrides: &[&str]) -> Result<Config, Vec<ConfigError>> {
    let file = yaml.map(|y| {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(y.as_bytes()).unwrap();
        f
    });
    load(&Sources {
        file: file.as_ref().map(|f| f.path().to_path_buf()),
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
        environment: false,
    })
}

fn one_error(r: Result<Config, Vec<ConfigError>>) -> String {
    let errors = r.expect_err("the configuration should be rejected");
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors[0].to_string()
}

#[test]
fn embedded_defaults_are_valid() {
    let c = load_with(None, &[]).unwrap();
    assert!(c.files.settings.enable);
    assert_eq!(c.files.settings.mode, Mode::Monitor);
    assert!(c.files.deny.iter().any(|p| p.as_str() == "/etc/shadow"));
    assert_eq!(c.log.max_size_mb, 100);
    assert_eq!(c.log.max_age_days, 365);
    assert_eq!(c.tier, TierChoice::Auto);
}

#[test]
fn safeguard_example_config_loads_unchanged() {
    let yaml = safeguard_test_support::SAFEGUARD_EXAMPLE_CONFIG;
    let c = load_with(Some(yaml), &[]).unwrap();
    assert_eq!(c.files.settings.mode, Mode::Block);
    let deny: Vec<&str> = c.files.deny.iter().map(RulePath::as_str).collect();
    assert_eq!(deny, ["/etc/test", "/home/vagrant/test"]);
    assert!(c.mount.settings.enable);
    assert_eq!(c.mount.deny[0].as_str(), "/dev/vdxn");
}

#[test]
fn unknown_mode_names_the_key_and_the_choices() {
    let e = one_error(load_with(Some("files:\n  mode: blok\n"), &[]));
    assert_eq!(e, r#"files.mode: "blok" is not valid: monitor or block"#);
}

#[test]
fn memfd_exec_is_allow_or_deny() {
    let e = one_error(load_with(Some("process:\n  memfd_exec: sometimes\n"), &[]));
    assert_eq!(
        e,
        r#"process.memfd_exec: "sometimes" is not valid: allow or deny"#
    );
    let c = load_with(Some("process:\n  memfd_exec: deny\n"), &[]).unwrap();
    assert!(c.process.deny_memfd_exec);
    assert!(!load_with(None, &[]).unwrap().process.deny_memfd_exec);
}

#[test]
fn relative_rule_path_names_the_list_index() {
    let e = one_error(load_with(
        Some("files:\n  deny: [/etc/ok, etc/secret]\n"),
        &[],
    ));
    assert_eq!(
        e,
        r#"files.deny[1]: "etc/secret" is not valid: an absolute path (starting with /)"#
    );
}

#[test]
fn dot_dot_and_overlong_paths_are_rejected() {
    let e = one_error(load_with(Some("files:\n  allow: [/a/../b]\n"), &[]));
    assert!(e.starts_with("files.allow[0]:"), "{e}");
    let long = format!("/{}", "x".repeat(300));
    let e = one_error(load_with(None, &[&format!("files.deny=[{long}]")]));
    assert!(e.contains("at most 255 bytes"), "{e}");
}

#[test]
fn rule_paths_are_normalised() {
    let c = load_with(
        Some("files:\n  deny: ['/etc/secret/', '//var//log']\n"),
        &[],
    )
    .unwrap();
    let deny: Vec<&str> = c.files.deny.iter().map(RulePath::as_str).collect();
    assert_eq!(deny, ["/etc/secret", "/var/log"]);
}

#[test]
fn missing_config_file_is_named() {
    let e = one_error(load(&Sources {
        file: Some("/nonexistent/safeguard.yaml".into()),
        ..Default::default()
    }));
    assert!(
        e.starts_with("--config: \"/nonexistent/safeguard.yaml\" is not valid"),
        "{e}"
    );
    assert!(e.contains("No such file"), "{e}");
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let e = one_error(load_with(Some("files:\n  mdoe: block\n"), &[]));
    assert!(e.contains("mdoe"), "{e}");
}

#[test]
fn a_uid_that_is_not_a_number_is_rejected() {
    let e = one_error(load_with(
        Some("network:\n  uid:\n    allow: [root]\n"),
        &[],
    ));
    assert!(e.contains("root") || e.contains("uid"), "{e}");
}

#[test]
fn overrides_apply_last_and_take_yaml() {
    let c = load_with(
        Some("files:\n  mode: monitor\n"),
        &["files.mode=block", "files.deny=[/a, /b]"],
    )
    .unwrap();
    assert_eq!(c.files.settings.mode, Mode::Block);
    assert_eq!(c.files.deny.len(), 2);
    let e = one_error(load_with(None, &["files.mode"]));
    assert!(e.starts_with("--set:"), "{e}");
}

#[test]
fn several_problems_are_all_reported() {
    let errors = load_with(
        Some("files:\n  mode: x\n  target: y\nlog:\n  format: xml\n"),
        &[],
    )
    .unwrap_err();
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["files.mode", "files.target", "log.format"]);
}

#[test]
fn toml_files_are_accepted() {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(b"[files]\nmode = \"block\"\ndeny = [\"/srv/x\"]\n")
        .unwrap();
    let c = load(&Sources {
        file: Some(f.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.files.settings.mode, Mode::Block);
}

#[test]
fn environment_variables_override_and_unrelated_ones_are_ignored() {
    // SAFETY: this is the only test that touches the environment.
    unsafe {
        std::env::set_var("SAFEGUARD_FILES__MODE", "block");
        std::env::set_var("SAFEGUARD_FILES__DENY", "/srv/a,/srv/b");
        std::env::set_var("SAFEGUARD_CACHE", "/var/cache/x");
        std::env::set_var("SAFEGUARD_LOG", "debug");
    }
    let c = load(&Sources {
        environment: true,
        ..Default::default()
    });
    unsafe {
        for k in [
            "SAFEGUARD_FILES__MODE",
            "SAFEGUARD_FILES__DENY",
            "SAFEGUARD_CACHE",
            "SAFEGUARD_LOG",
        ] {
            std::env::remove_var(k);
        }
    }
    let c = c.unwrap();
    assert_eq!(c.files.settings.mode, Mode::Block);
    let deny: Vec<&str> = c.files.deny.iter().map(RulePath::as_str).collect();
    assert_eq!(deny, ["/srv/a", "/srv/b"]);
    assert_eq!(c.log.level, LogLevel::Debug);
}

#[test]
fn process_rules_take_names_and_paths() {
    let c = load_with(
        Some("policy: whitelist\nprocess:\n  enable: true\n  allow: [bash, /usr/bin]\n  deny: [nc]\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.process.settings.policy, ListPolicy::Whitelist);
    assert_eq!(
        c.process.allow,
        [
            ExecRule::Name("bash".into()),
            ExecRule::Path(validate_rule_path("/usr/bin").unwrap())
        ]
    );
    let e = one_error(load_with(Some("process:\n  deny: [bin/nc]\n"), &[]));
    assert_eq!(
        e,
        r#"process.deny[0]: "bin/nc" is not valid: a program name (like bash) or an absolute path"#
    );
}

#[test]
fn mount_sources_must_be_absolute() {
    let e = one_error(load_with(Some("mount:\n  deny: [vdb]\n"), &[]));
    assert!(e.starts_with("mount.deny[0]:"), "{e}");
}

#[test]
fn network_rules_are_checked() {
    let c = load_with(
        Some("network:\n  enable: true\n  cidr:\n    deny: [10.1.2.3/8, '::1/128']\n  command:\n    allow: [curl]\n  uid:\n    allow: [1000]\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.network.cidr_deny[0].to_string(), "10.0.0.0/8");
    assert_eq!(c.network.command_allow, ["curl"]);
    assert_eq!(c.network.uid_allow, [1000]);
    let e = one_error(load_with(
        Some("network:\n  cidr:\n    deny: [10.0.0.0/33]\n"),
        &[],
    ));
    assert!(
        e.starts_with(
            r#"network.cidr.deny[0]: "10.0.0.0/33" is not valid: an IPv4 or IPv6 network"#
        ),
        "{e}"
    );
    let e = one_error(load_with(
        Some("network:\n  command:\n    deny: [a-very-long-command-name]\n"),
        &[],
    ));
    assert!(e.contains("at most 15 bytes"), "{e}");
}

fn otel_with(yaml: &str, env: &[(&str, &str)]) -> (OtelConfig, Vec<ConfigError>) {
    let raw: super::raw::RawOtel = serde_yaml_ng_or_json(yaml);
    let mut errors = validate::Errors::default();
    let lookup = |k: &str| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    };
    let c = validate::otel(&mut errors, &raw, &lookup);
    (c, errors.into_vec())
}

/// The `otel` section from YAML, through the same `config` crate the agent
/// uses.
fn serde_yaml_ng_or_json(yaml: &str) -> super::raw::RawOtel {
    ::config::Config::builder()
        .add_source(::config::File::from_str(yaml, ::config::FileFormat::Yaml))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap()
}

#[test]
fn otel_defaults_are_grpc_to_localhost_with_gzip() {
    let (c, errors) = otel_with("enable: true", &[]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(c.endpoint, "http://localhost:4317");
    assert_eq!(c.protocol, OtlpProtocol::Grpc);
    assert!(c.gzip);
    assert_eq!(c.timeout_ms, 10_000);
}

#[test]
fn otel_standard_variables_fill_what_the_file_leaves_empty() {
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector.example:4318/",
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Bearer%20abc,x-tenant=blue",
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
    ];
    let (c, errors) = otel_with("endpoint: \"\"\nheaders:\n  x-tenant: red\n", &env);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(c.endpoint, "https://collector.example:4318");
    assert_eq!(c.protocol, OtlpProtocol::HttpProtobuf);
    assert!(!c.gzip);
    assert_eq!(c.timeout_ms, 2500);
    assert!(
        c.headers
            .contains(&("authorization".into(), "Bearer abc".into()))
    );
    // The file wins over the variable.
    assert!(c.headers.contains(&("x-tenant".into(), "red".into())));
    assert!(!c.headers.contains(&("x-tenant".into(), "blue".into())));
    // And a value in the file wins over the variable too.
    let (c, _) = otel_with("endpoint: http://10.0.0.1:4317\n", &env);
    assert_eq!(c.endpoint, "http://10.0.0.1:4317");
}

#[test]
fn otel_bad_values_name_the_key() {
    for (yaml, key) in [
        ("protocol: http/json", "otel.protocol"),
        ("endpoint: collector:4317", "otel.endpoint"),
        ("compression: zstd", "otel.compression"),
        ("ca_file: /nonexistent/ca.pem", "otel.ca_file"),
        ("spool_dir: spool", "otel.spool_dir"),
        ("batch_size: 0", "otel.batch_size"),
    ] {
        let (_, errors) = otel_with(yaml, &[]);
        assert_eq!(errors.len(), 1, "{yaml}: {errors:?}");
        assert!(errors[0].to_string().contains(key), "{yaml}: {}", errors[0]);
    }
    let (_, errors) = otel_with("enable: true", &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]);
    assert!(
        errors[0].to_string().contains("OTEL_EXPORTER_OTLP_HEADERS"),
        "{errors:?}"
    );
}

#[test]
fn log_mode_is_always_or_fallback() {
    let c = load_with(Some("log:\n  mode: always\n"), &[]).unwrap();
    assert_eq!(c.log.mode, LocalLog::Always);
    let e = one_error(load_with(Some("log:\n  mode: sometimes\n"), &[]));
    assert!(
        e.contains("log.mode") && e.contains("always or fallback"),
        "{e}"
    );
}

#[test]
fn status_socket_defaults_and_must_be_absolute() {
    let c = load_with(None, &[]).unwrap();
    assert_eq!(
        c.status_socket,
        std::path::Path::new("/run/safeguard/status.sock")
    );
    let e = one_error(load_with(Some("status:\n  socket: run/s.sock\n"), &[]));
    assert!(e.contains("status.socket"), "{e}");
}

#[test]
fn protect_follows_block_mode_unless_set() {
    // The embedded defaults: every module in monitor mode.
    assert!(!load_with(None, &[]).unwrap().protect);
    let block = "files:\n  enable: true\n  mode: block\n";
    assert!(load_with(Some(block), &[]).unwrap().protect);
    let off = format!("{block}kernel:\n  protect: false\n");
    assert!(!load_with(Some(&off), &[]).unwrap().protect);
    let on = "kernel:\n  protect: true\n";
    assert!(load_with(Some(on), &[]).unwrap().protect);
    // A module in block mode that is disabled blocks nothing.
    let disabled = "files:\n  enable: false\n  mode: block\n";
    assert!(!load_with(Some(disabled), &[]).unwrap().protect);
    let e = one_error(load_with(Some("kernel:\n  protect: maybe\n"), &[]));
    assert!(e.contains("kernel.protect") && e.contains("maybe"), "{e}");
}

#[test]
fn pinning_is_off_by_default_and_its_directory_must_be_absolute() {
    let c = load_with(None, &[]).unwrap();
    assert!(!c.pin);
    assert_eq!(c.pin_dir, std::path::Path::new("/sys/fs/bpf/safeguard"));
    let c = load_with(Some("kernel:\n  pin: true\n"), &[]).unwrap();
    assert!(c.pin);
    let e = one_error(load_with(Some("kernel:\n  pin_dir: bpf/safeguard\n"), &[]));
    assert!(
        e.contains("kernel.pin_dir") && e.contains("bpf/safeguard") && e.contains("bpffs"),
        "{e}"
    );
    let e = one_error(load_with(Some("kernel:\n  pin: sometimes\n"), &[]));
    assert!(e.contains("kernel.pin"), "{e}");
}

#[test]
fn domain_rules_and_nameservers_are_checked() {
    let c = load_with(
        Some("network:\n  domain:\n    deny: [Evil.Example.COM.]\n  nameservers: [127.0.0.1, '[::1]:5353']\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.network.domain_deny, vec!["evil.example.com".to_string()]);
    assert_eq!(
        c.network.nameservers,
        vec![
            "127.0.0.1:53".parse().unwrap(),
            "[::1]:5353".parse().unwrap()
        ]
    );
    let e = one_error(load_with(
        Some("network:\n  domain:\n    allow: [\"bad name\"]\n"),
        &[],
    ));
    assert!(
        e.contains("network.domain.allow[0]") && e.contains("DNS name"),
        "{e}"
    );
    let e = one_error(load_with(
        Some("network:\n  nameservers: [dns.example]\n"),
        &[],
    ));
    assert!(e.contains("network.nameservers[0]"), "{e}");
}

/// Key paths (`a.b.c`) of a JSON object, down to the leaves; lists and maps
/// of user entries (`headers`, `labels`) are leaves.
fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if matches!(v, serde_json::Value::Object(m) if !m.is_empty()) {
                key_paths(v, &path, out);
            } else {
                out.push(path);
            }
        }
    }
}

/// default.yaml is the configuration reference: every key the agent
/// accepts is in it, with its default and a comment.
#[test]
fn the_reference_names_every_key() {
    let as_written: serde_json::Value = config::Config::builder()
        .add_source(config::File::from_str(
            EMBEDDED_DEFAULTS,
            config::FileFormat::Yaml,
        ))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    let mut written = Vec::new();
    key_paths(&as_written, "", &mut written);
    let raw: raw::RawConfig = config::Config::builder()
        .add_source(config::File::from_str(
            EMBEDDED_DEFAULTS,
            config::FileFormat::Yaml,
        ))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    let mut accepted = Vec::new();
    key_paths(&serde_json::to_value(&raw).unwrap(), "", &mut accepted);
    assert!(accepted.len() > 40, "{accepted:?}");
    let missing: Vec<&String> = accepted.iter().filter(|k| !written.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "keys the agent accepts that default.yaml does not show: {missing:?}"
    );
}

/// docs/configuration.md is default.yaml with a heading; `SAFEGUARD_BLESS=1`
/// rewrites it.
#[test]
fn docs_configuration_is_the_embedded_reference() {
    let path = safeguard_test_support::workspace_root().join("docs/configuration.md");
    let expected = format!(
        "# Configuration reference\n\n\
         The agent's built-in configuration, every key with its default and what it \
         does (`collector/src/config/default.yaml`, embedded in the binary). A file \
         given with `--config` (YAML or TOML) only needs the keys it changes. \
         Generated: `SAFEGUARD_BLESS=1 cargo test -p safeguard docs_configuration`.\n\n\
         ```yaml\n{EMBEDDED_DEFAULTS}```\n"
    );
    if std::env::var_os("SAFEGUARD_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is out of date: run SAFEGUARD_BLESS=1 cargo test -p safeguard docs_configuration",
        path.display()
    );
}

#[test]
fn network_raw_is_allow_or_deny() {
    let e = one_error(load_with(Some("network:\n  raw: maybe\n"), &[]));
    assert_eq!(e, r#"network.raw: "maybe" is not valid: allow or deny"#);
    let c = load_with(Some("network:\n  raw: deny\n"), &[]).unwrap();
    assert!(c.network.deny_raw);
    assert!(!load_with(None, &[]).unwrap().network.deny_raw);
}

#[test]
fn dns_proxy_addresses_are_checked_and_take_port_53_by_default() {
    let c = load_with(
        Some("dns_proxy:\n  enable: true\n  upstreams: [192.0.2.53, '[2001:db8::53]:5353']\n  bind: [127.0.0.1, 127.0.0.1:5353]\n"),
        &[],
    )
    .unwrap();
    assert!(c.dns_proxy.enable);
    assert_eq!(
        c.dns_proxy.upstreams,
        [
            "192.0.2.53:53".parse().unwrap(),
            "[2001:db8::53]:5353".parse().unwrap()
        ]
    );
    assert_eq!(
        c.dns_proxy.bind,
        [
            "127.0.0.1:53".parse().unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        ]
    );
    let e = one_error(load_with(
        Some("dns_proxy:\n  enable: true\n  bind: [localhost]\n"),
        &[],
    ));
    assert!(
        e.contains("dns_proxy.bind[0]") && e.contains("localhost"),
        "{e}"
    );
    let e = one_error(load_with(
        Some("dns_proxy:\n  enable: true\n  bind: []\n"),
        &[],
    ));
    assert!(
        e.contains("dns_proxy.bind") && e.contains("at least one"),
        "{e}"
    );
}
