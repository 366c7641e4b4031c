//! Worker metrics in Prometheus text format. Labels are vendor, API, operation, status and
//! cause only: never anything from a subject, so no PII can reach a metrics backend.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the vendor-call latency histogram.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    // std Mutex: held for a map update, never across an await.
    counters: Mutex<BTreeMap<(&'static str, Labels), f64>>,
    latency: Mutex<BTreeMap<Labels, Histogram>>,
    gauges: Mutex<BTreeMap<(&'static str, Labels), f64>>,
    in_flight: AtomicI64,
    /// Per-consumer liveness watermark, read by `/healthz`.
    pub progress: crate::progress::Progress,
}

impl Metrics {
    fn add(&self, name: &'static str, labels: Labels, v: f64) {
        *self
            .counters
            .lock()
            .expect("metrics lock")
            .entry((name, labels))
            .or_default() += v;
    }

    pub fn job_finished(&self, vendor: &str, operation: &str, status: &str) {
        self.add(
            "kyc_jobs_total",
            vec![
                ("vendor", vendor.into()),
                ("operation", operation.into()),
                ("status", status.into()),
            ],
            1.0,
        );
    }

    pub fn vendor_call(&self, vendor: &str, api: &str, result: &str, latency: Duration) {
        self.progress.touch(vendor);
        let labels = vec![("vendor", vendor.to_string()), ("api", api.to_string())];
        let mut with_result = labels.clone();
        with_result.push(("result", result.into()));
        self.add("kyc_vendor_calls_total", with_result, 1.0);
        let mut h = self.latency.lock().expect("metrics lock");
        let h = h.entry(labels).or_default();
        let secs = latency.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn retry(&self, vendor: &str, api: &str, cause: &str) {
        self.add(
            "kyc_vendor_retries_total",
            vec![
                ("vendor", vendor.into()),
                ("api", api.into()),
                ("cause", cause.into()),
            ],
            1.0,
        );
        if cause == "throttled" {
            self.add(
                "kyc_vendor_throttles_total",
                vec![("vendor", vendor.into()), ("api", api.into())],
                1.0,
            );
        }
    }

    pub fn limiter_wait(&self, vendor: &str, api: &str, waited: Duration) {
        self.add(
            "kyc_limiter_wait_seconds_total",
            vec![("vendor", vendor.into()), ("api", api.into())],
            waited.as_secs_f64(),
        );
    }

    pub fn dead_letter(&self, vendor: &str) {
        self.add(
            "kyc_dead_letters_total",
            vec![("vendor", vendor.into())],
            1.0,
        );
    }

    /// A dead-letter copy owed by a job that gave up could not be published (it stays owed
    /// and is settled on the job's next delivery).
    pub fn dead_letter_copy_failed(&self, vendor: &str) {
        self.add(
            "kyc_dead_letter_copy_failures_total",
            vec![("vendor", vendor.into())],
            1.0,
        );
    }

    /// Vendor calls an earlier delivery left open (the worker died or lost the database
    /// mid-call): the vendor may have answered and billed them, and nobody knows the verdict.
    pub fn unknown_calls(&self, vendor: &str, n: u64) {
        self.add(
            "kyc_unknown_calls_total",
            vec![("vendor", vendor.into())],
            n as f64,
        );
    }

    /// A slot came up while the call's ledger row was being written and had gone by when
    /// the call was ready: dropped, another taken (a slow or stalled database).
    pub fn slot_dropped(&self, vendor: &str, api: &str) {
        self.add(
            "kyc_limiter_slots_dropped_total",
            vec![("vendor", vendor.into()), ("api", api.into())],
            1.0,
        );
    }

    /// A capped vendor's budget for the current window and what is left of it (`unit`:
    /// `calls` or a currency code; money as a float here, for display only).
    pub fn spend(&self, vendor: &str, unit: &str, cap: f64, remaining: f64) {
        let labels = vec![("vendor", vendor.to_string()), ("unit", unit.to_string())];
        self.set("kyc_spend_cap", labels.clone(), cap);
        self.set("kyc_spend_remaining", labels, remaining);
    }

    /// A job sent to a later window because its vendor's spend cap was reached.
    pub fn cap_deferral(&self, vendor: &str) {
        self.add(
            "kyc_spend_deferrals_total",
            vec![("vendor", vendor.into())],
            1.0,
        );
    }

    /// The jobs a vendor's consumer may hold at once, as the controller set it.
    pub fn concurrency_limit(&self, vendor: &str, limit: usize) {
        self.set(
            "kyc_concurrency_limit",
            vec![("vendor", vendor.into())],
            limit as f64,
        );
    }

    /// Tasks waiting for a slot of one API (at the last controller tick).
    pub fn limiter_queue(&self, vendor: &str, api: &str, waiting: usize) {
        self.set(
            "kyc_limiter_queue",
            vec![("vendor", vendor.into()), ("api", api.into())],
            waiting as f64,
        );
    }

    fn set(&self, name: &'static str, labels: Labels, v: f64) {
        self.gauges
            .lock()
            .expect("metrics lock")
            .insert((name, labels), v);
    }

    /// The database writes this process made through the group commit and the transactions
    /// that carried them (totals since start, read from the store at each scrape): their
    /// ratio is how many writes each commit carries, the figure group commit is for.
    pub fn database_writes(&self, writes: u64, transactions: u64) {
        let mut counters = self.counters.lock().expect("metrics lock");
        counters.insert(("kyc_db_group_writes_total", Vec::new()), writes as f64);
        counters.insert(
            ("kyc_db_group_transactions_total", Vec::new()),
            transactions as f64,
        );
    }

    pub fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().expect("metrics lock");
        let mut last = "";
        for ((name, labels), v) in counters.iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", braced(labels));
        }
        drop(counters);
        let mut last = "";
        for ((name, labels), v) in self.gauges.lock().expect("metrics lock").iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} gauge");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", braced(labels));
        }
        let _ = writeln!(out, "# TYPE kyc_jobs_in_flight gauge");
        let _ = writeln!(
            out,
            "kyc_jobs_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE kyc_vendor_call_duration_seconds histogram");
        for (labels, h) in self.latency.lock().expect("metrics lock").iter() {
            let l = fmt_labels(labels);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "kyc_vendor_call_duration_seconds_bucket{{{l},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "kyc_vendor_call_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "kyc_vendor_call_duration_seconds_sum{{{l}}} {}", h.sum);
            let _ = writeln!(
                out,
                "kyc_vendor_call_duration_seconds_count{{{l}}} {}",
                h.count
            );
        }
        out
    }
}

