//! Names as Prometheus shows them. Each metric's is written out here, and
//! every metric and label the alert rules (and, when they land, the
//! dashboards) use must exist in this crate under the exact name the
//! OTLP → Prometheus translation gives it: a renamed metric or attribute
//! fails here, not silently in production.

use std::{collections::BTreeSet, path::Path};

use semconv::metric::{self, Kind};

/// Each metric's name in Prometheus, written out: a change to a metric, or
/// to the translation, shows here as a changed line.
#[test]
fn every_metric_has_the_prometheus_name_the_otlp_translation_gives() {
    let expected = [
        (metric::EVENTS, "safeguard_events_total"),
        (
            metric::BLOCKED_OPERATIONS,
            "safeguard_blocked_operations_total",
        ),
        (metric::KERNEL_DROPS, "safeguard_kernel_drops_total"),
        (metric::QUEUE_DROPS, "safeguard_queue_drops_total"),
        (
            metric::UNREPORTED_EVENTS,
            "safeguard_events_unreported_total",
        ),
        (metric::EXPORT_FAILURES, "safeguard_export_failures_total"),
        (metric::FALLBACK_RECORDS, "safeguard_fallback_records_total"),
        (metric::SPOOL_SIZE, "safeguard_spool_size_bytes"),
        (metric::SPOOL_LIMIT, "safeguard_spool_limit_bytes"),
        (metric::SPOOL_RECORDS, "safeguard_spool_records"),
        (metric::SPOOL_EVICTED, "safeguard_spool_evicted_total"),
        (metric::RULES, "safeguard_rules"),
        (metric::ROWS, "safeguard_rows"),
        (
            metric::PIPELINE_LATENCY,
            "safeguard_pipeline_latency_seconds",
        ),
    ];
    for (m, name) in expected {
        assert_eq!(m.prometheus_name(), name, "{}", m.name);
    }
    let listed: BTreeSet<&str> = expected.iter().map(|(m, _)| m.name).collect();
    for m in metric::ALL {
        assert!(listed.contains(m.name), "{}: no expected name here", m.name);
    }
}

/// Files under `dir` (recursively) ending in one of `exts`.
fn files(dir: &Path, exts: &[&str]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path, exts));
        } else if exts.iter().any(|e| path.to_string_lossy().ends_with(e)) {
            out.push(path);
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Metric names: identifiers starting with `safeguard_` followed by `{`,
/// `[`, `)`, ` ` or end, that are not label names (those are followed by
/// `=`, `!`, `,` inside `by (...)`, or `}`).
fn identifiers(text: &str) -> Vec<(String, char)> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i])
            && (i == 0 || !is_ident(chars[i - 1]) && chars[i - 1] != '$' && chars[i - 1] != '.')
        {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let next = chars[i..]
                .iter()
                .copied()
                .find(|c| *c != ' ')
                .unwrap_or(' ');
            out.push((chars[start..i].iter().collect(), next));
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn alert_rules_use_only_names_semconv_defines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let metrics: BTreeSet<String> = metric::ALL
        .iter()
        .flat_map(|m| {
            let base = m.prometheus_name();
            match m.kind {
                Kind::Histogram => vec![
                    format!("{base}_bucket"),
                    format!("{base}_sum"),
                    format!("{base}_count"),
                ],
                _ => vec![base],
            }
        })
        .collect();
    // Labels: attribute keys with dots as underscores, plus what Prometheus
    // and the deployment add.
    let mut labels: BTreeSet<String> = semconv::attr::ALL
        .iter()
        .map(|a| a.name.replace('.', "_"))
        .collect();
    labels.extend(["job", "instance", "le", "severity", "alertname"].map(String::from));

    let rule_files = files(&root.join("dashboards"), &[".rules.yaml"]);
    assert!(
        !rule_files.is_empty(),
        "no alert rules found under dashboards/"
    );
    let mut checked = 0;
    for file in rule_files {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().filter(|l| {
            let t = l.trim_start();
            !t.starts_with('#') && !t.starts_with("summary:") && !t.starts_with("- alert:")
        }) {
            // Only the PromQL: expressions follow `expr:` or continue a
            // block scalar; the other keys have no metric-like words.
            for (word, next) in identifiers(line) {
                if word.starts_with("safeguard_") && !labels.contains(&word) {
                    assert!(
                        metrics.contains(&word),
                        "{}: metric {word} is not in semconv::metric (known: {metrics:?})",
                        file.display()
                    );
                    checked += 1;
                } else if matches!(next, '=' | '!' | '~') && line.contains('{') {
                    assert!(
                        labels.contains(&word) || word.chars().all(|c| c.is_ascii_digit()),
                        "{}: label {word} is not a semconv attribute",
                        file.display()
                    );
                }
            }
            if let Some(at) = line.find("by (") {
                let list = &line[at + 4..];
                let list = &list[..list.find(')').unwrap_or(list.len())];
                for label in list.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                    assert!(
                        labels.contains(label),
                        "{}: grouping label {label} is not a semconv attribute",
                        file.display()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked > 10,
        "the check saw too few names ({checked}): is the parser still right?"
    );
}
