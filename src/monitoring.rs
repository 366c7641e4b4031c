//! Test-only: the Grafana dashboard and the Prometheus alerts of `k8s/components/monitoring`
//! name only metrics that exist. The worker's names are taken from what
//! [`kyc_worker::metrics::Metrics::render`] really prints, not from a list kept by hand, so a
//! renamed or removed metric fails here instead of leaving a panel blank or an alert silent.

use std::collections::BTreeSet;

use kyc_worker::metrics::Metrics;

const DASHBOARD: &str = include_str!("../k8s/components/monitoring/kyc-dashboard.json");
const RULES: &str = include_str!("../k8s/components/monitoring/prometheusrule.yaml");

/// Metrics that are not the worker's, each with where it comes from.
const FOREIGN: &[&str] = &[
    // Prometheus itself: 1 per scrape target that answered.
    "up",
    // RabbitMQ's exporter (rabbitmq_prometheus, per-object metrics; label `queue`): the worker
    // does not know queue depth, consumer counts or the dead-letter queue's length.
    "rabbitmq_queue_messages",
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_queue_consumers",
];

/// PromQL words that look like identifiers but are not metric names (aggregation operators
/// too: in `sum by (x) (...)` no parenthesis follows the operator itself).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

/// Every sample name the worker exports, after recording one event of each kind (so every
/// counter and the histogram's `_bucket`/`_sum`/`_count` series exist).
fn exported() -> BTreeSet<String> {
    let m = Metrics::default();
    m.job_finished("huawei", "huawei.standard", "passed");
    m.vendor_call(
        "huawei",
        "ivs-standard",
        "ok",
        std::time::Duration::from_millis(5),
    );
    m.retry("huawei", "ivs-standard", "throttled");
    m.limiter_wait(
        "huawei",
        "ivs-standard",
        std::time::Duration::from_millis(5),
    );
    m.dead_letter("huawei");
    m.dead_letter_copy_failed("huawei");
    m.unknown_calls("huawei", 1);
    m.slot_dropped("huawei", "ivs-standard");
    m.concurrency_limit("huawei", 16);
    m.limiter_queue("huawei", "ivs-standard", 0);
    m.spend("huawei", "calls", 3.0, 1.0);
    m.cap_deferral("huawei");
    m.in_flight(1);
    m.database_writes(2, 1);
    m.render()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

/// Metric names in a PromQL expression: identifiers outside strings, label matchers, range
/// selectors and `by (...)`-style label lists that are not functions or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let skip_to = |from: usize, close: char| -> usize {
        let mut j = from;
        let mut in_str = false;
        while j < chars.len() {
            match chars[j] {
                '\\' if in_str => j += 1,
                '"' => in_str = !in_str,
                c if c == close && !in_str => return j + 1,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if c == '"' {
            i = skip_to(i + 1, '"');
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let is_call = chars.get(next) == Some(&'(');
            let lower = word.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) && is_call
            {
                i = skip_to(next + 1, ')');
            } else if !is_call && !KEYWORDS.contains(&lower.as_str()) {
                names.insert(word);
            }
        } else if c.is_ascii_digit() || c == '$' {
            // Numbers (1e3, 0x10) and Grafana variables are not metric names.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_.$".contains(chars[i]))
            {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The `expr` of every panel target in the dashboard.
fn dashboard_exprs() -> Vec<String> {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    let panels = d["panels"].as_array().expect("dashboard has panels");
    let mut out = Vec::new();
    for p in panels {
        let targets = p["targets"].as_array().expect("every panel has targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            out.push(
                t["expr"]
                    .as_str()
                    .expect("every target has an expr")
                    .to_string(),
            );
        }
    }
    out
}

/// The `expr: |-` block of every rule. No YAML parser in the workspace, so the file keeps each
/// expression a block scalar; a rule written otherwise is caught by the count check.
fn rule_exprs() -> Vec<String> {
    let lines: Vec<&str> = RULES.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    for (n, l) in lines.iter().enumerate() {
        if l.trim_start().starts_with("expr:") {
            assert_eq!(
                l.trim(),
                "expr: |-",
                "line {}: write expr as a block scalar",
                n + 1
            );
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|b| b.trim().is_empty() || indent(b) > indent(l))
                .map(|b| b.trim())
                .collect();
            out.push(block.join("\n"));
        }
    }
    let alerts = lines
        .iter()
        .filter(|l| {
            l.trim_start().starts_with("- alert:") || l.trim_start().starts_with("- record:")
        })
        .count();
    assert_eq!(alerts, out.len(), "one `expr: |-` per rule");
    out
}

/// Metric names in `exprs` that neither the worker nor the allowlist provides.
fn unknown_names(exprs: &[String], exported: &BTreeSet<String>) -> Vec<String> {
    let mut bad = Vec::new();
    for e in exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "no metric found in {e:?}");
        for n in names {
            if !exported.contains(&n) && !FOREIGN.contains(&n.as_str()) {
                bad.push(format!("{n} (in {e:?})"));
            }
        }
    }
    bad
}