/// `{labels}`, or nothing for a series without labels.
fn braced(labels: &Labels) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", fmt_labels(labels))
    }
}

fn fmt_labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_prometheus_format() {
        let m = Metrics::default();
        m.job_finished("huawei", "huawei.standard", "passed");
        m.job_finished("huawei", "huawei.standard", "passed");
        m.vendor_call("huawei", "ivs-standard", "ok", Duration::from_millis(80));
        m.retry("huawei", "ivs-standard", "throttled");
        m.database_writes(12, 3);
        let text = m.render();
        assert!(text.contains("kyc_jobs_total{vendor=\"huawei\",operation=\"huawei.standard\",status=\"passed\"} 2"), "{text}");
        assert!(text.contains("\nkyc_db_group_writes_total 12\n"), "{text}");
        assert!(
            text.contains("\nkyc_db_group_transactions_total 3\n"),
            "{text}"
        );
        assert!(text.contains("kyc_vendor_call_duration_seconds_bucket{vendor=\"huawei\",api=\"ivs-standard\",le=\"0.1\"} 1"));
        assert!(text.contains("kyc_vendor_call_duration_seconds_bucket{vendor=\"huawei\",api=\"ivs-standard\",le=\"0.05\"} 0"));
        assert!(
            text.contains("kyc_vendor_throttles_total{vendor=\"huawei\",api=\"ivs-standard\"} 1")
        );
    }

    #[test]
    fn spend_gauges_render_per_vendor_and_unit() {
        let m = Metrics::default();
        m.spend("huawei", "calls", 3.0, 3.0);
        m.spend("huawei", "calls", 3.0, 0.0);
        m.cap_deferral("huawei");
        let text = m.render();
        assert!(text.contains("# TYPE kyc_spend_remaining gauge"), "{text}");
        assert!(
            text.contains("kyc_spend_remaining{vendor=\"huawei\",unit=\"calls\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("kyc_spend_cap{vendor=\"huawei\",unit=\"calls\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("kyc_spend_deferrals_total{vendor=\"huawei\"} 1"),
            "{text}"
        );
    }
}
