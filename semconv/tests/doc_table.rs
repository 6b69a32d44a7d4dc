//! `docs/semconv.md` lists every name in this crate; this test keeps it in
//! step. The table between the markers is what [`table`] builds from the
//! crate's lists: a name missing from the document, a name the code no
//! longer has, or a metric whose unit, kind, Prometheus name or attributes
//! changed all fail here. On a mismatch the test names the differing rows
//! and prints the whole table; `SEMCONV_BLESS=1` writes it into the
//! document instead.

use std::{collections::BTreeSet, fmt::Write as _};

mod common;

use semconv::{Name, VALUE_SETS, attr, event, metric};

const BEGIN: &str = "<!-- BEGIN GENERATED: cargo test -p semconv --test doc_table -->";
const END: &str = "<!-- END GENERATED -->";
const BLESS: &str = "SEMCONV_BLESS=1 cargo test -p semconv --test doc_table";

/// A doc comment as one table cell: on one line, rustdoc links as their
/// text, `|` escaped.
fn cell(doc: &str) -> String {
    let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    let mut rest = doc.as_str();
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let text = &after[..close];
        let tail = &after[close + 1..];
        if tail.starts_with('(')
            && let Some(end) = tail.find(')')
        {
            // [text](target)
            out.push_str(text);
            rest = &tail[end + 1..];
        } else if let Some(path) = text.strip_prefix('`').and_then(|t| t.strip_suffix('`')) {
            // [`path::item`]
            let item = path.rsplit("::").next().unwrap_or(path);
            let _ = write!(out, "`{item}`");
            rest = tail;
        } else {
            out.push('[');
            rest = after;
        }
    }
    out.push_str(rest);
    out.replace('|', "\\|")
}

fn names_section(t: &mut String, title: &str, names: &[Name]) {
    let _ = writeln!(t, "### {title}\n\n| Name | Description |\n|---|---|");
    for n in names {
        let _ = writeln!(t, "| `{}` | {} |", n.name, cell(n.doc));
    }
    t.push('\n');
}

/// The reference table the code implies.
fn table() -> String {
    let mut t = String::new();
    names_section(&mut t, "Attributes", attr::RECORD);
    names_section(
        &mut t,
        "Resource attributes (on the Resource of every signal)",
        attr::RESOURCE,
    );
    names_section(
        &mut t,
        "Event names (LogRecord `EventName`, span event names)",
        event::ALL,
    );

    let _ = writeln!(
        t,
        "### Enumerated values\n\n| Attribute | Value | Description |\n|---|---|---|"
    );
    for (key, values) in VALUE_SETS {
        for v in *values {
            let _ = writeln!(t, "| `{key}` | `{}` | {} |", v.name, cell(v.doc));
        }
    }

    let _ = writeln!(
        t,
        "\n### Metrics\n\n\
         | Name | Unit | Kind | Prometheus name | Attributes | Description |\n\
         |---|---|---|---|---|---|"
    );
    for m in metric::ALL {
        let attributes = if m.attributes.is_empty() {
            "none".to_string()
        } else {
            m.attributes
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            t,
            "| `{}` | `{}` | {} | `{}` | {attributes} | {} |",
            m.name,
            m.unit,
            m.kind.name(),
            m.prometheus_name(),
            cell(m.description)
        );
    }
    t
}

fn doc_path() -> std::path::PathBuf {
    common::workspace_root().join("docs/semconv.md")
}

#[test]
fn the_reference_table_matches_the_code() {
    let path = doc_path();
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let expected = table();
    let Some((head, rest)) = doc.split_once(BEGIN) else {
        panic!("{}: no `{BEGIN}` marker", path.display());
    };
    let Some((current, tail)) = rest.split_once(END) else {
        panic!("{}: no `{END}` marker", path.display());
    };
    if current.trim() == expected.trim() {
        return;
    }
    if std::env::var("SEMCONV_BLESS").as_deref() == Ok("1") {
        let updated = format!("{head}{BEGIN}\n\n{}\n{END}{tail}", expected.trim());
        std::fs::write(&path, updated).unwrap();
        return;
    }

    let rows = |t: &str| -> BTreeSet<String> {
        t.lines()
            .filter(|l| l.starts_with("| `"))
            .map(String::from)
            .collect()
    };
    let (want, have) = (rows(&expected), rows(current));
    let mut report = String::new();
    for row in want.difference(&have) {
        let _ = writeln!(report, "  missing or different in the document: {row}");
    }
    for row in have.difference(&want) {
        let _ = writeln!(report, "  in the document, not in the code:     {row}");
    }
    if report.is_empty() {
        report.push_str("  (same rows; headings or order differ)\n");
    }
    panic!(
        "{} is out of step with the semconv crate:\n{report}\n\
         Run `{BLESS}` to rewrite it. The table the code implies:\n\n{expected}",
        path.display()
    );
}

/// The table lists value sets from `VALUE_SETS`; a values module left out
/// of it would be missing from the document without a mismatch.
#[test]
fn every_values_module_is_in_value_sets() {
    let source = include_str!("../src/lib.rs");
    let sets = &source[source
        .find("pub const VALUE_SETS")
        .expect("VALUE_SETS in lib.rs")..];
    let modules: Vec<&str> = source
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(" {"))
        .collect();
    assert!(modules.contains(&"decision"), "found {modules:?}");
    for m in modules {
        assert!(
            sets.contains(&format!("{m}::")),
            "values module `{m}` is not in semconv::VALUE_SETS"
        );
    }
}

#[test]
fn names_are_unique() {
    let mut seen = BTreeSet::new();
    for n in attr::ALL.iter().chain(event::ALL) {
        assert!(seen.insert(n.name), "{} is declared twice", n.name);
    }
    let mut seen = BTreeSet::new();
    for m in metric::ALL {
        assert!(
            seen.insert(m.name.to_string()),
            "{} is declared twice",
            m.name
        );
        let prometheus = m.prometheus_name();
        assert!(
            seen.insert(prometheus.clone()),
            "{}: Prometheus name {prometheus} is taken",
            m.name
        );
    }
    for (key, values) in VALUE_SETS {
        let mut seen = BTreeSet::new();
        for v in *values {
            assert!(seen.insert(v.name), "{key}: {} twice", v.name);
        }
    }
}

#[test]
fn metric_attributes_are_record_attributes() {
    let keys: BTreeSet<&str> = attr::RECORD.iter().map(|n| n.name).collect();
    for m in metric::ALL {
        for a in m.attributes {
            assert!(
                keys.contains(a),
                "{}: {a} is not a record attribute",
                m.name
            );
        }
    }
}
