//! `docs/semconv.md` lists every name in this crate; this test keeps it in
//! step. On a mismatch it prints the table the code implies; run with
//! `SEMCONV_BLESS=1` to write it into the document.

use std::{fmt::Write as _, path::Path};

use semconv::metric::{self, Kind};

const BEGIN: &str = "<!-- BEGIN GENERATED: cargo test -p semconv --test doc_table -->";
const END: &str = "<!-- END GENERATED -->";

/// A `pub const NAME: &str = "value";` of the crate, with its module and
/// the doc comment above it.
struct Name {
    module: String,
    value: String,
    doc: String,
}

/// Reads the names from the crate's source, so each stays spelled once
/// (in the code) and its doc comment is the description.
fn names() -> Vec<Name> {
    let source = include_str!("../src/lib.rs");
    let mut out = Vec::new();
    let mut module = String::new();
    let mut doc: Vec<String> = Vec::new();
    for line in source.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("pub mod ") {
            module = m.trim_end_matches(" {").to_string();
            doc.clear();
        } else if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("pub const ") {
            if let Some((_, value)) = rest.split_once(": &str = ") {
                out.push(Name {
                    module: module.clone(),
                    value: value.trim_end_matches(';').trim_matches('"').to_string(),
                    doc: doc.join(" "),
                });
            }
            doc.clear();
        } else if !line.starts_with("#[") {
            doc.clear();
        }
    }
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn table() -> String {
    let names = names();
    let mut t = String::new();
    let section = |t: &mut String, title: &str, module: &str, filter: &dyn Fn(&Name) -> bool| {
        let _ = writeln!(t, "### {title}\n\n| Name | Description |\n|---|---|");
        for n in names.iter().filter(|n| n.module == module && filter(n)) {
            let _ = writeln!(t, "| `{}` | {} |", n.value, cell(&n.doc));
        }
        t.push('\n');
    };
    let resource = |n: &Name| {
        ["service.", "host.id", "os.type", "k8s.node.name"]
            .iter()
            .any(|p| n.value.starts_with(p))
    };
    section(&mut t, "Attributes", "attr", &|n| !resource(n));
    section(&mut t, "Resource attributes", "attr", &resource);
    section(
        &mut t,
        "Event names (LogRecord `EventName`, span event names)",
        "event",
        &|_| true,
    );
    let _ = writeln!(
        t,
        "### Enumerated values\n\n| Set | Value | Description |\n|---|---|---|"
    );
    for n in names
        .iter()
        .filter(|n| !["attr", "event", "metric"].contains(&n.module.as_str()))
    {
        let _ = writeln!(t, "| `{}` | `{}` | {} |", n.module, n.value, cell(&n.doc));
    }
    let _ = writeln!(
        t,
        "\n### Metrics\n\n| Name | Unit | Kind | Prometheus name | Description |\n|---|---|---|---|---|"
    );
    for m in metric::ALL {
        let kind = match m.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(
            t,
            "| `{}` | `{}` | {kind} | `{}` | {} |",
            m.name,
            m.unit,
            m.prometheus_name(),
            cell(m.description)
        );
    }
    t
}

#[test]
fn the_reference_table_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/semconv.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let expected = table();
    let current = doc
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(table, _)| table.trim().to_string());
    if current.as_deref() == Some(expected.trim()) {
        return;
    }
    if std::env::var("SEMCONV_BLESS").as_deref() == Ok("1") {
        let (head, tail) = match doc.split_once(BEGIN) {
            Some((head, rest)) => (
                head.to_string(),
                rest.split_once(END).map_or("", |(_, t)| t).to_string(),
            ),
            None => (doc.clone(), "\n".to_string()),
        };
        std::fs::write(
            &path,
            format!("{head}{BEGIN}\n\n{}\n{END}{tail}", expected.trim()),
        )
        .unwrap();
        return;
    }
    panic!(
        "{} is out of step with semconv/src/lib.rs; run `SEMCONV_BLESS=1 cargo test -p semconv --test doc_table` to update it. Expected table:\n{expected}",
        path.display()
    );
}

#[test]
fn every_attribute_and_event_has_a_doc_comment() {
    let missing: Vec<String> = names()
        .into_iter()
        .filter(|n| (n.module == "attr" || n.module == "event") && n.doc.is_empty())
        .map(|n| n.value)
        .collect();
    assert!(missing.is_empty(), "no doc comment: {missing:?}");
}

#[test]
fn prometheus_names_follow_the_otlp_translation() {
    assert_eq!(metric::EVENTS.prometheus_name(), "safeguard_events_total");
    assert_eq!(
        metric::SPOOL_SIZE.prometheus_name(),
        "safeguard_spool_size_bytes"
    );
    assert_eq!(
        metric::PIPELINE_LATENCY.prometheus_name(),
        "safeguard_pipeline_latency_seconds"
    );
    assert_eq!(metric::RULES.prometheus_name(), "safeguard_rules");
    assert_eq!(
        metric::BLOCKED_OPERATIONS.prometheus_name(),
        "safeguard_blocked_operations_total"
    );
}
