//! What `safeguard check` and a reload do with a large policy: the
//! configuration file read and validated, the policy compiled into map
//! entries and held against the maps' sizes. Throughput is in rules, so
//! criterion prints rules per second; the time for 200,000 rules set
//! against the time for 10,000 shows whether compiling stays linear.
//!
//! And what a `dns_proxy` answer with a new address costs before the
//! answer can go back: the policy compiled with the address, 10,000 file
//! rules on files that exist (each looked up by identity) and one domain
//! rule. `answer/whole` compiles everything, as a reload does (the
//! baseline); `answer/addresses` compiles the network rules alone, as the
//! agent does for an answer.
//!
//! `make bench` runs it; alone: `cargo bench -p safeguard --bench policy`.

use std::{hint::black_box, path::Path, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use safeguard::{
    config::{self, Sources},
    dns::Resolved,
    policy::Policy,
};

/// `n` file paths to deny, a thousand per directory.
fn files(n: usize) -> String {
    let mut yaml = String::from("files:\n  enable: true\n  deny:\n");
    for i in 0..n {
        yaml.push_str(&format!("    - /srv/d{}/f{i}\n", i / 1000));
    }
    yaml
}

/// `n` rules spread over every list that compiles into a rule map.
fn every_kind(n: usize) -> String {
    let k = n / 8;
    let list = |yaml: &mut String, indent: &str, item: &dyn Fn(usize) -> String| {
        for i in 0..k {
            yaml.push_str(&format!("{indent}- {}\n", item(i)));
        }
    };
    let mut y = String::from("files:\n  enable: true\n  deny:\n");
    list(&mut y, "    ", &|i| format!("/srv/d{}/f{i}", i / 1000));
    y.push_str("process:\n  enable: true\n  deny:\n");
    list(&mut y, "    ", &|i| format!("/opt/d{}/x{i}", i / 1000));
    list(&mut y, "    ", &|i| format!("tool{i}"));
    y.push_str("mount:\n  enable: true\n  deny:\n");
    list(&mut y, "    ", &|i| format!("/dev/d{}/m{i}", i / 1000));
    y.push_str("network:\n  enable: true\n  cidr:\n    deny:\n");
    list(&mut y, "      ", &|i| {
        format!("10.{}.{}.0/24", (i >> 8) & 255, i & 255)
    });
    list(&mut y, "      ", &|i| format!("2001:db8:{i:x}::/48"));
    y.push_str("  command:\n    deny:\n");
    list(&mut y, "      ", &|i| format!("cmd{i}"));
    y.push_str("  uid:\n    deny:\n");
    list(&mut y, "      ", &|i| (100_000 + i).to_string());
    y
}

/// A policy file of so many rules.
type Yaml = fn(usize) -> String;

/// What `check` does with the file, but print.
fn check(path: &Path) -> Policy {
    let config = config::load(&Sources {
        file: Some(path.to_path_buf()),
        overrides: Vec::new(),
        environment: false,
    })
    .expect("a valid configuration");
    let policy = Policy::compile(&config);
    // Over the maps' sizes at 200,000: the answer is computed either way.
    black_box(policy.fits().is_ok());
    policy
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut group = c.benchmark_group("policy");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    // Named `<case>-<rules>`, as scripts/bench.sh reads them.
    let cases: [(&str, usize, Yaml); 3] = [
        ("files", 10_000, files),
        ("files", 200_000, files),
        ("every-kind", 200_000, every_kind),
    ];
    for (name, n, yaml) in cases {
        let path = dir.path().join(format!("{name}-{n}.yaml"));
        std::fs::write(&path, yaml(n)).expect("the policy file");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{name}-{n}"), |b| b.iter(|| check(&path)));
    }
    group.finish();
}

/// Files made under `dir`, denied by path, beside one domain rule.
fn answer_policy(dir: &Path, n: usize) -> String {
    let mut yaml = String::from("files:\n  enable: true\n  deny:\n");
    for i in 0..n {
        let sub = dir.join(format!("d{}", i / 1000));
        std::fs::create_dir_all(&sub).expect("a directory");
        let file = sub.join(format!("f{i}"));
        std::fs::write(&file, "x").expect("a file");
        yaml.push_str(&format!("    - {}\n", file.display()));
    }
    yaml.push_str("network:\n  enable: true\n  domain:\n    deny: [example.test]\n");
    yaml
}

fn answer(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = config::load_yaml(&answer_policy(dir.path(), 10_000)).expect("valid");
    let running = Policy::compile(&config);
    let mut resolved = Resolved::new();
    resolved.insert("example.test".into(), vec!["192.0.2.1".parse().unwrap()]);
    let mut group = c.benchmark_group("answer");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("whole", |b| {
        b.iter(|| black_box(Policy::compile_with(&config, Some(&running), &resolved)))
    });
    group.bench_function("addresses", |b| {
        b.iter(|| black_box(running.with_addresses(&config, &resolved)))
    });
    group.finish();
}

criterion_group!(benches, bench, answer);
criterion_main!(benches);
