//! Names as Prometheus shows them. Each metric's is written out here, and
//! every metric and label the alert rules (and, when they land, the
//! dashboards) use must exist in this crate under the exact name the
//! OTLP → Prometheus translation gives it: a renamed metric or attribute
//! fails here, not silently in production.

use std::{collections::BTreeSet, path::Path};

mod common;

use semconv::metric::{self, Kind};

/// Each metric's name in Prometheus, written out: a change to a metric, or
/// to the translation, shows here as a changed line.
#[test]
fn every_metric_has_the_prometheus_name_the_otlp_translation_gives() {
    let expected = [
        (metric::EVENT_REPORTED, "safeguard_event_reported_total"),
        (metric::OPERATION_DENIED, "safeguard_operation_denied_total"),
        (
            metric::KERNEL_EVENT_DROPPED,
            "safeguard_kernel_event_dropped_total",
        ),
        (
            metric::QUEUE_EVENT_DROPPED,
            "safeguard_queue_event_dropped_total",
        ),
        (metric::EVENT_UNREPORTED, "safeguard_event_unreported_total"),
        (
            metric::EXPORT_REQUEST_FAILED,
            "safeguard_export_request_failed_total",
        ),
        (
            metric::FALLBACK_RECORD_WRITTEN,
            "safeguard_fallback_record_written_total",
        ),
        (metric::SPOOL_USAGE, "safeguard_spool_usage_bytes"),
        (metric::SPOOL_LIMIT, "safeguard_spool_limit_bytes"),
        (metric::SPOOL_RECORD_COUNT, "safeguard_spool_record_count"),
        (
            metric::SPOOL_RECORD_EVICTED,
            "safeguard_spool_record_evicted_total",
        ),
        (metric::POLICY_RULE_COUNT, "safeguard_policy_rule_count"),
        (metric::POLICY_ROW_COUNT, "safeguard_policy_row_count"),
        (
            metric::INTEGRITY_PROBLEM_COUNT,
            "safeguard_agent_integrity_problem_count",
        ),
        (
            metric::PIPELINE_DURATION,
            "safeguard_pipeline_duration_seconds",
        ),
        (
            metric::EXPORTER_LOG_EXPORTED,
            "otel_sdk_exporter_log_exported_total",
        ),
        (
            metric::EXPORTER_SPAN_EXPORTED,
            "otel_sdk_exporter_span_exported_total",
        ),
        (
            metric::EXPORTER_METRIC_DATA_POINT_EXPORTED,
            "otel_sdk_exporter_metric_data_point_exported_total",
        ),
        (metric::DNS_PROXY_QUERY, "safeguard_dns_proxy_query_total"),
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

/// What PromQL may name: metrics under their Prometheus names (histograms
/// with their series), and labels (attribute keys with dots as
/// underscores, plus what Prometheus and the deployment add).
struct Known {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

impl Known {
    fn new() -> Self {
        let metrics = metric::ALL
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
        let mut labels: BTreeSet<String> = semconv::attr::ALL
            .iter()
            .map(|a| a.name.replace('.', "_"))
            .collect();
        labels.extend(["job", "instance", "le", "severity", "alertname"].map(String::from));
        Self { metrics, labels }
    }

    /// The value set of the attribute a label (dots as underscores) stands
    /// for, if it has one.
    fn values(label: &str) -> Option<&'static [semconv::Name]> {
        semconv::VALUE_SETS
            .iter()
            .find(|(key, _)| key.replace('.', "_") == label)
            .map(|(_, values)| *values)
    }

    /// Checks the names in one line of PromQL (or LogQL: the same label
    /// matchers and `by (...)`); returns how many it checked.
    fn check_line(&self, line: &str, origin: &str) -> usize {
        let mut checked = 0;
        for (word, next) in identifiers(line) {
            if word.starts_with("safeguard_") && !self.labels.contains(&word) {
                assert!(
                    self.metrics.contains(&word),
                    "{origin}: metric {word} is not in semconv::metric (known: {:?})",
                    self.metrics
                );
                checked += 1;
            } else if matches!(next, '=' | '!' | '~') && (line.contains('{') || line.contains('|'))
            {
                assert!(
                    self.labels.contains(&word) || word.chars().all(|c| c.is_ascii_digit()),
                    "{origin}: label {word} is not a semconv attribute"
                );
                checked += 1;
            }
        }
        // An exact match on a label with a value set must use one of them.
        for (label, value) in exact_matchers(line) {
            if let Some(values) = Self::values(&label) {
                assert!(
                    values.iter().any(|v| v.name == value),
                    "{origin}: {label}=\"{value}\" is not one of semconv's values for it"
                );
                checked += 1;
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("by (") {
            let list = &rest[at + 4..];
            let end = list.find(')').unwrap_or(list.len());
            for label in list[..end]
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
            {
                assert!(
                    self.labels.contains(label),
                    "{origin}: grouping label {label} is not a semconv attribute"
                );
                checked += 1;
            }
            rest = &list[end..];
        }
        checked
    }
}

/// `label="value"` (exact, not regex) pairs in a line.
fn exact_matchers(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("=\"") {
        let before = &rest[..at];
        let after = &rest[at + 2..];
        let exact = !before.ends_with('!') && !before.ends_with('=');
        let label: String = before
            .chars()
            .rev()
            .take_while(|c| is_ident(*c))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let value: String = after.chars().take_while(|c| *c != '"').collect();
        if exact && !label.is_empty() {
            out.push((label, value));
        }
        rest = after;
    }
    out
}

#[test]
fn alert_rules_use_only_names_semconv_defines() {
    let root = common::workspace_root();
    let known = Known::new();
    let rule_files = files(&root.join("dashboards"), &[".rules.yaml"]);
    assert!(
        !rule_files.is_empty(),
        "no alert rules found under dashboards/"
    );
    let mut checked = 0;
    for file in rule_files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Only the PromQL: expressions follow `expr:` or continue a block
        // scalar; the other keys have no metric-like words.
        for line in text.lines().filter(|l| {
            let t = l.trim_start();
            !t.starts_with('#') && !t.starts_with("summary:") && !t.starts_with("- alert:")
        }) {
            checked += known.check_line(line, &file.display().to_string());
        }
    }
    assert!(
        checked > 10,
        "the check saw too few names ({checked}): is the parser still right?"
    );
}

/// Every query in the Grafana dashboards names only what semconv defines:
/// PromQL metrics and labels as above; LogQL labels and structured
/// metadata (attribute keys, dots as underscores); TraceQL attributes
/// (`span."key"`, `resource.key`) as they are. And each dashboard is
/// provisioning-ready: a stable uid, every data source and variable it
/// refers to declared.
#[test]
fn dashboards_use_only_names_semconv_defines() {
    let root = common::workspace_root();
    let known = Known::new();
    let boards = files(&root.join("dashboards/grafana"), &[".json"]);
    assert_eq!(
        boards.len(),
        3,
        "want the overview, logs and process-tree dashboards"
    );
    let attrs: BTreeSet<&str> = semconv::attr::ALL.iter().map(|a| a.name).collect();
    let mut checked = 0;
    for file in boards {
        let origin = file.display().to_string();
        let board: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{origin}: not JSON: {e}"));
        let uid = board["uid"].as_str().unwrap_or_default();
        assert!(uid.starts_with("safeguard-"), "{origin}: uid {uid:?}");
        assert!(
            board.get("id").is_none(),
            "{origin}: no `id` in a provisioned dashboard"
        );
        let variables: BTreeSet<&str> = board["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        let panels = board["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{origin}: no panels");
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?");
            let at = format!("{origin}: panel {title:?}");
            assert!(
                !panel["description"].as_str().unwrap_or("").is_empty(),
                "{at}: no description"
            );
            for target in panel["targets"].as_array().unwrap() {
                let source = target["datasource"]["uid"].as_str().unwrap_or("");
                let var = source.trim_start_matches("${").trim_end_matches('}');
                assert!(
                    variables.contains(var),
                    "{at}: data source {source} is not a variable"
                );
                let query = target["expr"]
                    .as_str()
                    .or(target["query"].as_str())
                    .unwrap_or_else(|| panic!("{at}: a target without a query"));
                for name in grafana_variables(query) {
                    assert!(
                        variables.contains(name.as_str()),
                        "{at}: ${name} is not declared"
                    );
                }
                match target["datasource"]["type"].as_str() {
                    Some("prometheus" | "loki") => checked += known.check_line(query, &at),
                    Some("tempo") => {
                        for key in traceql_attributes(query) {
                            assert!(
                                attrs.contains(key.as_str()),
                                "{at}: TraceQL attribute {key} is not a semconv attribute"
                            );
                            checked += 1;
                        }
                    }
                    other => panic!("{at}: data source type {other:?}"),
                }
            }
        }
    }
    assert!(checked > 40, "the check saw too few names ({checked})");
}

/// `$name` and `${name}` references, Grafana's own (`$__...`) left out.
fn grafana_variables(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find('$') {
        let after = rest[at + 1..].trim_start_matches('{');
        let name: String = after.chars().take_while(|c| is_ident(*c)).collect();
        if !name.is_empty() && !name.starts_with("__") {
            out.push(name);
        }
        rest = &rest[at + 1..];
    }
    out
}

/// Attribute keys in a TraceQL query: `span."a.b"`, `resource.a.b`.
fn traceql_attributes(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    for scope in ["span.", "resource."] {
        let mut rest = query;
        while let Some(at) = rest.find(scope) {
            let after = &rest[at + scope.len()..];
            let key: String = if let Some(quoted) = after.strip_prefix('"') {
                quoted.chars().take_while(|c| *c != '"').collect()
            } else {
                after
                    .chars()
                    .take_while(|c| is_ident(*c) || *c == '.')
                    .collect()
            };
            out.push(key);
            rest = after;
        }
    }
    out
}
