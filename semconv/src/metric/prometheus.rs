//! OTLP metric names as Prometheus shows them: the OpenTelemetry
//! specification's Prometheus compatibility rules, as the Collector's
//! Prometheus exporters and Prometheus's OTLP receiver apply them by
//! default (both through `github.com/prometheus/otlptranslator`, strategy
//! `UnderscoreEscapingWithSuffixes`, no namespace).

use super::Kind;

/// The Prometheus name of a metric named `name` with `unit`, recorded as
/// `kind`.
pub(super) fn name(name: &str, unit: &str, kind: Kind) -> String {
    // Runs of other characters separate words: `a.b__c` is `a_b_c`.
    let mut words: Vec<String> = name
        .split(|c: char| !is_name_char(c))
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();

    let (main, per) = unit_words(unit);
    let mut main = clean(&main);
    let per = clean(&per);
    if words.contains(&main) {
        main.clear();
    }
    let per = match per.as_str() {
        "per_" => String::new(),
        p => {
            let p = p.strip_suffix('_').unwrap_or(p);
            if words.iter().any(|w| w == p) {
                String::new()
            } else {
                p.to_string()
            }
        }
    };
    if !per.is_empty()
        && let Some(m) = main.strip_suffix('_')
    {
        main = m.to_string();
    }
    words.extend([main, per].into_iter().filter(|w| !w.is_empty()));

    if kind == Kind::Counter {
        words.retain(|w| w != "total");
        words.push("total".into());
    }
    if unit == "1" && kind == Kind::Gauge {
        words.retain(|w| w != "ratio");
        words.push("ratio".into());
    }

    let name = words.join("_");
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

/// `[a-zA-Z0-9:]`: what a metric name may hold besides the underscore.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The words a unit adds: the main unit and, after a `/`, the `per_` unit.
/// Annotations (`{event}`) add nothing.
fn unit_words(unit: &str) -> (String, String) {
    let (main, per) = match unit.split_once('/') {
        Some((main, per)) => (main, Some(per)),
        None => (unit, None),
    };
    let annotation = |u: &str| u.contains(['{', '}']);
    let main = main.trim();
    let main = if main.is_empty() || annotation(main) {
        String::new()
    } else {
        unit_name(main).to_string()
    };
    let per = per
        .map(str::trim)
        .filter(|p| !p.is_empty() && !annotation(p));
    let per = per.map_or_else(String::new, |p| format!("per_{}", per_unit_name(p)));
    (main, per)
}

/// UCUM units Prometheus spells out; any other is used as it is.
fn unit_name(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The unit after a `/`, in the singular.
fn per_unit_name(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// Other characters become `_`, runs of `_` one, and a leading `_` goes.
fn clean(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    for c in unit.chars() {
        let c = if is_name_char(c) { c } else { '_' };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    match out.strip_prefix('_') {
        Some(rest) => rest.to_string(),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_become_words() {
        assert_eq!(name("a.size", "By", Kind::Gauge), "a_size_bytes");
        assert_eq!(name("a.latency", "s", Kind::Histogram), "a_latency_seconds");
        assert_eq!(
            name("a.latency", "ms", Kind::Histogram),
            "a_latency_milliseconds"
        );
        assert_eq!(name("a.events", "{event}", Kind::Gauge), "a_events");
        assert_eq!(
            name("a.rate", "By/s", Kind::Gauge),
            "a_rate_bytes_per_second"
        );
        assert_eq!(
            name("a.rate", "{packet}/s", Kind::Gauge),
            "a_rate_per_second"
        );
        assert_eq!(name("a.odd", "foo.bar", Kind::Gauge), "a_odd_foo_bar");
    }

    #[test]
    fn a_unit_the_name_has_is_not_repeated() {
        assert_eq!(
            name("a.bytes.sent", "By", Kind::Counter),
            "a_bytes_sent_total"
        );
        assert_eq!(name("a.size_bytes", "By", Kind::Gauge), "a_size_bytes");
    }

    #[test]
    fn counters_end_in_total_and_only_counters() {
        assert_eq!(name("a.total.events", "1", Kind::Counter), "a_events_total");
        assert_eq!(name("a.events", "1", Kind::UpDownCounter), "a_events");
        assert_eq!(name("a.events", "{event}", Kind::Histogram), "a_events");
    }

    #[test]
    fn unit_one_is_a_ratio_on_gauges_only() {
        assert_eq!(name("a.ratio.used", "1", Kind::Gauge), "a_used_ratio");
        assert_eq!(name("a.used", "1", Kind::UpDownCounter), "a_used");
        assert_eq!(name("a.used", "1", Kind::Counter), "a_used_total");
    }

    #[test]
    fn other_characters_separate_words() {
        assert_eq!(name("a-b..c__d", "", Kind::Gauge), "a_b_c_d");
        assert_eq!(name("a:b.c", "", Kind::Gauge), "a:b_c");
        assert_eq!(name("2xx.count", "", Kind::Gauge), "_2xx_count");
    }
}
