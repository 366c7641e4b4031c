//! `kyc status [--batch ID]`: where each batch stands, from the database alone (rows read,
//! rejected, published; jobs done and pending; outcomes by status; unknown calls), its
//! throughput over the last minutes and an ETA from the configured quotas; in server mode
//! also what waits in the broker's queues.
//!
//! The ETA is the quota's lower bound: every pending job will call each API its operation
//! calls (`kyc_worker::vendors::apis_of`) at least once, and an API serves at most its quota
//! (`KYC_QUOTAS`, qps), so the batch needs at least
//! `max over APIs a of (pending jobs whose operation calls a) / qps(a)` seconds. Retries,
//! latency, worker concurrency and other batches sharing the quota only make it longer; the
//! observed rate (outcomes per minute over `--window`) shows how far.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kyc_schemas::{Operation, Vendor};
use kyc_store::status::BatchStatus;
use kyc_store::{DbTimeouts, Store};
use kyc_worker::Quota;

use crate::{commands, config, Conn};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    conn: Conn,
    /// One batch; default: the most recent ones.
    #[arg(long)]
    batch: Option<String>,
    /// How many recent batches to show without --batch.
    #[arg(long, default_value_t = 10)]
    limit: i64,
    /// Throughput is measured over this last stretch of time.
    #[arg(long, default_value = "5m", value_parser = config::parse_duration)]
    window: Duration,
    /// One JSON object on standard output instead of the table.
    #[arg(long)]
    json: bool,
}

/// The quota-bound ETA of `pending` jobs (by operation), in seconds: see the module docs.
/// `None` when an API they call has no quota (it is then not bounded by one).
pub fn quota_eta_secs(pending: &[(String, i64)], quotas: &HashMap<String, Quota>) -> Option<f64> {
    let mut demand: HashMap<String, i64> = HashMap::new();
    for (op, n) in pending {
        let Ok(op) = op.parse::<Operation>() else {
            continue;
        };
        for api in kyc_worker::vendors::apis_of(op) {
            *demand.entry(kyc_worker::Limiters::key(api)).or_default() += n;
        }
    }
    let mut eta: f64 = 0.0;
    for (key, n) in demand {
        let q = quotas.get(&key).filter(|q| q.qps > 0.0)?;
        eta = eta.max(n as f64 / q.qps);
    }
    Some(eta)
}