#[test]
fn every_metric_in_the_dashboard_and_alerts_is_exported() {
    let exported = exported();
    let dash = dashboard_exprs();
    let rules = rule_exprs();
    assert!(
        dash.len() >= 10 && rules.len() >= 8,
        "{} panels' queries, {} rules",
        dash.len(),
        rules.len()
    );
    let bad = unknown_names(&[dash, rules].concat(), &exported);
    assert!(
        bad.is_empty(),
        "not exported by the worker (nor allowlisted): {bad:#?}\nexported: {exported:?}"
    );
}

#[test]
fn every_worker_metric_appears_on_the_dashboard() {
    // A metric nobody can see is as good as none: the dashboard shows every worker series.
    let used: BTreeSet<String> = dashboard_exprs()
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    let unseen: Vec<_> = exported()
        .into_iter()
        .filter(|n| !used.contains(n) && !n.ends_with("_sum") && !n.ends_with("_count"))
        .collect();
    assert!(
        unseen.is_empty(),
        "worker metrics on no dashboard panel: {unseen:?}"
    );
}

#[test]
fn a_metric_the_worker_does_not_export_is_reported() {
    let exported = exported();
    let exprs = vec![
        r#"sum by (vendor, le) (rate(kyc_vendor_call_duration_seconds_bucket{api=~"a.+"}[5m]))"#.to_string(),
        r#"sum(rate(kyc_jobs_totl{status="error"}[$__rate_interval])) / on(vendor) group_left(api) kyc_vendor_call_duration_seconds"#.to_string(),
    ];
    let bad = unknown_names(&exprs, &exported);
    // A typo and a histogram named without its _bucket/_sum/_count suffix.
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0].starts_with("kyc_jobs_totl ")
            && bad[1].starts_with("kyc_vendor_call_duration_seconds "),
        "{bad:?}"
    );
}

#[test]
fn names_inside_strings_label_lists_and_functions_are_not_metrics() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum without (pod) (rate(x_bucket{queue=~"up.+", le!="1e3"}[5m] offset 1h))) > bool 1e3 or absent(y)"#,
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["x_bucket", "y"]);
}

#[test]
fn the_readme_explains_exactly_the_alerts_the_rules_define() {
    // One source of truth: the PrometheusRule defines the alerts, the README's "What each
    // alert means" table must name each of them and no other.
    let defined: BTreeSet<String> = RULES
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect();
    let readme = include_str!("../README.md");
    let table = readme
        .split("### What each alert means and what to do")
        .nth(1)
        .expect("README has the alert table")
        .split("\n#")
        .next()
        .unwrap_or_default();
    let explained: BTreeSet<String> = table
        .lines()
        .filter(|l| l.starts_with("| `Kyc"))
        .flat_map(|l| {
            l.split('|')
                .nth(1)
                .unwrap_or_default()
                .split(',')
                .map(|n| n.trim().trim_matches('`').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!defined.is_empty());
    assert_eq!(defined, explained);
}