fn human(secs: f64) -> String {
    let s = secs.ceil() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

struct Figures {
    per_min: f64,
    eta_quota: Option<f64>,
    eta_observed: Option<f64>,
}

fn figures(b: &BatchStatus, window: Duration, quotas: &HashMap<String, Quota>) -> Figures {
    let minutes = (window.as_secs_f64() / 60.0).max(1.0 / 60.0);
    let per_min = b.done_recently as f64 / minutes;
    Figures {
        per_min,
        eta_quota: quota_eta_secs(&b.pending_by_operation, quotas),
        eta_observed: (b.pending == 0)
            .then_some(0.0)
            .or_else(|| (per_min > 0.0).then(|| b.pending as f64 / per_min * 60.0)),
    }
}

pub async fn run(a: StatusArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(a.conn.log_format == "json", "error");
    let quotas = config::quotas()?;
    let store = Store::connect_with(
        &a.conn.database,
        2,
        DbTimeouts {
            connect: a.conn.database_timeout,
            statement: a.conn.statement_timeout,
        },
    )
    .await
    .context("Failed to connect to the database (KYC_DATABASE_URL)")?;
    let since = kyc_store::now_ms() - a.window.as_millis() as i64;
    let batches = store
        .batch_status(a.batch.as_deref(), a.limit.max(1), since)
        .await
        .context("Failed to read the batches")?;
    // Jobs a spend cap (KYC_SPEND_CAPS) sent to a later window, per batch and vendor.
    let capped = store
        .cap_deferrals(a.batch.as_deref())
        .await
        .context("Failed to read the spend-cap deferrals")?;
    store.close().await;
    if let Some(b) = &a.batch {
        if batches.is_empty() {
            anyhow::bail!("no batch {b} in this database");
        }
    }
    // Server mode: what waits in the broker (all batches together; the broker does not know
    // batches). Embedded mode has no broker between runs.
    let queues = if a.conn.database.starts_with("sqlite:") {
        None
    } else {
        Some(queue_depths(&a.conn).await)
    };
    if a.json {
        println!("{}", json(&batches, &capped, &queues, a.window, &quotas));
    } else {
        print!("{}", table(&batches, &queues, a.window, &quotas));
        for d in capped
            .iter()
            .filter(|d| batches.iter().any(|b| b.batch_id == d.batch_id))
        {
            println!(
                "batch {}: {} {} jobs deferred by the spend cap (KYC_SPEND_CAPS), {} still waiting for the next window",
                d.batch_id, d.jobs, d.vendor, d.waiting
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Per vendor: ready messages in its work queue, in its delay queues (retries waiting, and
/// jobs deferred to a later window), its consumers; then the dead letters.
struct Depths {
    vendors: Vec<(Vendor, u32, u32, u32)>,
    dead: u32,
}

async fn queue_depths(conn: &Conn) -> Result<Depths, String> {
    let broker = commands::broker(conn, conn.topology())
        .await
        .map_err(|e| format!("{e:#}"))?;
    let states = broker.queue_states().await.map_err(|e| e.to_string());
    broker.close().await;
    let states = states?;
    let t = conn.topology();
    let count = |name: &str| -> (u32, u32) {
        states
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, s)| match s {
                kyc_queue::verify::QueueState::Present {
                    messages,
                    consumers,
                } => Some((*messages, *consumers)),
                kyc_queue::verify::QueueState::Missing => None,
            })
            .unwrap_or((0, 0))
    };
    let vendors = Vendor::ALL
        .into_iter()
        .map(|v| {
            let (work, consumers) = count(&t.work_queue(v));
            let delayed = kyc_queue::topology::DELAY_BUCKETS
                .iter()
                .map(|b| count(&t.delay_queue(v, *b)).0)
                .sum();
            (v, work, delayed, consumers)
        })
        .collect();
    Ok(Depths {
        vendors,
        dead: count(&t.dead_letter_queue()).0,
    })
}

fn table(
    batches: &[BatchStatus],
    queues: &Option<Result<Depths, String>>,
    window: Duration,
    quotas: &HashMap<String, Quota>,
) -> String {
    let mut s = String::new();
    if batches.is_empty() {
        s.push_str("no batches yet\n");
    } else {
        s.push_str(&format!(
            "{:<24} {:>7} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8} {:>6} {:>7} {:>8} {:>10} {:>10}\n",
            "batch", "read", "rejected", "published", "done", "pending", "passed", "failed",
            "not_found", "awaiting", "error", "unknown", "jobs/min", "eta_quota", "eta_seen"
        ));
        for b in batches {
            let f = figures(b, window, quotas);
            s.push_str(&format!(
                "{:<24} {:>7} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8} {:>6} {:>7} {:>8.1} {:>10} {:>10}\n",
                b.batch_id,
                b.rows_read,
                b.rows_rejected,
                b.published,
                b.done,
                b.pending,
                b.passed,
                b.failed,
                b.not_found,
                b.awaiting,
                b.error,
                b.unknown_calls,
                f.per_min,
                f.eta_quota.map(human).unwrap_or_else(|| "-".into()),
                f.eta_observed.map(human).unwrap_or_else(|| "-".into()),
            ));
        }
        s.push_str(&format!(
            "jobs/min over the last {}; eta_quota = max over APIs of pending calls / quota (KYC_QUOTAS), a lower bound; eta_seen = pending / jobs/min\n",
            config::format_duration(window)
        ));
        if batches.iter().any(|b| b.unknown_calls > 0) {
            s.push_str("unknown: calls whose answer was lost (possibly billed): see `kyc report reconcile --batch ID`\n");
        }
    }
    match queues {
        None => s.push_str("queues: embedded mode (sqlite database), no broker\n"),
        Some(Err(e)) => s.push_str(&format!("queues: broker not reachable: {e}\n")),
        Some(Ok(d)) => {
            s.push_str(&format!(
                "\n{:<8} {:>8} {:>8} {:>9}   (ready messages, all batches)\n",
                "queue", "waiting", "delayed", "consumers"
            ));
            for (v, work, delayed, consumers) in &d.vendors {
                s.push_str(&format!(
                    "{:<8} {:>8} {:>8} {:>9}\n",
                    v.as_str(),
                    work,
                    delayed,
                    consumers
                ));
            }
            s.push_str(&format!(
                "dead letters: {}{}\n",
                d.dead,
                if d.dead > 0 {
                    " (see the dead-letter queue)"
                } else {
                    ""
                }
            ));
        }
    }
    s
}

fn json(
    batches: &[BatchStatus],
    capped: &[kyc_store::spend::CapDeferrals],
    queues: &Option<Result<Depths, String>>,
    window: Duration,
    quotas: &HashMap<String, Quota>,
) -> serde_json::Value {
    let batches: Vec<serde_json::Value> = batches
        .iter()
        .map(|b| {
            let f = figures(b, window, quotas);
            serde_json::json!({
                "batch_id": b.batch_id,
                "created_at_ms": b.created_at_ms,
                "finished_at_ms": b.finished_at_ms,
                "rows_read": b.rows_read,
                "rows_rejected": b.rows_rejected,
                "accepted": b.accepted,
                "published": b.published,
                "done": b.done,
                "pending": b.pending,
                "passed": b.passed,
                "failed": b.failed,
                "not_found": b.not_found,
                "awaiting_user": b.awaiting,
                "error": b.error,
                "unknown_calls": b.unknown_calls,
                "jobs_per_min": f.per_min,
                "eta_quota_secs": f.eta_quota,
                "eta_observed_secs": f.eta_observed,
                "pending_by_operation": b.pending_by_operation.iter().map(|(op, n)| (op.clone(), *n)).collect::<HashMap<_, _>>(),
                // Jobs a spend cap (KYC_SPEND_CAPS) sent to a later window, per vendor: the
                // table prints them under the batches; a script reading the JSON needs them
                // as much (pending jobs that no worker is slow on, only the budget).
                "cap_deferrals": capped
                    .iter()
                    .filter(|d| d.batch_id == b.batch_id)
                    .map(|d| serde_json::json!({
                        "vendor": d.vendor, "jobs": d.jobs, "waiting": d.waiting, "times": d.times,
                    }))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let queues = match queues {
        None => serde_json::Value::Null,
        Some(Err(e)) => serde_json::json!({ "error": e }),
        Some(Ok(d)) => serde_json::json!({
            "vendors": d.vendors.iter().map(|(v, w, dl, c)| serde_json::json!({
                "vendor": v.as_str(), "waiting": w, "delayed": dl, "consumers": c,
            })).collect::<Vec<_>>(),
            "dead_letters": d.dead,
        }),
    };
    serde_json::json!({
        "window_secs": window.as_secs(),
        "batches": batches,
        "queues": queues,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_carries_each_batchs_spend_cap_deferrals() {
        let batches = ["a", "b"].map(|id| BatchStatus {
            batch_id: id.into(),
            ..Default::default()
        });
        let capped = vec![kyc_store::spend::CapDeferrals {
            batch_id: "b".into(),
            vendor: "huawei".into(),
            jobs: 3,
            waiting: 2,
            times: 5,
        }];
        let v = json(
            &batches,
            &capped,
            &None,
            Duration::from_secs(300),
            &HashMap::new(),
        );
        assert_eq!(v["batches"][0]["cap_deferrals"], serde_json::json!([]));
        assert_eq!(
            v["batches"][1]["cap_deferrals"],
            serde_json::json!([{"vendor": "huawei", "jobs": 3, "waiting": 2, "times": 5}])
        );
    }

    #[test]
    fn the_quota_eta_is_the_busiest_apis_demand_over_its_quota() {
        let mut quotas = HashMap::new();
        quotas.insert("huawei.ivs-standard".to_string(), Quota::qps(10.0, 10));
        quotas.insert(
            "huawei.ivs-idcard-extention".to_string(),
            Quota::qps(2.0, 2),
        );
        // 100 three-factor jobs at 10/s: 10 s; 30 two-factor jobs at 2/s: 15 s.
        let pending = vec![
            ("huawei.standard".to_string(), 100),
            ("huawei.idcard_extension".to_string(), 30),
        ];
        assert_eq!(quota_eta_secs(&pending, &quotas), Some(15.0));
        // Baidu sessions and getall queries share result/getall: their demand adds up.
        let mut q = crate::config::default_quotas();
        q.insert("baidu.result/getall".into(), Quota::qps(1.0, 1));
        let pending = vec![
            ("baidu.start_session".to_string(), 5),
            ("baidu.result_getall".to_string(), 7),
        ];
        assert_eq!(quota_eta_secs(&pending, &q), Some(12.0));
        assert_eq!(quota_eta_secs(&[], &q), Some(0.0));
    }

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(human(12.2), "13s");
        assert_eq!(human(125.0), "2m05s");
        assert_eq!(human(7260.0), "2h01m");
    }
}
